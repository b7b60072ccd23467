"""A diagnostic SMTP client: every step bounded in time and size, every line kept.

Unlike a mail-sending client, this one is built to face broken and hostile servers: a reply
line is at most :data:`MAX_LINE` bytes, a reply at most :data:`MAX_LINES` lines, and each
step (connect, TLS, banner, a command) runs under its own deadline covering the whole reply,
so a server that drips one byte a second ends in :class:`~diagnostics.errors.StepTimeout`,
not in a hang. The transcript records what was said, with credentials masked before they are
stored; :func:`~diagnostics.redact.redact` runs over every line as well.

Exceptions: :class:`SMTPProtocolError` (a reply that breaks RFC 5321's grammar or our
bounds), :class:`~diagnostics.errors.StepTimeout`, :class:`~diagnostics.errors.ProbeError`
(connection refused or closed, TLS failure; ``__cause__`` keeps the original).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from diagnostics.errors import ProbeError, StepTimeout
from diagnostics.net import address_literal, connect_socket
from diagnostics.redact import redact
from diagnostics.secrets import MASK, Secret

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers stay well below. A
# generous bound still stops a server that sends a megabyte without a line end.
MAX_LINE = 4096
MAX_LINES = 100
_REPLY_LINE = re.compile(r"^(?P<code>[2-5][0-9][0-9])(?P<sep>[ -]|$)(?P<text>.*)$")
_ENHANCED = re.compile(r"^(?P<status>[245]\.\d{1,3}\.\d{1,3})\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SMTPProtocolError(ProbeError):
    """The server's reply breaks the SMTP grammar or the client's bounds."""


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and its lines' texts (without code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """All lines joined by a space."""
        return " ".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (RFC 3463) the first line starts with, if any."""
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        return match.group("status") if match else None

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def keywords(self) -> dict[str, str]:
        """EHLO keywords (upper case) and their parameters, from the lines after the first."""
        found: dict[str, str] = {}
        for line in self.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                found[keyword.upper()] = params.strip()
        return found


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


@dataclass
class Transcript:
    """The lines of one session, credentials masked before they are stored."""

    started: float = field(default_factory=time.perf_counter)
    lines: list[Line] = field(default_factory=list)

    def add(self, side: Literal["C", "S", "*"], text: str) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        self.lines.append(Line(side, redact(text), round(elapsed, 1)))

    def as_text(self) -> list[str]:
        return [f"{line.side}: {line.text}" for line in self.lines]


def check_address(address: str) -> str:
    """``address`` when it is safe on an SMTP command line; ValueError otherwise."""
    if _CONTROL.search(address) or any(c in address for c in "<> "):
        raise ValueError(f"address {address!r} holds characters an SMTP command cannot carry")
    return address


class SMTPConnection:
    """One SMTP session over a connected stream."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        transcript: Transcript,
        server_name: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transcript = transcript
        self.server_name = server_name
        self.tls: TLSInfo | None = None
        # After a timeout or a garbled reply the dialogue is out of step: no polite QUIT then.
        self.broken = False

    @property
    def helo_name(self) -> str:
        """What to say after EHLO: the address literal of this end of the connection (see
        :func:`diagnostics.net.address_literal`)."""
        return address_literal(self.writer.get_extra_info("sockname"))

    @classmethod
    async def open(
        cls,
        address: str,
        port: int,
        *,
        server_name: str,
        timeout: float,
        source: str | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        tls_timeout: float | None = None,
        transcript: Transcript | None = None,
    ) -> SMTPConnection:
        """Connect (step ``connect``) and, for implicit TLS, shake hands (step ``tls``)."""
        transcript = transcript or Transcript()
        transcript.add(
            "*", f"connecting to {address} port {port}" + (f" from {source}" if source else "")
        )
        sock = await connect_socket(address, port, timeout=timeout, source=source)
        transcript.add("*", "connected")
        try:
            async with asyncio.timeout(tls_timeout or timeout):
                reader, writer = await asyncio.open_connection(
                    sock=sock,
                    limit=MAX_LINE,
                    ssl=implicit_tls,
                    server_hostname=server_name if implicit_tls else None,
                    ssl_handshake_timeout=(tls_timeout or timeout) if implicit_tls else None,
                )
        except TimeoutError:
            sock.close()
            raise StepTimeout(
                "tls" if implicit_tls else "connect", tls_timeout or timeout
            ) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            transcript.add("*", f"TLS handshake failed: {exc}")
            raise ProbeError("tls", _tls_reason(exc)) from exc
        connection = cls(reader, writer, transcript=transcript, server_name=server_name)
        if implicit_tls is not None:
            connection._record_tls()
        return connection

    def _record_tls(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        cipher = ssl_object.cipher()
        try:
            decoded = ssl_object.getpeercert() or None
        except ValueError:  # a name the ssl module cannot decode: read from the DER form only
            decoded = None
        self.tls = TLSInfo(
            version=str(ssl_object.version()),
            cipher=cipher[0] if cipher else "",
            peer_certificate=ssl_object.getpeercert(binary_form=True),
            peer_certificate_decoded=decoded,
        )
        self.transcript.add("*", f"TLS established: {self.tls.version}, {self.tls.cipher}")

    async def read_reply(self, step: str, timeout: float) -> Reply:
        """The next reply, whole, within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._read_reply(step)
        except TimeoutError:
            self.broken = True
            self.transcript.add("*", f"no complete reply within {timeout:g} s")
            raise StepTimeout(step, timeout) from None
        except ProbeError:
            self.broken = True
            raise

    async def _read_reply(self, step: str) -> Reply:
        lines: list[str] = []
        code: str | None = None
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.transcript.add("*", f"reply line longer than {MAX_LINE} bytes")
                raise SMTPProtocolError(
                    step, f"the server sent a reply line longer than {MAX_LINE} bytes"
                ) from None
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.transcript.add("S", exc.partial.decode("utf-8", "replace").rstrip())
                self.transcript.add("*", "connection closed by the server")
                raise ProbeError(step, "the server closed the connection") from None
            except (ConnectionError, ssl.SSLError) as exc:
                self.transcript.add("*", f"connection lost: {exc}")
                raise ProbeError(step, f"the connection was lost: {exc}") from exc
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.transcript.add("S", text)
            match = _REPLY_LINE.match(text)
            if match is None:
                raise SMTPProtocolError(step, f"the server's reply is not SMTP: {text[:80]!r}")
            if code is not None and match.group("code") != code:
                raise SMTPProtocolError(step, "the lines of one reply carry different codes")
            code = match.group("code")
            lines.append(match.group("text"))
            if match.group("sep") != "-":
                return Reply(int(code), tuple(lines))
            if len(lines) >= MAX_LINES:
                raise SMTPProtocolError(step, f"the server's reply runs past {MAX_LINES} lines")

    async def command(
        self, step: str, line: str, timeout: float, *, shown: str | None = None
    ) -> Reply:
        """Send ``line`` and read the reply; ``shown`` is what the transcript records instead."""
        if _CONTROL.search(line):
            raise ValueError("an SMTP command line must not hold control characters")
        self.transcript.add("C", shown if shown is not None else line)
        try:
            self.writer.write(line.encode("utf-8") + b"\r\n")
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            raise StepTimeout(step, timeout) from None
        except (ConnectionError, ssl.SSLError) as exc:
            self.transcript.add("*", f"connection lost: {exc}")
            raise ProbeError(step, f"the connection was lost: {exc}") from exc
        return await self.read_reply(step, timeout)

    async def starttls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Upgrade to TLS after a 220 to STARTTLS (step ``tls``)."""
        self.transcript.add("*", "TLS handshake")
        try:
            async with asyncio.timeout(timeout):
                await self.writer.start_tls(context, server_hostname=self.server_name)
        except TimeoutError:
            self.transcript.add("*", f"TLS handshake not done within {timeout:g} s")
            raise StepTimeout("tls", timeout) from None
        except (ssl.SSLError, OSError) as exc:
            self.transcript.add("*", f"TLS handshake failed: {exc}")
            raise ProbeError("tls", _tls_reason(exc)) from exc
        self._record_tls()

    async def authenticate(
        self, mechanism: str, account: str, password: Secret, timeout: float
    ) -> Reply:
        """One AUTH attempt with ``mechanism`` (PLAIN or LOGIN); the final reply."""
        if mechanism == "PLAIN":
            blob = base64.b64encode(f"\0{account}\0{password.reveal()}".encode()).decode()
            return await self.command(
                "auth", f"AUTH PLAIN {blob}", timeout, shown=f"AUTH PLAIN {MASK}"
            )
        reply = await self.command("auth", "AUTH LOGIN", timeout)
        if reply.code != 334:
            return reply
        user = base64.b64encode(account.encode()).decode()
        reply = await self.command("auth", user, timeout, shown=f"{user} ({account})")
        if reply.code != 334:
            return reply
        secret = base64.b64encode(password.reveal().encode()).decode()
        return await self.command("auth", secret, timeout, shown=MASK)

    async def close(self) -> None:
        """QUIT politely when possible, then close; never raises."""
        if not self.writer.is_closing() and not self.broken:
            try:
                self.transcript.add("C", "QUIT")
                self.writer.write(b"QUIT\r\n")
                async with asyncio.timeout(2):
                    await self.writer.drain()
                    await self.reader.readuntil(b"\n")
            except (
                TimeoutError,
                OSError,
                ssl.SSLError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                pass
        self.writer.close()
        try:
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"TLS handshake failed: {exc}"
