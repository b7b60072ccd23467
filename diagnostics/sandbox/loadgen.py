"""Concurrent SMTP sessions against a sandbox server, for the load test and the benchmark.

:func:`deliver_concurrently` opens ``sessions`` SMTP sessions at once (each its own TCP
connection), each delivering one uniquely tagged message, and records how long every session
took. :func:`null_sink` is the baseline server: aiosmtpd accepting and discarding, so that a
benchmark can report the sandbox's figures as a ratio against bare SMTP on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import email.utils
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from diagnostics.net import Dialer, smtp_session
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.smtpserver import Gate, PeerMap, SandboxSMTP, bound_port, listen


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured."""

    tokens: tuple[str, ...]
    session_seconds: tuple[float, ...]
    elapsed: float
    errors: tuple[str, ...]

    @property
    def sessions_per_second(self) -> float:
        return len(self.session_seconds) / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        """The session time below which ``fraction`` of the sessions finished."""
        ordered = sorted(self.session_seconds)
        if not ordered:
            return 0.0
        if len(ordered) == 1:
            return ordered[0]
        return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


def tagged_message(token: str, *, sender: str, recipient: str) -> bytes:
    """A small application mail carrying ``token`` in Message-ID, Subject and body."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"Bewerbung {token}"
    message["Date"] = email.utils.formatdate()
    message["Message-ID"] = f"<{token}@load.example>"
    message.set_content(f"Load test message {token}.\n")
    return message.as_bytes(policy=email.policy.SMTP)


async def deliver_concurrently(
    host: str,
    port: int,
    *,
    sessions: int,
    recipient: str,
    sender: str = "load@candidates.example",
    timeout: float = 60.0,
) -> LoadResult:
    """Run ``sessions`` SMTP sessions at once against ``host``:``port``, one message each."""
    tokens = tuple(f"load-{index:05d}" for index in range(sessions))
    durations: list[float] = []
    errors: list[str] = []

    async def one(token: str) -> None:
        started = time.perf_counter()
        try:
            sock = await Dialer().dial(host, port, timeout=timeout)
            async with smtp_session(
                sock, hostname="mx.load.example", start_tls=False, timeout=timeout
            ) as client:
                await client.sendmail(
                    sender, [recipient], tagged_message(token, sender=sender, recipient=recipient)
                )
        except Exception as exc:  # every failure is counted and shown, none hides another
            errors.append(f"{token}: {type(exc).__name__}: {exc}")
            return
        durations.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(one(token) for token in tokens))
    return LoadResult(tokens, tuple(durations), time.perf_counter() - started, tuple(errors))


class _Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok: discarded"


class _Store:
    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self.maildir.adeliver(envelope.original_content)
        return "250 2.0.0 Ok: stored"


@contextlib.asynccontextmanager
async def _sink(handler: Any, host: str) -> AsyncIterator[int]:
    def factory() -> SandboxSMTP:
        return SandboxSMTP(handler, gate=Gate(PeerMap({})), hostname="sink.load.example")

    server = await listen(factory, host=host)
    try:
        yield bound_port(server)
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def null_sink(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """An SMTP server that accepts and discards everything; yields its port."""
    async with _sink(_Discard(), host) as port:
        yield port


@contextlib.asynccontextmanager
async def maildir_sink(maildir: Maildir, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A bare aiosmtpd server that stores every message in ``maildir`` (durably) and nothing else."""
    async with _sink(_Store(maildir), host) as port:
        yield port
