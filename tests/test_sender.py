"""Sender identity: the resolution rules, the From header's encoding, and the table."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.checks.sender import classify_name, classify_send_failure, resolution
from diagnostics.config import load_config
from diagnostics.errors import DialError, ProbeError, StepTimeout
from diagnostics.findings import Cause, Status
from diagnostics.report.tables import RESOLUTION_COLUMNS, resolution_frame
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from diagnostics.sender import (
    UnsafeName,
    decode_from,
    encode_from,
    format_from,
    resolve,
    shared_addresses,
)
from diagnostics.smtpreply import SMTPProtocolError

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
ENVIRON = {
    name: "pw-" + name.lower()
    for name in (
        "ACME_SMTP_PASSWORD",
        "ACME_RETAIL_SMTP_PASSWORD",
        "ACME_LABS_SMTP_PASSWORD",
        "ACME_LOGISTICS_SMTP_PASSWORD",
    )
}


def table(config_name: str) -> list[tuple[str, str, str, str, str]]:
    config = load_config(CONFIGS / config_name, environ=ENVIRON)
    return [
        (
            r.position,
            r.owner,
            format_from(r.display_name, r.identity.address),
            r.identity.route,
            r.identity.server,
        )
        for r in resolve(config)
    ]


def test_acme_positions_resolve_with_the_fallback_to_the_parent() -> None:
    assert table("acme.yaml") == [
        ("Store Manager Berlin", "Acme Retail GmbH", "Jürgen Müller <jobs@retail.acme.example>", "own_server", "smtp.acme.example:465"),
        ("Backend Engineer", "Acme Labs GmbH", "Jürgen Müller <jobs@acme.example>", "own_server", "smtp.acme.example:587"),
        ("Office Manager", "Acme GmbH", "Jürgen Müller <jobs@acme.example>", "own_server", "smtp.acme.example:587"),
    ]  # fmt: skip


def test_a_subcompany_with_an_address_but_no_smtp_sends_from_the_platform() -> None:
    rows = table("acme-subcompany-without-smtp.yaml")
    assert rows[0] == (
        "Store Manager Berlin", "Acme Retail GmbH", "Jürgen Müller <acme-jobs@m.personio.de>",
        "platform", "the platform's own servers",
    )  # fmt: skip


def test_company_sender_name_uses_each_subcompanys_name() -> None:
    assert [row[2] for row in table("acme-three-subcompanies.yaml")] == [
        "Acme Retail GmbH <jobs@retail.acme.example>",
        "Acme Labs GmbH <jobs@labs.acme.example>",
        "Acme Logistics GmbH <jobs@logistics.acme.example>",
        "Acme GmbH <jobs@acme.example>",
    ]


def test_the_resolution_frame_has_a_row_per_position() -> None:
    config = load_config(CONFIGS / "acme.yaml", environ=ENVIRON)
    frame = resolution_frame(config)
    assert tuple(frame.columns) == RESOLUTION_COLUMNS
    assert list(frame["position"]) == ["Store Manager Berlin", "Backend Engineer", "Office Manager"]
    assert list(frame["route"]) == ["own SMTP server"] * 3
    assert frame.loc[1, "why"].startswith(
        "Acme Labs GmbH has no settings of its own and falls back to Acme GmbH"
    )


def test_shared_addresses_are_found(tmp_path: Path) -> None:
    text = (
        (CONFIGS / "acme.yaml")
        .read_text()
        .replace(
            "  - name: Acme Labs GmbH\n",
            "  - name: Acme Labs GmbH\n    custom_address: jobs@retail.acme.example\n",
        )
    )
    path = tmp_path / "shared.yaml"
    path.write_text(text)
    config = load_config(path, environ=ENVIRON)
    assert shared_addresses(config) == {
        "jobs@retail.acme.example": ["Acme Retail GmbH", "Acme Labs GmbH"]
    }


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("Jürgen Müller", "From: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <jobs@acme.example>"),
        ("Société Générale", "From: =?utf-8?b?U29jacOpdMOpIEfDqW7DqXJhbGU=?= <jobs@acme.example>"),
        ("株式会社", "From: =?utf-8?b?5qCq5byP5Lya56S+?= <jobs@acme.example>"),
        ("Acme (Retail) GmbH", 'From: "Acme (Retail) GmbH" <jobs@acme.example>'),
        ("Doe, Jane", 'From: "Doe, Jane" <jobs@acme.example>'),
    ],
)
def test_names_are_encoded_per_rfc_2047_or_quoted_per_rfc_5322(name: str, field: str) -> None:
    assert encode_from(name, "jobs@acme.example") == field
    assert decode_from(field) == (name, "jobs@acme.example")


@pytest.mark.parametrize("name", ["Jürgen\nMüller", "Evil\r\nBcc: x@evil.example", "Tab\there"])
def test_control_characters_never_reach_a_header(name: str) -> None:
    with pytest.raises(UnsafeName, match="control character"):
        encode_from(name, "jobs@acme.example")
    outcome = classify_name(name, "jobs@acme.example", "the employee's profile")
    assert (outcome.status, outcome.cause) == (Status.FAIL, Cause.UNKNOWN)
    assert outcome.remediation == "Remove the line break from the name in the employee's profile."


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=120
).filter(lambda n: n.strip() == n and "  " not in n)


@settings(max_examples=80, deadline=None)
@given(names)
def test_any_printable_name_decodes_back_exactly(name: str) -> None:
    field = encode_from(name, "jobs@acme.example")
    assert "\r\n" not in field.replace("\r\n ", "")  # folded lines only, never a new header
    assert decode_from(field) == (name, "jobs@acme.example")


def test_a_space_before_a_folded_encoded_word_survives() -> None:
    # The standard library's encoder put this space only into the folding between two
    # encoded words, where a reader must drop it (RFC 2047 section 6.2).
    name = "0" + "\u0800" * 14 + " \u00a1"
    assert decode_from(encode_from(name, "jobs@acme.example")) == (name, "jobs@acme.example")


def refused_connect() -> DialError:
    error = DialError("connect", "198.51.100.20", 587, "Connection refused")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


@pytest.mark.parametrize(
    ("error", "heard", "cause"),
    [
        # Only a refused TCP connection, or a close before a single byte, is a refusal.
        (refused_connect(), False, Cause.CONNECTION_REFUSED),
        (ProbeError("banner", "the server closed the connection"), False, Cause.CONNECTION_REFUSED),
        # Half a greeting, or garbage, then a close: a broken protocol.
        (ProbeError("banner", "the server closed the connection"), True, Cause.UNKNOWN),
        (SMTPProtocolError("banner", "not SMTP: 'HELLO'"), True, Cause.UNKNOWN),
        # Greeted, then ended without a reply: the server is not serving (RFC 5321 3.8).
        (ProbeError("ehlo", "the server closed the connection"), True, Cause.TEMPORARY_FAILURE),
        (
            ProbeError("mail", "the connection was lost: [Errno 104] Connection reset by peer"),
            True,
            Cause.TEMPORARY_FAILURE,
        ),
        (StepTimeout("ehlo", 3.0), True, Cause.CONNECTION_TIMEOUT),
        (
            ProbeError("auth", "no supported AUTH mechanism offered (server offers: CRAM-MD5)"),
            True,
            Cause.AUTH_MECHANISM,
        ),
        (
            ProbeError("auth", "no supported AUTH mechanism offered (server offers: none)"),
            True,
            Cause.AUTH_DISABLED,
        ),
    ],
)
def test_a_failed_proof_is_named_for_what_the_server_did(
    error: ProbeError, heard: bool, cause: Cause
) -> None:
    assert classify_send_failure(error, heard=heard) == cause


def test_a_failed_handshake_is_named_from_the_ssl_error_it_wraps() -> None:
    error = ProbeError("tls", "handshake failed")
    error.__cause__ = ssl.SSLError(1, "wrong version number")
    assert classify_send_failure(error, heard=True) == Cause.TLS_MISMATCH


async def test_a_server_that_hangs_up_after_its_greeting_fails_every_proof_as_temporary(
    make_world: Callable[[Scenario], Sandbox],
) -> None:
    """closes-after-banner: every identity's proof is greeted and then cut off at EHLO."""
    async with make_world(load_scenario("closes-after-banner")) as world:
        config = load_config(world.scenario.config_path(), environ=world.environ)
        findings = await resolution(world.context(config))
    assert [(f.check, f.subject, f.status, f.cause) for f in findings] == [
        ("sender.resolution", subject, Status.FAIL, Cause.TEMPORARY_FAILURE)
        for subject in ("Acme Retail GmbH", "Acme Labs GmbH", "Acme GmbH")
    ]
    assert all("the server closed the connection" in f.detail for f in findings)
