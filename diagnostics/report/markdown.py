r"""The Markdown report (``report.md``): the HTML report's content for tickets and wikis.

Outside text is made inert the Markdown way, with backslashes, never with HTML entities (a
Markdown reader sees ``&lt;`` as it is written, and an entity in a wiki is noise): every
character that can start markup (emphasis, code, links, images, headings, strike-through,
math, an HTML tag, an entity) is backslash-escaped, so a banner cannot inject markup; ``|`` is
``\|``, which GitHub-flavoured tables read as a pipe inside a cell (before they split cells),
so a banner cannot break a row; line breaks become ``<br>`` (the line break tables allow).
Settings to copy go into fenced blocks longer than any backtick run they hold.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.findings import Finding, Status
from diagnostics.report.grouping import Problem, group_by_root_cause
from diagnostics.report.html import (
    FLOWS,
    clean,
    counts_line,
    fixes_line,
    glance_columns,
    greeted_as_line,
    group_by_flow,
    settings_that_work,
    snippets_to_copy,
    to_fix,
    verdict_line,
    worst_by_subject,
)
from diagnostics.report.json import write_atomic

if TYPE_CHECKING:
    from diagnostics.report.model import Report
    from diagnostics.report.snippets import CopyBlock

__all__ = ["fence_for", "inline", "render_markdown", "write_markdown"]

# Characters that start or end markup inline: emphasis, code, links and images, headings,
# strike-through, GitHub's math ($), table cells (|), HTML tags (<) and autolinks.
_PUNCTUATION = re.compile(r"([\\`*_\[\]#~!$|<])")
# An ampersand starts markup only as an entity (&lt; &#60; &#x3c;).
_ENTITY_START = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BACKTICKS = re.compile(r"`+")
_COLUMNS = ("Status", "Check", "Subject", "Title", "Detail", "Cause", "Remediation")


def inline(value: object) -> str:
    """``value`` as one line of inert Markdown, safe inside a table cell."""
    escaped = _PUNCTUATION.sub(r"\\\1", clean(value))
    escaped = _ENTITY_START.sub(r"\\&", escaped)
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


def _problem_row(problem: Problem) -> str:
    """One row for findings that share a root cause: the problem, its fix, every place, and
    what each finding found."""
    if len(problem.findings) == 1:
        return _row(problem.findings[0])
    found = "<br>".join(
        inline(f"{f.subject}, {f.check}: {f.title}" + (f". {f.detail}" if f.detail else ""))
        for f in problem.findings
    )
    cells = [
        _badge(problem.status),
        inline(", ".join(problem.checks)),
        "<br>".join(inline(line) for line in problem.where_lines(checks=False)),
        inline(problem.title),
        found,
        inline(problem.cause.value if problem.cause else ""),
        inline(problem.remediation),
    ]
    return "| " + " | ".join(cells) + " |"


def _fix_first(report: Report) -> list[str]:
    out = ["## What to fix first", ""]
    problems = to_fix(report.findings)
    if not problems:
        out.append("Nothing: no check failed.")
    elif line := fixes_line(problems):
        out += [inline(line), ""]
    for number, problem in enumerate(problems, start=1):
        title = f"{number}. {_badge(problem.status)} {inline(problem.title)}"
        if len(problem.findings) == 1:
            f = problem.findings[0]
            out.append(
                f"{title} ({inline(f.check)}, {inline(f.subject)}): {inline(problem.remediation)}"
            )
            continue
        # The places as a list inside the item: indented to the item's content.
        indent = " " * len(f"{number}. ")
        out.append(f"{title}: {inline(problem.remediation)}")
        out += [f"{indent}- {inline(line)}" for line in problem.where_lines()]
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
        attention = [f for f in findings if f.status >= Status.WARN]
        out += [_problem_row(p) for p in group_by_root_cause(attention)]
        out += [_row(f) for f in findings if f.status < Status.WARN]
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
        if greeted := greeted_as_line(report.findings):
            out += [inline(greeted), ""]
        for block in blocks:
            if not block.folded:
                out += _copy_block(block)
        folded = [b for b in blocks if b.folded]
        if folded:
            out += ["### Allowlist for other servers", ""]
            for block in folded:
                out += _copy_block(block)
    return out


def _copy_block(block: CopyBlock) -> list[str]:
    content = clean(block.content).rstrip("\n")
    fence = fence_for(content)
    return [f"#### {inline(block.subject)}: {inline(block.label)}", "", fence, content, fence, ""]


def _roundtrips(report: Report) -> list[str]:
    from diagnostics.report.roundtrip import ROUNDTRIP_COLUMNS, roundtrip_rows

    rows = roundtrip_rows(report.findings)
    if not rows:
        return []
    out = ["## Round trip", "", "| " + " | ".join(ROUNDTRIP_COLUMNS) + " |"]
    out.append("|" + "|".join(" --- " for _ in ROUNDTRIP_COLUMNS) + "|")
    out += ["| " + " | ".join(inline(row[c]) for c in ROUNDTRIP_COLUMNS) + " |" for row in rows]
    return [*out, ""]


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
        *_roundtrips(report),
        *_settings(report),
        *_run(report),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_markdown(report: Report, directory: Path) -> Path:
    """Write ``report.md`` into ``directory`` atomically; return its path."""
    return write_atomic(directory / "report.md", render_markdown(report))
