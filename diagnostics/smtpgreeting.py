"""The greeting probe of ``allowlist.reachability``: connect to an SMTP server from one egress
IP, read its greeting through :class:`~diagnostics.smtpclient.SMTPConnection` and say how
the server met the client.

:func:`query_addresses` resolves the SMTP host (A records; ``--resolve`` and the hosts file
first), :func:`probe_greeting` connects from one egress IP and reads the greeting,
:func:`probe_server` does that for every egress IP and address at once. What one connection
came to is a :class:`ProbeResult` with an :class:`Admission`: :func:`classify_greeting` for a
greeting's reply code, :func:`greeting_problem` and :func:`parse_greeting` for a greeting that
is no SMTP reply. A failure of the connection is never raised: the result says how it ended.

A probe can run elsewhere, on the machine that owns its egress IP (a Dask worker, say): it is
then a :class:`GreetingProbe`, plain data that :func:`run_greeting_probe` runs where it lands,
and the context's ``greeting_prober`` (a :class:`GreetingProber`) decides where each goes.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diagnostics.config import SmtpSettings
from diagnostics.context import Context, Endpoints, Timeouts
from diagnostics.errors import DialError, ProbeError, SandboxError, StepTimeout
from diagnostics.net import Dialer, DNSQueries
from diagnostics.netblocks import INTERNAL, contains
from diagnostics.smtpclient import SMTPConnection, Step, Transcript
from diagnostics.smtpreply import Reply, SMTPProtocolError, parse_reply

# A greeting is one reply; RFC 5321 allows 512 octets a line, real servers stay far below.
MAX_GREETING_LINES = 50
MAX_LINE_BYTES = 2048
# Every address of a round-robin name is probed (one node without the allowlist fails one
# connection in N); of a larger cluster, the first few stand for the rest.
MAX_ADDRESSES = 4


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
    # Who made the connection, when not this run: the worker that owns the egress IP.
    probed_by: str = field(default="", compare=False)

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


async def _connect(
    address: str, port: int, *, source: str, endpoints: Endpoints, timeout: float
) -> socket.socket:
    try:
        return await Dialer(endpoints=endpoints).connect(
            address, port, source=source, timeout=timeout
        )
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
        if any(known == address for known, _ in endpoints.routes):
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
    return await _probe(
        address, port, egress_ip=egress_ip, source=source, tls_hostname=tls_hostname,
        timeouts=context.timeouts, trust=context.trust, endpoints=context.endpoints,
    )  # fmt: skip


async def _probe(
    address: str,
    port: int,
    *,
    egress_ip: str,
    source: str,
    tls_hostname: str | None,
    timeouts: Timeouts,
    trust: ssl.SSLContext,
    endpoints: Endpoints,
) -> ProbeResult:
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
    if any(contains(internal, target) for internal in INTERNAL):
        message = f"{address} is an internal address, out of reach from the internet"
        return result(Admission.UNREACHABLE, error=message, step="connect")
    try:
        sock = await transcript.step(
            "connect",
            lambda: _connect(
                address, port, source=source, endpoints=endpoints, timeout=timeouts.connect
            ),
        )
    except _Ended as end:
        return ended(end)
    try:
        connection = await SMTPConnection.start(
            sock,
            server_name=tls_hostname or address,
            timeout=timeouts.connect,
            implicit_tls=trust if tls_hostname is not None else None,
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
class GreetingProbe:
    """One greeting probe as plain data, to be run where its egress IP is owned
    (:func:`run_greeting_probe`): everything :func:`probe_greeting` takes from the context."""

    address: str
    port: int
    egress_ip: str
    source: str
    tls_hostname: str | None
    timeouts: Timeouts
    #: The routes of ``address`` (world address and port -> socket address), and whether an
    #: address without one is refused (the sandbox).
    routes: tuple[tuple[tuple[str, int], tuple[str, int]], ...]
    strict: bool
    #: The trusted CA certificates (DER), for implicit TLS.
    ca_certs: tuple[bytes, ...]

    @classmethod
    def of(
        cls,
        address: str,
        port: int,
        *,
        egress_ip: str,
        source: str,
        context: Context,
        tls_hostname: str | None = None,
    ) -> GreetingProbe:
        """The probe :func:`probe_greeting` would make with these arguments."""
        routes = context.endpoints.routes
        return cls(
            address, port, egress_ip, source, tls_hostname, context.timeouts,
            tuple((key, dial) for key, dial in routes.items() if key[0] == address),
            context.endpoints.strict,
            tuple(context.trust.get_ca_certs(binary_form=True)),
        )  # fmt: skip


async def run_greeting_probe(probe: GreetingProbe) -> ProbeResult:
    """Run ``probe`` here, as :func:`probe_greeting` would have where it was made."""
    trust = ssl.create_default_context(cadata=b"".join(probe.ca_certs) or None)
    trust.minimum_version = ssl.TLSVersion.TLSv1_2
    return await _probe(
        probe.address, probe.port, egress_ip=probe.egress_ip, source=probe.source,
        tls_hostname=probe.tls_hostname, timeouts=probe.timeouts, trust=trust,
        endpoints=Endpoints(dict(probe.routes), strict=probe.strict),
    )  # fmt: skip


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
    IP -> local source address) at once, as the platform does; each where the context's
    ``greeting_prober`` sends it, when it has one."""
    try:
        addresses = await query_addresses(smtp.host, context=context)
    except ProbeError as exc:
        return ServerProbe((), (), str(exc))
    tls_hostname = smtp.host if smtp.encryption == "tls" else None

    async def probe(address: str, egress_ip: str, source: str) -> ProbeResult:
        prober = context.greeting_prober
        if prober is not None:
            made = await prober(
                GreetingProbe.of(
                    address, smtp.port, egress_ip=egress_ip, source=source, context=context,
                    tls_hostname=tls_hostname,
                )
            )  # fmt: skip
            if made is not None:
                assert isinstance(made, ProbeResult)
                return made
        return await probe_greeting(
            address,
            smtp.port,
            egress_ip=egress_ip,
            source=source,
            context=context,
            tls_hostname=tls_hostname,
        )

    probes = [
        probe(address, egress_ip, source)
        for egress_ip, source in egress_sources.items()
        for address in addresses
    ]
    return ServerProbe(addresses, tuple(await asyncio.gather(*probes)))
