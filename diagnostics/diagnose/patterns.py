"""How the diagnosis rules' patterns are searched fast: each pattern by its alternatives, only
those whose words occur in the text (found for all patterns in one pass), plain-text ones
without a regular expression, and the others case-sensitively in the case-folded text where
that finds the same. :class:`Prefiltered` finds what the whole pattern, compiled ignoring case,
finds (``tests/test_rule_prefilter.py`` holds it to that).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

# Characters outside ASCII that a case-insensitive pattern matches to an ASCII letter, and
# which lower-casing does not turn into it (the Kelvin sign K does become k).
_ASCII_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})
_FOLDED_TO_ASCII = ("\u0130", "\u0131", "\u017f")
_REPEATS = frozenset({_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT})


def fold_case(text: str) -> str:
    """``text`` in lower case, as the words of :func:`required_words` are looked up in it."""
    if text.isascii() or not any(c in text for c in _FOLDED_TO_ASCII):
        return text.lower()
    return text.translate(_ASCII_FOLDS).lower()


def words_in(folded: str, vocabulary: Iterable[str]) -> frozenset[str]:
    """The words of ``vocabulary`` that occur in ``folded``."""
    return frozenset(filter(folded.__contains__, vocabulary))


def _candidates(items: Any) -> list[frozenset[str]]:
    """Of a parsed sequence, sets of words (ASCII, lower case) of each of which one occurs
    wherever the sequence matches."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in [*items, (None, None)]:
        if op is _sre.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        if run:
            candidates.append(frozenset({"".join(run)}))
            run = []
        found: frozenset[str] | None = None
        if op is _sre.SUBPATTERN:
            found = _words(av[-1])
        elif op is _sre.ATOMIC_GROUP:
            found = _words(av)
        elif op in _REPEATS and av[0] >= 1:
            found = _words(av[2])
        elif op is _sre.BRANCH:
            branches = [_words(branch) for branch in av[1]]
            if all(branches):
                found = frozenset().union(*(b for b in branches if b))
        if found:
            candidates.append(found)
    # The words that say the most first: the longest shortest word, then the fewest words.
    return sorted(candidates, key=lambda c: (-min(map(len, c)), len(c)))


def _words(items: Any) -> frozenset[str] | None:
    """Of a parsed sequence, words one of which occurs wherever it matches."""
    candidates = _candidates(items)
    return candidates[0] if candidates else None


# Sets of words of each of which one occurs wherever a pattern matches.
Words = tuple[frozenset[str], ...]
# Patterns the alternatives of which are not told apart: group references and flags in them.
_NOT_SPLIT = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?[aiLmsux]+\)")


def required_words(pattern: str, flags: int = 0) -> Words:
    """The sets of words (lower case) of each of which a word occurs in :func:`fold_case` of
    any text ``pattern`` finds a match in (none when no such word can be told)."""
    return tuple(_candidates(_sre_parse.parse(pattern, flags).data))


def _alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of ``pattern``'s source, which ``|`` joins back into it."""
    parts: list[str] = []
    depth, start, index, in_class, class_start = 0, 0, 0, False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
        elif in_class:
            in_class = char != "]" or index == class_start
        elif char == "[":
            in_class = True
            class_start = index + 1 + (pattern[index + 1 : index + 2] == "^")
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:index])
            start = index + 1
        index += 1
    parts.append(pattern[start:])
    return parts


# A pattern's alternatives (its top-level ``|`` parts, or itself whole); per alternative, the
# word set that says the most (or none), enough to leave most alternatives out; and per
# alternative the text it is, in lower case, when it is plain ASCII text matched ignoring case
# (found without a regular expression).
Analysis = tuple[tuple[str, ...], tuple[Words, ...], tuple[str | None, ...]]
# Analyses by (pattern, flags): computed once, or read from the compiled table.
_ANALYSES: dict[tuple[str, int], Analysis] = {}


def remember(source: str, flags: int, analysis: Analysis) -> None:
    """Take ``analysis`` as :func:`analyse`'s answer for ``source`` (from the compiled table)."""
    _ANALYSES[(source, flags)] = analysis


def analyse(source: str, flags: int = re.IGNORECASE) -> Analysis:
    """How :class:`Prefiltered` searches ``source``: its alternatives and their words."""
    known = _ANALYSES.get((source, flags))
    if known is not None:
        return known
    parts, words = [source], None
    if not flags & re.VERBOSE and _NOT_SPLIT.search(source) is None:
        with contextlib.suppress(re.error):
            split = _alternatives(source)
            if len(split) > 1 and "|".join(split) == source:
                words = [required_words(part, flags) for part in split]
                parts = split
    if words is None:
        words = [required_words(source, flags)]
    analysis = (tuple(parts), tuple(w[:1] for w in words), tuple(_literal(p, flags) for p in parts))
    _ANALYSES[(source, flags)] = analysis
    return analysis


def _literal(part: str, flags: int) -> str | None:
    """``part`` as the lower-case text it matches ignoring case, when it is ASCII text only."""
    if flags != re.IGNORECASE:
        return None
    items = _sre_parse.parse(part, flags).data
    if not items or any(op is not _sre.LITERAL or av >= 128 for op, av in items):
        return None
    return "".join(chr(av) for _, av in items).lower()


# What keeps a case-insensitive pattern from being searched, lower-cased and case-sensitive,
# in :func:`fold_case` of a text: an escape whose meaning changes in lower case (\\S, \\W,
# \\B, \\A, \\Z, \\x4A, \\N{...}, octal), or an inline flag group (``(?-i:...)``).
_CASED_SYNTAX = re.compile(r"\\(?![dswbtnr1-9])[A-Za-z0]|\(\?[aiLmsux-]+[:)]")


def foldable(source: str, flags: int) -> bool:
    """Whether ``source`` (ASCII, case-insensitive) finds in :func:`fold_case` of a text,
    lower-cased and without ``re.IGNORECASE``, what it finds in the text, at the same places:
    ASCII letters and the few other characters that match them ignoring case fold alike."""
    return bool(flags & re.IGNORECASE) and source.isascii() and _CASED_SYNTAX.search(source) is None


class LiteralMatch:
    """Where a plain-text alternative was found: what a match object gives the rules."""

    __slots__ = ("_end", "_start", "_text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self._text, self._start, self._end = text, start, end

    def start(self) -> int:
        return self._start

    def group(self, index: int = 0) -> str:
        if index != 0:
            raise IndexError("no such group")
        return self._text[self._start : self._end]


class Prefiltered:
    """A pattern tried on a text only with those of its alternatives whose words the text
    has: the leftmost match, and at one position the first alternative, are the same."""

    def __init__(self, source: str, flags: int = re.IGNORECASE) -> None:
        self.source, self.flags = source, flags
        parts, words, literals = analyse(source, flags)
        self.parts = parts
        self.words = words
        self.literals = literals
        self.vocabulary = frozenset(word for w in self.words for choice in w for word in choice)
        # Words of which one occurs wherever the pattern matches (None: not known).
        self.gate = frozenset().union(*(w[0] for w in self.words)) if all(self.words) else None
        self._compiled: list[re.Pattern[str] | None] = [None] * len(parts)
        self._compiled_folded: list[re.Pattern[str] | None] = [None] * len(parts)
        # Per word, the alternatives one of whose words it is; the alternatives with none.
        needing: dict[str, list[int]] = {}
        for index, choices in enumerate(words):
            for word in choices[0] if choices else ():
                needing.setdefault(word, []).append(index)
        self._needing = {word: tuple(indices) for word, indices in needing.items()}
        self._unwatched = frozenset(index for index, choices in enumerate(words) if not choices)
        # Alternatives searched in the folded text, lower-cased, where that finds the same.
        self._foldable = tuple(foldable(part, flags) for part in parts)

    def search(
        self, text: str, present: AbstractSet[str], folded: str | None = None
    ) -> re.Match[str] | LiteralMatch | None:
        """``pattern.search(text)``, ``present`` holding the words of :attr:`vocabulary` that
        occur in :func:`fold_case` of ``text`` (``folded``, when the caller has it).

        The alternatives are searched one by one: the match is the one that starts first,
        and of those starting there the first alternative's, as the whole pattern finds it.
        A plain-text alternative is looked up in ``folded``, where each character stands at
        its place in ``text``.
        """
        if self.gate is not None and self.gate.isdisjoint(present):
            return None
        if folded is not None and len(folded) != len(text):
            folded = None
        first: re.Match[str] | LiteralMatch | None = None
        eligible = set(self._unwatched)
        for word in self.vocabulary.intersection(present):
            eligible.update(self._needing[word])
        for index in sorted(eligible):
            literal = self.literals[index]
            if literal is not None and folded is not None:
                at = folded.find(literal)
                if at >= 0 and (first is None or at < first.start()):
                    first = LiteralMatch(text, at, at + len(literal))
                continue
            if folded is not None and self._foldable[index]:
                # Searched case-sensitively in the folded text: several times faster.
                compiled = self._compiled_folded[index]
                if compiled is None:
                    compiled = re.compile(self.parts[index].lower(), self.flags & ~re.IGNORECASE)
                    self._compiled_folded[index] = compiled
                hit = compiled.search(folded)
                if hit is not None and (first is None or hit.start() < first.start()):
                    first = LiteralMatch(text, hit.start(), hit.end())
                continue
            compiled = self._compiled[index]
            if compiled is None:
                compiled = re.compile(self.parts[index], self.flags)
                self._compiled[index] = compiled
            found = compiled.search(text)
            if found is not None and (first is None or found.start() < first.start()):
                first = found
        return first
