"""`maildiag sandbox up` used as a person uses it: start it, source the passwords file it names,
run `maildiag smtp` against it from another shell, stop it with Ctrl-C. Loopback only."""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import forms_of

BASH = shutil.which("bash") or "/bin/bash"
# Without the passwords the scenario references, the sandbox generates them.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}


def line_reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout, line by line ("" at its end), read in a thread: each wait for a
    line is bounded, as a read on the pipe itself cannot be."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def next_line(lines: queue.Queue[str]) -> str:
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        raise AssertionError("sandbox up printed nothing in 60 s") from None
    assert line, "sandbox up ended before printing its endpoints"
    return line


@contextmanager
def sandbox_up(
    *options: str, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """`maildiag sandbox up --json OPTIONS` running (in ``env``, by default without any of the
    passwords it plays); its JSON line, and at exit (after Ctrl-C) its exit code and what it
    wrote on stdout and stderr, in the second value."""
    command = [sys.executable, "-m", "diagnostics", "sandbox", "up", "--json", *options]
    ended: dict[str, str] = {}
    # stderr to a file: a pipe nobody reads could fill and stop the process.
    stderr = cwd / "sandbox-up.stderr"
    with (
        stderr.open("w") as errors,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=cwd, env=env or ENV
        ) as process,
    ):
        lines = line_reader(process)
        try:
            line = next_line(lines)
            yield json.loads(line), ended
        finally:
            process.send_signal(signal.SIGINT)
            stop(process)
            rest = "".join(iter(lambda: lines.get(timeout=15), ""))
            err = stderr.read_text()
            ended.update(code=str(process.returncode), out=line + rest, err=err)


def stop(process: subprocess.Popen[str]) -> None:
    """Wait (bounded) for the interrupted process."""
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
        raise


def read_exports(path: Path) -> dict[str, str]:
    """The `export NAME='value'` lines of a file, read as a shell reads them."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
            values[name] = value
    return values


def test_the_readme_sequence_works_with_the_generated_password(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with sandbox_up("--state", str(state), cwd=tmp_path) as (described, ended):
        credentials = Path(described["credentials_file"])
        assert credentials == state / "credentials.env"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        passwords = read_exports(credentials)
        assert sorted(passwords) == described["secrets_generated"]
        assert "ACME_SMTP_PASSWORD" in passwords
        assert all(passwords.values())
        starttls = next(s for s in described["servers"] if s["role"] == "submission (STARTTLS)")
        # As README.md: `. STATE/credentials.env`, then maildiag smtp in that shell. The
        # sandbox's DNS server is named so that no lookup leaves loopback.
        smtp = [
            sys.executable, "-m", "diagnostics", "smtp", "--json",
            "--host", "smtp.acme.example", "--resolve", "smtp.acme.example:127.0.0.1",
            "--port", starttls["listen"].rsplit(":", 1)[1], "--encryption", "starttls",
            "--account", "jobs@acme.example", "--password-env", "ACME_SMTP_PASSWORD",
            "--ca-file", str(state / "sandbox-ca.pem"), "--source", "127.0.10.1",
            "--dns-server", described["dns"],
        ]  # fmt: skip
        done = subprocess.run(
            [BASH, "-c", '. "$1" && shift && exec "$@"', "bash", str(credentials), *smtp],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=ENV,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert [(f["check"], f["status"]) for f in report["findings"]] == [
            ("smtp.connect", "pass"),
            ("smtp.tls", "pass"),
            ("smtp.auth", "pass"),
            ("smtp.sender", "pass"),
            ("smtp.provider", "pass"),
            ("smtp.settings_probe", "pass"),
        ]
    assert ended["code"] == "0", ended["err"]
    assert "sandbox stopped" in ended["err"]
    # The state folder was the user's: it keeps the file, still 0600.
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    log = (state / "sandbox.log").read_text(encoding="utf-8")
    # The log holds the login it accepted (so the search below looked where a leak would be).
    assert "submission: AUTH PLAIN for jobs@acme.example from 3.121.59.239: ok" in log
    texts = {
        "sandbox up stdout": ended["out"],
        "sandbox up stderr": ended["err"],
        "smtp stdout": done.stdout,
        "smtp stderr": done.stderr,
        "sandbox.log": log,
    }
    for password in passwords.values():
        for form in forms_of(password):
            leaks = [name for name, text in texts.items() if form in text]
            assert leaks == [], f"password leaked into {leaks}"


def test_the_terminal_names_the_file_and_no_value(tmp_path: Path) -> None:
    state = tmp_path / "state"
    command = [sys.executable, "-m", "diagnostics", "sandbox", "up", "--state", str(state)]
    stderr = tmp_path / "sandbox-up.stderr"
    with (
        stderr.open("w") as errors,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=tmp_path, env=ENV
        ) as process,
    ):
        reader = line_reader(process)
        lines: list[str] = []
        try:
            while not lines or not lines[-1].startswith("{"):
                lines.append(next_line(reader))
        finally:
            process.send_signal(signal.SIGINT)
            stop(process)
    err = stderr.read_text()
    assert process.returncode == 0, err
    text = "".join(lines[:-1])
    credentials = state / "credentials.env"
    assert (
        "Passwords generated for ACME_RETAIL_SMTP_PASSWORD, ACME_SMTP_PASSWORD, "
        "to use in another shell:\n"
        f"  . {shlex.quote(str(credentials))}   (readable by you only)\n"
    ) in text
    for password in read_exports(credentials).values():
        assert password not in "".join(lines) + err


def test_without_state_the_file_goes_with_the_temporary_folder(tmp_path: Path) -> None:
    with sandbox_up(cwd=tmp_path) as (described, ended):
        credentials = Path(described["credentials_file"])
        assert credentials.parent == Path(described["state_dir"])
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert ended["code"] == "0", ended["err"]
    assert not credentials.exists()
    assert not credentials.parent.exists()


def test_passwords_from_the_environment_are_not_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "credentials.env").write_text("export ACME_SMTP_PASSWORD='from-an-earlier-run'\n")
    env = {**ENV, "ACME_SMTP_PASSWORD": "Exported-1", "ACME_RETAIL_SMTP_PASSWORD": "Exported-2"}
    with sandbox_up("--state", str(state), cwd=tmp_path, env=env) as (described, ended):
        pass
    assert ended["code"] == "0", ended["err"]
    assert described["credentials_file"] is None
    assert described["secrets_generated"] == []
    assert not (state / "credentials.env").exists()
