"""The built-in platform profiles hold the platform's facts exactly."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from diagnostics.profiles import build_profile, get_profile, load_profiles


def test_the_built_in_profiles() -> None:
    assert sorted(load_profiles()) == ["personio"]
    assert load_profiles() is load_profiles()  # read once


def test_personio_inbound_address() -> None:
    personio = get_profile("personio")
    assert personio.name == "personio"
    assert personio.display_name == "Personio"
    assert personio.inbound_domain == "m.personio.de"
    assert personio.inbound_address_for("acme") == "acme-jobs@m.personio.de"
    assert personio.inbound_address_for("acme-retail") == "acme-retail-jobs@m.personio.de"
    assert personio.inbound_address_for("acme").endswith("@" + personio.inbound_domain)


def test_personio_egress_networks() -> None:
    personio = get_profile("personio")
    assert personio.egress_ips == (
        ipaddress.IPv4Network("3.121.59.239/32"),
        ipaddress.IPv4Network("3.65.146.216/32"),
        ipaddress.IPv4Network("18.158.122.164/32"),
    )
    assert [str(n) for n in personio.egress_ips] == [
        "3.121.59.239/32",
        "3.65.146.216/32",
        "18.158.122.164/32",
    ]
    assert all(n.num_addresses == 1 for n in personio.egress_ips)


def test_personio_encryption_labels() -> None:
    personio = get_profile("personio")
    assert personio.encryption_labels == {"starttls": "TLS/STARTTLS", "tls": "SSL", "none": "None"}
    assert personio.encryption_label("starttls") == "TLS/STARTTLS"
    assert personio.encryption_label("tls") == "SSL"
    assert personio.encryption_label("none") == "None"
    assert personio.encryption_label("quantum") == "quantum"


def test_personio_ui_labels() -> None:
    ui = get_profile("personio").ui
    assert ui.settings_path == (
        "Settings > Recruiting > Recruiting > General > Recruiting email settings"
    )
    assert ui.inbound_address_label == "Company recruiting email address"
    assert ui.custom_address_label == "Custom email address"
    assert ui.smtp_fields == ("Host", "Port", "Encryption", "Account", "Password")
    assert ui.send_test_mail == "Send test mail"
    assert ui.test_connection == "Test connection"


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        get_profile("workday")
    assert info.value.args == ("unknown platform profile 'workday'; known: personio",)


def test_profile_is_frozen() -> None:
    personio = get_profile("personio")
    with pytest.raises(dataclasses.FrozenInstanceError):
        personio.inbound_domain = "evil.example"  # type: ignore[misc]


def test_profile_rejects_egress_network_with_host_bits() -> None:
    body = dataclasses.asdict(get_profile("personio"))
    body.pop("name")
    body["egress_ips"] = ["10.0.0.1/8"]
    with pytest.raises(ValueError, match="has host bits set"):
        build_profile("personio", body)
