"""The round trips of a report as rows: what was sent, where it went, how long it took, what
came back (sandbox and live alike), for the HTML and Markdown reports and the notebook.

Pure: read from the ``redirect.roundtrip`` findings' evidence.
"""

from __future__ import annotations

from typing import Any

from diagnostics.findings import Finding

ROUNDTRIP_COLUMNS = ("custom address", "tag", "via", "went to", "took", "came back", "verdict")


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, int | float) else "-"


def roundtrip_rows(findings: list[Finding] | tuple[Finding, ...]) -> list[dict[str, str]]:
    """One row per round trip (sandbox or live): what was sent, where it went, how long it
    took and what came back, from the ``redirect.roundtrip`` findings' evidence."""
    rows = []
    for finding in findings:
        evidence = finding.evidence
        if finding.check != "redirect.roundtrip" or not evidence.get("token"):
            continue
        live = evidence.get("live") or {}
        via = live.get("via", "mx")
        if evidence.get("delivery_error"):
            went, took = f"refused: {evidence['delivery_error']}", "-"
        else:
            went = str(evidence.get("delivered_to") or "-")
            arrivals = evidence.get("arrivals") or []
            went += (
                f", then the platform ({', '.join(arrivals)})"
                if arrivals
                else ", then the platform (not readable from here)"
                if live
                else ""
            )
            took = _seconds(evidence.get("latency_s"))
            if took == "-":
                took = f"watched {_seconds(evidence.get('waited_s'))}"
        back = []
        if evidence.get("local_copies"):
            where = f" in {live['mailbox']}" if live.get("mailbox") else ""
            back.append(f"{evidence['local_copies']} kept copy{where}")
        if evidence.get("bounces"):
            back.append(f"{evidence['bounces']} bounce")
        if live.get("mailbox_error"):
            back.append(f"mailbox not read: {live['mailbox_error']}")
        rows.append(
            {
                "custom address": str(evidence.get("address", finding.subject)),
                "tag": str(evidence["token"]),
                "via": via,
                "went to": went,
                "took": took,
                "came back": "; ".join(back) or "nothing",
                "verdict": f"{finding.status.value}: {finding.title}",
            }
        )
    return rows
