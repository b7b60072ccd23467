"""Keeps secret values out of every text that leaves memory: logs, exceptions, evidence.

Every :class:`~diagnostics.secrets.Secret` made in this process is known here;
:func:`redact` replaces each value (and its base64 form) in a text with the mask, and
:class:`RedactingFilter` does it to every log record.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading

from diagnostics.secrets import MASK, known_snapshot, known_version

# AUTH PLAIN sends base64("\0login\0password"): the password's own base64 form is not a
# substring of that, so base64-looking tokens are decoded and masked whole when they hold a
# secret. Eight characters are the shortest such blob for a four-character secret.
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


class _Matcher:
    """The known values, found in a text in one pass (Aho-Corasick) however many there are:
    a batch of a thousand accounts knows thousands of passwords. Values learnt since the
    automaton was built are looked for one by one until there are enough of them to build it
    again, so that a growing batch does not rebuild it for each new account."""

    def __init__(self, values: frozenset[str]) -> None:
        import ahocorasick

        self.values = values
        self.automaton = ahocorasick.Automaton()
        for value in values:
            self.automaton.add_word(value, len(value))
        if values:
            self.automaton.make_automaton()
        self.recent: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.values and not self.recent

    def learn(self, values: frozenset[str]) -> _Matcher:
        """This matcher with ``values`` (a superset of what it knows): the same automaton
        and the new values beside it, or a new automaton when they are many."""
        new = tuple(v for v in values if v not in self.values)
        if len(new) > max(32, len(self.values) // 8):
            return _Matcher(values)
        self.recent = new
        return self

    def found(self, text: str) -> bool:
        if self.values and next(self.automaton.iter(text), None) is not None:
            return True
        return any(value in text for value in self.recent)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The stretches of ``text`` that a known value covers, merged where they touch."""
        found = (
            [(end - length + 1, end + 1) for end, length in self.automaton.iter(text)]
            if self.values
            else []
        )
        for value in self.recent:
            at = text.find(value)
            while at >= 0:
                found.append((at, at + len(value)))
                at = text.find(value, at + 1)
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


_matcher: tuple[int, _Matcher] | None = None
_matcher_lock = threading.Lock()


def _current() -> _Matcher:
    global _matcher
    version = known_version()
    with _matcher_lock:
        if _matcher is None or _matcher[0] != version:
            # Read with the version, so that a value added meanwhile makes the next call look.
            version, values = known_snapshot()
            matcher = _Matcher(values) if _matcher is None else _matcher[1].learn(values)
            _matcher = (version, matcher)
        return _matcher[1]


def _holds_secret(token: str, matcher: _Matcher) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return matcher.found(decoded.decode("utf-8", errors="replace"))


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by the mask: every stretch of it that
    a value covers (touching or overlapping ones as one).

    Also masks whole base64 tokens that decode to text holding a secret (AUTH PLAIN).
    """
    matcher = _current()
    if matcher.empty:
        return text
    text = _BASE64_TOKEN.sub(
        lambda match: MASK if _holds_secret(match.group(), matcher) else match.group(), text
    )
    spans = matcher.spans(text)
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], MASK]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in the message, traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
