"""Fuzzing what strangers write: account files, messages, bounces and SMTP replies.

Hypothesis builds inputs from the shapes real ones have (YAML mappings with the account file's
keys, header fields with encoded words and control characters, DSN fields, reply lines) and
mutations of them. Each reader must answer, or refuse with its own error, and never raise
anything else. The normal run is bounded (``MAILDIAG_FUZZ_EXAMPLES``, 60 per target, derandomised
so that CI is repeatable); a longer hunt is, for example::

    MAILDIAG_FUZZ_EXAMPLES=20000 MAILDIAG_FUZZ_RANDOM=1 .venv/bin/pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.config import parse_config
from diagnostics.diagnose import diagnose
from diagnostics.errors import ConfigError
from diagnostics.findings import Cause
from diagnostics.parse.headers.analysis import analyse_headers
from diagnostics.smtpreply import ReplyParser, SMTPProtocolError

EXAMPLES = int(os.environ.get("MAILDIAG_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("MAILDIAG_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text a stranger may type: printable, control characters, bidi overrides, odd Unicode.
PIECES = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=12),
    st.sampled_from(["\u202e", "\u2028", "\x1b[2J", "\r\n", "=?utf-8?q?=C3=A4?=", "${X}", " "]),
)
TEXT = st.lists(PIECES, max_size=8).map("".join)
SCALAR = st.one_of(TEXT, st.integers(-(10**6), 10**6), st.booleans(), st.none(), st.floats())
KEYS = st.sampled_from(
    [
        "platform", "profile", "account", "company", "name", "custom_address", "smtp", "host",
        "port", "encryption", "password", "password_file", "allowlist", "mailbox",
        "token_command", "dkim", "selector", "key_file", "subcompanies", "positions",
        "employees", "email", "title", "subcompany", "sender_name",
    ]
)  # fmt: skip
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, TEXT), inner, max_size=5)
    ),
    max_leaves=25,
)
ACCOUNT = st.fixed_dictionaries(
    {
        "platform": st.one_of(
            VALUE, st.fixed_dictionaries({"profile": st.just("personio"), "account": VALUE})
        ),
        "company": st.dictionaries(KEYS, VALUE, max_size=8),
    },
    optional={"subcompanies": st.lists(st.dictionaries(KEYS, VALUE, max_size=6), max_size=3)},
)


@FUZZ
@given(account=ACCOUNT, noise=st.one_of(st.just(""), TEXT))
def test_an_account_file_loads_or_is_refused_with_its_problems(account: object, noise: str) -> None:
    text = yaml.safe_dump(account, allow_unicode=True) + noise
    try:
        parse_config(text, source="fuzz.yaml", environ={"X": "fuzz-password"})
    except ConfigError as error:
        assert error.problems
        assert "fuzz-password" not in str(error)


HEADER_NAMES = st.sampled_from(
    [
        "Received", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
        "Authentication-Results", "ARC-Seal", "ARC-Authentication-Results", "DKIM-Signature",
        "List-Id", "X-Forwarded-To", "Delivered-To", "Content-Type", "MIME-Version",
        "X-MS-Exchange-CrossTenant-Id", "Resent-From", "Return-Path",
    ]
)  # fmt: skip
HEADER_VALUE = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "from mx.example.org (mx.example.org [192.0.2.1]) by mx.acme.example (Postfix) "
            "with ESMTPS id X; Thu, 26 Nov 2026 09:30:00 +0100",
            "mx.acme.example; spf=pass smtp.mailfrom=a@example.org; dkim=fail header.d=x",
            'multipart/mixed; boundary="b"',
            "i=1; a=rsa-sha256; cv=none; d=example.org; s=s1; b=abc",
            "=?utf-8?b?w6TDtsO8?= <a@example.org>",
        ]
    ),
)
MESSAGE = st.builds(
    lambda fields, body: (
        "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\n" + body
    ).encode("utf-8", "surrogatepass"),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUE), max_size=12),
    st.one_of(TEXT, st.just("--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x\r\n\r\n--b--\r\n")),
)


@FUZZ
@given(arrived=MESSAGE, original=st.one_of(st.none(), MESSAGE))
def test_any_message_can_be_analysed(arrived: bytes, original: bytes | None) -> None:
    analysis = analyse_headers(arrived, original=original)
    analysis.to_dict()


DSN_FIELD = st.sampled_from(
    ["Status: ", "Diagnostic-Code: smtp; ", "Final-Recipient: rfc822; ", "Action: ",
     "Reporting-MTA: dns; ", "Remote-MTA: dns; "]
)  # fmt: skip
BOUNCE = st.builds(
    lambda head, fields, reply: (
        head
        + "".join(f"{name}{value}\n" for name, value in fields)
        + f"\n{reply}\n"
    ).encode("utf-8", "surrogatepass"),
    st.sampled_from(
        [
            "",
            "From: MAILER-DAEMON@mx.example.org\nContent-Type: multipart/report; "
            'report-type=delivery-status; boundary="x"\n\n--x\n',
            "From 1 June\n",
        ]
    ),
    st.lists(st.tuples(DSN_FIELD, st.one_of(TEXT, st.just("5.1.1"), st.just("550 5.7.1 no"))),
             max_size=8),
    st.one_of(TEXT, st.from_regex(r"[245][0-9]{2}[ -][245]\.[0-9]{1,3}\.[0-9]{1,3} .{0,30}")),
)  # fmt: skip


@FUZZ
@given(data=st.one_of(BOUNCE, st.binary(max_size=300)))
def test_any_bounce_or_text_gets_one_cause(data: bytes) -> None:
    assert isinstance(diagnose(data).cause, Cause)


@FUZZ
@given(lines=st.lists(st.one_of(st.binary(max_size=40), st.from_regex(rb"[0-9]{3}[ -].{0,20}")),
                      min_size=1, max_size=8))  # fmt: skip
def test_any_reply_lines_give_a_reply_or_a_protocol_error(lines: list[bytes]) -> None:
    parser = ReplyParser("fuzz", max_lines=5)
    try:
        for line in lines:
            reply = parser.feed(line)
            if reply is not None:
                assert 0 <= reply.code <= 999
                break
    except SMTPProtocolError as error:
        assert error.step == "fuzz"
