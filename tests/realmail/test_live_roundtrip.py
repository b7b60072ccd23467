"""``maildiag audit --roundtrip`` against a real Postfix and a real Dovecot on loopback.

Each scenario runs the command as a user does (an account file in an empty folder, the
password in the environment, ``--dns-server`` and ``--ca-file`` for the loopback world) and
asserts the exact findings (check, status, cause) it must produce, and that no password
appears in anything it wrote.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.cli import main
from tests.realmail.servers import (
    DEFAULT_TARGET,
    JOBS,
    MX_HOSTNAME,
    RealMail,
    SilentServer,
)

CHECKS = ("redirect.roundtrip", "redirect.local_copy", "redirect.loop", "headers.retention")


def account_file(
    folder: Path, *, platform_account: str = "acme", mailbox: str = "", smtp_port: int = 587
) -> Path:
    path = folder / "company.yaml"
    path.write_text(
        f"""platform: {{profile: personio, account: {platform_account}}}
company:
  name: ACME GmbH
  custom_address: {JOBS}
  smtp:
    host: {MX_HOSTNAME}
    port: {smtp_port}
    encryption: starttls
    account: {JOBS}
    password: ${{JOBS_PASSWORD}}
{mailbox}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder of the user's, the command run from it."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder


def run_audit(
    world: RealMail,
    config: Path,
    *extra: str,
    password: str | None = None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, dict[str, Any], str]:
    """``maildiag audit CONFIG --roundtrip ...`` in-process: exit code, report.json, output."""
    monkeypatch.setenv("JOBS_PASSWORD", password or world.jobs_password)
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "audit",
            str(config),
            "--only",
            ",".join(CHECKS),
            "--dns-server",
            world.dns_address,
            "--ca-file",
            str(world.ca_file),
            "--report-dir",
            "report",
            *extra,
        ],
        out=out,
        err=err,
    )
    report = json.loads((config.parent / "report" / "report.json").read_text(encoding="utf-8"))
    return code, report, out.getvalue() + err.getvalue()


def findings(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {f["check"]: (f["status"], f.get("cause")) for f in report["findings"]}


def assert_no_secret(folder: Path, output: str, secret: str) -> None:
    assert secret not in output
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_healthy_redirect_with_a_copy(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = account_file(user_folder)
    code, report, output = run_audit(
        realmail, config, "--roundtrip", "--wait", "8", monkeypatch=monkeypatch
    )
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("pass", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("pass", None),
    }, output
    assert code == 0
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    token = trip["evidence"]["token"]
    # The message really reached the platform, and the finding says what to look for there.
    realmail.wait_for_delivery()
    assert any(token in m.data.decode("utf-8", "replace") for m in realmail.sink_messages)
    assert f"maildiag round trip {token}" in trip["detail"]
    assert trip["evidence"]["live"]["mailbox"] == f"{JOBS} on {MX_HOSTNAME}:993"
    copy = next(f for f in report["findings"] if f["check"] == "redirect.local_copy")
    assert copy["title"] == f"A copy stays in {JOBS} (INBOX)"
    # The reports show the round trip: what was sent, where it went, what came back.
    page = (config.parent / "report" / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="roundtrip">') :].split("</section>", 1)[0]
    assert f"<td>{token}</td><td>mx</td>" in section
    assert f"{MX_HOSTNAME}, then the platform (not readable from here)" in section
    assert f"1 kept copy in {JOBS} on {MX_HOSTNAME}:993" in section
    markdown = (config.parent / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Round trip" in markdown
    assert_no_secret(user_folder, output, realmail.jobs_password)


def test_a_mistyped_platform_address_bounces_and_is_diagnosed(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = realmail_factory(target="acme-jbos@m.personio.de")
    config = account_file(user_folder)
    started = time.monotonic()
    code, report, output = run_audit(
        world, config, "--roundtrip", "--wait", "30", monkeypatch=monkeypatch
    )
    assert findings(report) == {
        "redirect.roundtrip": ("fail", "recipient_unknown"),
        "redirect.local_copy": ("pass", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("pass", None),
    }, output
    assert code == 1
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert "5.1.1" in trip["detail"]
    assert DEFAULT_TARGET in trip["remediation"]
    # The bounce ended the watch: it did not wait the full 30 s.
    assert time.monotonic() - started < 25


def test_no_copy_kept(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = realmail_factory(keep_copy=False)
    config = account_file(user_folder)
    _, report, output = run_audit(
        world, config, "--roundtrip", "--wait", "6", monkeypatch=monkeypatch
    )
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("warn", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("skip", None),
    }, output


def test_a_subject_tag_added_before_the_copy_is_found(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = realmail_factory(subject_tag=True)
    config = account_file(user_folder)
    _, report, output = run_audit(
        world, config, "--roundtrip", "--wait", "6", monkeypatch=monkeypatch
    )
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("pass", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("fail", "unknown"),
    }, output
    retention = next(f for f in report["findings"] if f["check"] == "headers.retention")
    assert "[EXTERNAL]" in retention["title"]


def test_a_refused_imap_login_is_a_clear_error_without_the_password(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wrong-Imap-Pass-9731"
    config = account_file(
        user_folder, mailbox="  mailbox: {port: 143, encryption: starttls, password: '${IMAP_PW}'}"
    )
    monkeypatch.setenv("IMAP_PW", wrong)
    code, report, output = run_audit(realmail, config, "--roundtrip", monkeypatch=monkeypatch)
    assert findings(report) == {
        "redirect.roundtrip": ("error", "auth_failed"),
        "redirect.local_copy": ("error", "auth_failed"),
        "redirect.loop": ("skip", None),
        "headers.retention": ("skip", None),
    }, output
    assert code == 1
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert trip["title"] == f"Cannot read the mailbox {JOBS} on {MX_HOSTNAME}:143"
    assert "company.mailbox.token_command" in trip["remediation"]
    assert "Nothing was sent" in trip["detail"]
    realmail.wait_for_delivery()
    assert realmail.sink_messages == []
    assert_no_secret(user_folder, output, wrong)
    assert_no_secret(user_folder, output, realmail.jobs_password)


@pytest.mark.parametrize("server", ["silent_imap", "mute_imap"])
def test_an_imap_server_that_never_answers_costs_one_timeout(
    server: str,
    realmail: RealMail,
    user_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    silent: SilentServer = request.getfixturevalue(server)
    host, port = silent.address
    config = account_file(
        user_folder,
        mailbox=f"  mailbox: {{host: {host}, port: {port}, encryption: tls}}"
        if server == "silent_imap"
        else f"  mailbox: {{host: {host}, port: {port}, encryption: starttls}}",
    )
    started = time.monotonic()
    _, report, output = run_audit(
        realmail, config, "--roundtrip", "--timeout", "2", monkeypatch=monkeypatch
    )
    assert time.monotonic() - started < 15
    assert findings(report)["redirect.roundtrip"] == ("error", "connection_timeout"), output
    assert findings(report)["redirect.local_copy"] == ("error", "connection_timeout")


def test_probe_platform_finds_an_unknown_inbound_address_before_sending(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = account_file(user_folder, platform_account="acmee")
    code, report, output = run_audit(
        realmail, config, "--roundtrip", "--probe-platform", monkeypatch=monkeypatch
    )
    assert findings(report) == {
        "redirect.roundtrip": ("fail", "recipient_unknown"),
        "redirect.local_copy": ("skip", None),
        "redirect.loop": ("skip", None),
        "headers.retention": ("skip", None),
    }, output
    assert code == 1
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert trip["title"] == "The platform does not know acmee-jobs@m.personio.de"
    realmail.wait_for_delivery()
    assert realmail.sink_messages == []
    assert realmail.mailbox_raw() == []


def test_probe_platform_alone_sends_nothing(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = account_file(user_folder)
    _, report, output = run_audit(realmail, config, "--probe-platform", monkeypatch=monkeypatch)
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("skip", None),
        "redirect.loop": ("skip", None),
        "headers.retention": ("skip", None),
    }, output
    realmail.wait_for_delivery()
    assert realmail.sink_messages == []
    assert realmail.mailbox_raw() == []


def test_via_submission_and_clean(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = account_file(user_folder)
    _, report, output = run_audit(
        realmail,
        config,
        "--roundtrip",
        "--via",
        "submission",
        "--clean",
        "--wait",
        "6",
        monkeypatch=monkeypatch,
    )
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("pass", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("pass", None),
    }, output
    trip = next(f for f in report["findings"] if f["check"] == "redirect.roundtrip")
    assert trip["evidence"]["live"]["via"] == "submission"
    assert trip["evidence"]["live"]["cleaned"] == 1
    realmail.wait_for_delivery()
    assert realmail.mailbox_raw() == []
    assert len(realmail.sink_messages) == 1


def candidate_message(message_id: str) -> bytes:
    return (
        "From: Erika Mustermann <erika@candidate.test>\r\n"
        f"To: {JOBS}\r\n"
        "Subject: Bewerbung als Lagerleiterin\r\n"
        "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Guten Tag, anbei meine Bewerbung.\r\n"
    ).encode()


def test_headers_fetches_the_original_from_the_company_mailbox(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate's message as the platform received it, compared with the copy the company
    mailbox kept (found by its Message-ID over IMAP)."""
    config = account_file(user_folder)
    monkeypatch.setenv("JOBS_PASSWORD", realmail.jobs_password)
    with realmail.smtp() as smtp:
        smtp.sendmail(
            "erika@candidate.test", [JOBS], candidate_message("<application-1@candidate.test>")
        )
    realmail.wait_for_delivery()
    (arrived,) = realmail.sink_messages
    (user_folder / "ARRIVED.eml").write_bytes(arrived.data)
    common = ["--original-from", str(config), "--dns-server", realmail.dns_address]
    common += ["--ca-file", str(realmail.ca_file)]
    out, err = io.StringIO(), io.StringIO()
    code = main(["headers", "ARRIVED.eml", *common], out=out, err=err)
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(
        f"original: the copy kept in {JOBS} on {MX_HOSTNAME}:993, folder INBOX\n"
    )
    out = io.StringIO()
    assert main(["headers", "ARRIVED.eml", *common, "--json"], out=out) == 0
    analysis = json.loads(out.getvalue())
    assert analysis["retention"]["retained"] is True
    assert analysis["styles"] == ["redirect"]

    # A message the mailbox never saw: a clear usage error, and no password shown.
    (user_folder / "OTHER.eml").write_bytes(candidate_message("<never-sent@candidate.test>"))
    out, err = io.StringIO(), io.StringIO()
    assert main(["headers", "OTHER.eml", *common], out=out, err=err) == 2
    assert err.getvalue() == (
        f"maildiag: --original-from {config}: no copy with its Message-ID in {JOBS} on "
        f"{MX_HOSTNAME}:993\n"
    )
    assert_no_secret(user_folder, out.getvalue() + err.getvalue(), realmail.jobs_password)


def platform_test_mail() -> bytes:
    return (
        "From: Personio <noreply@m.personio.de>\r\n"
        f"To: {JOBS}\r\n"
        "Subject: Test mail from Personio\r\n"
        "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
        "Message-ID: <test-mail-1@m.personio.de>\r\n"
        "\r\n"
        "This is a test.\r\n"
    ).encode()


def run_watch(
    world: RealMail, config: Path, send: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, Any], str]:
    """``maildiag watch CONFIG --json`` in a thread while ``send`` plays the platform."""
    import threading

    monkeypatch.setenv("JOBS_PASSWORD", world.jobs_password)
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    argv = ["watch", str(config), "--timeout", "20", "--json", "--dns-server", world.dns_address]
    argv += ["--ca-file", str(world.ca_file)]
    thread = threading.Thread(target=lambda: result.append(main(argv, out=out, err=err)))
    thread.start()
    time.sleep(1.5)  # the admin clicks after the watch has started
    send()
    thread.join(40)
    assert not thread.is_alive()
    return result[0], json.loads(out.getvalue()), err.getvalue()


def test_watch_sees_the_platforms_test_mail_arrive(
    realmail: RealMail, user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = account_file(user_folder)

    def send() -> None:
        with realmail.smtp() as smtp:
            smtp.sendmail("noreply@m.personio.de", [JOBS], platform_test_mail())

    started = time.monotonic()
    code, seen, err = run_watch(realmail, config, send, monkeypatch)
    assert code == 0, seen
    assert [(s["kind"], s["subject"]) for s in seen["seen"]] == [
        ("platform", "Test mail from Personio")
    ]
    assert seen["unreadable"] == {}
    assert "click 'Send test mail' now" in err
    # It stopped a few seconds after the platform's message, not at the 20 s timeout.
    assert time.monotonic() - started < 18, seen


def test_watch_reports_a_bounce_of_the_redirection(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform sends its test mail through the company's server as the custom address
    (envelope sender jobs@): the redirection's bounce comes back to the mailbox."""
    world = realmail_factory(target="acme-jbos@m.personio.de")
    config = account_file(user_folder)

    def send() -> None:
        with world.smtp() as smtp:
            smtp.sendmail(JOBS, [JOBS], platform_test_mail())

    code, seen, _ = run_watch(world, config, send, monkeypatch)
    assert code == 1
    kinds = [(s["kind"], s["cause"]) for s in seen["seen"]]
    assert ("platform", None) in kinds
    assert ("bounce", "recipient_unknown") in kinds


DKIM_CHECKS = (*CHECKS, "headers.dkim")


def dkim_world(
    factory: Callable[..., RealMail], folder: Path, *, publish: bool = True, **knobs: Any
) -> tuple[RealMail, Path]:
    """A world whose DNS publishes the company's DKIM key (selector s1), and the account file
    naming its private key, as an admin whose mail server signs would write it."""
    from diagnostics.parse.dkim import DKIMKey
    from diagnostics.sandbox.dns import ZoneRecord

    key = DKIMKey.generate("company.test", "s1")
    (folder / "dkim.pem").write_bytes(key.private_pem)
    extra = {"company.test": [ZoneRecord(key.record_name, "TXT", key.txt)]} if publish else {}
    world = factory(extra_dns=extra, **knobs)
    config = account_file(folder, mailbox="  dkim: {selector: s1, key_file: dkim.pem}")
    return world, config


def dkim_findings(report: dict[str, Any]) -> tuple[str, str | None]:
    return findings(report)["headers.dkim"]


def run_dkim_audit(
    world: RealMail, config: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str]:
    _, report, output = run_audit(
        world,
        config,
        "--roundtrip",
        "--wait",
        "6",
        "--only",
        ",".join(DKIM_CHECKS),
        monkeypatch=monkeypatch,
    )
    return report, output


def test_the_signed_test_message_verifies_on_the_kept_copy(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, config = dkim_world(realmail_factory, user_folder)
    report, output = run_dkim_audit(world, config, monkeypatch)
    assert findings(report) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("pass", None),
        "redirect.loop": ("pass", None),
        "headers.retention": ("pass", None),
        "headers.dkim": ("pass", None),
    }, output
    world.wait_for_delivery()
    (arrived,) = world.sink_messages
    assert arrived.data.startswith(b"DKIM-Signature:") or b"\nDKIM-Signature:" in arrived.data
    assert b"d=company.test" in arrived.data and b"s=s1" in arrived.data
    # The private key is a secret: in no artefact but the user's own key file.
    pem = (user_folder / "dkim.pem").read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body[:40] not in output
    for path in (user_folder / "report").rglob("*"):
        assert body[:40].encode() not in path.read_bytes(), path


def test_a_subject_tag_breaks_the_signature_before_the_copy(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, config = dkim_world(realmail_factory, user_folder, subject_tag=True)
    report, output = run_dkim_audit(world, config, monkeypatch)
    assert dkim_findings(report) == ("fail", "policy_rejected"), output
    assert findings(report)["headers.retention"] == ("fail", "unknown")


def test_an_unpublished_key_is_named(
    realmail_factory: Callable[..., RealMail], user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, config = dkim_world(realmail_factory, user_folder, publish=False)
    report, output = run_dkim_audit(world, config, monkeypatch)
    assert dkim_findings(report) == ("warn", None), output
    dkim = next(f for f in report["findings"] if f["check"] == "headers.dkim")
    assert (
        dkim["title"] == "The signature could not be checked: no key at s1._domainkey.company.test"
    )
