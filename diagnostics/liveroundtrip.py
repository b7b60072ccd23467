"""The live round trip: one tagged message to the custom address, watched in the company's own
mailbox over IMAP (``maildiag audit --roundtrip``).

I/O only; ``redirect.*`` classifies what it saw. The steps, each bounded:

1. open the mailbox (:class:`~diagnostics.model.account.MailboxSettings`: the file's
   ``mailbox:``, or the custom address's own on the SMTP host) and log in, with the password
   or with an OAuth2 token that ``token_command`` prints (XOAUTH2);
2. send the message: ``via="mx"`` to the MX that DNS names for the address, on port 25, as a
   candidate's server does (envelope sender: the mailbox's own address, so that a bounce
   comes back where the tool can read it); ``via="submission"`` through the company's SMTP
   server with its account;
3. watch the mailbox (IMAP IDLE on the inbox where offered, searches of every folder
   otherwise and at the end) for the kept copy and for a bounce that names the tag, until
   the round trip's timeout; after the copy arrives, a bounce is awaited a little longer;
4. with ``clean``, delete the tool's own messages (copies and bounces carrying the tag) and
   nothing else, only where the server can expunge by UID.

The platform's inbox cannot be read from here: what reached it is for the admin to look up
(the tag is in the subject), and the findings say where.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import email.utils
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Literal

from diagnostics.errors import DialError, ProbeError, SandboxError, StepTimeout
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause
from diagnostics.net.delivery import ask_recipient, deliver_to_mx
from diagnostics.net.imap import IMAPClient, IMAPError, IMAPRefused, decode_folder
from diagnostics.parse.dkim import DKIMKey
from diagnostics.redact import redact
from diagnostics.roundtrip import (
    TOKEN_HEADER,
    Arrival,
    LiveWatch,
    RoundTrip,
    RoundTripOptions,
    new_token,
    probe_message,
)
from diagnostics.secrets import Secret
from diagnostics.smtpclient import SMTPConnection, SMTPRefused, accepted

if TYPE_CHECKING:
    from diagnostics.context import Context
    from diagnostics.model.account import MailboxSettings, SendingIdentity

Via = Literal["mx", "submission"]
# Once the copy is in, how long a bounce is still awaited (bounded by the round trip's time).
BOUNCE_GRACE_S = 20.0
# Between searches of the inbox (IDLE wakes earlier when the server reports news).
POLL_S = 2.0
MAX_FOLDERS = 200
MAX_CANDIDATES = 20
MAX_TOKEN_BYTES = 64 * 1024
_DAEMONS = ("mailer-daemon", "postmaster", "microsoftexchange", "mail delivery")


class TokenCommandError(ProbeError):
    """``token_command`` did not print a token."""


async def run_token_command(argv: tuple[str, ...], timeout: float) -> Secret:
    """The OAuth2 access token ``argv`` prints on its first line (no shell; bounded in time
    and size). TokenCommandError says what went wrong, never what it printed."""
    name = argv[0]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise TokenCommandError("token", f"token_command {name}: {exc.strerror}") from None
    try:
        async with asyncio.timeout(timeout):
            assert process.stdout is not None and process.stderr is not None
            out = await process.stdout.read(MAX_TOKEN_BYTES)
            err = await process.stderr.read(4096)
            code = await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise TokenCommandError(
            "token", f"token_command {name} printed no token within {timeout:g} s"
        ) from None
    lines = out.decode("utf-8", "replace").strip().splitlines()
    if code != 0 or not lines or not lines[0].strip():
        said = err.decode("utf-8", "replace").strip().splitlines()
        tail = redact(said[-1][:200]) if said else "nothing on stderr"
        raise TokenCommandError(
            "token",
            f"token_command {name} exited with status {code} and printed no token ({tail})"
            if code != 0
            else f"token_command {name} printed no token",
        )
    return Secret(lines[0].strip(), source=f"command:{name}")


async def open_mailbox(context: Context, settings: MailboxSettings) -> tuple[IMAPClient, str]:
    """A logged-in IMAP session on the mailbox, and the login mechanism used."""
    client = await IMAPClient.open(
        context,
        settings.host,
        settings.port,
        encryption=settings.encryption,
        trust=context.trust,
        timeout=context.timeouts.command,
    )
    try:
        if settings.token_command is not None:
            token = await run_token_command(settings.token_command, context.timeouts.command)
            mechanism = await client.xoauth2(settings.account, token)
        else:
            assert settings.password is not None
            mechanism = await client.login(settings.account, settings.password)
    except Exception:
        await client.logout()
        raise
    except BaseException:
        client.close()
        raise
    return client, mechanism


def is_bounce(data: bytes | Message) -> bool:
    """Whether ``data`` is a delivery report (RFC 3464) or a mail system's non-delivery
    notice, rather than a person's mail or an auto-reply."""
    message = (
        email.message_from_bytes(data, policy=email.policy.compat32)
        if isinstance(data, bytes)
        else data
    )
    if message.get_content_type() == "multipart/report":
        return True
    sender = str(message.get("From", "")).lower()
    return any(daemon in sender for daemon in _DAEMONS)


def _mentions(data: bytes, token: str, message_id: str) -> bool:
    return token.encode() in data or message_id.encode() in data


def _is_copy(message: Message, token: str) -> bool:
    return str(message.get(TOKEN_HEADER, "")).strip() == token or token in str(
        message.get("Subject", "")
    )


@dataclass
class _Found:
    copies: list[Arrival] = field(default_factory=list)
    bounces: list[Arrival] = field(default_factory=list)
    uids: dict[str, list[int]] = field(default_factory=dict)


async def search_folder(
    client: IMAPClient, folder: str, token: str, message_id: str, since: str, found: _Found
) -> None:
    """Add the copies and bounces in ``folder`` that carry ``token`` to ``found``."""
    await client.examine(folder)
    quoted = f'"{token}"'
    copies = await client.uid_search(f"OR HEADER {TOKEN_HEADER} {quoted} SUBJECT {quoted}")
    candidates = await client.uid_search(
        f"SINCE {since} OR OR TEXT {quoted} FROM MAILER-DAEMON FROM postmaster"
    )
    known = found.uids.get(folder, [])
    for uid in [*copies, *[u for u in candidates if u not in copies]][:MAX_CANDIDATES]:
        if uid in known:
            continue
        data = await client.uid_fetch(uid)
        if not _mentions(data, token, message_id):
            continue
        arrival = Arrival(decode_folder(folder), data, time.time())
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        if _is_copy(message, token):
            found.copies.append(arrival)
        elif is_bounce(message):
            found.bounces.append(arrival)
        else:
            continue
        found.uids.setdefault(folder, []).append(uid)


def mailbox_failure(exc: BaseException) -> tuple[str, str]:
    """(step, what went wrong) of a mailbox that could not be opened or read."""
    if isinstance(exc, IMAPRefused):
        return exc.step, f"the IMAP server refused: {redact(exc.said)}"
    if isinstance(exc, ProbeError):
        return exc.step, redact(str(exc).split(": ", 1)[-1])
    return "connect", redact(str(exc))


async def _send_via_submission(
    context: Context, identity: SendingIdentity, address: str, data: bytes
) -> str:
    from diagnostics.net.dial import dial
    from diagnostics.net.smtp import choose_mechanism

    smtp = identity.smtp
    if smtp is None:
        raise ProbeError("submission", "this (sub)company has no SMTP settings to send with")
    timeouts = context.timeouts
    sock = await dial(context, smtp.host, smtp.port)
    connection = await SMTPConnection.start(
        sock,
        server_name=smtp.host,
        timeout=timeouts.connect,
        implicit_tls=context.trust if smtp.encryption == "tls" else None,
    )
    try:
        accepted("banner", await connection.read_reply("banner", timeouts.banner))
        ehlo = await connection.command("ehlo", f"EHLO {connection.helo_name}", timeouts.command)
        accepted("ehlo", ehlo)
        if smtp.encryption == "starttls":
            accepted("starttls", await connection.command("starttls", "STARTTLS", timeouts.command))
            await connection.starttls(context.trust, timeouts.command)
            ehlo = await connection.command(
                "ehlo", f"EHLO {connection.helo_name}", timeouts.command
            )
            accepted("ehlo", ehlo)
        offered = [
            word.lower()
            for line in ehlo.lines
            if line.upper().startswith(("AUTH ", "AUTH="))
            for word in line[5:].split()
        ]
        mechanism = choose_mechanism(offered)
        if mechanism is None:
            raise ProbeError("auth", f"{smtp.host} offers no AUTH PLAIN or LOGIN")
        reply = await connection.authenticate(
            mechanism, smtp.account, smtp.password, timeouts.command
        )
        if reply.code != 235:
            raise SMTPRefused("auth", reply)
        await connection.send_message(
            address, [address], data, timeout=timeouts.command, data_timeout=timeouts.data
        )
    finally:
        await connection.close()
    return f"{smtp.host}:{smtp.port}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(when: float) -> str:
    """An IMAP SEARCH date (``5-Dec-2026``), the day before ``when`` (UTC): a server's own
    time zone may be a day behind, and SINCE only narrows the search."""
    day = time.gmtime(when - 86_400)
    return f"{day.tm_mday}-{_MONTHS[day.tm_mon - 1]}-{day.tm_year}"


async def _watch(
    client: IMAPClient, trip: RoundTrip, watch: LiveWatch, deadline: float, started: float
) -> _Found:
    """Look for the copy and a bounce until ``deadline`` (perf_counter); the inbox at every
    turn (IDLE between turns where offered), every folder now and then and at the end."""
    found = _Found()
    message_id = f"<{trip.token}@"
    since = imap_date(trip.sent_at)
    folders: list[str] | None = None
    turn = 0
    while True:
        await search_folder(client, "INBOX", trip.token, message_id, since, found)
        now = time.perf_counter()
        if found.copies and trip.latency_s is None:
            trip.latency_s = now - started
            watch.events.append(f"copy found after {trip.latency_s:.1f} s")
            deadline = min(deadline, now + BOUNCE_GRACE_S)
        if found.bounces or now >= deadline:
            break
        turn += 1
        if turn % 5 == 0 and not found.copies:
            folders = folders or (await client.folders())[:MAX_FOLDERS]
            for folder in folders:
                if folder.upper() != "INBOX":
                    await search_folder(client, folder, trip.token, message_id, since, found)
            if found.bounces:
                break
            await client.examine("INBOX")
        watch.idle = watch.idle or "IDLE" in client.capabilities
        await client.idle(max(0.0, min(POLL_S, deadline - time.perf_counter())))
    folders = folders or (await client.folders())[:MAX_FOLDERS]
    watch.folders_searched = len(folders)
    for folder in folders:
        if folder.upper() != "INBOX":
            await search_folder(client, folder, trip.token, message_id, since, found)
    if found.copies and trip.latency_s is None:
        trip.latency_s = time.perf_counter() - started
    return found


async def _clean(client: IMAPClient, found: _Found, watch: LiveWatch) -> None:
    removed = 0
    for folder, uids in found.uids.items():
        await client.examine(folder, writable=True)
        if not await client.delete(uids):
            watch.clean_note = (
                "the server cannot delete single messages (no UIDPLUS): the test messages "
                "were left in place"
            )
            break
        removed += len(uids)
    watch.cleaned = removed


async def _platform_answer(context: Context) -> tuple[str | None, int | None, str]:
    """The platform's inbound MX, its RCPT TO code for the account's inbound address and its
    words (or None, None and why it could not be asked); asked once per run."""
    key = ("platform-target",)
    if key not in context.memo:

        async def ask() -> tuple[str | None, int | None, str]:
            try:
                exchange, reply = await ask_recipient(context, context.config.inbound_address)
            except SMTPRefused as exc:
                return None, exc.reply.code, f"{exc.step}: {exc.reply}"
            except (ProbeError, SandboxError, OSError) as exc:
                return None, None, redact(str(exc))
            return exchange, reply.code, str(reply)

        context.memo[key] = asyncio.ensure_future(ask())
    answer: tuple[str | None, int | None, str] = await asyncio.shield(context.memo[key])
    return answer


async def _probe_platform(context: Context, watch: LiveWatch) -> None:
    exchange, code, said = await _platform_answer(context)
    watch.platform_mx = exchange
    watch.platform_code = code
    if code is None:
        watch.platform_error = said
    else:
        watch.platform_reply = said
        watch.events.append(f"platform MX {exchange} answered RCPT TO: {said}")


async def probe_live_roundtrip(
    context: Context, identity: SendingIdentity, address: str, options: RoundTripOptions
) -> RoundTrip:
    """Send the tagged message to ``address`` and watch the company mailbox; never raises
    for a failure the findings report."""
    trip = RoundTrip(address)
    watch = LiveWatch(via=options.via, sent=options.send)
    trip.live = watch
    if options.probe_platform:
        await _probe_platform(context, watch)
        if watch.platform_refused:
            watch.sent = False
            return trip
    if not options.send:
        return trip
    settings = identity.mailbox_settings()
    if settings is None:
        watch.mailbox_step = "config"
        watch.mailbox_error = (
            "no mailbox to read: this (sub)company has no SMTP settings to take it from "
            "and no mailbox: of its own"
        )
        return trip
    watch.mailbox = settings.where
    watch.credential = "token" if settings.token_command is not None else "password"
    try:
        client, watch.login = await open_mailbox(context, settings)
    except (ProbeError, SandboxError, OSError) as exc:
        watch.mailbox_step, watch.mailbox_error = mailbox_failure(exc)
        return trip
    try:
        await _round_trip(context, client, trip, watch, identity, settings, options)
    except (IMAPError, StepTimeout) as exc:
        watch.mailbox_step, watch.mailbox_error = mailbox_failure(exc)
    finally:
        await client.logout()
    return trip


async def _round_trip(
    context: Context,
    client: IMAPClient,
    trip: RoundTrip,
    watch: LiveWatch,
    identity: SendingIdentity,
    settings: MailboxSettings,
    options: RoundTripOptions,
) -> None:
    # A bounce goes to the envelope sender: the mailbox's own address, read here. Through
    # the submission server the account may send only as the custom address.
    use_mailbox = options.via == "mx" and "@" in settings.account
    sender = settings.account if use_mailbox else envelope_address(trip.address)
    trip.token = new_token()
    key = None
    if identity.dkim is not None:
        # Signed as the company's own server signs: d= the custom address's domain.
        domain = envelope_address(trip.address).rsplit("@", 1)[-1]
        key = DKIMKey(domain, identity.dkim.selector, identity.dkim.key.reveal().encode(), "")
        watch.signed_by = key.record_name.rstrip(".")
    trip.sent = probe_message(
        trip.token, sender=sender, recipient=envelope_address(trip.address), key=key
    )
    trip.sent_at = time.time()
    started = time.perf_counter()
    try:
        if options.via == "submission":
            trip.delivered_to = await _send_via_submission(
                context, identity, trip.address, trip.sent
            )
        else:
            trip.delivered_to = await deliver_to_mx(context, trip.address, trip.sent, sender)
    except SMTPRefused as exc:
        trip.delivery_error = f"{exc.step}: {exc.reply}"
        return
    except (DialError, ProbeError, SandboxError, OSError) as exc:
        trip.delivery_error = str(exc)
        trip.delivery_cause = (
            Cause.DNS_FAILURE
            if isinstance(exc, ProbeError) and exc.step == "resolve"
            else Cause.CONNECTION_TIMEOUT
            if isinstance(exc, StepTimeout)
            else Cause.CONNECTION_REFUSED
        )
        return
    watch.events.append(f"sent via {options.via} to {trip.delivered_to}")
    found = await _watch(client, trip, watch, started + context.timeouts.roundtrip, started)
    trip.waited_s = time.perf_counter() - started
    trip.local_copies = found.copies
    trip.bounces = found.bounces
    if options.clean:
        await _clean(client, found, watch)


_TAG = re.compile(r"maildiag-rt-[0-9a-f]{16}")


def tag_of(data: bytes) -> str | None:
    """The round trip's tag a message carries (its token header, else its subject)."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for value in (message.get(TOKEN_HEADER, ""), message.get("Subject", "")):
        match = _TAG.search(str(value))
        if match:
            return match.group(0)
    return None


def distinct_mailboxes(identities: Iterable[SendingIdentity]) -> list[MailboxSettings]:
    """The mailboxes of ``identities`` that can be read, each once (by host, port, login)."""
    found: dict[tuple[str, int, str], MailboxSettings] = {}
    for identity in identities:
        settings = identity.mailbox_settings()
        if settings is not None:
            found.setdefault((settings.host, settings.port, settings.account), settings)
    return list(found.values())


def _mailboxes_for(context: Context, arrived: bytes) -> list[MailboxSettings]:
    """The mailboxes to look in: the one of the custom address the message was sent to,
    else every (sub)company's (each mailbox once)."""
    message = email.message_from_bytes(arrived, policy=email.policy.compat32)
    named = " ".join(
        str(v)
        for name in ("To", "Cc", "Delivered-To", "X-Original-To")
        for v in message.get_all(name, [])
    ).casefold()
    identities = [i for i in context.config.identities() if i.custom_address is not None]
    addressed = [i for i in identities if str(i.custom_address).casefold() in named]
    return distinct_mailboxes(addressed or identities)


async def fetch_original(
    context: Context, arrived: bytes, tag: str | None = None
) -> tuple[bytes, str]:
    """The copy the company mailbox kept of the message ``arrived``: found by ``tag`` (a round
    trip's), else by the arrived message's Message-ID; and where it was (mailbox, folder).
    LookupError when no mailbox holds it; IMAPError, StepTimeout, DialError for a mailbox
    that cannot be read."""
    if tag is not None:
        criteria = f'OR HEADER {TOKEN_HEADER} "{tag}" SUBJECT "{tag}"'
    else:
        message = email.message_from_bytes(arrived, policy=email.policy.compat32)
        message_id = str(message.get("Message-ID", "")).strip()
        if not message_id:
            raise LookupError("the message has no Message-ID to look for; give --tag")
        try:
            from diagnostics.net.imap import quote

            criteria = f"HEADER Message-ID {quote(message_id)}"
        except ValueError:
            raise LookupError(f"a Message-ID IMAP cannot search for: {message_id!r}") from None
    mailboxes = _mailboxes_for(context, arrived)
    if not mailboxes:
        raise LookupError("no (sub)company of the account file has a mailbox to read")
    searched = []
    for settings in mailboxes:
        client, _ = await open_mailbox(context, settings)
        try:
            for folder in (await client.folders())[:MAX_FOLDERS]:
                await client.examine(folder)
                uids = await client.uid_search(criteria)
                if uids:
                    data = await client.uid_fetch(uids[0])
                    return data, f"{settings.where}, folder {decode_folder(folder)}"
        finally:
            await client.logout()
        searched.append(settings.where)
    what = f"tag {tag}" if tag else "its Message-ID"
    raise LookupError(f"no copy with {what} in {', '.join(searched)}")
