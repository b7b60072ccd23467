"""The record of one SMTP session: its transcript lines and its steps.

The SMTP client (:mod:`diagnostics.smtpclient`) writes it as it runs each step: the command,
the reply that ended the step (or its error, and whether its time ran out), the timing and,
for ``tls``, the version and cipher agreed on. The checks read it: the smtp family's
classifiers through :class:`~diagnostics.net.session.SessionOutcome`, the evidence of every
finding as ``steps`` and ``transcript``. Credentials are masked before a line is stored.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from diagnostics.errors import ProbeError, StepTimeout
from diagnostics.redact import redact
from diagnostics.smtpreply import Reply

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """A transcript line: who spoke (``C`` client, ``S`` server, ``*`` a note) and when."""

    side: Literal["C", "S", "*"]
    text: str
    at_ms: float


@dataclass(frozen=True)
class TLSInfo:
    """What the TLS handshake agreed on."""

    version: str
    cipher: str
    peer_certificate: bytes | None
    # The same certificate as the ssl module decodes it (``getpeercert()``): filled only when
    # the handshake verified it; lets the checks read it without importing cryptography.
    peer_certificate_decoded: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Step:
    """One step of a session: its name, outcome and duration, the reply that ended it (TLS
    version and cipher for ``tls``) or the error, and whether its time ran out."""

    name: str
    ok: bool
    elapsed_ms: float
    reply: str | None = None
    error: str | None = None
    timed_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "reply": self.reply,
            "error": self.error,
            "timed_out": self.timed_out,
        }


def succeeded(step: str, code: int) -> bool:
    """Whether ``code`` is the answer that lets step ``step`` go on: only 235 ends AUTH (a
    334 is one more challenge, RFC 4954), only 354 opens DATA, and every other command wants
    a 2xx (a 3xx where none is due is not success)."""
    if step == "auth":
        return code == 235
    if step == "data":
        return code == 354
    return 200 <= code < 300


@dataclass
class Transcript:
    """The record of one session: its lines, credentials masked before they are stored, and
    its steps, each written by the client as it runs it; the classifiers read both."""

    started: float = field(default_factory=time.perf_counter)
    lines: list[Line] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def add(self, side: Literal["C", "S", "*"], text: str) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        self.lines.append(Line(side, redact(text), round(elapsed, 1)))

    def as_text(self) -> list[str]:
        return [f"{line.side}: {line.text}" for line in self.lines]

    async def step(self, name: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` as step ``name`` and record it: a reply of 400 or more is a step
        that failed; a ProbeError (raised on) names why, StepTimeout that its time ran out."""
        started = time.perf_counter()
        try:
            value = await action()
        except ProbeError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            timed_out = isinstance(exc, StepTimeout)
            self.steps.append(Step(name, False, elapsed, error=str(exc), timed_out=timed_out))
            raise
        elapsed = (time.perf_counter() - started) * 1000
        if isinstance(value, Reply):
            self.steps.append(Step(name, succeeded(name, value.code), elapsed, reply=str(value)))
        elif isinstance(value, TLSInfo):
            self.steps.append(Step(name, True, elapsed, reply=f"{value.version} {value.cipher}"))
        else:
            self.steps.append(Step(name, True, elapsed))
        return value
