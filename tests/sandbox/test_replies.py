"""The sandbox's replies are data: each constant's name carries its reply code, and the
enhanced status code (RFC 3463) agrees with the reply code's class."""

from __future__ import annotations

import re

import pytest

from diagnostics.sandbox.replies import all_replies

REPLY = re.compile(r"^(?P<code>[245]\d\d) (?P<enhanced>(?P<klass>[245])\.\d{1,3}\.\d{1,3}) \S")


def test_there_are_replies() -> None:
    assert len(all_replies()) == 10


@pytest.mark.parametrize(("name", "text"), sorted(all_replies().items()))
def test_reply_constant_is_named_after_its_code(name: str, text: str) -> None:
    match = REPLY.match(text)
    assert match is not None, f"{name} is not 'CODE X.Y.Z text': {text!r}"
    assert name.startswith(f"R{match['code']}_")
    assert match["klass"] == match["code"][0]
