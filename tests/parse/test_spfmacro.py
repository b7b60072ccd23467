"""SPF macros: the examples of RFC 7208 section 7.4, and what the syntax refuses."""

from __future__ import annotations

import ipaddress

import pytest

from diagnostics.parse.spfmacro import (
    MacroError,
    MacroValues,
    domain_spec,
    expand,
    expand_domain,
    is_macro_string,
)

RFC = MacroValues(
    ip=ipaddress.ip_address("192.0.2.3"),
    sender="strong-bad@email.example.com",
    domain="email.example.com",
    helo="mx.example.org",
)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%{h}%%%_%-", "mx.example.org% %20"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)
def test_rfc7208_examples(macro: str, expanded: str) -> None:
    assert expand(macro, RFC) == expanded


def test_ipv6_is_dotted_nibbles_in_i_and_compressed_in_c() -> None:
    values = MacroValues(
        ip=ipaddress.ip_address("2001:db8::cb01"),
        sender="strong-bad@email.example.com",
        domain="email.example.com",
        helo="mx.example.org",
    )
    assert expand("%{ir}.%{v}._spf.%{d2}", values) == (
        "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
    )
    assert expand("%{c}", values, explanation=True) == "2001:db8::cb01"


def test_letters_c_r_t_are_for_explanations_only() -> None:
    assert not is_macro_string("%{c}.example.com")
    assert is_macro_string("%{c} from %{r} at %{t}", explanation=True, spaces=True)
    with pytest.raises(MacroError):
        expand("%{r}.example.com", RFC)
    values = MacroValues(RFC.ip, RFC.sender, RFC.domain, RFC.helo, timestamp=1700000000)
    assert expand("%{c} at %{t} by %{r}", values, explanation=True) == (
        "192.0.2.3 at 1700000000 by unknown"
    )
    with pytest.raises(MacroError):  # no clock here: the caller gives the time or nothing
        expand("at %{t}", RFC, explanation=True)


@pytest.mark.parametrize(
    "text", ["%{d0}", "%{a}", "%(ir)", "foo%.example.com", "%{d", "caf\u00e9", "%{l}\x00"]
)
def test_syntax_errors(text: str) -> None:
    assert not is_macro_string(text, explanation=True, spaces=True)
    with pytest.raises(MacroError):
        expand(text, RFC, explanation=True)


def test_a_long_name_loses_labels_from_the_left_and_its_trailing_dot() -> None:
    sender_domain = "a" * 60 + ".example.com"
    long = MacroValues(RFC.ip, f"x@{sender_domain}", RFC.domain, RFC.helo)
    name = expand_domain("foobar.%{o}.%{o}.%{o}.%{o}.example.com.", long)
    # 310 characters: "foobar." and the first "aaa...a." go, the rest is 242.
    assert name == ".".join(["example.com", *[sender_domain] * 3, "example.com"])
    assert len(name) == 242


def test_domain_spec_ends_in_a_macro_or_a_top_label() -> None:
    assert domain_spec("example.com.") == "example.com"
    assert domain_spec("%{d}.") == "%{d}."
    with pytest.raises(MacroError, match="top-level label of letters, not '123'"):
        domain_spec("abc.123")
    with pytest.raises(MacroError, match="the domain is empty"):
        domain_spec("")
