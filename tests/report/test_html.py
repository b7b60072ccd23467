"""Tests for the HTML report: escaping of outside text, layout order, redaction, writing."""

from __future__ import annotations

import datetime
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from diagnostics.findings import Cause, Finding, Status
from diagnostics.report import Report
from diagnostics.report.html import flow_of, render_html, verdict_line, write_html
from diagnostics.secrets import MASK, Secret

WHEN = datetime.datetime(2025, 3, 1, 9, 30, 15, tzinfo=datetime.UTC)
CANARY = Secret("canary-secret-123", source="test")
HOSTILE = '<script>alert(1)</script> "quotes" & a | pipe\nsecond line\x07bell'

FINDINGS = (
    Finding(check="config.schema", status=Status.PASS, subject="Acme GmbH", title="valid"),
    Finding(
        check="smtp.auth",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Authentication failed",
        detail=f"535 5.7.8 invalid for password {CANARY.reveal()}",
        evidence={"transcript": [f"AUTH PLAIN {CANARY.reveal()}", "535 5.7.8"]},
        cause=Cause.AUTH_FAILED,
        remediation="Enter the mailbox's password.",
        duration_ms=41.25,
    ),
    Finding(
        check="smtp.connect",
        status=Status.ERROR,
        subject="Acme Retail GmbH",
        title=HOSTILE,
        detail=HOSTILE,
        evidence={"banner": HOSTILE},
        cause=Cause.CONNECTION_TIMEOUT,
        remediation="Open port 587 | 465 for the platform.",
        duration_ms=1500.0,
    ),
    Finding(
        check="redirect.roundtrip",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Test message did not arrive",
        cause=Cause.FORWARDING_BLOCKED,
        remediation="Redirect jobs@acme.example to the inbound address.",
    ),
    Finding(check="dns.spf", status=Status.WARN, subject="Acme GmbH", title="soft fail"),
    Finding(
        check="sender.display_name",
        status=Status.SKIP,
        subject="Acme Labs GmbH",
        title="No employees",
    ),
    Finding(
        check="allowlist.coverage",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Allowlist misses 1 egress IP",
        cause=Cause.CLIENT_IP_REJECTED,
        remediation="Permit 3.65.146.216.",
        evidence={
            "snippets": {
                "postfix": "mynetworks = 3.65.146.216/32 <evil>",
                "firewall": "iptables -A INPUT -s 3.65.146.216/32 -p tcp --dport 587 -j ACCEPT",
            }
        },
    ),
    Finding(
        check="smtp.settings_probe",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Use port 465 with Encryption SSL",
        cause=Cause.TLS_MISMATCH,
        remediation="In Settings > Email, set Port 465 and Encryption SSL.",
    ),
)


def make_report(*findings: Finding) -> Report:
    return Report(
        findings=findings or FINDINGS,
        account="acme",
        company="Acme GmbH",
        mode="sandbox",
        config_file="fixtures/configs/acme.yaml",
        scenario="healthy",
        generated_at=WHEN,
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def test_outside_text_is_escaped() -> None:
    page = render_html(make_report())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;quotes&quot; &amp; a | pipe" in page
    assert "&lt;evil&gt;" in page
    assert "\x07" not in page
    collector = parse(page)
    assert "script" not in collector.tags
    # The parsed text holds the stranger's text as text, control character replaced.
    assert '<script>alert(1)</script> "quotes" & a | pipe\nsecond line\ufffdbell' in "".join(
        collector.text
    )


def test_self_contained() -> None:
    page = render_html(make_report())
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
    assert "http://" not in page
    assert "https://" not in page
    tags = set(parse(page).tags)
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "style" in tags
    assert page.rstrip().endswith("</html>")


def test_verdict_first_then_fix_list_in_order() -> None:
    page = render_html(make_report())
    verdict = "Verdict: error — 5 checks need action"
    assert verdict_line(make_report()) == verdict
    assert page.index(verdict) < page.index("<table")
    assert page.index(verdict) < page.index("What to fix first") < page.index("<table")
    fix = page[page.index("What to fix first") : page.index("<table")]
    titles = [
        "Authentication failed",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "Test message did not arrive",
        "Allowlist misses 1 egress IP",
        "Use port 465 with Encryption SSL",
    ]
    positions = [fix.index(title) for title in titles]
    assert positions == sorted(positions)
    assert fix.count("<li>") == 5
    assert "soft fail" not in fix
    assert "Enter the mailbox&#x27;s password." in fix


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ((Status.FAIL,), "Verdict: fail — 1 check needs action"),
        ((Status.WARN, Status.PASS), "Verdict: warn — nothing must be fixed, 1 warning to review"),
        ((Status.PASS,), "Verdict: pass — nothing needs action"),
        ((Status.SKIP,), "Verdict: skip — nothing could be checked"),
    ],
)
def test_verdict_line(summary: tuple[Status, ...], expected: str) -> None:
    findings = [
        Finding(check="dns.mx", status=s, subject="A", title="t", cause=Cause.UNKNOWN)
        for s in summary
    ]
    assert verdict_line(make_report(*findings)) == expected


def test_findings_grouped_by_flow() -> None:
    assert [flow_of(f.check) for f in FINDINGS] == [
        "configuration",
        "outbound",
        "outbound",
        "inbound",
        "outbound",
        "sender",
        "outbound",
        "outbound",
    ]
    page = render_html(make_report())
    headings = re.findall(r'<section id="flow-(\w+)">', page)
    assert headings == ["configuration", "outbound", "inbound", "sender"]
    sections = {
        flow: page[page.index(f'id="flow-{flow}"') :].split("</section>", 1)[0] for flow in headings
    }
    expected = {
        "configuration": ["config.schema"],
        "outbound": [
            "smtp.auth",
            "smtp.connect",
            "dns.spf",
            "allowlist.coverage",
            "smtp.settings_probe",
        ],
        "inbound": ["redirect.roundtrip"],
        "sender": ["sender.display_name"],
    }
    for flow, checks in expected.items():
        rows = re.findall(r'<tr data-check="([\w.]+)">', sections[flow])
        assert rows == checks
    # What needs attention is in the open; what passed or was skipped is folded away.
    outbound = sections["outbound"]
    assert '<details class="passed">' not in outbound  # no pass or skip in this flow
    assert outbound.startswith(
        'id="flow-outbound">\n<h2><span class="badge status-error">ERROR</span> Outbound'
    )
    assert '<p class="meta">1 error, 3 fail, 1 warn</p>' in outbound
    configuration = sections["configuration"]
    assert '<details class="passed">\n<summary>1 passed</summary>' in configuration
    assert '<p class="meta">' not in configuration  # nothing needs attention: no count line
    sender = sections["sender"]
    assert "<summary>1 skipped</summary>" in sender


def test_settings_to_copy_and_run_facts() -> None:
    page = render_html(make_report())
    settings = page[page.index('id="settings"') :].split("</section>", 1)[0]
    assert "<pre>mynetworks = 3.65.146.216/32 &lt;evil&gt;</pre>" in settings
    assert "--dport 587 -j ACCEPT</pre>" in settings
    assert "Use port 465 with Encryption SSL" in settings
    assert "In Settings &gt; Email, set Port 465 and Encryption SSL." in settings
    run = page[page.index('id="run"') :]
    assert "<dt>Scenario</dt><dd>healthy</dd>" in run
    assert "<dt>Generated at</dt><dd>2025-03-01T09:30:15+00:00</dd>" in run
    assert "<dt>Config file</dt><dd>fixtures/configs/acme.yaml</dd>" in run


def test_no_secret() -> None:
    page = render_html(make_report())
    assert "canary-secret-123" not in page
    assert MASK in page


def test_write_html_replaces_atomically(tmp_path: Path) -> None:
    old = tmp_path / "report.html"
    old.write_text("old", encoding="utf-8")
    path = write_html(make_report(), tmp_path)
    assert path == old
    assert path.read_text(encoding="utf-8") == render_html(make_report())
    assert os.listdir(tmp_path) == ["report.html"]


def test_at_a_glance_shows_the_worst_status_per_company_and_flow() -> None:
    page = render_html(make_report())
    glance = page[page.index('<section id="glance">') :].split("</section>", 1)[0]
    assert page.index('id="fix-first"') < page.index('id="glance"') < page.index('id="flow-')
    header = re.findall(r'<th scope="col">([^<]+)</th>', glance)
    assert header == ["(Sub)company", "Configuration", "Outbound", "Inbound", "Sender"]
    rows = {
        subject: re.findall(r"<td>(?:<span class=\"badge status-(\w+)\">\w+</span>|—)</td>", cells)
        for subject, cells in re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', glance)
    }
    assert rows == {
        "Acme GmbH": ["pass", "fail", "fail", ""],
        "Acme Retail GmbH": ["", "error", "", ""],
        "Acme Labs GmbH": ["", "", "", "skip"],
    }


def test_snippets_are_headed_by_what_they_are_for() -> None:
    finding = Finding(
        check="allowlist.coverage",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Allowlist misses 1 egress IP",
        cause=Cause.CLIENT_IP_REJECTED,
        evidence={"snippets": {"nftables": "nft insert rule ...", "custom": "x"}},
    )
    page = render_html(make_report(finding))
    assert "<h4>Acme GmbH: Firewall (nftables)</h4>" in page
    assert "<h4>Acme GmbH: custom</h4>" in page  # a family the data file does not know
    assert "<dt>Findings</dt><dd>1 fail</dd>" in page
