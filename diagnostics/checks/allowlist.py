"""Checks of the platform's egress IPs against the company's SMTP server:
``allowlist.coverage`` and ``allowlist.reachability``.

I/O tier: :func:`query_addresses` resolves the SMTP host, :func:`probe_greeting` connects from
one egress IP and reads the greeting, :func:`probe_server` does that for every egress IP at
once. Pure tier: :func:`compare_allowlist` and :func:`classify_coverage` (CIDR arithmetic),
:func:`render_snippets` (ready-to-paste lines from ``data/allowlist_snippets.yaml``),
:func:`parse_greeting` and :func:`classify_reachability`. The registered checks give one
finding per company or subcompany and never raise for a failure they expect.

Longer than 600 lines for now: coverage (CIDR arithmetic, snippets) and reachability (probe
and classifier) in one file, to be split in two.
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from diagnostics.config import AccountConfig, Company, SmtpSettings, Subcompany
from diagnostics.context import Context
from diagnostics.datafiles import load_data_file
from diagnostics.errors import DialError, ProbeError, SandboxError, StepTimeout
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net import Dialer, DNSQueries
from diagnostics.profiles import IPNetwork, PlatformProfile
from diagnostics.registry import check
from diagnostics.smtpclient import SMTPConnection, Step, Transcript
from diagnostics.smtpreply import Reply, SMTPProtocolError, parse_reply
from diagnostics.unplayed import refused as dns_refused
from diagnostics.unplayed import unplayed_outcome

# A greeting is one reply; RFC 5321 allows 512 octets a line, real servers stay far below.
MAX_GREETING_LINES = 50
MAX_LINE_BYTES = 2048
# Every address of a round-robin name is probed (one node without the allowlist fails one
# connection in N); of a larger cluster, the first few stand for the rest.
MAX_ADDRESSES = 4

# Where the remediations send the reader for the snippets: the reports' section and the
# finding's evidence, never a file name (the reader may be reading that very file).
READY_TO_PASTE = (
    "Ready-to-paste lines are under 'Settings to copy' in the report and in this finding's "
    "evidence ('snippets')"
)

# An allowlist entry wider than this that reaches beyond internal ranges admits other
# organisations' hosts (a /16 is one organisation's block at most; an IPv6 /32 a provider's).
BROAD_PREFIX = {4: 16, 6: 32}
_INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)


# -- coverage: pure ------------------------------------------------------------------------


def compact(network: IPNetwork) -> str:
    """``network`` as an administrator writes it: a single address bare, else in CIDR."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def _listing(networks: Iterable[IPNetwork]) -> str:
    return ", ".join(compact(n) for n in networks)


def _contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    if isinstance(outer, ipaddress.IPv4Network) and isinstance(inner, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(outer, ipaddress.IPv6Network) and isinstance(inner, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    return _contains(a, b) or _contains(b, a)


def _collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def too_broad(network: IPNetwork) -> bool:
    """Whether ``network`` admits a large share of the internet (0.0.0.0/0, a public /8)."""
    if network.prefixlen >= BROAD_PREFIX[network.version]:
        return False
    return not any(_contains(internal, network) for internal in _INTERNAL)


@dataclass(frozen=True)
class Coverage:
    """An allowlist compared with the platform's egress networks.

    ``covered`` and ``missing`` partition the egress networks; ``extra`` are allowlist entries
    that hold no egress network; ``broader`` are entries that hold one and more besides;
    ``too_broad`` are entries that admit a large share of the internet.
    """

    covered: tuple[IPNetwork, ...]
    missing: tuple[IPNetwork, ...]
    extra: tuple[IPNetwork, ...]
    broader: tuple[IPNetwork, ...]
    too_broad: tuple[IPNetwork, ...]


def compare_allowlist(allowlist: Iterable[IPNetwork], egress_ips: Iterable[IPNetwork]) -> Coverage:
    """Which egress networks ``allowlist`` covers, by CIDR arithmetic (IPv4 and IPv6).

    An egress network is covered when it lies within the union of the allowlist's networks:
    adjacent entries that together span it count, a /16 holding an egress /32 counts.
    """
    allowed = tuple(allowlist)
    egress = tuple(egress_ips)
    # Collapsed blocks are disjoint and maximal, so a CIDR block inside their union lies
    # inside one of them.
    union = _collapse(allowed)
    covered = tuple(e for e in egress if any(_contains(block, e) for block in union))
    return Coverage(
        covered=covered,
        missing=tuple(e for e in egress if e not in covered),
        extra=tuple(n for n in allowed if not any(_overlap(n, e) for e in egress)),
        broader=tuple(
            n for n in allowed if any(_contains(n, e) and n.prefixlen < e.prefixlen for e in egress)
        ),
        too_broad=tuple(n for n in allowed if too_broad(n)),
    )


@dataclass(frozen=True)
class CoverageVerdict:
    """The outcome of a coverage comparison, and the networks the snippets must permit."""

    outcome: Outcome
    coverage: Coverage | None
    snippet_networks: tuple[IPNetwork, ...]


def _size(network: IPNetwork) -> str:
    if network.prefixlen == 0:
        return "every address on the internet"
    if network.version == 4:
        return f"{network.num_addresses:,} addresses"
    return f"2^{128 - network.prefixlen} addresses"


def _them(networks: Sequence[IPNetwork]) -> str:
    return "it" if len(networks) == 1 else "them"


def classify_coverage(
    allowlist: Sequence[IPNetwork] | None,
    egress_ips: Sequence[IPNetwork],
    *,
    platform: str,
    where: str,
    server: str,
) -> CoverageVerdict:
    """Whether ``allowlist`` (None: none documented) covers every egress network.

    ``platform`` is the platform's display name, ``where`` names the allowlist at the start
    of a sentence ("The allowlist documented for Acme GmbH"), ``server`` the host it guards
    (the remediation names no port: one fix on the server admits the egress IPs on each).
    """
    egress = tuple(egress_ips)
    if allowlist is None:
        return CoverageVerdict(
            Outcome(
                Status.SKIP,
                "No allowlist documented",
                "No allowlist documented; if your server restricts clients by IP, it must "
                f"permit: {_listing(egress)} ({platform}'s egress IPs). {READY_TO_PASTE}.",
                remediation=f"If {server} or its firewall restricts clients by IP, document "
                f"what it permits as allowlist: [...] in the account file, so that the audit "
                "can compare it.",
            ),
            None,
            egress,
        )
    coverage = compare_allowlist(allowlist, egress)
    notes = ""
    if coverage.broader:
        notes += (
            f" {_listing(coverage.broader)} admit more addresses than {platform} needs "
            "(each holds an egress IP and more besides)."
        )
    if coverage.extra:
        notes += (
            f" Entries that hold no {platform} egress IP (your other clients; the platform "
            f"does not need them): {_listing(coverage.extra)}."
        )
    wide = ", ".join(f"{compact(n)} ({_size(n)})" for n in coverage.too_broad)
    if coverage.missing:
        detail = (
            f"{where} does not permit {_listing(coverage.missing)}; the "
            f"platform's connections from {_them(coverage.missing)} are refused (its "
            "'Test connection' fails with 'Client host rejected' or a timeout whenever it "
            "connects from there)."
        )
        if coverage.covered:
            detail += f" It permits {_listing(coverage.covered)}."
        if wide:
            detail += f" It also admits {wide}."
        return CoverageVerdict(
            Outcome(
                Status.FAIL,
                f"Allowlist lacks {len(coverage.missing)} of {len(egress)} {platform} egress IPs",
                detail + notes,
                Cause.CLIENT_IP_REJECTED,
                f"Permit {_listing(coverage.missing)} on {server} (the server's allowlist or "
                f"its firewall): {READY_TO_PASTE[0].lower()}{READY_TO_PASTE[1:]}. Then add "
                f"{_them(coverage.missing)} to the allowlist in the account file and run the "
                "audit again.",
            ),
            coverage,
            coverage.missing,
        )
    if coverage.too_broad:
        return CoverageVerdict(
            Outcome(
                Status.WARN,
                f"Allowlist admits far more than the {platform} egress IPs",
                f"{where} permits every {platform} egress IP, but "
                f"{wide}: for clients from there the allowlist protects nothing, and only the "
                "account's password stands between them and sending through your server." + notes,
                remediation=f"Replace {_listing(coverage.too_broad)} with {platform}'s egress "
                f"IPs ({_listing(egress)}) and the networks of your own clients; "
                f"{READY_TO_PASTE[0].lower()}{READY_TO_PASTE[1:]}.",
            ),
            coverage,
            egress,
        )
    return CoverageVerdict(
        Outcome(
            Status.PASS,
            f"Allowlist covers every {platform} egress IP",
            f"{where} permits all {len(egress)} egress IPs of {platform} "
            f"({_listing(egress)})." + notes,
        ),
        coverage,
        (),
    )


def documented_allowlist(
    identity: Company | Subcompany, parent: Company
) -> tuple[tuple[IPNetwork, ...] | None, str | None]:
    """The allowlist documented for ``identity`` and whose it is.

    A subcompany without one of its own inherits the parent's when both send through the
    same SMTP host. (None, None) when none is documented.
    """
    if identity.allowlist is not None:
        return identity.allowlist, identity.name
    if (
        identity is not parent
        and identity.smtp is not None
        and parent.smtp is not None
        and identity.smtp.host == parent.smtp.host
        and parent.allowlist is not None
    ):
        return parent.allowlist, parent.name
    return None, None


# -- snippets: data ------------------------------------------------------------------------


class SnippetTemplate(BaseModel):
    """One server family's ready-to-paste allowlist entry (see the data file's header)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    title: str
    item: str
    item_v6: str | None = None
    separator: str
    header: str | None = None
    text: str
    text_v6: str | None = None


@cache
def load_snippet_templates() -> dict[str, SnippetTemplate]:
    """Every snippet template by server family, in the data file's order."""
    raw = load_data_file("allowlist_snippets.yaml")
    return {family: SnippetTemplate.model_validate(body) for family, body in raw.items()}


def _item(template: SnippetTemplate, network: IPNetwork, port: int) -> str:
    pattern = template.item_v6 if network.version == 6 and template.item_v6 else template.item
    return pattern.format(
        ip=compact(network),
        address=network.network_address,
        prefixlen=network.prefixlen,
        port=port,
    )


def render_snippet(template: SnippetTemplate, networks: Sequence[IPNetwork], *, port: int) -> str:
    """``template`` filled with ``networks`` for SMTP port ``port``."""
    if template.text_v6 is None:
        groups = [(template.text, list(networks))]
    else:
        groups = [
            (template.text, [n for n in networks if n.version == 4]),
            (template.text_v6, [n for n in networks if n.version == 6]),
        ]
    parts = [template.header.format(port=port)] if template.header else []
    for text, members in groups:
        if members:
            items = template.separator.join(_item(template, n, port) for n in members)
            parts.append(text.format(items=items, port=port))
    return "\n".join(parts)


def snippet_rank(server: str, detected: str | None) -> int:
    """Where a snippet for ``server`` (a server family, or ``firewall``) goes when the SMTP
    server greeted as ``detected`` (None: not recognised): 0 that family's own, 1 the
    firewall's, 2 every other family's. Unrecognised, the firewall's come first."""
    if detected is not None and server == detected:
        return 0
    if server == FIREWALL:
        return 0 if detected is None else 1
    return 2 if detected is not None else 1


def render_snippets(
    networks: Sequence[IPNetwork], *, port: int, server_family: str | None = None
) -> dict[str, str]:
    """Every family's snippet for ``networks``, those for ``server_family`` (the family the
    server greeted as) first, then the firewall's; empty when there is nothing to permit."""
    if not networks:
        return {}
    templates = sorted(
        load_snippet_templates().items(),
        key=lambda item: snippet_rank(item[1].server, server_family),
    )
    return {family: render_snippet(template, networks, port=port) for family, template in templates}


# -- server family: data and pure -----------------------------------------------------------

FIREWALL = "firewall"


class ServerFamily(BaseModel):
    """How a mail server family is recognised (see ``data/server_families.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hosts: tuple[str, ...] = ()
    greeting: str


@cache
def load_server_families() -> dict[str, ServerFamily]:
    """Every recognisable server family by key, in the data file's order (first match wins)."""
    raw = load_data_file("server_families.yaml")
    return {key: ServerFamily.model_validate(body) for key, body in raw.items()}


def classify_server_family(greetings: Iterable[str], *, host: str = "") -> str | None:
    """The family (a key of :func:`load_server_families`) that ``host`` and its
    ``greetings`` name; None when they name none (many servers hide their software)."""
    texts = [g for g in greetings if g]
    name = host.lower().rstrip(".")
    for key, family in load_server_families().items():
        if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in family.hosts):
            return key
        if any(re.search(family.greeting, text, re.IGNORECASE) for text in texts):
            return key
    return None


# -- reachability: pure --------------------------------------------------------------------


class Admission(enum.Enum):
    """How the server met a connection from one egress IP."""

    ACCEPTED = "accepted"  # 220 greeting
    REJECTED = "rejected"  # 5xx greeting
    DEFERRED = "deferred"  # 4xx greeting
    CLOSED = "closed"  # closed before a complete greeting
    NO_GREETING = "no_greeting"  # connected, but silent until the banner timeout
    CONNECT_TIMEOUT = "connect_timeout"
    REFUSED = "refused"  # TCP reset: nothing listens, or a firewall rejects
    UNREACHABLE = "unreachable"  # no route, or no server plays the address (sandbox)
    TLS_FAILED = "tls_failed"  # implicit TLS failed before any greeting
    GARBLED = "garbled"  # an answer that is no SMTP reply


@dataclass(frozen=True)
class ProbeResult:
    """One connection from one egress IP to one server address."""

    egress_ip: str
    address: str
    admission: Admission
    reply: str = ""  # the server's greeting, verbatim (possibly partial)
    error: str = ""  # what went wrong, when the greeting tells nothing
    step: str = ""  # the step that failed: connect, tls, banner
    elapsed_ms: float = 0.0
    tls: str | None = None  # the TLS version, for implicit TLS
    # The connection's steps as the SMTP client recorded them (connect, tls, banner).
    steps: tuple[Step, ...] = field(default=(), compare=False)

    def row(self) -> dict[str, Any]:
        """The evidence row of this connection."""
        return {
            "egress_ip": self.egress_ip,
            "address": self.address,
            "outcome": self.admission.value,
            "reply": self.reply,
            "error": self.error,
            "step": self.step,
            "elapsed_ms": self.elapsed_ms,
            "tls": self.tls,
            "steps": [step.as_dict() for step in self.steps],
        }

    def describe(self) -> str:
        """What happened, in a few words."""
        if self.admission is Admission.ACCEPTED:
            return f"greeted with '{self.reply}'"
        if self.admission in (Admission.REJECTED, Admission.DEFERRED):
            return f"{self.admission.value} with '{self.reply}'"
        return self.error


def greeting_problem(error: SMTPProtocolError) -> str:
    """What is wrong with a greeting, in the words of the probe's evidence."""
    if error.kind == "not_smtp" and error.partial:
        return f"not an SMTP reply line: {error.partial[-1][:80]!r}"
    if error.kind == "mixed_codes":
        return f"reply lines with different codes: {', '.join(sorted(error.codes))}"
    if error.kind == "line_too_long":
        return f"a greeting line longer than {MAX_LINE_BYTES} bytes"
    if error.kind == "too_many_lines":
        return f"a greeting longer than {MAX_GREETING_LINES} lines"
    return error.reason


def parse_greeting(lines: Sequence[bytes]) -> Reply:
    """The reply in ``lines`` (each ending in LF), read by the SMTP client's one reader;
    ValueError, in the probe's words, when it is no SMTP reply."""
    try:
        return parse_reply(lines, "banner")
    except SMTPProtocolError as exc:
        raise ValueError(greeting_problem(exc)) from None


def classify_greeting(code: int) -> Admission:
    """What a greeting's reply code says about the connecting client."""
    if code == 220:
        return Admission.ACCEPTED
    if 500 <= code < 600:
        return Admission.REJECTED
    if 400 <= code < 500:
        return Admission.DEFERRED
    return Admission.GARBLED


# How the platform's attempt from a refused egress IP ends, in order of precedence when the
# IPs fail in different ways (a refusal in words says the most).
_CAUSE = {
    Admission.REJECTED: Cause.CLIENT_IP_REJECTED,
    Admission.CLOSED: Cause.CLIENT_IP_REJECTED,
    Admission.NO_GREETING: Cause.CONNECTION_TIMEOUT,
    Admission.CONNECT_TIMEOUT: Cause.CONNECTION_TIMEOUT,
    Admission.REFUSED: Cause.CONNECTION_REFUSED,
    # Packets to an address nobody routes go unanswered: the platform sees a timeout.
    Admission.UNREACHABLE: Cause.CONNECTION_TIMEOUT,
    Admission.DEFERRED: Cause.TEMPORARY_FAILURE,
    Admission.GARBLED: Cause.UNKNOWN,
}
# A server that hangs up on everyone is not picking clients by address.
_UNIFORM_CAUSE = {**_CAUSE, Admission.CLOSED: Cause.CONNECTION_REFUSED}


def _by_ip(results: Sequence[ProbeResult]) -> dict[str, list[ProbeResult]]:
    grouped: dict[str, list[ProbeResult]] = {}
    for result in results:
        grouped.setdefault(result.egress_ip, []).append(result)
    return grouped


def _not_the_allowlist(admission: Admission, server: str, port: int, path: str) -> tuple[str, str]:
    """Why a failure shared by every egress IP points elsewhere, and what to do about it."""
    if admission is Admission.UNREACHABLE:
        return (
            "The platform cannot reach the server at all, whatever the allowlist says.",
            f"Host in {path} must name a server the platform can reach from the internet; "
            f"dns.smtp_host shows the addresses {server} resolves to.",
        )
    if admission is Admission.GARBLED:
        return (
            f"Port {port} answers, but not in SMTP.",
            f"Check Port and Encryption in {path}: port {port} does not speak SMTP.",
        )
    if admission is Admission.DEFERRED:
        return (
            "The server defers every client alike.",
            "Try again later, and ask the server's administrator why it answers every client "
            "with a 4xx greeting.",
        )
    probable = (
        "That points at the server or the settings rather than the allowlist: the host is "
        f"down, nothing serves port {port}, or a firewall closes it for every client."
    )
    if admission in (Admission.NO_GREETING, Admission.CONNECT_TIMEOUT):
        return probable, (
            f"Check that {server} is up and serves SMTP on port {port} (smtp.connect shows the "
            f"same from here) and that Host, Port and Encryption in {path} are right; a "
            f"firewall that silently drops port {port} for every client has the same effect."
        )
    return probable, (
        f"Nothing accepts SMTP connections on {server} port {port}: check that the mail server "
        f"runs and listens on that port, and that Host and Port in {path} are right."
    )


@dataclass(frozen=True)
class ReachabilityVerdict:
    """The outcome of the connections, and the egress IPs the server must still permit."""

    outcome: Outcome
    refused: tuple[str, ...] = ()


def classify_reachability(
    results: Sequence[ProbeResult], *, server: str, port: int, profile: PlatformProfile
) -> ReachabilityVerdict:
    """Whether every egress IP was greeted, from one :class:`ProbeResult` per IP and address.

    An egress IP fails when any of the server's addresses failed it. A TLS failure is not
    the allowlist's doing (``warn``, pointing to smtp.tls). When every IP failed the same way
    and none was greeted, the server or the settings are the likelier culprit: the cause
    says how the connections ended, and ``refused`` stays empty.
    """
    platform = profile.display_name
    ui = profile.ui
    at = f"{server} port {port}"
    grouped = _by_ip(results)
    if not grouped:
        return ReachabilityVerdict(Outcome(Status.SKIP, "No egress IP to connect from"))
    multi = len({r.address for r in results}) > 1

    def failure(result: ProbeResult) -> str:
        via = f" (address {result.address})" if multi else ""
        return f"{result.egress_ip}{via}: {result.describe()}"

    greeted = [
        ip for ip, rs in grouped.items() if all(r.admission is Admission.ACCEPTED for r in rs)
    ]
    failed = [r for r in results if r.admission is not Admission.ACCEPTED]
    allowlist_failures = [r for r in failed if r.admission is not Admission.TLS_FAILED]
    refused_ips = tuple(dict.fromkeys(r.egress_ip for r in allowlist_failures))
    # Without the port: one fix on the server admits the egress IPs on each of its ports, so
    # the findings of several ports share it (the snippets carry the port).
    permit = (
        f"Permit {', '.join(refused_ips)} on {server} in the server's allowlist or firewall, "
        f"then press '{ui.test_connection}' in {ui.settings_path} to confirm that {platform} "
        f"gets through. {READY_TO_PASTE}."
    )
    if not failed:
        return ReachabilityVerdict(
            Outcome(
                Status.PASS,
                f"{at} greets all {len(grouped)} {platform} egress IPs",
                f"Connected from {', '.join(grouped)}: each was greeted with '{results[0].reply}'.",
            )
        )
    if not allowlist_failures:
        tls_ips = list(dict.fromkeys(r.egress_ip for r in failed))
        return ReachabilityVerdict(
            Outcome(
                Status.WARN,
                f"{at}: TLS failed, so its allowlist cannot be seen",
                f"The TLS handshake failed from {', '.join(tls_ips)} before the server's "
                f"greeting ({failed[0].error}), so whether the server admits those egress IPs "
                "cannot be seen. That is not an allowlist problem: smtp.tls reports it.",
                remediation="Fix the TLS problem smtp.tls reports (certificate, or Encryption "
                f"and Port in {ui.settings_path}), then run the audit again.",
            )
        )
    kinds = {r.admission for r in failed}
    refusals = "; ".join(failure(r) for r in failed)
    if not greeted and len(kinds) == 1 and len(failed) == len(results):
        kind = failed[0].admission
        if kind is not Admission.REJECTED:
            why, remedy = _not_the_allowlist(kind, server, port, ui.settings_path)
            return ReachabilityVerdict(
                Outcome(
                    Status.FAIL,
                    f"{at} answers none of the {platform} egress IPs",
                    f"All {len(grouped)} egress IPs failed the same way: "
                    f"{failed[0].describe()}. {why}",
                    _UNIFORM_CAUSE[kind],
                    remedy,
                )
            )
        return ReachabilityVerdict(
            Outcome(
                Status.FAIL,
                f"{at} rejects every {platform} egress IP",
                f"All {len(grouped)} egress IPs were {failed[0].describe()}: none of them "
                "is on the server's allowlist, or the server refuses every client.",
                Cause.CLIENT_IP_REJECTED,
                permit,
            ),
            refused_ips,
        )
    cause = next(_CAUSE[kind] for kind in _CAUSE if kind in kinds)
    return ReachabilityVerdict(
        Outcome(
            Status.FAIL,
            f"{at} refuses {len(refused_ips)} of {len(grouped)} {platform} egress IPs",
            f"Refused: {refusals}. Greeted: {', '.join(greeted) or 'none'}. {platform} sends "
            f"from any of its egress IPs, so '{ui.test_connection}' and candidate mail fail "
            f"whenever it connects from {', '.join(refused_ips)}.",
            cause,
            permit,
        ),
        refused_ips,
    )


# -- reachability: I/O ---------------------------------------------------------------------


async def query_addresses(host: str, *, context: Context) -> tuple[str, ...]:
    """The IPv4 addresses the platform connects to for ``host`` (an IP literal as it is;
    ``--resolve`` and the hosts file as for every connection, else DNS).

    The platform's egress IPs are IPv4, so only A records count. DialError (step ``dns``)
    when the name does not resolve or the resolver does not answer in time.
    """
    overridden = Dialer.of(context).overridden(host)
    if overridden is not None:
        found = [a for a in overridden if ipaddress.ip_address(a).version == 4]
    else:
        # Asked as in live mode: the finding tells a name the sandbox does not play by the
        # REFUSED in its text.
        lifetime = min(float(context.resolver.lifetime), context.timeouts.dns)
        queries = DNSQueries(context.resolver, lifetime=lifetime, context=context)
        answer = await queries(host, "A")
        if answer.kind != "answer":
            cause = answer.detail
            raise DialError("dns", host, 0, cause, message=f"{host} has no A record: {cause}")
        found = list(answer.records)
    return tuple(dict.fromkeys(found))[:MAX_ADDRESSES]


class _Ended(ProbeError):
    """A connection that ended without a greeting the probe could classify (private)."""

    def __init__(self, admission: Admission, step: str, message: str, reply: str = "") -> None:
        super().__init__(step, message)
        self.admission = admission
        self.message = message
        self.reply = reply


async def _connect(address: str, port: int, *, source: str, context: Context) -> socket.socket:
    timeout = context.timeouts.connect
    try:
        return await Dialer.of(context).connect(address, port, source=source, timeout=timeout)
    except StepTimeout:
        raise _Ended(
            Admission.CONNECT_TIMEOUT, "connect", f"no connection within {timeout:g} s"
        ) from None
    except ProbeError as exc:
        if isinstance(exc.__cause__, ConnectionRefusedError):
            raise _Ended(Admission.REFUSED, "connect", "connection refused") from exc
        raise _Ended(Admission.UNREACHABLE, "connect", str(exc)) from exc
    except SandboxError as exc:
        # In the world, a host that serves other ports refuses this one; an address nothing
        # plays does not answer at all.
        if any(known == address for known, _ in context.endpoints.routes):
            raise _Ended(Admission.REFUSED, "connect", "connection refused") from exc
        raise _Ended(Admission.UNREACHABLE, "connect", str(exc)) from exc


def _handshake_failure(exc: ProbeError, timeout: float) -> _Ended:
    """How an implicit-TLS handshake that the client reported as ``exc`` ended."""
    if isinstance(exc, StepTimeout):
        message = f"TLS handshake did not finish within {timeout:g} s"
        return _Ended(Admission.TLS_FAILED, "tls", message)
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        message = f"TLS handshake failed: certificate: {cause.verify_message}"
        return _Ended(Admission.TLS_FAILED, "tls", message)
    if isinstance(cause, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
        # Hanging up before the handshake is how an implicit-TLS server turns clients away.
        message = "connection closed during the TLS handshake, before any greeting"
        return _Ended(Admission.CLOSED, "tls", message)
    if isinstance(cause, TimeoutError | ConnectionAbortedError):
        message = f"TLS handshake did not finish within {timeout:g} s"
        return _Ended(Admission.TLS_FAILED, "tls", message)
    if isinstance(cause, ssl.SSLError):
        return _Ended(Admission.TLS_FAILED, "tls", f"TLS handshake failed: {cause.reason or cause}")
    if isinstance(cause, OSError):
        message = f"connection closed during the TLS handshake ({cause.strerror or cause})"
        return _Ended(Admission.CLOSED, "tls", message)
    return _Ended(Admission.TLS_FAILED, "tls", str(exc))


def _greeting_failure(exc: ProbeError, timeout: float, heard: str) -> _Ended:
    """How a greeting that the client reported as ``exc`` ended; ``heard`` is what came."""
    if isinstance(exc, StepTimeout):
        return _Ended(Admission.NO_GREETING, "banner", f"no greeting within {timeout:g} s", heard)
    if isinstance(exc, SMTPProtocolError):
        return _Ended(Admission.GARBLED, "banner", greeting_problem(exc), heard)
    cause = exc.__cause__
    if isinstance(cause, OSError):
        message = f"connection closed without a greeting ({cause.strerror or cause})"
        return _Ended(Admission.CLOSED, "banner", message, heard)
    return _Ended(Admission.CLOSED, "banner", "connection closed without a greeting", heard)


def _heard(transcript: Transcript) -> str:
    return "\n".join(line.text for line in transcript.lines if line.side == "S")


async def probe_greeting(
    address: str,
    port: int,
    *,
    egress_ip: str,
    source: str,
    context: Context,
    tls_hostname: str | None = None,
) -> ProbeResult:
    """Connect to ``address``:``port`` from ``source`` (playing ``egress_ip``), read the
    greeting through the SMTP client, send QUIT and close; with ``tls_hostname``, the TLS
    handshake comes first.

    Never raises for a failure of the connection: the result says how it ended. Each step is
    bounded: connect and TLS by ``timeouts.connect``, the whole greeting by
    ``timeouts.banner``, QUIT and closing by ``timeouts.command``.
    """
    timeouts = context.timeouts
    started = time.perf_counter()
    tls_version: str | None = None
    transcript = Transcript()

    def result(admission: Admission, **fields: Any) -> ProbeResult:
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return ProbeResult(
            egress_ip,
            address,
            admission,
            elapsed_ms=elapsed,
            tls=tls_version,
            steps=tuple(transcript.steps),
            **fields,
        )

    def ended(end: _Ended) -> ProbeResult:
        return result(end.admission, reply=end.reply, error=end.message, step=end.step)

    egress_version = ipaddress.ip_address(egress_ip).version
    target = ipaddress.ip_network(address)
    if target.version != egress_version:
        message = f"an IPv{egress_version} egress IP cannot reach {address}"
        return result(Admission.UNREACHABLE, error=message, step="connect")
    if any(_contains(internal, target) for internal in _INTERNAL):
        message = f"{address} is an internal address, out of reach from the internet"
        return result(Admission.UNREACHABLE, error=message, step="connect")
    try:
        sock = await transcript.step(
            "connect", lambda: _connect(address, port, source=source, context=context)
        )
    except _Ended as end:
        return ended(end)
    try:
        connection = await SMTPConnection.start(
            sock,
            server_name=tls_hostname or address,
            timeout=timeouts.connect,
            implicit_tls=context.trust if tls_hostname is not None else None,
            transcript=transcript,
            max_line=MAX_LINE_BYTES,
            max_lines=MAX_GREETING_LINES,
        )
    except ProbeError as exc:
        return ended(_handshake_failure(exc, timeouts.connect))
    try:
        tls_version = connection.tls.version if connection.tls is not None else None
        # The whole greeting, however many lines, within the banner timeout.
        connection.deadline = asyncio.get_running_loop().time() + timeouts.banner
        try:
            reply = await connection.read_reply("banner", timeouts.banner)
        except ProbeError as exc:
            return ended(_greeting_failure(exc, timeouts.banner, _heard(transcript)))
        admission = classify_greeting(reply.code)
        probe = result(
            admission,
            reply="\n".join(reply.verbatim),
            error="not an SMTP greeting" if admission is Admission.GARBLED else "",
            step="" if admission is Admission.ACCEPTED else "banner",
        )
        # The greeting is what counts; a server that already hung up is fine.
        await connection.quit(timeouts.command)
        return probe
    finally:
        await connection.close(timeout=timeouts.command, polite=False)


@dataclass(frozen=True)
class ServerProbe:
    """Every egress IP's connection to one SMTP host and port; ``dns_error`` when the host
    did not resolve (and nothing was probed)."""

    addresses: tuple[str, ...]
    results: tuple[ProbeResult, ...]
    dns_error: str = ""


async def probe_server(
    smtp: SmtpSettings, *, context: Context, egress_sources: Mapping[str, str]
) -> ServerProbe:
    """Connect to ``smtp``'s host and port from each egress IP in ``egress_sources`` (egress
    IP -> local source address) at once, as the platform does."""
    try:
        addresses = await query_addresses(smtp.host, context=context)
    except ProbeError as exc:
        return ServerProbe((), (), str(exc))
    tls_hostname = smtp.host if smtp.encryption == "tls" else None
    probes = [
        probe_greeting(
            address,
            smtp.port,
            egress_ip=egress_ip,
            source=source,
            context=context,
            tls_hostname=tls_hostname,
        )
        for egress_ip, source in egress_sources.items()
        for address in addresses
    ]
    return ServerProbe(addresses, tuple(await asyncio.gather(*probes)))


# -- registered checks ---------------------------------------------------------------------


def _no_smtp(check_id: str, identity: Company | Subcompany, config: AccountConfig) -> Finding:
    parent = config.company
    if identity is not parent and parent.smtp is not None:
        detail = (
            f"{identity.name} has no SMTP settings of its own: its mail goes out through "
            f"{parent.name}'s settings, which the finding for {parent.name} covers."
        )
    else:
        detail = (
            f"{identity.name} has no SMTP settings: the platform sends from its own address "
            f"({config.inbound_address}) through its own servers, so no allowlist of yours "
            "is involved."
        )
    return Finding(
        check=check_id,
        status=Status.SKIP,
        subject=identity.name,
        title="No SMTP settings of its own",
        detail=detail,
    )


def _cidrs(networks: Iterable[IPNetwork]) -> list[str]:
    return [str(n) for n in networks]


@check(
    "allowlist.coverage",
    flow="outbound",
    title="Documented allowlist covers the platform's egress IPs",
)
async def coverage(context: Context) -> list[Finding]:
    config = context.config
    profile = config.profile
    findings = []
    for identity in config.identities():
        smtp = identity.smtp
        if smtp is None:
            findings.append(_no_smtp("allowlist.coverage", identity, config))
            continue
        allowlist, owner = documented_allowlist(identity, config.company)
        if owner is None or owner == identity.name:
            where = f"The allowlist documented for {identity.name}"
        else:
            where = (
                f"The allowlist documented for {owner} (inherited: {identity.name} has none of "
                f"its own and uses the same SMTP host, {smtp.host})"
            )
        verdict = classify_coverage(
            allowlist,
            profile.egress_ips,
            platform=profile.display_name,
            where=where,
            server=smtp.host,
        )
        evidence: dict[str, Any] = {
            "smtp_host": smtp.host,
            "port": smtp.port,
            "allowlist": None if allowlist is None else _cidrs(allowlist),
            "allowlist_of": owner,
            "egress_ips": _cidrs(profile.egress_ips),
        }
        if verdict.coverage is not None:
            evidence |= {
                "missing": _cidrs(verdict.coverage.missing),
                "covered": _cidrs(verdict.coverage.covered),
                "extra": _cidrs(verdict.coverage.extra),
                "broader": _cidrs(verdict.coverage.broader),
                "too_broad": _cidrs(verdict.coverage.too_broad),
            }
            if verdict.coverage.missing:
                # One fix however many ports and subcompanies show it: permit these networks on
                # this host, and document them in this allowlist of the account file.
                evidence["root_cause"] = {
                    "kind": "allowlist_lacks_egress_ips",
                    "smtp_host": smtp.host,
                    "egress_ips": _cidrs(verdict.coverage.missing),
                    "allowlist_of": owner,
                }
        evidence["snippets"] = render_snippets(verdict.snippet_networks, port=smtp.port)
        findings.append(verdict.outcome.finding("allowlist.coverage", identity.name, evidence))
    return findings


def _live_skip(smtp: SmtpSettings, profile: PlatformProfile) -> Outcome:
    ui = profile.ui
    ips = _listing(profile.egress_ips)
    return Outcome(
        Status.SKIP,
        f"Cannot connect from {profile.display_name}'s egress IPs from here",
        f"This run connects from this machine, not from {profile.display_name}'s egress IPs "
        f"({ips}), so it cannot see whether {smtp.host} port {smtp.port} admits them (the "
        "sandbox plays them). Verify it by hand: ask the administrator of the server or its "
        f"firewall whether {ips} may connect to port {smtp.port}, or press "
        f"'{ui.test_connection}' in {ui.settings_path}: 'Client host rejected' or a timeout "
        "there points at the allowlist.",
    )


def _dns_failure(smtp: SmtpSettings, error: str, profile: PlatformProfile) -> Outcome:
    return Outcome(
        Status.FAIL,
        f"{smtp.host} does not resolve",
        f"{error}. There is no address to connect to from the egress IPs; dns.smtp_host has "
        "the details.",
        Cause.DNS_FAILURE,
        f"Publish an A record for {smtp.host}, or correct Host in {profile.ui.settings_path}.",
    )


def _against_documented(
    verdict: ReachabilityVerdict, identity: Company | Subcompany, config: AccountConfig
) -> Outcome:
    """The outcome, noting refused egress IPs that the account file says are permitted."""
    allowlist, owner = documented_allowlist(identity, config.company)
    if not verdict.refused or allowlist is None:
        return verdict.outcome
    refused = [ipaddress.ip_network(ip) for ip in verdict.refused]
    listed = compare_allowlist(allowlist, refused).covered
    if not listed:
        return verdict.outcome
    note = (
        f" The allowlist documented for {owner} lists {_listing(listed)}: the account file "
        "and the server disagree."
    )
    return replace(verdict.outcome, detail=verdict.outcome.detail + note)


@check(
    "allowlist.reachability",
    flow="outbound",
    title="SMTP server admits every platform egress IP",
)
async def reachability(context: Context) -> list[Finding]:
    config = context.config
    profile = config.profile
    egress = [str(n.network_address) for n in profile.egress_ips]
    sources = {ip: context.egress_sources[ip] for ip in egress if ip in context.egress_sources}
    servers: dict[tuple[str, int, str], SmtpSettings] = {}
    for settings in (identity.smtp for identity in config.identities()):
        if settings is not None:
            servers.setdefault((settings.host, settings.port, settings.encryption), settings)
    probes: dict[tuple[str, int, str], ServerProbe] = {}
    if sources:
        done = await asyncio.gather(
            *(probe_server(s, context=context, egress_sources=sources) for s in servers.values())
        )
        probes = dict(zip(servers, done, strict=True))
    findings = []
    for identity in config.identities():
        smtp = identity.smtp
        if smtp is None:
            findings.append(_no_smtp("allowlist.reachability", identity, config))
            continue
        evidence: dict[str, Any] = {
            "smtp_host": smtp.host,
            "port": smtp.port,
            "encryption": smtp.encryption,
            "egress_ips": egress,
        }
        probe = probes.get((smtp.host, smtp.port, smtp.encryption))
        if probe is None:
            outcome = _live_skip(smtp, profile)
        elif probe.dns_error:
            outcome = _dns_failure(smtp, probe.dns_error, profile)
            if context.mode == "sandbox" and dns_refused(probe.dns_error):
                outcome = unplayed_outcome(outcome, [smtp.host])
        else:
            verdict = classify_reachability(
                probe.results, server=smtp.host, port=smtp.port, profile=profile
            )
            outcome = _against_documented(verdict, identity, config)
            refused = [n for n in profile.egress_ips if str(n.network_address) in verdict.refused]
            family = classify_server_family(
                (r.reply for r in probe.results if r.admission is Admission.ACCEPTED),
                host=smtp.host,
            )
            evidence |= {
                "addresses": list(probe.addresses),
                "probes": [r.row() for r in probe.results],
                "server_family": family,
                "snippets": render_snippets(refused, port=smtp.port, server_family=family),
            }
            if verdict.refused:
                # One fix however many ports and subcompanies show it: permit these egress
                # IPs on this host.
                evidence["root_cause"] = {
                    "kind": "egress_ips_refused",
                    "smtp_host": smtp.host,
                    "egress_ips": list(verdict.refused),
                }
        findings.append(outcome.finding("allowlist.reachability", identity.name, evidence))
    return findings
