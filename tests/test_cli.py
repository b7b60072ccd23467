"""The command line, called as a function and as a process: audit, sandbox up, exit codes,
and no password in any report file, output or log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from diagnostics.cli import main
from diagnostics.config import load_config
from diagnostics.net import connect_socket, smtp_session
from diagnostics.redact import RedactingFilter
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from tests.conftest import forms_of
from tests.scenario_baseline import report_of
from tests.test_sandbox_up import sandbox_up

ROOT = Path(__file__).resolve().parents[1]
ACME = ROOT / "fixtures" / "configs" / "acme.yaml"


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Random passwords in the environment, as an IT department exports them."""
    values = {
        "ACME_SMTP_PASSWORD": "Canary-" + secrets.token_urlsafe(12),
        "ACME_RETAIL_SMTP_PASSWORD": "Canary-" + secrets.token_urlsafe(12),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield values


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_audit_json_on_the_healthy_sandbox(passwords: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run(
        "audit", str(ACME), "--sandbox", "healthy", "--json", "--report-dir", str(tmp_path)
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["schema"] == "maildiag.report/1"
    assert report["mode"] == "sandbox"
    assert report["scenario"] == "healthy"
    assert report["account"] == "acme"
    assert report["verdict"] == "pass"
    # Healthy is the baseline derived from the account file, finding by finding in order.
    healthy = load_scenario("healthy")
    expected = report_of(healthy.config_path(), healthy.expect)
    assert [
        (f["check"], f["subject"], f["status"], f["cause"]) for f in report["findings"]
    ] == expected
    skipped = sum(1 for _check, _subject, status, _cause in expected if status == "skip")
    assert report["summary"] == {
        "skip": skipped,
        "pass": len(expected) - skipped,
        "warn": 0,
        "fail": 0,
        "error": 0,
        "total": len(expected),
    }
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_audit_without_the_environment_uses_the_sandbox_passwords(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ACME_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("ACME_RETAIL_SMTP_PASSWORD", raising=False)
    code, out, _ = run("audit", str(ACME), "--sandbox", "healthy", "--report-dir", str(tmp_path))
    assert code == 0
    assert out.startswith("verdict: pass (")
    assert " fail " not in out and " error " not in out
    assert f"report: {tmp_path / 'report.html'}" in out
    assert "What to fix first:" not in out and "To review:" not in out
    assert "passed and " in out and "not listed (--all lists every finding)." in out


def test_audit_exits_1_on_a_failing_finding(tmp_path: Path) -> None:
    config = ROOT / "fixtures" / "configs" / "acme-wrong-encryption.yaml"
    code, out, _ = run(
        "audit", str(config), "--sandbox", "wrong-encryption", "--report-dir", str(tmp_path)
    )
    assert code == 1
    assert "fail  config.port_encryption" in out
    # Terminal: what needs action first, each with its fix; passes only counted.
    lines = out.splitlines()
    first = lines.index("What to fix first:")
    assert lines[first + 1].startswith("  fail  config.port_encryption")
    assert lines[first + 2].startswith("        -> ")
    assert "  pass  " not in out
    code, every, _ = run(
        "audit", str(config), "--sandbox", "wrong-encryption", "--all",
        "--report-dir", str(tmp_path / "all"),
    )  # fmt: skip
    assert code == 1 and "  pass  config.schema" in every and "What to fix first:" not in every
    report = json.loads((tmp_path / "report.json").read_text())
    failing = {f["check"]: f for f in report["findings"] if f["status"] == "fail"}
    assert {check: f["cause"] for check, f in failing.items()} == {
        "config.port_encryption": "tls_mismatch",
        "smtp.tls": "tls_mismatch",
        "smtp.settings_probe": "tls_mismatch",
        "sender.resolution": "tls_mismatch",
    }
    assert failing["smtp.tls"]["remediation"] == (
        "Encryption is set to SSL on port 587; this server speaks STARTTLS there: choose "
        "TLS/STARTTLS, or port 465 with SSL."
    )
    assert "TLS/STARTTLS" in failing["config.port_encryption"]["remediation"]


def test_audit_shows_each_root_cause_once_with_every_place(tmp_path: Path) -> None:
    code, out, _ = run("audit", str(ACME), "--sandbox", "demo", "--report-dir", str(tmp_path))
    assert code == 1
    assert out.startswith("verdict: fail (6 fail, 2 warn, ")
    fix = out.split("What to fix first:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    # Six failing findings (and two warnings) come to two problems: nothing left to review.
    assert [line for line in fix if not line.startswith("        ")] == [
        "  fail  smtp.acme.example refuses egress IP 18.158.122.164 on ports 587 and 465",
        "  fail  mx.acme.example puts '[EXTERNAL]' in front of the Subject of redirected mail",
    ]
    assert fix[1:3] == [
        "        Acme GmbH (smtp.acme.example port 587): allowlist.reachability",
        "        Acme Retail GmbH (smtp.acme.example port 465): allowlist.reachability",
    ]
    assert fix[3].startswith("        -> Permit 18.158.122.164 on smtp.acme.example ")
    assert fix[5:7] == [
        "        Acme GmbH (jobs@acme.example): headers.retention, headers.forwarding_style, "
        "headers.dkim",
        "        Acme Retail GmbH (jobs@retail.acme.example): headers.retention, "
        "headers.forwarding_style, headers.dkim",
    ]
    assert "Exempt jobs@acme.example and jobs@retail.acme.example from that rule" in fix[7]
    assert "To review:" not in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["fail"] == 6  # the JSON report keeps one entry per finding


def test_only_selects_checks_and_families(passwords: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = run(
        "audit",
        str(ACME),
        "--sandbox",
        "healthy",
        "--only",
        "config.schema",
        "--json",
        "--report-dir",
        str(tmp_path),
    )
    assert code == 0
    assert [f["check"] for f in json.loads(out)["findings"]] == ["config.schema"]
    code, out, _ = run(
        "audit", str(ACME), "--only", "config", "--json", "--report-dir", str(tmp_path)
    )
    assert code == 0
    assert len(json.loads(out)["findings"]) == 7


def test_unknown_check_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("audit", str(ACME), "--only", "smtp.bogus", "--report-dir", str(tmp_path))
    assert code == 2
    assert "unknown check or family: smtp.bogus" in err
    assert "known families: allowlist, config, dns, headers, redirect, sender, smtp" in err
    assert not (tmp_path / "report.json").exists()


def test_usage_errors_exit_2() -> None:
    assert run("frobnicate")[0] == 2
    assert run("audit")[0] == 2
    assert run("--version")[0] == 0


def test_unknown_scenario_names_the_known_ones(tmp_path: Path) -> None:
    code, _, err = run(
        "audit", str(ACME), "--sandbox", "no-such-world", "--report-dir", str(tmp_path)
    )
    assert code == 2
    assert "scenario no-such-world: " in err  # the name as the user gave it
    assert "healthy" in err


def test_password_is_in_no_report_output_or_log(passwords: dict[str, str], tmp_path: Path) -> None:
    """The canary: every artefact of audits and of real AUTH sessions (one accepted, one
    refused) is searched for the password in every form it could leak in."""
    log_file = tmp_path / "maildiag.log"
    outputs = []
    for scenario in ("healthy", "bad-password"):
        args = ("--log-file", str(log_file), "--verbose", "audit", str(ACME), "--sandbox", scenario)
        for extra in ((), ("--json",)):
            outputs.append(run(*args, *extra, "--report-dir", str(tmp_path / scenario)))
    # Real AUTH sessions, logged at DEBUG through the same redacting handler the CLI uses.
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        asyncio.run(authenticate_in_both_worlds(tmp_path))
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
    # Every file: reports, logs, the sandboxes' mailboxes and queues.
    artefacts = {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    artefacts.update({f"output {i}": out + err for i, (_, out, err) in enumerate(outputs)})
    assert str(log_file) in artefacts and "AUTH" in artefacts[str(log_file)]
    assert any(p.endswith("report.json") for p in artefacts)
    for password in passwords.values():
        for form in forms_of(password):
            leaks = [name for name, text in artefacts.items() if form in text]
            assert leaks == [], f"password leaked into {leaks}"


async def authenticate_in_both_worlds(tmp_path: Path) -> None:
    """AUTH PLAIN through the platform client and AUTH LOGIN by hand, accepted and refused."""
    for scenario in ("healthy", "bad-password"):
        async with Sandbox(
            load_scenario(scenario), state_dir=tmp_path / f"state-{scenario}"
        ) as world:
            config = load_config(ACME, environ=world.environ)
            smtp = config.company.smtp
            assert smtp is not None
            try:
                await world.platform_client.send_via(
                    smtp,
                    mail_from=smtp.account,
                    rcpt_tos=["anna.schmidt@candidates.example"],
                    data=b"Subject: canary\r\n\r\nbody\r\n",
                )
            except aiosmtplib.SMTPAuthenticationError as refused:
                logging.getLogger("tests").exception("refused: %s", refused)
                assert scenario == "bad-password"
            # AUTH LOGIN too, whose password line aiosmtpd logs as it comes.
            host, port = world.endpoints.dial("198.51.100.20", 587)
            sock = await connect_socket(host, port, timeout=5, source="127.0.10.1")
            async with smtp_session(
                sock, hostname=smtp.host, tls_context=world.trust(), timeout=5
            ) as client:
                await client.ehlo()
                try:
                    await client.auth_login(smtp.account, smtp.password.reveal())
                except aiosmtplib.SMTPAuthenticationError:
                    assert scenario == "bad-password"


def test_sandbox_up_serves_smtp_until_interrupted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    command = [sys.executable, "-m", "diagnostics", "sandbox", "up", "--scenario", "healthy"]
    with subprocess.Popen(
        [*command, "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            lines: list[str] = []
            while not lines or not lines[-1].startswith("{"):
                line = process.stdout.readline()
                assert line, "sandbox up ended before printing its endpoints"
                lines.append(line)
            table = "".join(lines[:-1])
            assert "maildiag sandbox: scenario healthy" in table
            assert "submission (implicit TLS)" in table and "198.51.100.20:465" in table
            described = json.loads(lines[-1])
            mx = next(s for s in described["servers"] if s["role"] == "company MX")
            host, port = mx["listen"].rsplit(":", 1)
            assert host == "127.0.0.1"
            assert asyncio.run(deliver_one(host, int(port))).startswith("2.0.0 Ok: queued as")
        finally:
            process.send_signal(signal.SIGINT)
            try:
                _, stderr = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert process.returncode == 0, stderr
    assert "sandbox stopped" in stderr
    local = list((state / "company" / "mailboxes" / "jobs@acme.example" / "new").iterdir())
    assert len(local) == 1
    log = (state / "sandbox.log").read_text()
    assert "redirected to acme-jobs@m.personio.de" in log


async def deliver_one(host: str, port: int) -> str:
    """One message to the custom address, as a candidate's mail server sends it."""
    sock = await connect_socket(host, port, timeout=5)
    async with smtp_session(sock, hostname="mx.acme.example", start_tls=False, timeout=5) as client:
        _, reply = await client.sendmail(
            "max.mustermann@example.org",
            ["jobs@acme.example"],
            b"Message-ID: <up@example.org>\r\nSubject: hello\r\n\r\nHallo\r\n",
        )
    return reply


@pytest.fixture
def running_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """`maildiag sandbox up --json` in its own process, with a known password exported."""
    password = "Cli-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("ACME_SMTP_PASSWORD", password)
    env = {**os.environ, "ACME_SMTP_PASSWORD": password}
    with sandbox_up("--state", str(tmp_path / "state"), cwd=tmp_path, env=env) as (described, _):
        yield {**described, "password": password}


def smtp_args(described: dict[str, Any], *extra: str) -> list[str]:
    port = next(s["listen"] for s in described["servers"] if s["world"].endswith(":587"))
    return [
        "smtp", "--host", "smtp.acme.example", "--resolve", "smtp.acme.example:127.0.0.1",
        "--port", port.rsplit(":", 1)[1], "--encryption", "starttls",
        "--account", "jobs@acme.example", "--password-env", "ACME_SMTP_PASSWORD",
        "--ca-file", described["ca_file"], "--source", described["egress_sources"]["3.121.59.239"],
        "--dns-server", described["dns"], "--json", *extra,
    ]  # fmt: skip


def test_smtp_command_against_the_running_sandbox(running_sandbox: dict[str, Any]) -> None:
    code, out, err = run(*smtp_args(running_sandbox))
    assert code == 0, err
    report = json.loads(out)
    assert [(f["check"], f["status"]) for f in report["findings"]] == [
        ("smtp.connect", "pass"),
        ("smtp.tls", "pass"),
        ("smtp.auth", "pass"),
        ("smtp.sender", "pass"),
        ("smtp.provider", "pass"),
        ("smtp.settings_probe", "pass"),
    ]
    assert running_sandbox["password"] not in out + err


def test_smtp_command_names_the_cause_of_a_wrong_password(
    running_sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_SMTP_PASSWORD", "Not-the-right-one-42")
    code, out, _ = run(*smtp_args(running_sandbox))
    assert code == 1
    failing = [
        (f["check"], f["cause"]) for f in json.loads(out)["findings"] if f["status"] == "fail"
    ]
    assert failing == [("smtp.auth", "auth_failed")]
    assert "Not-the-right-one-42" not in out


def test_smtp_command_by_ip_from_an_address_the_server_refuses(
    running_sandbox: dict[str, Any],
) -> None:
    args = smtp_args(running_sandbox)
    args[args.index("--source") + 1] = "127.0.0.1"
    code, out, _ = run(*args)
    assert code == 1
    connect = json.loads(out)["findings"][0]
    assert (connect["check"], connect["status"], connect["cause"]) == (
        "smtp.connect", "fail", "client_ip_rejected",
    )  # fmt: skip
    assert connect["title"].endswith("refuses connections from this machine")


def test_smtp_command_without_the_password_variable_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_PASSWORD_VAR", raising=False)
    code, _, err = run(
        "smtp", "--host", "smtp.acme.example", "--port", "587", "--encryption", "starttls",
        "--account", "jobs@acme.example", "--password-env", "NO_SUCH_PASSWORD_VAR",
    )  # fmt: skip
    assert code == 2
    assert "NO_SUCH_PASSWORD_VAR unset or empty" in err


def test_notebook_lists_copies_and_locates_the_shipped_notebooks(tmp_path: Path) -> None:
    import json as json_module

    out, err = io.StringIO(), io.StringIO()
    assert main(["notebook"], out=out, err=err) == 0
    listed = [line.split()[0] for line in out.getvalue().splitlines()]
    assert listed[:2] == ["allowlist", "audit"] and listed[-1] == "sanitize"

    target = tmp_path / "new" / "folder" / "audit.ipynb"  # folders are made, as a user expects
    out = io.StringIO()
    assert main(["notebook", "audit", str(target)], out=out, err=err) == 0
    assert out.getvalue().strip() == str(target)
    cells = json_module.loads(target.read_text(encoding="utf-8"))["cells"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)

    # An existing file is kept unless --force; a folder receives the notebook's own name.
    err = io.StringIO()
    assert main(["notebook", "audit", str(target)], out=io.StringIO(), err=err) == 2
    assert f"{target} exists; --force overwrites it" in err.getvalue()
    assert main(["notebook", "audit", str(target), "--force"], out=io.StringIO()) == 0
    assert main(["notebook", "sanitize", str(tmp_path)], out=io.StringIO()) == 0
    assert "[ports]" in (tmp_path / "sanitize.cfg").read_text(encoding="utf-8")

    out = io.StringIO()
    assert main(["notebook", "audit.ipynb", "--path"], out=out) == 0
    located = Path(out.getvalue().strip())
    assert located.name == "audit.ipynb" and located.parent.name == "notebooks"

    err = io.StringIO()
    assert main(["notebook", "audti", str(tmp_path / "x.ipynb")], out=io.StringIO(), err=err) == 2
    assert "no shipped notebook 'audti' (did you mean audit?)" in err.getvalue()
    assert not (tmp_path / "x.ipynb").exists()


@pytest.mark.parametrize(
    ("login", "warned"),
    [("CORP\\jobs", True), ("jobs@acme.test", False), ("svc@corp.local", False)],
)
def test_smtp_command_takes_a_login_that_is_not_an_address_to_the_server(
    running_sandbox: dict[str, Any], login: str, warned: bool
) -> None:
    args = smtp_args(running_sandbox)
    args[args.index("--account") + 1] = login
    code, out, err = run(*args)
    assert code == 1, err  # the server's answer, not a usage error (2)
    findings = json.loads(out)["findings"]
    by_check = {f["check"]: f for f in findings}
    # Only a login that is no address warns: an address is the custom address it sends as.
    assert [f["check"] for f in findings][:4] == [
        *(["config.account_matches_address"] if warned else []),
        "smtp.connect", "smtp.tls", "smtp.auth", *([] if warned else ["smtp.sender"]),
    ]  # fmt: skip
    if warned:
        account = by_check["config.account_matches_address"]
        assert (account["status"], account["title"]) == (
            "warn", f"Login {login} is not an e-mail address",
        )  # fmt: skip
    assert (by_check["smtp.connect"]["status"], by_check["smtp.tls"]["status"]) == ("pass", "pass")
    auth = by_check["smtp.auth"]
    assert (auth["status"], auth["cause"]) == ("fail", "auth_failed")
    assert f"Login of {login} refused" in auth["title"]
    assert "535" in auth["detail"]  # the server's own reply
    assert running_sandbox["password"] not in out + err
