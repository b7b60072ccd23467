"""SPF: the whole OpenSPF RFC 7208 test suite, every case, over real DNS on loopback.

fixtures/spf/rfc7208/rfc7208-tests.yml is the suite as published (see the README and
LICENSE there). Each scenario's ``zonedata`` is served by one SandboxDNS, shared by the
scenario's cases; each case is one test named as in the suite. The suite's conventions for
its drivers are applied here:

- A record of the obsolete type SPF is served as such and, unless the name has TXT data of
  its own, also as TXT (RFC 7208 looks up TXT only); ``TXT: NONE`` means no TXT record.
- ``TIMEOUT`` makes the name's server never answer. The sandbox faults a whole name, while
  the suite's drivers time out only the types without records; the one name with both
  (``spftimeout.example.net``, TXT present) is asked for TXT alone, so it answers.
- The identity: the MAIL FROM address and its domain or, for an empty MAIL FROM, the HELO
  name as the domain and ``postmaster@<helo>`` as the sender.
- ``explanation: DEFAULT`` is the suite's receiver default: no explanation from ``exp=``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from diagnostics.net import DNSQueries
from diagnostics.parse.spf import check_host
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

SUITE_FILE = (
    Path(__file__).resolve().parents[2] / "fixtures" / "spf" / "rfc7208" / "rfc7208-tests.yml"
)
SUITE_SIZE = 203
DEFAULT_EXPLANATION = "DEFAULT"
# Long enough for a loopback answer, short enough that the timeout cases stay quick.
LIFETIME_S = 0.5
# The zone every name of a scenario lives in, so that a name it does not hold is NXDOMAIN.
APEX = (
    ZoneRecord("@", "SOA", "ns.sandbox.invalid. hostmaster.sandbox.invalid. 1 3600 600 86400 300"),
    ZoneRecord("@", "NS", "ns.sandbox.invalid."),
)


@dataclass(frozen=True)
class Scenario:
    description: str
    records: tuple[ZoneRecord, ...]
    timeouts: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]
    explanation: str | None


def character_string(text: str) -> str:
    """``text`` as TXT strings in zone-file form: UTF-8, at most 255 bytes each, every byte
    that is not plain printable ASCII written as \\DDD."""
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join(
        '"'
        + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03d}" for b in chunk)
        + '"'
        for chunk in chunks
    )


def txt_value(value: str | list[str]) -> str:
    strings = [value] if isinstance(value, str) else value
    # "Null text (no strings) is illegal": one empty string is the nearest a zone can hold.
    return " ".join(character_string(s) for s in strings) or '""'


def name_records(name: str, entries: list[Any]) -> tuple[list[ZoneRecord], bool]:
    """The zone records of one name of the suite's zonedata, and whether it times out."""
    owner = name.rstrip(".") + "."
    own_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
    records, copies, timeout = [], [], False
    for entry in entries:
        if entry == "TIMEOUT":
            timeout = True
            continue
        ((rtype, value),) = entry.items()
        if value == "NONE":
            continue
        if rtype in ("TXT", "SPF"):
            records.append(ZoneRecord(owner, rtype, txt_value(value)))
            if rtype == "SPF" and not own_txt:
                copies.append(ZoneRecord(owner, "TXT", txt_value(value)))
        elif rtype == "MX":
            preference, host = value
            records.append(ZoneRecord(owner, "MX", f"{preference} {host.rstrip('.') + '.'}"))
        else:
            records.append(ZoneRecord(owner, rtype, str(value)))
    records += copies
    return records, timeout and not any(r.rtype == "TXT" for r in records)


def load_suite() -> list[Any]:
    params = []
    with SUITE_FILE.open(encoding="utf-8") as stream:
        documents = list(yaml.safe_load_all(stream))
    for document in documents:
        records: list[ZoneRecord] = []
        timeouts = []
        for name, entries in (document.get("zonedata") or {}).items():
            served, timeout = name_records(name, entries)
            records += served
            if timeout:
                timeouts.append(name.rstrip(".") + ".")
        scenario = Scenario(document["description"], tuple(records), tuple(timeouts))
        for name, test in document["tests"].items():
            result = test["result"]
            case = Case(
                scenario,
                helo=test["helo"],
                host=test["host"],
                mailfrom=test["mailfrom"],
                results=tuple(result) if isinstance(result, list) else (result,),
                explanation=test.get("explanation"),
            )
            params.append(pytest.param(case, id=name))
    return params


SUITE = load_suite()


class Servers:
    """One running SandboxDNS per scenario, started when its first case runs."""

    def __init__(self) -> None:
        self.running: dict[Scenario, SandboxDNS] = {}

    async def __call__(self, scenario: Scenario) -> SandboxDNS:
        if scenario not in self.running:
            server = SandboxDNS(
                {".": [*APEX, *scenario.records]},
                faults=dict.fromkeys(scenario.timeouts, "timeout"),
            )
            await server.start()
            self.running[scenario] = server
        return self.running[scenario]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers() -> AsyncIterator[Servers]:
    started = Servers()
    try:
        yield started
    finally:
        for server in started.running.values():
            await server.stop()


def test_the_whole_suite_is_loaded() -> None:
    assert len(SUITE) == SUITE_SIZE
    assert len({p.id for p in SUITE}) == SUITE_SIZE


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", SUITE)
async def test_rfc7208(servers: Servers, case: Case) -> None:
    server = await servers(case.scenario)
    queries = DNSQueries(server.resolver(timeout=LIFETIME_S), lifetime=LIFETIME_S)
    if case.mailfrom:
        sender, domain = case.mailfrom, case.mailfrom.rpartition("@")[2]
    else:
        sender, domain = f"postmaster@{case.helo}", case.helo
    evaluation = await check_host(case.host, domain, lookup=queries, sender=sender, helo=case.helo)
    assert evaluation.result in case.results, evaluation.problem
    if case.explanation is not None:
        assert (evaluation.explanation or DEFAULT_EXPLANATION) == case.explanation
