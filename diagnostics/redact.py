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
import sys
import threading
from collections.abc import Iterable
from typing import Any

from diagnostics.secrets import MASK, known_snapshot, known_version

# AUTH PLAIN sends base64("\0login\0password"): the password's own base64 form is not a
# substring of that, so base64-looking tokens are decoded and masked whole when they hold a
# secret. Eight characters are the shortest such blob for a four-character secret.
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
# The regex is greedy and, where it fails, moves on by one character, so each token it
# matches is a whole run of base64 characters (at least this many: the {8,} above) with no
# base64 character before it, and the up to two "=" right after it.
_TOKEN_LEAST = 8
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")

# Most texts hold no secret, yet nearly every long English word ("recruiting", "Received") is
# a token, and decoding each of them was most of the cost of redacting. A token that decodes
# to text holding a value contains one of the value's cores (see _cores); the automaton finds
# them in the same pass as the values, and only the tokens around a core are decoded.
#
# In base64(b"\0" * alignment + data), the first character made of the data's bits alone:
# the bytes before the data fill 0, 8 or 16 bits, and a character holds 6.
_CORE_START = (0, 2, 3)
# Four bytes of data give cores of four or five characters. One byte can give an empty core,
# which every text holds, and two or three give cores of two to four characters, which most
# words hold: every token is decoded then, as it always was.
_CORE_DATA_LEAST = 4
# Any stretch of a core will do, as the token holds the whole core. Eight characters (48 bits)
# hardly ever occur by chance in words or in other base64, and keep the automaton, whose
# build time grows with the characters in it, to some 2.5 times the values' own size (whole
# cores would make it 5).
_CORE_LENGTH = 8

# What a word of an automaton is: a known value, a core of one, or both.
_VALUE, _CORE = 1, 2

# Values learnt since the main automaton was built go into a second one, built again at each
# addition, until they are more than this or than a sixteenth of the main automaton's values:
# then the main one is built again with them all. So a redact() call scans two automata
# however many secrets the process knows, never a list of values one by one. Measured with
# 2,000 secrets (4,000 values and their 12,000 cores): the main automaton takes about 25 ms to
# build, once per 250 new values (some 40 accounts of three secrets, 0.6 ms an account); the
# second, of at most 250 values, about 1 ms at most, once per account. An account takes some
# 160 ms of CPU and writes thousands of texts through redact().
_YOUNG_LEAST = 64
_YOUNG_SHARE = 16


def _cores(value: str) -> tuple[str, ...] | None:
    """Stretches of base64 characters, one per alignment of ``value``'s bytes, one of which is
    in every base64 token that decodes to text holding ``value``; None when there are none.

    The decoded bytes are read as UTF-8 with errors replaced: each character but U+FFFD comes
    from its own bytes, right after the previous character's (UTF-8 is self-synchronising),
    while a U+FFFD may stand for any invalid bytes. So the longest piece of the value between
    U+FFFDs is in the decoded bytes as it is, at some offset j; and as a token decodes from its
    first character on, it encodes the piece from its character 4 * (j // 3) on as
    base64(b"\\0" * (j % 3) + piece) does, but for the characters that also hold bits of the
    bytes before or after the piece.
    """
    try:
        piece = max((part.encode() for part in value.split("\ufffd")), key=len)
    except UnicodeEncodeError:
        # A lone surrogate, which a Secret refuses anyway: decode every token.
        return None
    if len(piece) < _CORE_DATA_LEAST:
        return None
    cores = []
    for alignment, start in enumerate(_CORE_START):
        encoded = base64.b64encode(b"\0" * alignment + piece).decode("ascii")
        whole = 8 * (alignment + len(piece)) // 6  # the characters that hold no bit of padding
        cores.append(encoded[start:whole][:_CORE_LENGTH])
    return tuple(cores)


def _add_words(values: Iterable[str], words: dict[str, int]) -> bool:
    """Adds each value and its cores to ``words``; False when some value has no cores."""
    exact = True
    for value in values:
        words[value] = words.get(value, 0) | _VALUE
        cores = _cores(value)
        if cores is None:
            exact = False
            continue
        for core in cores:
            words[core] = words.get(core, 0) | _CORE
    return exact


class _Level:
    """Some of the known values (at least one) and their cores, in one automaton."""

    __slots__ = ("automaton", "exact", "shortest", "values")

    def __init__(self, values: frozenset[str], words: dict[str, int], exact: bool) -> None:
        import ahocorasick

        self.values = values
        self.exact = exact
        self.shortest = min(map(len, values))
        self.automaton = ahocorasick.Automaton()
        for word, kinds in words.items():
            self.automaton.add_word(word, (len(word), kinds))
        self.automaton.make_automaton()


class _Automata:
    """What a redact() call uses, replaced whole when values are learnt: a call ends with the
    automata it started with, whatever another thread learns meanwhile."""

    __slots__ = ("automata", "exact", "unchanged_below")

    def __init__(self, levels: tuple[_Level, ...]) -> None:
        self.automata: tuple[Any, ...] = tuple(level.automaton for level in levels)
        # False when some value has no cores: then every token is decoded.
        self.exact = all(level.exact for level in levels)
        # A text shorter than every value and than a token comes out as it went in.
        self.unchanged_below = (
            min(_TOKEN_LEAST, *(level.shortest for level in levels)) if levels else sys.maxsize
        )

    def hits(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        """The stretches of ``text`` that a known value covers, and where cores end."""
        spans: list[tuple[int, int]] = []
        cores: list[int] = []
        for automaton in self.automata:
            for end, (length, kinds) in automaton.iter(text):
                if kinds & _VALUE:
                    spans.append((end - length + 1, end + 1))
                if kinds & _CORE:
                    cores.append(end)
        return spans, cores

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The stretches of ``text`` that a known value covers."""
        return self.hits(text)[0]

    def found(self, text: str) -> bool:
        return any(
            kinds & _VALUE for automaton in self.automata for _, (_, kinds) in automaton.iter(text)
        )


class _Matcher:
    """The known values, found in a text in one pass (Aho-Corasick) however many there are:
    a batch of a thousand accounts knows thousands of passwords. Values learnt since the
    automaton was built go into a second, small one, until there are enough of them to build
    the first again: a growing batch does not rebuild it for each new account."""

    def __init__(self, values: frozenset[str]) -> None:
        self.values = values
        words: dict[str, int] = {}
        exact = _add_words(values, words)
        self.base = _Level(values, words, exact) if values else None
        self.young: _Level | None = None
        # The young automaton's words, so that the next one need not work out their cores again.
        self.young_words: dict[str, int] = {}
        self.automata = _Automata((self.base,) if self.base else ())

    def learn(self, values: frozenset[str]) -> _Matcher:
        """This matcher with ``values`` (a superset of what it knows): the same main
        automaton and the new values in the second, or a new matcher when they are many."""
        known = self.base.values if self.base else frozenset()
        young = values - known
        if len(young) > max(_YOUNG_LEAST, len(known) // _YOUNG_SHARE):
            return _Matcher(values)
        if young:
            before = self.young
            words = dict(self.young_words)
            exact = _add_words(young - before.values if before else young, words)
            self.young = _Level(young, words, exact and (before is None or before.exact))
            self.young_words = words
        self.values = values
        self.automata = _Automata(tuple(level for level in (self.base, self.young) if level))
        return self


_matcher: tuple[int, _Matcher] | None = None
_matcher_lock = threading.Lock()


def _current() -> _Matcher:
    global _matcher
    version = known_version()
    current = _matcher  # one read: another thread may replace it, never change it
    if current is not None and current[0] == version:
        return current[1]
    with _matcher_lock:
        if _matcher is None or _matcher[0] != version:
            # Read with the version, so that a value added meanwhile makes the next call look.
            version, values = known_snapshot()
            if _matcher is None:
                _matcher = (version, _Matcher(values))
            elif _matcher[0] != version:  # another thread may have learnt them meanwhile
                _matcher = (version, _matcher[1].learn(values))
        return _matcher[1]


def _holds_secret(token: str, automata: _Automata) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return automata.found(decoded.decode("utf-8", errors="replace"))


def _mask_tokens(text: str, core_ends: list[int], automata: _Automata) -> str:
    """``text`` with the tokens around ``core_ends`` masked where they hold a secret: what
    ``_BASE64_TOKEN.sub`` masks, as a token without a core holds none."""
    backwards = text[::-1]
    last = len(text) - 1
    pieces: list[str] = []
    copied = looked = 0
    for at in sorted(core_ends):
        if at < looked:
            continue  # in the token just looked at
        before = _NOT_BASE64.search(backwards, last - at)
        start = last - before.start() + 1 if before else 0
        after = _NOT_BASE64.search(text, at)
        run_end = after.start() if after else len(text)
        looked = run_end + (
            2 if text.startswith("==", run_end) else 1 if text.startswith("=", run_end) else 0
        )
        if run_end - start >= _TOKEN_LEAST and _holds_secret(text[start:looked], automata):
            pieces += [text[copied:start], MASK]
            copied = looked
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by the mask: every stretch of it that
    a value covers (touching or overlapping ones as one).

    Also masks whole base64 tokens that decode to text holding a secret (AUTH PLAIN).
    """
    automata = _current().automata
    if len(text) < automata.unchanged_below:
        return text
    found, cores = automata.hits(text)
    if not automata.exact:
        masked = _BASE64_TOKEN.sub(
            lambda match: MASK if _holds_secret(match.group(), automata) else match.group(), text
        )
    elif cores:
        masked = _mask_tokens(text, cores, automata)
    else:
        masked = text
    if masked != text:
        text, found = masked, automata.spans(masked)
    if not found:
        return text
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    pieces, last = [], 0
    for start, end in merged:
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
