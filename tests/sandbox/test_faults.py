"""Faults stated by role (``faults:`` of a scenario) land on the parent company of whichever
world they are applied to: acme's, or one built from another account file."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.config import load_config
from diagnostics.sandbox.account import account_world
from diagnostics.sandbox.faults import PRIVATE_SMTP_ADDRESS, apply_faults, owner_name
from diagnostics.sandbox.scenario import AccountFaults, Scenario
from diagnostics.sandbox.scenariofile import load_scenario

NORDLICHT = Path(__file__).resolve().parents[2] / "fixtures" / "accounts" / "nordlicht.yaml"
ENVIRON = {"NORDLICHT_SMTP_PASSWORD": "nordlicht-pw", "FJORD_SMTP_PASSWORD": "fjord-pw"}


def records(world: Scenario, owner: str, rtype: str) -> list[str]:
    return [
        r.value
        for zone, found in world.dns.items()
        for r in found
        if r.rtype == rtype and owner_name(r, zone) == owner
    ]


def nordlicht(**faults: str) -> Scenario:
    healthy = load_scenario("healthy")
    config = load_config(NORDLICHT, environ=ENVIRON)
    scenario = healthy.model_copy(update={"faults": AccountFaults.model_validate(faults)})
    return account_world(scenario, config, config_path=NORDLICHT)


def test_a_world_without_faults_is_left_as_it_is() -> None:
    healthy = load_scenario("healthy")
    assert apply_faults(healthy) is healthy


def test_no_mx_removes_the_parent_domains_mx_and_the_mx_term_of_its_spf() -> None:
    world = nordlicht(mx="absent")
    assert records(world, "nordlicht.example.net", "MX") == []
    assert records(world, "nordlicht.example.net", "TXT") == [
        '"v=spf1 a:mail.nordlicht.example.net -all"'
    ]
    assert records(world, "fjord-spedition.example.org", "MX") == ["10 mx.nordlicht.example.net."]


def test_spf_too_many_lookups_chains_three_includes_before_the_all() -> None:
    world = nordlicht(spf="too_many_lookups")
    assert records(world, "nordlicht.example.net", "TXT") == [
        '"v=spf1 mx a:mail.nordlicht.example.net include:_spf1.nordlicht.example.net '
        'include:_spf2.nordlicht.example.net include:_spf3.nordlicht.example.net -all"'
    ]
    assert records(world, "_spf1.nordlicht.example.net", "TXT") == [
        '"v=spf1 a:a1.nordlicht.example.net a:a2.nordlicht.example.net '
        'a:a3.nordlicht.example.net ~all"'
    ]
    assert records(world, "c2.nordlicht.example.net", "A") == ["192.0.2.7"]
    assert records(world, "fjord-spedition.example.org", "TXT") == [
        '"v=spf1 mx a:smtp.fjord-spedition.example.org -all"'
    ]


def test_dmarc_reject_replaces_the_parent_domains_policy_only() -> None:
    world = nordlicht(dmarc="reject")
    assert records(world, "_dmarc.nordlicht.example.net", "TXT") == [
        '"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@nordlicht.example.net"'
    ]
    assert records(world, "_dmarc.fjord-spedition.example.org", "TXT") == [
        '"v=DMARC1; p=quarantine; rua=mailto:dmarc@fjord-spedition.example.org"'
    ]


def test_smtp_host_private_moves_the_parents_smtp_host_only() -> None:
    world = nordlicht(smtp_host="private")
    assert records(world, "mail.nordlicht.example.net", "A") == [PRIVATE_SMTP_ADDRESS]
    assert records(world, "smtp.fjord-spedition.example.org", "A") == ["198.51.100.21"]


def test_wrong_password_hits_the_parents_login_only() -> None:
    world = nordlicht(login="wrong_password")
    assert [u.wrong_password for u in world.submission.users] == [True]
    assert [u.wrong_password for s in world.other_submissions for u in s.users] == [False]


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        ("none", {}),
        (
            "mistyped",
            {
                "karriere@nordlicht.example.net": "nordlicht-job@m.personio.de",
                "jobs@fjord-spedition.example.org": "nordlicht-jobs@m.personio.de",
            },
        ),
        (
            "loop",
            {
                "karriere@nordlicht.example.net": "recruiting@nordlicht.example.net",
                "jobs@fjord-spedition.example.org": "nordlicht-jobs@m.personio.de",
                "recruiting@nordlicht.example.net": "karriere@nordlicht.example.net",
            },
        ),
    ],
)
def test_redirect_faults(redirect: str, expected: dict[str, str]) -> None:
    world = nordlicht(redirect=redirect)
    assert world.company_mx.redirects == expected


def test_a_loop_gives_the_second_address_a_mailbox() -> None:
    assert nordlicht(redirect="loop").company_mx.mailboxes == (
        "karriere@nordlicht.example.net",
        "recruiting@nordlicht.example.net",
        "jobs@fjord-spedition.example.org",
    )


@pytest.mark.parametrize(
    ("name", "owner", "rtype", "expected"),
    [
        ("no-mx", "acme.example", "MX", []),
        ("no-mx", "acme.example", "TXT", ['"v=spf1 a:smtp.acme.example -all"']),
        ("no-mx", "retail.acme.example", "MX", ["10 mx.acme.example."]),
        (
            "dmarc-reject",
            "_dmarc.acme.example",
            "TXT",
            ['"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@acme.example"'],
        ),
        ("smtp-host-private", "smtp.acme.example", "A", ["10.0.0.25"]),
        ("smtp-host-private", "mx.acme.example", "A", ["198.51.100.10"]),
    ],
)
def test_acme_scenarios_spell_their_faults_by_role(
    name: str, owner: str, rtype: str, expected: list[str]
) -> None:
    assert records(load_scenario(name), owner, rtype) == expected
