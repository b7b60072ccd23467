"""The one SMTP client of the checks: every step bounded in time and size, every line kept.

Unlike a mail-sending client, this one is built to face broken and hostile servers: a reply
line is at most :data:`MAX_LINE` bytes, a reply at most :data:`MAX_LINES` lines (a caller may
ask for tighter bounds, as the allowlist probe does for a greeting). Each step (connect, TLS,
banner, a command) has its own timeout, which bounds the wait for every line of its reply, and
the whole session has a budget (``deadline``): a tarpit that answers slowly but surely gets
through, a server that drips one byte a second ends in :class:`~diagnostics.errors.StepTimeout`,
and nothing hangs. Each step goes into the session's record (:mod:`diagnostics.smtprecord`):
what was said, credentials masked, and how each step ended, with its timing and TLS facts.

:mod:`diagnostics.smtpreply` is the one reader of SMTP replies (pure: lines in,
:class:`Reply` out); everything that reads a reply, the allowlist's greeting probe included,
goes through it.

Exceptions: :class:`SMTPProtocolError` (a reply that breaks RFC 5321's grammar or our
bounds; ``kind`` says which), :class:`~diagnostics.errors.StepTimeout`,
:class:`~diagnostics.errors.ProbeError` (connection refused or closed, TLS failure;
``__cause__`` keeps the original).
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from diagnostics.errors import ProbeError, StepTimeout
from diagnostics.fields import envelope_address
from diagnostics.net import address_literal, connect_socket
from diagnostics.secrets import MASK, Secret
from diagnostics.smtprecord import Line, Step, TLSInfo, Transcript
from diagnostics.smtpreply import (
    MAX_LINE,
    MAX_LINES,
    Reply,
    ReplyParser,
    SMTPProtocolError,
    parse_reply,
)

__all__ = [
    "MAX_LINE",
    "MAX_LINES",
    "Line",
    "Reply",
    "ReplyParser",
    "SMTPConnection",
    "SMTPProtocolError",
    "SMTPRefused",
    "SecondLook",
    "Step",
    "TLSInfo",
    "Transcript",
    "accepted",
    "check_address",
    "parse_reply",
    "second_look",
    "unverified_context",
]

T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SMTPRefused(ProbeError):
    """The server answered a step with a 4xx or 5xx ``reply``."""

    def __init__(self, step: str, reply: Reply) -> None:
        super().__init__(step, str(reply))
        self.reply = reply


def check_address(address: str) -> str:
    """``address`` when it is safe on an SMTP command line; ValueError otherwise."""
    if _CONTROL.search(address) or any(c in address for c in "<> "):
        raise ValueError(f"address {address!r} holds characters an SMTP command cannot carry")
    return address


def envelope_path(address: str) -> str:
    """``<address>`` as MAIL FROM and RCPT TO carry it without SMTPUTF8 (RFC 5321): an
    internationalised domain by its A-label; ValueError as :func:`check_address` says."""
    return f"<{envelope_address(check_address(address))}>"


class SMTPConnection:
    """One SMTP session over a connected stream.

    ``deadline`` (event-loop time) is when the session's budget of ``budget`` seconds runs
    out: every step waits at most its own timeout and never past the deadline.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        transcript: Transcript,
        server_name: str,
        deadline: float | None = None,
        budget: float | None = None,
        max_line: int = MAX_LINE,
        max_lines: int = MAX_LINES,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transcript = transcript
        self.server_name = server_name
        self.deadline = deadline
        self.budget = budget
        self.max_line = max_line
        self.max_lines = max_lines
        self.tls: TLSInfo | None = None
        # After a timeout or a garbled reply the dialogue is out of step: no polite QUIT then.
        self.broken = False
        # What :meth:`wait_for_speech` read ahead of the next reply.
        self._pending = b""

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
        timeout: float,
        source: str | None = None,
        transcript: Transcript | None = None,
        deadline: float | None = None,
        budget: float | None = None,
        **session: Any,
    ) -> SMTPConnection:
        """Connect (step ``connect``) and go on as :meth:`start` does with ``session``'s
        options (``server_name``, ``implicit_tls``...)."""
        transcript = transcript or Transcript()
        transcript.add(
            "*", f"connecting to {address} port {port}" + (f" from {source}" if source else "")
        )
        limit, by_budget = _limit(timeout, deadline)

        async def connect() -> socket.socket:
            try:
                return await connect_socket(address, port, timeout=limit, source=source)
            except StepTimeout as exc:
                raise _timeout("connect", timeout, limit, by_budget, budget) from exc.__cause__

        sock = await transcript.step("connect", connect)
        transcript.add("*", "connected")
        return await cls.start(
            sock,
            timeout=timeout,
            transcript=transcript,
            deadline=deadline,
            budget=budget,
            **session,
        )

    @classmethod
    async def start(
        cls,
        sock: socket.socket,
        *,
        server_name: str,
        timeout: float,
        implicit_tls: ssl.SSLContext | None = None,
        tls_timeout: float | None = None,
        transcript: Transcript | None = None,
        deadline: float | None = None,
        budget: float | None = None,
        max_line: int = MAX_LINE,
        max_lines: int = MAX_LINES,
    ) -> SMTPConnection:
        """The session on ``sock``, connected by whichever dialer; for implicit TLS, the
        handshake first (step ``tls``). The socket is closed when this fails."""
        transcript = transcript or Transcript()
        step = "tls" if implicit_tls else "connect"
        limit, by_budget = _limit(tls_timeout or timeout, deadline)

        async def streams() -> SMTPConnection:
            try:
                async with asyncio.timeout(limit):
                    reader, writer = await asyncio.open_connection(
                        sock=sock,
                        limit=max_line,
                        ssl=implicit_tls,
                        server_hostname=server_name if implicit_tls else None,
                        ssl_handshake_timeout=limit if implicit_tls else None,
                    )
            except TimeoutError:
                sock.close()
                if implicit_tls:
                    transcript.add("*", f"TLS handshake not done within {limit:g} s")
                raise _timeout(step, tls_timeout or timeout, limit, by_budget, budget) from None
            except (ssl.SSLError, OSError) as exc:
                sock.close()
                transcript.add("*", f"TLS handshake failed: {exc}")
                raise ProbeError("tls", _tls_reason(exc)) from exc
            except BaseException:
                sock.close()  # cancelled: a transport that took the socket has let it go
                raise
            return cls(
                reader,
                writer,
                transcript=transcript,
                server_name=server_name,
                deadline=deadline,
                budget=budget,
                max_line=max_line,
                max_lines=max_lines,
            )

        if implicit_tls is None:
            return await streams()
        opened: list[SMTPConnection] = []

        async def handshake() -> TLSInfo | None:
            opened.append(await streams())
            return opened[0]._record_tls()

        await transcript.step("tls", handshake)
        return opened[0]

    def _record_tls(self) -> TLSInfo | None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
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
        return self.tls

    async def wait_for_speech(self, timeout: float) -> bool:
        """Whether the server sends anything (or hangs up) within ``timeout`` seconds.

        Nothing is lost: what arrived is read again as the start of the next reply.
        """
        if self._pending:
            return True
        limit, _ = _limit(timeout, self.deadline)
        try:
            async with asyncio.timeout(limit):
                data = await self.reader.read(1)
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True  # the next read tells what happened
        self._pending = data
        return True

    async def _recorded(
        self, record: str | bool, step: str, action: Callable[[], Awaitable[T]]
    ) -> T:
        """``action`` as a step of the transcript: under ``step``'s name (``record`` True),
        another name (``record`` a name), or not at all (``record`` False: part of a step)."""
        if record is False:
            return await action()
        return await self.transcript.step(step if record is True else record, action)

    async def read_reply(self, step: str, timeout: float, *, record: str | bool = True) -> Reply:
        """The next reply, whole; every line within ``timeout`` seconds of the one before."""
        return await self._recorded(record, step, lambda: self._read_whole(step, timeout))

    async def _read_whole(self, step: str, timeout: float) -> Reply:
        try:
            return await self._read_reply(step, timeout)
        except ProbeError:
            self.broken = True
            raise
        except asyncio.CancelledError:
            self.broken = True
            raise

    async def _read_line(self, step: str, timeout: float, parser: ReplyParser) -> bytes:
        limit, by_budget = _limit(timeout, self.deadline)
        pending, self._pending = self._pending, b""
        try:
            async with asyncio.timeout(limit):
                return pending + await self.reader.readuntil(b"\n")
        except TimeoutError:
            self.transcript.add("*", f"no complete reply within {limit:g} s")
            raise _timeout(step, timeout, limit, by_budget, self.budget) from None
        except asyncio.LimitOverrunError:
            self.transcript.add("*", f"reply line longer than {self.max_line} bytes")
            raise SMTPProtocolError(
                step,
                f"the server sent a reply line longer than {self.max_line} bytes",
                kind="line_too_long",
                partial=tuple(parser.verbatim),
            ) from None
        except asyncio.IncompleteReadError as exc:
            partial = pending + exc.partial
            if partial:
                self.transcript.add("S", partial.decode("utf-8", "replace").rstrip())
            self.transcript.add("*", "connection closed by the server")
            raise ProbeError(step, "the server closed the connection") from None
        except (ConnectionError, ssl.SSLError) as exc:
            self.transcript.add("*", f"connection lost: {exc}")
            raise ProbeError(step, f"the connection was lost: {exc}") from exc

    async def _read_reply(self, step: str, timeout: float) -> Reply:
        parser = ReplyParser(step, max_lines=self.max_lines)
        while True:
            raw = await self._read_line(step, timeout, parser)
            self.transcript.add("S", raw.decode("utf-8", "replace").rstrip("\r\n"))
            reply = parser.feed(raw)
            if reply is not None:
                return reply

    async def command(
        self,
        step: str,
        line: str,
        timeout: float,
        *,
        shown: str | None = None,
        record: str | bool = True,
    ) -> Reply:
        """Send ``line`` and read the reply; ``shown`` is what the transcript records instead."""
        if _CONTROL.search(line):
            raise ValueError("an SMTP command line must not hold control characters")
        self.transcript.add("C", shown if shown is not None else line)
        return await self._recorded(
            record, step, lambda: self._send(step, line.encode("utf-8") + b"\r\n", timeout)
        )

    async def send_data(
        self, data: bytes, timeout: float, *, record: str | bool = "data_end"
    ) -> Reply:
        """After DATA's 354: the message (lines starting with a dot doubled, RFC 5321
        4.5.2), the final dot, and the server's verdict on it (step ``data``)."""
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        body = b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
        )
        return await self._recorded(
            record, "data", lambda: self._send("data", body + b".\r\n", timeout)
        )

    async def _send(self, step: str, payload: bytes, timeout: float) -> Reply:
        limit, by_budget = _limit(timeout, self.deadline)
        try:
            self.writer.write(payload)
            async with asyncio.timeout(limit):
                await self.writer.drain()
        except TimeoutError:
            self.broken = True
            raise _timeout(step, timeout, limit, by_budget, self.budget) from None
        except (ConnectionError, ssl.SSLError) as exc:
            self.transcript.add("*", f"connection lost: {exc}")
            raise ProbeError(step, f"the connection was lost: {exc}") from exc
        return await self._read_whole(step, timeout)

    async def starttls(self, context: ssl.SSLContext, timeout: float) -> TLSInfo | None:
        """Upgrade to TLS after a 220 to STARTTLS (step ``tls``)."""
        return await self.transcript.step("tls", lambda: self._starttls(context, timeout))

    async def _starttls(self, context: ssl.SSLContext, timeout: float) -> TLSInfo | None:
        self.transcript.add("*", "TLS handshake")
        limit, by_budget = _limit(timeout, self.deadline)
        try:
            async with asyncio.timeout(limit):
                await self.writer.start_tls(context, server_hostname=self.server_name)
        except TimeoutError:
            self.transcript.add("*", f"TLS handshake not done within {limit:g} s")
            raise _timeout("tls", timeout, limit, by_budget, self.budget) from None
        except (ssl.SSLError, OSError) as exc:
            self.transcript.add("*", f"TLS handshake failed: {exc}")
            raise ProbeError("tls", _tls_reason(exc)) from exc
        return self._record_tls()

    async def authenticate(
        self, mechanism: str, account: str, password: Secret, timeout: float
    ) -> Reply:
        """One AUTH attempt with ``mechanism`` (PLAIN or LOGIN), one step ``auth``; the final
        reply."""
        return await self.transcript.step(
            "auth", lambda: self._authenticate(mechanism, account, password, timeout)
        )

    async def _authenticate(
        self, mechanism: str, account: str, password: Secret, timeout: float
    ) -> Reply:
        if mechanism == "PLAIN":
            blob = base64.b64encode(f"\0{account}\0{password.reveal()}".encode()).decode()
            return await self.command(
                "auth", f"AUTH PLAIN {blob}", timeout, shown=f"AUTH PLAIN {MASK}", record=False
            )
        reply = await self.command("auth", "AUTH LOGIN", timeout, record=False)
        if reply.code != 334:
            return reply
        user = base64.b64encode(account.encode()).decode()
        reply = await self.command("auth", user, timeout, shown=f"{user} ({account})", record=False)
        if reply.code != 334:
            return reply
        secret = base64.b64encode(password.reveal().encode()).decode()
        return await self.command("auth", secret, timeout, shown=MASK, record=False)

    async def send_message(
        self,
        sender: str,
        recipients: list[str],
        data: bytes,
        *,
        timeout: float,
        data_timeout: float,
    ) -> Reply:
        """MAIL FROM, RCPT TO each recipient, DATA and the message, after the greeting and
        EHLO; the server's verdict on the message. SMTPRefused names the step that a 4xx or 5xx
        answered (a refused recipient ends the transaction: the message goes to all or none)."""
        reply = await self.command("mail", f"MAIL FROM:{envelope_path(sender)}", timeout)
        accepted("mail", reply)
        for recipient in recipients:
            reply = await self.command("rcpt", f"RCPT TO:{envelope_path(recipient)}", timeout)
            accepted("rcpt", reply)
        reply = await self.command("data", "DATA", timeout)
        if reply.code != 354:
            raise SMTPRefused("data", reply)
        self.transcript.add("C", f"<message, {len(data)} bytes>")
        return accepted("data", await self.send_data(data, data_timeout))

    async def quit(self, timeout: float) -> None:
        """Say QUIT without waiting for the answer (a server that already hung up is fine)."""
        if self.writer.is_closing() or self.broken:
            return
        self.transcript.add("C", "QUIT")
        try:
            self.writer.write(b"QUIT\r\n")
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except (TimeoutError, OSError, ssl.SSLError):
            pass

    async def close(self, *, timeout: float = 2, polite: bool = True) -> None:
        """QUIT politely when possible (``polite``: and wait for its answer), then close;
        never raises. A peer that does not finish the TLS shutdown in time is cut off."""
        if polite and not self.writer.is_closing() and not self.broken:
            try:
                self.transcript.add("C", "QUIT")
                self.writer.write(b"QUIT\r\n")
                async with asyncio.timeout(timeout):
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
            async with asyncio.timeout(timeout):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            self.writer.transport.abort()
        except BaseException:
            self.writer.transport.abort()
            raise


def accepted(step: str, reply: Reply) -> Reply:
    """``reply`` when it accepts (below 400); SMTPRefused naming ``step`` otherwise."""
    if reply.code >= 400:
        raise SMTPRefused(step, reply)
    return reply


def _limit(timeout: float, deadline: float | None) -> tuple[float, bool]:
    """The seconds a step may wait, and whether the session's deadline (not the step's own
    timeout) sets that."""
    if deadline is None:
        return timeout, False
    left = max(deadline - asyncio.get_running_loop().time(), 0.0)
    return (left, True) if left < timeout else (timeout, False)


def _timeout(
    step: str, timeout: float, limit: float, by_budget: bool, budget: float | None
) -> StepTimeout:
    if by_budget:
        return StepTimeout(step, limit, budget=budget)
    return StepTimeout(step, timeout)


@dataclass(frozen=True)
class SecondLook:
    """What a port speaks, seen on a connection of its own: ``tls`` (a handshake at once,
    before any greeting), ``plain`` (a greeting in clear text) or None (neither)."""

    speaks: Literal["tls", "plain"] | None
    tls: TLSInfo | None = None
    greeting: Reply | None = None
    ehlo: Reply | None = None


def unverified_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate: for reading what a server offers,
    never for sending a password."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def second_look(
    address: str,
    port: int,
    *,
    tls: bool,
    server_name: str,
    timeout: float,
    source: str | None = None,
    transcript: Transcript | None = None,
) -> SecondLook:
    """On a connection of its own to ``address``:``port``: with ``tls``, whether it completes
    a TLS handshake at once (implicit TLS; the certificate is not judged here); without,
    whether it greets in plain text, and what it answers to EHLO. No AUTH is ever sent; notes
    go to ``transcript``."""
    note = transcript or Transcript()
    asked = "speak TLS at once" if tls else "greet in plain text"
    note.add("*", f"second connection: does port {port} {asked}?")
    try:
        connection = await SMTPConnection.open(
            address,
            port,
            server_name=server_name,
            timeout=timeout,
            source=source,
            implicit_tls=unverified_context() if tls else None,
        )
    except ProbeError as exc:
        note.add("*", f"second connection: {exc}")
        return SecondLook(None)
    try:
        if connection.tls is not None:
            note.add("*", f"second connection: TLS at once ({connection.tls.version})")
            return SecondLook("tls", tls=connection.tls)
        greeting = await connection.read_reply("banner", timeout)
        note.add("*", f"second connection: plain-text greeting {greeting}")
        try:
            ehlo = await connection.command("ehlo", f"EHLO {connection.helo_name}", timeout)
        except ProbeError:
            ehlo = None
        return SecondLook("plain", greeting=greeting, ehlo=ehlo)
    except ProbeError as exc:
        note.add("*", f"second connection: no plain-text greeting ({exc})")
        return SecondLook(None)
    finally:
        await connection.close(timeout=timeout, polite=connection.tls is None)


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"TLS handshake failed: {exc}"
