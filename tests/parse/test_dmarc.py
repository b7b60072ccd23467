"""DMARC: record parsing, and policy discovery by the DMARCbis DNS tree walk over real DNS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from diagnostics.net import DNSQueries
from diagnostics.parse.dmarc import (
    MAX_QUERIES,
    Discovery,
    DmarcRecord,
    DmarcSyntaxError,
    discover,
    is_dmarc_record,
    parse_record,
    tree_walk_names,
)
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord


def test_parse_every_tag() -> None:
    record = parse_record(
        "v=DMARC1; p=reject; sp=quarantine; np=none; adkim=s; aspf=r; t=y; psd=n; "
        "rua=mailto:dmarc@acme.example, mailto:agg@reports.example; ruf=mailto:f@acme.example"
    )
    assert record == DmarcRecord(
        text=record.text,
        p="reject",
        sp="quarantine",
        np="none",
        adkim="s",
        aspf="r",
        testing=True,
        psd="n",
        rua=("mailto:dmarc@acme.example", "mailto:agg@reports.example"),
        ruf=("mailto:f@acme.example",),
    )


def test_defaults_and_what_is_ignored() -> None:
    record = parse_record("v=DMARC1;p=Quarantine;pct=50;adkim=x;foo=bar;p=none;broken")
    assert (record.p, record.sp, record.np, record.adkim, record.aspf) == (
        "quarantine",
        None,
        None,
        "r",
        "r",
    )
    assert (record.pct, record.testing, record.psd) == ("50", False, "u")
    assert record.notes == (
        "tag p appears twice; the first value counts",
        "'broken' is not a tag=value pair and was ignored",
        "pct=50 is ignored: DMARCbis removed pct (use t=y to test a policy)",
        "unknown tag foo was ignored",
        "adkim=x is not r or s; relaxed (r) applies",
    )


def test_an_invalid_policy_counts_as_absent() -> None:
    record = parse_record("v=DMARC1; p=block; rua=mailto:d@acme.example")
    assert record.p is None
    assert record.notes == ("p=block is not none, quarantine or reject and was ignored",)
    assert parse_record("v=DMARC1").notes == ("the record has no p= tag",)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("v=DMARC1; p=none", True),
        ("v=DMARC1;p=none", True),
        ("v=DMARC1 ; p=none", True),
        ("v=DMARC1", True),
        ("v=DMARC10; p=none", False),
        ("v=dmarc1; p=none", False),
        ("p=none; v=DMARC1", False),
        ("v=spf1 -all", False),
    ],
)
def test_is_dmarc_record(text: str, valid: bool) -> None:
    assert is_dmarc_record(text) is valid


def test_parse_rejects_what_is_not_dmarc() -> None:
    with pytest.raises(DmarcSyntaxError) as raised:
        parse_record("v=spf1 -all")
    assert str(raised.value) == "not a DMARC record (it must start with v=DMARC1): 'v=spf1 -all'"


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        ("acme.example", ("acme.example",)),
        ("retail.acme.example.", ("retail.acme.example", "acme.example")),
        ("A.B.Acme.Example", ("a.b.acme.example", "b.acme.example", "acme.example")),
        (
            "a.b.c.d.e.f.g.h.i.j.example",
            (
                "a.b.c.d.e.f.g.h.i.j.example",
                "e.f.g.h.i.j.example",
                "f.g.h.i.j.example",
                "g.h.i.j.example",
                "h.i.j.example",
                "i.j.example",
                "j.example",
            ),
        ),
        (
            "a.b.c.d.e.f.g.example",
            (
                "a.b.c.d.e.f.g.example",
                "b.c.d.e.f.g.example",
                "c.d.e.f.g.example",
                "d.e.f.g.example",
                "e.f.g.example",
                "f.g.example",
                "g.example",
            ),
        ),
    ],
)
def test_tree_walk_names(domain: str, names: tuple[str, ...]) -> None:
    assert tree_walk_names(domain) == names
    assert len(names) <= MAX_QUERIES


def zone_record(line: str) -> ZoneRecord:
    name, rtype, value = line.split(maxsplit=2)
    return ZoneRecord(name, rtype, value)


def zone(*records: str) -> dict[str, list[ZoneRecord]]:
    return {"acme.example": [zone_record(r) for r in records]}


async def walk(
    zones: Mapping[str, Sequence[ZoneRecord]],
    domain: str,
    faults: Mapping[str, str] | None = None,
) -> tuple[Discovery, list[str]]:
    async with SandboxDNS(zones, faults=faults) as server:
        queries = DNSQueries(server.resolver(timeout=1), lifetime=1)
        discovery = await discover(domain, lookup=queries)
    asked = [f"{name} {rdtype}" for name, rdtype, _ in server.queries]
    return discovery, asked


async def test_walk_order_and_record_at_the_organizational_domain() -> None:
    discovery, asked = await walk(
        zone('_dmarc TXT "v=DMARC1; p=reject; sp=quarantine"', "x.y.retail A 198.51.100.7"),
        "x.y.retail.acme.example",
    )
    assert asked == [
        "_dmarc.x.y.retail.acme.example. TXT",
        "_dmarc.y.retail.acme.example. TXT",
        "_dmarc.retail.acme.example. TXT",
        "_dmarc.acme.example. TXT",
    ]
    assert discovery.queried == (
        "_dmarc.x.y.retail.acme.example",
        "_dmarc.y.retail.acme.example",
        "_dmarc.retail.acme.example",
        "_dmarc.acme.example",
    )
    assert (discovery.found_at, discovery.inherited, discovery.failure) == (
        "acme.example",
        True,
        None,
    )
    assert discovery.policy() == ("quarantine", "sp")


async def test_the_walk_is_capped_and_jumps_to_seven_labels() -> None:
    domain = "a.b.c.d.e.f.g.h.i.acme.example"
    discovery, asked = await walk(zone("@ MX 10 mx.acme.example."), domain)
    assert asked == [
        "_dmarc.a.b.c.d.e.f.g.h.i.acme.example. TXT",
        "_dmarc.e.f.g.h.i.acme.example. TXT",
        "_dmarc.f.g.h.i.acme.example. TXT",
        "_dmarc.g.h.i.acme.example. TXT",
        "_dmarc.h.i.acme.example. TXT",
        "_dmarc.i.acme.example. TXT",
        "_dmarc.acme.example. TXT",
    ]
    assert len(asked) <= MAX_QUERIES
    assert (discovery.record, discovery.found_at) == (None, None)
    assert discovery.policy() is None


async def test_record_at_the_exact_domain_stops_the_walk() -> None:
    discovery, asked = await walk(
        zone('_dmarc.retail TXT "v=DMARC1; p=none; sp=reject"', '_dmarc TXT "v=DMARC1; p=reject"'),
        "retail.acme.example",
    )
    assert asked == ["_dmarc.retail.acme.example. TXT"]
    assert (discovery.found_at, discovery.inherited) == ("retail.acme.example", False)
    assert discovery.policy() == ("none", "p")


@pytest.mark.parametrize(
    ("record", "exists", "policy"),
    [
        ("v=DMARC1; p=reject; sp=quarantine; np=none", True, ("quarantine", "sp")),
        ("v=DMARC1; p=reject; sp=quarantine; np=none", False, ("none", "np")),
        ("v=DMARC1; p=reject; sp=quarantine", False, ("quarantine", "sp")),
        ("v=DMARC1; p=reject", True, ("reject", "p")),
        ("v=DMARC1; p=reject; np=quarantine", False, ("quarantine", "np")),
    ],
)
async def test_a_parent_record_applies_through_sp_and_np(
    record: str, exists: bool, policy: tuple[str, str]
) -> None:
    discovery, _ = await walk(zone(f'_dmarc TXT "{record}"'), "shop.acme.example")
    assert discovery.inherited is True
    assert discovery.policy(domain_exists=exists) == policy


async def test_invalid_records_are_ignored() -> None:
    discovery, asked = await walk(
        zone(
            '_dmarc.shop TXT "v=spf1 -all"',
            '_dmarc.shop TXT "v=DMARC2; p=reject"',
            '_dmarc TXT "v=DMARC1; p=quarantine"',
        ),
        "shop.acme.example",
    )
    assert asked == ["_dmarc.shop.acme.example. TXT", "_dmarc.acme.example. TXT"]
    assert discovery.ignored == (
        "_dmarc.shop.acme.example holds TXT records that do not start with v=DMARC1",
    )
    assert discovery.found_at == "acme.example"
    assert discovery.policy() == ("quarantine", "p")


async def test_several_records_at_one_name_are_all_ignored() -> None:
    discovery, asked = await walk(
        zone(
            '_dmarc.shop TXT "v=DMARC1; p=none"',
            '_dmarc.shop TXT "v=DMARC1; p=reject"',
            '_dmarc TXT "v=DMARC1; p=quarantine; sp=none"',
        ),
        "shop.acme.example",
    )
    assert asked == ["_dmarc.shop.acme.example. TXT", "_dmarc.acme.example. TXT"]
    assert discovery.ignored == (
        "_dmarc.shop.acme.example holds 2 DMARC records, so none of them counts",
    )
    assert discovery.policy() == ("none", "sp")


async def test_a_dns_failure_stops_the_walk() -> None:
    discovery, asked = await walk(
        zone('_dmarc TXT "v=DMARC1; p=reject"'),
        "shop.acme.example",
        faults={"_dmarc.shop.acme.example": "servfail"},
    )
    assert asked == ["_dmarc.shop.acme.example. TXT"]
    assert discovery.failure == "_dmarc.shop.acme.example TXT: the DNS server failed (SERVFAIL)"
    assert discovery.record is None
