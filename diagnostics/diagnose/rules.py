"""Diagnosis rules, read from ``data/diagnosis_rules.yaml``.

A rule names a cause when its patterns match a failure: ``code`` (shell-style pattern on the
three-digit reply code), ``enhanced`` (shell-style patterns on the RFC 3463 enhanced status
code) and ``text`` (a case-insensitive regular expression); ``decisive`` (one too) holds the
wordings that name the cause unambiguously, which decide over any code and any other wording.
Each cause has a default
explanation, remediation and ``who_acts`` that a rule may override.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import re
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import ahocorasick

from diagnostics.datafiles import load_data_file
from diagnostics.diagnose.patterns import (
    Prefiltered,
    analyse,
    fold_case,
    remember,
    words_in,
)
from diagnostics.errors import DiagnosticsError
from diagnostics.findings import Cause


class RuleTableError(DiagnosticsError, ValueError):
    """The diagnosis rule table is malformed (a defect of the package, caught by its tests)."""


class WhoActs(enum.Enum):
    """Who has to act on a diagnosis."""

    IT = "it"
    PLATFORM = "platform"
    CANDIDATE = "candidate"


class Specificity(enum.IntEnum):
    """How precisely a rule matched; the most specific match wins."""

    NONE = 0
    CODE = 1
    GENERIC_ENHANCED = 2
    TEXT = 3
    ENHANCED = 4
    ENHANCED_TEXT = 5
    # Wording that names the cause unambiguously ("mailbox is full" beside 5.1.1).
    DECISIVE = 6


# What a rule with ``enhanced`` can match at (decisive wording takes no code).
ENHANCED_CEILING = Specificity.ENHANCED_TEXT


@dataclass(frozen=True)
class Advice:
    """What a cause means and who does what about it."""

    explanation: str
    remediation: str
    who_acts: WhoActs


@dataclass(frozen=True)
class Rule:
    """One row of the diagnosis table, with the cause's advice filled in."""

    id: str
    cause: Cause
    confidence: float
    explanation: str
    remediation: str
    who_acts: WhoActs
    code: str | None = None
    enhanced: tuple[str, ...] = ()
    # Patterns (case-insensitive), as sources: each alternative is compiled when a wording
    # first holds its words (see :class:`Prefiltered`).
    text: str | None = None
    decisive: str | None = None
    # ``code`` and ``enhanced`` compiled once: what ``fnmatch.fnmatchcase`` would match.
    _code: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _enhanced: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    # Per pattern, words of which one must occur (in lower case) in any text it matches.
    _text: Prefiltered | None = field(init=False, repr=False, compare=False, default=None)
    _decisive: Prefiltered | None = field(init=False, repr=False, compare=False, default=None)

    # The words its patterns are looked up by.
    vocabulary: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    # The most specific level a rule without ``enhanced`` can match at.
    ceiling: Specificity = field(init=False, repr=False, compare=False, default=Specificity.NONE)

    def __post_init__(self) -> None:
        ceiling = Specificity.CODE if self.code is not None else Specificity.NONE
        if self.text is not None:
            ceiling = Specificity.TEXT
        if self.decisive is not None:
            ceiling = Specificity.DECISIVE
        object.__setattr__(self, "ceiling", ENHANCED_CEILING if self.enhanced else ceiling)
        object.__setattr__(self, "_code", _shell_patterns((self.code,) if self.code else ()))
        object.__setattr__(self, "_enhanced", _shell_patterns(self.enhanced))
        object.__setattr__(self, "_text", Prefiltered(self.text) if self.text else None)
        object.__setattr__(self, "_decisive", Prefiltered(self.decisive) if self.decisive else None)
        vocabulary = frozenset().union(*(p.vocabulary for p in (self._text, self._decisive) if p))
        object.__setattr__(self, "vocabulary", vocabulary)

    def match(
        self,
        code: str | None,
        enhanced: str | None,
        text: str,
        *,
        generic: re.Pattern[str] | tuple[str, ...] | None = None,
        present: AbstractSet[str] | None = None,
        folded: str | None = None,
    ) -> tuple[Specificity, str | None]:
        """How specifically this rule matches, and the phrase its ``text`` matched.

        ``present`` holds the words of the rule's :attr:`vocabulary` that occur in
        ``folded``, :func:`fold_case` of ``text`` (or more), given when the caller matches
        many rules.
        """
        if folded is None:
            folded = fold_case(text)
        if present is None:
            present = words_in(folded, self.vocabulary)
        if (
            self._decisive is not None
            and (found := self._decisive.search(text, present, folded)) is not None
        ):
            return Specificity.DECISIVE, found.group(0)
        if self._code is not None and (code is None or self._code.match(code) is None):
            return Specificity.NONE, None
        if self._enhanced is not None and (
            enhanced is None or self._enhanced.match(enhanced) is None
        ):
            return Specificity.NONE, None
        phrase = None
        if self._text is not None:
            found = self._text.search(text, present, folded)
            if found is None:
                return Specificity.NONE, None
            phrase = found.group(0)
        if self.enhanced and phrase is not None:
            return Specificity.ENHANCED_TEXT, phrase
        if self.enhanced:
            assert enhanced is not None
            # A code such as 5.7.1 says little more than "refused": wording must beat it.
            if isinstance(generic, tuple):
                generic = _shell_patterns(generic)
            if generic is not None and generic.match(enhanced) is not None:
                return Specificity.GENERIC_ENHANCED, None
            return Specificity.ENHANCED, None
        if phrase is not None:
            return Specificity.TEXT, phrase
        if self.code is not None:
            return Specificity.CODE, None
        return Specificity.NONE, None


def _shell_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One compiled pattern matching what any of the shell-style ``patterns`` matches."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class RuleTable:
    """The rules in file order, the advice per cause, and the enhanced codes that say little."""

    rules: tuple[Rule, ...]
    advice: Mapping[Cause, Advice]
    generic_enhanced: tuple[str, ...]
    # Derived once: ``generic_enhanced`` compiled, and per cause the subjects of the enhanced
    # codes its rules name (5.2.2 -> "2").
    generic: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    subjects: Mapping[Cause, frozenset[str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    vocabulary: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    # The vocabulary's words found in one pass over a text (Aho-Corasick).
    _automaton: Any = field(init=False, repr=False, compare=False, default=None)
    # Per (reply code, enhanced code): the indices of the rules whose code patterns hold.
    _codes_hold: dict[tuple[str | None, str | None], frozenset[int]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "generic", _shell_patterns(self.generic_enhanced))
        subjects: dict[Cause, set[str]] = {}
        for rule in self.rules:
            for pattern in rule.enhanced:
                parts = pattern.split(".")
                if len(parts) == 3 and parts[1].isdigit():
                    subjects.setdefault(rule.cause, set()).add(parts[1])
        object.__setattr__(self, "subjects", {c: frozenset(s) for c, s in subjects.items()})
        vocabulary = frozenset().union(*(rule.vocabulary for rule in self.rules))
        object.__setattr__(self, "vocabulary", tuple(sorted(vocabulary)))
        automaton = ahocorasick.Automaton()
        for word in self.vocabulary:
            automaton.add_word(word, word)
        if self.vocabulary:
            automaton.make_automaton()
        object.__setattr__(self, "_automaton", automaton)

    def candidates(
        self, code: str | None, enhanced: str | None, present: AbstractSet[str]
    ) -> list[Rule]:
        """The rules, in table order, that may match a failure with these codes whose wording
        has the words ``present`` (:meth:`words_in`): every other rule's :meth:`Rule.match`
        is ``NONE``. A rule matches by its decisive wording, whose words must occur, or where
        its code and enhanced code hold and its text's words occur."""
        key = (code, enhanced)
        holding = self._codes_hold.get(key)
        if holding is None:
            holding = frozenset(
                index
                for index, rule in enumerate(self.rules)
                if (rule._code is None or (code is not None and rule._code.match(code)))
                and (
                    rule._enhanced is None
                    or (enhanced is not None and rule._enhanced.match(enhanced))
                )
            )
            if len(self._codes_hold) < 4096:  # distinct code pairs: few in any real input
                self._codes_hold[key] = holding
        found = []
        for index, rule in enumerate(self.rules):
            decisive = rule._decisive
            if decisive is None or (
                decisive.gate is not None and decisive.gate.isdisjoint(present)
            ):
                if index not in holding:
                    continue
                text = rule._text
                if text is not None and text.gate is not None and text.gate.isdisjoint(present):
                    continue
            found.append(rule)
        return found

    def words_in(self, text: str) -> frozenset[str]:
        """The words of the rules' patterns that occur in ``text`` (see :meth:`Rule.match`):
        what :func:`words_in` finds, in one pass over the text however many words there are."""
        return self.words_in_folded(fold_case(text))

    def words_in_folded(self, folded: str) -> frozenset[str]:
        """:meth:`words_in` of a text already through :func:`fold_case`."""
        if not self.vocabulary:
            return frozenset()
        return frozenset(word for _, word in self._automaton.iter(folded))


def _advice(cause: Cause, body: Mapping[str, Any]) -> Advice:
    try:
        return Advice(
            explanation=str(body["explanation"]).strip(),
            remediation=str(body["remediation"]).strip(),
            who_acts=WhoActs(body["who_acts"]),
        )
    except (KeyError, ValueError) as exc:
        raise RuleTableError(f"diagnosis rules: cause {cause.value}: {exc}") from exc


def _rule(body: Mapping[str, Any], advice: Mapping[Cause, Advice], *, checked: bool) -> Rule:
    rule_id = str(body.get("id", "?"))
    try:
        cause = Cause(body["cause"])
        default = advice[cause]
        enhanced = body.get("enhanced", ())
        text = body.get("text")
        decisive = body.get("decisive")
        rule = Rule(
            id=rule_id,
            cause=cause,
            confidence=float(body["confidence"]),
            explanation=str(body.get("explanation", default.explanation)).strip(),
            remediation=str(body.get("remediation", default.remediation)).strip(),
            who_acts=WhoActs(body.get("who_acts", default.who_acts.value)),
            code=str(body["code"]) if "code" in body else None,
            enhanced=(enhanced,) if isinstance(enhanced, str) else tuple(map(str, enhanced)),
            text=str(text) if text else None,
            decisive=str(decisive) if decisive else None,
        )
        if checked:
            for pattern in (rule.text, rule.decisive):
                if pattern is not None:
                    re.compile(pattern, re.IGNORECASE)
    except (KeyError, ValueError, re.error) as exc:
        raise RuleTableError(f"diagnosis rule {rule_id}: {exc}") from exc
    if not 0.0 <= rule.confidence <= 1.0:
        raise RuleTableError(f"diagnosis rule {rule_id}: confidence must be within 0..1")
    if rule.decisive is not None and (rule.code is not None or rule.enhanced):
        raise RuleTableError(f"diagnosis rule {rule_id}: decisive wording takes no code")
    if rule.code is None and not rule.enhanced and rule.text is None:
        raise RuleTableError(f"diagnosis rule {rule_id}: needs code, enhanced or text")
    return rule


def parse_rules(data: Mapping[str, Any], *, checked: bool = True) -> RuleTable:
    """The rule table from the YAML document's data.

    Each pattern is parsed for its words, which refuses most malformed ones; ``checked`` also
    compiles it whole, which refuses the rest. The packaged table is loaded unchecked: the test
    suite checks it (compiling every pattern would cost each run of ``maildiag diagnose`` more
    than reading the table does).
    """
    advice = {Cause(key): _advice(Cause(key), body) for key, body in data["causes"].items()}
    missing = sorted(c.value for c in Cause if c not in advice)
    if missing:
        raise RuleTableError(f"diagnosis rules: no advice for {', '.join(missing)}")
    rules = tuple(_rule(body, advice, checked=checked) for body in data["rules"])
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise RuleTableError("diagnosis rules: rule ids must be unique")
    return RuleTable(
        rules=rules,
        advice=advice,
        generic_enhanced=tuple(str(p) for p in data.get("generic_enhanced", ())),
    )


# The packaged table as data, with each pattern's analysis: what reading the YAML file and
# parsing every pattern for its words gives, in a form read without either. It is a cache of
# ``diagnosis_rules.yaml``, used only while it names that file's fingerprint (length and CRC-32).
COMPILED_NAME = "diagnosis_rules.compiled.json"
_COMPILED_FORMAT = 3


def _source_text() -> str:
    return (
        resources.files("diagnostics").joinpath("data", "diagnosis_rules.yaml").read_text("utf-8")
    )


def _fingerprint(text: str) -> str:
    """Which version of the YAML file a compiled table was made from: its length and CRC-32,
    enough to notice an edit (the test suite compares the whole table), and zlib is loaded
    already where hashlib would cost start-up time."""
    data = text.encode("utf-8")
    return f"{len(data)}:{zlib.crc32(data):08x}"


def compile_rules() -> dict[str, Any]:
    """The compiled form of the packaged table (see :data:`COMPILED_NAME`)."""
    text = _source_text()
    data = load_data_file("diagnosis_rules.yaml")
    table = parse_rules(data, checked=True)
    patterns = sorted(
        {(p.source, p.flags) for r in table.rules for p in (r._text, r._decisive) if p}
    )
    analyses = []
    for source, flags in patterns:
        parts, words, literals = analyse(source, flags)
        analyses.append(
            [
                source,
                flags,
                list(parts),
                [[sorted(choice) for choice in w] for w in words],
                list(literals),
            ]
        )
    return {
        "format": _COMPILED_FORMAT,
        "source": _fingerprint(text),
        "data": data,
        "analyses": analyses,
    }


def _compiled_data() -> Any | None:
    """The table's data from the compiled file, its analyses now known; None when the file is
    missing or was made from another version of the YAML file."""
    try:
        compiled = json.loads(
            resources.files("diagnostics").joinpath("data", COMPILED_NAME).read_text("utf-8")
        )
    except (OSError, ValueError):
        return None
    fingerprint = _fingerprint(_source_text())
    if compiled.get("format") != _COMPILED_FORMAT or compiled.get("source") != fingerprint:
        return None
    for source, flags, parts, words, literals in compiled["analyses"]:
        remember(
            source,
            flags,
            (
                tuple(parts),
                tuple(tuple(frozenset(choice) for choice in w) for w in words),
                tuple(literals),
            ),
        )
    return compiled["data"]


@cache
def load_rules() -> RuleTable:
    """The packaged rule table: from its compiled form while that is current, which spares
    ``maildiag diagnose`` parsing YAML and every pattern when it starts."""
    data = _compiled_data()
    if data is None:
        data = load_data_file("diagnosis_rules.yaml")
    return parse_rules(data, checked=False)


def write_compiled(path: Path | None = None) -> Path:
    """Write :func:`compile_rules` next to the YAML file (or to ``path``)."""
    target = path or Path(__file__).resolve().parents[1] / "data" / COMPILED_NAME
    target.write_text(json.dumps(compile_rules(), indent=1, ensure_ascii=False) + "\n", "utf-8")
    return target
