"""The one reader of SMTP replies: what it accepts, and each kind of reply it refuses."""

from __future__ import annotations

import pytest

from diagnostics.smtpreply import (
    PROTOCOL_ERRORS,
    Reply,
    ReplyParser,
    SMTPProtocolError,
    parse_reply,
)


def test_a_multi_line_reply_is_one_reply_with_its_lines_verbatim() -> None:
    reply = parse_reply([b"250-mx.example\r\n", b"250-STARTTLS\r\n", b"250 AUTH PLAIN LOGIN\r\n"])
    assert reply == Reply(250, ("mx.example", "STARTTLS", "AUTH PLAIN LOGIN"))
    assert reply.verbatim == ("250-mx.example", "250-STARTTLS", "250 AUTH PLAIN LOGIN")
    assert reply.keywords == {"STARTTLS": "", "AUTH": "PLAIN LOGIN"}


def test_the_parser_takes_a_reply_line_by_line() -> None:
    parser = ReplyParser("ehlo")
    assert parser.feed(b"250-mx.example\r\n") is None
    reply = parser.feed(b"250 SIZE 1000\n")
    assert reply is not None
    assert (reply.code, reply.text) == (250, "mx.example SIZE 1000")


@pytest.mark.parametrize(
    ("lines", "kind", "reason"),
    [
        (
            [b"SSH-2.0-OpenSSH_9.6\r\n"],
            "not_smtp",
            "the server's reply is not SMTP: 'SSH-2.0-OpenSSH_9.6'",
        ),
        (
            [b"220-hello\r\n", b"554 no\r\n"],
            "mixed_codes",
            "the lines of one reply carry different codes",
        ),
        ([b"220-hello\r\n"], "unfinished", "the reply does not end"),
        ([], "not_smtp", "no reply"),
    ],
)
def test_what_is_no_reply(lines: list[bytes], kind: str, reason: str) -> None:
    with pytest.raises(SMTPProtocolError) as refused:
        parse_reply(lines, "banner")
    assert (refused.value.kind, refused.value.reason, refused.value.step) == (
        kind,
        reason,
        "banner",
    )
    assert refused.value.kind in PROTOCOL_ERRORS


def test_a_reply_past_its_bound_of_lines_is_refused_with_what_came() -> None:
    parser = ReplyParser("banner", max_lines=3)
    parser.feed(b"220-one\r\n")
    parser.feed(b"220-two\r\n")
    with pytest.raises(SMTPProtocolError) as refused:
        parser.feed(b"220-three\r\n")
    assert refused.value.kind == "too_many_lines"
    assert refused.value.partial == ("220-one", "220-two", "220-three")
    assert str(refused.value) == "banner: the server's reply runs past 3 lines"
