"""diagnostics.parse.headers.retention: what arrived as it was sent, on hand-made and generated messages."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.findings import Cause, Status
from diagnostics.parse.headers.message import parse_message
from diagnostics.parse.headers.retention import (
    RETAINED,
    HeaderDiff,
    body_digest,
    compare_retention,
    mime_structure,
)
from diagnostics.sandbox import forwarding
from tests.parse.headers.samples import (
    application,
    redirected,
)

# -- retention ---------------------------------------------------------------------------------


def test_retained_headers_are_the_contracts() -> None:
    assert RETAINED == (
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "In-Reply-To",
        "References",
    )


def test_a_redirect_that_only_prepends_received_headers_retains_everything() -> None:
    retention = compare_retention(application(), redirected(application()))
    assert retention.retained is True
    assert retention.diffs == ()
    assert retention.compared == RETAINED
    assert retention.summary() == (
        "Retained: From, To, Cc, Subject, Date, Message-ID, Reply-To, In-Reply-To, References, "
        "the MIME structure and the body arrived unchanged."
    )
    assert retention.outcome().status is Status.PASS


def test_headers_are_compared_by_meaning_not_by_bytes() -> None:
    head, _, body = application().partition(b"\r\n\r\n")
    mime = b"".join(
        line + b"\r\n" for line in head.split(b"\r\n") if line.startswith((b"MIME", b"Content"))
    )
    arrived = (
        b'From: "Max Mustermann" <max.mustermann@EXAMPLE.ORG>\r\n'
        b"To: <jobs@acme.example>\r\n"
        b"Cc: max.privat@example.org\r\n"
        b"Subject: =?utf-8?q?Re=3A_Ihre_Bewerbung?=\r\n  als   Store Manager\r\n"
        b"Date: Thu, 26 Nov 2026 08:30:00 +0000\r\n"
        b"Message-ID:   <reply-1@example.org>  \r\n"
        b"Reply-To: max.mustermann@example.org\r\n"
        b"In-Reply-To: <invite-7@acme.example>\r\n"
        b"References:\r\n <invite-7@acme.example>\r\n" + mime + b"\r\n" + body
    )
    retention = compare_retention(application(), arrived)
    assert (retention.diffs, retention.retained) == ((), True)


def test_a_quoted_printable_relay_does_not_change_the_body() -> None:
    # A relay whose next hop lacks 8BITMIME re-encodes 8bit text as quoted-printable.
    sent = (
        b"From: a@example.org\r\nTo: jobs@acme.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe\r\n"
    )
    arrived = sent.replace(b"8bit", b"quoted-printable").replace(
        b"Gr\xc3\xbc\xc3\x9fe", b"Gr=C3=BC=C3=9Fe"
    )
    retention = compare_retention(sent, arrived)
    assert (retention.retained, retention.body_changed) == (True, False)


def test_each_kind_of_difference_is_named() -> None:
    sent = application(**{"Reply-To": None})
    arrived = application(
        Subject="[EXTERNAL] Re: Ihre Bewerbung als Store Manager",
        References=None,
        **{"Reply-To": "hr@acme.example"},
    )
    arrived = arrived.replace(b"Cc: ", b"Cc: max.privat@example.org\r\nCc: ", 1)
    retention = compare_retention(sent, arrived)
    assert retention.diffs == (
        HeaderDiff(
            "Cc",
            "duplicated",
            "max.privat@example.org",
            "max.privat@example.org | max.privat@example.org",
        ),
        HeaderDiff(
            "Subject",
            "changed",
            "Re: Ihre Bewerbung als Store Manager",
            "[EXTERNAL] Re: Ihre Bewerbung als Store Manager",
        ),
        HeaderDiff("Reply-To", "added", None, "hr@acme.example"),
        HeaderDiff("References", "missing", "<invite-7@acme.example>", None),
    )
    assert retention.retained is False
    assert retention.summary() == (
        "Not retained: Cc duplicated ('max.privat@example.org | max.privat@example.org'); "
        "Subject changed ('Re: Ihre Bewerbung als Store Manager' -> "
        "'[EXTERNAL] Re: Ihre Bewerbung als Store Manager'); Reply-To added ('hr@acme.example'); "
        "References missing (sent: '<invite-7@acme.example>')."
    )
    assert retention.diff("subject") == retention.diffs[1]
    assert retention.diff("Date") is None
    outcome = retention.outcome(remediation="fix it")
    assert (outcome.status, outcome.cause, outcome.title, outcome.remediation) == (
        Status.FAIL,
        Cause.UNKNOWN,
        "The redirection duplicated Cc, changed Subject, added Reply-To and dropped References",
        "fix it",
    )


def test_an_empty_header_that_disappears_is_missing_not_unnamed() -> None:
    retention = compare_retention(application(Subject=""), application(Subject=None))
    assert retention.diffs == (HeaderDiff("Subject", "missing", "", None),)


def test_display_name_and_date_instant_changes_are_differences() -> None:
    arrived = application(
        From="Max via Jobs <max.mustermann@example.org>", Date="Thu, 26 Nov 2026 09:30:01 +0100"
    )
    assert [(d.name, d.kind) for d in compare_retention(application(), arrived).diffs] == [
        ("From", "changed"),
        ("Date", "changed"),
    ]


def test_a_footer_changes_the_body_not_the_structure() -> None:
    arrived = forwarding.append_footer(application(), "CAUTION: External.")
    retention = compare_retention(application(), arrived)
    assert (retention.diffs, retention.structure_changed, retention.body_changed) == (
        (),
        False,
        True,
    )
    assert retention.problems() == ["body changed"]
    assert retention.summary() == "Not retained: body changed."


def test_an_attachment_forward_changes_the_structure() -> None:
    arrived = forwarding.forward_as_attachment(
        application(), "jobs@acme.example", "acme-jobs@m.personio.de"
    )
    retention = compare_retention(application(), arrived)
    assert retention.sent_body.structure == "text/plain"
    assert (
        retention.arrived_body.structure == "multipart/mixed(text/plain,message/rfc822(text/plain))"
    )
    assert (
        "MIME structure changed (text/plain -> multipart/mixed(text/plain,message/rfc822(text/plain)))"
        in (retention.problems())
    )


def test_mime_structure_and_leaf_hashes() -> None:
    message = EmailMessage()
    message.set_content("Hallo\n")
    message.add_alternative("<p>Hallo</p>\n", subtype="html")
    digest = body_digest(message.as_bytes())
    assert mime_structure(message) == "multipart/alternative(text/plain,text/html)"
    assert digest.structure == "multipart/alternative(text/plain,text/html)"
    assert digest.leaves == (
        hashlib.sha256(b"Hallo\n").hexdigest(),
        hashlib.sha256(b"<p>Hallo</p>\n").hexdigest(),
    )
    assert (
        digest.sha256
        == hashlib.sha256(f"{digest.leaves[0]}\n{digest.leaves[1]}".encode()).hexdigest()
    )
    crlf = message.as_bytes(policy=email.policy.SMTP)
    assert body_digest(crlf) == digest


# -- Hypothesis: retention of generated messages -----------------------------------------------

DOMAINS = ("example.org", "example.com", "candidates.example", "acme.example")
local_parts = st.from_regex(r"[a-z][a-z0-9]{0,8}(?:[._-][a-z0-9]{1,6}){0,2}", fullmatch=True)
# Plain spaces only: the stdlib's own generator folds no-break spaces in display names into
# headers its parser reads back differently, which is not what these properties are about.
names = st.text(
    alphabet=st.characters(categories=("L", "N"), include_characters=" -.'"), max_size=20
)
addresses = st.builds(
    lambda name, local, domain: (name, local, domain), names, local_parts, st.sampled_from(DOMAINS)
)
texts = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "), max_size=60
)
tokens = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.$-]{0,20}", fullmatch=True)
instants = st.builds(
    lambda when, minutes: when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))),
    st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.integers(min_value=-720, max_value=840),
)


def _address_list(items: list[tuple[str, str, str]]) -> list[Address]:
    return [Address(display_name=n, username=u, domain=d) for n, u, d in items]


def _msg_id(token: str, domain: str) -> str:
    return f"<{token}@{domain}>"


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, Any]:
    """The retained headers of a message, as structured values; optional ones may be absent."""
    headers: dict[str, Any] = {
        "From": [draw(addresses)],
        "To": draw(st.lists(addresses, min_size=1, max_size=3)),
        "Subject": draw(texts),
        "Date": draw(instants),
        "Message-ID": [draw(tokens)],
    }
    optional: dict[str, Any] = {
        "Cc": draw(st.lists(addresses, min_size=1, max_size=3)),
        "Reply-To": [draw(addresses)],
        "In-Reply-To": [draw(tokens)],
        "References": draw(st.lists(tokens, min_size=1, max_size=3)),
    }
    for name, value in optional.items():
        if draw(st.booleans()):
            headers[name] = value
    return headers


def build(headers: dict[str, Any], body: str) -> bytes:
    message = EmailMessage()
    for name in RETAINED:
        if name not in headers:
            continue
        value = headers[name]
        if name in ("From", "To", "Cc", "Reply-To"):
            message[name] = _address_list(value)
        elif name == "Date":
            message[name] = email.utils.format_datetime(value)
        elif name in ("Message-ID", "In-Reply-To", "References"):
            message[name] = " ".join(_msg_id(t, "example.org") for t in value)
        else:
            message[name] = value
    message.set_content(body)
    return message.as_bytes(policy=email.policy.SMTP)


def changed(name: str, value: Any) -> Any:
    """``value`` changed so that it means something else."""
    if name in ("From", "To", "Cc", "Reply-To"):
        (display, local, domain), *rest = value
        return [(display, "x" + local, domain), *rest]
    if name == "Date":
        return value + dt.timedelta(minutes=1)
    if name in ("Message-ID", "In-Reply-To", "References"):
        return [*value[:-1], "x" + value[-1]]
    return value + " (2)"


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts)
def test_any_message_compared_with_itself_or_redirected_is_retained(
    headers: dict[str, Any], body: str
) -> None:
    sent = build(headers, body)
    # LF line ends: how a Unix mail store keeps the message.
    for arrived in (sent, redirected(sent), sent.replace(b"\r\n", b"\n")):
        retention = compare_retention(sent, arrived)
        assert (retention.diffs, retention.retained) == ((), True)
    assert set(compare_retention(sent, sent).compared) == set(headers)


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts, st.data())
def test_changing_one_retained_header_names_exactly_that_header(
    headers: dict[str, Any], body: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(headers)))
    arrived = build({**headers, name: changed(name, headers[name])}, body)
    diffs = compare_retention(build(headers, body), arrived).diffs
    assert [(d.name, d.kind) for d in diffs] == [(name, "changed")]


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts, st.data())
def test_removing_one_retained_header_names_exactly_that_header(
    headers: dict[str, Any], body: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(headers)))
    sent = build(headers, body)
    arrived = build({k: v for k, v in headers.items() if k != name}, body)
    diffs = compare_retention(sent, arrived).diffs
    assert [(d.name, d.kind, d.arrived) for d in diffs] == [(name, "missing", None)]
    assert diffs[0].sent == " ".join(str(parse_message(sent)[name]).split())
