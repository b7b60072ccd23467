"""The corpus in fixtures/messages/: each message classified and compared as labelled, and the
files themselves (CRLF, documentation addresses only)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.forwarding import (
    classify_forwarding,
)
from diagnostics.parse.headers.loops import detect_loop
from diagnostics.parse.headers.retention import (
    HeaderDiff,
    compare_retention,
)
from tests.parse.headers.samples import (
    CORPUS,
    FORWARDER,
    LABELS,
    PLATFORM,
)


def test_every_corpus_message_is_labelled() -> None:
    assert sorted(LABELS) == sorted(p.name for p in CORPUS.glob("*.eml"))
    assert len(LABELS) >= 12


@pytest.mark.parametrize("name", sorted(LABELS))
def test_corpus_message_is_classified_as_labelled(name: str) -> None:
    label = LABELS[name]
    arrived = (CORPUS / name).read_bytes()
    original = (CORPUS / label["original"]).read_bytes() if "original" in label else None
    verdict = classify_forwarding(arrived, original=original)
    assert (list(verdict.styles), verdict.primary, server_family(arrived)) == (
        label["styles"],
        label["styles"][0],
        label["family"],
    )
    # The signs alone must lead to the same styles as the precise comparison.
    assert list(classify_forwarding(arrived).styles) == label["styles"]
    assert detect_loop(arrived, addresses=[FORWARDER, PLATFORM]).looped is False


@pytest.mark.parametrize("name", sorted(n for n, label in LABELS.items() if "original" in label))
def test_corpus_retention_matches_the_styles(name: str) -> None:
    label = LABELS[name]
    retention = compare_retention(
        (CORPUS / label["original"]).read_bytes(), (CORPUS / name).read_bytes()
    )
    assert retention.retained is (label["styles"] == ["redirect"])


def test_corpus_retention_of_the_stripped_and_tagged_messages() -> None:
    stripped = compare_retention(
        (CORPUS / "originals/anna-schmidt.eml").read_bytes(),
        (CORPUS / "postfix-header-checks-stripped.eml").read_bytes(),
    )
    assert [(d.name, d.kind, d.arrived) for d in stripped.diffs] == [
        ("In-Reply-To", "missing", None),
        ("References", "missing", None),
    ]
    assert stripped.body_changed is False
    tagged = compare_retention(
        (CORPUS / "originals/lena-weber.eml").read_bytes(),
        (CORPUS / "exim-forward-subject-tag.eml").read_bytes(),
    )
    assert tagged.diffs == (
        HeaderDiff(
            "Subject",
            "changed",
            "Bewerbung Teamleitung Logistik (Ref. 2026-118)",
            "[EXT] Bewerbung Teamleitung Logistik (Ref. 2026-118)",
        ),
    )


DOCUMENTATION_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "127.0.0.0/8", "2001:db8::/32")
]
# Example domains, and the mail infrastructure names of the providers whose Received chains the
# corpus reproduces (their host names are how the server family is recognised).
ALLOWED_DOMAINS = (
    "example.org",
    "example.com",
    "acme.example",
    "candidates.example",
    "m.personio.de",
    "outlook.com",
    "microsoft.com",
    "google.com",
    "gmail.com",
    "smtpclient.apple",
)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CORPUS.rglob("*.eml") if p.parent.name != "real"),
    ids=lambda p: p.name,
)
def test_corpus_files_are_crlf_with_documentation_addresses_only(path: Path) -> None:
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    text = data.decode("utf-8")
    for candidate in re.findall(r"[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]+", text):
        try:
            address = ipaddress.ip_address(candidate.strip(".:"))
        except ValueError:
            continue
        assert any(address in net for net in DOCUMENTATION_NETWORKS), candidate
    for domain in re.findall(r"\b(?:[A-Za-z0-9-]+\.)+(?:com|org|net|de|example|apple|io)\b", text):
        assert domain.lower().endswith(ALLOWED_DOMAINS), domain
