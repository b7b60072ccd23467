"""No regular expression that reads a stranger's text backtracks catastrophically.

Every compiled pattern of the diagnosis rules and every module-level pattern of the packages
that read strangers' text (diagnose, parse, smtpreply, fields) is run on adversarial inputs of
50,000 characters: runs of one character and of short repeated units, the shapes that make
nested or overlapping quantifiers explode. Each search must finish within a second (a bound
against hanging, not a benchmark: a linear search takes microseconds).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from collections.abc import Iterator

import pytest

import diagnostics.diagnose
import diagnostics.parse
from diagnostics.diagnose.rules import load_rules

SIZE = 50_000
ADVERSARIAL = {
    "spaces": " " * SIZE,
    "letters": "a" * SIZE,
    "words": "ab " * (SIZE // 3),
    "digits": "5" * SIZE,
    "dots": "." * SIZE,
    "equals": "=" * SIZE,
    "angles": "<" * SIZE,
    "reply lines": "550-5.1.1 " * (SIZE // 10),
    "encoded words": "=?utf-8?q?a?=" * (SIZE // 13),
    "tabs and breaks": " \t\r\n" * (SIZE // 4),
}


def _module_patterns() -> Iterator[tuple[str, re.Pattern[str] | re.Pattern[bytes]]]:
    names = ["diagnostics.smtpreply", "diagnostics.fields", "diagnostics.net.imap"]
    for package in (diagnostics.diagnose, diagnostics.parse):
        names += [
            info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        ]
    for name in names:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if isinstance(value, re.Pattern):
                yield f"{name}.{attribute}", value


def _rule_patterns() -> Iterator[tuple[str, re.Pattern[str] | re.Pattern[bytes]]]:
    for rule in load_rules().rules:
        for attribute, value in vars(rule).items():
            if isinstance(value, re.Pattern):
                yield f"rule {rule.id}.{attribute}", value
        # The wording patterns are kept as sources and compiled when first needed.
        for attribute in ("text", "decisive"):
            source = getattr(rule, attribute)
            if source is not None:
                yield f"rule {rule.id}.{attribute}", re.compile(source, re.IGNORECASE)


PATTERNS = sorted({*_module_patterns(), *_rule_patterns()}, key=lambda item: item[0])
# Patterns the code only ever applies whole (``fullmatch``/``match``) to one short token: an
# SPF term, a DNS label, an enhanced status code. They are checked the way they are used.
ANCHORED = {
    "diagnostics.parse.spf._MODIFIER",
    "diagnostics.parse.spf._DIRECTIVE",
    "diagnostics.parse.spfmacro._TOPLABEL",
}


def _anchored(name: str) -> bool:
    return name in ANCHORED or name.endswith("._enhanced")


def test_the_patterns_are_found() -> None:
    assert len(PATTERNS) > 60


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[n for n, _ in PATTERNS])
def test_a_pattern_stays_linear_on_adversarial_text(
    name: str, pattern: re.Pattern[str] | re.Pattern[bytes]
) -> None:
    for label, text in ADVERSARIAL.items():
        subject: str | bytes = text.encode() if isinstance(pattern.pattern, bytes) else text
        started = time.perf_counter()
        if _anchored(name):
            pattern.fullmatch(subject)  # type: ignore[arg-type]
        else:
            pattern.search(subject)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, f"{name} on {label}: {elapsed:.2f} s"
