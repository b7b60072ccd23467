"""The IMAP client's pure parts: quoting, folder names, and the token command."""

from __future__ import annotations

import sys

import pytest

from diagnostics.liveroundtrip import TokenCommandError, imap_date, is_bounce, run_token_command
from diagnostics.net.imap import decode_folder, quote


def test_quote_escapes_backslash_and_quote_and_refuses_what_only_a_literal_carries() -> None:
    assert quote('CORP\\jobs "x"') == '"CORP\\\\jobs \\"x\\""'
    for value in ("line\r\nbreak", "nul\x00", "Grüße"):
        with pytest.raises(ValueError):
            quote(value)


def test_folder_names_in_modified_utf7_are_decoded() -> None:
    assert decode_folder("INBOX") == "INBOX"
    assert decode_folder("Unerw&APw-nscht") == "Unerwünscht"
    assert decode_folder("Gel&APY-schte Elemente") == "Gelöschte Elemente"
    assert decode_folder("A&-B") == "A&B"
    assert decode_folder("&ZeVnLIqe-") == "日本語"


def test_imap_dates_are_english_and_a_day_early() -> None:
    # 2026-12-06 12:00 UTC
    assert imap_date(1796558400.0) == "5-Dec-2026"


def test_bounces_are_reports_or_from_a_mail_system() -> None:
    report = (
        b"From: MAILER-DAEMON@mx.company.test\r\nContent-Type: multipart/report; "
        b'report-type=delivery-status; boundary="b"\r\n\r\n--b--\r\n'
    )
    assert is_bounce(report)
    assert is_bounce(b"From: Mail Delivery System <MAILER-DAEMON@x>\r\nSubject: x\r\n\r\nbody")
    assert is_bounce(b"From: postmaster@contoso.com\r\nSubject: Undeliverable\r\n\r\nbody")
    assert not is_bounce(b"From: Jane <jane@company.test>\r\nSubject: Out of office\r\n\r\nx")


async def test_the_token_command_prints_the_token_on_its_first_line() -> None:
    token = await run_token_command(
        (sys.executable, "-c", "print('ya29.token-value'); print('second line')"), 10
    )
    assert token.reveal() == "ya29.token-value"
    assert str(token) != "ya29.token-value"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("/nonexistent/oama",), "token_command /nonexistent/oama: No such file or directory"),
        (
            (
                sys.executable,
                "-c",
                "import sys; sys.stderr.write('expired refresh token'); sys.exit(3)",
            ),
            "exited with status 3 and printed no token (expired refresh token)",
        ),
        ((sys.executable, "-c", "pass"), "printed no token"),
        ((sys.executable, "-c", "import time; time.sleep(30)"), "printed no token within 1 s"),
    ],
)
async def test_a_token_command_that_fails_says_how(argv: tuple[str, ...], said: str) -> None:
    with pytest.raises(TokenCommandError) as caught:
        await run_token_command(argv, 1)
    assert said in str(caught.value)
