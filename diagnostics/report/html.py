"""The HTML report (``report.html``): one self-contained page for the IT admin.

No scripts, no external assets. Everything a finding holds is outside text (SMTP banners,
TXT records, headers written by strangers), so every value goes through :func:`text`, which
masks secrets, replaces characters illegal in HTML and XML, and escapes. The sections (verdict,
what to fix first, findings by flow, settings to copy) are computed here once and shared with
the Markdown report.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.findings import Cause, Finding, Status
from diagnostics.redact import redact
from diagnostics.report.colours import STATUS_COLOURS
from diagnostics.report.grouping import Problem, group_by_root_cause
from diagnostics.report.json import write_atomic
from diagnostics.report.snippets import CopyBlock, detected_families, family_name, snippets_to_copy

if TYPE_CHECKING:
    from diagnostics.report.model import Report

__all__ = [
    "FLOWS",
    "CopyBlock",
    "clean",
    "counts_line",
    "counts_text",
    "fixes_line",
    "flow_of",
    "folded_line",
    "glance_columns",
    "greeted_as_line",
    "group_by_flow",
    "render_html",
    "settings_that_work",
    "snippets_to_copy",
    "text",
    "to_fix",
    "to_fix_first",
    "verdict_line",
    "worst_by_subject",
    "write_html",
]

FLOWS: dict[str, str] = {
    "configuration": "Configuration",
    "outbound": "Outbound: the platform sends as you",
    "inbound": "Inbound: replies reach the platform",
    "sender": "Sender: who each candidate mail comes from",
    "other": "Other checks",
}

# Used when a check id is not registered (a finding read back from an older report, a test).
_FLOW_OF_FAMILY = {
    "config": "configuration",
    "dns": "outbound",
    "smtp": "outbound",
    "allowlist": "outbound",
    "redirect": "inbound",
    "headers": "inbound",
    "sender": "sender",
}

# C0 controls other than tab/LF/CR, C1 controls, lone surrogates and the two non-characters
# are illegal in XML 1.0 and parse errors in HTML; U+FFFD keeps visible that something was there.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean(value: object) -> str:
    """``value`` as text with secrets masked and characters illegal in XML/HTML replaced."""
    return _ILLEGAL.sub("\ufffd", redact(str(value)))


def text(value: object) -> str:
    """``value`` cleaned (see :func:`clean`) and escaped for HTML text and attributes."""
    return html.escape(clean(value), quote=True)


@functools.cache
def _registered_flows() -> dict[str, str]:
    from diagnostics.registry import all_checks

    return {check_id: spec.flow for check_id, spec in all_checks().items()}


def flow_of(check_id: str) -> str:
    """The flow (a key of :data:`FLOWS`) that check ``check_id`` belongs to."""
    registered = _registered_flows().get(check_id)
    if registered is not None:
        return registered
    return _FLOW_OF_FAMILY.get(check_id.split(".", 1)[0], "other")


def group_by_flow(findings: tuple[Finding, ...]) -> list[tuple[str, list[Finding]]]:
    """Findings per flow, flows in :data:`FLOWS` order, empty flows left out."""
    groups: dict[str, list[Finding]] = {flow: [] for flow in FLOWS}
    for finding in findings:
        groups[flow_of(finding.check)].append(finding)
    return [(flow, members) for flow, members in groups.items() if members]


def to_fix_first(findings: tuple[Finding, ...]) -> list[Finding]:
    """Every ``fail`` and ``error`` finding, in report order (the order an admin works in)."""
    return [f for f in findings if f.status >= Status.FAIL]


def to_fix(findings: tuple[Finding, ...]) -> list[Problem]:
    """The ``fail`` and ``error`` findings folded by root cause (findings that share a cause
    and a fix are one problem; a ``warn`` that shares it joins it), in report order."""
    return [p for p in group_by_root_cause(findings) if p.status >= Status.FAIL]


def fixes_line(problems: list[Problem]) -> str:
    """``2 fixes cover the 6 failing findings.``: said only where problems fold findings."""
    failing = sum(f.status >= Status.FAIL for p in problems for f in p.findings)
    if failing <= len(problems):
        return ""
    noun = "fix covers" if len(problems) == 1 else "fixes cover"
    return f"{len(problems)} {noun} the {failing} failing findings."


def greeted_as_line(findings: tuple[Finding, ...]) -> str:
    """``smtp.acme.example greets as Postfix.``: the server families the snippets follow."""
    families = detected_families(findings)
    return " ".join(f"{host} greets as {family_name(f)}." for host, f in families.items())


def worst_by_subject(findings: tuple[Finding, ...]) -> dict[str, dict[str, Status]]:
    """The worst status per subject ((sub)company) and flow, subjects in report order; a flow
    with no finding for a subject is absent from its row."""
    worst: dict[str, dict[str, Status]] = {}
    for finding in findings:
        row = worst.setdefault(finding.subject, {})
        flow = flow_of(finding.check)
        if flow not in row or finding.status > row[flow]:
            row[flow] = finding.status
    return worst


def counts_text(counts: Mapping[str, int]) -> str:
    """``2 fail, 1 warn, 10 pass, 3 skip`` from counts by status value (a report's
    ``summary``): the statuses present, worst first."""
    return ", ".join(
        f"{n} {status.value}"
        for status in sorted(Status, reverse=True)
        if (n := counts.get(status.value, 0))
    )


def counts_line(findings: list[Finding] | tuple[Finding, ...]) -> str:
    """:func:`counts_text` of ``findings``."""
    return counts_text(Counter(f.status.value for f in findings))


def folded_line(findings: list[Finding] | tuple[Finding, ...]) -> str:
    """``17 passed and 11 skipped``: what the passed and skipped of ``findings`` come to,
    where they are not listed one by one."""
    passed = sum(f.status is Status.PASS for f in findings)
    skipped = sum(f.status is Status.SKIP for f in findings)
    return " and ".join(
        [f"{passed} passed"] * bool(passed) + [f"{skipped} skipped"] * bool(skipped)
    )


def glance_columns(worst: Mapping[str, Mapping[str, Status]]) -> list[tuple[str, str]]:
    """The flows that :func:`worst_by_subject` has a status for, in :data:`FLOWS` order, each
    with its short heading (``outbound``, ``Outbound``)."""
    return [
        (flow, label.split(":", 1)[0])
        for flow, label in FLOWS.items()
        if any(flow in row for row in worst.values())
    ]


def verdict_line(report: Report) -> str:
    """The verdict as one plain sentence, e.g. ``Verdict: fail — 3 checks need action``, or,
    where findings share a root cause, ``Verdict: fail — 2 problems to fix, found by 6 checks``
    (the count an admin works through is the problems')."""
    verdict = report.verdict.value
    summary = report.summary()
    action = summary["fail"] + summary["error"]
    if action:
        problems = len(to_fix(report.findings))
        if problems < action:
            noun = "problem" if problems == 1 else "problems"
            return f"Verdict: {verdict} — {problems} {noun} to fix, found by {action} checks"
        noun = "check needs" if action == 1 else "checks need"
        return f"Verdict: {verdict} — {action} {noun} action"
    if summary["warn"]:
        noun = "warning" if summary["warn"] == 1 else "warnings"
        return f"Verdict: {verdict} — nothing must be fixed, {summary['warn']} {noun} to review"
    if report.verdict is Status.SKIP:
        return f"Verdict: {verdict} — nothing could be checked"
    return f"Verdict: {verdict} — nothing needs action"


def settings_that_work(findings: tuple[Finding, ...]) -> list[Finding]:
    """The ``smtp.settings_probe`` findings that name settings (all but skipped ones)."""
    return [f for f in findings if f.check == "smtp.settings_probe" and f.status is not Status.SKIP]


def _run_facts(report: Report) -> list[tuple[str, str]]:
    return [
        ("Account", report.account),
        ("Company", report.company),
        ("Mode", report.mode),
        ("Scenario", report.scenario or "—"),
        ("Config file", report.config_file or "—"),
        ("Generated at", report.generated_at.isoformat(timespec="seconds")),
    ]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; line-height: 1.4; }
h1.verdict { font-size: 2rem; padding: 0.75rem 1rem; border-left: 0.6rem solid; }
h1.verdict-fail, h1.verdict-error { border-color: #b00020; background: #fdecee; }
h1.verdict-warn { border-color: #8a6d00; background: #fff8e1; }
h1.verdict-pass { border-color: #1b5e20; background: #e8f5e9; }
h1.verdict-skip { border-color: #555555; background: #f0f0f0; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
th, td { border: 1px solid #bbbbbb; padding: 0.3rem 0.5rem; text-align: left;
  vertical-align: top; overflow-wrap: break-word; }
th { background: #eeeeee; }
table.findings { table-layout: fixed; }
table.findings col.status { width: 5.5rem; }
table.findings col.check { width: 15rem; }
table.findings col.todo { width: 32%; }
td p { margin: 0.3rem 0 0 0; white-space: pre-wrap; }
code { font-family: monospace; overflow-wrap: anywhere; }
table.glance { width: auto; }
table.glance td { text-align: center; }
details.passed > summary { cursor: pointer; color: #444444; margin-bottom: 0.5rem; }
.badge { display: inline-block; padding: 0.1rem 0.4rem; border-radius: 0.2rem;
  font-weight: bold; font-family: monospace; white-space: nowrap; }
pre { background: #f5f5f5; padding: 0.5rem; overflow-x: auto; white-space: pre-wrap; }
.meta { color: #444444; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: bold; }
""" + "".join(
    f".status-{status.value} {{ background: {bg}; color: {fg}; }}\n"
    for status, (bg, fg) in STATUS_COLOURS.items()
)

_COLUMNS = ("Status", "Check and subject", "What was found", "What to do")
_COLGROUP = (
    '<colgroup><col class="status"><col class="check"><col class="found"><col class="todo">'
    "</colgroup>"
)


def _badge(status: Status) -> str:
    return f'<span class="badge status-{text(status.value)}">{text(status.value.upper())}</span>'


def _evidence(finding: Finding) -> str:
    evidence = finding.to_dict()["evidence"]
    if not evidence:
        return ""
    dumped = json.dumps(evidence, indent=2, ensure_ascii=False)
    return f"<details><summary>Evidence</summary><pre>{text(dumped)}</pre></details>"


def _row(finding: Finding) -> str:
    found = f"<strong>{text(finding.title)}</strong>"
    if finding.detail:
        found += f"<p>{text(finding.detail)}</p>"
    cells = [
        _badge(finding.status),
        f"<code>{text(finding.check)}</code><p>{text(finding.subject)}</p>",
        found + _evidence(finding),
        _todo(finding.remediation, finding.cause),
    ]
    return _tr(finding.check, cells)


def _problem_row(problem: Problem) -> str:
    """One row for findings that share a root cause: the problem and its fix, every place,
    and what each finding found (title, detail, evidence)."""
    if len(problem.findings) == 1:
        return _row(problem.findings[0])
    checks = ", ".join(f"<code>{text(c)}</code>" for c in problem.checks)
    found = f"<strong>{text(problem.title)}</strong>"
    for f in problem.findings:
        found += f"<p><strong>{text(f.subject)}, {text(f.check)}:</strong> {text(f.title)}"
        found += f"{'. ' + text(f.detail) if f.detail else ''}</p>{_evidence(f)}"
    cells = [
        _badge(problem.status),
        checks + "".join(f"<p>{text(line)}</p>" for line in problem.where_lines(checks=False)),
        found,
        _todo(problem.remediation, problem.cause),
    ]
    return _tr(" ".join(problem.checks), cells)


def _todo(remediation: str, cause: Cause | None) -> str:
    """The "what to do" cell: the remediation, then the cause's id."""
    todo = f"<p>{text(remediation)}</p>" if remediation else ""
    if cause is not None:
        todo += f'<p class="meta">cause: <code>{text(cause.value)}</code></p>'
    return todo


def _tr(checks: str, cells: list[str]) -> str:
    """A findings row: its cells (markup already escaped), its check ids as data."""
    return f'<tr data-check="{text(checks)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _table(rows: list[str]) -> list[str]:
    header = "".join(f'<th scope="col">{text(c)}</th>' for c in _COLUMNS)
    return [
        '<table class="findings">',
        _COLGROUP,
        f"<thead><tr>{header}</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
    ]


def _fix_first(report: Report) -> list[str]:
    problems = to_fix(report.findings)
    out = ['<section id="fix-first">', "<h2>What to fix first</h2>"]
    if not problems:
        out.append("<p>Nothing: no check failed.</p>")
    else:
        if line := fixes_line(problems):
            out.append(f'<p class="meta">{text(line)}</p>')
        out.append("<ol>")
        for problem in problems:
            head = f"<li>{_badge(problem.status)} <strong>{text(problem.title)}</strong>"
            if len(problem.findings) == 1:
                f = problem.findings[0]
                head += f' <span class="meta">({text(f.check)}, {text(f.subject)})</span>'
                places = ""
            else:
                items = "".join(f"<li>{text(line)}</li>" for line in problem.where_lines())
                places = f'<ul class="meta">{items}</ul>'
            out.append(f"{head}<p>{text(problem.remediation)}</p>{places}</li>")
        out.append("</ol>")
    out.append("</section>")
    return out


def _glance(report: Report) -> list[str]:
    """The worst status per (sub)company and flow: where the trouble is, in one table."""
    worst = worst_by_subject(report.findings)
    if not worst:
        return []
    columns = glance_columns(worst)
    flows = [flow for flow, _ in columns]
    out = ['<section id="glance">', "<h2>At a glance</h2>", '<table class="glance">']
    header = "".join(f'<th scope="col">{text(label)}</th>' for _, label in columns)
    out.append(f'<thead><tr><th scope="col">(Sub)company</th>{header}</tr></thead>')
    out.append("<tbody>")
    for subject, row in worst.items():
        cells = "".join(f"<td>{_badge(row[flow]) if flow in row else '—'}</td>" for flow in flows)
        out.append(f'<tr><th scope="row">{text(subject)}</th>{cells}</tr>')
    out += ["</tbody>", "</table>", "</section>"]
    return out


def _flows(report: Report) -> list[str]:
    """Per flow: what needs attention (fail, error, warn) in full, one row per root cause,
    then what passed or was skipped, folded away so that it does not bury the rest."""
    out = []
    for flow, findings in group_by_flow(report.findings):
        worst = max(f.status for f in findings)
        out += [
            f'<section id="flow-{text(flow)}">',
            f"<h2>{_badge(worst)} {text(FLOWS[flow])}</h2>",
        ]
        attention = [f for f in findings if f.status >= Status.WARN]
        rest = [f for f in findings if f.status < Status.WARN]
        if attention:
            out.append(f'<p class="meta">{text(counts_line(findings))}</p>')
            out += _table([_problem_row(p) for p in group_by_root_cause(attention)])
        if rest:
            summary = folded_line(rest)
            out += ['<details class="passed">', f"<summary>{text(summary)}</summary>"]
            out += _table([_row(f) for f in rest])
            out.append("</details>")
        out.append("</section>")
    return out


def _settings(report: Report) -> list[str]:
    out = ['<section id="settings">', "<h2>Settings to copy</h2>"]
    probes = settings_that_work(report.findings)
    blocks = snippets_to_copy(report.findings)
    if not probes and not blocks:
        out.append("<p>No settings to change.</p>")
    if probes:
        out += ["<h3>SMTP settings</h3>", "<ul>"]
        for f in probes:
            line = f"<strong>{text(f.subject)}</strong>: {text(f.title)}"
            if f.remediation:
                line += f"<br>{text(f.remediation)}"
            out.append(f"<li>{line}</li>")
        out.append("</ul>")
    if blocks:
        out.append("<h3>Allowlist</h3>")
        if greeted := greeted_as_line(report.findings):
            out.append(f'<p class="meta">{text(greeted)}</p>')
        shown = [b for b in blocks if not b.folded]
        folded = [b for b in blocks if b.folded]
        out += [line for block in shown for line in _copy_block(block)]
        if folded:
            summary = f"For other servers ({len(folded)})"
            out += ['<details class="passed">', f"<summary>{text(summary)}</summary>"]
            out += [line for block in folded for line in _copy_block(block)]
            out.append("</details>")
    out.append("</section>")
    return out


def _copy_block(block: CopyBlock) -> list[str]:
    return [
        f"<h4>{text(block.subject)}: {text(block.label)}</h4>",
        f"<pre>{text(block.content)}</pre>",
    ]


def _roundtrips(report: Report) -> list[str]:
    """The round trips: what was sent, where it went, how long it took, what came back."""
    from diagnostics.report.roundtrip import ROUNDTRIP_COLUMNS, roundtrip_rows

    rows = roundtrip_rows(report.findings)
    if not rows:
        return []
    header = "".join(f'<th scope="col">{text(c)}</th>' for c in ROUNDTRIP_COLUMNS)
    out = ['<section id="roundtrip">', "<h2>Round trip</h2>", '<table class="roundtrip">']
    out += [f"<thead><tr>{header}</tr></thead>", "<tbody>"]
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td>{text(row[c])}</td>" for c in ROUNDTRIP_COLUMNS) + "</tr>"
        )
    out += ["</tbody>", "</table>", "</section>"]
    return out


def _run(report: Report) -> list[str]:
    summary = counts_line(report.findings) or "none"
    out = ['<section id="run">', "<h2>About this run</h2>", "<dl>"]
    for name, value in [*_run_facts(report), ("Findings", summary)]:
        out.append(f"<dt>{text(name)}</dt><dd>{text(value)}</dd>")
    out += ["</dl>", "</section>"]
    return out


def render_html(report: Report) -> str:
    """The report as one self-contained HTML5 page, every outside value escaped."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>maildiag report: {text(report.company)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f'<h1 class="verdict verdict-{text(report.verdict.value)}">{text(verdict_line(report))}</h1>',
        f'<p class="meta">{text(report.company)} (account {text(report.account)}), '
        f"{text(report.mode)} run</p>",
        *_fix_first(report),
        *_glance(report),
        *_flows(report),
        *_roundtrips(report),
        *_settings(report),
        *_run(report),
        "</body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"


def write_html(report: Report, directory: Path) -> Path:
    """Write ``report.html`` into ``directory`` atomically; return its path."""
    return write_atomic(directory / "report.html", render_html(report))
