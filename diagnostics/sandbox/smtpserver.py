"""What every sandbox SMTP server shares: loopback-only listeners on ephemeral ports, a gate
on the peer's address, the world address a loopback peer stands for, and Received headers.

The servers are aiosmtpd's :class:`~aiosmtpd.smtp.SMTP` running in the caller's event loop
(no threads), so tests and notebook kernels drive them directly.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import itertools
import logging
import ssl
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiosmtpd.smtp import SMTP

from diagnostics.errors import SandboxError
from diagnostics.sandbox import replies

log = logging.getLogger("diagnostics.sandbox")


class _ExpectedNoise(logging.Filter):
    """Drops aiosmtpd's log lines about what the sandbox does on purpose: AUTH without
    STARTTLS on the implicit-TLS port, its own deprecated attribute, and the aborted TLS
    handshakes that probes cause when a certificate fails their verification."""

    _MESSAGES = (
        "auth_required == True but auth_require_tls == False",
        "Session.login_data is deprecated",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self._MESSAGES):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            message.endswith("SMTP session exception") and type(exc).__name__ == "TLSSetupException"
        )


logging.getLogger("mail.log").addFilter(_ExpectedNoise())

# aiosmtpd 1.4 sets its own deprecated Session.login_data after every successful AUTH, and
# warns about AUTH without STARTTLS on the implicit-TLS port, which is encrypted from the
# first byte (it only knows STARTTLS sessions as encrypted). Neither is about this sandbox.
warnings.filterwarnings(
    "ignore", message="Session.login_data is deprecated", category=DeprecationWarning
)
warnings.filterwarnings(
    "ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning
)

GateAction = Literal["accept", "reject", "drop", "hangup"]
_queue_ids = itertools.count(1)


def require_loopback(host: str) -> str:
    """``host`` when it is a loopback address; SandboxError otherwise."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SandboxError(f"the sandbox binds to loopback addresses only, not {host!r}") from None
    if not address.is_loopback:
        raise SandboxError(f"the sandbox binds to loopback addresses only, not {host}")
    return str(address)


def queue_id() -> str:
    """A Postfix-like queue id, unique within the process."""
    return f"{next(_queue_ids):010X}"


@dataclass(frozen=True)
class PeerMap:
    """Maps the loopback source address of a connection to the world address it plays.

    The platform's egress IPs are played by their own loopback addresses (127.0.10.x); any
    other loopback peer is a local client and keeps its own address.
    """

    world_by_source: Mapping[str, str]

    def world(self, peer_host: str) -> str:
        return self.world_by_source.get(peer_host, peer_host)


@dataclass(frozen=True)
class Gate:
    """Decides, from the peer's world address, whether a connection gets a greeting."""

    peers: PeerMap
    allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    action: Literal["reject", "drop"] = "reject"
    # What the server does with a client it lets in: a scenario may make it misbehave.
    behaviour: Literal["normal", "close_after_banner", "silent"] = "normal"

    def decide(self, peer_host: str) -> GateAction:
        if self.allowlist is not None:
            world = ipaddress.ip_address(self.peers.world(peer_host))
            if not any(world in network for network in self.allowlist):
                return self.action
        return {"normal": "accept", "close_after_banner": "hangup", "silent": "drop"}[
            self.behaviour
        ]  # type: ignore[return-value]


class SandboxSMTP(SMTP):
    """aiosmtpd's SMTP with a connection gate and knowledge of implicit TLS."""

    def __init__(self, handler: Any, *, gate: Gate, implicit_tls: bool = False, **kwargs: Any):
        super().__init__(handler, loop=asyncio.get_running_loop(), **kwargs)
        self._gate = gate
        self.implicit_tls = implicit_tls

    @property
    def encrypted(self) -> bool:
        """Whether this session runs over TLS (implicit, or after STARTTLS)."""
        return self.implicit_tls or self._tls_protocol is not None

    @property
    def peer_host(self) -> str:
        """The loopback address the client connected from ("" before a connection).

        aiosmtpd's constructor inspects every attribute, properties included, before any
        session exists: this must not raise then.
        """
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else ""

    @property
    def world_peer(self) -> str:
        """The world address of the client (an egress IP for the platform's client)."""
        return self._gate.peers.world(self.peer_host)

    async def _handle_client(self) -> None:
        action = self._gate.decide(self.peer_host)
        if action == "accept":
            await super()._handle_client()
            return
        log.info(
            "%s: connection from %s not served normally (%s)",
            self.hostname,
            self.world_peer,
            action,
        )
        if action == "hangup":
            await self.push(f"220 {self.hostname} {self.__ident__}")
            self._close()
            return
        if action == "reject":
            # Postfix's wording for a client refused by check_client_access.
            await self.push(replies.R554_CLIENT_REJECTED.format(peer=self.world_peer))
            self._close()
            return
        # "drop": like a firewall that lets the handshake through but nothing else; the
        # client's banner timeout fires. The server's own idle timeout ends it eventually.
        await asyncio.sleep(self._timeout_duration or 300)
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def received_header(
    *,
    helo: str | None,
    peer: str,
    by: str,
    protocol: str,
    recipient: str | None,
    ident: str,
    tls: str | None = None,
) -> bytes:
    """A Received header (RFC 5321 section 4.4) as the servers of the sandbox prepend it."""
    now = email.utils.format_datetime(datetime.datetime.now(datetime.UTC).replace(microsecond=0))
    tls_clause = f"\n\t(using {tls})" if tls else ""
    for_clause = f"\n\tfor <{recipient}>" if recipient else ""
    text = (
        f"Received: from {helo or 'unknown'} ([{peer}]){tls_clause}\n\tby {by} (maildiag sandbox) "
        f"with {protocol} id {ident}{for_clause}; {now}\r\n"
    )
    return text.replace("\n\t", "\r\n\t").encode("ascii")


def protocol_name(*, extended: bool, tls: bool, authenticated: bool) -> str:
    """The ``with`` keyword of a Received header (RFC 3848)."""
    name = "ESMTP" if extended else "SMTP"
    if extended and tls:
        name += "S"
    if extended and authenticated:
        name += "A"
    return name


def tls_description(server: SandboxSMTP) -> str | None:
    """Protocol and cipher of the session's TLS, for the Received header."""
    if not server.encrypted or server.transport is None:
        return None
    ssl_object = server.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return "TLS"
    cipher = ssl_object.cipher()
    return (
        f"{ssl_object.version()} with cipher {cipher[0]}" if cipher else str(ssl_object.version())
    )


class Handler:
    """What the sandbox's aiosmtpd handlers share: a host name, the recipient check, and
    the Received field each prepends."""

    hostname: str

    def refuse_recipient(self, address: str) -> str | None:
        """The reply refusing ``address``, or None to accept it (every address, here)."""
        return None

    async def handle_RCPT(
        self,
        server: SandboxSMTP,
        session: Any,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self.refuse_recipient(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.R250_RECIPIENT_OK

    def received(
        self,
        server: SandboxSMTP,
        session: Any,
        *,
        recipient: str | None,
        ident: str,
        authenticated: bool = False,
    ) -> bytes:
        """The Received field for a message of this session."""
        return received_header(
            helo=session.host_name,
            peer=server.world_peer,
            by=self.hostname,
            protocol=protocol_name(
                extended=session.extended_smtp, tls=server.encrypted, authenticated=authenticated
            ),
            recipient=recipient,
            ident=ident,
            tls=tls_description(server),
        )


LISTEN_BACKLOG = 1024


async def listen(
    factory: Callable[[], SandboxSMTP],
    *,
    host: str,
    ssl_context: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Start ``factory``'s server on ``host`` (loopback only), on an ephemeral port.

    The listen backlog is :data:`LISTEN_BACKLOG`: with asyncio's default of 100, a burst of
    200 connections has its surplus SYNs dropped and retried by the kernel a second later,
    a stall that says nothing about the server (and dominated the load benchmarks)."""
    require_loopback(host)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        factory, host=host, port=0, ssl=ssl_context, backlog=LISTEN_BACKLOG
    )


def bound_port(server: asyncio.Server) -> int:
    """The port an ephemeral listener got."""
    return int(server.sockets[0].getsockname()[1])
