"""redact() against a plain rendering of what it promises, and what a call costs as secrets
accumulate.

These tests give the redaction module their own set of known values and put the process's
back afterwards: random secrets registered for real would mask ordinary words in every later
test.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics import redact as module
from diagnostics.redact import redact
from diagnostics.secrets import MASK

LOGIN = "jobs@acme.example"
# The tokens redact() decodes: a run of eight or more base64 characters and the up to two "="
# after it.
TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Known:
    """Stands in for the process's known values: a secret and its base64 form, as a Secret
    registers them, but for secrets of any length, so that the shortest are tried too."""

    def __init__(self) -> None:
        self.version = 0
        self.values: frozenset[str] = frozenset()

    def add(self, *secrets: str) -> None:
        self.values |= {form for s in secrets for form in (s, _b64(s.encode()))}
        self.version += 1

    def snapshot(self) -> tuple[int, frozenset[str]]:
        return self.version, self.values


@contextmanager
def _known() -> Iterator[_Known]:
    known = _Known()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "known_version", lambda: known.version)
        patch.setattr(module, "known_snapshot", known.snapshot)
        patch.setattr(module, "_matcher", None)
        yield known


def _reference(text: str, values: Collection[str]) -> str:
    """What redact() does, plainly: each token that decodes (padded with "=") to text holding
    a value becomes the mask; then each run of characters that some value's occurrence covers
    (occurrences that touch or overlap make one run) becomes the mask."""

    def holds(token: str) -> bool:
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except ValueError:
            return False
        shown = decoded.decode("utf-8", errors="replace")
        return any(value in shown for value in values)

    text = TOKEN.sub(lambda match: MASK if holds(match.group()) else match.group(), text)
    covered = [False] * len(text)
    for value in values:
        at = text.find(value)
        while at >= 0:
            covered[at : at + len(value)] = [True] * len(value)
            at = text.find(value, at + 1)
    out: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            out.append(char)
        elif index == 0 or not covered[index - 1]:
            out.append(MASK)
    return "".join(out)


# -- the property -------------------------------------------------------------------------------

# Characters that make secrets hard: base64's own (and "="), the replacement character that
# invalid UTF-8 decodes to, NUL as in AUTH PLAIN, the mask's "*", two- to four-byte UTF-8.
HARD = "aZ09+/=\ufffd\x00* é߀日😀"
_chars = st.one_of(st.sampled_from(HARD), st.characters(exclude_categories=("Cs",)))
WORDS = [
    "recruiting",
    "Received:",
    "AUTH PLAIN",
    "/usr/local/bin/python3",
    "SGVsbG8gd29ybGQ=",
    "235 2.7.0 Authentication successful",
    "dGVzdA==",
]
# Stand-ins for invalid UTF-8 where a secret has U+FFFD: a lone continuation byte, a cut
# sequence, a byte UTF-8 never uses.
INVALID = [b"\x80", b"\xc3", b"\xe2\x82", b"\xff", b"\xed\xa0\x80"]


@st.composite
def _piece(draw: st.DrawFn, secrets: list[str]) -> str:
    """One piece of a text: a secret as it is or in base64 (alone, inside other bytes at every
    alignment, as AUTH PLAIN, twice over, with invalid bytes for its U+FFFDs, cut short), or
    something else."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(WORDS))
    if kind == 1:
        return draw(st.text(st.sampled_from("aB3+/=*- \n:\ufffd"), max_size=12))
    secret = draw(st.sampled_from(secrets))
    data = secret.encode()
    if draw(st.booleans()):
        data = data.replace("\ufffd".encode(), draw(st.sampled_from(INVALID)))
    if kind == 2:
        return secret
    if kind == 3:
        blob = _b64(data)
    elif kind == 4:
        blob = _b64(f"\0{LOGIN}\0".encode() + data)
    elif kind == 5:
        blob = _b64(_b64(data).encode())
    else:
        before = draw(st.binary(max_size=5))
        after = draw(st.binary(max_size=5))
        blob = _b64(before + data + after)
    if draw(st.booleans()):
        blob = blob.rstrip("=")
    if kind == 9:
        start = draw(st.integers(0, len(blob)))
        blob = blob[start : draw(st.integers(start, len(blob)))]
    return blob


@st.composite
def _texts(draw: st.DrawFn, secrets: list[str]) -> str:
    pieces = draw(st.lists(_piece(secrets), max_size=6))
    separators = draw(st.lists(st.sampled_from(["", " ", "\n", "=", ":", '"']), min_size=6))
    return "".join(piece + separator for piece, separator in zip(pieces, separators, strict=False))


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[list[str]], list[str]]:
    """Secrets in up to three groups, each made known before the texts are redacted again,
    and texts made of them; one group in five also brings a hundred unrelated values, which
    makes the main automaton be built again rather than the second one.

    Secrets of one to three characters, which but for non-ASCII ones have no cores and make
    every token be decoded, come in one case in four: in the others the cores decide which
    tokens are decoded."""
    secrets_ = st.text(_chars, min_size=1 if draw(st.integers(0, 3)) == 0 else 4, max_size=12)
    groups = draw(st.lists(st.lists(secrets_, min_size=1, max_size=4), min_size=1, max_size=3))
    for group in groups:
        if draw(st.integers(0, 4)) == 0:
            tag = draw(st.integers(0, 9))
            group += [f"filler-{index:03d}-{tag}" for index in range(100)]
    secrets = [secret for group in groups for secret in group[:4]]
    texts = draw(st.lists(_texts(secrets), min_size=1, max_size=4))
    return groups, texts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_redact_masks_exactly_what_the_plain_rendering_masks(
    case: tuple[list[list[str]], list[str]],
) -> None:
    groups, texts = case
    with _known() as known:
        for group in groups:
            known.add(*group)
            for text in texts:
                assert redact(text) == _reference(text, known.values)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("Pässwort-1", id="non-ascii"),
        pytest.param("p\ufffdsswort", id="replacement-character"),
        pytest.param("ab+/cd==", id="base64-characters"),
        pytest.param("ok\ufffd!", id="short-pieces"),
        pytest.param("\ufffd\ufffdQ\ufffd", id="one-byte-piece"),
        pytest.param("q9z", id="three-characters"),
    ],
)
def test_auth_plain_blobs_are_masked_at_every_alignment(secret: str) -> None:
    # Tokens of every alignment of the secret's bytes, among words long enough to be tokens;
    # where the secret has U+FFFD, the bytes sent may be invalid UTF-8 rather than U+FFFD's.
    with _known() as known:
        known.add(secret)
        for data in (secret.encode(), secret.encode().replace("\ufffd".encode(), b"\xff")):
            for before in range(3):
                blob = _b64(b"\0" * before + f"\0{LOGIN}\0".encode() + data)
                text = f"Received: recruiting AUTH PLAIN {blob} Authentication successful"
                assert redact(text) == text.replace(blob, MASK)


@pytest.mark.parametrize("before", range(3))
def test_the_shortest_token_is_masked_and_a_shorter_run_is_not(before: int) -> None:
    # Eight base64 characters decode to six bytes: a four-byte secret and two others.
    with _known() as known:
        known.add("Wq7!")
        shortest = _b64(b"\0" * before + b"Wq7!" + b"\0" * (2 - before))
        assert len(shortest) == 8
        assert redact(f"sent {shortest}: ok") == f"sent {MASK}: ok"
        shorter = _b64(b"Wq7!\0")  # seven characters and "="
        assert redact(f"sent {shorter}: ok") == f"sent {shorter}: ok"


def test_a_password_file_in_latin_1_is_masked_in_what_the_client_sends() -> None:
    # A password file written in Latin-1 reads as "p\ufffdsswort": the client sends its
    # UTF-8 bytes, a tool of the same host may send the original ones; both decode to text
    # holding the value, and the part after the U+FFFD is enough to find the tokens.
    value = "p\xe4sswort".encode("latin-1").decode("utf-8", "replace")
    with _known() as known:
        known.add(value)
        assert module._current().automata.exact  # only the tokens around a core are decoded
        for data in (value.encode(), "p\xe4sswort".encode("latin-1")):
            blob = _b64(b"\0" + LOGIN.encode() + b"\0" + data)
            assert redact(f"AUTH PLAIN {blob}") == f"AUTH PLAIN {MASK}"


# -- what a call costs ---------------------------------------------------------------------------


def test_words_are_not_decoded_and_calls_scan_two_automata_however_many_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch adds the secrets of each account, then writes its report through redact(): with
    # 2,000 secrets known, a call still scans at most two automata (never values one by one),
    # the second holds a bounded share of the values, the main one is rebuilt a few dozen
    # times in all, and only a token holding a secret's core is decoded.
    decoded: list[str] = []
    holds_secret = module._holds_secret

    def counting(token: str, automata: module._Automata) -> bool:
        decoded.append(token)
        return holds_secret(token, automata)

    monkeypatch.setattr(module, "_holds_secret", counting)
    words = "Received: from recruiting.example by mx.example with ESMTPSA; Authentication " * 20
    with _known() as known:
        built: list[tuple[module._Matcher, int]] = []
        for account in range(667):
            known.add(*(f"pw-{account:04d}-{index}-Xq7" for index in range(3)))
            assert redact(words) == words
            matcher = module._current()
            base = matcher.base.values if matcher.base else frozenset()
            if not built or built[-1][0] is not matcher:
                built.append((matcher, len(base)))
            assert len(matcher.automata.automata) <= 2
            young = matcher.young.values if matcher.young else frozenset()
            assert young == matcher.values - base
            assert len(young) <= max(module._YOUNG_LEAST, len(base) // module._YOUNG_SHARE)
        assert len(known.values) == 4002
        assert len(built) < 50
        # Each value went into a main automaton about twenty times at most, not once per account.
        assert sum(size for _, size in built) < 20 * len(known.values)
        assert decoded == []
        blob = _b64(f"\0{LOGIN}\0pw-0123-1-Xq7".encode())
        assert redact(f"{words}AUTH PLAIN {blob}\r\n") == f"{words}AUTH PLAIN {MASK}\r\n"
        assert decoded == [blob]
