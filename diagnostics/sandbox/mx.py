"""The company's MX: local mailboxes and the redirection rule to the platform.

For a custom address with a redirect, the MX keeps a copy in the local mailbox (unless the
scenario drops it) and queues the message for the platform's inbound address, passed on as
the scenario's faults say (:mod:`diagnostics.sandbox.forwarding`). A message that has crossed
too many hops is refused, as Postfix and Exim refuse a mail loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from diagnostics.sandbox import forwarding, replies
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.relay import Queue
from diagnostics.sandbox.scenario import CompanyMX
from diagnostics.sandbox.smtpserver import Handler, SandboxSMTP, queue_id

log = logging.getLogger("diagnostics.sandbox")


def count_hops(data: bytes) -> int:
    """How many Received fields the message has collected."""
    fields, _ = forwarding.split_message(data)
    return sum(1 for f in fields if forwarding.field_name(f) == "received")


def srs_address(mail_from: str, forwarder_domain: str) -> str:
    """An SRS0 return path for ``mail_from`` (the shape postsrsd writes, without the hash)."""
    if not mail_from or "@" not in mail_from:
        return mail_from
    local, domain = mail_from.rsplit("@", 1)
    return f"SRS0=sandbox=00={domain}={local}@{forwarder_domain}"


class CompanyMXHandler(Handler):
    """aiosmtpd handler of the company MX."""

    def __init__(
        self, spec: CompanyMX, *, domains: set[str], mailboxes: dict[str, Maildir], queue: Queue
    ) -> None:
        self.spec = spec
        self.hostname = spec.hostname
        self.domains = {d.lower() for d in domains}
        self.mailboxes = {a.lower(): box for a, box in mailboxes.items()}
        self.redirects = {a.lower(): target for a, target in spec.redirects.items()}
        self.queue = queue

    def refuse_recipient(self, address: str) -> str | None:
        if address.rsplit("@", 1)[-1].lower() not in self.domains:
            return replies.R554_RELAY_DENIED.format(address=address)
        if address.lower() not in self.mailboxes and address.lower() not in self.redirects:
            return replies.R550_USER_UNKNOWN.format(address=address)
        return None

    async def handle_DATA(self, server: SandboxSMTP, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        if count_hops(content) >= self.spec.max_hops:
            # Exim's words for the same refusal; Postfix bounces with 5.4.6 "mail forwarding loop".
            return replies.R554_TOO_MANY_HOPS
        ident = queue_id()
        faults = self.spec.faults
        for rcpt in envelope.rcpt_tos:
            data = self.received(server, session, recipient=rcpt, ident=ident) + content
            target = self.redirects.get(rcpt.lower())
            box = self.mailboxes.get(rcpt.lower())
            # Both writes are stored (durably, if the world keeps its mail) before the 250;
            # they need not wait for each other.
            writes: list[Awaitable[str]] = []
            if box is not None and (target is None or faults.local_copy):
                writes.append(box.adeliver(data))
            if target is not None:
                passed_on = forwarding.apply(data, faults, forwarder=rcpt, recipient=target)
                if faults.style == "redirect":
                    domain = rcpt.rsplit("@", 1)[-1]
                    sender = (
                        srs_address(envelope.mail_from, domain)
                        if faults.srs
                        else envelope.mail_from
                    )
                else:
                    sender = rcpt
                writes.append(self.queue.put(sender, (target,), passed_on, delay_s=faults.delay_s))
                log.info("mx %s: %s redirected to %s (%s)", ident, rcpt, target, faults.style)
            await asyncio.gather(*writes)
        return replies.R250_QUEUED.format(ident=ident)
