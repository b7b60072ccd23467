"""Store-and-forward for the sandbox: a durable queue and the relay that empties it.

A server that accepts a message for another host puts it in a :class:`Queue` (a Maildir whose
entries carry their envelope) before it answers 250. The :class:`Relay` delivers each entry to
the MX of its recipients' domain, found through the sandbox DNS and dialled through the
sandbox endpoints, exactly as a real MTA would; a permanent refusal becomes a delivery status
notification (RFC 3464) in the postmaster mailbox. Entries left by a stopped sandbox are
delivered when it starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from diagnostics.context import Endpoints
from diagnostics.errors import ProbeError
from diagnostics.net import connect_socket, smtp_session
from diagnostics.sandbox import replies
from diagnostics.sandbox.forwarding import split_message
from diagnostics.sandbox.maildir import Maildir

log = logging.getLogger("diagnostics.sandbox")

_ENVELOPE_MARK = b"X-Sandbox-Envelope: "
_MAX_ATTEMPTS = 3
_RETRY_S = 0.5


@dataclass(frozen=True)
class QueuedMessage:
    """A queue entry: envelope, message and the earliest time to deliver it."""

    key: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    not_before: float = 0.0


class Queue:
    """A durable outbound queue: one Maildir entry per message, envelope in its first line."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        self.added = asyncio.Event()

    async def put(
        self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes, *, delay_s: float = 0.0
    ) -> str:
        """Queue ``data`` durably; returns the entry's key once it is on disk."""
        envelope = {"from": mail_from, "to": list(rcpt_tos), "not_before": time.time() + delay_s}
        line = _ENVELOPE_MARK + json.dumps(envelope).encode() + b"\r\n"
        key = await self.maildir.adeliver(line + data)
        self.added.set()
        return key

    def load(self, key: str) -> QueuedMessage:
        raw = self.maildir.read(key)
        line, _, data = raw.partition(b"\r\n")
        envelope = json.loads(line[len(_ENVELOPE_MARK) :])
        return QueuedMessage(
            key, envelope["from"], tuple(envelope["to"]), data, float(envelope["not_before"])
        )

    def pending(self) -> list[str]:
        """Keys of the entries still queued."""
        return self.maildir.keys()


class Relay:
    """Delivers queued messages to the MX hosts of their recipients' domains."""

    def __init__(
        self,
        queue: Queue,
        *,
        resolver: dns.asyncresolver.Resolver,
        endpoints: Endpoints,
        helo: str,
        postmaster: Maildir,
        bounce_domains: frozenset[str] = frozenset(),
        source: str | None = None,
        timeout: float = 10.0,
        concurrency: int = 32,
    ) -> None:
        self.queue = queue
        self.resolver = resolver
        self.endpoints = endpoints
        self.helo = helo
        self.postmaster = postmaster
        # Bounces go back to the envelope sender when the world can deliver there (the
        # candidates' and the company's domains); others end with the postmaster.
        self.bounce_domains = frozenset(d.lower() for d in bounce_domains)
        self.source = source
        self.timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

    def start(self) -> None:
        """Start delivering (entries already queued first)."""
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop delivering; what is still queued stays on disk for the next start."""
        tasks = [t for t in (self._worker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._worker = None

    async def drain(self, timeout: float) -> None:
        """Wait until the queue is empty and nothing is in flight; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while self.queue.pending() or self._in_flight:
                self._idle.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            self.queue.added.clear()
            now = time.time()
            wake = 1.0
            for key in self.queue.pending():
                if key in self._in_flight:
                    continue
                entry = self.queue.load(key)
                if entry.not_before > now:
                    wake = min(wake, entry.not_before - now)
                    continue
                self._in_flight.add(key)
                task = asyncio.get_running_loop().create_task(self._deliver_entry(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake, 0.01)):
                    await self.queue.added.wait()

    async def _deliver_entry(self, entry: QueuedMessage) -> None:
        try:
            async with self._limit:
                by_domain: dict[str, list[str]] = defaultdict(list)
                for rcpt in entry.rcpt_tos:
                    by_domain[rcpt.rsplit("@", 1)[-1].lower()].append(rcpt)
                for domain, rcpts in by_domain.items():
                    await self._deliver_domain(entry, domain, tuple(rcpts))
        except Exception as exc:
            # A fault of the relay itself: bounce rather than retry the entry forever.
            log.exception("relay %s: cannot deliver", entry.key)
            reply = replies.R451_TEMPORARY.format(reason=f"internal error: {type(exc).__name__}")
            await self._bounce(entry, entry.rcpt_tos, reply)
        try:
            self.queue.maildir.remove(entry.key)
        finally:
            self._in_flight.discard(entry.key)
            self._idle.set()
            self.queue.added.set()

    async def _deliver_domain(
        self, entry: QueuedMessage, domain: str, rcpts: tuple[str, ...]
    ) -> None:
        last_reply = ""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                hosts = await self._mx_addresses(domain)
                refused = await self._send(hosts, entry, rcpts)
            except aiosmtplib.SMTPResponseException as exc:
                last_reply = f"{exc.code} {exc.message}"
                if exc.code >= 500:
                    await self._bounce(entry, rcpts, last_reply)
                    return
            except (ProbeError, aiosmtplib.SMTPException, OSError) as exc:
                last_reply = replies.R451_TEMPORARY.format(reason=exc)
            else:
                for rcpt, reply in refused.items():
                    await self._bounce(entry, (rcpt,), reply)
                return
            log.info(
                "relay %s to %s: attempt %d failed: %s", entry.key, domain, attempt, last_reply
            )
            await asyncio.sleep(_RETRY_S * attempt)
        await self._bounce(entry, rcpts, last_reply)

    async def _mx_addresses(self, domain: str) -> list[tuple[str, str]]:
        """(host name, address) of each MX of ``domain``, by preference (RFC 5321 5.1)."""
        try:
            answer = await self.resolver.resolve(domain, "MX")
            exchanges = sorted(answer, key=lambda r: r.preference)
            names = [r.exchange.to_text().rstrip(".") for r in exchanges]
        except dns.resolver.NoAnswer:
            names = [domain]  # implicit MX
        except (dns.resolver.NXDOMAIN, dns.exception.DNSException) as exc:
            raise ProbeError("dns", f"MX of {domain}: {exc}") from exc
        hosts = []
        for name in names:
            try:
                addresses = await self.resolver.resolve(name, "A")
            except dns.exception.DNSException:
                continue
            hosts += [(name, a.to_text()) for a in addresses]
        if not hosts:
            raise ProbeError("dns", f"no address for any MX of {domain}")
        return hosts

    async def _send(
        self, hosts: list[tuple[str, str]], entry: QueuedMessage, rcpts: tuple[str, ...]
    ) -> dict[str, str]:
        """Send to the first MX that answers; the recipients it refused, with its reply."""
        error: Exception | None = None
        for name, address in hosts:
            host, port = self.endpoints.dial(address, 25)
            try:
                sock = await connect_socket(host, port, timeout=self.timeout, source=self.source)
            except ProbeError as exc:
                error = exc
                continue
            try:
                async with smtp_session(
                    sock,
                    hostname=name,
                    local_hostname=self.helo,
                    start_tls=False,
                    timeout=self.timeout,
                ) as client:
                    refused, _ = await client.sendmail(entry.mail_from, list(rcpts), entry.data)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                return {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
            return {rcpt: f"{reply.code} {reply.message}" for rcpt, reply in refused.items()}
        assert error is not None
        raise error

    async def _bounce(self, entry: QueuedMessage, rcpts: tuple[str, ...], reply: str) -> None:
        log.info("relay %s: bounced for %s: %s", entry.key, ", ".join(rcpts), reply)
        report = delivery_status_notification(self.helo, entry, rcpts, reply)
        sender = entry.mail_from
        # A bounce itself has the null sender (RFC 5321 4.5.5): it is never bounced again.
        if sender and sender.rsplit("@", 1)[-1].lower() in self.bounce_domains:
            await self.queue.put("", (sender,), report)
        else:
            await self.postmaster.adeliver(report)


def delivery_status_notification(
    reporting_mta: str, entry: QueuedMessage, rcpts: tuple[str, ...], reply: str
) -> bytes:
    """A bounce (RFC 3464 multipart/report) for ``rcpts`` of ``entry``, in Postfix's layout."""
    words = reply.split()
    status = words[1] if len(words) > 1 and words[1][:2] in ("4.", "5.") else "5.0.0"
    boundary = f"{uuid.uuid4().hex}/{reporting_mta}"
    date = email.utils.format_datetime(datetime.datetime.now(datetime.UTC))
    headers, _ = split_message(entry.data)
    recipients = "".join(
        f"Final-Recipient: rfc822; {r}\r\nOriginal-Recipient: rfc822; {r}\r\nAction: failed\r\n"
        f"Status: {status}\r\nDiagnostic-Code: smtp; {reply}\r\n\r\n"
        for r in rcpts
    )
    explanation = "".join(f"<{r}>: host said: {reply}\r\n" for r in rcpts)
    text = (
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\r\n"
        f"To: {entry.mail_from or 'postmaster@' + reporting_mta}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain=reporting_mta)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {reporting_mta}.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"{explanation}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"Arrival-Date: {date}\r\n\r\n"
        f"{recipients}"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    )
    return text.encode() + b"".join(headers) + f"\r\n--{boundary}--\r\n".encode()
