"""Terminal text: what the command line prints, made safe to print.

The verdict, the findings (every finding, or each problem once with every place it applies),
the sender resolution and the sandbox's endpoints, as ``maildiag audit``, ``smtp``, ``demo``
and ``sandbox up`` print them. Text written by strangers (headers, banners, bounces) goes out
through :func:`printable`. rich is imported by the tables that need it, not at start-up.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from diagnostics.diagnose import Diagnosis
    from diagnostics.findings import Finding
    from diagnostics.parse.headers.analysis import HeaderAnalysis
    from diagnostics.profiles import PlatformUI
    from diagnostics.report.grouping import Problem
    from diagnostics.report.model import Report
    from diagnostics.watch import Seen, WatchResult

_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe for a terminal: known secrets masked; line breaks and tabs as spaces;
    control characters (ESC of terminal escape sequences, BEL, NUL, C1) and bidi overrides
    made visible as ``\\x1b`` or ``\\u202e``, so the admin sees what the stranger sent
    and the terminal does not act on it."""
    from diagnostics.redact import redact

    out = []
    for ch in redact(text):
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category == "Cs":
            out.append("\ufffd")
        elif category == "Cc":
            out.append(f"\\x{ord(ch):02x}")
        elif ch in _BIDI_CONTROLS:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def print_resolution(report: Report, out: TextIO) -> None:
    """The sender resolution as a table, from the sender.resolution findings' evidence."""
    rows = [
        f for f in report.findings if f.check == "sender.resolution" and "position" in f.evidence
    ]
    if not rows:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Who each candidate mail comes from")
    for column in ("position", "(sub)company", "from", "route", "server", "status"):
        table.add_column(column)
    for finding in rows:
        evidence = finding.evidence
        table.add_row(
            *(
                printable(str(evidence[key]))
                for key in ("position", "(sub)company", "from", "route", "server")
            ),
            finding.status.value,
        )
    Console(file=out, width=140, markup=False, emoji=False).print(table)


def verdict_text(report: Report) -> str:
    """``verdict: fail (6 fail, 2 warn, 40 pass, 21 skip)``: the counts worst first."""
    from diagnostics.report.html import counts_line

    return f"verdict: {report.verdict.value} ({counts_line(report.findings)})"


def print_finding(finding: Finding, out: TextIO) -> None:
    """One finding on a line (its remediation below when it needs action); titles quote
    servers and strangers, so every field goes out through :func:`printable`."""
    print(
        f"  {finding.status.value:5} {finding.check:34} "
        f"{printable(finding.subject)}: {printable(finding.title)}",
        file=out,
    )
    if finding.status.value in ("fail", "error", "warn") and finding.remediation:
        print(f"        -> {printable(finding.remediation)}", file=out)


def print_problem(problem: Problem, out: TextIO) -> None:
    """A problem as :func:`print_finding` prints a finding; one that several findings share
    (ports, subcompanies, checks) once, with every place it applies."""
    if len(problem.findings) == 1:
        print_finding(problem.findings[0], out)
        return
    print(f"  {problem.status.value:5} {printable(problem.title)}", file=out)
    for line in problem.where_lines():
        print(f"        {printable(line)}", file=out)
    if problem.remediation:
        print(f"        -> {printable(problem.remediation)}", file=out)


def print_report(report: Report, out: TextIO, *, every: bool = True) -> None:
    """The verdict, then the findings: all of them in report order (``every``), or what needs
    action first, then what to review, each problem once however many findings share its
    root cause, and a count of the rest."""
    print(verdict_text(report), file=out)
    if every:
        for finding in report.findings:
            print_finding(finding, out)
    else:
        from diagnostics.findings import Status
        from diagnostics.report.grouping import group_by_root_cause

        problems = group_by_root_cause(report.findings)
        groups = (
            ("What to fix first:", [p for p in problems if p.status >= Status.FAIL]),
            ("To review:", [p for p in problems if p.status is Status.WARN]),
        )
        for heading, members in groups:
            if members:
                print(f"\n{heading}", file=out)
                for problem in members:
                    print_problem(problem, out)
        rest = [f for f in report.findings if f.status < Status.WARN]
        if rest:
            from diagnostics.report.html import folded_line

            print(f"\n{folded_line(rest)}, not listed (--all lists every finding).", file=out)
    print_resolution(report, out)


def print_endpoints(description: dict[str, object], out: TextIO) -> None:
    """``maildiag sandbox up``'s table of the world's servers and egress source addresses."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"maildiag sandbox: scenario {description['scenario']}")
    for column in ("role", "host name", "world address", "listens on"):
        table.add_column(column)
    table.add_row("DNS (authoritative)", "", "", str(description["dns"]))
    servers = description["servers"]
    assert isinstance(servers, list)
    for server in servers:
        table.add_row(server["role"], server["hostname"], server["world"], server["listen"])
    egress = description["egress_sources"]
    assert isinstance(egress, dict)
    for ip, source in egress.items():
        table.add_row("platform egress IP", "", ip, f"{source} (source address)")
    Console(file=out, width=120).print(table)


def print_headers(analysis: HeaderAnalysis, name: str, out: TextIO) -> None:
    """``maildiag headers``: the Received chain as a table, oldest first, then the analysis."""
    import datetime as dt

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Header text is written by strangers: every cell and line goes out through printable(),
    # and rich neither interprets markup nor emoji codes in it.
    console = Console(file=out, width=120, markup=False, emoji=False, highlight=False)
    table = Table(title=Text(f"Received chain of {printable(name)}, oldest first"))
    for column in ("hop", "from", "by", "with", "time (UTC)", "delay"):
        table.add_column(column, overflow="fold")
    for hop in analysis.hops:
        source = hop.from_host or ""
        if hop.from_address and hop.from_address not in source:
            source = f"{source} [{hop.from_address}]".strip()
        when = (
            hop.timestamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if hop.timestamp else "?"
        )
        delay = "" if hop.delay_s is None else f"{hop.delay_s:+.1f} s"
        cells = (str(hop.index), source, hop.by_host or "", hop.with_protocol or "", when, delay)
        table.add_row(*(Text(printable(cell)) for cell in cells))
    console.print(table)
    for line in header_analysis_lines(analysis):
        print(printable(line), file=out)


def header_analysis_lines(analysis: HeaderAnalysis) -> list[str]:
    """The headers analysis after the hop table, as plain lines (not yet made printable)."""
    from diagnostics.parse.headers.message import and_numbers

    out = []
    total = analysis.total_delay_s
    skewed = [h.index for h in analysis.hops if h.clock_skew]
    out.append(
        f"Total delay: {total:.1f} s over {len(analysis.hops)} hop(s)"
        if total is not None
        else f"Total delay: unknown ({len(analysis.hops)} hop(s))"
    )
    if skewed:
        out.append(
            f"Clock skew: hop(s) {and_numbers(skewed)} claim to be earlier than the previous one"
        )
    out.append(
        "Authentication-Results:"
        if analysis.authentication_results
        else "Authentication-Results: none"
    )
    for result in analysis.authentication_results:
        out.append(f"  {result.authserv_id or '(no authserv-id)'}: {result.describe()}")
    if not analysis.arc.instances and not analysis.arc.problems:
        out.append("ARC: none")
    else:
        state = "complete" if analysis.arc.complete else "incomplete"
        out.append(
            f"ARC: {len(analysis.arc.instances)} instance(s), {state}, cv={analysis.arc.cv} "
            "(structure only; no signature verified)"
        )
        for instance in analysis.arc.instances:
            results = ", ".join(f"{r.method}={r.result}" for r in instance.results)
            out.append(
                f"  i={instance.i} cv={instance.cv} sealed by {instance.seal_domain}; "
                f"{instance.authserv_id or '?'} saw: {results or 'nothing'}"
            )
        out += [f"  problem: {p}" for p in analysis.arc.problems]
    out.append(f"Server family: {analysis.family or 'unknown'}")
    if analysis.verdict.styles:
        out.append(f"Forwarding style: {', '.join(analysis.verdict.styles)}")
    else:
        out.append("Forwarding style: no sign of forwarding")
    out += [f"  {line}" for line in analysis.verdict.evidence]
    if analysis.remediation:
        out.append(
            f"Fix ({analysis.verdict.faults[0]}, {analysis.family or 'generic'}): {analysis.remediation}"
        )
    if analysis.loop.looped:
        out.append("Loop: LOOP")
        out += [f"  {line}" for line in analysis.loop.evidence]
    else:
        out.append(f"Loop: none ({analysis.loop.hop_count} hop(s))")
    if analysis.retention is not None:
        out.append(f"Retention: {'retained' if analysis.retention.retained else 'NOT retained'}")
        out += [f"  {line}" for line in analysis.retention.problems()]
    out.append(f"Verdict: {'FAIL' if analysis.failed else 'OK'}")
    return out


def print_diagnoses(
    results: Sequence[tuple[str, Diagnosis]],
    out: TextIO,
    *,
    confirm: Mapping[str, Sequence[str]],
    config: Path | None,
) -> None:
    """``maildiag diagnose``: each input's cause, who acts, explanation, remediation and
    evidence (quoting servers and strangers, so through :func:`printable`), and with an account
    file the audit that confirms it."""
    for label, diagnosis in results:
        if len(results) > 1:
            print(f"== {printable(label)}", file=out)
        # The evidence quotes servers and strangers: every line goes out through printable().
        print(f"cause: {diagnosis.cause.value} (confidence {diagnosis.confidence:.2f})", file=out)
        print(f"who acts: {diagnosis.who_acts.value}", file=out)
        print(f"explanation: {printable(diagnosis.explanation)}", file=out)
        print(f"remediation: {printable(diagnosis.remediation)}", file=out)
        if diagnosis.rule:
            print(f"rule: {diagnosis.rule}", file=out)
        if diagnosis.evidence:
            print("evidence:", file=out)
            for key, value in diagnosis.evidence.items():
                print(f"  {key}: {printable(value)}", file=out)
        if config:
            checks = confirm[label]
            hint = (
                f"maildiag audit {config} --only {','.join(checks)}"
                if checks
                else "no check of the setup can confirm this cause"
            )
            print(f"confirm with: {hint}", file=out)


def watch_prompt(ui: PlatformUI) -> str:
    """What ``maildiag watch`` asks the admin to do while it watches."""
    return f"In {ui.settings_path}, click '{ui.send_test_mail}' now."


def print_seen(seen: Seen, out: TextIO) -> None:
    """One message that arrived while ``maildiag watch`` watched, and what it is."""
    import time

    when = time.strftime("%H:%M:%S", time.localtime(seen.at))
    print(printable(f"{when} {seen.kind:8} {seen.sender} | {seen.subject}"), file=out)
    if seen.summary:
        cause = f" ({seen.cause})" if seen.cause else ""
        print(printable(f"         {seen.summary}{cause}"), file=out)


def print_watch_verdict(result: WatchResult, ui: PlatformUI, timeout: float, out: TextIO) -> None:
    """The end of ``maildiag watch``: mailboxes it could not read, then one verdict line."""
    for where, said in result.unreadable.items():
        print(printable(f"cannot read the mailbox {where}: {said}"), file=out)
    if result.bounces:
        verdict = "a bounce came back: the redirection fails (see above)"
    elif result.platform:
        verdict = (
            "the platform's message reached the company mailbox and nothing bounced; it "
            f"should now be under '{ui.unassigned}'"
        )
    elif not result.unreadable:
        verdict = (
            f"no message from the platform within {timeout:g} s: was '{ui.send_test_mail}' "
            "clicked, and is the custom address right?"
        )
    else:
        verdict = "the mailbox could not be watched"
    print(f"verdict: {verdict}", file=out)
