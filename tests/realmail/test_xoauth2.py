"""``maildiag audit --roundtrip`` reading the company mailbox with an OAuth2 token.

The account file's ``mailbox: token_command:`` runs a command that prints a bearer token;
maildiag logs in to the real Dovecot with ``AUTHENTICATE XOAUTH2``, and Dovecot's ``oauth2``
passdb asks a loopback token introspection endpoint (RFC 7662) whether the token is active
for ``jobs@company.test``. The token reaches the command through the environment, so that
the account file holds no secret and no file of the user's may contain it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realmail.servers import JOBS, MX_HOSTNAME, RealMail
from tests.realmail.test_live_roundtrip import (
    CHECKS,
    account_file,
    assert_no_secret,
    findings,
    run_audit,
)

TOKEN = "ya29.Good-Bearer-Token-4711"
UNKNOWN = "ya29.Revoked-Bearer-Token-0815"
ERRORED = {
    "redirect.roundtrip": ("error", "auth_failed"),
    "redirect.local_copy": ("error", "auth_failed"),
    "redirect.loop": ("skip", None),
    "headers.retention": ("skip", None),
}


def token_mailbox(code: str) -> str:
    """A ``mailbox:`` block that logs in with what ``python -c code`` prints (YAML list)."""
    command = json.dumps([sys.executable, "-c", code])
    return f"  mailbox: {{port: 993, encryption: tls, token_command: {command}}}"


PRINT_TOKEN = token_mailbox("import os; print(os.environ['MAILDIAG_TEST_TOKEN'])")


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder of the user's, the command run from it."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder


@pytest.fixture
def oauth_world(realmail_factory: Callable[..., RealMail]) -> RealMail:
    """The default world whose IMAP also takes ``TOKEN`` by XOAUTH2."""
    return realmail_factory(oauth_token=TOKEN)


def assert_secrets_kept(world: RealMail, folder: Path, output: str, *tokens: str) -> None:
    for secret in (*tokens, world.jobs_password):
        assert_no_secret(folder, output, secret)


def test_the_right_token_logs_in_with_xoauth2(
    oauth_world: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILDIAG_TEST_TOKEN", TOKEN)
    config = account_file(user_folder, mailbox=PRINT_TOKEN)
    code, report, output = run_audit(
        oauth_world, config, "--roundtrip", "--wait", "6", monkeypatch=monkeypatch
    )
    assert findings(report) == dict.fromkeys(CHECKS, ("pass", None)), output
    assert code == 0
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert trip["evidence"]["live"]["login"] == "AUTHENTICATE XOAUTH2"
    assert trip["evidence"]["live"]["mailbox"] == f"{JOBS} on {MX_HOSTNAME}:993"
    # Dovecot really asked the introspection endpoint, and the token was active.
    assert oauth_world.introspection is not None
    assert oauth_world.introspection.answers
    assert all(oauth_world.introspection.answers)
    oauth_world.wait_for_delivery()
    assert any(trip["evidence"]["token"].encode() in m.data for m in oauth_world.sink_messages)
    assert_secrets_kept(oauth_world, user_folder, output, TOKEN)


def test_a_token_the_server_does_not_know_is_refused(
    oauth_world: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILDIAG_TEST_TOKEN", UNKNOWN)
    config = account_file(user_folder, mailbox=PRINT_TOKEN)
    code, report, output = run_audit(oauth_world, config, "--roundtrip", monkeypatch=monkeypatch)
    assert findings(report) == ERRORED, output
    assert code == 1
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert trip["title"] == f"Cannot read the mailbox {JOBS} on {MX_HOSTNAME}:993"
    assert trip["remediation"].startswith(
        "The server refused the OAuth2 token that company.mailbox.token_command printed."
    )
    assert trip["detail"].endswith("Authentication failed. Nothing was sent.")
    assert oauth_world.introspection is not None
    assert oauth_world.introspection.answers == [False]
    oauth_world.wait_for_delivery()
    assert oauth_world.sink_messages == []
    assert oauth_world.mailbox_raw() == []
    assert_secrets_kept(oauth_world, user_folder, output, UNKNOWN, TOKEN)


def test_a_failing_token_command_is_a_clear_error(
    oauth_world: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILDIAG_TEST_TOKEN", TOKEN)
    failing = token_mailbox(
        "import sys; sys.stderr.write('refresh token expired: sign in again\\n'); sys.exit(3)"
    )
    config = account_file(user_folder, mailbox=failing)
    code, report, output = run_audit(oauth_world, config, "--roundtrip", monkeypatch=monkeypatch)
    assert findings(report) == ERRORED, output
    assert code == 1
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert "exited with status 3" in trip["detail"]
    assert "refresh token expired" in trip["detail"]
    assert trip["remediation"].startswith("Run company.mailbox.token_command by hand")
    # No token, so Dovecot was never asked, and nothing was sent.
    assert oauth_world.introspection is not None
    assert oauth_world.introspection.answers == []
    oauth_world.wait_for_delivery()
    assert oauth_world.sink_messages == []
    assert_secrets_kept(oauth_world, user_folder, output, TOKEN)
