"""Tables for people: the findings and the sender resolution as pandas DataFrames.

The only module that imports pandas, lazily, so that the command line starts quickly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diagnostics.findings import Finding
from diagnostics.model.account import AccountConfig
from diagnostics.report.colours import status_css
from diagnostics.report.roundtrip import ROUNDTRIP_COLUMNS, roundtrip_rows
from diagnostics.sender import resolve

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler

    from diagnostics.report.grouping import Problem

RESOLUTION_COLUMNS = ("position", "(sub)company", "from", "display name", "route", "server", "why")
FINDING_COLUMNS = ("check", "subject", "status", "title", "cause", "remediation")


def roundtrip_frame(findings: list[Finding] | tuple[Finding, ...]) -> pandas.DataFrame:
    """:func:`roundtrip_rows` as a DataFrame (columns :data:`ROUNDTRIP_COLUMNS`)."""
    import pandas

    return pandas.DataFrame(roundtrip_rows(findings), columns=list(ROUNDTRIP_COLUMNS))


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


PROBLEM_COLUMNS = ("status", "problem", "applies to", "remediation")


def problems_frame(problems: list[Problem] | tuple[Problem, ...]) -> pandas.DataFrame:
    """Problems (findings folded by root cause) as a DataFrame, one row each (columns
    :data:`PROBLEM_COLUMNS`)."""
    import pandas

    rows = [
        {
            "status": p.status.value,
            "problem": p.title,
            "applies to": p.applies_to(),
            "remediation": p.remediation,
        }
        for p in problems
    ]
    return pandas.DataFrame(rows, columns=list(PROBLEM_COLUMNS))


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


@dataclass(frozen=True)
class StyledTable:
    """A table for Jupyter: the coloured, escaped HTML of a pandas Styler, and the frame as
    plain text for every reader without HTML (papermill's log, a terminal, nbval's text
    comparison) instead of pandas' ``<Styler at 0x...>``."""

    styler: Styler
    frame: pandas.DataFrame

    def _repr_html_(self) -> str:
        return str(self.styler.to_html())

    def __repr__(self) -> str:
        return str(self.frame.to_string(index=bool(self.frame.index.name)))


def styled(frame: pandas.DataFrame, *, name: str) -> StyledTable:
    """``frame`` for display: every value and label HTML-escaped (outside text such as SMTP
    banners reaches these tables), status cells coloured, no index.

    ``name`` makes the element ids stable, so that a stored notebook's output compares equal
    when it is run again (nbval); pandas would otherwise pick a random one per run.
    """
    styler = frame.style.format(escape="html", na_rep="")
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    status_columns = [c for c in frame.columns if c == "status" or c in _FLOW_COLUMNS]
    if status_columns:
        styler = styler.map(status_css, subset=status_columns)
    if not frame.index.name:
        styler = styler.hide(axis="index")
    return StyledTable(styler.set_uuid(name).set_table_attributes('class="maildiag"'), frame)


STEP_COLUMNS = ("session", "step", "elapsed_ms", "ok")


def steps_frame(findings: list[Finding] | tuple[Finding, ...]) -> pandas.DataFrame:
    """The timed steps of every SMTP session (resolve, connect, banner, EHLO, STARTTLS, AUTH,
    ...), one row per step (columns :data:`STEP_COLUMNS`).

    Four smtp.* checks share one session per setting, so each session is read once, from the
    finding of ``smtp.connect``.
    """
    import pandas

    rows: list[dict[str, Any]] = []
    for finding in findings:
        if finding.check != "smtp.connect":
            continue
        evidence = finding.to_dict()["evidence"]  # JSON-ready: lists and dicts
        steps = evidence.get("steps")
        if not isinstance(steps, list):
            continue
        session = f"{finding.subject} ({evidence.get('host', '')}:{evidence.get('port', '')})"
        for step in steps:
            rows.append(
                {
                    "session": session,
                    "step": step.get("step", ""),
                    "elapsed_ms": step.get("elapsed_ms") or 0.0,
                    "ok": bool(step.get("ok")),
                }
            )
    return pandas.DataFrame(rows, columns=list(STEP_COLUMNS))


@dataclass(frozen=True)
class Message:
    """A sentence that Jupyter shows as Markdown where a table would be empty."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Chart:
    """A matplotlib figure that Jupyter shows as a PNG (no pyplot, no backend to set up)."""

    figure: Figure
    description: str

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        return self.description


def steps_chart(frame: pandas.DataFrame) -> Chart | None:
    """A horizontal bar per SMTP session, one segment per step, in milliseconds (None when
    there is no session to show). A matplotlib Figure, not pyplot: nothing is drawn twice."""
    if frame.empty:
        return None
    from matplotlib.figure import Figure

    order = list(dict.fromkeys(frame["step"]))
    table = frame.pivot_table(
        index="session", columns="step", values="elapsed_ms", aggfunc="sum", sort=False
    ).reindex(columns=order, fill_value=0.0)
    figure = Figure(figsize=(10, 0.5 * len(table) + 3.2), layout="constrained")
    axes = figure.add_subplot()
    table.fillna(0.0).plot.barh(stacked=True, ax=axes, width=0.6, colormap="tab20")
    axes.invert_yaxis()
    axes.set_xlabel("milliseconds")
    axes.set_ylabel("")
    axes.set_title("SMTP session, step by step")
    axes.legend(title="step", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    sessions = len(table)
    return Chart(figure, f"SMTP step timings of {sessions} session{'s' if sessions != 1 else ''}")


_FLOW_COLUMNS = ("configuration", "outbound", "inbound", "sender")


def status_matrix(findings: list[Finding] | tuple[Finding, ...]) -> pandas.DataFrame:
    """The worst status per (sub)company and flow: one row per subject, one column per flow
    (``""`` where a flow has no finding for that subject). Subjects keep report order."""
    import pandas

    from diagnostics.report.html import worst_by_subject

    worst = worst_by_subject(tuple(findings))
    return pandas.DataFrame(
        [
            {flow: row[flow].value if flow in row else "" for flow in _FLOW_COLUMNS}
            for row in worst.values()
        ],
        index=pandas.Index(list(worst), name="subject"),
        columns=list(_FLOW_COLUMNS),
    )
