"""Behaviours of the pure modules that mutation testing found unpinned: each mutation named
in a comment here (as mutmut names it, ``benchmarks/mutation.py --list-survivors`` shows it)
survived every test of ``[tool.mutmut]``'s selection before the test under the comment.

The expected values come from the RFCs and the platform's rules, not from the code: DMARC
from RFC 9989's grammar and tree walk, SPF macros from RFC 7208 section 7, the From header
from RFC 5322 and RFC 2047, the sender rules from :mod:`diagnostics.sender`'s docstring.
"""

from __future__ import annotations

import base64
import email
import io
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from diagnostics.config import parse_config
from diagnostics.diagnose.dsn import Bounce, RecipientStatus
from diagnostics.diagnose.engine import (
    Failure,
    classify_failure,
    diagnose,
    extract_bounce_failure,
    extract_failure,
)
from diagnostics.findings import Cause, Outcome, Status
from diagnostics.netblocks import compare_allowlist
from diagnostics.parse import spfmacro
from diagnostics.parse.dmarc import Discovery, discover, is_dmarc_record, parse_record
from diagnostics.parse.dmarc import tree_walk_names as dmarc_names
from diagnostics.parse.headers.arc import parse_arc
from diagnostics.parse.headers.authres import parse_authentication_results_value
from diagnostics.parse.headers.lists import list_address, list_domain, list_signs, returned_report
from diagnostics.parse.headers.loops import detect_loop
from diagnostics.parse.headers.message import as_message
from diagnostics.parse.headers.received import parse_hop
from diagnostics.parse.spf import MEASURE_CAP, IncludeCost, SpfSyntaxError, check_host
from diagnostics.parse.spf import parse_record as spf_record
from diagnostics.parse.spfmacro import MacroError, MacroValues
from diagnostics.secrets import MASK, Secret
from diagnostics.sender import Identity, decode_from, encode_from, resolve, shown_from
from tests.parse.headers.samples import application, received, redirected

# -- redaction -------------------------------------------------------------------------------


def test_an_exception_logged_without_being_raised_is_masked(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    # Kills redact.xǁRedactingFilterǁfilter__mutmut_5 (exc_info[1] -> exc_info[2]) and, in
    # the redaction before its rewrite for large batches, xǁ_Matcherǁfound__mutmut_7 (a value
    # the automaton finds reported absent): an exception handed to the logger, never raised,
    # has no traceback but has a message.
    value = f"pw-{secrets.token_urlsafe(12)}"
    Secret(value, source="env:TEST_PW")
    logger, stream = log
    logger.error("login failed", exc_info=ValueError(f"535 rejected {value}"))
    assert stream.getvalue() == f"ERROR login failed\nValueError: 535 rejected {MASK}\n"


# -- allowlist arithmetic ----------------------------------------------------------------------


def test_an_entry_inside_an_egress_network_is_not_extra() -> None:
    # Kills netblocks.x_overlap__mutmut_6 and _7 (contains(b, a) -> contains(None, a) /
    # contains(b, None)): half of an egress /24 is a partial entry the platform needs, not
    # one of the organisation's other clients.
    egress = (ipaddress.ip_network("198.51.100.0/24"),)
    result = compare_allowlist([ipaddress.ip_network("198.51.100.128/25")], egress)
    assert (result.covered, result.missing, result.extra, result.broader) == ((), egress, (), ())


# -- sender resolution -------------------------------------------------------------------------

PLATFORM_ONLY = """
platform: {profile: personio, account: acme}
company: {name: Acme GmbH, sender_name: company}
subcompanies:
  - {name: Acme Labs GmbH, custom_address: jobs@labs.acme.example}
  - {name: Acme Retail GmbH}
positions:
  - {title: Controller}
  - {title: Lab Technician, subcompany: Acme Labs GmbH}
  - {title: Cashier, subcompany: Acme Retail GmbH}
employees:
  - {name: Jürgen Müller, email: j.mueller@acme.example}
"""
OWN_SERVER = """
platform: {profile: personio, account: acme}
company:
  name: Acme GmbH
  sender_name: employee
  custom_address: jobs@acme.example
  smtp: {host: smtp.acme.example, port: 587, encryption: starttls, account: jobs@acme.example, password: "${PW}"}
subcompanies:
  - {name: Acme Labs GmbH}
positions:
  - {title: Lab Technician, subcompany: Acme Labs GmbH}
employees:
  - {name: Jürgen Müller, email: j.mueller@acme.example}
"""
INBOUND = "acme-jobs@m.personio.de"


def test_the_platform_routes_say_why_and_send_in_the_companys_name() -> None:
    # Kills sender.x_identity_of__mutmut_16, _19, _27, _28 and _44 to _54 (the identity of
    # a company without a custom address, and why a custom address alone sends from the
    # platform), and x_display_name__mutmut_1 (`and` -> `or`): with sender_name company the
    # employee's name is not used even when the account lists employees.
    config = parse_config(PLATFORM_ONLY, source="a.yaml", environ={})
    rows = {row.position: row for row in resolve(config)}
    parent = Identity(
        "Acme GmbH",
        INBOUND,
        "platform",
        None,
        "Acme GmbH has no custom address: mail goes out from the platform's inbound address",
    )
    assert rows["Controller"].identity == parent
    assert rows["Controller"].display_name == "Acme GmbH"
    assert rows["Lab Technician"].identity == Identity(
        "Acme Labs GmbH",
        INBOUND,
        "platform",
        None,
        "Acme Labs GmbH has a custom address but no SMTP settings ('use for sending emails?' "
        "is No): mail goes out from the platform's inbound address",
    )
    assert rows["Cashier"].identity.why == (
        f"Acme Retail GmbH has no settings of its own and falls back to Acme GmbH: {parent.why}"
    )


def test_the_resolution_row_of_each_route() -> None:
    # Kills sender.xǁResolutionǁas_row__mutmut_3, _4, _8, _11, _12, _16, _23 to _26 (the
    # table's column names, the route's wording, the From column's address) and
    # x_identity_of__mutmut_8 (why an own server is used, seen through a subcompany that
    # falls back to it).
    platform = {r.position: r for r in resolve(parse_config(PLATFORM_ONLY, source="a.yaml"))}
    assert platform["Controller"].as_row() == {
        "position": "Controller",
        "(sub)company": "Acme GmbH",
        "from": f"Acme GmbH <{INBOUND}>",
        "display name": "Acme GmbH",
        "route": "platform fallback",
        "server": "the platform's own servers",
        "why": "Acme GmbH has no custom address: mail goes out from the platform's inbound address",
    }
    own = resolve(parse_config(OWN_SERVER, source="a.yaml", environ={"PW": "x" * 8}))
    assert own[0].as_row() == {
        "position": "Lab Technician",
        "(sub)company": "Acme Labs GmbH",
        "from": "Jürgen Müller <jobs@acme.example>",
        "display name": "Jürgen Müller",
        "route": "own SMTP server",
        "server": "smtp.acme.example:587",
        "why": "Acme Labs GmbH has no settings of its own and falls back to Acme GmbH: "
        "Acme GmbH has a custom address and SMTP settings",
    }


def test_shown_from_keeps_the_address() -> None:
    # Kills sender.x_shown_from__mutmut_2 (the address dropped from a safe name's From).
    assert shown_from("Acme GmbH", "jobs@acme.example") == "Acme GmbH <jobs@acme.example>"
    assert shown_from("Acme\r\nBcc: x", "jobs@acme.example") == (
        "'Acme\\r\\nBcc: x' <jobs@acme.example>"
    )


def _words(field: str) -> list[str]:
    """The decoded text of each RFC 2047 encoded word of a From field built by encode_from."""
    words = field.removeprefix("From: ").rsplit(" <", 1)[0].split("\r\n ")
    return [
        base64.b64decode(w.removeprefix("=?utf-8?b?").removesuffix("?=")).decode() for w in words
    ]


def test_an_encoded_word_holds_up_to_45_octets_and_no_more() -> None:
    # Kills sender.x_encode_from__mutmut_8 (> 45 -> >= 45) and _9 (> 45 -> > 46): RFC 2047
    # section 2 caps an encoded word at 75 characters, which "=?utf-8?b?" and "?=" leave 63
    # for base64, i.e. 45 octets of text.
    euro = "€" * 15  # 45 octets: one word
    assert _words(encode_from(euro, "jobs@acme.example")) == [euro]
    accents = "é" * 23  # 46 octets: two words
    field = encode_from(accents, "jobs@acme.example")
    assert _words(field) == ["é" * 22, "é"]
    assert max(len(w) for w in field.removeprefix("From: ").split()) <= 75


@pytest.mark.parametrize(
    ("field", "name"),
    [
        # Kills sender.x_decode_from__mutmut_4 (split(None, 1)): no space after the colon.
        ("From:Acme GmbH <jobs@acme.example>", "Acme GmbH"),
        # Kills sender.x_decode_from__mutmut_7, _8, _10: a colon inside a quoted name.
        ('From: "Acme: Jobs" <jobs@acme.example>', "Acme: Jobs"),
        # Kills sender.x_decode_from__mutmut_3 (every field taken to start with "From:").
        ("Acme GmbH <jobs@acme.example>", "Acme GmbH"),
        # Kills sender.x_decode_from__mutmut_33 (a field without a name reads as "XXXX").
        ("From: jobs@acme.example", ""),
    ],
)
def test_decode_from_reads_a_field_or_its_value(field: str, name: str) -> None:
    assert decode_from(field) == (name, "jobs@acme.example")


# -- DMARC (RFC 9989) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Kills dmarc.x_is_dmarc_record__mutmut_8 (lstrip(None)): only space and tab (WSP)
        # may stand between the version and the first ';'.
        "v=DMARC1\n; p=none",
        # Kills dmarc.x_is_dmarc_record__mutmut_10 (lstrip("XX \tXX")).
        "v=DMARC1X; p=none",
    ],
)
def test_the_version_tag_is_followed_by_wsp_or_a_separator_only(text: str) -> None:
    assert is_dmarc_record(text) is False


def test_an_empty_tag_between_separators_is_skipped() -> None:
    # Kills dmarc.x__tags__mutmut_9 (continue -> break): a doubled ";" does not end the
    # record's tags.
    record = parse_record("v=DMARC1;; p=reject")
    assert (record.p, record.notes) == ("reject", ())


def test_a_tag_is_delimited_by_space_and_tab_only() -> None:
    # Kills dmarc.x__tags__mutmut_16 and _18 (strip(None) on a tag's name or value) and
    # x_parse_record__mutmut_97 (the note on sp= dropped): a line feed is not WSP, so "\np"
    # is an unknown tag and "reject\n" is not a policy.
    record = parse_record("v=DMARC1;\np=none; sp=reject\n")
    assert (record.p, record.sp) == (None, None)
    assert record.notes == (
        "the record has no p= tag",
        "unknown tag \np was ignored",
        "sp=reject\n is not none, quarantine or reject and was ignored",
    )


def test_every_record_keeps_its_text_and_reads_aspf_t_and_psd() -> None:
    # Kills dmarc.x_parse_record__mutmut_71 (text=None), _88, _120, _125, _126 (aspf not
    # read), _130, _132, _133, _135, _136 (psd=y read as u or another value) and _56, _57
    # (psd=y noted as invalid).
    text = "v=DMARC1; p=reject; aspf=s; t=Y; psd=Y"
    record = parse_record(text)
    assert (record.text, record.aspf, record.testing, record.psd) == (text, "s", True, "y")
    assert record.notes == ()


def test_invalid_values_are_named_in_the_notes() -> None:
    # Kills dmarc.x_parse_record__mutmut_42 to _44 (t=), _62 to _64 (psd=), _97 (sp=),
    # _105 (np=) and _121 (aspf=): each invalid value falls back to its default (RFC 9989
    # section 4.7) and the note says which.
    record = parse_record("v=DMARC1; p=none; sp=block; np=drop; aspf=x; t=maybe; psd=yes")
    assert (record.sp, record.np, record.aspf, record.testing, record.psd) == (
        None,
        None,
        "r",
        False,
        "u",
    )
    assert record.notes == (
        "t=maybe is not y or n; n applies",
        "psd=yes is not y, n or u; u applies",
        "sp=block is not none, quarantine or reject and was ignored",
        "np=drop is not none, quarantine or reject and was ignored",
        "aspf=x is not r or s; relaxed (r) applies",
    )


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        # Kills dmarc.x_tree_walk_names__mutmut_15 (> 8 labels -> > 6): 7 labels walk
        # down one label at a time, the name itself asked once.
        (
            "a.b.c.d.e.acme.example",
            (
                "a.b.c.d.e.acme.example",
                "b.c.d.e.acme.example",
                "c.d.e.acme.example",
                "d.e.acme.example",
                "e.acme.example",
                "acme.example",
            ),
        ),
        # Kills dmarc.x_tree_walk_names__mutmut_16 (> 8 -> > 9): 9 labels jump to 7.
        (
            "a.b.c.d.e.f.g.acme.example",
            (
                "a.b.c.d.e.f.g.acme.example",
                "c.d.e.f.g.acme.example",
                "d.e.f.g.acme.example",
                "e.f.g.acme.example",
                "f.g.acme.example",
                "g.acme.example",
                "acme.example",
            ),
        ),
        # Kills dmarc.x_tree_walk_names__mutmut_6 (rstrip("XX.XX")): names are compared
        # case-insensitively, an upper-case X included.
        ("Shop.ACME.BOX", ("shop.acme.box", "acme.box")),
    ],
)
def test_the_tree_walk_names(domain: str, names: tuple[str, ...]) -> None:
    assert dmarc_names(domain) == names


@dataclass(frozen=True)
class Answer:
    kind: str
    records: tuple[str, ...] = ()
    detail: str = ""


class Zone:
    """A lookup answering TXT queries from a table, recording what it was asked."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, name: str, rdtype: str) -> Answer:
        self.asked.append((name, rdtype))
        if rdtype != "TXT":
            return Answer("nodata")
        return self.answers.get(name, Answer("nxdomain"))


async def test_discovery_of_a_name_given_with_a_trailing_dot_and_in_capitals() -> None:
    # Kills dmarc.x_discover__mutmut_3, _4 (the trailing dot kept, which makes the
    # domain's own record look inherited) and _17 (the walk asks for "txt").
    zone = Zone({"_dmarc.shop.acme.example": Answer("answer", ("v=DMARC1; p=reject",))})
    discovery = await discover("Shop.ACME.example.", lookup=zone)
    assert zone.asked == [("_dmarc.shop.acme.example", "TXT")]
    assert discovery == Discovery(
        "shop.acme.example",
        ("_dmarc.shop.acme.example",),
        record=parse_record("v=DMARC1; p=reject"),
        found_at="shop.acme.example",
    )
    assert discovery.inherited is False


async def test_a_failure_and_an_empty_walk_keep_what_was_asked_and_ignored() -> None:
    # Kills dmarc.x_discover__mutmut_20 to _22, _26 (domain, queried or ignored lost when
    # a DNS failure stops the walk) and _59, _64 (the same at the end of a walk that found none).
    bad = Answer("answer", ("v=spf1 -all",))
    failing = Zone(
        {
            "_dmarc.shop.acme.example": bad,
            "_dmarc.acme.example": Answer("servfail", detail="the DNS server failed"),
        }
    )
    assert await discover("shop.acme.example", lookup=failing) == Discovery(
        "shop.acme.example",
        ("_dmarc.shop.acme.example", "_dmarc.acme.example"),
        ignored=("_dmarc.shop.acme.example holds TXT records that do not start with v=DMARC1",),
        failure="_dmarc.acme.example TXT: the DNS server failed",
    )
    empty = Zone({"_dmarc.shop.acme.example": bad})
    assert await discover("shop.acme.example", lookup=empty) == Discovery(
        "shop.acme.example",
        ("_dmarc.shop.acme.example", "_dmarc.acme.example"),
        ignored=("_dmarc.shop.acme.example holds TXT records that do not start with v=DMARC1",),
    )


async def test_an_inherited_record_applies_through_sp_unless_told_the_domain_is_gone() -> None:
    # Kills dmarc.xǁDiscoveryǁpolicy__mutmut_1 (domain_exists defaults to False) and _13,
    # _14 (a record without p= counts as "none", RFC 9989 section 4.7).
    record = "v=DMARC1; p=reject; sp=quarantine; np=none"
    zone = Zone({"_dmarc.acme.example": Answer("answer", (record,))})
    discovery = await discover("shop.acme.example", lookup=zone)
    assert discovery.policy() == ("quarantine", "sp")
    own = Zone({"_dmarc.acme.example": Answer("answer", ("v=DMARC1; rua=mailto:d@acme.example",))})
    assert (await discover("acme.example", lookup=own)).policy() == ("none", "p")


# -- SPF macros (RFC 7208 section 7) ----------------------------------------------------------

VALUES = MacroValues(
    ip=ipaddress.ip_address("192.0.2.3"),
    sender="Xavier/Jones@acme.example",
    domain="acme.example",
    helo="mail.acme.example",
)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # Kills spfmacro.xǁMacroValuesǁvalue__mutmut_36 to _38.
        (
            lambda: spfmacro.expand("%{t}", VALUES, explanation=True),
            "%{t} needs the time of the check, which was not given",
        ),
        # Kills spfmacro.x__tokens__mutmut_10 to _12: the position counts from 1.
        (
            lambda: spfmacro.expand("ab%c.example", VALUES),
            "'ab%c.example': invalid character or '%' at position 3",
        ),
        # Kills spfmacro.x__tokens__mutmut_24.
        (
            lambda: spfmacro.expand("%{c}.example", VALUES),
            "'%{c}.example': %{c} is not a macro allowed here",
        ),
        # Kills spfmacro.x__tokens__mutmut_29.
        (
            lambda: spfmacro.expand("%{d0}", VALUES),
            "'%{d0}': a macro cannot keep zero parts ('%{d0}')",
        ),
        # Kills spfmacro.x_expand__mutmut_61.
        (
            lambda: spfmacro.expand("a b.example", VALUES),
            "'a b.example': a space is not allowed in a domain",
        ),
        # Kills spfmacro.x_domain_spec__mutmut_3.
        (lambda: spfmacro.domain_spec(""), "the domain is empty"),
        # Kills spfmacro.x_is_macro_string__mutmut_2 (spaces allowed by default) and
        # x_domain_spec__mutmut_7 to _9: a domain-spec holds no space (section 7.1).
        (lambda: spfmacro.domain_spec("a b.example"), "invalid character or macro in the domain"),
    ],
)
def test_macro_errors_say_what_is_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(MacroError) as raised:
        call()
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "closeness"),
    [
        ("acme.example", 0),
        ("ACME.Example.", 0),
        ("mail.acme.example", 1),
        ("Mail.ACME.example.", 1),
        ("badacme.example", 2),
        ("acme.example.org", 2),
    ],
)
def test_closeness_of_a_validated_name(name: str, closeness: int) -> None:
    # Kills spfmacro.x_closeness__mutmut_2 to _4, _6 to _8, _10 to _16, _19, _20: section 7.3
    # prefers the domain itself (0), then a name under it (1), over any other (2), compared
    # without case and trailing dot.
    assert spfmacro.closeness(name, "Acme.Example.") == closeness


def test_the_default_delimiter_is_the_dot_alone_and_capitals_escape_every_reserved_byte() -> None:
    # Kills spfmacro.x__transform__mutmut_12 ("." -> "XX.XX": X split too) and
    # x_expand__mutmut_40 (quote() leaves "/" as it is): section 7.3 URL-escapes all but the
    # unreserved characters.
    assert spfmacro.expand("%{l}", VALUES) == "Xavier/Jones"
    assert spfmacro.expand("%{L}", VALUES) == "Xavier%2FJones"


def test_a_name_of_exactly_253_characters_is_kept_whole() -> None:
    # Kills spfmacro.x_expand_domain__mutmut_14 (> 253 -> >= 253): labels are dropped only
    # while the name is longer than 253 characters (section 7.3).
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    values = MacroValues(ip=VALUES.ip, sender="jobs@" + name, domain=name, helo=name)
    assert spfmacro.expand_domain("%{d}", values) == name
    longer = MacroValues(ip=VALUES.ip, sender="jobs@c." + name, domain="c." + name, helo=name)
    assert spfmacro.expand_domain("%{d}", longer) == name


# -- Authentication-Results (RFC 8601, comments and quoted strings of RFC 5322) ---------------

AUTHRES = (
    "mx.acme.example; spf=pass (sender (SPF) header.d=evil.example; ok \\) x=y)"
    " smtp.mailfrom=acme.example;"
    ' dkim=fail reason="bad \\"sig\\" (b)" header.d=acme.example;;'
    " dmarc=pass(p=reject)header.from=acme.example; arc=none"
)


def test_comments_nest_and_quoted_pairs_neither_open_nor_close_them() -> None:
    # Kills authres.x__strip_comments__mutmut_10 to _19, _21, _22, _26 (a quoted-pair
    # inside a comment or a quoted string, a nested comment), _35, _37, _39, _41 (a comment
    # ends a word like a space; a quoted string's "(" opens no comment) and x__unquote__mutmut_16, _17 (quoted-pairs
    # unescaped), x_parse_authentication_results_value__mutmut_24 (an empty resinfo ends
    # the list): RFC 5322 section 3.2.2 and 3.2.4, RFC 8601 section 2.2.
    results = parse_authentication_results_value(AUTHRES)
    assert [(r.method, r.result, r.reason, r.properties) for r in results] == [
        ("spf", "pass", None, (("smtp.mailfrom", "acme.example"),)),
        ("dkim", "fail", 'bad "sig" (b)', (("header.d", "acme.example"),)),
        ("dmarc", "pass", None, (("header.from", "acme.example"),)),
        ("arc", "none", None, ()),
    ]
    assert {r.authserv_id for r in results} == {"mx.acme.example"}


def test_an_empty_quoted_reason_is_empty() -> None:
    # Kills authres.x__unquote__mutmut_2 and _3 (>= 2 -> > 2 / >= 3): '""' is a quoted
    # string of no characters.
    (result,) = parse_authentication_results_value('mx.acme.example; dkim=none reason=""')
    assert result.reason == ""


def test_a_result_described_on_one_line() -> None:
    # Kills authres.xǁAuthResultǁdescribe__mutmut_10, _11 (properties shown when there are
    # none).
    spf, dkim, _, arc = parse_authentication_results_value(AUTHRES)
    assert arc.describe() == "arc=none"
    assert spf.describe() == "spf=pass (smtp.mailfrom=acme.example)"
    assert dkim.describe() == "dkim=fail reason='bad \"sig\" (b)' (header.d=acme.example)"


# -- ARC (RFC 8617) --------------------------------------------------------------------------

BROKEN_CHAIN = (
    "ARC-Seal: i=x; cv=none\r\n"
    "ARC-Seal: cv=none; d=lists.example\r\n"
    "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=acme.example; s=arc; b=AAAA\r\n"
    "ARC-Seal: i=2; a=rsa-sha256; d=lists.example; s=arc; b=AAAA\r\n"
    "ARC-Message-Signature: i=3; a=rsa-sha256; d=relay.example; s=arc; bh=A; b=A\r\n"
    "ARC-Authentication-Results: i=3; mx.relay.example; spf=pass smtp.mailfrom=acme.example\r\n"
    "ARC-Authentication-Results: a=3; mx.relay.example; spf=pass\r\n"
    "ARC-Seal: i=123456789012345678901234; cv=pass\r\n"
)


def test_a_broken_arc_chain_instance_by_instance() -> None:
    # Kills arc.x_parse_arc__mutmut_22 (a seal without i=), _40, _45 (an
    # ARC-Authentication-Results whose first tag is not i=), _58, _59 (a long i= clipped
    # to 20 characters), _60 (an invalid header ends the reading of its kind), _123 (a seal
    # without cv=), _141 (cv missing at i=2), _146, _166 to _168, _187 (an instance without
    # results, the header counts), xǁArcInstanceǁto_dict__mutmut_1 to _12,
    # xǁArcChainǁto_dict__mutmut_1, _2, _5 to _8 (the JSON keys) and
    # message.x_clip__mutmut_3, _6 to _8 (clip() keeps limit - 1 characters and "…").
    # RFC 8617 section 4.1: each instance has one header of each kind, i=1 to 50.
    chain = parse_arc(BROKEN_CHAIN.encode() + application())
    assert chain.problems == (
        "ARC-Seal with an invalid instance tag i='x'",
        "ARC-Seal with an invalid instance tag i=''",
        "ARC-Seal with an invalid instance tag i='1234567890123456789…'",
        "ARC-Authentication-Results with an invalid instance tag i=''",
        "instance i=1 has 0 ARC-Message-Signature header(s)",
        "instance i=1 has 0 ARC-Authentication-Results header(s)",
        "instance i=2 has 0 ARC-Message-Signature header(s)",
        "instance i=2 has 0 ARC-Authentication-Results header(s)",
        "ARC-Seal i=2 must say cv=pass or cv=fail, says cv=None",
        "instance i=3 has 0 ARC-Seal header(s)",
    )
    assert [
        (i.i, i.cv, i.seals, i.signatures, i.authentication_results) for i in chain.instances
    ] == [(1, "none", 1, 0, 0), (2, None, 1, 0, 0), (3, None, 0, 1, 1)]
    spf = {
        "authserv_id": "mx.relay.example",
        "method": "spf",
        "result": "pass",
        "reason": None,
        "properties": {"smtp.mailfrom": "acme.example"},
    }
    assert chain.to_dict() == {
        "instances": [
            {
                "i": 1,
                "cv": "none",
                "seal_domain": "acme.example",
                "signature_domain": None,
                "authserv_id": None,
                "results": [],
            },
            {
                "i": 2,
                "cv": None,
                "seal_domain": "lists.example",
                "signature_domain": None,
                "authserv_id": None,
                "results": [],
            },
            {
                "i": 3,
                "cv": None,
                "seal_domain": None,
                "signature_domain": "relay.example",
                "authserv_id": "mx.relay.example",
                "results": [spf],
            },
        ],
        "complete": False,
        "cv": None,
        "problems": list(chain.problems),
        "validated": False,
    }


def test_instance_numbers_run_from_1_to_50() -> None:
    # Kills arc.x_parse_arc__mutmut_52 and _53 (50 left out, 51 let in; RFC 8617 section
    # 4.2.1), _77 (a message without ARC headers reported as missing instance 1) and _187.
    chain = parse_arc(b"ARC-Seal: i=50; cv=pass\r\nARC-Seal: i=51; cv=pass\r\n" + application())
    assert chain.problems[0] == "ARC-Seal with an invalid instance tag i='51'"
    assert [i.i for i in chain.instances] == [50]
    assert parse_arc(application()).problems == ()


# -- mail loops ------------------------------------------------------------------------------


def test_a_loop_through_one_server_named_with_and_without_its_root_dot() -> None:
    # Kills loops.x__loopback__mutmut_2 to _4, _7, _8 (a hop from "Localhost." is a content
    # filter handing the message back, not a repeat), _11 (a hop without a from address
    # counts), x_detect_loop__mutmut_12, _13 (mx.acme.example. and mx.acme.example are one
    # host), _29 to _31 (X-Original-To is watched too, and named as written) and
    # xǁLoopVerdictǁoutcome__mutmut_12, _13, _15, _17, _18, _20 to _23, _25 to _34 (the
    # finding's wording and remediation).
    message = (
        received(
            "from Localhost. by MX.acme.example. (Postfix) with ESMTP id B"
            " for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:03 +0100",
            "by mx.acme.example (Postfix) with ESMTP id A for <jobs@acme.example>;"
            " Thu, 26 Nov 2026 09:30:02 +0100",
            "by mx.acme.example. (Postfix) with ESMTP id C for <jobs@acme.example>;"
            " Thu, 26 Nov 2026 09:30:01 +0100",
        )
        + b"X-Original-To: jobs@acme.example\r\nX-Original-To: jobs@acme.example\r\n"
        + application()
    )
    assert detect_loop(message).outcome() == Outcome(
        Status.FAIL,
        "Mail loop",
        "mx.acme.example received it for jobs@acme.example 2 times (hops 1 and 2); "
        "X-Original-To: jobs@acme.example appears 2 times",
        cause=Cause.LOOP_DETECTED,
        remediation=(
            "Two redirections point at each other (or a redirect points back at its own "
            "address through an alias): make the custom address redirect to the platform's "
            "inbound address only, and remove any rule that sends mail from the platform "
            "back to the custom address."
        ),
    )


def test_no_loop_says_how_many_hops() -> None:
    # Kills loops.xǁLoopVerdictǁoutcome__mutmut_3, _4, _6 to _10.
    assert detect_loop(redirected(application())).outcome() == Outcome(
        Status.PASS, "No mail loop", "2 hop(s), none repeated"
    )


# -- mailing lists and returned reports -------------------------------------------------------


def _headers(text: str) -> Message:
    return as_message(text.encode() + application())


@pytest.mark.parametrize(
    ("headers", "returned"),
    [
        # Kills lists.x_returned_report__mutmut_2 to _4: a multipart/report (RFC 6522).
        ("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", True),
        # Kills _12 and _20: any Auto-Submitted but "no" (RFC 3834 section 5).
        ("Auto-Submitted: auto-replied\r\n", True),
        ("Auto-Submitted: no\r\n", False),
        # Kills _47 and _52: the null reverse-path of a report (RFC 5321 section 4.5.5).
        ("Return-Path: <>\r\n", True),
    ],
)
def test_a_returned_report_is_told_by_its_type_headers_or_sender(
    headers: str, returned: bool
) -> None:
    message = email.message_from_string(headers + "Subject: Re: jobs\r\n\r\nbody\r\n")
    assert returned_report(message) is returned


@pytest.mark.parametrize(
    ("headers", "address", "domain"),
    [
        # Kills lists.x_list_address__mutmut_1, _4, _7, _10 (each header a list server names
        # itself in), _20, _27 and x_list_domain__mutmut_7 (the domain after the "@").
        ("X-BeenThere: jobs@lists.acme.example\r\n", "jobs@lists.acme.example", None),
        ("X-Mailing-List: <jobs@lists.acme.example>\r\n", "jobs@lists.acme.example", None),
        ("List-Post: <mailto:Jobs@Lists.Acme.Example>\r\n", "jobs@lists.acme.example", None),
        (
            "Mailing-List: list jobs@lists.acme.example; contact jobs-help@lists.acme.example\r\n",
            "jobs@lists.acme.example",
            None,
        ),
        # Kills x_list_domain__mutmut_3 and _4: the root's dot is not part of the domain.
        ("X-BeenThere: jobs@lists.acme.example.\r\n", "jobs@lists.acme.example.", None),
        # Kills x_list_domain__mutmut_1: the list's address wins over List-Id.
        (
            "X-BeenThere: jobs@lists.acme.example\r\nList-Id: <jobs.other.example>\r\n",
            "jobs@lists.acme.example",
            None,
        ),
        # Kills x_list_domain__mutmut_10, _15, _16, _21, _26 to _29, _34 to _40 (List-Id's id
        # without the list's own label, RFC 2919 section 2) and _30, _31 (an id of three
        # labels has a domain).
        ("List-Id: Jobs <jobs.Lists.Acme.example>\r\n", None, "lists.acme.example"),
        ("List-Id: <jobs.acme.example>\r\n", None, "acme.example"),
        ("List-Id: <jobs.example>\r\n", None, None),
        ("", None, None),
    ],
)
def test_the_list_address_and_domain(headers: str, address: str | None, domain: str | None) -> None:
    message = _headers(headers)
    assert list_address(message) == address
    expected = domain if address is None else "lists.acme.example"
    assert list_domain(message) == expected


@pytest.mark.parametrize(
    ("seal", "sealed_by"),
    [
        # Kills lists.x_list_signs__mutmut_35, _54, _57, _62 to _67, _70, _73, _74, _77 to
        # _79 (a seal by the list's domain, or by a domain above it, supports the list signs;
        # one by another domain, or without d=, does not).
        ("d=Mail.Lists.Acme.Example", "Mail.Lists.Acme.Example"),
        ("d=acme.example", "acme.example"),
        ("d=other.example", None),
        ("cv=none", None),
    ],
)
def test_an_arc_seal_of_the_lists_domain_is_a_sign(seal: str, sealed_by: str | None) -> None:
    # Also kills _10, _11 (each value cut to 60 characters), _28, _29 (Precedence read
    # without case) and _80 (the first matching seal ends the search, not the signs).
    message = _headers(
        "List-Id: Recruiting jobs and the people who answer them, for every Acme company"
        " <jobs.lists.acme.example>\r\n"
        "X-BeenThere: jobs@mail.lists.acme.example\r\nPrecedence: List\r\n"
        f"ARC-Seal: i=2; cv=pass; {seal}\r\nARC-Seal: i=1; cv=none; d=lists.acme.example\r\n"
    )
    signs = [
        "List-Id: Recruiting jobs and the people who answer them, for every A…,"
        " X-BeenThere: jobs@mail.lists.acme.example: a mailing list redistributed it",
        "Precedence: list",
    ]
    by = sealed_by or "lists.acme.example"
    assert list_signs(message) == [*signs, f"ARC-Seal by {by}, the list's domain"]


def test_precedence_junk_is_a_list_sign() -> None:
    # Kills lists.x_list_signs__mutmut_32 and _33.
    message = _headers("List-Id: <jobs.lists.acme.example>\r\nPrecedence: junk\r\n")
    assert list_signs(message)[1:] == ["Precedence: junk"]


# -- the diagnosis engine ---------------------------------------------------------------------


def _bounce(text: str, **recipient: str) -> Bounce:
    recipients = (
        (RecipientStatus(final_recipient="rfc822; max@example.org", action="failed", **recipient),)
        if recipient
        else ()
    )
    return Bounce(
        subject="Undelivered Mail Returned to Sender",
        text=text,
        reporting_mta="dns; mx.acme.example",
        recipients=recipients,
    )


REPLY_IN_DIAGNOSTIC_CODE = _bounce(
    "The mail system could not deliver your message.",
    status="5.0.0",
    diagnostic_code="smtp; 550 5.1.1 <max@example.org>: user unknown",
    remote_mta="dns; mx.example.org",
)
REPLY_IN_THE_REPORT = _bounce("host mx.example.org said: 552 5.2.2 mailbox full", status="5.1.1")
GENERIC_STATUS = _bounce(
    "Delivery refused by policy 5.7.1.", status="5.0.0", diagnostic_code="smtp; 550 rejected"
)
STATUS_ONLY = _bounce(
    "Delivery refused by policy 5.7.1.", status="5.1.1", diagnostic_code="smtp; 550 rejected"
)
NO_RECIPIENT = _bounce("host mx.example.org said: 550 5.1.1 user unknown")


@pytest.mark.parametrize(
    ("bounce", "text", "code", "enhanced", "status_only"),
    [
        # Kills engine.x_extract_bounce_failure__mutmut_33 and _57: the Diagnostic-Code's
        # reply gives both codes though the report quotes none.
        (
            REPLY_IN_DIAGNOSTIC_CODE,
            "smtp; 550 5.1.1 <max@example.org>: user unknown\n"
            "The mail system could not deliver your message.",
            "550",
            "5.1.1",
            False,
        ),
        # Kills _34 and _56: without a Diagnostic-Code, the reply quoted in the report beats
        # the Status.
        (
            REPLY_IN_THE_REPORT,
            "\nhost mx.example.org said: 552 5.2.2 mailbox full",
            "552",
            "5.2.2",
            False,
        ),
        # Kills _38, _41 and _42: a Status of 5.0.0 gives way to any code in the text.
        (
            GENERIC_STATUS,
            "smtp; 550 rejected\nDelivery refused by policy 5.7.1.",
            "550",
            "5.7.1",
            False,
        ),
        # Kills _35 and _39: a code in the text without a reply code does not replace a
        # specific Status, which stands in for the reply's missing one.
        (
            STATUS_ONLY,
            "smtp; 550 rejected\nDelivery refused by policy 5.7.1.",
            "550",
            "5.1.1",
            True,
        ),
    ],
)
def test_which_code_of_a_bounce_decides(
    bounce: Bounce, text: str, code: str, enhanced: str, status_only: bool
) -> None:
    # Also kills _10, _13, _15, _48, _54: a bounce reports a reply to the message or a
    # recipient, never to AUTH, unless it names the AUTH stage.
    assert extract_bounce_failure(bounce) == Failure(
        text=text,
        code=code,
        enhanced=enhanced,
        bounce=bounce,
        status_only=status_only,
        answers_auth=False,
    )


def test_a_bounce_without_recipient_fields_keeps_the_bounce() -> None:
    # Kills engine.x_extract_bounce_failure__mutmut_20 and _25 (the bounce dropped, and the
    # reporting MTA with it from the evidence).
    failure = extract_bounce_failure(NO_RECIPIENT)
    assert (failure.bounce, failure.code, failure.enhanced) == (NO_RECIPIENT, "550", "5.1.1")
    assert classify_failure(failure).evidence["reporting_mta"] == "dns; mx.acme.example"


def test_the_evidence_of_a_bounce_names_the_remote_mta() -> None:
    # Kills engine.x__evidence__mutmut_44 to _46.
    evidence = classify_failure(extract_bounce_failure(REPLY_IN_DIAGNOSTIC_CODE)).evidence
    assert evidence["remote_mta"] == "dns; mx.example.org"


@pytest.mark.parametrize(
    ("text", "answers_auth"),
    [
        # Kills engine.x__answers_auth__mutmut_3: the stage named is AUTH.
        (
            "SMTP error from remote mail server after AUTH PLAIN:\n"
            "535 5.7.8 Authentication credentials invalid",
            True,
        ),
        # Kills _4: a 530 in answer to RCPT TO is not a login failure (RFC 4954 section 6
        # gives 530 to any command the server wants authentication for).
        (
            "SMTP error from remote mail server after RCPT TO:<max@example.org>:\n"
            "530 5.7.0 Authentication required",
            False,
        ),
        # Kills x_extract_failure__mutmut_23 and _26: without a reply code the stage still
        # says which command failed.
        ("SASL authentication failed; 5.7.8 credentials", True),
    ],
)
def test_whether_a_reply_answered_auth(text: str, answers_auth: bool) -> None:
    assert extract_failure(text).answers_auth is answers_auth


def test_the_enhanced_code_next_to_the_reply_code_after_a_quote() -> None:
    # Kills engine.x__first_reply__mutmut_14 (lstrip(None)): the enhanced code right after
    # the reply code, behind a quote, is the reply's, not an earlier one on the line.
    failure = extract_failure("error 4.7.0 earlier; said: 550 '5.7.1 Rejected")
    assert (failure.code, failure.enhanced) == ("550", "5.7.1")


def test_a_reply_on_the_second_line_of_the_input() -> None:
    # Kills engine.x_extract_failure__mutmut_41: the wording starts at the reply's line,
    # which is the input's second when the first is empty.
    assert extract_failure("\n550 5.1.1 User unknown").text == "550 5.1.1 User unknown"


def test_evidence_quotes_the_replys_first_line_up_to_500_characters() -> None:
    # Kills engine.x__evidence__mutmut_15, _16 (another line quoted), _19 (a reply quoted
    # without a reply code) and _23 (501 characters).
    evidence = diagnose("550 5.1.1 user unknown\nsecond line\nthird line").evidence
    assert evidence["reply"] == "550 5.1.1 user unknown"
    long = diagnose("550 5.1.1 " + "x" * 600).evidence
    assert long["reply"] == ("550 5.1.1 " + "x" * 600)[:500]
    assert "reply" not in diagnose("the server said something about 5.1.1").evidence


def test_an_unknown_failure_has_the_unknown_advice_and_read_only_evidence() -> None:
    # Kills engine.x_classify_failure__mutmut_71, _72 (the unknown cause's advice) and
    # xǁDiagnosisǁ__post_init____mutmut_7, _8 (the evidence left writable).
    diagnosis = diagnose("hello there")
    assert (diagnosis.cause, diagnosis.explanation) == (
        Cause.UNKNOWN,
        "No rule recognised this failure.",
    )
    assert diagnosis.remediation.startswith("Read the server's full reply or bounce")
    with pytest.raises(TypeError):
        diagnosis.evidence["cause"] = "forged"  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        # Kills engine.x_diagnose__mutmut_7, _10, _11: a str holding a lone surrogate (a
        # file name or argument read with surrogateescape) is diagnosed, not an error.
        "550 5.1.1 user \udcff unknown",
    ],
)
def test_input_that_is_not_clean_utf8_is_diagnosed(data: str | bytes) -> None:
    assert diagnose(data).cause is Cause.RECIPIENT_UNKNOWN


# -- SPF evaluation (RFC 7208) ----------------------------------------------------------------


class Dns:
    """A lookup answering from a table of (name, type), as the Lookup seam is asked: names
    without the root's dot, types in capitals; anything else does not exist."""

    def __init__(self, records: dict[tuple[str, str], tuple[str, ...] | str]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, name: str, rdtype: str) -> Answer:
        self.asked.append((name, rdtype))
        found = self.records.get((name, rdtype))
        if isinstance(found, str):
            return Answer(found, detail=f"{found} for {name}")
        return Answer("answer", found) if found else Answer("nxdomain")


IP = "192.0.2.10"
PTR = "10.2.0.192.in-addr.arpa"


async def test_ptr_without_a_reverse_name_does_not_match_and_errors_are_no_temperror() -> None:
    # Kills spf.x__ptr_matches__mutmut_13 and _17 (no PTR answer taken for a match): a
    # name that does not exist is a void lookup, a failing server no match (section 5.5).
    for reverse in ("nxdomain", "servfail"):
        dns = Dns({("acme.example", "TXT"): ("v=spf1 ptr -all",), (PTR, "PTR"): reverse})
        evaluation = await check_host(IP, "acme.example", lookup=dns)
        assert (evaluation.result, evaluation.void_lookups) == (
            "fail",
            1 if reverse == "nxdomain" else 0,
        )


def _reverse(*names: str, **forward: tuple[str, ...] | str) -> dict[tuple[str, str], Any]:
    """PTR names of IP, and the A records of each name (a name left out does not exist)."""
    table: dict[tuple[str, str], Any] = {(PTR, "PTR"): names}
    table.update({(name.replace("_", "."), "A"): value for name, value in forward.items()})
    return table


LONG_LABEL = "x" * 64 + ".acme.example."


@pytest.mark.parametrize(
    ("names", "forward", "result"),
    [
        # Kills spf.x__ptr_matches__mutmut_29 (a name that does not validate ends the
        # search): each of the first 10 names is tried (section 5.5).
        (
            (LONG_LABEL, "mx.acme.example.", "mail.acme.example."),
            {"mail_acme_example": (IP,)},
            "pass",
        ),
        # Kills _35: a name whose addresses do not include the IP is not validated.
        (("mail.acme.example.",), {"mail_acme_example": ("198.51.100.1",)}, "fail"),
    ],
)
async def test_ptr_matches_only_a_validated_name(
    names: tuple[str, ...], forward: dict[str, tuple[str, ...]], result: str
) -> None:
    dns = Dns({("acme.example", "TXT"): ("v=spf1 ptr -all",), **_reverse(*names, **forward)})
    assert (await check_host(IP, "acme.example", lookup=dns)).result == result


async def _explained(table: dict[tuple[str, str], Any]) -> str:
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 -all exp=explain.acme.example",),
            ("explain.acme.example", "TXT"): ("%{i} is not mail.acme.example but %{p}",),
            **table,
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns, sender="jobs@acme.example")
    assert evaluation.result == "fail"
    return evaluation.explanation


@pytest.mark.parametrize(
    ("table", "validated"),
    [
        # Kills spf.x__validated_name__mutmut_18 and _20 (names not sorted): a name under
        # the domain is preferred over another (section 7.3).
        (
            _reverse(
                "a.other.example.",
                "mail.acme.example.",
                a_other_example=(IP,),
                mail_acme_example=(IP,),
            ),
            "mail.acme.example",
        ),
        # Kills _28 (a name that cannot be queried ends the search).
        (
            _reverse(LONG_LABEL, "mail.other.example.", mail_other_example=(IP,)),
            "mail.other.example",
        ),
        # Kills _11 and _12: "unknown" without a validated name.
        ({}, "unknown"),
    ],
)
async def test_the_validated_name_in_an_explanation(
    table: dict[tuple[str, str], Any], validated: str
) -> None:
    # Also kills spf.x__explanation__mutmut_19 and x__validated_name__mutmut_7, _37 (the
    # types asked in lower case) and x_check_host__mutmut_16 (the identity known only when
    # both sender and HELO are given).
    assert await _explained(table) == f"{IP} is not mail.acme.example but {validated}"


async def test_d_in_an_included_record_is_the_included_domain() -> None:
    # Kills spf.xǁ_Stateǁvalues__mutmut_6 (%{d} is the domain of the record being
    # evaluated, not the one check_host started from; section 7.3 and 5.2) and
    # x__matches__mutmut_87 (exists: asks for "a").
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 include:_spf.acme.example -all",),
            ("_spf.acme.example", "TXT"): ("v=spf1 exists:%{d}.allowed.acme.example -all",),
            ("_spf.acme.example.allowed.acme.example", "A"): ("127.0.0.2",),
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns, sender="jobs@acme.example")
    assert evaluation.result == "pass"


async def test_an_mx_exchange_is_asked_without_the_roots_dot() -> None:
    # Kills spf.x__hosts__mutmut_10 and _11 (the exchange's dot kept, or a leading one
    # stripped) and x__matches__mutmut_31, _138 (the types asked in lower case).
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 mx -all",),
            ("acme.example", "MX"): ("10 mx.acme.example.", "0 ."),
            ("mx.acme.example", "A"): (IP,),
        }
    )
    assert (await check_host(IP, "acme.example", lookup=dns)).result == "pass"
    assert ("mx.acme.example", "A") in dns.asked


@pytest.mark.parametrize(
    ("record", "term", "message"),
    [
        # Together they kill spf.xǁSpfSyntaxErrorǁ__init____mutmut_1, _2 and the mutants of
        # x__parse_mechanism that drop the term or the reason of its error, or change its
        # words: _4, _5, _8, _9, _28, _29, _32, _33, _48, _49, _72, _73, _76, _77, _102,
        # _103, _113, _124, _162, _163, _181, _182, and _61, _82 (the term of an invalid
        # domain-spec).
        ("v=spf1 /24 -all", "/24", "neither a mechanism nor a modifier"),
        ("v=spf1 all:x", "all:x", "'all' takes no argument"),
        ("v=spf1 include", "include", "'include' needs ':domain'"),
        (
            "v=spf1 include:acme.example/24",
            "include:acme.example/24",
            "the domain must end in a top-level label of letters, not 'example/24'",
        ),
        ("v=spf1 ptr/24", "ptr/24", "'ptr' takes only ':domain'"),
        (
            "v=spf1 ptr:acme.example/24",
            "ptr:acme.example/24",
            "the domain must end in a top-level label of letters, not 'example/24'",
        ),
        ("v=spf1 a%", "a%", "'a' takes ':domain', '/ip4-cidr' and '//ip6-cidr'"),
        ("v=spf1 a/33", "a/33", "CIDR length /33 is not 0 to 32"),
        ("v=spf1 a//129", "a//129", "CIDR length /129 is not 0 to 128"),
        ("v=spf1 ip4", "ip4", "'ip4' needs ':address' with an optional '/cidr'"),
        ("v=spf1 ip4:300.0.0.1", "ip4:300.0.0.1", "'300.0.0.1' is not an address"),
        # spf.x_parse_record__mutmut_51, _60, _61, _64, _65: a modifier's invalid value.
        (
            "v=spf1 redirect=-bad",
            "redirect=-bad",
            "the domain must end in a top-level label of letters, not '-bad'",
        ),
        ("v=spf1 foo=%{x} -all", "foo=%{x}", "invalid character or macro in the modifier's value"),
        # spf.x_parse_record__mutmut_3 to _9 and _11: a record-wide error names no term.
        ("v=spf2 -all", "", "the record does not start with 'v=spf1'"),
        ("v=spf1 -all ä", "", "the record holds characters that are not 7-bit ASCII"),
    ],
)
def test_a_syntax_error_names_its_term_and_reason(record: str, term: str, message: str) -> None:
    with pytest.raises(SpfSyntaxError) as raised:
        spf_record(record)
    assert (raised.value.term, raised.value.reason) == (term, message)
    assert str(raised.value) == (f"'{term}': {message}" if term else message)


def test_an_unknown_modifier_may_use_every_macro_letter() -> None:
    # Kills spf.x_parse_record__mutmut_56, _58, _59: RFC 7208's macro-letter includes c, r
    # and t, which only explanations expand; an unknown modifier is a macro-string.
    assert spf_record("v=spf1 foo=%{c}.%{r}.%{t} -all").has_all


A_ELSEWHERE = ("198.51.100.1",)
MX_TEN = {
    ("acme.example", "MX"): tuple(f"10 mx{i}.acme.example." for i in range(10)),
    **{(f"mx{i}.acme.example", "A"): A_ELSEWHERE for i in range(10)},
}


@pytest.mark.parametrize(
    ("table", "result", "problem"),
    [
        # Kills spf.x__check__mutmut_20 and x_check_host__mutmut_61 (the TXT failure
        # unnamed).
        (
            {("acme.example", "TXT"): "servfail"},
            "temperror",
            "acme.example TXT: servfail for acme.example",
        ),
        # Kills spf.xǁ_Stateǁask__mutmut_9 and x__matches__mutmut_103, _104, _80, _81,
        # _131, _132, _154, _155: a failing lookup names the name, the type, the term and
        # the record (section 4.4 and 5: temperror).
        (
            {
                ("acme.example", "TXT"): ("v=spf1 a:mx.acme.example -all",),
                ("mx.acme.example", "A"): "servfail",
            },
            "temperror",
            "mx.acme.example A for 'a:mx.acme.example' in acme.example: servfail for mx.acme.example",
        ),
        (
            {
                ("acme.example", "TXT"): ("v=spf1 exists:x.acme.example -all",),
                ("x.acme.example", "A"): "timeout",
            },
            "temperror",
            "x.acme.example A for 'exists:x.acme.example' in acme.example: timeout for x.acme.example",
        ),
        (
            {("acme.example", "TXT"): ("v=spf1 mx -all",), ("acme.example", "MX"): "servfail"},
            "temperror",
            "acme.example MX for 'mx' in acme.example: servfail for acme.example",
        ),
        (
            {
                ("acme.example", "TXT"): ("v=spf1 mx -all",),
                ("acme.example", "MX"): ("10 mx.acme.example.",),
                ("mx.acme.example", "A"): "refused",
            },
            "temperror",
            "mx.acme.example A for 'mx' in acme.example: refused for mx.acme.example",
        ),
        # Kills spf.x__check__mutmut_33 and _37.
        (
            {("acme.example", "TXT"): ("v=spf1 -all", "v=spf1 +all")},
            "permerror",
            "acme.example publishes 2 SPF records; there must be one",
        ),
        (
            {("acme.example", "TXT"): ("v=spf1 ip4:300.0.0.1 -all",)},
            "permerror",
            "the record of acme.example is invalid: 'ip4:300.0.0.1': '300.0.0.1' is not an address",
        ),
        # Kills spf.x__matches__mutmut_66 and x__check__mutmut_105 (section 5.2 and 6.1: a
        # target without a record is permerror).
        (
            {("acme.example", "TXT"): ("v=spf1 include:none.acme.example -all",)},
            "permerror",
            "'include:none.acme.example' in the record of acme.example: none.acme.example has "
            "no SPF record",
        ),
        (
            {("acme.example", "TXT"): ("v=spf1 redirect=none.acme.example",)},
            "permerror",
            "'redirect=none.acme.example' in the record of acme.example: none.acme.example has "
            "no SPF record",
        ),
        # Kills spf.x__matches__mutmut_149 and _150: 10 MX names are allowed, 11 are
        # permerror (section 4.6.4); x_check_host__mutmut_42, _65 (a fail has no problem).
        ({("acme.example", "TXT"): ("v=spf1 mx -all",), **MX_TEN}, "fail", ""),
        (
            {
                ("acme.example", "TXT"): ("v=spf1 mx -all",),
                ("acme.example", "MX"): tuple(f"10 mx{i}.acme.example." for i in range(11)),
            },
            "permerror",
            "'mx' in the record of acme.example: acme.example has 11 MX records, more than 10",
        ),
        # Kills spf.x__check__mutmut_61 to _63: a redirect counts as a lookup, and is named
        # when it is the 11th.
        (
            {
                ("acme.example", "TXT"): (
                    "v=spf1 "
                    + " ".join(f"a:h{i}.acme.example" for i in range(10))
                    + " redirect=_spf.acme.example",
                ),
                **{(f"h{i}.acme.example", "A"): A_ELSEWHERE for i in range(10)},
            },
            "permerror",
            "more than 10 DNS lookups: the 11th is 'redirect=_spf.acme.example' in the record "
            "of acme.example",
        ),
        # Kills spf.x__ptr_matches__mutmut_9, _10, x__matches__mutmut_174, _91, _92, _142,
        # _143: each void lookup named (section 4.6.4 allows 2).
        (
            {
                ("acme.example", "TXT"): (
                    "v=spf1 ptr exists:nx1.acme.example mx:nx2.acme.example -all",
                )
            },
            "permerror",
            "more than 2 void lookups (names that do not exist or have no record): 'ptr' in the "
            "record of acme.example, 'exists:nx1.acme.example' in the record of acme.example, "
            "'mx:nx2.acme.example' in the record of acme.example",
        ),
        # Kills spf.x__matches__mutmut_140: an MX target no query can be made for does not
        # match.
        ({("acme.example", "TXT"): ("v=spf1 mx:" + "x" * 64 + ".acme.example -all",)}, "fail", ""),
    ],
)
async def test_what_each_error_says(
    table: dict[tuple[str, str], Any], result: str, problem: str
) -> None:
    evaluation = await check_host(IP, "acme.example", lookup=Dns(table))
    assert (evaluation.result, evaluation.problem) == (result, problem)


async def test_a_redirect_with_a_macro_and_no_identity_is_left_unevaluated() -> None:
    # Kills spf.x__check__mutmut_70 to _72.
    dns = Dns({("acme.example", "TXT"): ("v=spf1 redirect=%{d}.spf.acme.example",)})
    evaluation = await check_host(IP, "acme.example", lookup=dns)
    assert (evaluation.result, evaluation.unevaluated) == (
        "neutral",
        ("'redirect=%{d}.spf.acme.example' in the record of acme.example",),
    )


async def test_what_each_include_and_redirect_costs_and_at_which_depth() -> None:
    # Kills spf.x__matches__mutmut_49, _50 (the depth of an included record) and
    # x__check__mutmut_88 to _94, _99 to _101 (the redirect's cost and depth).
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 include:a.acme.example redirect=b.acme.example",),
            ("a.acme.example", "TXT"): ("v=spf1 include:d.acme.example -all",),
            ("d.acme.example", "TXT"): ("v=spf1 -all",),
            ("b.acme.example", "TXT"): ("v=spf1 include:c.acme.example ~all",),
            ("c.acme.example", "TXT"): ("v=spf1 -all",),
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns)
    assert (evaluation.result, evaluation.matched) == (
        "softfail",
        "'~all' in the record of b.acme.example",
    )
    assert evaluation.includes == (
        IncludeCost("include:d.acme.example", "a.acme.example", 1, 1),
        IncludeCost("include:a.acme.example", "acme.example", 0, 2),
        IncludeCost("include:c.acme.example", "b.acme.example", 1, 1),
        IncludeCost("redirect=b.acme.example", "acme.example", 0, 2),
    )


async def test_an_include_that_does_not_pass_matches_nothing() -> None:
    # Kills spf.x__matches__mutmut_70 (matched set to None).
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 include:d.acme.example",),
            ("d.acme.example", "TXT"): ("v=spf1 -all",),
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns)
    assert (evaluation.result, evaluation.matched) == ("neutral", "")


async def test_measuring_stops_at_the_cap() -> None:
    # Kills spf.xǁ_Stateǁcount__mutmut_9: measuring counts up to MEASURE_CAP, not past it.
    dns = Dns(
        {
            ("acme.example", "TXT"): (
                "v=spf1 " + " ".join(f"a:h{i}.acme.example" for i in range(60)) + " -all",
            ),
            **{(f"h{i}.acme.example", "A"): A_ELSEWHERE for i in range(60)},
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns, measure=True)
    assert (evaluation.result, evaluation.lookups) == ("permerror", MEASURE_CAP)


async def test_a_domain_given_with_the_roots_dot() -> None:
    # Kills spf.x__check__mutmut_2 and _3: the record is looked up without the dot.
    dns = Dns({("acme.example", "TXT"): ("v=spf1 ip4:192.0.2.0/24 -all",)})
    evaluation = await check_host(IP, "acme.example.", lookup=dns)
    assert (evaluation.result, evaluation.records) == (
        "pass",
        (("acme.example", "v=spf1 ip4:192.0.2.0/24 -all"),),
    )


async def test_an_explanation_whose_name_cannot_be_queried_is_empty() -> None:
    # Kills spf.x__explanation__mutmut_22: a local part of 64 characters makes a label too
    # long; the fail stands without explanation (section 6.2).
    dns = Dns({("acme.example", "TXT"): ("v=spf1 -all exp=%{l}.explain.acme.example",)})
    sender = "x" * 64 + "@acme.example"
    evaluation = await check_host(IP, "acme.example", lookup=dns, sender=sender)
    assert (evaluation.result, evaluation.explanation) == ("fail", "")


@pytest.mark.parametrize(("last", "asked"), [(61, True), (62, False)])
async def test_a_name_of_253_characters_is_queried_and_254_is_not(last: int, asked: bool) -> None:
    # Kills spf.x__queryable__mutmut_8 and _9 (RFC 1035 section 2.3.4: 255 octets on the
    # wire, 253 characters written).
    name = ".".join(["a" * 63] * 3 + ["b" * last])
    dns = Dns({("acme.example", "TXT"): (f"v=spf1 a:{name} -all",), (name, "A"): A_ELSEWHERE})
    evaluation = await check_host(IP, "acme.example", lookup=dns)
    assert evaluation.result == "fail"
    assert ((name, "A") in dns.asked) is asked


# -- Received (RFC 5321 section 4.4, tokens of RFC 5322 section 3.2) ----------------------------

RELAY_HOP = (
    "from relay.example.org (relay.example.org [IPv6:2001:DB8::25%eth0])"
    " (comment with \\) paren and (nested by evil.example))"
    ' by mx.acme.example (Postfix) with ESMTPS id "4Zb Q1" for <jobs@acme.example>;'
    " Thu, 26 Nov 2026 09:30:02 +0100 (CET)"
)


def test_a_hop_with_comments_quoted_strings_and_an_ipv6_literal() -> None:
    # Kills received.x__tokens__mutmut_18, _19 (a quoted-pair in a comment skipped wrongly),
    # _58 to _60, _62, _64 to _67, _74 to _76 (a quoted string is one token),
    # x_parse_hop__mutmut_1 (the raw value kept) and xǁHopǁto_dict__mutmut_1, _2, _5, _6,
    # _9 to _14, _21 to _26 (the JSON keys).
    assert parse_hop(RELAY_HOP).to_dict() == {
        "index": 1,
        "from_host": "relay.example.org",
        "from_address": "2001:db8::25",
        "by_host": "mx.acme.example",
        "with_protocol": "ESMTPS",
        "id": '"4Zb Q1"',
        "for_address": "jobs@acme.example",
        "timestamp": "2026-11-26T09:30:02+01:00",
        "delay_s": None,
        "clock_skew": False,
        "family": "postfix",
        "raw": RELAY_HOP,
    }


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        # Kills received.x__tokens__mutmut_51: an angle address without its ">" runs to the
        # end.
        (
            "from unterminated <jobs@acme.example by b.example; Thu, 26 Nov 2026 09:30:02 +0100",
            ("unterminated", None, None),
        ),
        # Kills received.x__ip__mutmut_2, _9, _13 to _17: an address tagged "IPv6:" in a
        # comment, with a zone index, is the address alone (RFC 5321 section 4.1.3).
        (
            "from relay.example.org (relay.example.org IPv6:2001:DB8::25%eth0)"
            " by mx.acme.example with ESMTP id 1; Thu, 26 Nov 2026 09:30:02 +0100",
            ("relay.example.org", "2001:db8::25", "mx.acme.example"),
        ),
    ],
)
def test_the_from_address_of_a_hop(value: str, fields: tuple[str | None, ...]) -> None:
    hop = parse_hop(value)
    assert (hop.from_host, hop.from_address, hop.by_host) == fields


@pytest.mark.parametrize(
    ("identity", "explanation"),
    [
        # Kills spf.x_check_host__mutmut_24, _25, _30, _31 (receiver and timestamp not
        # passed on) and _33, _34 (the sender of a HELO check is postmaster@ the domain,
        # RFC 7208 section 2.3).
        (
            {"helo": "mail.acme.example", "receiver": "mx.example.org", "timestamp": 1795000000},
            "postmaster@acme.example via mail.acme.example to mx.example.org at 1795000000",
        ),
        # Kills _2, _3, _40, _41: an unknown HELO name and receiver read "unknown".
        ({"sender": "jobs@acme.example"}, "jobs@acme.example via unknown to unknown"),
    ],
)
async def test_the_identity_in_an_explanation(identity: dict[str, Any], explanation: str) -> None:
    text = "%{s} via %{h} to %{r}" + (" at %{t}" if "timestamp" in identity else "")
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 -all exp=explain.acme.example",),
            ("explain.acme.example", "TXT"): (text,),
        }
    )
    evaluation = await check_host(IP, "acme.example.", lookup=dns, **identity)
    assert evaluation.explanation == explanation


async def test_only_a_fail_is_explained() -> None:
    # Kills spf.x_check_host__mutmut_76 and _81 (section 6.2: exp= is for a fail).
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 +all exp=explain.acme.example",),
            ("explain.acme.example", "TXT"): ("why",),
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns, sender="jobs@acme.example")
    assert (evaluation.result, evaluation.explanation) == ("pass", "")


async def test_a_domain_without_a_record_named_without_the_roots_dot() -> None:
    # Kills spf.x_check_host__mutmut_71, _72, _82, _83, _106, _107, _109 (the domain and IP
    # of the evaluation, and the problem of a domain without SPF).
    evaluation = await check_host(IP, "acme.example.", lookup=Dns({}))
    assert (evaluation.domain, evaluation.ip, evaluation.result, evaluation.problem) == (
        "acme.example",
        IP,
        "none",
        "acme.example has no SPF record",
    )


async def test_a_term_matched_past_the_limit_is_not_reported() -> None:
    # Kills spf.x_check_host__mutmut_111, _113, _114, _117: measuring goes on past 10
    # lookups, but the result is permerror and no term matched (section 4.6.4).
    dns = Dns(
        {
            ("acme.example", "TXT"): (
                "v=spf1 " + " ".join(f"a:h{i}.acme.example" for i in range(11)) + " +all",
            ),
            **{(f"h{i}.acme.example", "A"): A_ELSEWHERE for i in range(11)},
        }
    )
    evaluation = await check_host(IP, "acme.example", lookup=dns, measure=True)
    assert (evaluation.result, evaluation.matched, evaluation.lookups) == ("permerror", "", 11)


async def test_an_ipv6_sender_is_looked_up_as_aaaa() -> None:
    # Kills spf.x__matches__mutmut_35 (the type asked in lower case).
    dns = Dns(
        {
            ("acme.example", "TXT"): ("v=spf1 a:mx.acme.example -all",),
            ("mx.acme.example", "AAAA"): ("2001:db8::10",),
        }
    )
    assert (await check_host("2001:db8::10", "acme.example", lookup=dns)).result == "pass"
