"""How the company server passed the message on (``headers.forwarding_style``): a redirect, or
one of the forwarding faults, each with its evidence, and what IT should change for it.

The fixes are data (``data/forwarding_fixes.yaml``): one text per style and server family,
with a generic text for an unknown family.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from functools import cache
from types import MappingProxyType
from typing import Any, Literal, get_args

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Cause, Outcome, Status
from diagnostics.parse.headers.lists import list_signs, returned_report
from diagnostics.parse.headers.message import (
    MAX_DEPTH,
    MessageInput,
    and_list,
    as_message,
    clip,
    decoded_text,
    header_addresses,
    header_text,
    squash,
    subparts,
)
from diagnostics.parse.headers.received import FAMILIES, Hop, parse_received
from diagnostics.parse.headers.retention import HeaderDiff, Retention, compare_retention

# Gravest first: a primary style is the first of these that applies. The two forward styles
# exclude each other, "mailing_list" and "redirect"; "mailing_list" (a list server passed the
# message on to its members) excludes "redirect"; the four modifications can come with either.
Style = Literal[
    "forward_inline",
    "forward_attachment",
    "from_rewritten",
    "headers_stripped",
    "mailing_list",
    "subject_tagged",
    "footer_appended",
    "redirect",
]
STYLES: tuple[Style, ...] = get_args(Style)


@dataclass(frozen=True)
class StyleVerdict:
    """How the message was passed on: styles gravest first, and the evidence for each.

    No style at all means the message shows no sign of having been passed on.
    """

    styles: tuple[Style, ...]
    evidence: tuple[str, ...]
    with_original: bool

    @property
    def primary(self) -> Style | None:
        return self.styles[0] if self.styles else None

    @property
    def faults(self) -> tuple[Style, ...]:
        """Every style but ``redirect``."""
        return tuple(s for s in self.styles if s != "redirect")

    def outcome(
        self,
        family: str | None = None,
        *,
        custom_address: str | None = None,
        inbound_address: str | None = None,
    ) -> Outcome:
        """The ``headers.forwarding_style`` outcome, with the fix for ``family`` naming the
        account's addresses."""
        if not self.styles:
            return Outcome(Status.PASS, "No sign of forwarding", "The message arrived directly.")
        if not self.faults:
            return Outcome(
                Status.PASS, "Redirected with the original headers", "; ".join(self.evidence)
            )
        primary = self.faults[0]
        grave = primary in ("forward_inline", "forward_attachment", "from_rewritten")
        grave = grave or primary == "headers_stripped"
        return Outcome(
            Status.FAIL if grave else Status.WARN,
            _STYLE_TITLES[primary],
            "; ".join(self.evidence),
            cause=Cause.UNKNOWN if grave else None,
            remediation=remediation_for(
                primary, family, custom_address=custom_address, inbound_address=inbound_address
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "styles": list(self.styles),
            "primary": self.primary,
            "evidence": list(self.evidence),
            "with_original": self.with_original,
        }


_STYLE_TITLES: dict[str, str] = {
    "forward_inline": "Forwarded inline instead of redirected",
    "forward_attachment": "Forwarded as an attachment instead of redirected",
    "from_rewritten": "From rewritten on the way",
    "headers_stripped": "Headers stripped on the way",
    "mailing_list": "Redistributed by a mailing list instead of redirected",
    "subject_tagged": "Subject tagged on the way",
    "footer_appended": "Footer added to the body on the way",
    "redirect": "Redirected",
}

_SUBJECT_TAG = re.compile(
    r"^\s*(\[(?:EXTERNAL(?: SENDER| EMAIL| MAIL)?|EXT|EXTERN|EXTERNE|EXTERNO|CAUTION|WARNING|"
    r"SPAM|SPAM\?|SUSPECTED SPAM|POSSIBLE SPAM|\*\*\*SPAM\*\*\*)\]|\*{1,3}(?:EXTERNAL|SPAM)\*{1,3}"
    r"|(?:EXTERNAL|EXTERN|EXT)\s*:)\s*",
    re.IGNORECASE,
)
_FORWARD_PREFIX = re.compile(r"^\s*(Fwd|Fw|WG|TR|RV)\s*(?:\[\d+\])?\s*:\s*", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*(Re|AW|SV|Antw|Antwort|RIF|Réf)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_SEPARATORS = (
    (
        re.compile(
            r"^[\s>]*-{5,}\s*(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht|"
            r"Message transféré)\s*-{5,}",
            re.MULTILINE | re.IGNORECASE,
        ),
        "a forwarded-message separator (Gmail, Thunderbird)",
    ),
    (
        re.compile(
            r"^[\s>]*(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht)\s*:", re.M
        ),
        "Apple Mail's 'Begin forwarded message:'",
    ),
)
_ORIGINAL_MESSAGE = re.compile(
    r"^[ \t>]*-{3,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original)[ \t]*-{3,}",
    re.MULTILINE | re.IGNORECASE,
)
_BLOCK_FROM = re.compile(r"^[\s>*]*(From|Von|De)\s?:\*?\s*\S", re.IGNORECASE)
_BLOCK_SENT = re.compile(r"^[\s>*]*(Sent|Gesendet|Envoyé|Enviado)\s?:", re.IGNORECASE)
_BLOCK_SUBJECT = re.compile(r"^[\s>*]*(Subject|Betreff|Objet|Asunto)\s?:", re.IGNORECASE)
_DISCLAIMERS = (
    "this email originated from outside",
    "this message originated from outside",
    "this e-mail originated from outside",
    "caution: external",
    "caution: this email originated",
    "external email: do not click",
    "diese e-mail stammt von außerhalb",
    "diese nachricht stammt von außerhalb",
    "achtung: externe e-mail",
)
# The name ends before a whitespace run, not inside it: linear on a name of many spaces.
_VIA = re.compile(r"^(?P<name>.*?)(?<!\s)\s+via\s+(?P<via>\S.*)$", re.IGNORECASE)
_SRS = re.compile(r"(?:^|[<+])SRS[01][=+-]|\+SRS=", re.IGNORECASE)
_GMAIL_CAF = re.compile(r"\+caf_=", re.IGNORECASE)


def _html_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|tr|li|h\d)\s*>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]*>", "", markup))


def _text_parts(part: Message, _depth: int = 0) -> Iterator[Message]:
    """The message's own text parts: not inside an attached message, not attachments."""
    if part.get_content_type() == "message/rfc822" and _depth:
        return
    if part.is_multipart():
        if _depth < MAX_DEPTH:
            for child in subparts(part):
                yield from _text_parts(child, _depth + 1)
    elif part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        yield part


def body_text(message: MessageInput) -> str:
    """The message's own body as text: its text/plain parts, else its HTML without markup."""
    msg = as_message(message)
    parts = list(_text_parts(msg))
    plain = [decoded_text(p) for p in parts if p.get_content_subtype() == "plain"]
    if plain:
        return "\n".join(plain)
    return "\n".join(
        _html_text(decoded_text(p)) for p in parts if p.get_content_subtype() == "html"
    )


def _attached(message: Message) -> list[Message]:
    """The message/rfc822 parts of ``message`` (not nested inside those), the message itself
    when its whole body is one; none in a report that returns a message."""
    found: list[Message] = []
    if returned_report(message):
        return found

    def visit(part: Message, depth: int) -> None:
        if part.get_content_type() == "message/rfc822":
            found.append(part)
        elif part.is_multipart() and depth < MAX_DEPTH:
            for child in subparts(part):
                visit(child, depth + 1)

    visit(message, 0)
    return found


def _outlook_block(text: str) -> str | None:
    lines = text.splitlines()
    for n, line in enumerate(lines):
        first = _BLOCK_FROM.match(line)
        if first is None:
            continue
        window = lines[n + 1 : n + 6]
        sent = next((m for m in map(_BLOCK_SENT.match, window) if m), None)
        subject = next((m for m in map(_BLOCK_SUBJECT.match, window) if m), None)
        if sent and subject:
            return f"{first.group(1)}:/{sent.group(1)}:/…/{subject.group(1)}:"
    return None


def _untagged(subject: str) -> str:
    """``subject`` without a leading tag such as "[EXTERNAL]"."""
    tag = _SUBJECT_TAG.match(subject)
    return subject[tag.end() :] if tag else subject


def _header_recipients(message: Message) -> set[str]:
    return {a for name in ("To", "Cc") for _, a in header_addresses(message, name)}


def _redirect_signs(message: Message, hops: Sequence[Hop]) -> list[str]:
    """Evidence that the message was passed on as it was (each sign of a redirect)."""
    signs: list[str] = []
    keys = {k.lower(): k for k in message.keys()}
    resent = sorted({keys[k] for k in keys if k.startswith("resent-")})
    if resent:
        signs.append(f"{', '.join(resent)}: re-sent by a mail client with the headers kept")
    for name in ("X-Forwarded-To", "X-Forwarded-For"):
        value = header_text(message, name)
        if value:
            signs.append(f"{name}: {value} (an automatic forward that keeps the headers)")
    if header_text(message, "X-MS-Exchange-Organization-AutoForwarded"):
        signs.append(
            "X-MS-Exchange-Organization-AutoForwarded: Exchange forwarded it automatically"
        )
    return_path = header_text(message, "Return-Path") or ""
    if _SRS.search(return_path):
        signs.append(
            f"Return-Path {return_path} is SRS-rewritten: a redirect that rewrote the envelope "
            "sender (fine)"
        )
    elif _GMAIL_CAF.search(return_path):
        signs.append(
            f"Return-Path {return_path} is Gmail's forwarding envelope: a redirect that rewrote "
            "the envelope sender (fine)"
        )
    named = _header_recipients(message)
    changed = None
    for n, hop in enumerate(hops):
        if hop.for_address and hop.for_address.lower() in named:
            later = next(
                (
                    h
                    for h in hops[n + 1 :]
                    if h.for_address and "@" in h.for_address and h.for_address.lower() not in named
                ),
                None,
            )
            if later is not None:
                changed = (hop, later)
                break
    if changed is not None:
        before, after = changed
        signs.append(
            f"the envelope recipient changed from {before.for_address} (hop {before.index}) to "
            f"{after.for_address} (hop {after.index}) while To/Cc still name "
            f"{before.for_address}"
        )
    elif named:
        for name in ("Delivered-To", "X-Original-To"):
            delivered = header_addresses(message, name)
            if delivered and delivered[0][1] not in named:
                signs.append(
                    f"{name}: {delivered[0][1]}, which To/Cc do not name: the envelope was "
                    "redirected, the headers kept"
                )
                break
    return signs


def _without_original(message: Message, hops: Sequence[Hop]) -> tuple[list[tuple[str, str]], bool]:
    """The signs of styles in ``message`` alone, and whether it was passed on (redirected,
    with or without modifications) rather than re-sent as a forward."""
    signs: list[tuple[str, str]] = []
    subject = header_text(message, "Subject") or ""
    tag = _SUBJECT_TAG.match(subject)
    rest = _untagged(subject)
    if tag:
        signs.append(("subject_tagged", f"the Subject starts with the tag {tag.group(1)!r}"))
    prefix = _FORWARD_PREFIX.match(rest)
    text = body_text(message)
    attached = _attached(message)
    if attached:
        inner = attached[0].get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        described = ""
        if isinstance(inner_msg, Message):
            inner_id = header_text(inner_msg, "Message-ID")
            described = f" (Message-ID {inner_id})" if inner_id else ""
        where = (
            "the whole body is a message/rfc822 message"
            if attached[0] is message
            else "a message/rfc822 part carries a message"
        )
        signs.append(("forward_attachment", f"{where}{described}"))
    forward_style = "forward_attachment" if attached else "forward_inline"
    if prefix:
        signs.append((forward_style, f"the Subject starts with {prefix.group(0).strip()!r}"))
    for pattern, description in _FORWARD_SEPARATORS:
        if not attached and pattern.search(text):
            signs.append(("forward_inline", f"the body quotes the original after {description}"))
    if prefix and not attached:
        if _ORIGINAL_MESSAGE.search(text):
            signs.append(
                (
                    "forward_inline",
                    "the body quotes the original after '-----Original Message-----'",
                )
            )
        block = _outlook_block(text)
        if block:
            signs.append(
                (
                    "forward_inline",
                    f"the body quotes the original in an Outlook header block ({block})",
                )
            )
    forwarded = any(style.startswith("forward_") for style, _ in signs)
    if not forwarded:
        from_addresses = header_addresses(message, "From")
        name, addr = from_addresses[0] if from_addresses else ("", "")
        original_from = header_addresses(message, "X-Original-From")
        if original_from and original_from[0][1] != addr:
            signs.append(
                (
                    "from_rewritten",
                    f"X-Original-From {original_from[0][1]} differs from From {addr}",
                )
            )
        via = _VIA.match(name)
        listed = any(
            header_text(message, h) for h in ("X-Original-Sender", "List-Id", "Mailing-List")
        )
        if via and ("@" in via.group("via") or original_from or listed):
            signs.append(("from_rewritten", f"the From display name {name!r} says 'via'"))
        # A report that returns a message is written by a mail server, which may leave these
        # out: that is not a forwarder stripping them.
        for header in () if returned_report(message) else ("Message-ID", "Date"):
            if header_text(message, header) is None:
                signs.append(("headers_stripped", f"the message has no {header}"))
        if _REPLY_PREFIX.match(rest) and not (
            header_text(message, "In-Reply-To") or header_text(message, "References")
        ):
            signs.append(
                (
                    "headers_stripped",
                    f"the Subject {clip(subject, 60)!r} is a reply but In-Reply-To and References "
                    "are missing",
                )
            )
    lowered = squash(text).lower()
    disclaimer = next((d for d in _DISCLAIMERS if d in lowered), None)
    if disclaimer:
        signs.append(("footer_appended", f"the body carries the disclaimer {disclaimer!r}"))
    list_evidence = [] if forwarded else list_signs(message)
    signs += [("mailing_list", s) for s in list_evidence]
    redirect_signs = [] if forwarded or list_evidence else _redirect_signs(message, hops)
    signs += [("redirect", s) for s in redirect_signs]
    return signs, bool(redirect_signs) or (not forwarded and bool(signs))


def _with_original(sent: Message, arrived: Message, hops: Sequence[Hop]) -> list[tuple[str, str]]:
    """The styles that the differences between ``sent`` and ``arrived`` prove."""
    retention = compare_retention(sent, arrived)
    signs: list[tuple[str, str]] = []
    sent_id = header_text(sent, "Message-ID")
    if _attached(arrived) and not _attached(sent):
        inner_ids = []
        for part in _attached(arrived):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                inner_ids.append(header_text(inner[0], "Message-ID"))
        which = "the original" if sent_id and sent_id in inner_ids else "a message"
        signs.append(("forward_attachment", f"{which} arrived attached as message/rfc822"))
        return signs
    id_diff = retention.diff("Message-ID")
    from_diff = retention.diff("From")
    text = body_text(arrived)
    quoted = any(p.search(text) for p, _ in _FORWARD_SEPARATORS) or _outlook_block(text)
    prefix = _FORWARD_PREFIX.match(_untagged(header_text(arrived, "Subject") or ""))
    if (
        id_diff is not None
        and id_diff.kind in ("missing", "changed")
        and (from_diff is not None or quoted or prefix)
    ):
        signs.append(
            (
                "forward_inline",
                f"a new message: Message-ID {sent_id} became {header_text(arrived, 'Message-ID')}"
                + (f", From {from_diff.sent} became {from_diff.arrived}" if from_diff else ""),
            )
        )
        return signs
    if from_diff is not None and from_diff.kind == "changed":
        signs.append(("from_rewritten", f"From {from_diff.sent} became {from_diff.arrived}"))
    missing = [d.name for d in retention.diffs if d.kind == "missing"]
    if missing:
        signs.append(("headers_stripped", f"missing on arrival: {', '.join(missing)}"))
    tagged = subject_tag(retention.diff("Subject"))
    if tagged is not None:
        tag, position = tagged
        placed = "put in front of" if position == "prefix" else "appended to"
        signs.append(("subject_tagged", f"{tag!r} was {placed} the Subject"))
    sent_text, arrived_text = body_text(sent).strip(), text.strip()
    if sent_text and arrived_text != sent_text and sent_text in arrived_text:
        where = arrived_text.find(sent_text)
        added = (arrived_text[:where] + " " + arrived_text[where + len(sent_text) :]).strip()
        place = (
            "at the end"
            if where == 0
            else "at the start"
            if arrived_text.endswith(sent_text)
            else "around it"
        )
        signs.append(
            ("footer_appended", f"the body text grew {place}: {clip(squash(added), 80)!r}")
        )
    elif retention.structure_changed and set(retention.sent_body.leaves) < set(
        retention.arrived_body.leaves
    ):
        signs.append(("footer_appended", "a body part was added"))
    if not list_signs(sent):
        signs += [("mailing_list", s) for s in list_signs(arrived)]
    if any(style == "mailing_list" for style, _ in signs):
        return signs
    if sent_id and id_diff is None:
        signs.append(
            ("redirect", f"Message-ID {sent_id} kept: the message was passed on, not re-sent")
        )
    signs += [("redirect", s) for s in _redirect_signs(arrived, hops)]
    if not any(style == "redirect" for style, _ in signs):
        signs.append(("redirect", "the message was passed on, not re-sent"))
    return signs


def subject_tag(diff: HeaderDiff | None) -> tuple[str, str] | None:
    """The tag a server put into a Subject, and where (``prefix`` or ``suffix``), from the
    Subject's difference; None when the Subject did not change that way."""
    if diff is None or diff.kind != "changed":
        return None
    before, after = diff.sent or "", diff.arrived or ""
    if not before or after == before:
        return None
    if after.endswith(before):
        return after[: -len(before)].strip(), "prefix"
    if after.startswith(before):
        return after[len(before) :].strip(), "suffix"
    return None


# What each style accounts for in a retention comparison: header (name, kind) pairs, and
# "body" for the MIME structure and the body. A forward makes a new message: everything.
_ACCOUNTS_FOR: dict[str, tuple[tuple[str, str], ...]] = {
    "from_rewritten": (("From", "changed"), ("Reply-To", "added")),
    "subject_tagged": (("Subject", "changed"),),
    "footer_appended": (("body", "changed"),),
}


def unexplained_changes(retention: Retention, faults: Sequence[str]) -> list[str]:
    """The differences in ``retention`` that none of the forwarding ``faults`` accounts for
    (``Reply-To changed``, ``the body changed``): a problem of its own, with its own fix."""
    if {"forward_inline", "forward_attachment"} & set(faults):
        return []
    accounted = {pair for fault in faults for pair in _ACCOUNTS_FOR.get(fault, ())}
    left = [
        f"{d.name} {d.kind}"
        for d in retention.diffs
        if (d.name, d.kind) not in accounted
        and not (d.kind == "missing" and "headers_stripped" in faults)
    ]
    if (retention.body_changed or retention.structure_changed) and (
        "body",
        "changed",
    ) not in accounted:
        left.append("the body changed")
    return left


def classify_forwarding(
    arrived: MessageInput, *, original: MessageInput | None = None
) -> StyleVerdict:
    """How the company server passed the message on, from its headers and body.

    Without ``original``, from the signs servers and clients leave (subject prefixes and tags,
    forward separators, message/rfc822 parts, "via" senders, disclaimers, Resent-* and
    X-Forwarded-* headers, SRS return paths, a changed envelope recipient). With it, from the
    precise differences. Several styles may apply; the gravest comes first.
    """
    msg = as_message(arrived)
    hops = parse_received(msg)
    if original is None:
        signs, passed_on = _without_original(msg, hops)
        if not passed_on:
            signs = [(s, e) for s, e in signs if s != "redirect"]
        elif not any(s in ("redirect", "mailing_list") for s, _ in signs):
            signs.append(("redirect", "the message was passed on, not re-sent"))
    else:
        signs = _with_original(as_message(original), msg, hops)
    styles = tuple(s for s in STYLES if any(style == s for style, _ in signs))
    evidence = tuple(f"{s}: {e}" for s in styles for style, e in signs if style == s)
    return StyleVerdict(styles=styles, evidence=evidence, with_original=original is not None)


@cache
def load_forwarding_fixes() -> Mapping[str, Mapping[str, str]]:
    """The remediation texts of ``data/forwarding_fixes.yaml``: style -> family -> text."""
    raw = load_data_file("forwarding_fixes.yaml")
    fixes: dict[str, Mapping[str, str]] = {}
    for style, texts in raw.items():
        if style not in STYLES or not isinstance(texts, dict) or "generic" not in texts:
            raise ValueError(
                f"forwarding_fixes.yaml: {style!r} needs a known style and a generic text"
            )
        unknown = set(texts) - {"generic", *FAMILIES}
        if unknown:
            raise ValueError(f"forwarding_fixes.yaml: {style}: unknown families {sorted(unknown)}")
        fixes[style] = MappingProxyType({k: str(v).strip() for k, v in texts.items()})
    return MappingProxyType(fixes)


def remediation_for(
    style: str,
    family: str | None,
    *,
    custom_address: str | Sequence[str] | None = None,
    inbound_address: str | None = None,
) -> str:
    """What IT should change for ``style`` on a server of ``family`` (generic when unknown),
    naming the account's addresses; placeholders such as ``<recruiting address>`` stand for
    an address that is not known (a message analysed without its account).

    Several custom addresses (one fix for the subcompanies a server treats alike) are named
    together: ``jobs@a.example and jobs@b.example``.
    """
    fixes = load_forwarding_fixes()
    if style not in fixes:
        raise ValueError(f"unknown forwarding style {style!r}; known: {', '.join(fixes)}")
    texts = fixes[style]
    template = texts.get(family or "generic", texts["generic"])
    addresses = [custom_address] if isinstance(custom_address, str) else list(custom_address or ())
    parts = [address.partition("@") for address in addresses]
    return template.format(
        custom_address=and_list(addresses) if addresses else "<recruiting address>",
        inbound_address=inbound_address or "<Company recruiting email address>",
        local_part=" or ".join(dict.fromkeys(p[0] for p in parts)) if parts else "<mailbox>",
        domain=and_list(list(dict.fromkeys(p[2] for p in parts))) if parts else "<domain>",
    )
