"""An account whose domains are internationalised (bücher.example) and whose SMTP host is
given by its address: mail carries the domain by its A-label (RFC 5890/5321 without
SMTPUTF8), SPF authorises the address (RFC 7208 ip4), and the healthy world passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.audit import run_audit
from diagnostics.config import load_config
from diagnostics.fields import envelope_address
from diagnostics.sandbox.account import account_world, sandbox_for
from diagnostics.sandbox.scenariofile import load_scenario

ACCOUNT = """\
platform: {profile: personio, account: buecher}
company:
  name: Bücher & Söhne GmbH
  sender_name: company
  custom_address: bewerbung@bücher.example
  smtp:
    host: mail.bücher.example
    port: 587
    encryption: starttls
    account: bewerbung@bücher.example
    password: ${BUECHER_SMTP_PASSWORD}
  allowlist: [3.121.59.239/32, 3.65.146.216/32, 18.158.122.164/32]
subcompanies:
  - name: Straße AG
    custom_address: jobs@xn--strae-oqa.example
    smtp:
      host: 192.0.2.25
      port: 465
      encryption: tls
      account: jobs@xn--strae-oqa.example
      password: ${STRASSE_SMTP_PASSWORD}
"""


@pytest.mark.parametrize(
    ("address", "envelope"),
    [
        ("jobs@acme.example", "jobs@acme.example"),
        ("bewerbung@bücher.example", "bewerbung@xn--bcher-kva.example"),
        ("jobs@straße.example", "jobs@xn--strae-oqa.example"),  # IDNA 2008, not ss
        ("jobs@xn--bcher-kva.example", "jobs@xn--bcher-kva.example"),
        # No A-label for a local part: only SMTPUTF8 (RFC 6531) carries it, as it is.
        ("jürgen@bücher.example", "jürgen@bücher.example"),
    ],
)
def test_the_envelope_carries_an_internationalised_domain_by_its_a_label(
    address: str, envelope: str
) -> None:
    assert envelope_address(address) == envelope


def _account(tmp_path: Path) -> Path:
    path = tmp_path / "buecher.yaml"
    path.write_text(ACCOUNT, encoding="utf-8")
    return path


def test_the_world_keeps_the_a_labels_and_authorises_an_smtp_host_given_by_address(
    tmp_path: Path,
) -> None:
    path = _account(tmp_path)
    config = load_config(path, environ={"BUECHER_SMTP_PASSWORD": "a", "STRASSE_SMTP_PASSWORD": "b"})
    world = account_world(load_scenario("healthy"), config, config_path=path)

    assert set(world.company_mx.mailboxes) == {
        "bewerbung@xn--bcher-kva.example",
        "jobs@xn--strae-oqa.example",
    }
    spf = {
        record.value
        for records in world.dns.values()
        for record in records
        if record.rtype == "TXT" and "v=spf1" in record.value
    }
    assert '"v=spf1 mx ip4:192.0.2.25 -all"' in spf
    assert '"v=spf1 mx a:mail.xn--bcher-kva.example -all"' in spf


async def test_the_internationalised_account_passes_in_the_healthy_world(tmp_path: Path) -> None:
    path = _account(tmp_path)
    async with sandbox_for("healthy", path, state_dir=tmp_path / "state", environ={}) as world:
        result = await run_audit(path, sandbox=world)

    not_passing = {
        (f.check, f.subject, f.status.value)
        for f in result.report.findings
        if f.status.value not in ("pass", "skip")
    }
    assert not_passing == set()
    arrived = {
        (f.check, f.subject): f.status.value
        for f in result.report.findings
        if f.check in ("redirect.roundtrip", "redirect.local_copy", "headers.retention")
    }
    assert arrived == {
        (check, subject): "pass"
        for check in ("redirect.roundtrip", "redirect.local_copy", "headers.retention")
        for subject in ("Bücher & Söhne GmbH", "Straße AG")
    }
