"""``maildiag headers``, called as a function: exit codes, the JSON fields, the text report, and
header text from strangers printed harmlessly."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "messages"
MAX = CORPUS / "originals" / "max-mustermann.eml"


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour forced by the environment: the output is compared as plain text."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["headers", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def run_json(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(*argv, "--json")
    assert err == ""
    return code, json.loads(out)


def test_a_retained_redirect_exits_0_with_every_field() -> None:
    code, report = run_json(str(CORPUS / "exchange-transport-redirect.eml"), "--original", str(MAX))
    assert code == 0
    assert sorted(report) == [
        "arc",
        "authentication_results",
        "evidence",
        "family",
        "hops",
        "loop",
        "remediation",
        "retention",
        "styles",
        "total_delay_s",
    ]
    assert (report["family"], report["styles"], report["remediation"]) == (
        "exchange",
        ["redirect"],
        None,
    )
    assert [h["by_host"] for h in report["hops"]] == [
        "mail.example.org",
        "AM6EUR05FT012.mail.protection.outlook.com",
        "AS8PR01MB7654.eurprd01.prod.outlook.com",
        "AM0PR01MB1234.eurprd01.prod.outlook.com",
        "mx.m.personio.de",
    ]
    assert [h["delay_s"] for h in report["hops"]] == [None, 1.0, 1.0, 1.0, 1.0]
    assert report["hops"][1]["timestamp"] == "2026-11-26T08:30:02+00:00"
    assert report["total_delay_s"] == 4.0
    assert report["loop"] == {"looped": False, "evidence": [], "hop_count": 5}
    assert report["retention"]["retained"] is True
    assert report["retention"]["diffs"] == []
    assert report["retention"]["sent_structure"] == "text/plain"
    assert report["arc"]["complete"] is True
    assert report["arc"]["validated"] is False
    assert report["authentication_results"][0] == {
        "authserv_id": "mx.m.personio.de",
        "method": "dkim",
        "result": "pass",
        "reason": None,
        "properties": {
            "header.d": "example.org",
            "header.i": "@example.org",
            "header.a": "rsa-sha256",
            "header.s": "mail2026",
            "header.b": "Qm9ndXM1",
        },
    }


def test_a_tagged_message_fails_retention_and_names_each_difference() -> None:
    code, report = run_json(
        str(CORPUS / "m365-external-tag-disclaimer.eml"), "--original", str(MAX)
    )
    assert code == 1
    assert report["styles"] == ["subject_tagged", "footer_appended", "redirect"]
    assert report["retention"]["retained"] is False
    assert report["retention"]["diffs"] == [
        {
            "name": "Subject",
            "kind": "changed",
            "sent": "Re: Ihre Bewerbung als Store Manager",
            "arrived": "[EXTERNAL] Re: Ihre Bewerbung als Store Manager",
        }
    ]
    assert report["retention"]["body_changed"] is True
    assert report["remediation"].startswith("A mail flow rule prepends a tag such as")


def test_a_forward_without_the_original_exits_1() -> None:
    code, report = run_json(str(CORPUS / "gmail-manual-forward.eml"))
    assert code == 1
    assert (report["styles"], report["family"], report["retention"]) == (
        ["forward_inline"],
        "google",
        None,
    )
    assert report["evidence"] == [
        "forward_inline: the Subject starts with 'Fwd:'",
        "forward_inline: the body quotes the original after a forwarded-message separator "
        "(Gmail, Thunderbird)",
    ]


def test_a_redirect_without_the_original_exits_0() -> None:
    code, report = run_json(str(CORPUS / "sendmail-alias-redirect.eml"))
    assert (code, report["styles"], report["family"]) == (0, ["redirect"], "sendmail")


def test_a_message_without_forwarding_signs_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "direct.eml"
    path.write_bytes(
        b"Received: from mail.example.org (mail.example.org [198.51.100.7]) by mx.acme.example "
        b"(Postfix) with ESMTPS id 4Zb for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:02 +0100\r\n"
        b"From: Max <max.mustermann@example.org>\r\nTo: jobs@acme.example\r\n"
        b"Subject: Bewerbung\r\nDate: Thu, 26 Nov 2026 09:30:00 +0100\r\n"
        b"Message-ID: <a@example.org>\r\n\r\nHallo\r\n"
    )
    code, report = run_json(str(path))
    # Delivered straight to the company: no server passed it on, so no family to name.
    assert (code, report["styles"], report["evidence"], report["family"]) == (0, [], [], None)


def test_the_text_report_shows_the_chain_and_the_verdict() -> None:
    code, out, err = run(
        str(CORPUS / "exim-forward-subject-tag.eml"),
        "--original",
        str(CORPUS / "originals" / "lena-weber.eml"),
    )
    assert (code, err) == (1, "")
    assert "┃ hop ┃ from" in out
    lines = out.splitlines()
    assert "Total delay: 5.0 s over 3 hop(s)" in lines
    assert "Server family: exim" in lines
    assert "Forwarding style: subject_tagged, redirect" in lines
    assert "  subject_tagged: '[EXT]' was put in front of the Subject" in lines
    assert "Loop: none (3 hop(s))" in lines
    assert "Retention: NOT retained" in lines
    assert (
        "  Subject changed ('Bewerbung Teamleitung Logistik (Ref. 2026-118)' -> "
        "'[EXT] Bewerbung Teamleitung Logistik (Ref. 2026-118)')"
    ) in lines
    assert lines[-1] == "Verdict: FAIL"
    assert any(line.startswith("Fix (subject_tagged, exim): A system filter") for line in lines)


HOSTILE = (
    b"Received: from evil\x1b[31m.example.org (evil.example.org [198.51.100.66]) by "
    b"mx.acme.example (Postfix) with ESMTP id X\x1b]0;pwned\x07 for <jobs@acme.example>; "
    b"Thu, 26 Nov 2026 09:30:02 +0100\r\n"
    b"Authentication-Results: mx.acme.example; spf=pass smtp.mailfrom=a\x1b[2J@example.org\r\n"
    b'From: "Max \x1b[2J<script>alert(1)</script>" <max.mustermann@example.org>\r\n'
    b"To: jobs@acme.example\r\n"
    b"Subject: [EXTERNAL] Hallo \x1b[2J<script>alert(1)</script> \xe2\x80\xae gnp.exe\r\n"
    b"Date: Thu, 26 Nov 2026 09:30:00 +0100\r\nMessage-ID: <h@example.org>\r\n\r\nHallo\r\n"
)


def test_header_text_from_strangers_is_printed_harmlessly(tmp_path: Path) -> None:
    path = tmp_path / "hostile.eml"
    path.write_bytes(HOSTILE)
    code, out, err = run(str(path))
    assert (code, err) == (1, "")
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "\u202e" not in out
    assert "  subject_tagged: the Subject starts with the tag '[EXTERNAL]'" in out.splitlines()
    # The escapes are shown, not obeyed.
    assert "mx.acme.example: spf=pass (smtp.mailfrom=a\\x1b[2J@example.org)" in out
    assert "evil\\x1b[31m.example.org" in out
    code, report = run_json(str(path))
    assert report["hops"][0]["from_host"] == "evil\x1b[31m.example.org"
    assert report["authentication_results"][0]["properties"] == {
        "smtp.mailfrom": "a\x1b[2J@example.org"
    }


def test_a_hostile_subject_reaches_the_text_report_without_escapes(tmp_path: Path) -> None:
    original = tmp_path / "sent.eml"
    original.write_bytes(HOSTILE.replace(b"[EXTERNAL] ", b""))
    arrived = tmp_path / "arrived.eml"
    arrived.write_bytes(HOSTILE)
    code, out, _ = run(str(arrived), "--original", str(original))
    assert code == 1
    # Values in a difference are shown as Python literals: the escape is visible, not obeyed.
    expected = "Hallo \\x1b[2J<script>alert(1)</script> \\u202e gnp.exe"
    assert f"  Subject changed ('{expected}' -> '[EXTERNAL] {expected}')" in out.splitlines()
    assert "\x1b" not in out


def test_stdin_is_read_for_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (CORPUS / "exim-redirect-srs.eml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, report = run_json("-")
    assert (code, report["styles"], report["family"]) == (0, ["redirect"], "exim")


@pytest.mark.parametrize("where", ["received", "original"])
def test_a_missing_file_exits_2_naming_it(tmp_path: Path, where: str) -> None:
    missing = tmp_path / "nowhere.eml"
    argv = (
        [str(missing)]
        if where == "received"
        else [str(CORPUS / "exim-redirect-srs.eml"), "--original", str(missing)]
    )
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err == f"maildiag: cannot read {missing}: No such file or directory\n"


def test_a_file_without_headers_and_usage_errors_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    assert run(str(empty)) == (
        2,
        "",
        f"maildiag: {empty}: no header fields, not an e-mail message\n",
    )
    assert run("-", "--original", "-")[0] == 2
    assert run()[0] == 2
