"""Tiny authoritative DNS server for the sandbox mail world, on loopback only.

It answers real DNS wire queries over UDP and TCP on one ephemeral port, inside the caller's
running asyncio event loop (no threads), so dnspython resolvers and the checks under test can
query it unchanged. What a caller must know:

- Owner names in a ``ZoneRecord`` follow zone-file rules: a name ending in a dot is absolute,
  anything else (including ``"@"``) is relative to the zone origin. Names in rdata
  (MX exchange, CNAME target, ...) follow the same rule.
- Each zone gets a synthesised SOA and an NS ``ns.<origin>`` when it defines none; that NS
  name also gets an A/AAAA record pointing at this server's host unless the zone defines it.
- NS records below a zone apex are plain data: there are no delegations, referrals or
  wildcards. Configure a child as its own zone instead; the most specific zone answers.
- UDP answers are limited to 512 bytes without EDNS and to ``min(client payload, 1232)``
  with it; larger answers come back truncated (TC) so that clients retry over TCP.
- A fault applies to exactly its own name (not to names below it) over both transports; a
  fault for ``"*"`` applies to every name (a resolver that is broken for everything).
- ``queries`` logs every well-formed query as (lowercased absolute name, type, transport),
  including those swallowed by a ``"timeout"`` fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, cast

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.SOA
import dns.rrset

__all__ = ["FAULT_KINDS", "SandboxDNS", "ZoneRecord"]

FAULT_KINDS: Final = ("servfail", "timeout", "refused", "nxdomain")
# The owner of a fault that applies to every name.
EVERY_NAME: Final = "*"

_Via = Literal["udp", "tcp"]

_UDP_PLAIN_LIMIT: Final = 512
# The EDNS buffer size recommended by DNS Flag Day 2020; it keeps answers below common MTUs.
_UDP_EDNS_LIMIT: Final = 1232
_TCP_LIMIT: Final = 65535
_BIND_ATTEMPTS: Final = 5
_SYNTH_SOA: Final = "ns.{origin} hostmaster.{origin} 1 3600 600 86400 300"
_SYNTH_SOA_TTL: Final = 300

_Node = dict[dns.rdatatype.RdataType, dns.rrset.RRset]


@dataclass(frozen=True)
class ZoneRecord:
    """One resource record of a sandbox zone, in zone-file presentation format."""

    name: str
    rtype: str
    value: str
    ttl: int = 300


class _Zone:
    """The records of one zone, indexed by owner name, plus the names that merely exist."""

    def __init__(self, origin: dns.name.Name) -> None:
        self.origin = origin
        self.nodes: dict[dns.name.Name, _Node] = {}
        # Every owner name and every ancestor of one up to the apex (empty non-terminals).
        self.existing: set[dns.name.Name] = set()
        self.negative_soa = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.SOA)

    def add(self, name: dns.name.Name, rdata: dns.rdata.Rdata, ttl: int) -> None:
        node = self.nodes.setdefault(name, {})
        rrset = node.get(rdata.rdtype)
        if rrset is None:
            rrset = node[rdata.rdtype] = dns.rrset.RRset(name, rdata.rdclass, rdata.rdtype)
        rrset.add(rdata, ttl)
        while name != self.origin and name not in self.existing:
            self.existing.add(name)
            name = name.parent()
        self.existing.add(self.origin)

    def finish(self) -> None:
        for name, node in self.nodes.items():
            if dns.rdatatype.CNAME in node and len(node) > 1:
                raise ValueError(f"{name}: a CNAME cannot coexist with other records")
        soa = self.nodes[self.origin][dns.rdatatype.SOA]
        soa_rdata = soa[0]
        assert isinstance(soa_rdata, dns.rdtypes.ANY.SOA.SOA)
        # RFC 2308 section 3: negative answers carry min(SOA TTL, SOA MINIMUM).
        self.negative_soa.add(soa_rdata, min(soa.ttl, soa_rdata.minimum))


class SandboxDNS:
    """Authoritative DNS server for sandbox zones, listening on loopback UDP and TCP.

    Use as ``async with SandboxDNS(zones) as server:`` (or ``start()``/``stop()``) inside a
    running event loop; ``server.resolver()`` returns a dnspython resolver aimed at it.
    """

    #: Seconds a TCP client may take to send each query before the connection is closed.
    tcp_idle_timeout: float = 10.0

    def __init__(
        self,
        zones: Mapping[str, Sequence[ZoneRecord]],
        *,
        host: str = "127.0.0.1",
        faults: Mapping[str, str] | None = None,
    ) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be a loopback IP address, got {host!r}") from None
        if not address.is_loopback:
            raise ValueError(f"host must be a loopback IP address, got {host!r}")
        self.host = str(address)
        self._family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        self._zones = _build_zones(zones, address)
        self._faults: dict[dns.name.Name, str] = {}
        self._fault_all: str | None = None
        for owner, kind in (faults or {}).items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"fault for {owner!r} must be one of {FAULT_KINDS}, got {kind!r}")
            if owner == EVERY_NAME:
                self._fault_all = kind
            else:
                self._faults[dns.name.from_text(owner)] = kind
        self.queries: list[tuple[str, str, str]] = []
        self._port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_closed: asyncio.Future[None] | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (UDP and TCP); kept after ``stop()`` for diagnostics."""
        if self._port is None:
            raise RuntimeError("SandboxDNS.port is only known after start()")
        return self._port

    async def start(self) -> None:
        """Bind UDP on an ephemeral port, then TCP on the same port, and start serving."""
        if self._udp is not None:
            raise RuntimeError("SandboxDNS is already started")
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            udp_sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                udp_sock.bind((self.host, 0))
            except OSError:
                udp_sock.close()
                raise
            port: int = udp_sock.getsockname()[1]
            closed: asyncio.Future[None] = loop.create_future()
            udp, _ = await loop.create_datagram_endpoint(
                functools.partial(_UDPProtocol, self._on_datagram, closed), sock=udp_sock
            )
            tcp_sock = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp_sock.bind((self.host, port))
            except OSError as exc:
                # Something else owns this TCP port; release the UDP side and try another.
                tcp_sock.close()
                udp.close()
                await closed
                last_error = exc
                continue
            try:
                self._tcp = await asyncio.start_server(self._on_tcp_connection, sock=tcp_sock)
            except BaseException:
                tcp_sock.close()
                udp.close()
                await closed
                raise
            self._udp, self._udp_closed, self._port = udp, closed, port
            return
        raise OSError(f"could not bind UDP and TCP on one port of {self.host}") from last_error

    async def stop(self) -> None:
        """Close both listeners and every open TCP connection. Safe to call repeatedly."""
        udp, closed, server = self._udp, self._udp_closed, self._tcp
        self._udp = self._udp_closed = self._tcp = None
        if server is not None:
            server.close()
        if udp is not None:
            udp.close()
        tasks = list(self._tcp_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if closed is not None:
            await closed

    async def __aenter__(self) -> SandboxDNS:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def resolver(self, *, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
        """A dnspython async resolver that asks only this server, without caching."""
        res = dns.asyncresolver.Resolver(configure=False)
        # The port must be set first: nameservers given as strings capture it on assignment.
        res.port = self.port
        res.nameservers = [self.host]
        # Loopback answers in milliseconds: a datagram that got lost is asked again soon,
        # within the whole lifetime, as a stub resolver retries.
        res.timeout = min(timeout, 0.25)
        res.lifetime = timeout
        res.cache = None
        return res

    def _on_datagram(self, data: bytes) -> bytes | None:
        query = _parse(data)
        if query is None:
            return None
        return self._respond(query, "udp")

    def _on_tcp_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._tcp is None:
            writer.close()
            return
        # Our own task rather than a coroutine callback: asyncio 3.11 logs an error when the
        # task it made for a coroutine callback ends cancelled, which stop() does.
        task = asyncio.get_running_loop().create_task(self._serve_tcp(reader, writer))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(self.tcp_idle_timeout):
                    header = await reader.readexactly(2)
                    query = _parse(await reader.readexactly(int.from_bytes(header, "big")))
                    if query is None:
                        return
                    reply = self._respond(query, "tcp")
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, query: dns.message.Message, transport: _Via) -> bytes | None:
        """Wire-format response to a parsed query, or None to stay silent."""
        response = dns.message.make_response(query, our_payload=_UDP_EDNS_LIMIT)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            question = query.question[0]
            qname, qtype = question.name, question.rdtype
            self.queries.append(
                (qname.canonicalize().to_text(), dns.rdatatype.to_text(qtype), transport)
            )
            fault = self._faults.get(qname, self._fault_all)
            if fault == "timeout":
                return None
            if fault == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
            elif fault == "refused":
                response.set_rcode(dns.rcode.REFUSED)
            elif fault == "nxdomain":
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif query.edns > 0:
                response.set_rcode(dns.rcode.BADVERS)
            elif query.opcode() != dns.opcode.QUERY:
                response.set_rcode(dns.rcode.NOTIMP)
            elif question.rdclass != dns.rdataclass.IN or (
                dns.rdatatype.is_metatype(qtype) and qtype != dns.rdatatype.ANY
            ):
                # Other classes, zone transfers and the like are outside this server's remit.
                response.set_rcode(dns.rcode.REFUSED)
            else:
                self._answer(qname, qtype, response)
        if transport == "tcp":
            return response.to_wire(
                max_size=_TCP_LIMIT, prefer_truncation=True, prepend_length=True
            )
        limit = _UDP_PLAIN_LIMIT
        if query.edns >= 0:
            limit = max(_UDP_PLAIN_LIMIT, min(query.payload, _UDP_EDNS_LIMIT))
        return response.to_wire(max_size=limit, prefer_truncation=True)

    def _answer(
        self,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        response: dns.message.Message,
    ) -> None:
        zone = self._zone_for(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return
        response.flags |= dns.flags.AA
        name = qname
        chased = {qname}
        while True:
            node = zone.nodes.get(name)
            if node is None:
                if name not in zone.existing:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(zone.negative_soa)
                return
            if qtype == dns.rdatatype.ANY:
                response.answer.extend(node.values())
                return
            rrset = node.get(qtype)
            if rrset is not None:
                response.answer.append(rrset)
                return
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None:
                response.authority.append(zone.negative_soa)
                return
            response.answer.append(cname)
            target = cname[0]
            assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
            next_zone = self._zone_for(target.target)
            # A CNAME loop ends the chase; what has been chased so far is the answer.
            if next_zone is None or target.target in chased:
                return
            zone, name = next_zone, target.target
            chased.add(name)

    def _zone_for(self, name: dns.name.Name) -> _Zone | None:
        while True:
            zone = self._zones.get(name)
            if zone is not None:
                return zone
            if name == dns.name.root or name == dns.name.empty:
                return None
            name = name.parent()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(
        self, handle: Callable[[bytes], bytes | None], closed: asyncio.Future[None]
    ) -> None:
        self._handle = handle
        self._closed = closed
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self._handle(data)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from clients that have already gone away are no concern of the server.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


def _parse(data: bytes) -> dns.message.Message | None:
    """The query in ``data``, or None for anything malformed or not a query."""
    try:
        message = dns.message.from_wire(data)
    except Exception:
        # Hostile or broken input of any shape must never take the server down.
        return None
    if message.flags & dns.flags.QR:
        return None
    return message


def _build_zones(
    zones: Mapping[str, Sequence[ZoneRecord]],
    host: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> dict[dns.name.Name, _Zone]:
    built: dict[dns.name.Name, _Zone] = {}
    for origin_text, records in zones.items():
        origin = dns.name.from_text(origin_text)
        if origin in built:
            raise ValueError(f"zone {origin} is given twice")
        zone = built[origin] = _Zone(origin)
        for record in records:
            owner, rdata = _parse_record(origin, record)
            zone.add(owner, rdata, record.ttl)
    for origin, zone in built.items():
        for owner in zone.nodes:
            parent = owner
            while parent != origin:
                if parent in built:
                    raise ValueError(f"{owner} belongs to zone {parent}, not to zone {origin}")
                parent = parent.parent()
        apex = zone.nodes.setdefault(origin, {})
        if dns.rdatatype.SOA not in apex:
            soa = _SYNTH_SOA.format(origin=origin)
            zone.add(origin, _rdata(dns.rdatatype.SOA, soa, origin), _SYNTH_SOA_TTL)
        if dns.rdatatype.NS not in apex:
            ns_name = dns.name.from_text("ns", origin)
            zone.add(origin, _rdata(dns.rdatatype.NS, ns_name.to_text(), origin), _SYNTH_SOA_TTL)
            if ns_name not in zone.existing and ns_name not in built:
                rtype = dns.rdatatype.A if host.version == 4 else dns.rdatatype.AAAA
                zone.add(ns_name, _rdata(rtype, str(host), origin), _SYNTH_SOA_TTL)
        zone.finish()
    return built


def _parse_record(
    origin: dns.name.Name, record: ZoneRecord
) -> tuple[dns.name.Name, dns.rdata.Rdata]:
    try:
        owner = dns.name.from_text(record.name, origin)
        rtype = dns.rdatatype.from_text(record.rtype)
    except dns.exception.DNSException as exc:
        raise ValueError(f"zone {origin}: bad record {record!r}: {exc}") from exc
    if not owner.is_subdomain(origin):
        raise ValueError(f"zone {origin}: owner {owner} is outside the zone")
    if rtype == dns.rdatatype.SOA and owner != origin:
        raise ValueError(f"zone {origin}: SOA is only allowed at the apex, not at {owner}")
    if not 0 <= record.ttl < 2**31:
        raise ValueError(f"zone {origin}: TTL of {record!r} is out of range")
    return owner, _rdata(rtype, record.value, origin)


def _rdata(rtype: dns.rdatatype.RdataType, value: str, origin: dns.name.Name) -> dns.rdata.Rdata:
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, rtype, value, origin=origin, relativize=False)
    except dns.exception.DNSException as exc:
        raise ValueError(
            f"zone {origin}: bad {dns.rdatatype.to_text(rtype)} value {value!r}: {exc}"
        ) from exc
