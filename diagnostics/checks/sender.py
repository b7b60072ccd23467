"""Who candidate mail comes from: ``sender.resolution`` and ``sender.display_name``.

The resolution is pure (:mod:`diagnostics.sender`). In the sandbox each distinct identity is
also proven end to end: a message goes to a candidate mailbox by the resolved route — the
(sub)company's SMTP server from a platform egress address with one AUTH, or the platform's
own servers — and the From header, the decoded display name and the envelope sender that
arrive are compared with the table.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import ssl
import time
from dataclasses import dataclass
from email import message_from_bytes

from diagnostics.context import Context
from diagnostics.errors import ProbeError, SandboxError
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net import choose_mechanism, dial, exchanges_of
from diagnostics.registry import check
from diagnostics.roundtrip import new_token
from diagnostics.sender import (
    Identity,
    Resolution,
    UnsafeName,
    check_name,
    decode_from,
    encode_from,
    resolve,
    shared_addresses,
)
from diagnostics.smtpclient import (
    SMTPConnection,
    SMTPProtocolError,
    SMTPRefused,
    Transcript,
    accepted,
)

POLL_S = 0.05


@dataclass(frozen=True)
class Proof:
    """What arrived at the candidate for one identity (or why nothing did)."""

    sent_from: tuple[str, str]
    arrived_from: tuple[str, str] | None = None
    return_path: str | None = None
    error: str | None = None
    cause: Cause | None = None


def _cause_of(code: int, message: str) -> Cause:
    if code == 535:
        return Cause.AUTH_FAILED
    if code in (550, 553, 554) and ("sender" in message.lower() or "5.7.1" in message):
        return Cause.SENDER_NOT_OWNED
    return Cause.UNKNOWN


def classify_send_failure(exc: BaseException, *, heard: bool) -> Cause:
    """The cause a send failure points to, from the exception and what it wraps; ``heard``
    says whether the server had sent a byte before it."""
    chain = [exc, exc.__cause__, exc.__context__]
    step = exc.step if isinstance(exc, ProbeError) else None
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return Cause.TLS_CERTIFICATE
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return Cause.TLS_MISMATCH
    if any(isinstance(e, TimeoutError) for e in chain):
        return Cause.CONNECTION_TIMEOUT
    if step in ("resolve", "dns"):
        return Cause.DNS_FAILURE
    if "STARTTLS" in str(exc):
        return Cause.TLS_MISMATCH
    if isinstance(exc, SandboxError):
        # An address no server plays: the platform's connection would go unanswered.
        return Cause.CONNECTION_TIMEOUT
    if step == "auth" and "mechanism" in str(exc):
        return Cause.AUTH_DISABLED if "offers: none" in str(exc) else Cause.AUTH_MECHANISM
    if isinstance(exc, SMTPProtocolError):
        return Cause.UNKNOWN  # a reply that breaks the grammar: no refusal
    if step == "connect" or isinstance(exc, ConnectionRefusedError) or not heard:
        # Refused, or closed before a single byte: as a deny rule's reset refuses.
        return Cause.CONNECTION_REFUSED
    if step == "banner":
        return Cause.UNKNOWN  # half a greeting, then a close: a broken protocol
    if isinstance(exc, ConnectionError) or any(
        words in str(exc) for words in ("closed the connection", "connection was lost")
    ):
        # Greeted, then ended without a reply: a server that must close says 421 first
        # (RFC 5321 section 3.8), so a silent close is the server not serving for now.
        return Cause.TEMPORARY_FAILURE
    return Cause.UNKNOWN


async def _send(
    context: Context, identity: Identity, data: bytes, recipient: str, transcript: Transcript
) -> None:
    timeouts = context.timeouts
    step = min(timeouts.banner, timeouts.command)
    source = next(iter(context.egress_sources.values()), None)
    smtp = identity.smtp
    helo = f"outbound.{context.config.profile.inbound_domain}"
    if smtp is not None:
        server = smtp.host
        sock = await dial(context, smtp.host, smtp.port, source=source)
    else:
        domain = recipient.rsplit("@", 1)[-1]
        [server, *_] = await exchanges_of(context.resolver, domain, lifetime=timeouts.dns)
        sock = await dial(context, server, 25, source=source)
    connection = await SMTPConnection.start(
        sock,
        server_name=server,
        timeout=timeouts.connect,
        implicit_tls=context.trust if smtp is not None and smtp.encryption == "tls" else None,
        transcript=transcript,
    )
    try:
        accepted("banner", await connection.read_reply("banner", step))
        ehlo = accepted("ehlo", await connection.command("ehlo", f"EHLO {helo}", step))
        if smtp is not None:
            if smtp.encryption == "starttls":
                if "STARTTLS" not in ehlo.keywords:
                    raise ProbeError("starttls", "STARTTLS extension not supported by server")
                accepted("starttls", await connection.command("starttls", "STARTTLS", step))
                await connection.starttls(context.trust, step)
                ehlo = accepted("ehlo", await connection.command("ehlo", f"EHLO {helo}", step))
            if smtp.encryption != "none" and connection.tls is None:
                raise ProbeError("auth", "refusing to send AUTH without TLS")
            offered = ehlo.keywords.get("AUTH", "").split()
            mechanism = choose_mechanism(offered)
            if mechanism is None:
                raise ProbeError(
                    "auth",
                    "no supported AUTH mechanism offered "
                    f"(server offers: {' '.join(offered) or 'none'})",
                )
            reply = await connection.authenticate(
                mechanism.upper(), smtp.account, smtp.password, step
            )
            if reply.code != 235:
                raise SMTPRefused("auth", reply)
        await connection.send_message(
            identity.address,
            [recipient],
            data,
            timeout=step,
            data_timeout=timeouts.data,
        )
    finally:
        await connection.close()


async def prove(context: Context, identity: Identity, name: str) -> Proof:
    """Send as ``identity`` with ``name`` to a candidate mailbox and read what arrived."""
    mailboxes = context.mailboxes
    assert mailboxes is not None
    token = new_token()
    recipient = f"proof-{token}@{mailboxes.sender.rsplit('@', 1)[-1]}"
    # A message without SMTPUTF8 names an internationalised domain by its A-label (RFC 5890).
    address = envelope_address(identity.address)
    header = encode_from(name, address)
    data = (
        f"{header}\r\nTo: {recipient}\r\nSubject: Ihre Bewerbung {token}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{token}@{address.rsplit('@', 1)[-1]}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This message proves the sender identity of candidate mail.\r\n"
    ).encode("ascii")
    sent = (name, address)
    transcript = Transcript()
    try:
        await _send(context, identity, data, recipient, transcript)
    except SMTPRefused as exc:
        reply = exc.reply
        if exc.step == "rcpt":
            return Proof(sent, error=str(reply), cause=Cause.RECIPIENT_UNKNOWN)
        return Proof(sent, error=str(reply), cause=_cause_of(reply.code, reply.text))
    except (ProbeError, SandboxError, OSError) as exc:
        heard = any(line.side == "S" for line in transcript.lines)
        return Proof(sent, error=str(exc), cause=classify_send_failure(exc, heard=heard))
    deadline = time.perf_counter() + context.timeouts.roundtrip
    while time.perf_counter() < deadline:
        arrived = mailboxes.received_by(recipient)
        if arrived:
            message = message_from_bytes(arrived[0].data, policy=email.policy.compat32)
            raw_from = message.get("From", "")
            field = "From: " + str(raw_from)
            return_path = email.utils.parseaddr(str(message.get("Return-Path", "")))[1] or None
            return Proof(sent, decode_from(field), return_path)
        await asyncio.sleep(POLL_S)
    return Proof(
        sent,
        error=f"nothing arrived at {recipient} within {context.timeouts.roundtrip:g} s",
        cause=Cause.CONNECTION_TIMEOUT,
    )


# -- pure tier --------------------------------------------------------------------------------


def classify_resolution(row: Resolution, context: Context, proof: Proof | None) -> Outcome:
    profile = context.config.profile
    ui = profile.ui
    identity = row.identity
    shown = row.as_row()["from"]
    title = f"{row.position}: {shown} via {identity.server}"
    detail = f"{identity.why}. From: {shown}."
    smtp = identity.smtp
    try:
        check_name(row.display_name)
    except UnsafeName as exc:
        return Outcome(
            Status.FAIL,
            f"{row.position}: the sender name cannot be used",
            f"{detail} {exc}.",
            Cause.UNKNOWN,
            "Correct the name; see sender.display_name.",
        )
    if smtp is not None and smtp.account.casefold() != identity.address.casefold():
        return Outcome(
            Status.FAIL,
            title,
            detail + f" The SMTP account is {smtp.account}, not {identity.address}.",
            Cause.SENDER_NOT_OWNED,
            f"In {ui.settings_path} for {identity.sender}, set Account to {identity.address}.",
        )
    if proof is not None:
        if proof.error is not None:
            return Outcome(
                Status.FAIL,
                f"{row.position}: mail as {identity.address} does not get through",
                detail + f" Sending as {identity.address} failed: {proof.error}.",
                proof.cause or Cause.UNKNOWN,
                "See the smtp.* findings of " + identity.sender + " for the setting to change.",
            )
        if (
            proof.arrived_from != proof.sent_from
            or (proof.return_path or "").casefold() != identity.address.casefold()
        ):
            got = (
                f"{proof.arrived_from[0]!r} <{proof.arrived_from[1]}>"
                if proof.arrived_from
                else "nothing"
            )
            return Outcome(
                Status.FAIL,
                f"{row.position}: the candidate sees another sender",
                detail
                + f" Sent From {proof.sent_from[0]!r} <{proof.sent_from[1]}>, envelope {identity.address}; "
                f"arrived From {got}, envelope {proof.return_path}.",
                Cause.SENDER_NOT_OWNED
                if proof.arrived_from and proof.arrived_from[1] != identity.address
                else Cause.UNKNOWN,
                f"Check the server {identity.server} for sender rewriting (masquerading, canonical maps) of {identity.address}.",
            )
        detail += f" Proven: a message sent this way arrived with From {shown} and envelope sender {identity.address}."
    if identity.route == "platform" and "custom address but no SMTP" in identity.why:
        return Outcome(
            Status.WARN,
            title,
            detail + " Candidates see the platform's address, not the company's.",
            remediation=f"In {ui.settings_path} for {identity.sender}, answer '{ui.use_for_sending}' with Yes "
            f"and enter the SMTP settings ({', '.join(ui.smtp_fields)}).",
        )
    return Outcome(Status.PASS, title, detail)


def classify_name(name: str, address: str, where: str) -> Outcome:
    try:
        field = encode_from(name, address)
    except UnsafeName as exc:
        return Outcome(
            Status.FAIL,
            f"{name!r} cannot go into a From header",
            f"{exc}: a line break in a header "
            "ends it and would let the rest be read as further headers (header injection).",
            Cause.UNKNOWN,
            f"Remove the line break from the name in {where}.",
        )
    decoded = decode_from(field)
    if decoded != (name, address):
        return Outcome(
            Status.FAIL,
            f"{name!r} does not survive encoding",
            f"Encoded {field!r}, decoded {decoded!r}.",
            Cause.UNKNOWN,
            f"Simplify the name in {where}.",
        )
    how = (
        "encoded per RFC 2047"
        if not name.isascii()
        else ("quoted per RFC 5322" if field.count('"') else "as is")
    )
    return Outcome(
        Status.PASS,
        f"{name} is safe in a From header",
        f"{field} ({how}); it decodes back exactly.",
    )


# -- registered checks ------------------------------------------------------------------------


@check("sender.resolution", flow="sender", title="Who each candidate mail comes from")
async def resolution(context: Context) -> list[Finding]:
    config = context.config
    rows = resolve(config)
    proofs: dict[tuple[str, str, str], asyncio.Future[Proof]] = {}
    if context.mailboxes is not None:
        for row in rows:
            key = (row.identity.address, row.identity.route, row.display_name)
            if key not in proofs and "\n" not in row.display_name and "\r" not in row.display_name:
                proofs[key] = asyncio.ensure_future(prove(context, row.identity, row.display_name))
    findings = []
    for row in rows:
        key = (row.identity.address, row.identity.route, row.display_name)
        proof = await proofs[key] if key in proofs else None
        evidence = {
            **row.as_row(),
            "proof": None
            if proof is None
            else {
                "sent_from": list(proof.sent_from),
                "arrived_from": list(proof.arrived_from) if proof.arrived_from else None,
                "return_path": proof.return_path,
                "error": proof.error,
            },
        }
        findings.append(
            classify_resolution(row, context, proof).finding(
                "sender.resolution", row.owner, evidence
            )
        )
    for address, users in shared_addresses(config).items():
        findings.append(
            Outcome(
                Status.WARN,
                f"{', '.join(users)} share {address}",
                "Two (sub)companies with one custom address: replies from candidates cannot be told apart, "
                "and each sends with its own name from the same address.",
                remediation=f"Give each (sub)company its own custom address in {config.profile.ui.settings_path}.",
            ).finding("sender.resolution", users[-1], {"address": address, "subcompanies": users})
        )
    return findings


@check("sender.display_name", flow="sender", title="Sender names are safe and encoded")
async def display_names(context: Context) -> list[Finding]:
    config = context.config
    ui = config.profile.ui
    findings = []
    address = config.company.custom_address or config.inbound_address
    if config.company.sender_name == "employee":
        for employee in config.employees:
            outcome = classify_name(employee.name, employee.email, "the employee's profile")
            findings.append(
                outcome.finding("sender.display_name", config.company.name, {"name": employee.name})
            )
    for identity in config.identities():
        where = ui.company_name_path if identity is config.company else "the subcompany's settings"
        outcome = classify_name(identity.name, identity.custom_address or address, where)
        findings.append(
            outcome.finding("sender.display_name", identity.name, {"name": identity.name})
        )
    return findings
