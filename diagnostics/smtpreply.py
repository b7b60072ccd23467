"""The one reader of SMTP replies (pure): lines in, :class:`Reply` out.

Everything that reads what an SMTP server says goes through :class:`ReplyParser`: the
session client (:mod:`diagnostics.smtpclient`) line by line as the lines arrive, and
:func:`parse_reply` for lines already read. A line that breaks RFC 5321's reply grammar or
the reader's bounds raises :class:`SMTPProtocolError`, whose ``kind`` says which, so that each
caller can say it in its own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from diagnostics.errors import ProbeError

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers stay well below. A
# generous bound still stops a server that sends a megabyte without a line end.
MAX_LINE = 4096
MAX_LINES = 100
_REPLY_LINE = re.compile(r"^(?P<code>[2-5][0-9][0-9])(?P<sep>[ -]|$)(?P<text>.*)$")
_ENHANCED = re.compile(r"^(?P<status>[245]\.\d{1,3}\.\d{1,3})\b")


class SMTPProtocolError(ProbeError):
    """The server's reply breaks the SMTP grammar or the client's bounds.

    ``kind`` is one of :data:`PROTOCOL_ERRORS`; ``partial`` holds the reply's lines read so far
    (verbatim, code included); ``codes`` the reply codes seen (for ``mixed_codes``).
    """

    def __init__(
        self,
        step: str,
        message: str,
        *,
        kind: str = "not_smtp",
        partial: tuple[str, ...] = (),
        codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(step, message)
        self.reason = message
        self.kind = kind
        self.partial = partial
        self.codes = codes


# What SMTPProtocolError.kind may say.
PROTOCOL_ERRORS = ("not_smtp", "mixed_codes", "line_too_long", "too_many_lines", "unfinished")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and its lines' texts (without code and separator).

    ``verbatim`` keeps the lines as the server sent them, code and separator included.
    """

    code: int
    lines: tuple[str, ...]
    verbatim: tuple[str, ...] = field(default=(), compare=False, repr=False)

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


class ReplyParser:
    """Reads one SMTP reply line by line (pure): :meth:`feed` returns the :class:`Reply` once
    its last line came, None while more must come, and raises :class:`SMTPProtocolError` for a
    line that breaks the grammar or the bounds."""

    def __init__(self, step: str, *, max_lines: int = MAX_LINES) -> None:
        self.step = step
        self.max_lines = max_lines
        self.code: str | None = None
        self.texts: list[str] = []
        self.verbatim: list[str] = []

    def feed(self, raw: bytes) -> Reply | None:
        """Take one line (its CRLF or LF may be there or not)."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        match = _REPLY_LINE.match(text)
        if match is None:
            raise SMTPProtocolError(
                self.step,
                f"the server's reply is not SMTP: {text[:80]!r}",
                kind="not_smtp",
                partial=(*self.verbatim, text),
            )
        self.verbatim.append(text)
        if self.code is not None and match.group("code") != self.code:
            raise SMTPProtocolError(
                self.step,
                "the lines of one reply carry different codes",
                kind="mixed_codes",
                partial=tuple(self.verbatim),
                codes=(self.code, match.group("code")),
            )
        self.code = match.group("code")
        self.texts.append(match.group("text"))
        if match.group("sep") != "-":
            return Reply(int(self.code), tuple(self.texts), tuple(self.verbatim))
        if len(self.texts) >= self.max_lines:
            raise SMTPProtocolError(
                self.step,
                f"the server's reply runs past {self.max_lines} lines",
                kind="too_many_lines",
                partial=tuple(self.verbatim),
            )
        return None


def parse_reply(lines: Sequence[bytes], step: str = "reply") -> Reply:
    """The one reply that ``lines`` hold, whole; SMTPProtocolError otherwise (``unfinished``
    when its last line says more is to come; ``not_smtp`` for no line at all)."""
    if not lines:
        raise SMTPProtocolError(step, "no reply", kind="not_smtp")
    parser = ReplyParser(step, max_lines=max(len(lines), 1) + 1)
    for index, line in enumerate(lines):
        reply = parser.feed(line)
        if reply is not None:
            if index != len(lines) - 1:
                raise SMTPProtocolError(
                    step, "lines after the end of the reply", partial=tuple(parser.verbatim)
                )
            return reply
    raise SMTPProtocolError(
        step, "the reply does not end", kind="unfinished", partial=tuple(parser.verbatim)
    )
