"""diagnostics.parse.headers.arc: the ARC chain's structure and its problems."""

from __future__ import annotations

from diagnostics.parse.headers.arc import parse_arc
from tests.parse.headers.samples import (
    CORPUS,
    application,
)


def test_arc_chain_of_a_google_group() -> None:
    chain = parse_arc((CORPUS / "google-groups-via.eml").read_bytes())
    assert chain.complete is True
    assert chain.cv == "pass"
    assert chain.problems == ()
    assert [
        (i.i, i.cv, i.seal_domain, i.signature_domain, i.authserv_id) for i in chain.instances
    ] == [
        (1, "none", "google.com", "google.com", "gmr-mx.google.com"),
        (2, "pass", "google.com", "google.com", "gmr-mx.google.com"),
    ]
    assert [(r.method, r.result) for r in chain.instances[0].results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert chain.to_dict()["validated"] is False


def test_arc_chain_problems_are_named() -> None:
    seal = "ARC-Seal: i={i}; a=rsa-sha256; cv={cv}; d=example.org; s=arc; b=AAAA\r\n"
    signature = "ARC-Message-Signature: i={i}; a=rsa-sha256; d=example.org; s=arc; bh=A; b=A\r\n"
    results = (
        "ARC-Authentication-Results: i={i}; mx.example.org; spf=pass smtp.mailfrom=example.org\r\n"
    )
    headers = (
        seal.format(i=3, cv="none")
        + signature.format(i=3)
        + results.format(i=3)
        + seal.format(i=1, cv="pass")
        + results.format(i=1)
        + results.format(i=1)
        + "ARC-Seal: i=x; cv=none\r\n"
    )
    chain = parse_arc(headers.encode() + application())
    assert chain.complete is False
    assert chain.problems == (
        "ARC-Seal with an invalid instance tag i='x'",
        "instance i=1 has 0 ARC-Message-Signature header(s)",
        "instance i=1 has 2 ARC-Authentication-Results header(s)",
        "ARC-Seal i=1 must say cv=none, says cv=pass",
        "instance i=2 is missing",
        "ARC-Seal i=3 must say cv=pass or cv=fail, says cv=none",
    )
    assert [i.i for i in chain.instances] == [1, 3]
    empty = parse_arc(application())
    assert (empty.instances, empty.complete, empty.cv) == ((), False, None)
