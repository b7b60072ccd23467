"""DNS record lookups: the only code that asks a resolver.

Every lookup (MX, A/AAAA, TXT for SPF and DMARC, PTR, DKIM keys) goes through
:func:`query_dns`, which never raises for what DNS answers (or does not) and returns a
:class:`DNSAnswer` of one kind: ``answer``, ``nxdomain``, ``nodata``, ``servfail``,
``refused``, ``timeout`` or ``unreachable`` (no route to the resolver).

Before a finding may say that a customer's name does not exist, the run establishes once
that its resolver works (:func:`resolver_health`): it must answer for a name that exists.
A resolver that says NXDOMAIN for everything, never answers, or cannot be reached is a fault
of the machine running the audit, not of the customer's DNS.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import dns.asyncresolver
import dns.exception
import dns.rdata
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.resolver

from diagnostics.errors import DialError
from diagnostics.unplayed import UNPLAYED_DETAIL, refused


class _Timeouts(Protocol):
    @property
    def dns(self) -> float: ...


class Context(Protocol):
    """What this module reads of a check context (:class:`diagnostics.context.Context`),
    named here so that the context's own imports never lead back to this module."""

    @property
    def config(self) -> Any: ...
    @property
    def resolver(self) -> dns.asyncresolver.Resolver: ...
    @property
    def timeouts(self) -> _Timeouts: ...
    @property
    def mode(self) -> str: ...
    @property
    def memo(self) -> dict[Any, Any]: ...


__all__ = [
    "NEGATIVE",
    "AnswerKind",
    "DNSAnswer",
    "DNSQueries",
    "ResolverHealth",
    "describe_resolver",
    "exchanges_of",
    "mx_exchanges",
    "query_addresses",
    "query_dns",
    "resolver_health",
    "started_health",
]

log = logging.getLogger("diagnostics.net")

AnswerKind = Literal[
    "answer", "nxdomain", "nodata", "servfail", "refused", "timeout", "unreachable"
]

# Outcomes after which a finding would blame the name: the resolver must be proven first.
NEGATIVE: Final = frozenset({"nxdomain", "servfail", "refused", "timeout", "unreachable"})

# Errors of the socket to the resolver that mean this machine cannot reach it at all.
_UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ECONNREFUSED}
)

# After this long (or half the query's lifetime) without the health answer, a line says what
# the run is waiting for.
WAIT_NOTICE_S: Final = 1.0


@dataclass(frozen=True)
class DNSAnswer:
    """The outcome of one DNS query, whatever happened.

    ``records`` are in presentation form (TXT strings joined, MX as ``"10 mx.example."``);
    ``detail`` says in plain words what happened; ``resolver`` names the server that answered
    (or, without an answer, the ones that were asked).
    """

    name: str
    rdtype: str
    kind: AnswerKind
    records: tuple[str, ...] = ()
    detail: str = ""
    # The sandbox's DNS refused the name: the world does not play it (no name server fault).
    unplayed: bool = False
    resolver: str = field(default="", compare=False)
    # When an answer's records expire (time.time() seconds), for callers that cache them.
    expires: float | None = field(default=None, compare=False)

    @property
    def query(self) -> str:
        return f"{self.name} {self.rdtype}"

    @property
    def failed(self) -> bool:
        """The server failed or did not answer: nothing is known about the name."""
        return self.kind in ("servfail", "refused", "timeout", "unreachable")

    def describe(self) -> str:
        return f"{self.query}: {self.detail}"

    def evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "query": self.query,
            "kind": self.kind,
            "answers": list(self.records),
            "detail": self.detail,
        }
        if self.unplayed:
            evidence["unplayed"] = True
        return evidence


def describe_resolver(resolver: dns.asyncresolver.Resolver) -> str:
    """The name servers ``resolver`` asks, as a user would type them (``127.0.0.1:5353``)."""
    port = int(resolver.port)
    servers = [str(getattr(ns, "address", ns)) for ns in resolver.nameservers]
    if not servers:
        return "no name server (the resolver configuration lists none)"
    shown = (
        [f"[{s}]:{port}" if ":" in s else f"{s}:{port}" for s in servers] if port != 53 else servers
    )
    return ", ".join(shown)


def _record_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        return f"{rdata.preference} {rdata.exchange.to_text()}"
    return rdata.to_text()


def _server_failure(exc: dns.resolver.NoNameservers) -> tuple[AnswerKind, str]:
    errors = exc.kwargs.get("errors") or []
    causes = [error[3] for error in errors]
    answers = [str(cause) for cause in causes]
    if not answers:
        return "unreachable", "no DNS server to ask (the resolver has no name servers configured)"
    if "SERVFAIL" in answers:
        return "servfail", "the DNS server failed (SERVFAIL)"
    if "REFUSED" in answers:
        return "refused", "the DNS server refused the query (REFUSED)"
    unreachable = [c for c in causes if isinstance(c, OSError) and c.errno in _UNREACHABLE_ERRNOS]
    if unreachable and len(unreachable) == len(causes):
        reason = unreachable[0].strerror or str(unreachable[0])
        return "unreachable", f"the DNS server cannot be reached from this machine ({reason})"
    return "servfail", f"no DNS server gave a usable answer ({'; '.join(answers)})"


# Per resolver that caches, the questions on their way: asked at once by several checks, a
# question goes out once and all of them hear its answer (as the cache would, a moment later).
_IN_FLIGHT: weakref.WeakKeyDictionary[
    dns.asyncresolver.Resolver, dict[tuple[str, str, float, bool], asyncio.Future[DNSAnswer]]
] = weakref.WeakKeyDictionary()


async def query_dns(
    resolver: dns.asyncresolver.Resolver,
    name: str,
    rdtype: str,
    *,
    lifetime: float,
    sandbox: bool = False,
) -> DNSAnswer:
    """Ask ``resolver`` for ``name`` ``rdtype`` within ``lifetime`` seconds; never raises for
    what DNS answers (or does not). In the ``sandbox`` a REFUSED answer marks the name as one
    the world does not play. A resolver with a cache asks a question that is already on its
    way only once."""
    if resolver.cache is None:
        return await _query_dns(resolver, name, rdtype, lifetime=lifetime, sandbox=sandbox)
    pending = _IN_FLIGHT.setdefault(resolver, {})
    key = (name.rstrip(".").lower(), rdtype, lifetime, sandbox)
    future = pending.get(key)
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        future = asyncio.ensure_future(
            _query_dns(resolver, name, rdtype, lifetime=lifetime, sandbox=sandbox)
        )
        pending[key] = future
        future.add_done_callback(
            lambda done: pending.pop(key, None) if pending.get(key) is done else None
        )
    # Shielded: one asker giving up does not take the answer from the others.
    return await asyncio.shield(future)


async def _query_dns(
    resolver: dns.asyncresolver.Resolver,
    name: str,
    rdtype: str,
    *,
    lifetime: float,
    sandbox: bool,
) -> DNSAnswer:
    shown = name.rstrip(".").lower() or "."
    asked = describe_resolver(resolver)
    try:
        # dnspython checks its lifetime between attempts and may sleep past it; this bounds
        # the whole query to the step's time.
        async with asyncio.timeout(lifetime):
            answer = await resolver.resolve(
                shown.rstrip(".") + ".", rdtype, lifetime=lifetime, search=False
            )
    except TimeoutError:
        detail = f"no answer within {lifetime:g} s (the query timed out)"
        return DNSAnswer(shown, rdtype, "timeout", detail=detail, resolver=asked)
    except dns.resolver.NXDOMAIN:
        detail = "the name does not exist (NXDOMAIN)"
        return DNSAnswer(shown, rdtype, "nxdomain", detail=detail, resolver=asked)
    except dns.resolver.NoAnswer:
        detail = f"the name exists but has no {rdtype} record"
        return DNSAnswer(shown, rdtype, "nodata", detail=detail, resolver=asked)
    except dns.resolver.NoNameservers as exc:
        kind, detail = _server_failure(exc)
        if sandbox and refused(detail):
            # Kept a server failure: the finding says the world does not play the name.
            return DNSAnswer(
                shown, rdtype, "servfail", detail=UNPLAYED_DETAIL, unplayed=True, resolver=asked
            )
        return DNSAnswer(shown, rdtype, kind, detail=detail, resolver=asked)
    except dns.exception.Timeout:
        detail = f"no answer within {lifetime:g} s (the query timed out)"
        return DNSAnswer(shown, rdtype, "timeout", detail=detail, resolver=asked)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        detail = f"the DNS server cannot be reached from this machine ({reason})"
        return DNSAnswer(shown, rdtype, "unreachable", detail=detail, resolver=asked)
    except dns.exception.DNSException as exc:
        return DNSAnswer(
            shown, rdtype, "servfail", detail=f"the query failed: {exc}", resolver=asked
        )
    records = tuple(_record_text(rdata) for rdata in answer)
    server = answer.nameserver
    if server:
        asked = f"{server}:{answer.port}" if answer.port not in (None, 53) else str(server)
    detail = f"{len(records)} {rdtype} record(s)"
    return DNSAnswer(
        shown, rdtype, "answer", records, detail, resolver=asked, expires=answer.expiration
    )


# -- resolver health --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolverHealth:
    """Whether the run's resolver works, from its answer for a name that must exist."""

    resolver: str
    probe: DNSAnswer

    @property
    def works(self) -> bool:
        # REFUSED comes from a server that is there: a name it will not answer is reported
        # by the query that meets it (and in the sandbox it only means "not played").
        if self.probe.unplayed:
            return True
        return self.probe.kind not in ("nxdomain", "servfail", "timeout", "unreachable")

    @property
    def problem(self) -> str:
        """What is wrong with the resolver, in plain words ("" when it works)."""
        if self.works:
            return ""
        name = self.probe.name
        if self.probe.kind == "nxdomain":
            return (
                f"The DNS resolver {self.resolver} says that {name}, which exists, does not "
                "exist (NXDOMAIN): it answers NXDOMAIN for names that exist"
            )
        if self.probe.kind == "timeout":
            return f"The DNS resolver {self.resolver} did not answer a query for {name} in time"
        if self.probe.kind == "unreachable":
            return f"The DNS resolver {self.resolver} cannot be reached ({self.probe.detail})"
        return (
            f"The DNS resolver {self.resolver} fails for {name}, which exists ({self.probe.detail})"
        )

    def unasked(self, name: str, rdtype: str) -> DNSAnswer:
        """The answer given, without asking, for a query once the resolver is known broken."""
        shown = name.rstrip(".").lower() or "."
        detail = f"not asked: {self.problem[:1].lower()}{self.problem[1:]}"
        return DNSAnswer(shown, rdtype, self.probe.kind, detail=detail, resolver=self.resolver)

    def evidence(self) -> dict[str, Any]:
        return {"resolver": self.resolver, "works": self.works, "probe": self.probe.evidence()}


_HEALTH_KEY: Final = "net.resolver_health"


def _probe_name(context: Context) -> tuple[str, str]:
    profile = getattr(context.config, "profile", None)
    domain = getattr(profile, "inbound_domain", None)
    # The platform's own inbound domain must exist (it receives every redirected message);
    # without a profile, the root zone's name servers always do.
    return (str(domain), "MX") if domain else (".", "NS")


async def _probe(context: Context) -> ResolverHealth:
    resolver = context.resolver
    lifetime = min(float(resolver.lifetime), context.timeouts.dns)
    name, rdtype = _probe_name(context)
    shown = describe_resolver(resolver)

    async def notice() -> None:
        await asyncio.sleep(min(WAIT_NOTICE_S, lifetime / 2))
        log.warning(
            "maildiag: waiting up to %g s for the DNS resolver %s to answer for %s",
            lifetime,
            shown,
            name,
        )

    waiting = asyncio.ensure_future(notice())
    try:
        probe = await query_dns(
            resolver, name, rdtype, lifetime=lifetime, sandbox=context.mode == "sandbox"
        )
    finally:
        waiting.cancel()
    return ResolverHealth(shown, probe)


def health_gate(context: Context) -> asyncio.Task[ResolverHealth]:
    task = context.memo.get(_HEALTH_KEY)
    if task is None:
        task = asyncio.ensure_future(_probe(context))
        context.memo[_HEALTH_KEY] = task
    return task


async def resolver_health(context: Context) -> ResolverHealth:
    """Whether ``context``'s resolver works: asked once per run, shared by every check.

    The first caller starts the probe; every other one waits for the same answer, so a
    resolver that never answers costs one query timeout for the whole run.
    """
    return await asyncio.shield(health_gate(context))


async def started_health(context: Context) -> ResolverHealth | None:
    """The resolver's health when some lookup of this run has needed it, else None."""
    if _HEALTH_KEY not in context.memo:
        return None
    return await resolver_health(context)


class DNSQueries:
    """The DNS as one finding sees it: answers cached per name and type, every answer kept
    for the finding's evidence.

    Made with :meth:`of` a context, the first query starts the run's resolver health probe
    beside it; once the resolver is known broken, queries return its failure unasked.
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        *,
        lifetime: float,
        sandbox: bool = False,
        context: Context | None = None,
    ) -> None:
        self._resolver = resolver
        self.lifetime = lifetime
        self.sandbox = sandbox
        self._context = context
        self._answers: dict[tuple[str, str], DNSAnswer] = {}

    @classmethod
    def of(cls, context: Context) -> DNSQueries:
        """Queries with the context's resolver, bounded by the shorter of its lifetime and
        ``timeouts.dns``."""
        lifetime = min(float(context.resolver.lifetime), context.timeouts.dns)
        return cls(
            context.resolver,
            lifetime=lifetime,
            sandbox=context.mode == "sandbox",
            context=context,
        )

    @property
    def resolver(self) -> str:
        return describe_resolver(self._resolver)

    async def __call__(self, name: str, rdtype: str) -> DNSAnswer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        if key not in self._answers:
            self._answers[key] = await self._ask(*key)
        return self._answers[key]

    async def _ask(self, name: str, rdtype: str) -> DNSAnswer:
        if self._context is None:
            return await query_dns(
                self._resolver, name, rdtype, lifetime=self.lifetime, sandbox=self.sandbox
            )
        gate = health_gate(self._context)
        if gate.done() and not gate.result().works:
            return gate.result().unasked(name, rdtype)
        answer = await query_dns(
            self._resolver, name, rdtype, lifetime=self.lifetime, sandbox=self.sandbox
        )
        if answer.kind in NEGATIVE:
            # Wait for the verdict on the resolver, so that later queries need not time out.
            await asyncio.shield(gate)
        return answer

    @property
    def log(self) -> tuple[DNSAnswer, ...]:
        return tuple(self._answers.values())

    def evidence(self) -> list[dict[str, Any]]:
        return [answer.evidence() for answer in self.log]


async def query_addresses(queries: DNSQueries, host: str) -> tuple[DNSAnswer, DNSAnswer]:
    """The A and AAAA answers for ``host``."""
    a, aaaa = await asyncio.gather(queries(host, "A"), queries(host, "AAAA"))
    return a, aaaa


async def addresses_of(
    resolver: dns.asyncresolver.Resolver,
    host: str,
    *,
    lifetime: float,
    rdtypes: Iterable[str] = ("A", "AAAA"),
) -> tuple[list[str], list[DNSAnswer]]:
    """The addresses DNS gives for ``host`` (in ``rdtypes`` order) and the answers behind them."""
    answers = [await query_dns(resolver, host, rdtype, lifetime=lifetime) for rdtype in rdtypes]
    found = [r for a in answers if a.kind == "answer" for r in a.records]
    return list(dict.fromkeys(found)), answers


def mx_exchanges(answer: DNSAnswer) -> list[str]:
    """The exchange hosts of an MX answer, most preferred first (none for a null MX)."""
    pairs = []
    for record in answer.records if answer.kind == "answer" else ():
        preference, _, exchange = record.partition(" ")
        host = exchange.strip().rstrip(".").lower()
        if host:
            pairs.append((int(preference), host))
    return [host for _, host in sorted(pairs)]


async def exchanges_of(
    resolver: dns.asyncresolver.Resolver, domain: str, *, lifetime: float
) -> list[str]:
    """The MX hosts mail for ``domain`` goes to, most preferred first, as a sending MTA
    finds them; DialError (step ``dns``) naming what DNS said when there is none."""
    answer = await query_dns(resolver, domain, "MX", lifetime=lifetime)
    exchanges = mx_exchanges(answer)
    if not exchanges:
        raise DialError(
            "dns", domain, 25, answer.detail, message=f"MX of {domain}: {answer.detail}"
        )
    return exchanges
