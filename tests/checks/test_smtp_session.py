"""One SMTP session per setting under one budget: against a tarpit that answers every reply
line slowly but surely, and against a dead port that never completes a connection."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from diagnostics.context import Context, Timeouts
from diagnostics.findings import Cause, Finding, Status
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.certs import SandboxCA
from tests.checks.test_smtp import hostile_context

SMTP_CHECKS = (
    "smtp.connect",
    "smtp.tls",
    "smtp.auth",
    "smtp.sender",
    "smtp.settings_probe",
    "smtp.provider",
)
LINE_DELAY = 2.0


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def context_for(port: int, timeouts: Timeouts, trust: ssl.SSLContext) -> Context:
    return hostile_context(port, timeouts, trust=trust, password="tarpit-secret-4471")


@asynccontextmanager
async def tarpit(commands: list[str]) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A correct SMTP server on loopback that sends every reply line ``LINE_DELAY`` seconds
    after the one before (Exchange's tarpitting, postscreen's greeting delay); yields its port
    and a client trust store that holds its CA. Every command it receives goes to
    ``commands``."""
    ca = SandboxCA()
    server_tls = ca.issue(["127.0.0.1"]).server_context()
    trust = ssl.create_default_context(cadata=ca.ca_pem.decode())
    tasks: set[asyncio.Task[None]] = set()

    async def say(writer: asyncio.StreamWriter, *lines: str) -> None:
        for line in lines:
            await asyncio.sleep(LINE_DELAY)
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await say(writer, "220 tarpit.example ESMTP")
            while line := await reader.readline():
                command = line.decode().strip()
                commands.append(command.split(" ", 2)[0] + (" PLAIN" if "PLAIN" in command else ""))
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    tls = writer.get_extra_info("ssl_object") is not None
                    await say(
                        writer,
                        "250-tarpit.example",
                        "250 AUTH PLAIN LOGIN" if tls else "250 STARTTLS",
                    )
                elif verb == "STARTTLS":
                    await say(writer, "220 2.0.0 go ahead")
                    await writer.start_tls(server_tls)
                elif verb == "AUTH":
                    await say(writer, "235 2.7.0 Authentication successful")
                elif verb == "QUIT":
                    await say(writer, "221 2.0.0 bye")
                    break
                else:
                    await say(writer, "250 2.0.0 OK")
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], trust
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.sleep(0.05)
        await server.wait_closed()


async def test_a_tarpit_that_answers_slowly_but_surely_passes() -> None:
    """Each step's timeout (3 s) bounds each reply line, not the whole reply: EHLO's two lines
    take 4 s. The whole session (about 20 s) stays within its budget."""
    commands: list[str] = []
    async with tarpit(commands) as (port, trust):
        timeouts = Timeouts(dns=1, connect=3, banner=3, command=3, data=3, session=60, check=90)
        findings = await run_checks(context_for(port, timeouts, trust), select(["smtp"]))
    found = by_check(findings)
    assert {check: found[check].status for check in SMTP_CHECKS} == {
        "smtp.connect": Status.PASS,
        "smtp.tls": Status.PASS,
        "smtp.auth": Status.PASS,
        "smtp.sender": Status.PASS,
        "smtp.settings_probe": Status.PASS,
        "smtp.provider": Status.PASS,
    }
    # One session for every check: one connection's commands, one AUTH.
    assert commands[:7] == ["EHLO", "STARTTLS", "EHLO", "AUTH PLAIN", "MAIL", "RCPT", "RSET"]
    assert commands.count("AUTH PLAIN") == 1
    assert commands.count("STARTTLS") == 1
    assert "tarpit-secret-4471" not in str([f.to_dict() for f in findings])


async def test_a_tarpit_beyond_the_sessions_budget_names_the_step_that_ran_out() -> None:
    commands: list[str] = []
    async with tarpit(commands) as (port, trust):
        timeouts = Timeouts(dns=1, connect=3, banner=3, command=3, data=3, session=5, check=30)
        findings = await run_checks(context_for(port, timeouts, trust), select(["smtp"]))
    connect = by_check(findings)["smtp.connect"]
    # Greeting after 2 s, EHLO's lines after 4 and 6 s: the budget of 5 s ends within EHLO.
    assert (connect.status, connect.cause) == (Status.FAIL, Cause.CONNECTION_TIMEOUT)
    steps = {s["step"]: s for s in connect.evidence["steps"]}
    assert steps["banner"]["ok"] is True
    assert steps["ehlo"]["timed_out"] is True
    assert connect.title == f"127.0.0.1 port {port} does not answer EHLO in time"
    assert "the session's budget of 5 s was used up" in steps["ehlo"]["error"]
    assert all(f.status is not Status.ERROR for f in findings)
    assert "AUTH PLAIN" not in commands


@contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port whose listen queue is full: connection attempts go unanswered, as
    behind a firewall that drops them."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        filler.connect(("127.0.0.1", port))
        yield port


@contextmanager
def counting_connects(monkeypatch: pytest.MonkeyPatch, port: int) -> Iterator[list[Any]]:
    """Every connection attempt to 127.0.0.1 ``port``, as the socket layer sees it."""
    attempts: list[Any] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and tuple(address[:2]) == ("127.0.0.1", port):
            attempts.append(address)
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts


async def test_a_dead_port_costs_one_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with dead_port() as port, counting_connects(monkeypatch, port) as attempts:
        timeouts = Timeouts(dns=1, connect=2, banner=2, command=2, data=2, check=30)
        started = time.perf_counter()
        findings = await run_checks(
            context_for(port, timeouts, ssl.create_default_context()), select(["smtp"])
        )
        elapsed = time.perf_counter() - started
    found = by_check(findings)
    connect = found["smtp.connect"]
    assert (connect.status, connect.cause) == (Status.FAIL, Cause.CONNECTION_TIMEOUT)
    assert "did not complete within 2 s" in connect.detail
    steps = {s["step"]: s for s in connect.evidence["steps"]}
    assert steps["connect"]["timed_out"] is True
    assert {check: found[check].status for check in ("smtp.tls", "smtp.auth", "smtp.sender")} == {
        "smtp.tls": Status.SKIP,
        "smtp.auth": Status.SKIP,
        "smtp.sender": Status.SKIP,
    }
    # Six checks, one attempt on the dead port.
    assert len(attempts) == 1
    assert elapsed < 15  # a sanity bound: not six timeouts in a row
