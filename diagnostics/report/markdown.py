"""The Markdown report (``report.md``): the HTML report's content for tickets and wikis.

Outside text is neutralised for Markdown renderers that pass HTML through: ``<``, ``>`` and
``&`` become entities, Markdown punctuation is backslash-escaped, and in table cells ``|`` is
an entity and line breaks are ``<br>``, so a banner cannot break a row or inject markup.
Settings to copy go into fenced blocks longer than any backtick run they hold.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.findings import Finding, Status
from diagnostics.report.html import (
    FLOWS,
    clean,
    counts_line,
    glance_columns,
    group_by_flow,
    settings_that_work,
    snippets_to_copy,
    to_fix_first,
    verdict_line,
    worst_by_subject,
)
from diagnostics.report.json import write_atomic

if TYPE_CHECKING:
    from diagnostics.report.model import Report

__all__ = ["fence_for", "inline", "render_markdown", "write_markdown"]

_PUNCTUATION = re.compile(r"([\\`*_\[\]#~!])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BACKTICKS = re.compile(r"`+")
_COLUMNS = ("Status", "Check", "Subject", "Title", "Detail", "Cause", "Remediation")


def inline(value: object) -> str:
    """``value`` as one line of inert Markdown, safe inside a table cell."""
    escaped = _PUNCTUATION.sub(r"\\\1", html.escape(clean(value), quote=False))
    # An entity, not `\|`: some renderers split cells before they look at backslashes.
    escaped = escaped.replace("|", "&#124;")
    return _LINE_BREAK.sub("<br>", escaped)


def fence_for(content: str) -> str:
    """A backtick fence longer than any backtick run in ``content`` (at least three)."""
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    return "`" * max(3, longest + 1)


def _badge(status: Status) -> str:
    return f"**{status.value.upper()}**"


def _row(finding: Finding) -> str:
    cells = [
        _badge(finding.status),
        inline(finding.check),
        inline(finding.subject),
        inline(finding.title),
        inline(finding.detail),
        inline(finding.cause.value if finding.cause else ""),
        inline(finding.remediation),
    ]
    return "| " + " | ".join(cells) + " |"


def _fix_first(report: Report) -> list[str]:
    out = ["## What to fix first", ""]
    findings = to_fix_first(report.findings)
    if not findings:
        out.append("Nothing: no check failed.")
    for number, f in enumerate(findings, start=1):
        out.append(
            f"{number}. {_badge(f.status)} {inline(f.title)} ({inline(f.check)}, "
            f"{inline(f.subject)}): {inline(f.remediation or f.detail)}"
        )
    return [*out, ""]


def _glance(report: Report) -> list[str]:
    worst = worst_by_subject(report.findings)
    if not worst:
        return []
    columns = glance_columns(worst)
    flows = [flow for flow, _ in columns]
    out = ["## At a glance", ""]
    out.append("| (Sub)company | " + " | ".join(label for _, label in columns) + " |")
    out.append("|" + "|".join(" --- " for _ in range(len(flows) + 1)) + "|")
    for subject, row in worst.items():
        cells = [_badge(row[flow]) if flow in row else "—" for flow in flows]
        out.append(f"| {inline(subject)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _flows(report: Report) -> list[str]:
    out = []
    for flow, findings in group_by_flow(report.findings):
        out += [f"## {_badge(max(f.status for f in findings))} {FLOWS[flow]}", ""]
        out.append("| " + " | ".join(_COLUMNS) + " |")
        out.append("|" + "|".join(" --- " for _ in _COLUMNS) + "|")
        out += [_row(f) for f in findings]
        out.append("")
    return out


def _settings(report: Report) -> list[str]:
    out = ["## Settings to copy", ""]
    probes = settings_that_work(report.findings)
    blocks = snippets_to_copy(report.findings)
    if not probes and not blocks:
        out += ["No settings to change.", ""]
    if probes:
        out += ["### SMTP settings", ""]
        for f in probes:
            line = f"- **{inline(f.subject)}**: {inline(f.title)}"
            if f.remediation:
                line += f" — {inline(f.remediation)}"
            out.append(line)
        out.append("")
    if blocks:
        out += ["### Allowlist", ""]
        for block in blocks:
            content = clean(block.content).rstrip("\n")
            fence = fence_for(content)
            out += [f"#### {inline(block.subject)}: {inline(block.label)}", ""]
            out += [fence, content, fence, ""]
    return out


def _run(report: Report) -> list[str]:
    facts = [
        ("Account", report.account),
        ("Company", report.company),
        ("Mode", report.mode),
        ("Scenario", report.scenario or "—"),
        ("Config file", report.config_file or "—"),
        ("Generated at", report.generated_at.isoformat(timespec="seconds")),
        ("Findings", counts_line(report.findings) or "none"),
    ]
    return ["## About this run", "", *(f"- {name}: {inline(value)}" for name, value in facts), ""]


def render_markdown(report: Report) -> str:
    """The report as Markdown (GitHub flavour), every outside value neutralised."""
    lines = [
        f"# {inline(verdict_line(report))}",
        "",
        f"{inline(report.company)} (account {inline(report.account)}), {inline(report.mode)} run",
        "",
        *_fix_first(report),
        *_glance(report),
        *_flows(report),
        *_settings(report),
        *_run(report),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_markdown(report: Report, directory: Path) -> Path:
    """Write ``report.md`` into ``directory`` atomically; return its path."""
    return write_atomic(directory / "report.md", render_markdown(report))
