"""Tables for people: the findings and the sender resolution as pandas DataFrames.

The only module that imports pandas, lazily, so that the command line starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diagnostics.config import AccountConfig
from diagnostics.findings import Finding
from diagnostics.sender import resolve

if TYPE_CHECKING:
    import pandas

RESOLUTION_COLUMNS = ("position", "(sub)company", "from", "display name", "route", "server", "why")
FINDING_COLUMNS = ("check", "subject", "status", "title", "cause", "remediation")


def resolution_rows(config: AccountConfig) -> list[dict[str, str]]:
    """One row per position: who its candidate mail comes from, by which route, and why."""
    return [row.as_row() for row in resolve(config)]


def resolution_frame(config: AccountConfig) -> pandas.DataFrame:
    """:func:`resolution_rows` as a DataFrame (columns :data:`RESOLUTION_COLUMNS`)."""
    import pandas

    return pandas.DataFrame(resolution_rows(config), columns=list(RESOLUTION_COLUMNS))


def findings_frame(findings: list[Finding] | tuple[Finding, ...]) -> pandas.DataFrame:
    """The findings as a DataFrame, one row each (columns :data:`FINDING_COLUMNS`)."""
    import pandas

    rows: list[dict[str, Any]] = [
        {
            "check": f.check,
            "subject": f.subject,
            "status": f.status.value,
            "title": f.title,
            "cause": f.cause.value if f.cause else "",
            "remediation": f.remediation,
        }
        for f in findings
    ]
    return pandas.DataFrame(rows, columns=list(FINDING_COLUMNS))


DIAGNOSIS_COLUMNS = (
    "input",
    "cause",
    "confidence",
    "who acts",
    "explanation",
    "remediation",
    "confirm with",
)


def diagnosis_frame(text: str = "", path: str = "") -> pandas.DataFrame:
    """The diagnosis of a pasted ``text``, or of the file, folder or mbox at ``path``.

    One row per input (columns :data:`DIAGNOSIS_COLUMNS`); ValueError when both or neither
    are given, OSError naming a path that cannot be read.
    """
    import pandas

    from diagnostics.diagnose import diagnose
    from diagnostics.diagnose.inputs import confirming_checks, read_inputs

    if bool(text) == bool(path):
        raise ValueError("give either the pasted text or a path, not both and not neither")
    inputs = [("pasted text", text.encode("utf-8"))] if text else read_inputs(path)
    rows = []
    for label, data in inputs:
        result = diagnose(data)
        rows.append(
            {
                "input": label,
                "cause": result.cause.value,
                "confidence": round(result.confidence, 2),
                "who acts": result.who_acts.value,
                "explanation": result.explanation,
                "remediation": result.remediation,
                "confirm with": ", ".join(confirming_checks(result.cause)),
            }
        )
    return pandas.DataFrame(rows, columns=list(DIAGNOSIS_COLUMNS))
