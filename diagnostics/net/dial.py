"""The one dialer: from a host name or address and a port to a connected socket.

A name is resolved *for connecting* as the operating system does it, in this order:
``--resolve`` overrides (:attr:`Dialer.static_hosts`), the hosts file (``localhost``
included; tests inject a mapping instead of touching the machine's), then DNS: the
system's resolver through ``getaddrinfo`` in live mode, the context's resolver when the user
named one with ``--dns-server`` and in the sandbox. Record lookups (MX, TXT, ...) never come
here: they stay on DNS, as the platform sees them (:mod:`diagnostics.net.dns`).

Each address is then mapped by :class:`~diagnostics.context.Endpoints` (in the sandbox a
world address goes to the loopback socket that plays it, and nothing else is dialed) and
connected from the source address within the connect timeout. Failures are one error,
:class:`~diagnostics.errors.DialError`, naming the step, host, port and cause.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from diagnostics.context import Endpoints
from diagnostics.errors import DialError, SandboxError, StepTimeout
from diagnostics.net.dns import (
    NEGATIVE,
    ResolverHealth,
    describe_resolver,
    health_gate,
    query_dns,
)

if TYPE_CHECKING:
    import dns.asyncresolver

    from diagnostics.context import Context

__all__ = ["DialError", "Dialer", "connect_socket", "dial", "system_hosts"]

HOSTS_FILE: Final = Path("/etc/hosts")
# What every resolver library answers for localhost without asking (RFC 6761 6.3).
_LOCALHOST: Final = {"localhost": ("127.0.0.1", "::1")}


def system_hosts(path: Path = HOSTS_FILE) -> dict[str, tuple[str, ...]]:
    """The machine's hosts file as name -> addresses (read only), ``localhost`` always in."""
    hosts: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0].split("%", 1)[0]))
        except ValueError:
            continue
        for name in fields[1:]:
            hosts.setdefault(name.lower().rstrip("."), []).append(address)
    found = {name: tuple(dict.fromkeys(addresses)) for name, addresses in hosts.items()}
    return {**_LOCALHOST, **found}


async def connect_socket(
    host: str, port: int, *, timeout: float, source: str | None = None
) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host``:``port`` (an IP address).

    ``source`` binds the local end (the sandbox plays each platform egress IP with its own
    loopback address). StepTimeout or DialError (step ``connect``) on failure.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source is not None:
            sock.bind((source, 0))
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except TimeoutError:
        sock.close()
        raise StepTimeout("connect", timeout) from None
    except OSError as exc:
        sock.close()
        raise DialError("connect", host, port, str(exc.strerror or exc)) from exc
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Dialer:
    """How one run connects: name resolution for connecting, endpoints, source, timeouts.

    ``mode`` ``live`` resolves through the hosts file and then the operating system
    (``getaddrinfo``), or ``resolver`` when the user named a DNS server (``dns_server``);
    ``sandbox`` resolves through ``resolver`` only (the world's DNS) and dials only what
    ``endpoints`` route.
    """

    endpoints: Endpoints = field(default_factory=Endpoints)
    resolver: dns.asyncresolver.Resolver | None = None
    mode: Literal["live", "sandbox"] = "live"
    dns_server: str | None = None
    static_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # None: the machine's hosts file. Tests give a mapping instead of editing /etc/hosts.
    hosts: Mapping[str, tuple[str, ...]] | None = None
    source: str | None = None
    connect_timeout: float = 10.0
    dns_timeout: float = 5.0
    # The run whose resolver health this dialer shares (None for the sandbox's own clients).
    context: Context | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, context: Context) -> Dialer:
        """The dialer of a check context."""
        return cls(
            endpoints=context.endpoints,
            resolver=context.resolver,
            mode=context.mode,
            dns_server=context.dns_server,
            static_hosts=context.static_hosts,
            hosts=context.hosts,
            source=context.source_address,
            connect_timeout=context.timeouts.connect,
            dns_timeout=context.timeouts.dns,
            context=context,
        )

    # -- resolving for connecting -------------------------------------------------------------

    async def addresses(self, host: str, port: int = 0) -> list[str]:
        """The addresses to connect to for ``host`` (an IP literal as it is).

        DialError (step ``resolve``) naming what went wrong; ``local`` when the fault is
        this machine's resolver.
        """
        overridden = self.overridden(host)
        if overridden is not None:
            return overridden
        health = self._known_health()
        if health is not None and not health.works:
            raise self._local_failure(host, port, health)
        if self.mode == "live" and self.dns_server is None:
            return await self._system(host, port)
        return await self._dns(host, port)

    def overridden(self, host: str) -> list[str] | None:
        """The addresses of ``host`` that need no DNS: an IP literal, a ``--resolve``
        override, a hosts-file name (live only: the sandbox's world has no hosts file)."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        if name in self.static_hosts:
            return list(self.static_hosts[name])
        if self.mode == "live":
            hosts = self.hosts if self.hosts is not None else system_hosts()
            if name in hosts:
                return list(hosts[name])
        return None

    def _known_health(self) -> ResolverHealth | None:
        if self.context is None:
            return None
        gate = self.context.memo.get("net.resolver_health")
        return gate.result() if gate is not None and gate.done() else None

    async def _health(self) -> ResolverHealth | None:
        if self.context is None:
            return None
        return await asyncio.shield(health_gate(self.context))

    def _start_health(self) -> None:
        if self.context is not None:
            health_gate(self.context)

    def _local_failure(self, host: str, port: int, health: ResolverHealth) -> DialError:
        return DialError(
            "resolve",
            host,
            port,
            health.problem,
            message=f"{host} could not be resolved: {health.problem}",
            local=True,
        )

    async def _system(self, host: str, port: int) -> list[str]:
        self._start_health()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.dns_timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            problem = f"no answer within {self.dns_timeout:g} s"
        except (socket.gaierror, UnicodeError) as exc:
            problem = str(getattr(exc, "strerror", None) or exc)
        else:
            found = [str(info[4][0]).split("%", 1)[0] for info in infos]
            if found:
                return list(dict.fromkeys(found))
            problem = "it has no address"
        health = await self._health()
        if health is not None and not health.works:
            raise self._local_failure(host, port, health)
        message = f"{host} does not resolve: {problem} (hosts file and DNS)"
        raise DialError("resolve", host, port, problem, message=message)

    async def _dns(self, host: str, port: int) -> list[str]:
        if self.resolver is None:
            raise DialError("resolve", host, port, "no resolver to ask")
        self._start_health()
        lifetime = min(float(self.resolver.lifetime), self.dns_timeout)
        addresses: list[str] = []
        problems: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await query_dns(self.resolver, host, rdtype, lifetime=lifetime)
            if answer.kind in NEGATIVE:
                health = await self._health()
                if health is not None and not health.works:
                    raise self._local_failure(host, port, health)
            if answer.kind == "answer":
                addresses += answer.records
            elif answer.kind == "nxdomain":
                message = f"{host} does not exist in DNS (NXDOMAIN)"
                raise DialError("resolve", host, port, answer.detail, message=message)
            elif answer.kind == "timeout":
                problems.append(f"no {rdtype} answer within {self.dns_timeout:g} s")
            elif answer.kind != "nodata":
                problems.append(f"{rdtype}: {answer.detail}")
        if not addresses:
            reason = "; ".join(problems) or "it has no A or AAAA record"
            raise DialError(
                "resolve", host, port, reason, message=f"{host} does not resolve: {reason}"
            )
        return list(dict.fromkeys(addresses))

    @property
    def resolver_name(self) -> str:
        """Who answers for names that are not overridden: shown in findings."""
        if self.mode == "live" and self.dns_server is None:
            return "the system's resolver (hosts file, then DNS)"
        return describe_resolver(self.resolver) if self.resolver is not None else "none"

    # -- connecting ---------------------------------------------------------------------------

    async def connect(
        self, address: str, port: int, *, source: str | None = None, timeout: float | None = None
    ) -> socket.socket:
        """A socket to the world ``address``:``port``, through the endpoints (SandboxError
        when the sandbox plays nothing there)."""
        host, dial_port = self.endpoints.dial(address, port)
        return await connect_socket(
            host,
            dial_port,
            timeout=self.connect_timeout if timeout is None else timeout,
            source=source if source is not None else self.source,
        )

    async def dial(
        self, host: str, port: int, *, source: str | None = None, timeout: float | None = None
    ) -> socket.socket:
        """Resolve ``host`` and connect to the first of its addresses that answers."""
        last: Exception | None = None
        for address in await self.addresses(host, port):
            try:
                return await self.connect(address, port, source=source, timeout=timeout)
            except (DialError, StepTimeout, SandboxError) as exc:
                last = exc
        assert last is not None
        raise last


async def dial(
    where: Context | Dialer,
    host: str,
    port: int,
    *,
    source: str | None = None,
    timeout: float | None = None,
) -> socket.socket:
    """A connected socket to ``host``:``port`` as ``where`` (a check context or a dialer)
    connects: resolved for connecting, through its endpoints, from ``source`` (else its own),
    within ``timeout`` (else its connect timeout). DialError, StepTimeout or SandboxError."""
    dialer = where if isinstance(where, Dialer) else Dialer.of(where)
    return await dialer.dial(host, port, source=source, timeout=timeout)
