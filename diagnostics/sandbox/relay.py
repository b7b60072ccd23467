"""Store-and-forward for the sandbox: a queue on disk and the relay that empties it.

A server that accepts a message for another host puts it in a :class:`Queue` (a Maildir whose
entries carry their envelope) before it answers 250. The :class:`Relay` delivers each entry to
the MX of its recipients' domain, found through the sandbox DNS and dialled through the
sandbox endpoints, exactly as a real MTA would; a permanent refusal becomes a delivery status
notification (RFC 3464) in the postmaster mailbox. Entries left by a stopped sandbox are
delivered when it starts again.

Like Postfix and Exim, the relay keeps what a busy queue would otherwise repeat for every
message: it remembers each domain's MX hosts for as long as the DNS answers' TTL allows, and
sends further messages over a session it already has with the next hop (a connection cache:
an idle session is closed after ``_IDLE_S``, and one is never used for more than ``_REUSE``
messages). The queue tells the relay what it has just stored, so the relay does not list and
reread the queue folder for every new message; it still rereads it at start and from time to
time, so that nothing stored on disk is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json
import logging
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import aiosmtplib
import dns.asyncresolver

from diagnostics.context import Endpoints
from diagnostics.errors import DialError, ProbeError
from diagnostics.net import Dialer, mx_exchanges, query_dns, smtp_session
from diagnostics.sandbox import replies
from diagnostics.sandbox.forwarding import split_message
from diagnostics.sandbox.maildir import Maildir

log = logging.getLogger("diagnostics.sandbox")

_ENVELOPE_MARK = b"X-Sandbox-Envelope: "
_MAX_ATTEMPTS = 3
_RETRY_S = 0.5
# How often the relay lists the queue folder for entries it was not told about.
_RESCAN_S = 1.0
# Connection cache, as Postfix's smtp_connection_cache_time_limit (2 s) and a reuse limit.
_IDLE_S = 2.0
_REUSE = 100

_T = TypeVar("_T")


@dataclass(frozen=True)
class QueuedMessage:
    """A queue entry: envelope, message and the earliest time to deliver it."""

    key: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    not_before: float = 0.0


class Queue:
    """An outbound queue: one Maildir entry per message, envelope in its first line; as
    durable as its Maildir."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        self.added = asyncio.Event()
        # Entries stored since the relay last looked, and how many stores are under way.
        self._fresh: list[QueuedMessage] = []
        self._storing = 0

    async def put(
        self, mail_from: str, rcpt_tos: tuple[str, ...], data: bytes, *, delay_s: float = 0.0
    ) -> str:
        """Queue ``data``; returns the entry's key once it is stored in the Maildir."""
        not_before = time.time() + delay_s
        envelope = {"from": mail_from, "to": list(rcpt_tos), "not_before": not_before}
        line = _ENVELOPE_MARK + json.dumps(envelope).encode() + b"\r\n"
        self._storing += 1
        try:
            key = await self.maildir.adeliver(line + data)
        finally:
            self._storing -= 1
        self._fresh.append(QueuedMessage(key, mail_from, tuple(rcpt_tos), data, not_before))
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

    def take_fresh(self) -> list[QueuedMessage]:
        """The entries ``put`` has stored since the last call."""
        fresh, self._fresh = self._fresh, []
        return fresh

    @property
    def has_fresh(self) -> bool:
        return bool(self._fresh)

    @property
    def settled(self) -> bool:
        """Whether every entry on disk that ``put`` stored is known to ``take_fresh``.

        While a store is under way its file may be on disk before ``put`` hears back; a
        listing of the folder is only complete against ``take_fresh`` when none is.
        """
        return self._storing == 0


@dataclass
class _Connection:
    """An SMTP session with a next hop, kept open for further messages."""

    client: aiosmtplib.SMTP
    session: contextlib.AsyncExitStack
    uses: int = 0
    idle_since: float = field(default_factory=time.monotonic)


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
        self.dialer = Dialer(
            endpoints, resolver, mode="sandbox", source=source, connect_timeout=timeout
        )
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: set[str] = set()
        # Entries known to the relay and not yet due (a scenario's delay), by key.
        self._waiting: dict[str, QueuedMessage] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # MX hosts by domain, with the time.time() at which the DNS answers expire.
        self._mx_cache: dict[str, tuple[float, list[tuple[str, str]]]] = {}
        self._mx_lookups: dict[str, asyncio.Task[list[tuple[str, str]]]] = {}
        # Delivered entries whose file is still to be removed (they count as in flight).
        self._removals: list[str] = []
        self._remover: asyncio.Task[None] | None = None
        # Idle sessions by next hop (MX name, address), most recently used last.
        self._connections: dict[tuple[str, str], list[_Connection]] = defaultdict(list)

    def start(self) -> None:
        """Start delivering (entries already queued first)."""
        self._in_flight.clear()
        self._waiting.clear()
        self._removals.clear()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop delivering; what is still queued stays on disk for the next start."""
        # Again until none is left: a task may start another as it ends (a QUIT, a removal).
        while tasks := [t for t in (self._worker, *self._tasks) if t is not None and not t.done()]:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._worker = None
        # As when a delivery is cancelled: the connections are closed without QUIT.
        for idle in self._connections.values():
            for connection in idle:
                await self._discard(connection)
        self._connections.clear()

    async def drain(self, timeout: float) -> None:
        """Wait until the queue is empty and nothing is in flight; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while self._busy():
                self._idle.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._idle.wait()

    def _busy(self) -> bool:
        # The folder is listed only when nothing the relay knows of is left.
        return bool(
            self._in_flight or self._waiting or self.queue.has_fresh or self.queue.pending()
        )

    def _schedule(self, entry: QueuedMessage) -> None:
        if entry.key not in self._in_flight:
            self._waiting.setdefault(entry.key, entry)

    async def _run(self) -> None:
        next_scan = 0.0
        while True:
            self.queue.added.clear()
            for entry in self.queue.take_fresh():
                self._schedule(entry)
            if time.monotonic() >= next_scan and self.queue.settled:
                # Entries of an earlier run, or stored by a put that was cancelled.
                for key in self.queue.pending():
                    if key not in self._in_flight and key not in self._waiting:
                        with contextlib.suppress(KeyError):  # removed meanwhile
                            self._schedule(self.queue.load(key))
                next_scan = time.monotonic() + _RESCAN_S
            now = time.time()
            wake = _RESCAN_S
            for key, entry in list(self._waiting.items()):
                if entry.not_before > now:
                    wake = min(wake, entry.not_before - now)
                    continue
                del self._waiting[key]
                self._in_flight.add(key)
                self._spawn(self._deliver_entry(entry))
            wake = min(wake, self._close_idle_connections())
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
        self._removals.append(entry.key)
        if self._remover is None:
            self._remover = self._spawn(self._remove_delivered())

    async def _remove_delivered(self) -> None:
        """Remove delivered entries from the queue folder: in batches, in a worker thread
        (an unlink waits for the file system's journal like a write does)."""
        try:
            while self._removals:
                batch, self._removals = self._removals, []
                try:
                    await asyncio.to_thread(self._remove_all, batch)
                finally:
                    self._in_flight.difference_update(batch)
                    self._idle.set()
        finally:
            self._remover = None

    def _remove_all(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.queue.maildir.remove(key)
            except (KeyError, OSError):
                # Left on disk, it is delivered again (at least once, never lost).
                log.exception("relay %s: cannot remove the delivered entry", key)

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
        """(host name, address) of each MX of ``domain``, by preference (RFC 5321 5.1).

        A complete answer is remembered until the first of its DNS records expires; a
        failure or a partial answer is not remembered. Deliveries that need the same domain
        at the same time share one lookup.
        """
        cached = self._mx_cache.get(domain)
        if cached is not None and cached[0] > time.time():
            return list(cached[1])
        lookup = self._mx_lookups.get(domain)
        if lookup is None:
            lookup = self._mx_lookups[domain] = self._spawn(self._lookup_mx(domain))
            lookup.add_done_callback(partial(self._lookup_done, domain))
        # Shielded: a delivery that is cancelled does not cancel the others' lookup.
        return list(await asyncio.shield(lookup))

    def _lookup_done(self, domain: str, lookup: asyncio.Task[list[tuple[str, str]]]) -> None:
        if self._mx_lookups.get(domain) is lookup:
            del self._mx_lookups[domain]
        if not lookup.cancelled():
            lookup.exception()  # retrieved here as well: every waiter may have gone

    async def _lookup_mx(self, domain: str) -> list[tuple[str, str]]:
        expires: list[float] = []
        complete = True
        lifetime = float(self.resolver.lifetime)
        answer = await query_dns(self.resolver, domain, "MX", lifetime=lifetime)
        if answer.kind == "nodata":
            names = [domain]  # implicit MX
            complete = False
        elif answer.kind != "answer":
            raise DialError(
                "dns", domain, 25, answer.detail, message=f"MX of {domain}: {answer.detail}"
            )
        else:
            expires.append(answer.expires or 0.0)
            names = mx_exchanges(answer)
        hosts = []
        for name in names:
            addresses = await query_dns(self.resolver, name, "A", lifetime=lifetime)
            if addresses.kind != "answer":
                complete = False
                continue
            expires.append(addresses.expires or 0.0)
            hosts += [(name, a) for a in addresses.records]
        if not hosts:
            raise ProbeError("dns", f"no address for any MX of {domain}")
        if complete:
            self._mx_cache[domain] = (min(expires), hosts)
        return hosts

    async def _send(
        self, hosts: list[tuple[str, str]], entry: QueuedMessage, rcpts: tuple[str, ...]
    ) -> dict[str, str]:
        """Send to the first MX that answers; the recipients it refused, with its reply."""
        error: Exception | None = None
        for name, address in hosts:
            hop = (name, address)
            connection = await self._cached_connection(hop)
            if connection is not None:
                try:
                    return await self._transaction(hop, connection, entry, rcpts)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    # The next hop closed the cached session: a fresh one, as for a first
                    # message (a disconnect is retried like this one way or the other).
                    log.info("relay %s: cached session to %s was closed", entry.key, name)
            try:
                sock = await self.dialer.connect(address, 25)
            except ProbeError as exc:
                error = exc
                continue
            connection = await self._open(sock, name)
            return await self._transaction(hop, connection, entry, rcpts)
        assert error is not None
        raise error

    async def _transaction(
        self,
        hop: tuple[str, str],
        connection: _Connection,
        entry: QueuedMessage,
        rcpts: tuple[str, ...],
    ) -> dict[str, str]:
        """One message over ``connection``. After a completed transaction the session is
        cached for the next message; after anything else it is closed, as before caching."""
        try:
            refused, _ = await connection.client.sendmail(entry.mail_from, list(rcpts), entry.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self._discard(connection)
            return {r.recipient: f"{r.code} {r.message}" for r in exc.recipients}
        except BaseException:
            await self._discard(connection)
            raise
        self._release(hop, connection)
        return {rcpt: f"{reply.code} {reply.message}" for rcpt, reply in refused.items()}

    async def _open(self, sock: socket.socket, name: str) -> _Connection:
        """A greeted session on the connected ``sock``, which it then owns."""
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            smtp_session(
                sock,
                hostname=name,
                local_hostname=self.helo,
                start_tls=False,
                timeout=self.timeout,
            )
        )
        return _Connection(client, stack)

    async def _cached_connection(self, hop: tuple[str, str]) -> _Connection | None:
        """The most recently used idle session with ``hop`` that is still open, if any."""
        idle = self._connections.get(hop)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.client.is_connected and now - connection.idle_since < _IDLE_S:
                return connection
            await self._discard(connection)
        return None

    def _release(self, hop: tuple[str, str], connection: _Connection) -> None:
        connection.uses += 1
        if connection.uses >= _REUSE or not connection.client.is_connected:
            self._spawn(self._quit(connection))
            return
        connection.idle_since = time.monotonic()
        self._connections[hop].append(connection)

    async def _quit(self, connection: _Connection) -> None:
        """End a session politely (QUIT, bounded by the client's timeout), then close it."""
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await connection.session.aclose()

    async def _discard(self, connection: _Connection) -> None:
        """Close a session without QUIT, as after an error."""
        connection.client.close()
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await connection.session.aclose()

    def _close_idle_connections(self) -> float:
        """QUIT the sessions idle for ``_IDLE_S``; seconds until the next one is due."""
        now = time.monotonic()
        wake = _IDLE_S
        for hop, idle in list(self._connections.items()):
            keep = []
            for connection in idle:
                due = connection.idle_since + _IDLE_S - now
                if due <= 0 or not connection.client.is_connected:
                    self._spawn(self._quit(connection))
                else:
                    keep.append(connection)
                    wake = min(wake, due)
            if keep:
                self._connections[hop] = keep
            else:
                del self._connections[hop]
        return wake

    def _spawn(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
