"""The context every check receives: configuration, resolver, trust, endpoints, timeouts.

Live and sandbox runs differ only in this object. In live mode the resolver is the system's,
trust is the system store (plus ``--ca-file``) and endpoints are the addresses DNS gives. In
sandbox mode the resolver points at the sandbox's DNS server, trust is the sandbox CA, and
:class:`Endpoints` maps each world address and port to the loopback socket that plays it.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from diagnostics.errors import SandboxError

if TYPE_CHECKING:
    import dns.asyncresolver

    from diagnostics.model.account import AccountConfig
    from diagnostics.roundtrip import Mailboxes, RoundTripOptions

Mode = Literal["live", "sandbox"]


class GreetingProber(Protocol):
    """Where a run's greeting probes go: the ``ProbeResult`` of a ``GreetingProbe``
    (:mod:`diagnostics.smtpgreeting`) made elsewhere, or None to make it here. Typed loosely
    here, as smtpgreeting depends on this module."""

    async def __call__(self, probe: Any) -> Any: ...


#: The greeting prober of the contexts made while it is set: how a batch on a cluster sends
#: the greeting probes of an egress IP to the worker that owns it, around audits it does not
#: build the context of.
GREETING_PROBER: ContextVar[GreetingProber | None] = ContextVar("greeting_prober", default=None)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed per network step, and for a whole check."""

    dns: float = 5.0
    connect: float = 10.0
    # Postfix's postscreen and Exchange's tarpitting delay the greeting by design.
    banner: float = 30.0
    command: float = 30.0
    data: float = 60.0
    check: float = 120.0
    # One SMTP session's total, however many steps it takes (None: four fifths of ``check``,
    # so that the checks sharing the session hear its verdict before their own time is up).
    session: float | None = None
    # Without a greeting after this long, a second connection tries a TLS handshake: a port
    # that speaks implicit TLS stays silent for a client that waits to be greeted.
    tls_probe_after: float = 3.0
    # How long a round trip waits for its message, and above which latency it warns.
    roundtrip: float = 120.0
    roundtrip_warn: float = 60.0

    @classmethod
    def per_step(cls, step: float) -> Timeouts:
        """``--timeout SECONDS``: every network step gets ``step``, a whole check twelve."""
        return cls(dns=step, connect=step, banner=step, command=step, data=step, check=step * 12)

    @property
    def session_budget(self) -> float:
        """Seconds one SMTP session may take in all."""
        return self.session if self.session is not None else self.check * 0.8


@dataclass(frozen=True)
class Endpoints:
    """Where to connect for a world address and port.

    ``routes`` maps ``(address, port)`` to the ``(host, port)`` to dial. With ``strict`` (the
    sandbox) an address without a route is refused, so that no test ever leaves loopback.
    """

    routes: Mapping[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    strict: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))

    def dial(self, address: str, port: int) -> tuple[str, int]:
        """The socket address to connect to for ``address``:``port``."""
        key = (str(ipaddress.ip_address(address)), port)
        if key in self.routes:
            return self.routes[key]
        if self.strict:
            raise SandboxError(
                f"no sandbox server plays {address} port {port}; the sandbox never dials out"
            )
        return key


@dataclass(frozen=True)
class Context:
    """Everything a check may use; checks never reach for module globals."""

    config: AccountConfig
    resolver: dns.asyncresolver.Resolver
    trust: ssl.SSLContext
    mode: Mode = "live"
    endpoints: Endpoints = field(default_factory=Endpoints)
    # Platform egress IP -> local source address that stands for it (sandbox only).
    egress_sources: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    config_path: Path | None = None
    scenario: str | None = None
    # The user allows one real test message per SMTP setting (from the custom address to itself).
    send_test: bool = False
    # Live mode: the local address to connect from (a multi-homed host); None lets the OS pick.
    source_address: str | None = None
    # Host name -> addresses that take the place of DNS (``--resolve``).
    static_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Live mode: the DNS server the user named (``--dns-server``); None is the system's.
    dns_server: str | None = None
    # Host name -> addresses read instead of the machine's hosts file (tests); None reads it.
    hosts: Mapping[str, tuple[str, ...]] | None = None
    # Where a round trip's message is looked for (the sandbox's mailboxes); None in live mode.
    mailboxes: Mailboxes | None = None
    # Live mode: the round trip the user asked for (``--roundtrip``), watched in the company's
    # own mailbox over IMAP; None leaves the redirect checks to say what to do by hand.
    roundtrip: RoundTripOptions | None = None
    # Where allowlist.reachability's greeting probes run (None: here); by default the one
    # GREETING_PROBER holds when the context is made.
    greeting_prober: GreetingProber | None = field(
        default_factory=GREETING_PROBER.get, compare=False, repr=False
    )
    # Results shared by the checks of one run (one SMTP session per setting, so one AUTH).
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


def live_resolver(timeout: float) -> dns.asyncresolver.Resolver:
    """The system's resolver with a bounded lifetime per query.

    Without a resolver configuration (no /etc/resolv.conf, as in some containers) the
    resolver has no name servers: each DNS check then reports that, instead of the audit
    failing before any check could run.
    """
    # dnspython is imported here, so that system_trust() and the types come without it.
    import dns.asyncresolver
    import dns.resolver

    try:
        resolver = dns.asyncresolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.lifetime = timeout
    return resolver


def named_resolver(nameserver: tuple[str, int], timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver that asks only ``nameserver`` (address, port): ``--dns-server``."""
    import dns.asyncresolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [nameserver[0]]
    resolver.port = nameserver[1]
    resolver.lifetime = timeout
    return resolver


def system_trust(ca_file: Path | None = None) -> ssl.SSLContext:
    """The system trust store (honouring ``SSL_CERT_FILE``), plus ``ca_file`` when given.
    ValueError names a ``ca_file`` that cannot be read or holds no certificate."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except OSError as exc:
            raise ValueError(f"--ca-file {ca_file}: {exc.strerror or exc}") from None
        except ssl.SSLError:
            raise ValueError(
                f"--ca-file {ca_file}: expected PEM certificates (-----BEGIN CERTIFICATE-----)"
            ) from None
    return context
