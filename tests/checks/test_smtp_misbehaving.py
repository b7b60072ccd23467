"""SMTP servers that answer with the wrong kind of reply: only the reply each step is waiting
for lets it go on (RFC 5321, RFC 4954). Real loopback servers, scripted per command."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest

from diagnostics.context import Timeouts
from diagnostics.findings import Cause, Status
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.certs import SandboxCA
from tests.checks.test_smtp import SETTINGS_PATH, hostile_context

PASSWORD = "scripted-secret-5521"


@asynccontextmanager
async def scripted(replies: Mapping[str, str]) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A server on 127.0.0.1 that greets, offers STARTTLS then AUTH PLAIN LOGIN, and answers
    each verb from ``replies`` (``*``: any other verb after AUTH)."""
    ca = SandboxCA()
    server_tls = ca.issue(["127.0.0.1"]).server_context()
    trust = ssl.create_default_context(cadata=ca.ca_pem.decode())
    after_auth = False

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal after_auth
        writer.write(b"220 scripted.example ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line.decode(errors="replace").split(" ", 1)[0].strip().upper()
                if verb == "EHLO":
                    tls = writer.get_extra_info("ssl_object") is not None
                    offer = "250 AUTH PLAIN LOGIN" if tls else "250 STARTTLS"
                    writer.write(f"250-scripted.example\r\n{offer}\r\n".encode())
                elif verb == "STARTTLS":
                    writer.write(b"220 2.0.0 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(server_tls)
                    continue
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    break
                elif verb in replies:
                    after_auth = after_auth or verb == "AUTH"
                    writer.write(replies[verb].encode() + b"\r\n")
                elif after_auth and "*" in replies:
                    writer.write(replies["*"].encode() + b"\r\n")
                else:
                    writer.write(b"250 2.0.0 OK\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], trust
    finally:
        server.close()
        await server.wait_closed()


async def audit(replies: Mapping[str, str]) -> dict[str, tuple[Status, Cause | None, str]]:
    async with scripted(replies) as (port, trust):
        context = hostile_context(
            port, Timeouts(connect=3, banner=3, command=3, check=20), trust=trust, password=PASSWORD
        )
        findings = await run_checks(context, select(["smtp.auth", "smtp.sender"]))
    return {f.check: (f.status, f.cause, f.detail) for f in findings}


async def test_a_server_that_answers_334_to_everything_has_not_logged_anyone_in() -> None:
    found = await audit({"AUTH": "334 ", "*": "334 "})
    status, cause, detail = found["smtp.auth"]
    assert (status, cause) == (Status.FAIL, Cause.AUTH_FAILED)
    assert "334" in detail
    assert found["smtp.sender"][0] == Status.SKIP
    assert PASSWORD not in repr(found)


@pytest.mark.parametrize(
    ("replies", "auth"),
    [
        # A 3xx to MAIL FROM is no acceptance: the sender step fails with the server's words.
        ({"AUTH": "235 2.7.0 ok", "MAIL": "354 go ahead"}, Status.PASS),
        ({"AUTH": "235 2.7.0 ok", "MAIL": "250 ok", "RCPT": "334 what?"}, Status.PASS),
    ],
)
async def test_a_reply_of_the_wrong_kind_after_login_is_not_acceptance(
    replies: dict[str, str], auth: Status
) -> None:
    found = await audit(replies)
    assert found["smtp.auth"][0] == auth
    status, _, detail = found["smtp.sender"]
    assert status == Status.FAIL
    assert ("354" in detail) or ("334" in detail)


# What a server that greets in full sends after the client's EHLO, before it closes.
AT_EHLO = {
    "close_at_ehlo": b"",
    "half_ehlo_reply": b"250-mx.example\r\n",
    "garbage_ehlo_reply": b"\x00\xff not a reply\r\n",
}


@asynccontextmanager
async def raw_server(behaviour: str) -> AsyncIterator[int]:
    """A loopback server that misbehaves before or in its greeting, or greets in full and
    misbehaves at EHLO (:data:`AT_EHLO`); yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if behaviour == "endless_continuation":
                while True:
                    writer.write(b"220-and more\r\n" * 100)
                    await writer.drain()
            if behaviour in AT_EHLO:
                writer.write(b"220 mx.example ESMTP\r\n")
                await writer.drain()
                await reader.readline()  # the EHLO
                writer.write(AT_EHLO[behaviour])
                await writer.drain()
                return
            chunks = {
                "nul_banner": [b"\x00\x00\x00\r\n"],
                "huge_line": [b"220 " + b"x" * (10 * 1024 * 1024) + b"\r\n"],
                "close_mid_reply": [b"220-mx.example ESMTP\r\n"],
                "busy_421": [b"421 4.3.2 Service not available, closing transmission channel\r\n"],
                "close_at_once": [],
            }[behaviour]
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("behaviour", "cause", "title"),
    [
        ("nul_banner", Cause.UNKNOWN, "closed or garbled the greeting"),
        ("endless_continuation", Cause.UNKNOWN, "closed or garbled the greeting"),
        ("huge_line", Cause.UNKNOWN, "closed or garbled the greeting"),
        ("close_mid_reply", Cause.UNKNOWN, "closed or garbled the greeting"),
        ("close_at_once", Cause.CONNECTION_REFUSED, "closed or garbled the greeting"),
        ("busy_421", Cause.TEMPORARY_FAILURE, "is temporarily unavailable"),
    ],
)
async def test_a_server_that_breaks_the_greeting_is_named_for_what_it_did(
    behaviour: str, cause: Cause, title: str
) -> None:
    """Garbage or a half greeting is a broken protocol, not a refused connection; only a close
    before any byte reads as a refusal (a deny rule's reset). Each within its step time."""
    import time

    async with raw_server(behaviour) as port:
        context = hostile_context(
            port, Timeouts(connect=3, banner=3, command=3, check=20), password=PASSWORD
        )
        started = time.perf_counter()
        findings = await run_checks(context, select(["smtp.connect"]))
        elapsed = time.perf_counter() - started
    (connect,) = findings
    assert (connect.status, connect.cause) == (Status.FAIL, cause)
    assert connect.title == f"127.0.0.1 port {port} {title}"
    assert elapsed < 10  # the greeting's step time (3 s) bounds it, whatever the server sends


@pytest.mark.parametrize(
    ("behaviour", "cause", "title"),
    [
        # Greeted in full, then closed without a reply: the server did not serve (a server
        # that must close says 421 first, RFC 5321 section 3.8), it refused nothing.
        ("close_at_ehlo", Cause.TEMPORARY_FAILURE, "hangs up after its greeting"),
        # Half an answer, or garbage, and a close: a broken protocol.
        ("half_ehlo_reply", Cause.UNKNOWN, "garbled its answer to EHLO"),
        ("garbage_ehlo_reply", Cause.UNKNOWN, "garbled its answer to EHLO"),
    ],
)
async def test_a_server_that_greets_and_hangs_up_at_ehlo_is_named_for_what_it_did(
    behaviour: str, cause: Cause, title: str
) -> None:
    async with raw_server(behaviour) as port:
        context = hostile_context(
            port, Timeouts(connect=3, banner=3, command=3, check=20), password=PASSWORD
        )
        findings = await run_checks(context, select(["smtp.connect"]))
    (connect,) = findings
    assert (connect.check, connect.status, connect.cause) == ("smtp.connect", Status.FAIL, cause)
    assert connect.title == f"127.0.0.1 port {port} {title}"
    assert "220 mx.example ESMTP" in connect.detail
    assert f"Port in {SETTINGS_PATH}" in connect.remediation


@asynccontextmanager
async def after_starttls(behaviour: str) -> AsyncIterator[int]:
    """A server that offers STARTTLS, says 220 to it, and then stalls or sends garbage instead
    of a TLS handshake."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.example ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    writer.write(b"250-mx.example\r\n250 STARTTLS\r\n")
                elif verb == b"STARTTLS":
                    writer.write(b"220 2.0.0 go ahead\r\n")
                    await writer.drain()
                    if behaviour == "garbage":
                        await reader.read(1)  # the client's hello: answered with garbage
                        writer.write(b"\x00\xff this is not TLS\r\n" * 50)
                        await writer.drain()
                    await asyncio.sleep(30)
                else:
                    writer.write(b"250 2.0.0 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("behaviour", "title"),
    [("stall", "TLS handshake timed out"), ("garbage", "TLS handshake failed")],
)
async def test_no_tls_after_starttls_is_a_tls_mismatch_within_the_step_time(
    behaviour: str, title: str
) -> None:
    import time

    async with after_starttls(behaviour) as port:
        context = hostile_context(
            port, Timeouts(connect=3, banner=3, command=3, check=20), password=PASSWORD
        )
        started = time.perf_counter()
        findings = await run_checks(context, select(["smtp.connect", "smtp.tls"]))
        elapsed = time.perf_counter() - started
    found = {f.check: (f.status, f.cause, f.title) for f in findings}
    assert found["smtp.connect"][0] == Status.PASS
    assert found["smtp.tls"] == (Status.FAIL, Cause.TLS_MISMATCH, title)
    assert elapsed < 10  # the handshake's step time (3 s) bounds it
