"""SPF (RFC 7208): parse a record and evaluate ``check_host()`` with exact lookup counting.

Pure tier: :func:`is_spf_record` and :func:`parse_record`. Evaluation: :func:`check_host`, whose
DNS comes in as an async ``lookup(name, rdtype)`` function (``TXT``, ``A``, ``AAAA``, ``MX``,
``PTR``) returning an :class:`Answer`, so that the same code runs over any resolver. Macros
are expanded by :mod:`diagnostics.parse.spfmacro`.

What a caller must know:

- Limits follow RFC 7208 section 4.6.4: at most 10 terms that cause DNS queries (``include``,
  ``a``, ``mx``, ``ptr``, ``exists``, ``redirect``) over the whole evaluation, nested records
  included; at most 2 void lookups (NXDOMAIN or an empty answer); at most 10 MX names per
  ``mx`` (more is permerror); only the first 10 PTR names per ``ptr`` (the rest are ignored).
- Macros (RFC 7208 section 7) are expanded when the SMTP identity is given: ``sender`` (MAIL
  FROM) and/or ``helo`` (a HELO check passes ``domain=helo``; the sender is then
  ``postmaster@<domain>``). Without it (a record judged from the outside, as ``dns.spf``
  does) a term whose target holds one counts its lookup, does not match and is listed in
  ``unevaluated``.
- With the identity a ``fail`` carries the ``exp=`` explanation of the record that decided
  (never an included one's), with ``%{r}`` = ``receiver`` and ``%{t}`` = ``timestamp`` (the
  caller's clock). Any problem with it leaves it empty (section 6.2); it counts no lookup.
- With ``measure=True`` the evaluation goes on past the 10-term limit (up to
  :data:`MEASURE_CAP` terms) so that ``lookups`` tells how far over the limit a record is;
  the result is permerror all the same.

The module is longer than 600 lines because check_host() is one algorithm over one state
(limits, voids, macros, explanations) and the record grammar it evaluates; the macro
expander and the domain-spec grammar are already apart in :mod:`~diagnostics.parse.spfmacro`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol

from diagnostics.errors import DiagnosticsError
from diagnostics.parse import spfmacro
from diagnostics.parse.spfmacro import MacroError, MacroValues

__all__ = [
    "MAX_DNS_TERMS",
    "MAX_MX_NAMES",
    "MAX_PTR_NAMES",
    "MAX_VOID_LOOKUPS",
    "MEASURE_CAP",
    "Answer",
    "IncludeCost",
    "Lookup",
    "Mechanism",
    "Result",
    "SpfEvaluation",
    "SpfRecord",
    "SpfSyntaxError",
    "check_host",
    "is_spf_record",
    "parse_record",
]

Result = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_DNS_TERMS: Final = 10
MAX_VOID_LOOKUPS: Final = 2
MAX_MX_NAMES: Final = 10
MAX_PTR_NAMES: Final = 10
MEASURE_CAP: Final = 50

QUALIFIER_RESULTS: Final[dict[str, Result]] = {
    "+": "pass",
    "-": "fail",
    "~": "softfail",
    "?": "neutral",
}
DNS_MECHANISMS: Final = frozenset({"include", "a", "mx", "ptr", "exists"})
_MECHANISMS: Final = frozenset({"all", "ip4", "ip6"}) | DNS_MECHANISMS
_VOID: Final = ("nxdomain", "nodata")
# Nothing is known about the name: its server failed, refused or was not reached in time.
_FAILED: Final = ("servfail", "refused", "timeout", "unreachable")


class Answer(Protocol):
    """What a lookup returns: a ``kind`` (answer, nxdomain, nodata, servfail, timeout), the
    records in presentation form (TXT strings joined, MX as ``"10 mx.example."``) and a
    ``detail`` in plain words."""

    @property
    def kind(self) -> str: ...

    @property
    def records(self) -> tuple[str, ...]: ...

    @property
    def detail(self) -> str: ...


Lookup = Callable[[str, str], Awaitable[Answer]]


class SpfSyntaxError(DiagnosticsError, ValueError):
    """A record that is not valid SPF; evaluation turns it into permerror."""

    def __init__(self, term: str, reason: str) -> None:
        self.term = term
        self.reason = reason
        super().__init__(f"'{term}': {reason}" if term else reason)


_NAME = r"[A-Za-z][A-Za-z0-9_.\-]*"
_MODIFIER = re.compile(rf"({_NAME})=(.*)", re.DOTALL)
_DIRECTIVE = re.compile(rf"([+\-~?]?)({_NAME})(.*)", re.DOTALL)
_DOMAIN_CIDR = re.compile(r"(?::(?P<domain>.*?))?(?:/(?P<cidr4>[0-9]+))?(?://(?P<cidr6>[0-9]+))?")
_NETWORK = re.compile(r":(?P<address>[^/]+)(?:/(?P<cidr>[0-9]+))?")


@dataclass(frozen=True)
class Mechanism:
    """One directive: qualifier, mechanism name and its argument."""

    qualifier: str
    name: str
    text: str
    target: str | None = None
    network: IPNetwork | None = None
    cidr4: int = 32
    cidr6: int = 128

    @property
    def result(self) -> Result:
        return QUALIFIER_RESULTS[self.qualifier]

    @property
    def has_macro(self) -> bool:
        return self.target is not None and "%" in self.target


@dataclass(frozen=True)
class SpfRecord:
    """A parsed SPF record: its mechanisms in order and its modifiers."""

    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None
    exp: str | None = None
    unknown_modifiers: tuple[str, ...] = ()

    @property
    def has_all(self) -> bool:
        return any(m.name == "all" for m in self.mechanisms)

    @property
    def lookup_terms(self) -> tuple[str, ...]:
        """The terms of this record alone that cost a DNS lookup, as written."""
        terms = tuple(m.text for m in self.mechanisms if m.name in DNS_MECHANISMS)
        if self.redirect is not None and not self.has_all:
            terms += (f"redirect={self.redirect}",)
        return terms


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF record: exactly ``v=spf1``, alone or followed by a space
    (RFC 7208 section 4.5; the version is case-insensitive)."""
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def _cidr(value: str | None, maximum: int, term: str) -> int | None:
    if value is None:
        return None
    if (value.startswith("0") and value != "0") or int(value) > maximum:
        raise SpfSyntaxError(term, f"CIDR length /{value} is not 0 to {maximum}")
    return int(value)


def _domain_spec(value: str, term: str) -> str:
    try:
        return spfmacro.domain_spec(value)
    except MacroError as exc:
        raise SpfSyntaxError(term, str(exc)) from None


def _parse_mechanism(term: str) -> Mechanism:
    match = _DIRECTIVE.fullmatch(term)
    if match is None:
        raise SpfSyntaxError(term, "neither a mechanism nor a modifier")
    qualifier, name, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
    if name not in _MECHANISMS:
        raise SpfSyntaxError(term, f"unknown mechanism '{name}'")
    if name == "all":
        if rest:
            raise SpfSyntaxError(term, "'all' takes no argument")
        return Mechanism(qualifier, name, term)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise SpfSyntaxError(term, f"'{name}' needs ':domain'")
        return Mechanism(qualifier, name, term, target=_domain_spec(rest[1:], term))
    if name == "ptr":
        if rest and not rest.startswith(":"):
            raise SpfSyntaxError(term, "'ptr' takes only ':domain'")
        target = _domain_spec(rest[1:], term) if rest else None
        return Mechanism(qualifier, name, term, target=target)
    if name in ("a", "mx"):
        parts = _DOMAIN_CIDR.fullmatch(rest)
        if parts is None:
            raise SpfSyntaxError(term, f"'{name}' takes ':domain', '/ip4-cidr' and '//ip6-cidr'")
        domain = parts.group("domain")
        cidr4 = _cidr(parts.group("cidr4"), 32, term)
        cidr6 = _cidr(parts.group("cidr6"), 128, term)
        return Mechanism(
            qualifier,
            name,
            term,
            target=None if domain is None else _domain_spec(domain, term),
            cidr4=32 if cidr4 is None else cidr4,
            cidr6=128 if cidr6 is None else cidr6,
        )
    network = _NETWORK.fullmatch(rest)
    if network is None:
        raise SpfSyntaxError(term, f"'{name}' needs ':address' with an optional '/cidr'")
    version, maximum = (4, 32) if name == "ip4" else (6, 128)
    try:
        address = ipaddress.ip_address(network.group("address"))
    except ValueError:
        raise SpfSyntaxError(term, f"'{network.group('address')}' is not an address") from None
    if address.version != version:
        raise SpfSyntaxError(term, f"'{address}' is not an IPv{version} address")
    length = _cidr(network.group("cidr"), maximum, term)
    prefix = maximum if length is None else length
    return Mechanism(
        qualifier,
        name,
        term,
        network=ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    )


def parse_record(text: str) -> SpfRecord:
    """Parse an SPF record; SpfSyntaxError names the first invalid term.

    Every term is checked before any is evaluated (RFC 7208 section 4.6: syntax errors
    anywhere in the record are permerror).
    """
    if not is_spf_record(text):
        raise SpfSyntaxError("", "the record does not start with 'v=spf1'")
    if not text.isascii():
        raise SpfSyntaxError("", "the record holds characters that are not 7-bit ASCII")
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, str] = {}
    unknown: list[str] = []
    for term in text[6:].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier is None:
            mechanisms.append(_parse_mechanism(term))
            continue
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp"):
            if name in modifiers:
                raise SpfSyntaxError(term, f"'{name}=' appears more than once")
            modifiers[name] = _domain_spec(value, term)
        elif not spfmacro.is_macro_string(value, explanation=True):
            raise SpfSyntaxError(term, "invalid character or macro in the modifier's value")
        else:
            unknown.append(term)
    return SpfRecord(
        text=text,
        mechanisms=tuple(mechanisms),
        redirect=modifiers.get("redirect"),
        exp=modifiers.get("exp"),
        unknown_modifiers=tuple(unknown),
    )


@dataclass(frozen=True)
class IncludeCost:
    """An ``include:`` or ``redirect=`` and the DNS-lookup terms it costs, itself included."""

    term: str
    domain: str
    depth: int
    lookups: int


@dataclass(frozen=True)
class SpfEvaluation:
    """The outcome of ``check_host(ip, domain)`` and what the evaluation cost."""

    domain: str
    ip: str
    result: Result
    problem: str = ""
    matched: str = ""
    lookups: int = 0
    void_lookups: int = 0
    limit_exceeded: bool = False
    includes: tuple[IncludeCost, ...] = ()
    unevaluated: tuple[str, ...] = ()
    records: tuple[tuple[str, str], ...] = ()
    explanation: str = ""


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class _State:
    lookup: Lookup
    measure: bool
    # What the macros stand for; None when the identity is unknown and they are not expanded.
    macros: MacroValues | None = None
    lookups: int = 0
    voids: list[str] = field(default_factory=list)
    exceeded: str = ""
    includes: list[IncludeCost] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)
    records: list[tuple[str, str]] = field(default_factory=list)
    matched: str = ""
    # The exp= of the record whose term decided the result, and that record's domain.
    exp: tuple[str, str] | None = None
    validated: dict[str, str] = field(default_factory=dict)

    async def values(self, domain: str, text: str) -> MacroValues:
        """The macro values for ``text`` in the record of ``domain``."""
        assert self.macros is not None
        values = replace(self.macros, domain=domain)
        if "p" in spfmacro.letters(text):
            if domain not in self.validated:
                self.validated[domain] = await _validated_name(self, values.ip, domain)
            values = replace(values, validated=self.validated[domain])
        return values

    async def expand(self, spec: str, domain: str) -> str:
        # A parsed record's domain-specs are valid macro-strings: this raises no MacroError.
        return spfmacro.expand_domain(spec, await self.values(domain, spec))

    def count(self, term: str, domain: str) -> None:
        self.lookups += 1
        if self.lookups <= MAX_DNS_TERMS:
            return
        if not self.exceeded:
            self.exceeded = (
                f"more than {MAX_DNS_TERMS} DNS lookups: the {self.lookups}th is '{term}' "
                f"in the record of {domain}"
            )
        if not self.measure or self.lookups >= MEASURE_CAP:
            raise _PermError(self.exceeded)

    def void(self, term: str, domain: str) -> None:
        self.voids.append(f"'{term}' in the record of {domain}")
        if len(self.voids) > MAX_VOID_LOOKUPS:
            raise _PermError(
                f"more than {MAX_VOID_LOOKUPS} void lookups (names that do not exist or have "
                f"no record): {', '.join(self.voids)}"
            )

    async def ask(self, name: str, rdtype: str, term: str, domain: str) -> Answer | None:
        """The answer, or None for a name no DNS query can be composed for."""
        if not _queryable(name):
            return None
        answer = await self.lookup(name, rdtype)
        if answer.kind in _FAILED:
            raise _TempError(f"{name} {rdtype} for '{term}' in {domain}: {answer.detail}")
        return answer


def _queryable(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name.rstrip(".")) <= 253 and all(0 < len(label) <= 63 for label in labels)


def _hosts(records: tuple[str, ...]) -> list[str]:
    """MX exchange names, in answer order; a null MX ('.') names no host."""
    hosts = []
    for record in records:
        parts = record.split()
        if len(parts) == 2 and parts[1] != ".":
            hosts.append(parts[1].rstrip("."))
    return hosts


def _in(ip: IPAddress, addresses: tuple[str, ...], cidr4: int, cidr6: int) -> bool:
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version != ip.version:
            continue
        prefix = cidr4 if address.version == 4 else cidr6
        if ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
            return True
    return False


async def _matches(state: _State, ip: IPAddress, domain: str, mech: Mechanism, depth: int) -> bool:
    if mech.name == "all":
        return True
    if mech.name in ("ip4", "ip6"):
        return mech.network is not None and ip in mech.network
    state.count(mech.text, domain)
    target = mech.target or domain
    if mech.has_macro:
        if state.macros is None:
            state.unevaluated.append(f"'{mech.text}' in the record of {domain}")
            return False
        target = await state.expand(target, domain)
    address_type = "A" if ip.version == 4 else "AAAA"
    if mech.name == "include":
        before, matched = state.lookups, state.matched
        result = await _check(state, ip, target, depth + 1)
        state.includes.append(IncludeCost(mech.text, domain, depth, state.lookups - before + 1))
        if result == "none":
            raise _PermError(f"'{mech.text}' in the record of {domain}: {target} has no SPF record")
        if result != "pass":
            state.matched = matched
        return result == "pass"
    if mech.name == "exists":
        answer = await state.ask(target, "A", mech.text, domain)
        if answer is None or answer.kind in _VOID:
            state.void(mech.text, domain)
            return False
        return True
    if mech.name == "a":
        answer = await state.ask(target, address_type, mech.text, domain)
        if answer is None:
            return False
        if answer.kind in _VOID:
            state.void(mech.text, domain)
            return False
        return _in(ip, answer.records, mech.cidr4, mech.cidr6)
    if mech.name == "mx":
        answer = await state.ask(target, "MX", mech.text, domain)
        if answer is None:
            return False
        if answer.kind in _VOID:
            state.void(mech.text, domain)
            return False
        hosts = _hosts(answer.records)
        if len(answer.records) > MAX_MX_NAMES:
            raise _PermError(
                f"'{mech.text}' in the record of {domain}: {target} has "
                f"{len(answer.records)} MX records, more than {MAX_MX_NAMES}"
            )
        for host in hosts:
            addresses = await state.ask(host, address_type, mech.text, domain)
            if addresses is not None and _in(ip, addresses.records, mech.cidr4, mech.cidr6):
                return True
        return False
    return await _ptr_matches(state, ip, domain, mech, target, address_type)


async def _ptr_matches(
    state: _State, ip: IPAddress, domain: str, mech: Mechanism, target: str, address_type: str
) -> bool:
    # RFC 7208 section 5.5: DNS errors here make the mechanism not match, never temperror.
    reverse = await state.lookup(ip.reverse_pointer, "PTR")
    if reverse.kind in _VOID:
        state.void(mech.text, domain)
        return False
    if reverse.kind != "answer":
        return False
    wanted = target.lower().rstrip(".")
    for name in [r.rstrip(".").lower() for r in reverse.records][:MAX_PTR_NAMES]:
        if not _queryable(name):
            continue
        forward = await state.lookup(name, address_type)
        if forward.kind != "answer" or not _in(ip, forward.records, 32, 128):
            continue
        if name == wanted or name.endswith("." + wanted):
            return True
    return False


async def _check(state: _State, ip: IPAddress, domain: str, depth: int) -> Result:
    domain = domain.rstrip(".")
    if not _queryable(domain) or "." not in domain:
        return "none"
    answer = await state.lookup(domain, "TXT")
    if answer.kind in _FAILED:
        raise _TempError(f"{domain} TXT: {answer.detail}")
    texts = [t for t in answer.records if is_spf_record(t)] if answer.kind == "answer" else []
    if not texts:
        return "none"
    if len(texts) > 1:
        raise _PermError(f"{domain} publishes {len(texts)} SPF records; there must be one")
    try:
        record = parse_record(texts[0])
    except SpfSyntaxError as exc:
        raise _PermError(f"the record of {domain} is invalid: {exc}") from None
    state.records.append((domain, record.text))
    for mech in record.mechanisms:
        if await _matches(state, ip, domain, mech, depth):
            # An include's match is described by the term inside the included record.
            if mech.name != "include":
                state.matched = f"'{mech.text}' in the record of {domain}"
            state.exp = None if record.exp is None else (record.exp, domain)
            return mech.result
    # RFC 7208 section 6.1: redirect is ignored when the record has an "all" anywhere.
    if record.redirect is None or record.has_all:
        return "neutral"
    term = f"redirect={record.redirect}"
    state.count(term, domain)
    target = record.redirect
    if "%" in target:
        if state.macros is None:
            state.unevaluated.append(f"'{term}' in the record of {domain}")
            return "neutral"
        target = await state.expand(target, domain)
    before = state.lookups
    result = await _check(state, ip, target, depth + 1)
    state.includes.append(IncludeCost(term, domain, depth, state.lookups - before + 1))
    if result == "none":
        raise _PermError(f"'{term}' in the record of {domain}: {target} has no SPF record")
    return result


async def _validated_name(state: _State, ip: IPAddress, domain: str) -> str:
    """``%{p}``: a name of ``ip`` whose addresses include it, ``domain`` or a name under it
    first (RFC 7208 section 7.3); "unknown" without one, DNS errors included."""
    reverse = await state.lookup(ip.reverse_pointer, "PTR")
    if reverse.kind != "answer":
        return "unknown"
    names = [r.rstrip(".") for r in reverse.records][:MAX_PTR_NAMES]
    for name in sorted(names, key=lambda n: spfmacro.closeness(n, domain)):
        if not _queryable(name):
            continue
        forward = await state.lookup(name, "A" if ip.version == 4 else "AAAA")
        if forward.kind == "answer" and _in(ip, forward.records, 32, 128):
            return name
    return "unknown"


async def _explanation(state: _State) -> str:
    """The expanded exp= text of a fail (RFC 7208 section 6.2); "" for any problem with it."""
    if state.macros is None or state.exp is None:
        return ""
    spec, domain = state.exp
    name = await state.expand(spec, domain)
    answer = await state.lookup(name, "TXT") if _queryable(name) else None
    if answer is None or answer.kind != "answer" or len(answer.records) != 1:
        return ""
    text = answer.records[0]
    try:
        return spfmacro.expand(text, await state.values(domain, text), explanation=True)
    except MacroError:  # bad syntax, a character that is not ASCII, %{t} with no timestamp
        return ""


async def check_host(
    ip: IPAddress | str,
    domain: str,
    *,
    lookup: Lookup,
    measure: bool = False,
    sender: str | None = None,
    helo: str | None = None,
    receiver: str = "unknown",
    timestamp: int | None = None,
) -> SpfEvaluation:
    """Evaluate the SPF record of ``domain`` for a sender at ``ip`` (RFC 7208 section 4).

    ``sender`` (MAIL FROM) and ``helo`` are the SMTP identity: given either, macros are
    expanded and a fail gets its explanation; ``receiver`` and ``timestamp`` (seconds since
    the epoch) are what ``%{r}`` and ``%{t}`` stand for in explanations.

    Never raises for what DNS or the record hold: those become permerror, temperror or none
    with ``problem`` saying why in plain words.
    """
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    state = _State(lookup=lookup, measure=measure)
    if sender is not None or helo is not None:
        state.macros = MacroValues(
            ip=address,
            sender=sender or f"postmaster@{domain.rstrip('.')}",
            domain=domain.rstrip("."),
            helo=helo or "unknown",
            receiver=receiver,
            timestamp=timestamp,
        )
    problem = ""
    try:
        result = await _check(state, address, domain, 0)
    except _PermError as exc:
        result, problem = "permerror", str(exc)
    except _TempError as exc:
        result, problem = "temperror", str(exc)
    # Past the limit a receiver stops with permerror before anything later could go wrong.
    if state.exceeded:
        result, problem = "permerror", state.exceeded
    if result == "none" and not problem:
        problem = f"{domain.rstrip('.')} has no SPF record"
    explanation = await _explanation(state) if result == "fail" else ""
    return SpfEvaluation(
        domain=domain.rstrip("."),
        ip=str(address),
        result=result,
        problem=problem,
        matched=state.matched if result not in ("permerror", "temperror") else "",
        lookups=state.lookups,
        void_lookups=len(state.voids),
        limit_exceeded=bool(state.exceeded),
        includes=tuple(state.includes),
        unevaluated=tuple(state.unevaluated),
        records=tuple(state.records),
        explanation=explanation,
    )
