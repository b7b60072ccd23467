"""SPF: parsing, and check_host() against the RFC 7208 test suite's cases over real DNS.

The suite's zone data lives in fixtures/spf/ (one file per group of rfc7208-tests.yml); each
case runs against a SandboxDNS on loopback serving that group's zones, and its test id is the
suite's case name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from diagnostics.net import DNSQueries
from diagnostics.parse.spf import (
    IncludeCost,
    Mechanism,
    SpfRecord,
    SpfSyntaxError,
    check_host,
    is_spf_record,
    parse_record,
)
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

SPF_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "spf"


@dataclass(frozen=True)
class Group:
    description: str
    zones: dict[str, list[ZoneRecord]]
    faults: dict[str, str]
    timeout_s: float


@dataclass(frozen=True)
class Case:
    domain: str
    host: str
    result: str
    lookups: int | None = None
    void_lookups: int | None = None
    also: str | None = None


def load_group(path: Path) -> tuple[Group, dict[str, Case]]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    zones = {
        origin: [ZoneRecord(*line.split(maxsplit=2)) for line in records]
        for origin, records in raw["zones"].items()
    }
    group = Group(raw["description"], zones, raw.get("faults", {}), raw.get("timeout_s", 1.0))
    cases = {name: Case(**fields) for name, fields in raw["cases"].items()}
    return group, cases


def suite_cases() -> list[Any]:
    params = []
    for path in sorted(SPF_FIXTURES.glob("*.yaml")):
        group, cases = load_group(path)
        params += [pytest.param(group, case, id=name) for name, case in cases.items()]
    return params


SUITE = suite_cases()


def test_the_suite_subset_is_loaded() -> None:
    assert len(SUITE) == 130
    assert len({p.id for p in SUITE}) == len(SUITE)


@pytest.mark.parametrize(("group", "case"), SUITE)
async def test_rfc7208_case(group: Group, case: Case) -> None:
    async with SandboxDNS(group.zones, faults=group.faults) as server:
        resolver = server.resolver(timeout=group.timeout_s)
        queries = DNSQueries(resolver, lifetime=group.timeout_s)
        evaluation = await check_host(case.host, case.domain, lookup=queries)
    assert evaluation.result == case.result, evaluation.problem
    if case.lookups is not None:
        assert evaluation.lookups == case.lookups
    if case.void_lookups is not None:
        assert evaluation.void_lookups == case.void_lookups
    assert all(address == "127.0.0.1" for address in resolver.nameservers)


def txt(text: str) -> str:
    """``text`` as TXT rdata: strings of at most 255 bytes, which receivers join again."""
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


BIG = "v=spf1 " + " ".join(f"include:i{n}.example.com" for n in range(1, 13)) + " -all"


async def test_rfc7208_ptr_limit() -> None:
    """Only the first 10 PTR names count; the one that matches is somewhere among 11."""
    group, _ = load_group(SPF_FIXTURES / "processing-limits.yaml")
    async with SandboxDNS(group.zones) as server:
        queries = DNSQueries(server.resolver(timeout=1), lifetime=1)
        evaluation = await check_host("1.2.3.5", "e5.example.com", lookup=queries)
        ptr = await queries("5.3.2.1.in-addr.arpa", "PTR")
    served = [name.rstrip(".") for name in ptr.records]
    assert len(served) == 11
    counted = served[:10]
    matched = "e5.example.com" in counted
    checked = counted[: counted.index("e5.example.com") + 1] if matched else counted
    assert (evaluation.result, evaluation.lookups) == ("pass" if matched else "neutral", 1)
    forward = [name.rstrip(".") for name, rdtype, _ in server.queries if rdtype == "A"]
    assert forward == checked


ZONES = {
    "example.com": [
        ZoneRecord("@", "TXT", '"v=spf1 include:big.example.com -all"'),
        ZoneRecord("big", "TXT", txt(BIG)),
        *(ZoneRecord(f"i{n}", "TXT", '"v=spf1 -all"') for n in range(1, 13)),
        ZoneRecord("macro", "TXT", '"v=spf1 exists:%{i}.bl.example.com ip4:192.0.2.1 -all"'),
        ZoneRecord("mail", "A", "192.0.2.25"),
        ZoneRecord("nested", "TXT", '"v=spf1 include:inner.example.com -all"'),
        ZoneRecord("inner", "TXT", '"v=spf1 a:mail.example.com -all"'),
    ]
}


async def evaluate(ip: str, domain: str, *, measure: bool = False) -> Any:
    async with SandboxDNS(ZONES) as server:
        queries = DNSQueries(server.resolver(timeout=1), lifetime=1)
        return await check_host(ip, domain, lookup=queries, measure=measure)


async def test_include_over_limit_names_the_eleventh_lookup() -> None:
    evaluation = await evaluate("192.0.2.99", "example.com")
    assert evaluation.result == "permerror"
    assert evaluation.limit_exceeded is True
    assert evaluation.lookups == 11
    assert evaluation.problem == (
        "more than 10 DNS lookups: the 11th is 'include:i10.example.com' in the record of "
        "big.example.com"
    )


async def test_measuring_counts_past_the_limit() -> None:
    evaluation = await evaluate("192.0.2.99", "example.com", measure=True)
    assert (evaluation.result, evaluation.lookups) == ("permerror", 13)
    assert evaluation.includes[-1] == IncludeCost("include:big.example.com", "example.com", 0, 13)
    assert [i.lookups for i in evaluation.includes[:-1]] == [1] * 12


async def test_match_inside_an_include_is_reported_where_it_matched() -> None:
    evaluation = await evaluate("192.0.2.25", "nested.example.com")
    assert (evaluation.result, evaluation.lookups) == ("pass", 2)
    assert evaluation.matched == "'a:mail.example.com' in the record of inner.example.com"
    assert evaluation.records == (
        ("nested.example.com", "v=spf1 include:inner.example.com -all"),
        ("inner.example.com", "v=spf1 a:mail.example.com -all"),
    )


async def test_macros_are_reported_not_evaluated() -> None:
    evaluation = await evaluate("192.0.2.1", "macro.example.com")
    assert (evaluation.result, evaluation.lookups) == ("pass", 1)
    assert evaluation.unevaluated == (
        "'exists:%{i}.bl.example.com' in the record of macro.example.com",
    )
    assert evaluation.matched == "'ip4:192.0.2.1' in the record of macro.example.com"


async def test_no_record_is_none_with_a_reason() -> None:
    evaluation = await evaluate("192.0.2.1", "mail.example.com")
    assert (evaluation.result, evaluation.problem) == ("none", "mail.example.com has no SPF record")


def test_parse_every_kind_of_term() -> None:
    record = parse_record(
        "v=spf1 +a:mail.example.com/24//64 -mx ~ip4:192.0.2.0/24 ?ip6:2001:db8::/32 "
        "include:_spf.example.net exists:%{i}.bl.example.org ptr redirect=other.example.com "
        "exp=why.example.com foo=bar"
    )
    assert record.mechanisms == (
        Mechanism("+", "a", "+a:mail.example.com/24//64", "mail.example.com", cidr4=24, cidr6=64),
        Mechanism("-", "mx", "-mx"),
        Mechanism("~", "ip4", "~ip4:192.0.2.0/24", network=ipaddress.ip_network("192.0.2.0/24")),
        Mechanism("?", "ip6", "?ip6:2001:db8::/32", network=ipaddress.ip_network("2001:db8::/32")),
        Mechanism("+", "include", "include:_spf.example.net", "_spf.example.net"),
        Mechanism("+", "exists", "exists:%{i}.bl.example.org", "%{i}.bl.example.org"),
        Mechanism("+", "ptr", "ptr"),
    )
    assert (record.redirect, record.exp, record.unknown_modifiers) == (
        "other.example.com",
        "why.example.com",
        ("foo=bar",),
    )
    assert [m.result for m in record.mechanisms[:4]] == ["pass", "fail", "softfail", "neutral"]
    assert record.mechanisms[5].has_macro is True
    assert record.has_all is False


def test_lookup_terms_of_one_record() -> None:
    record = parse_record("v=spf1 ip4:192.0.2.1 a mx include:x.example.com redirect=y.example.com")
    assert record.lookup_terms == ("a", "mx", "include:x.example.com", "redirect=y.example.com")
    with_all = parse_record("v=spf1 a redirect=y.example.com ~all")
    assert with_all.lookup_terms == ("a",)
    assert isinstance(with_all, SpfRecord)


@pytest.mark.parametrize(
    ("text", "is_spf"),
    [
        ("v=spf1", True),
        ("v=spf1 -all", True),
        ("V=SPF1 -all", True),
        ("v=spf10", False),
        ("v=spf1mx", False),
        ("spf1 -all", False),
        ("", False),
    ],
)
def test_is_spf_record(text: str, is_spf: bool) -> None:
    assert is_spf_record(text) is is_spf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "v=spf1 a:museum",
            "'a:museum': the domain must end in a top-level label of letters, not 'museum'",
        ),
        ("v=spf1 ip4:1.2.3.4/33", "'ip4:1.2.3.4/33': CIDR length /33 is not 0 to 32"),
        ("v=spf1 foo:bar", "'foo:bar': unknown mechanism 'foo'"),
        (
            "v=spf1 -all exp=a.example.com exp=b.example.com",
            "'exp=b.example.com': 'exp=' appears more than once",
        ),
        ("v=spf1 \u00e9 -all", "the record holds characters that are not 7-bit ASCII"),
        ("v=spf1 ip6:1.2.3.4", "'ip6:1.2.3.4': '1.2.3.4' is not an IPv6 address"),
    ],
)
def test_syntax_errors_name_the_term(text: str, message: str) -> None:
    with pytest.raises(SpfSyntaxError) as raised:
        parse_record(text)
    assert str(raised.value) == message
