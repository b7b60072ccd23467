"""DKIM signing and verification, with the key served over real DNS by a sandbox server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from diagnostics.parse.dkim import DKIMKey, sign, signatures, verify
from diagnostics.roundtrip import probe_message
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sandbox.forwarding import append_footer, tag_subject


@pytest.fixture(scope="module")
def key() -> DKIMKey:
    return DKIMKey.generate("candidates.example")


@pytest.fixture
async def server(key: DKIMKey) -> AsyncIterator[SandboxDNS]:
    zones = {"candidates.example": [ZoneRecord(key.record_name, "TXT", key.txt)]}
    async with SandboxDNS(zones) as running:
        yield running


def message(key: DKIMKey) -> bytes:
    return probe_message(
        "tok-1", sender="probe@candidates.example", recipient="jobs@acme.example", key=key
    )


def test_the_record_splits_into_strings_dns_can_carry(key: DKIMKey) -> None:
    parts = key.txt.split('" "')
    assert key.txt.startswith('"v=DKIM1; k=rsa; p=')
    assert all(len(p.strip('"')) <= 250 for p in parts)
    assert "".join(p.strip('"') for p in parts) == f"v=DKIM1; k=rsa; p={key.public_b64}"
    assert key.record_name == "maildiag._domainkey.candidates.example."


async def test_an_untouched_message_verifies(key: DKIMKey, server: SandboxDNS) -> None:
    signed = message(key)
    assert signatures(signed) == [("candidates.example", "maildiag")]
    checks = await verify(signed, server.resolver())
    assert [(c.verified, c.reason) for c in checks] == [(True, "verified")]


async def test_a_prepended_received_field_keeps_it_valid(key: DKIMKey, server: SandboxDNS) -> None:
    relayed = (
        b"Received: from mx.acme.example by inbound.m.personio.de; Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        + message(key)
    )
    assert [c.verified for c in await verify(relayed, server.resolver())] == [True]


async def test_a_footer_breaks_the_body_hash(key: DKIMKey, server: SandboxDNS) -> None:
    footed = append_footer(
        message(key), "CAUTION: This email originated from outside of the organization."
    )
    checks = await verify(footed, server.resolver())
    assert [(c.verified, c.reason) for c in checks] == [
        (False, "the body changed (body hash mismatch)")
    ]


async def test_a_tagged_subject_breaks_the_header_hash(key: DKIMKey, server: SandboxDNS) -> None:
    tagged = tag_subject(message(key), "[EXTERNAL]")
    checks = await verify(tagged, server.resolver())
    assert [(c.verified, c.reason) for c in checks] == [
        (False, "a signed header changed (the header hash does not match)")
    ]


async def test_a_missing_key_is_named(server: SandboxDNS) -> None:
    other = DKIMKey.generate("candidates.example", selector="other")
    checks = await verify(
        sign(b"From: a@candidates.example\r\nSubject: x\r\n\r\nbody\r\n", other), server.resolver()
    )
    assert len(checks) == 1 and not checks[0].verified
    assert checks[0].reason.startswith("no usable key at other._domainkey.candidates.example")
