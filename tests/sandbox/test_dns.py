"""SandboxDNS answers real DNS queries over loopback UDP and TCP like an authoritative server."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

# Eight 100-character strings: about 950 bytes of answer, more than 512, less than 1232.
BIG_TXT = [f'"{chr(ord("a") + i) * 100}"' for i in range(8)]
# Twenty such strings: over 2300 bytes, more than the server ever sends over UDP.
HUGE_TXT = [f'"{chr(ord("a") + i) * 100}"' for i in range(20)]

ZONES: dict[str, list[ZoneRecord]] = {
    "acme.example": [
        ZoneRecord("@", "MX", "10 mx.acme.example."),
        ZoneRecord("@", "MX", "20 mx2"),
        ZoneRecord("@", "TXT", '"v=spf1 mx" " -all"', ttl=600),
        ZoneRecord("mx", "A", "198.51.100.10"),
        ZoneRecord("mx.acme.example.", "AAAA", "2001:db8::10"),
        ZoneRecord("mx2", "A", "198.51.100.11"),
        ZoneRecord("multi", "TXT", '"part one" "part two"'),
        ZoneRecord("mail", "CNAME", "mx.acme.example."),
        ZoneRecord("smtp", "CNAME", "mail"),
        ZoneRecord("relay", "CNAME", "mx.partner.example."),
        ZoneRecord("away", "CNAME", "mx.elsewhere.test."),
        ZoneRecord("dangling", "CNAME", "missing"),
        ZoneRecord("loop1", "CNAME", "loop2"),
        ZoneRecord("loop2", "CNAME", "loop1"),
        ZoneRecord("sel1._domainkey", "TXT", '"v=DKIM1; k=rsa; p=AAAA"'),
        *(ZoneRecord("big", "TXT", value) for value in BIG_TXT),
        *(ZoneRecord("huge", "TXT", value) for value in HUGE_TXT),
    ],
    "example.": [ZoneRecord("www", "A", "192.0.2.80")],
    "partner.example": [ZoneRecord("mx", "A", "203.0.113.25")],
    "100.51.198.in-addr.arpa": [ZoneRecord("10", "PTR", "mx.acme.example.")],
}
FAULTS = {
    "broken.acme.example": "servfail",
    "slow.acme.example": "timeout",
    "denied.acme.example.": "refused",
}


@pytest.fixture
async def server() -> AsyncIterator[SandboxDNS]:
    async with SandboxDNS(ZONES, faults=FAULTS) as dns_server:
        yield dns_server


async def ask_udp(
    server: SandboxDNS, qname: str, rdtype: str, **make_query: Any
) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **make_query)
    return await dns.asyncquery.udp(query, server.host, timeout=2, port=server.port)


def texts(rrset: dns.rrset.RRset) -> list[str]:
    return sorted(rdata.to_text() for rdata in rrset)


def frame(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


async def read_framed(reader: asyncio.StreamReader) -> dns.message.Message:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return dns.message.from_wire(await reader.readexactly(length))


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def test_mx_answered_by_resolver(server: SandboxDNS) -> None:
    answer = await server.resolver().resolve("acme.example", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx.acme.example."),
        (20, "mx2.acme.example."),
    ]
    assert answer.rrset is not None and answer.rrset.ttl == 300
    assert server.queries == [("acme.example.", "MX", "udp")]


async def test_a_and_aaaa(server: SandboxDNS) -> None:
    resolver = server.resolver()
    assert texts((await resolver.resolve("mx.acme.example", "A")).rrset) == ["198.51.100.10"]
    assert texts((await resolver.resolve("mx.acme.example", "AAAA")).rrset) == ["2001:db8::10"]


async def test_txt_keeps_multiple_strings(server: SandboxDNS) -> None:
    resolver = server.resolver()
    spf = await resolver.resolve("acme.example", "TXT")
    assert [r.strings for r in spf] == [(b"v=spf1 mx", b" -all")]
    assert spf.rrset is not None and spf.rrset.ttl == 600
    multi = await resolver.resolve("multi.acme.example", "TXT")
    assert [r.strings for r in multi] == [(b"part one", b"part two")]


async def test_names_are_case_insensitive(server: SandboxDNS) -> None:
    answer = await server.resolver().resolve("MX.Acme.EXAMPLE", "A")
    assert texts(answer.rrset) == ["198.51.100.10"]
    assert server.queries == [("mx.acme.example.", "A", "udp")]


async def test_ptr(server: SandboxDNS) -> None:
    answer = await server.resolver().resolve_address("198.51.100.10")
    assert texts(answer.rrset) == ["mx.acme.example."]


async def test_header_of_authoritative_answer(server: SandboxDNS) -> None:
    query = dns.message.make_query("mx.acme.example", "A")
    response = await dns.asyncquery.udp(query, server.host, timeout=2, port=server.port)
    assert response.id == query.id
    assert response.question == query.question
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.RD
    assert not response.flags & dns.flags.RA
    assert not response.flags & dns.flags.TC
    assert [texts(rrset) for rrset in response.answer] == [["198.51.100.10"]]
    assert response.authority == []

    no_rd = await ask_udp(server, "mx.acme.example", "A", flags=0)
    assert not no_rd.flags & dns.flags.RD
    assert no_rd.flags & dns.flags.AA


async def test_nxdomain_vs_nodata(server: SandboxDNS) -> None:
    resolver = server.resolver()
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nope.acme.example", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("mx.acme.example", "MX")
    # An empty non-terminal exists: it has no records but a name below it does.
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("_domainkey.acme.example", "TXT")

    nxdomain = await ask_udp(server, "nope.acme.example", "A")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    assert nxdomain.flags & dns.flags.AA
    assert nxdomain.answer == []
    [soa] = nxdomain.authority
    assert soa.name == dns.name.from_text("acme.example")
    assert soa.rdtype == dns.rdatatype.SOA
    assert texts(soa) == ["ns.acme.example. hostmaster.acme.example. 1 3600 600 86400 300"]
    assert soa.ttl == 300

    nodata = await ask_udp(server, "_domainkey.acme.example", "TXT")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.flags & dns.flags.AA
    assert nodata.answer == []
    assert [(r.name.to_text(), r.rdtype) for r in nodata.authority] == [
        ("acme.example.", dns.rdatatype.SOA)
    ]


async def test_synthesised_soa_and_ns(server: SandboxDNS) -> None:
    resolver = server.resolver()
    ns = await resolver.resolve("partner.example", "NS")
    assert texts(ns.rrset) == ["ns.partner.example."]
    ns_address = await resolver.resolve("ns.partner.example", "A")
    assert texts(ns_address.rrset) == [server.host]
    soa = await resolver.resolve("partner.example", "SOA")
    assert [r.mname.to_text() for r in soa] == ["ns.partner.example."]


async def test_outside_every_zone_is_refused(server: SandboxDNS) -> None:
    response = await ask_udp(server, "mx.other.test", "MX")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == [] and response.authority == []
    with pytest.raises(dns.resolver.NoNameservers):
        await server.resolver().resolve("mx.other.test", "MX")


async def test_most_specific_zone_wins(server: SandboxDNS) -> None:
    resolver = server.resolver()
    assert texts((await resolver.resolve("www.example", "A")).rrset) == ["192.0.2.80"]
    # "example." would hold acme.example as an empty name; the child zone answers instead.
    response = await ask_udp(server, "nope.acme.example", "A")
    assert [r.name.to_text() for r in response.authority] == ["acme.example."]
    response = await ask_udp(server, "nope.example", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [r.name.to_text() for r in response.authority] == ["example."]


async def test_cname_is_chased_within_and_across_zones(server: SandboxDNS) -> None:
    resolver = server.resolver()
    answer = await resolver.resolve("smtp.acme.example", "A")
    assert answer.canonical_name.to_text() == "mx.acme.example."
    assert texts(answer.rrset) == ["198.51.100.10"]
    assert [
        (r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in answer.response.answer
    ] == [
        ("smtp.acme.example.", "CNAME"),
        ("mail.acme.example.", "CNAME"),
        ("mx.acme.example.", "A"),
    ]
    relay = await resolver.resolve("relay.acme.example", "A")
    assert texts(relay.rrset) == ["203.0.113.25"]
    # One question, one answer: the chase happens server-side.
    assert server.queries == [
        ("smtp.acme.example.", "A", "udp"),
        ("relay.acme.example.", "A", "udp"),
    ]

    cname_itself = await resolver.resolve("mail.acme.example", "CNAME")
    assert texts(cname_itself.rrset) == ["mx.acme.example."]
    assert len(cname_itself.response.answer) == 1


async def test_cname_ends_outside_missing_or_in_a_loop(server: SandboxDNS) -> None:
    away = await ask_udp(server, "away.acme.example", "A")
    assert away.rcode() == dns.rcode.NOERROR
    assert [texts(r) for r in away.answer] == [["mx.elsewhere.test."]]
    assert away.authority == []

    dangling = await ask_udp(server, "dangling.acme.example", "A")
    assert dangling.rcode() == dns.rcode.NXDOMAIN
    assert [texts(r) for r in dangling.answer] == [["missing.acme.example."]]
    assert [r.rdtype for r in dangling.authority] == [dns.rdatatype.SOA]

    nodata = await ask_udp(server, "mail.acme.example", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in nodata.answer] == [dns.rdatatype.CNAME]
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]

    loop = await ask_udp(server, "loop1.acme.example", "A")
    assert loop.rcode() == dns.rcode.NOERROR
    assert [(r.name.to_text(), texts(r)) for r in loop.answer] == [
        ("loop1.acme.example.", ["loop2.acme.example."]),
        ("loop2.acme.example.", ["loop1.acme.example."]),
    ]


async def test_udp_size_limits_and_truncation(server: SandboxDNS) -> None:
    plain = await ask_udp(server, "big.acme.example", "TXT")
    assert plain.flags & dns.flags.TC
    assert plain.answer == []
    assert len(plain.to_wire()) <= 512

    edns = await ask_udp(server, "big.acme.example", "TXT", use_edns=0, payload=1232)
    assert not edns.flags & dns.flags.TC
    assert [len(r) for r in edns.answer] == [8]

    # The client may offer more, but the server never exceeds its own 1232-byte limit.
    capped = await ask_udp(server, "huge.acme.example", "TXT", use_edns=0, payload=4096)
    assert capped.flags & dns.flags.TC
    assert capped.answer == []


async def test_truncated_answer_makes_resolver_fall_back_to_tcp(server: SandboxDNS) -> None:
    answer = await server.resolver().resolve("huge.acme.example", "TXT")
    assert sorted(b"".join(r.strings).decode() for r in answer) == [
        value.strip('"') for value in HUGE_TXT
    ]
    assert server.queries == [
        ("huge.acme.example.", "TXT", "udp"),
        ("huge.acme.example.", "TXT", "tcp"),
    ]


async def test_tcp_several_queries_on_one_connection(server: SandboxDNS) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        first = dns.message.make_query("mx.acme.example", "A")
        second = dns.message.make_query("huge.acme.example", "TXT")
        writer.write(frame(first) + frame(second))
        await writer.drain()
        answers = [await read_framed(reader), await read_framed(reader)]
        assert [r.id for r in answers] == [first.id, second.id]
        assert texts(answers[0].answer[0]) == ["198.51.100.10"]
        assert len(answers[1].answer[0]) == 20
        assert not answers[1].flags & dns.flags.TC

        third = dns.message.make_query("acme.example", "MX")
        writer.write(frame(third))
        await writer.drain()
        assert (await read_framed(reader)).id == third.id

        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        await close(writer)
    assert [transport for *_, transport in server.queries] == ["tcp", "tcp", "tcp"]


async def test_dnspython_tcp_query(server: SandboxDNS) -> None:
    query = dns.message.make_query("multi.acme.example", "TXT")
    response = await dns.asyncquery.tcp(query, server.host, timeout=2, port=server.port)
    assert response.id == query.id
    assert [r.strings for r in response.answer[0]] == [(b"part one", b"part two")]
    assert response.flags & dns.flags.AA


async def test_idle_tcp_client_is_disconnected(server: SandboxDNS) -> None:
    server.tcp_idle_timeout = 0.2
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        await close(writer)


async def test_malformed_udp_packets_are_ignored(
    server: SandboxDNS, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    query = dns.message.make_query("mx.acme.example", "A")
    a_response = dns.message.make_response(query).to_wire()
    garbage = [b"", b"\x12", b"\x00" * 11, query.to_wire()[:-3], b"\xff" * 300, a_response]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for packet in [*garbage, query.to_wire()]:
            await loop.sock_sendto(sock, packet, (server.host, server.port))
        # Datagrams on loopback arrive in order: had any garbage been answered, it came first.
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 65535), 2))
    assert reply.id == query.id
    assert texts(reply.answer[0]) == ["198.51.100.10"]
    assert server.queries == [("mx.acme.example.", "A", "udp")]
    answer = await server.resolver().resolve("acme.example", "MX")
    assert len(answer) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_malformed_tcp_message_closes_only_that_connection(server: SandboxDNS) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"\x00\x05hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        await close(writer)
    query = dns.message.make_query("mx.acme.example", "A")
    response = await dns.asyncquery.tcp(query, server.host, timeout=2, port=server.port)
    assert texts(response.answer[0]) == ["198.51.100.10"]


async def test_servfail_and_refused_faults(server: SandboxDNS) -> None:
    resolver = server.resolver()
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("broken.acme.example", "A")
    servfail = await ask_udp(server, "Broken.Acme.Example", "MX")
    assert servfail.rcode() == dns.rcode.SERVFAIL
    assert not servfail.flags & dns.flags.AA
    refused = await ask_udp(server, "denied.acme.example", "A")
    assert refused.rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("denied.acme.example", "A")
    # A fault is tied to its own name only.
    assert texts((await resolver.resolve("mx.acme.example", "A")).rrset) == ["198.51.100.10"]


async def test_a_fault_for_every_name_breaks_the_whole_server() -> None:
    async with SandboxDNS(
        ZONES, faults={"*": "nxdomain", "slow.acme.example": "timeout"}
    ) as broken:
        # Even names the zones hold: a resolver that answers NXDOMAIN for everything.
        with pytest.raises(dns.resolver.NXDOMAIN):
            await broken.resolver().resolve("mx.acme.example", "A")
        nxdomain = await ask_udp(broken, "acme.example", "MX")
        assert nxdomain.rcode() == dns.rcode.NXDOMAIN
        # A name's own fault still wins.
        with pytest.raises(dns.resolver.LifetimeTimeout):
            await broken.resolver(timeout=0.3).resolve("slow.acme.example", "A")
    with pytest.raises(ValueError, match="must be one of"):
        SandboxDNS(ZONES, faults={"*": "lies"})


async def test_timeout_fault_never_answers(server: SandboxDNS) -> None:
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await server.resolver(timeout=0.5).resolve("slow.acme.example", "A")
    assert server.queries
    assert {q[:2] for q in server.queries} == {("slow.acme.example.", "A")}
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.tcp(
            dns.message.make_query("slow.acme.example", "TXT"),
            server.host,
            timeout=0.2,
            port=server.port,
        )


# The wildcard addresses are here precisely to check that they are refused.
NOT_LOOPBACK = [
    "0.0.0.0",  # noqa: S104
    "::",
    "192.0.2.1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "localhost",
    "",
]


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_non_loopback_host_is_rejected(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxDNS(ZONES, host=host)


async def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with SandboxDNS(ZONES, host="::1") as server:
        answer = await server.resolver().resolve("mx.acme.example", "A")
        assert texts(answer.rrset) == ["198.51.100.10"]
        ns = await server.resolver().resolve("ns.acme.example", "AAAA")
        assert texts(ns.rrset) == ["::1"]


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        ({"acme.example": [ZoneRecord("mx.other.test.", "A", "192.0.2.1")]}, "outside"),
        ({"acme.example": [ZoneRecord("mx", "A", "not-an-address")]}, "bad A value"),
        ({"acme.example": [ZoneRecord("mx", "BOGUS", "1")]}, "bad record"),
        ({"acme.example": [ZoneRecord("@", "CNAME", "x.test.")]}, "CNAME"),
        ({"a.example": [], "a.example.": []}, "twice"),
        ({"example": [ZoneRecord("mx.a.example.", "A", "192.0.2.1")], "a.example": []}, "belongs"),
    ],
)
def test_bad_zones_are_rejected(zones: dict[str, list[ZoneRecord]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxDNS(zones)


def test_unknown_fault_is_rejected() -> None:
    with pytest.raises(ValueError, match="fault"):
        SandboxDNS(ZONES, faults={"mx.acme.example": "flaky"})


async def test_port_only_after_start_and_stop_releases_it() -> None:
    server = SandboxDNS(ZONES)
    with pytest.raises(RuntimeError):
        _ = server.port
    with pytest.raises(RuntimeError):
        server.resolver()
    await server.start()
    port = server.port
    idle_reader, idle_writer = await asyncio.open_connection(server.host, port)
    response = await dns.asyncquery.tcp(
        dns.message.make_query("mx.acme.example", "A"), server.host, timeout=2, port=port
    )
    assert response.rcode() == dns.rcode.NOERROR

    await asyncio.wait_for(server.stop(), 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((server.host, port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((server.host, port))
    await server.stop()
    assert server.port == port
    try:
        # stop() also ends connections that were still open.
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""
    finally:
        await close(idle_writer)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(server.host, port)

    await server.start()
    try:
        answer = await server.resolver().resolve("mx.acme.example", "A")
        assert texts(answer.rrset) == ["198.51.100.10"]
    finally:
        await server.stop()
    # Without any TCP connection to wait for, the UDP socket must be closed all the same.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((server.host, server.port))


async def test_start_twice_is_an_error(server: SandboxDNS) -> None:
    with pytest.raises(RuntimeError, match="already"):
        await server.start()
