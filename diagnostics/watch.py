"""``maildiag watch CONFIG``: the platform's own test mail, seen arriving in the company mailbox.

The admin presses "Send test mail" in the platform; the platform writes to the custom address,
whose server keeps a copy and redirects it. This watches each (sub)company's mailbox over IMAP
(the same ``mailbox:`` a live round trip reads) for what arrives from then on:

- the platform's message, recognised by a sender in the platform's domain or a ``Received``
  line from one of its egress IPs: it proves the inbound path up to the company server, and
  its headers are analysed (hops, delays, loop signs);
- a bounce (a delivery report or a mail system's notice), read by the diagnosis rules;
- anything else, listed.

It stops at ``timeout``, or when no bounce followed the platform's message for a quarter of
it (20 s at most). I/O
through :mod:`diagnostics.net.imap`; what a message is, is decided by the pure functions here.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from diagnostics.errors import DialError, ProbeError, SandboxError, StepTimeout
from diagnostics.liveroundtrip import (
    BOUNCE_GRACE_S,
    distinct_mailboxes,
    is_bounce,
    mailbox_failure,
    open_mailbox,
)
from diagnostics.net.imap import IMAPError

if TYPE_CHECKING:
    from diagnostics.context import Context
    from diagnostics.model.account import MailboxSettings
    from diagnostics.profiles import PlatformProfile

Kind = Literal["platform", "bounce", "other"]
POLL_S = 2.0
MAX_NEW = 50
_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")


@dataclass
class Seen:
    """One message that arrived while watching."""

    mailbox: str
    kind: Kind
    sender: str
    subject: str
    at: float
    summary: str = ""
    cause: str | None = None
    data: bytes = field(default=b"", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "kind": self.kind,
            "from": self.sender,
            "subject": self.subject,
            "arrived": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "summary": self.summary,
            "cause": self.cause,
        }


@dataclass
class WatchResult:
    """What the watch saw, and the mailboxes it could not read."""

    seen: list[Seen] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    waited_s: float = 0.0

    @property
    def platform(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "platform"]

    @property
    def bounces(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "bounce"]

    @property
    def exit_code(self) -> int:
        """0: the platform's message arrived and nothing bounced; 1 otherwise."""
        return 0 if self.platform and not self.bounces and not self.unreadable else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": [s.to_dict() for s in self.seen],
            "unreadable": dict(self.unreadable),
            "waited_s": round(self.waited_s, 1),
        }


def _domain_of(address: str) -> str:
    return email.utils.parseaddr(address)[1].rpartition("@")[2].lower()


def from_platform(data: bytes, profile: PlatformProfile) -> bool:
    """Whether ``data`` was sent by the platform: a sender in its domain (the inbound domain
    or its parent), or a ``Received`` line naming one of its egress IPs."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    inbound = profile.inbound_domain.lower()
    parent = inbound.split(".", 1)[1] if inbound.count(".") >= 2 else inbound
    for name in ("From", "Sender", "Return-Path"):
        domain = _domain_of(str(message.get(name, "")))
        if domain and (domain == parent or domain.endswith("." + parent)):
            return True
    for received in message.get_all("Received", []):
        for text in _IP.findall(str(received)):
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if any(address in network for network in profile.egress_ips):
                return True
    return False


def describe(data: bytes, mailbox: str, profile: PlatformProfile) -> Seen:
    """What one arrived message is, with a one-line summary."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    sender = str(message.get("From", "")).strip()
    subject = str(message.get("Subject", "")).strip()
    now = time.time()
    if is_bounce(data):
        from diagnostics.diagnose import diagnose

        diagnosis = diagnose(data)
        return Seen(
            mailbox,
            "bounce",
            sender,
            subject,
            now,
            diagnosis.explanation,
            diagnosis.cause.value,
            data,
        )
    if from_platform(data, profile):
        from diagnostics.parse.headers.analysis import analyse_headers

        analysis = analyse_headers(data)
        hops = len(analysis.hops)
        delay = f", {analysis.total_delay_s:.0f} s on the way" if analysis.total_delay_s else ""
        loop = "; signs of a loop" if analysis.loop.looped else ""
        summary = f"the platform's message reached the company mailbox ({hops} hops{delay}){loop}"
        return Seen(mailbox, "platform", sender, subject, now, summary, None, data)
    return Seen(mailbox, "other", sender, subject, now, "", None, data)


async def _watch_one(
    context: Context,
    settings: MailboxSettings,
    deadline: float,
    timeout: float,
    result: WatchResult,
    on_seen: Callable[[Seen], None],
) -> None:
    client, _ = await open_mailbox(context, settings)
    try:
        uidnext = await client.examine("INBOX")
        if uidnext is None:
            # No UIDNEXT: everything there now counts as old.
            known = await client.uid_search("ALL")
            uidnext = (max(known) + 1) if known else 1
        grace: float | None = None
        while True:
            uids = [u for u in await client.uid_search(f"UID {uidnext}:*") if u >= uidnext]
            for uid in uids[:MAX_NEW]:
                seen = describe(await client.uid_fetch(uid), settings.where, context.config.profile)
                result.seen.append(seen)
                on_seen(seen)
                uidnext = max(uidnext, uid + 1)
                if seen.kind == "platform" and grace is None:
                    grace = time.perf_counter() + min(BOUNCE_GRACE_S, timeout / 4)
            now = time.perf_counter()
            if now >= deadline or result.bounces or (grace is not None and now >= grace):
                return
            limit = min(deadline, grace or deadline) - now
            await client.idle(max(0.0, min(POLL_S, limit)))
    finally:
        await client.logout()


async def watch(
    context: Context, *, timeout: float, on_seen: Callable[[Seen], None] = lambda s: None
) -> WatchResult:
    """Watch every (sub)company's mailbox (each once) for ``timeout`` seconds at most."""
    result = WatchResult()
    mailboxes = distinct_mailboxes(context.config.identities())
    started = time.perf_counter()
    deadline = started + timeout

    async def one(settings: MailboxSettings) -> None:
        try:
            await _watch_one(context, settings, deadline, timeout, result, on_seen)
        except (IMAPError, StepTimeout, DialError, ProbeError, SandboxError, OSError) as exc:
            step, said = mailbox_failure(exc)
            result.unreadable[settings.where] = f"{step}: {said}"

    await asyncio.gather(*(one(s) for s in mailboxes))
    result.waited_s = time.perf_counter() - started
    return result
