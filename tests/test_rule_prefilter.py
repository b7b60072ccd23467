"""The diagnosis rules search a pattern by its alternatives, only where their words occur, and
find plain-text alternatives without a regular expression (:class:`Prefiltered`). Whatever the
text, that must find what the whole pattern, compiled and searched, finds: the same start and
the same phrase.

Texts are built from the patterns' own words and literals, cut and recased, with characters
that case folding treats specially (dotted and dotless i, long s, the Kelvin sign, sharp s)
and text whose lower case is longer than itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.diagnose import (
    Failure,
    extract_bounce_failure,
    extract_failure,
    looks_like_message,
    parse_bounce_message,
)
from diagnostics.diagnose.patterns import Prefiltered, fold_case, foldable
from diagnostics.diagnose.rules import RuleTable, Specificity, load_rules

TABLE = load_rules()
PATTERNS = sorted({p.source for r in TABLE.rules for p in (r._text, r._decisive) if p})
PIECES = sorted(
    {word for word in TABLE.vocabulary}
    | {lit for r in TABLE.rules for p in (r._text, r._decisive) if p for lit in p.literals if lit}
)
ODD = [
    "\u0130", "\u0131", "\u017f", "\u212a", "\u212b", "\u00df", "\u1e9e", "\ufb03",
    "\u03a3", "\u01c5", "\u0399", " ", "\n", "\t", "5.7.1 ", "[192.0.2.1]", "<>", "'",
]  # fmt: skip
EXAMPLES = int(os.environ.get("MAILDIAG_FUZZ_EXAMPLES", "60")) * 5


def _recase(text: str, upper: bool) -> str:
    return text.upper() if upper else text.title()


FRAGMENT = st.one_of(
    st.sampled_from(PIECES),
    st.builds(_recase, st.sampled_from(PIECES), st.booleans()),
    st.sampled_from(PIECES).flatmap(lambda w: st.integers(0, len(w)).map(lambda i: w[:i])),
    st.sampled_from(ODD),
    st.text(max_size=6),
)
TEXT = st.lists(FRAGMENT, max_size=12).map(" ".join)


def _search(pattern: Prefiltered, table: RuleTable, text: str) -> tuple[int, str] | None:
    folded = fold_case(text)
    found = pattern.search(text, table.words_in_folded(folded), folded)
    return None if found is None else (found.start(), found.group(0))


def _whole(source: str, text: str) -> tuple[int, str] | None:
    found = re.compile(source, re.IGNORECASE).search(text)
    return None if found is None else (found.start(), found.group(0))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("MAILDIAG_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(source=st.sampled_from(PATTERNS), text=TEXT)
def test_a_pattern_searched_by_alternatives_finds_what_the_whole_pattern_finds(
    source: str, text: str
) -> None:
    assert _search(Prefiltered(source), TABLE, text) == _whole(source, text)


ALTERNATIVES = sorted(
    {part for r in TABLE.rules for p in (r._text, r._decisive) if p for part in p.parts}
)


@st.composite
def _matching_text(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a text holding a match of one of its alternatives, in any case."""
    source = draw(st.sampled_from(PATTERNS))
    part = draw(st.sampled_from(Prefiltered(source).parts))
    sample = draw(st.from_regex(re.compile(part, re.IGNORECASE), fullmatch=True))
    return source, f"{draw(TEXT)} {sample} {draw(TEXT)}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("MAILDIAG_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=_matching_text())
def test_a_text_that_matches_an_alternative_is_found_as_the_whole_pattern_finds_it(
    case: tuple[str, str],
) -> None:
    source, text = case
    assert _search(Prefiltered(source), TABLE, text) == _whole(source, text)


def test_every_plain_alternative_is_found_in_its_own_words_recased() -> None:
    # Each plain-text alternative, upper-cased inside other text, is found where regex finds it.
    checked = 0
    for source in PATTERNS:
        pattern = Prefiltered(source)
        for literal in filter(None, pattern.literals):
            text = f"x \u0130 {literal.upper()} y {literal}"
            assert _search(pattern, TABLE, text) == _whole(source, text), (source, literal)
            checked += 1
    assert checked > 100


def test_case_folding_keeps_each_character_in_its_place() -> None:
    # Plain alternatives are found in the folded text at the original's positions: folding
    # must not change the length ("\u0130".lower() alone is two characters).
    assert [c for c in map(chr, range(0x30000)) if len(fold_case(c)) != 1] == []


def test_a_folded_text_of_another_length_falls_back_to_the_expression() -> None:
    pattern = Prefiltered("Connection refused|ECONNREFUSED")
    text = "\u0130\u0130 x CONNECTION REFUSED"
    folded = text.lower()  # not fold_case: two characters longer
    found = pattern.search(text, TABLE.words_in_folded(folded), folded)
    assert found is not None
    assert (
        (found.start(), found.group(0)) == _whole(pattern.source, text) == (5, "CONNECTION REFUSED")
    )


CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bounces-corpus"


def _corpus_failures() -> list[Failure]:
    failures = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix not in (".eml", ".txt"):
            continue
        data = path.read_bytes()
        if looks_like_message(data):
            failures.append(extract_bounce_failure(parse_bounce_message(data)))
        else:
            failures.append(extract_failure(data.decode("utf-8", "replace")))
    return failures


def test_the_rules_left_out_as_candidates_match_nothing_on_the_corpus() -> None:
    # classify_failure tries only table.candidates(...): every rule it leaves out must give
    # NONE on its own, on each of the real bounces and replies.
    checked = 0
    for failure in _corpus_failures():
        wording = " ".join(failure.text.split())
        present = TABLE.words_in(wording)
        kept = {id(rule) for rule in TABLE.candidates(failure.code, failure.enhanced, present)}
        for rule in TABLE.rules:
            if id(rule) in kept:
                continue
            level, _ = rule.match(failure.code, failure.enhanced, wording, generic=TABLE.generic)
            assert level is Specificity.NONE, (rule.id, failure.text[:200])
            checked += 1
    assert checked > 5000


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("MAILDIAG_FUZZ_RANDOM")
)
@given(
    text=TEXT,
    code=st.one_of(st.none(), st.sampled_from(["421", "450", "451", "535", "550", "552", "554"])),
    enhanced=st.one_of(
        st.none(), st.sampled_from(["4.7.0", "5.1.1", "5.2.2", "5.7.1", "5.7.8", "5.7.139"])
    ),
)
def test_the_rules_left_out_as_candidates_match_nothing(
    text: str, code: str | None, enhanced: str | None
) -> None:
    present = TABLE.words_in(text)
    kept = {id(rule) for rule in TABLE.candidates(code, enhanced, present)}
    for rule in TABLE.rules:
        if id(rule) not in kept:
            assert rule.match(code, enhanced, text, generic=TABLE.generic)[0] is Specificity.NONE


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("mail ?(?:box|folder) (?:is )?full", True),
        (r"\bDNSBL\b|\d{1,3}(?:\.\d{1,3}){3}", True),
        (r"host \S+ blocked", False),  # \s is not \S
        (r"\Wquota", False),
        (r"\x4Aunk", False),  # an uppercase letter by its code
        ("(?-i:SMTP) error", False),  # case-sensitive inside
        ("Speicher voll|überschritten", False),  # outside ASCII: str.lower() and re differ
    ],
)
def test_only_patterns_whose_meaning_survives_lower_case_are_searched_folded(
    source: str, expected: bool
) -> None:
    assert foldable(source, re.IGNORECASE) is expected
    assert foldable(source, 0) is False  # a case-sensitive pattern stays as it is
