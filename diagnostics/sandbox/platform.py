"""The platform: its inbound mailbox per account, and its outbound client.

Inbound, mail for an account's inbound address is filed under ``candidates/<id>`` when its
From address belongs to a known candidate and under ``unassigned`` otherwise, as the
platform's "Unassigned messages" does. Outbound, :class:`PlatformClient` sends as the platform
does: through the company's SMTP server with the configured settings, or from its own address
when there are none, always connecting from one of the platform's egress IPs.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dns.asyncresolver

from diagnostics.context import Endpoints, Timeouts
from diagnostics.model.account import SmtpSettings
from diagnostics.net import Dialer, authenticate_once, exchanges_of, smtp_session
from diagnostics.sandbox import replies
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.smtpserver import Handler, SandboxSMTP, queue_id

log = logging.getLogger("diagnostics.sandbox")


@dataclass(frozen=True)
class InboundAccount:
    """One platform account's inbound address, known candidates and mailbox root.

    ``open_maildir`` opens the account's folders: the world's, so that they store mail as the
    world's other mailboxes do.
    """

    account: str
    inbound_address: str
    candidates: Mapping[str, str]
    root: Path
    open_maildir: Callable[[Path], Maildir] = field(default=Maildir, compare=False, repr=False)

    def folder(self, sender: str) -> str:
        """Where a message from ``sender`` is filed: ``candidates/<id>`` or ``unassigned``."""
        candidate = {a.casefold(): c for a, c in self.candidates.items()}.get(sender.casefold())
        return f"candidates/{candidate}" if candidate else "unassigned"

    def mailbox(self, folder: str = "unassigned") -> Maildir:
        return self.open_maildir(self.root / folder)


class PlatformInboundHandler(Handler):
    """aiosmtpd handler of the platform's inbound MX."""

    def __init__(self, *, hostname: str, accounts: Mapping[str, InboundAccount]) -> None:
        self.hostname = hostname
        self.by_address = {a.inbound_address.casefold(): a for a in accounts.values()}
        # Opened once per folder rather than for every message.
        self._mailboxes: dict[tuple[str, str], Maildir] = {}

    async def _file(self, account: InboundAccount, folder: str, data: bytes) -> None:
        """Store ``data`` in ``folder`` of ``account``."""
        box = self._mailboxes.get((account.account, folder))
        if box is not None:
            try:
                await box.adeliver(data)
                return
            except FileNotFoundError:
                # The folder was removed meanwhile; a failed delivery leaves nothing behind.
                pass
        box = self._mailboxes[(account.account, folder)] = account.mailbox(folder)
        await box.adeliver(data)

    def refuse_recipient(self, address: str) -> str | None:
        if address.casefold() not in self.by_address:
            return replies.R550_USER_UNKNOWN.format(address=address)
        return None

    async def handle_DATA(self, server: SandboxSMTP, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        parsed = message_from_bytes(content, policy=email.policy.compat32)
        _, sender = email.utils.parseaddr(str(parsed.get("From", "")))
        ident = queue_id()
        for rcpt in envelope.rcpt_tos:
            account = self.by_address[rcpt.casefold()]
            received = self.received(server, session, recipient=rcpt, ident=ident)
            folder = account.folder(sender)
            await self._file(account, folder, received + content)
            log.info("platform %s: message for %s filed in %s", ident, account.account, folder)
        return replies.R250_QUEUED.format(ident=ident)


class CandidateHandler(Handler):
    """aiosmtpd handler of the candidates' mail server: every address has a mailbox."""

    def __init__(
        self,
        *,
        hostname: str,
        domains: set[str],
        root: Path,
        open_maildir: Callable[[Path], Maildir] = Maildir,
    ) -> None:
        self.hostname = hostname
        self.domains = {d.lower() for d in domains}
        self.root = root
        # The world's, so that candidates' mailboxes store mail as its other mailboxes do.
        self.open_maildir = open_maildir

    def mailbox(self, address: str) -> Maildir:
        return self.open_maildir(self.root / address.lower())

    def refuse_recipient(self, address: str) -> str | None:
        if address.rsplit("@", 1)[-1].lower() not in self.domains:
            return replies.R554_RELAY_DENIED.format(address=address)
        return None

    async def handle_DATA(self, server: SandboxSMTP, session: Any, envelope: Any) -> str:
        ident = queue_id()
        for rcpt in envelope.rcpt_tos:
            received = self.received(server, session, recipient=rcpt, ident=ident)
            # The envelope sender is what a bounce goes to; the final MTA records it.
            return_path = f"Return-Path: <{envelope.mail_from}>\r\n".encode()
            await self.mailbox(rcpt).adeliver(return_path + received + envelope.original_content)
        return replies.R250_QUEUED.format(ident=ident)


@dataclass(frozen=True)
class SendResult:
    """What the platform's client saw: the route taken and the server's last reply."""

    route: str
    egress_ip: str
    server: str
    reply: str
    refused: Mapping[str, str] = field(default_factory=dict)


class PlatformClient:
    """Sends as the platform does, from one of its egress IPs."""

    def __init__(
        self,
        *,
        resolver: dns.asyncresolver.Resolver,
        endpoints: Endpoints,
        trust: ssl.SSLContext,
        egress_sources: Mapping[str, str],
        helo: str,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.resolver = resolver
        self.endpoints = endpoints
        self.trust = trust
        self.egress_sources = dict(egress_sources)
        self.helo = helo
        self.timeouts = timeouts or Timeouts(connect=5, banner=10, command=10, data=20)
        self.dialer = Dialer(
            endpoints,
            resolver,
            mode="sandbox",
            connect_timeout=self.timeouts.connect,
            dns_timeout=self.timeouts.dns,
        )

    def _source(self, egress_ip: str | None) -> tuple[str, str]:
        if egress_ip is None:
            egress_ip = next(iter(self.egress_sources))
        if egress_ip not in self.egress_sources:
            raise ValueError(f"{egress_ip} is not an egress IP of the platform")
        return egress_ip, self.egress_sources[egress_ip]

    # Both senders let aiosmtplib's exceptions through: a caller (a test, a check) wants the
    # server's reply code and text, which they carry.
    async def send_via(
        self,
        smtp: SmtpSettings,
        *,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        egress_ip: str | None = None,
    ) -> SendResult:
        """Send through the company's server with ``smtp``, as the platform does."""
        egress_ip, source = self._source(egress_ip)
        sock = await self.dialer.dial(smtp.host, smtp.port, source=source)
        async with smtp_session(
            sock,
            hostname=smtp.host,
            local_hostname=self.helo,
            use_tls=smtp.encryption == "tls",
            start_tls=smtp.encryption == "starttls",
            tls_context=self.trust,
            timeout=self.timeouts.command,
        ) as client:
            await authenticate_once(client, smtp.account, smtp.password.reveal())
            refused, reply = await client.sendmail(mail_from, rcpt_tos, data)
        return SendResult(
            "smtp",
            egress_ip,
            f"{smtp.host}:{smtp.port}",
            reply,
            {r: f"{c.code} {c.message}" for r, c in refused.items()},
        )

    async def send_direct(
        self, *, mail_from: str, rcpt_tos: list[str], data: bytes, egress_ip: str | None = None
    ) -> SendResult:
        """Send from the platform's own address straight to the recipient's MX."""
        egress_ip, source = self._source(egress_ip)
        domain = rcpt_tos[0].rsplit("@", 1)[-1]
        [exchange, *_] = await exchanges_of(self.resolver, domain, lifetime=self.timeouts.dns)
        sock = await self.dialer.dial(exchange, 25, source=source)
        async with smtp_session(
            sock,
            hostname=exchange,
            local_hostname=self.helo,
            start_tls=False,
            timeout=self.timeouts.command,
        ) as client:
            refused, reply = await client.sendmail(mail_from, rcpt_tos, data)
        return SendResult(
            "platform",
            egress_ip,
            f"{exchange}:25",
            reply,
            {r: f"{c.code} {c.message}" for r, c in refused.items()},
        )
