"""An IMAP client for reading the company's own mailbox (RFC 9051 / RFC 3501), bounded.

Only what a live round trip needs: implicit TLS (993) or STARTTLS (143) on a socket from the
one dialer; login by ``AUTHENTICATE PLAIN`` (``LOGIN`` when the server offers no PLAIN), or
``AUTHENTICATE XOAUTH2`` with a bearer token; ``LIST``, ``EXAMINE``/``SELECT``, ``UID
SEARCH``, ``UID FETCH BODY.PEEK[]`` (never marks anything read), ``IDLE`` (RFC 2177), and
deleting the tool's own messages with ``UID EXPUNGE`` (RFC 4315 UIDPLUS) only.

Every read has a timeout and every response a size bound. Failures raise :class:`IMAPError`
(``step`` is connect, greeting, starttls, tls, login, list, select, search, fetch, idle or
delete); a server's ``NO`` or ``BAD`` is an :class:`IMAPRefused` carrying the server's words.
No credential is ever put in an error or a log: the login lines are not recorded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diagnostics.errors import ProbeError, StepTimeout

if TYPE_CHECKING:
    from diagnostics.context import Context
    from diagnostics.net.dial import Dialer
    from diagnostics.secrets import Secret

# A response line is short; a literal (a whole message) may be large but not unbounded.
MAX_LINE = 64 * 1024
MAX_LITERAL = 64 * 1024 * 1024
MAX_UNTAGGED = 100_000
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
_TAGGED = re.compile(rb"^(?P<tag>A\d+) (?P<status>OK|NO|BAD)\b ?(?P<text>.*)$", re.IGNORECASE)
_LIST = re.compile(
    rb'^\* LIST \((?P<flags>[^)]*)\) (?P<delim>NIL|"(?:[^"\\]|\\.)*") (?P<name>.*)$', re.I
)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)
# Characters an IMAP quoted string may carry as they are (RFC 9051 quoted: no CR, LF, NUL).
_QUOTABLE = re.compile(r"^[\x01-\x09\x0b\x0c\x0e-\x7f]*$")


class IMAPError(ProbeError):
    """An IMAP step could not be carried out."""


class IMAPRefused(IMAPError):
    """The server answered ``NO`` or ``BAD`` (or ``BYE``): ``said`` is its text."""

    def __init__(self, step: str, said: str) -> None:
        self.said = said
        super().__init__(step, f"the server answered: {said}")


@dataclass
class Line:
    """One response: its text with each literal replaced by ``{n}``, and the literals."""

    text: bytes
    literals: list[bytes] = field(default_factory=list)


@dataclass
class Response:
    """A command's completion and the untagged lines that came before it."""

    status: str
    text: str
    untagged: list[Line]


def quote(value: str) -> str:
    """An IMAP quoted string of ``value``; ValueError when only a literal could carry it."""
    if not _QUOTABLE.match(value):
        raise ValueError("not quotable")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def decode_folder(name: str) -> str:
    """A folder name as people read it: IMAP's modified UTF-7 (RFC 3501 5.1.3) decoded."""

    def one(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)


class IMAPClient:
    """One IMAP connection; use :meth:`open`, then the commands, then :meth:`logout`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.capabilities: frozenset[str] = frozenset()
        self.greeting = ""
        self.tls_version = ""
        self._tag = 0
        self.selected: str | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        where: Context | Dialer,
        host: str,
        port: int,
        *,
        encryption: str,
        trust: ssl.SSLContext,
        timeout: float,
    ) -> IMAPClient:
        """Connect (through the run's dialer), read the greeting, secure the session (implicit
        TLS or STARTTLS) and learn the capabilities. IMAPError; the socket is closed then."""
        from diagnostics.net.dial import dial

        sock = await dial(where, host, port, timeout=timeout)
        implicit = encryption == "tls"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    sock=sock,
                    limit=MAX_LINE,
                    ssl=trust if implicit else None,
                    server_hostname=host if implicit else None,
                    ssl_handshake_timeout=timeout if implicit else None,
                )
        except TimeoutError:
            sock.close()
            raise StepTimeout("tls", timeout) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise IMAPError("tls", _tls_reason(exc)) from None
        client = cls(reader, writer, timeout=timeout)
        try:
            await client._start(host, implicit=implicit, trust=trust)
        except BaseException:
            client.close()
            raise
        return client

    async def _start(self, host: str, *, implicit: bool, trust: ssl.SSLContext) -> None:
        greeting = await self._line("greeting")
        self.greeting = greeting.text.decode("utf-8", "replace").strip()
        upper = greeting.text.upper()
        if upper.startswith(b"* BYE"):
            raise IMAPRefused("greeting", self.greeting)
        if not (upper.startswith(b"* OK") or upper.startswith(b"* PREAUTH")):
            raise IMAPError(
                "greeting",
                f"not an IMAP server: it said {self.greeting[:120]!r}"
                + ("" if implicit else " (a TLS port answers nothing readable in plain text)"),
            )
        if implicit:
            self._note_tls()
        else:
            await self.capability()
            if "STARTTLS" not in self.capabilities:
                raise IMAPError(
                    "starttls",
                    "the server does not offer STARTTLS on this port; use encryption tls "
                    "(port 993)",
                )
            await self.command("starttls", "STARTTLS")
            try:
                async with asyncio.timeout(self.timeout):
                    await self.writer.start_tls(trust, server_hostname=host)
            except TimeoutError:
                raise StepTimeout("tls", self.timeout) from None
            except (ssl.SSLError, OSError) as exc:
                raise IMAPError("tls", _tls_reason(exc)) from None
            self._note_tls()
        await self.capability()

    def _note_tls(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.tls_version = str(ssl_object.version()) if ssl_object is not None else ""

    # -- reading and writing -------------------------------------------------------------------

    async def _readline(self, step: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                line = await self.reader.readuntil(b"\n")
        except TimeoutError:
            raise StepTimeout(step, self.timeout) from None
        except asyncio.LimitOverrunError:
            raise IMAPError(step, f"a response line longer than {MAX_LINE} bytes") from None
        except asyncio.IncompleteReadError:
            raise IMAPError(step, "the server closed the connection") from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise IMAPError(step, f"the connection broke: {exc}") from None
        return line

    async def _line(self, step: str) -> Line:
        """One response line, its literals read in full (bounded)."""
        raw = await self._readline(step)
        text: list[bytes] = []
        literals: list[bytes] = []
        while True:
            match = _LITERAL.search(raw)
            if match is None:
                text.append(raw.rstrip(b"\r\n"))
                return Line(b"".join(text), literals)
            size = int(match.group(1))
            if size > MAX_LITERAL:
                raise IMAPError(step, f"a literal of {size} bytes (more than {MAX_LITERAL})")
            text.append(raw[: match.start()] + b"{%d}" % size)
            try:
                async with asyncio.timeout(self.timeout + size / 100_000):
                    literals.append(await self.reader.readexactly(size))
            except TimeoutError:
                raise StepTimeout(step, self.timeout + size / 100_000) from None
            except asyncio.IncompleteReadError:
                raise IMAPError(step, "the server closed the connection") from None
            raw = await self._readline(step)

    async def _send(self, data: bytes, step: str) -> None:
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except TimeoutError:
            raise StepTimeout(step, self.timeout) from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise IMAPError(step, f"the connection broke: {exc}") from None

    def _next_tag(self) -> str:
        self._tag += 1
        return f"A{self._tag:04d}"

    async def _complete(self, tag: str, step: str, *, check: bool = True) -> Response:
        untagged: list[Line] = []
        while True:
            line = await self._line(step)
            match = _TAGGED.match(line.text)
            if match is not None and match.group("tag").decode() == tag:
                response = Response(
                    match.group("status").decode().upper(),
                    match.group("text").decode("utf-8", "replace"),
                    untagged,
                )
                if check and response.status != "OK":
                    raise IMAPRefused(step, f"{response.status} {response.text}".strip())
                return response
            if line.text.upper().startswith(b"* BYE"):
                raise IMAPRefused(step, line.text.decode("utf-8", "replace")[2:])
            if len(untagged) >= MAX_UNTAGGED:
                raise IMAPError(step, f"more than {MAX_UNTAGGED} response lines")
            untagged.append(line)

    async def command(self, step: str, text: str, *, check: bool = True) -> Response:
        """Send ``text`` under a new tag and read until its completion."""
        tag = self._next_tag()
        await self._send(f"{tag} {text}\r\n".encode(), step)
        return await self._complete(tag, step, check=check)

    async def capability(self) -> frozenset[str]:
        response = await self.command("capability", "CAPABILITY")
        words: set[str] = set()
        for line in response.untagged:
            if line.text.upper().startswith(b"* CAPABILITY"):
                words.update(line.text.decode("ascii", "replace").upper().split()[2:])
        self.capabilities = frozenset(words)
        return self.capabilities

    # -- logging in ----------------------------------------------------------------------------

    async def login(self, account: str, password: Secret) -> str:
        """Log in with the password; the mechanism used. IMAPRefused when refused."""
        if "LOGINDISABLED" in self.capabilities and "AUTH=PLAIN" not in self.capabilities:
            raise IMAPError("login", "the server refuses LOGIN (LOGINDISABLED) and offers no PLAIN")
        if "AUTH=PLAIN" in self.capabilities:
            blob = b"\0" + account.encode() + b"\0" + password.reveal().encode()
            await self._authenticate("PLAIN", blob)
            return "AUTHENTICATE PLAIN"
        tag = self._next_tag()
        try:
            parts = [quote(value).encode() for value in (account, password.reveal())]
        except ValueError:
            parts = []
        if parts:
            await self._send(f"{tag} LOGIN ".encode() + b" ".join(parts) + b"\r\n", "login")
        else:
            await self._login_with_literals(tag, account, password)
        await self._complete(tag, "login")
        return "LOGIN"

    async def _login_with_literals(self, tag: str, account: str, password: Secret) -> None:
        """LOGIN with each argument as a synchronising literal (non-ASCII or odd characters)."""
        first = account.encode()
        await self._send(f"{tag} LOGIN {{{len(first)}}}\r\n".encode(), "login")
        await self._continuation("login")
        second = password.reveal().encode()
        await self._send(first + f" {{{len(second)}}}\r\n".encode(), "login")
        await self._continuation("login")
        await self._send(second + b"\r\n", "login")

    async def _continuation(self, step: str) -> bytes:
        line = await self._line(step)
        if not line.text.startswith(b"+"):
            raise IMAPRefused(step, line.text.decode("utf-8", "replace").split(" ", 1)[-1])
        return line.text[1:].strip()

    async def xoauth2(self, account: str, token: Secret) -> str:
        """Log in with an OAuth2 bearer token (the SASL XOAUTH2 of Google and Microsoft)."""
        if "AUTH=XOAUTH2" not in self.capabilities:
            raise IMAPError("login", "the server does not offer AUTH=XOAUTH2")
        blob = f"user={account}\x01auth=Bearer {token.reveal()}\x01\x01".encode()
        await self._authenticate("XOAUTH2", blob)
        return "AUTHENTICATE XOAUTH2"

    async def _authenticate(self, mechanism: str, blob: bytes) -> None:
        tag = self._next_tag()
        encoded = base64.b64encode(blob)
        if "SASL-IR" in self.capabilities:
            await self._send(
                f"{tag} AUTHENTICATE {mechanism} ".encode() + encoded + b"\r\n", "login"
            )
        else:
            await self._send(f"{tag} AUTHENTICATE {mechanism}\r\n".encode(), "login")
            await self._continuation("login")
            await self._send(encoded + b"\r\n", "login")
        while True:
            line = await self._line("login")
            if line.text.startswith(b"+"):
                # A challenge after the credentials is an error report (XOAUTH2 sends its JSON
                # this way); an empty answer ends the exchange, which then fails with NO.
                await self._send(b"\r\n", "login")
                continue
            match = _TAGGED.match(line.text)
            if match is not None and match.group("tag").decode() == tag:
                if match.group("status").upper() != b"OK":
                    said = line.text.decode("utf-8", "replace").split(" ", 1)[1]
                    raise IMAPRefused("login", said)
                await self.capability()
                return

    # -- reading the mailbox -------------------------------------------------------------------

    async def folders(self) -> list[str]:
        """Every selectable folder, as the server names it (modified UTF-7)."""
        response = await self.command("list", 'LIST "" "*"')
        names = []
        for line in response.untagged:
            match = _LIST.match(line.text)
            if match is None or b"\\NOSELECT" in match.group("flags").upper():
                continue
            if b"\\NONEXISTENT" in match.group("flags").upper():
                continue
            raw = match.group("name")
            name = (
                line.literals[-1].decode("utf-8", "replace")
                if raw.endswith(b"}") and line.literals
                else _unquote(raw)
            )
            names.append(name)
        return names

    async def examine(self, folder: str, *, writable: bool = False) -> int | None:
        """Open ``folder`` read-only (EXAMINE), or for writing (SELECT); the UID the next
        message will get (UIDNEXT), when the server says."""
        verb = "SELECT" if writable else "EXAMINE"
        response = await self.command("select", f"{verb} {self._astring(folder)}")
        self.selected = folder
        for line in response.untagged:
            match = _UIDNEXT.search(line.text)
            if match:
                return int(match.group(1))
        return None

    async def uid_search(self, criteria: str) -> list[int]:
        """The UIDs matching ``criteria`` (ASCII search keys) in the open folder."""
        response = await self.command("search", f"UID SEARCH {criteria}")
        uids: list[int] = []
        for line in response.untagged:
            words = line.text.split()
            if len(words) >= 2 and words[1].upper() == b"SEARCH":
                uids += [int(w) for w in words[2:] if w.isdigit()]
        return sorted(set(uids))

    async def uid_fetch(self, uid: int) -> bytes:
        """The whole message ``uid`` of the open folder, without setting \\Seen."""
        response = await self.command("fetch", f"UID FETCH {uid} (BODY.PEEK[])")
        for line in response.untagged:
            if b"FETCH" in line.text.upper() and line.literals:
                return line.literals[0]
        raise IMAPError("fetch", f"message UID {uid} is gone")

    async def idle(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for news in the open folder (IDLE where offered, a plain
        wait otherwise); whether the server reported any."""
        if "IDLE" not in self.capabilities:
            await asyncio.sleep(seconds)
            return False
        tag = self._next_tag()
        await self._send(f"{tag} IDLE\r\n".encode(), "idle")
        await self._continuation("idle")
        news = False
        try:
            async with asyncio.timeout(seconds):
                while not news:
                    line = await self._line("idle")
                    news = (
                        line.text.upper().endswith((b"EXISTS", b"RECENT"))
                        or b"FETCH" in line.text.upper()
                    )
        except TimeoutError:
            pass
        await self._send(b"DONE\r\n", "idle")
        await self._complete(tag, "idle")
        return news

    async def delete(self, uids: Sequence[int]) -> bool:
        """Delete exactly ``uids`` from the open (selected) folder; False when the server
        cannot expunge by UID (no UIDPLUS), in which case nothing is flagged or removed."""
        if not uids:
            return True
        if "UIDPLUS" not in self.capabilities and "IMAP4REV2" not in self.capabilities:
            return False
        numbers = ",".join(str(u) for u in uids)
        await self.command("delete", f"UID STORE {numbers} +FLAGS.SILENT (\\Deleted)")
        await self.command("delete", f"UID EXPUNGE {numbers}")
        return True

    async def logout(self) -> None:
        """LOGOUT, then close and wait (briefly) until the connection is closed; never raises."""
        try:
            await self.command("logout", "LOGOUT", check=False)
        except (IMAPError, StepTimeout):
            pass
        finally:
            self.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.writer.wait_closed()

    def close(self) -> None:
        self.writer.close()

    @staticmethod
    def _astring(value: str) -> str:
        try:
            return quote(value)
        except ValueError:
            raise IMAPError("select", f"a folder name IMAP cannot quote: {value!r}") from None


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the certificate is not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return f"TLS failed: {exc}"
