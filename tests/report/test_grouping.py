"""Findings folded by root cause: the pure grouping, and the demo's reports (HTML, Markdown)
showing its two faults as two problems, each with every place it applies; the allowlist
snippets of the server family the server greeted as first."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import pytest

from diagnostics.audit import run_audit, write_report
from diagnostics.findings import Cause, Finding, Status
from diagnostics.report.grouping import group_by_root_cause, root_cause_key
from diagnostics.report.html import render_html, to_fix
from diagnostics.report.markdown import render_markdown
from diagnostics.report.model import Report
from diagnostics.report.snippets import snippets_to_copy
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from tests.report.test_html import make_report
from tests.report.test_markdown import ENTITY, TAG, UNESCAPED_PIPE, outside_fences
from tests.sandbox.conftest import with_changes

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "fixtures" / "configs" / "acme.yaml"
EGRESS_IP = "18.158.122.164"


def refused(
    subject: str, port: int, ips: tuple[str, ...], host: str = "smtp.acme.example"
) -> Finding:
    return Finding(
        check="allowlist.reachability",
        status=Status.FAIL,
        subject=subject,
        title=f"{host} port {port} refuses {len(ips)} of 3 Personio egress IPs",
        cause=Cause.CLIENT_IP_REJECTED,
        remediation=f"Permit {', '.join(ips)} on {host} in the server's allowlist or firewall.",
        evidence={
            "smtp_host": host,
            "port": port,
            "root_cause": {"kind": "egress_ips_refused", "smtp_host": host, "egress_ips": ips},
        },
    )


def auth_failed(subject: str, account: str) -> Finding:
    return Finding(
        check="smtp.auth",
        status=Status.FAIL,
        subject=subject,
        title="Login refused",
        cause=Cause.AUTH_FAILED,
        remediation="Check Account and Password in the recruiting email settings.",
        evidence={"host": "smtp.acme.example", "port": 587, "account": account},
    )


def tagged(check: str, subject: str, address: str, server: str = "mx.acme.example") -> Finding:
    status = Status.WARN if check == "headers.forwarding_style" else Status.FAIL
    return Finding(
        check=check,
        status=status,
        subject=subject,
        title=f"{check} about {address}",
        cause=None if status is Status.WARN else Cause.UNKNOWN,
        remediation=f"Exempt {address} from that rule.",
        evidence={
            "address": address,
            "root_cause": {
                "kind": "redirection_changes_message",
                "server": server,
                "server_family": None,
                "faults": ["subject_tagged"],
                "inbound_address": "acme-jobs@m.personio.de",
                "subject_tag": "[EXTERNAL]",
                "tag_position": "prefix",
            },
        },
    )


def test_one_missing_egress_ip_on_one_host_is_one_problem_for_every_port() -> None:
    problems = group_by_root_cause(
        [refused("Acme GmbH", 587, (EGRESS_IP,)), refused("Acme Retail GmbH", 465, (EGRESS_IP,))]
    )
    assert len(problems) == 1
    problem = problems[0]
    assert problem.title == f"smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465"
    assert problem.remediation == (
        f"Permit {EGRESS_IP} on smtp.acme.example in the server's allowlist or firewall."
    )
    assert problem.where_lines() == [
        "Acme GmbH (smtp.acme.example port 587): allowlist.reachability",
        "Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability",
    ]
    assert (problem.status, problem.cause) == (Status.FAIL, Cause.CLIENT_IP_REJECTED)


def test_one_subject_tag_is_one_problem_across_checks_and_subcompanies() -> None:
    findings = [
        tagged(check, subject, address)
        for subject, address in (
            ("Acme GmbH", "jobs@acme.example"),
            ("Acme Retail GmbH", "jobs@retail.acme.example"),
        )
        for check in ("headers.retention", "headers.forwarding_style", "headers.dkim")
    ]
    problems = group_by_root_cause(findings)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.status is Status.FAIL  # the warn of forwarding_style joins the fails
    assert (
        problem.title
        == "mx.acme.example puts '[EXTERNAL]' in front of the Subject of redirected mail"
    )
    assert problem.checks == ("headers.retention", "headers.forwarding_style", "headers.dkim")
    # One fix naming the rule and both addresses, and what the tag breaks.
    assert "a transport rule" in problem.remediation
    assert "Exempt jobs@acme.example and jobs@retail.acme.example from that rule" in (
        problem.remediation
    )
    assert "(headers.retention)" in problem.remediation
    assert "(headers.dkim)" in problem.remediation
    assert problem.subjects == ("Acme GmbH", "Acme Retail GmbH")


@pytest.mark.parametrize(
    "findings",
    [
        # A wrong password for two accounts: two fixes, though the texts are the same.
        [auth_failed("Acme GmbH", "jobs@acme.example"), auth_failed("Acme Retail GmbH", "jobs@retail.acme.example")],
        # Different egress IPs refused on two ports: two changes.
        [refused("Acme GmbH", 587, (EGRESS_IP,)), refused("Acme Retail GmbH", 465, ("3.65.146.216",))],
        # The same egress IP refused by two hosts: two servers to change.
        [refused("Acme GmbH", 587, (EGRESS_IP,)), refused("Acme Retail GmbH", 587, (EGRESS_IP,), host="smtp.retail.example")],
        # The same tag put on by two servers: two rules.
        [
            tagged("headers.retention", "Acme GmbH", "jobs@acme.example"),
            tagged("headers.retention", "Acme Retail GmbH", "jobs@retail.acme.example", server="mx.retail.example"),
        ],
    ],
)  # fmt: skip
def test_different_fixes_are_never_merged(findings: list[Finding]) -> None:
    problems = group_by_root_cause(findings)
    assert [p.findings for p in problems] == [(f,) for f in findings]
    assert [p.title for p in problems] == [f.title for f in findings]
    assert [p.remediation for p in problems] == [f.remediation for f in findings]


def test_passes_and_skips_are_not_problems_and_order_follows_the_report() -> None:
    findings = [
        Finding(check="config.schema", status=Status.PASS, subject="Acme GmbH", title="valid"),
        auth_failed("Acme GmbH", "jobs@acme.example"),
        refused("Acme GmbH", 587, (EGRESS_IP,)),
        Finding(check="dns.spf", status=Status.WARN, subject="Acme GmbH", title="soft fail"),
        refused("Acme Retail GmbH", 465, (EGRESS_IP,)),
    ]
    problems = group_by_root_cause(findings)
    assert [p.title for p in problems] == [
        "Login refused",
        f"smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465",
        "soft fail",
    ]
    assert [root_cause_key(f) is None for f in findings] == [True, True, False, True, False]
    assert [p.title for p in to_fix(tuple(findings))] == [p.title for p in problems[:2]]


def snippet_finding(subject: str, port: int, family: str | None) -> Finding:
    return Finding(
        check="allowlist.reachability",
        status=Status.FAIL,
        subject=subject,
        title="refuses",
        cause=Cause.CLIENT_IP_REJECTED,
        evidence={
            "smtp_host": "smtp.acme.example",
            "port": port,
            "server_family": family,
            "snippets": {
                "postfix_access": f"{EGRESS_IP} OK",
                "exchange": f"Add {EGRESS_IP} on {port}",
                "exim": f"hostlist platform_clients = <; {EGRESS_IP}",
                "nftables": f"nft ... dport {port} accept",
            },
        },
    )


@pytest.mark.parametrize(
    ("family", "labels", "folded"),
    [
        (
            "postfix",
            ["Postfix (client access table)", "Firewall (nftables)", "Firewall (nftables)"],
            ["Exchange Server (on-premises)", "Exchange Server (on-premises)", "Exim (host list in the connect ACL)"],
        ),
        (
            "exim",
            ["Exim (host list in the connect ACL)", "Firewall (nftables)", "Firewall (nftables)"],
            ["Postfix (client access table)", "Exchange Server (on-premises)", "Exchange Server (on-premises)"],
        ),
        # Not recognised: the firewall's first, nothing folded away.
        (
            None,
            [
                "Firewall (nftables)", "Firewall (nftables)", "Postfix (client access table)",
                "Exchange Server (on-premises)", "Exchange Server (on-premises)",
                "Exim (host list in the connect ACL)",
            ],
            [],
        ),
    ],
)  # fmt: skip
def test_snippets_of_the_detected_family_first_each_text_once(
    family: str | None, labels: list[str], folded: list[str]
) -> None:
    blocks = snippets_to_copy(
        (
            snippet_finding("Acme GmbH", 587, family),
            snippet_finding("Acme Retail GmbH", 465, family),
        )
    )
    assert [b.label for b in blocks if not b.folded] == labels
    assert [b.label for b in blocks if b.folded] == folded
    postfix = next(b for b in blocks if b.label.startswith("Postfix"))
    # The same lines for both ports are one block, headed by both places.
    assert postfix.subject == "Acme GmbH, Acme Retail GmbH (smtp.acme.example ports 587, 465)"


# -- the demo scenario, audited in the sandbox -----------------------------------------------


def audit(scenario_name: str, directory: Path, **changes: object) -> Report:
    scenario = load_scenario(scenario_name)
    if changes:
        scenario = with_changes(scenario, **changes)

    async def run() -> Report:
        world = Sandbox(scenario, state_dir=directory / "state", environ={})
        async with world:
            result = await run_audit(ACME, sandbox=world)
        assert result.config_error is None
        return result.report

    report = asyncio.run(run())
    write_report(report, directory / "report")
    return report


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str, str]:
    directory = tmp_path_factory.mktemp("demo")
    report = audit("demo", directory)
    html = (directory / "report" / "report.html").read_text(encoding="utf-8")
    markdown = (directory / "report" / "report.md").read_text(encoding="utf-8")
    return report, html, markdown


def test_the_demo_has_two_root_causes_behind_six_failing_findings(
    demo: tuple[Report, str, str],
) -> None:
    report, _, _ = demo
    failing = [f for f in report.findings if f.status >= Status.FAIL]
    assert len(failing) == 6
    problems = to_fix(report.findings)
    assert len(problems) == 2
    egress, tag = problems
    assert egress.title == f"smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465"
    assert egress.where_lines() == [
        "Acme GmbH (smtp.acme.example port 587): allowlist.reachability",
        "Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability",
    ]
    assert (
        tag.title == "mx.acme.example puts '[EXTERNAL]' in front of the Subject of redirected mail"
    )
    assert tag.where_lines() == [
        "Acme GmbH (jobs@acme.example): headers.retention, headers.forwarding_style, headers.dkim",
        "Acme Retail GmbH (jobs@retail.acme.example): headers.retention, headers.forwarding_style, "
        "headers.dkim",
    ]
    assert "Exempt jobs@acme.example and jobs@retail.acme.example" in tag.remediation
    # The checks name the root cause in the evidence; the six header findings name one.
    header = [
        f for f in report.findings if f.check.startswith("headers.") and f.status > Status.PASS
    ]
    assert len(header) == 6
    assert {root_cause_key(f) for f in header} == {root_cause_key(header[0])}
    assert header[0].evidence["root_cause"]["subject_tag"] == "[EXTERNAL]"
    assert header[0].evidence["root_cause"]["server"] == "mx.acme.example"
    # The JSON report keeps one entry per finding: grouping is presentation.
    assert len(report.to_dict()["findings"]) == len(report.findings)


def fix_section_html(page: str) -> str:
    return page[page.index('<section id="fix-first">') :].split("</section>", 1)[0]


def test_the_demo_html_lists_two_problems_with_every_place(demo: tuple[Report, str, str]) -> None:
    _, page, _ = demo
    fix = fix_section_html(page)
    items = re.findall(r'<li><span class="badge status-(\w+)">', fix)
    assert items == ["fail", "fail"]
    assert "2 fixes cover the 6 failing findings." in fix
    first, second = fix.split('<li><span class="badge')[1:]
    assert f"smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465" in first
    assert "<li>Acme GmbH (smtp.acme.example port 587): allowlist.reachability</li>" in first
    assert "<li>Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability</li>" in first
    assert "puts &#x27;[EXTERNAL]&#x27; in front of the Subject" in second
    for subject in ("Acme GmbH (jobs@acme.example)", "Acme Retail GmbH (jobs@retail.acme.example)"):
        assert f"<li>{subject}: headers.retention, headers.forwarding_style, headers.dkim</li>" in (
            second
        )


def test_the_demo_flow_tables_need_attention_once_per_root_cause(
    demo: tuple[Report, str, str],
) -> None:
    report, page, markdown = demo
    attention = {
        flow: re.findall(
            r'<tr data-check="([\w. ]+)">', section.split('<details class="passed">')[0]
        )
        for flow, section in re.findall(r'<section id="flow-(\w+)">(.*?)</section>', page, re.S)
    }
    assert attention == {
        "configuration": [],
        "outbound": ["allowlist.reachability"],
        "inbound": ["headers.retention headers.forwarding_style headers.dkim"],
        "sender": [],
    }
    # What each finding found is still there, in the row of its problem.
    for finding in report.findings:
        if finding.status >= Status.WARN:
            assert render_html_text(finding.title) in page
    rows = [
        line for line in markdown.splitlines() if re.match(r"\| \*\*(FAIL|WARN|ERROR)\*\* ", line)
    ]
    assert len(rows) == 2
    assert rows[1].startswith(
        "| **FAIL** | headers.retention, headers.forwarding\\_style, headers.dkim | Acme GmbH "
        "(jobs@acme.example)<br>Acme Retail GmbH (jobs@retail.acme.example) | mx.acme.example "
    )


def render_html_text(value: str) -> str:
    return html.escape(value, quote=True)


def test_the_report_page_does_not_send_its_reader_to_itself(demo: tuple[Report, str, str]) -> None:
    _, page, markdown = demo
    assert "report.html" not in page
    assert "report.html" not in markdown


def test_the_demo_markdown_lists_two_problems_with_every_place(
    demo: tuple[Report, str, str],
) -> None:
    _, _, markdown = demo
    fix = markdown.split("## What to fix first\n\n", 1)[1].split("\n## ", 1)[0]
    items = [line for line in fix.splitlines() if re.match(r"\d+\. ", line)]
    assert len(items) == 2
    assert items[0].startswith(
        f"1. **FAIL** smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465: "
    )
    assert items[1].startswith(
        "2. **FAIL** mx.acme.example puts '\\[EXTERNAL\\]' in front of the Subject of "
        "redirected mail: "
    )
    places = [line for line in fix.splitlines() if line.startswith("   - ")]
    assert places == [
        "   - Acme GmbH (smtp.acme.example port 587): allowlist.reachability",
        "   - Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability",
        "   - Acme GmbH (jobs@acme.example): headers.retention, headers.forwarding\\_style, "
        "headers.dkim",
        "   - Acme Retail GmbH (jobs@retail.acme.example): headers.retention, "
        "headers.forwarding\\_style, headers.dkim",
    ]


def test_a_postfix_greeting_puts_the_postfix_snippets_first(demo: tuple[Report, str, str]) -> None:
    report, page, markdown = demo
    reachability = [f for f in report.findings if f.check == "allowlist.reachability"]
    assert {f.evidence.get("server_family") for f in reachability} == {"postfix", None}
    settings = markdown.split("### Allowlist\n\n", 1)[1]
    headings = re.findall(r"^#### (.*)$", settings, re.MULTILINE)
    assert headings[:2] == [
        "Acme GmbH, Acme Retail GmbH (smtp.acme.example ports 587, 465): Postfix (client access "
        "table)",
        "Acme GmbH, Acme Retail GmbH (smtp.acme.example ports 587, 465): Postfix (mynetworks)",
    ]
    shown = settings.split("### Allowlist for other servers", 1)[0]
    assert "Exchange" not in shown
    assert "smtp.acme.example greets as Postfix." in shown
    html_settings = page[page.index('<section id="settings">') :].split("</section>", 1)[0]
    first_exchange = html_settings.index("Exchange Server (on-premises)")
    assert html_settings.index("Postfix (client access table)") < first_exchange
    assert html_settings.index('<details class="passed">') < first_exchange


def test_a_hostile_banner_leaves_no_entity_and_no_tag_in_the_markdown(tmp_path: Path) -> None:
    banner = 'ESMTP <script>alert("banner")</script> | cell &amp; &#x27; <!-- x'
    report = audit("markup-banner", tmp_path, submission={"banner": banner})
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert ENTITY.findall(markdown) == []
    assert TAG.findall(outside_fences(markdown)) == []
    # The banner is there, as text, its table row intact.
    quoting = [line for line in markdown.splitlines() if "alert(" in line]
    assert quoting
    assert all(
        r'\<script>alert("banner")\</script> \| cell \&amp; &\#x27; \<\!-- x' in line
        for line in quoting
    )
    rows = [line for line in markdown.splitlines() if line.startswith("| **")]
    assert {len(UNESCAPED_PIPE.findall(row)) for row in rows} == {8}
    assert any(banner in f.detail for f in report.findings)


def test_a_report_of_one_problem_per_finding_says_nothing_about_fixes() -> None:
    page = render_html(make_report())
    assert "fixes cover" not in page
    assert "fixes cover" not in render_markdown(make_report())


def test_the_notebooks_what_to_fix_table_has_a_row_per_problem(tmp_path: Path) -> None:
    from diagnostics.audit import AuditResult
    from diagnostics.notebook import NotebookAudit
    from diagnostics.report.tables import StyledTable

    findings = (
        Finding(check="dns.spf", status=Status.WARN, subject="Acme GmbH", title="soft fail"),
        refused("Acme GmbH", 587, (EGRESS_IP,)),
        auth_failed("Acme Retail GmbH", "jobs@retail.acme.example"),
        refused("Acme Retail GmbH", 465, (EGRESS_IP,)),
        Finding(check="config.schema", status=Status.PASS, subject="Acme GmbH", title="valid"),
    )
    audit = NotebookAudit(AuditResult(make_report(*findings)), tmp_path / "report.json")
    table = audit.to_fix()
    assert isinstance(table, StyledTable)
    frame = table.frame
    assert list(frame.columns) == ["status", "problem", "applies to", "remediation"]
    assert frame.to_dict("records") == [
        {
            "status": "fail",
            "problem": f"smtp.acme.example refuses egress IP {EGRESS_IP} on ports 587 and 465",
            "applies to": "Acme GmbH (smtp.acme.example port 587): allowlist.reachability; "
            "Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability",
            "remediation": f"Permit {EGRESS_IP} on smtp.acme.example in the server's allowlist "
            "or firewall.",
        },
        {
            "status": "fail",
            "problem": "Login refused",
            "applies to": "Acme Retail GmbH (smtp.acme.example port 587): smtp.auth",
            "remediation": "Check Account and Password in the recruiting email settings.",
        },
        {
            "status": "warn",
            "problem": "soft fail",
            "applies to": "Acme GmbH: dns.spf",
            "remediation": "",
        },
    ]
