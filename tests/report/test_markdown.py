"""Tests for the Markdown report: inert outside text, intact tables, fences, redaction."""

from __future__ import annotations

import os
import re
from pathlib import Path

from diagnostics.findings import Cause, Finding, Status
from diagnostics.report.markdown import fence_for, inline, render_markdown, write_markdown
from tests.report.test_html import make_report

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
# An HTML character reference that a Markdown renderer would decode (not one escaped with a
# backslash, which shows as written).
ENTITY = re.compile(r"(?<!\\)&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
# The start of an HTML tag or comment, but the <br> that breaks a line in a table cell.
TAG = re.compile(r"(?<!\\)<(?!br>)[A-Za-z/!?]")
FENCED = re.compile(r"^(`{3,})\n.*?\n\1$", re.MULTILINE | re.DOTALL)


def outside_fences(text: str) -> str:
    return FENCED.sub("", text)


def test_tables_keep_their_shape() -> None:
    text = render_markdown(make_report())
    flows = text.split("## At a glance\n\n", 1)[1].split("\n\n", 1)[1]
    rows = [line for line in flows.splitlines() if line.startswith("|")]
    assert len(rows) == 4 * 2 + 8
    # A pipe escaped with a backslash is text inside its cell (GitHub-flavoured tables).
    assert {len(UNESCAPED_PIPE.findall(row)) for row in rows} == {8}
    glance = text.split("## At a glance\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert glance == [
        "| (Sub)company | Configuration | Outbound | Inbound | Sender |",
        "| --- | --- | --- | --- | --- |",
        "| Acme GmbH | **PASS** | **FAIL** | **FAIL** | — |",
        "| Acme Retail GmbH | — | **ERROR** | — | — |",
        "| Acme Labs GmbH | — | — | — | **SKIP** |",
    ]
    assert (
        "| **ERROR** | smtp.connect | Acme Retail GmbH | \\<script>alert(1)\\</script> "
        '"quotes" & a \\| pipe<br>second line\ufffdbell |'
    ) in text


def test_outside_text_is_inert() -> None:
    text = render_markdown(make_report())
    # No tag a renderer would take as HTML, and no entity it would decode, outside fences.
    assert TAG.findall(outside_fences(text)) == []
    assert "\\<script>alert(1)\\</script>" in text
    assert ENTITY.findall(text) == []
    assert "<evil>" in text  # inside a fenced block only, where Markdown shows it literally
    assert text.count("<evil>") == 1
    assert "\x07" not in text
    assert inline("*bold* [link](x) `code` a\\b") == r"\*bold\* \[link\](x) \`code\` a\\b"
    assert inline("one\r\ntwo\nthree") == "one<br>two<br>three"
    assert inline("a < b & c &amp; d | e $x$") == r"a \< b & c \&amp; d \| e \$x\$"


def test_order_verdict_fix_first_flows_settings() -> None:
    text = render_markdown(make_report())
    assert text.startswith("# Verdict: error — 5 checks need action\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## What to fix first",
        "## At a glance",
        "## **PASS** Configuration",
        "## **ERROR** Outbound: the platform sends as you",
        "## **FAIL** Inbound: replies reach the platform",
        "## **SKIP** Sender: who each candidate mail comes from",
        "## Settings to copy",
        "## About this run",
    ]
    fix = text.split("## What to fix first\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(" ", 1)[0] for line in fix] == ["1.", "2.", "3.", "4.", "5."]
    assert fix[0] == (
        "1. **FAIL** Authentication failed (smtp.auth, Acme GmbH): Enter the mailbox's password."
    )
    assert "Test message did not arrive" in fix[2]
    assert "Use port 465 with Encryption SSL" in fix[4]


def test_settings_in_fences_longer_than_content_backticks() -> None:
    assert fence_for("plain") == "```"
    assert fence_for("a ```` b ` c") == "`````"
    finding = Finding(
        check="allowlist.coverage",
        status=Status.FAIL,
        subject="Acme GmbH",
        title="Allowlist misses 1 egress IP",
        cause=Cause.CLIENT_IP_REJECTED,
        evidence={"snippets": {"postfix": "x ```` y\n```\nz"}},
    )
    text = render_markdown(make_report(finding))
    assert "#### Acme GmbH: postfix\n\n`````\nx ```` y\n```\nz\n`````\n" in text


def test_no_secret() -> None:
    text = render_markdown(make_report())
    assert "canary-secret-123" not in text
    assert r"password \*\*\*\*\*\*\*\*" in text


def test_write_markdown_replaces_atomically(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("old", encoding="utf-8")
    path = write_markdown(make_report(), tmp_path)
    assert path == tmp_path / "report.md"
    assert path.read_text(encoding="utf-8") == render_markdown(make_report())
    assert os.listdir(tmp_path) == ["report.md"]
