"""How the sandbox's company MX passes a message on: the faithful redirect, and the faults
that real servers commit (inline forward, forward as attachment, From rewritten, headers
stripped, subject tagged, footer appended).

Pure functions of bytes. The redirect touches nothing but what it prepends, so that an
original DKIM signature still verifies; each fault changes exactly what it names.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage

from diagnostics.sandbox.scenario import MXFaults

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def split_message(data: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines and line end) and the rest (blank line + body)."""
    match = _HEADER_END.search(data)
    if match is None:
        head, rest = data, b""
    else:
        # Keep the first line end with the header block, the blank line with the body.
        head_end = match.start() + (2 if data[match.start() : match.start() + 2] == b"\r\n" else 1)
        head, rest = data[:head_end], data[head_end:]
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, rest


def field_name(field: bytes) -> str:
    """The name of a raw header field, lower-cased."""
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def strip_headers(data: bytes, names: tuple[str, ...]) -> bytes:
    """``data`` without the header fields called ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    fields, rest = split_message(data)
    return b"".join(f for f in fields if field_name(f) not in wanted) + rest


def tag_subject(data: bytes, tag: str) -> bytes:
    """``data`` with ``tag`` put in front of the Subject's value."""
    fields, rest = split_message(data)
    out = []
    for field in fields:
        if field_name(field) == "subject":
            name, value = field.split(b":", 1)
            field = name + b": " + tag.encode("utf-8") + b" " + value.lstrip(b" ")
        out.append(field)
    return b"".join(out) + rest


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def append_footer(data: bytes, footer: str) -> bytes:
    """``data`` with ``footer`` appended to its text body, as disclaimer rules do."""
    message = _parse(data)
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        message.add_attachment(footer, subtype="plain")
    else:
        text = part.get_content()
        part.set_content(text.rstrip("\n") + "\n\n" + footer + "\n")
    return message.as_bytes(policy=email.policy.SMTP)


def rewrite_from(data: bytes, forwarder: str) -> bytes:
    """``data`` with From replaced by the forwarding address, the original kept aside."""
    message = _parse(data)
    original = str(message.get("From", ""))
    name, _ = email.utils.parseaddr(original)
    del message["From"]
    # An Address, not formataddr(): the policy decodes formataddr's encoded-word and folds
    # the name back unquoted, so a non-ASCII name with "via a@b" broke the addr-spec.
    message["From"] = Address(
        display_name=f"{name or original} via {forwarder}", addr_spec=forwarder
    )
    message["X-Original-From"] = original
    return message.as_bytes(policy=email.policy.SMTP)


def _forward_base(original: EmailMessage, forwarder: str, recipient: str) -> EmailMessage:
    forward = EmailMessage(policy=email.policy.SMTP)
    forward["From"] = forwarder
    forward["To"] = recipient
    forward["Subject"] = f"Fwd: {original.get('Subject', '')}"
    forward["Date"] = email.utils.formatdate(localtime=False)
    forward["Message-ID"] = email.utils.make_msgid(domain=forwarder.rsplit("@", 1)[-1])
    return forward


def forward_inline(data: bytes, forwarder: str, recipient: str) -> bytes:
    """A new message quoting ``data`` in its body, as a mail client's Forward does."""
    original = _parse(data)
    forward = _forward_base(original, forwarder, recipient)
    body = original.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    quoted = (
        "---------- Forwarded message ---------\n"
        f"From: {original.get('From', '')}\n"
        f"Date: {original.get('Date', '')}\n"
        f"Subject: {original.get('Subject', '')}\n"
        f"To: {original.get('To', '')}\n\n"
    )
    forward.set_content(quoted + text)
    return forward.as_bytes()


def forward_as_attachment(data: bytes, forwarder: str, recipient: str) -> bytes:
    """A new message carrying ``data`` as a message/rfc822 attachment."""
    original = _parse(data)
    forward = _forward_base(original, forwarder, recipient)
    forward.set_content("The forwarded message is attached.\n")
    forward.add_attachment(original, disposition="attachment", filename="forwarded.eml")
    return forward.as_bytes()


def apply(data: bytes, faults: MXFaults, *, forwarder: str, recipient: str) -> bytes:
    """What the company MX sends to ``recipient`` for ``data``, given its ``faults``."""
    if faults.style == "forward_inline":
        data = forward_inline(data, forwarder, recipient)
    elif faults.style == "forward_attachment":
        data = forward_as_attachment(data, forwarder, recipient)
    if faults.rewrite_from:
        data = rewrite_from(data, forwarder)
    if faults.strip_headers:
        data = strip_headers(data, faults.strip_headers)
    if faults.subject_tag:
        data = tag_subject(data, faults.subject_tag)
    if faults.footer:
        data = append_footer(data, faults.footer)
    return data
