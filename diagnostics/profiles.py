"""Platform profiles: the recruiting platform's fixed facts, read from ``data/profiles.yaml``.

A profile names the platform's inbound domain, the rule that turns an account into its inbound
address, the egress IPs its SMTP client connects from, and the labels of its settings screens
that remediation texts quote.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from functools import cache
from typing import Any

from diagnostics.datafiles import load_data_file

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Plain frozen dataclasses, not pydantic models: the profiles are the product's own data, and
# `maildiag smtp` reads them without importing pydantic (it must start fast). A key missing
# from or unknown to profiles.yaml is an error all the same (see _build).


@dataclass(frozen=True)
class PlatformUI:
    """Labels and menu paths of the platform's settings, as its users see them."""

    settings_path: str
    inbound_address_label: str
    use_custom_address: str
    custom_address_label: str
    use_for_sending: str
    smtp_fields: tuple[str, ...]
    send_test_mail: str
    test_connection: str
    sender_name: str
    company_name_path: str
    unassigned: str
    position_subcompany: str


@dataclass(frozen=True)
class PlatformProfile:
    """One recruiting platform."""

    name: str
    display_name: str
    inbound_domain: str
    inbound_address: str
    egress_ips: tuple[IPNetwork, ...]
    ui: PlatformUI
    encryption_labels: dict[str, str]

    def inbound_address_for(self, account: str) -> str:
        """The platform's inbound address for ``account`` (``acme`` -> ``acme-jobs@m.personio.de``)."""
        return self.inbound_address.format(account=account)

    def encryption_label(self, encryption: str) -> str:
        """How the platform's Encryption field names ``encryption``."""
        return self.encryption_labels.get(encryption, encryption)


def _build(cls: type[Any], where: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked against ``cls``'s fields: ValueError names a missing or unknown key."""
    names = {f.name for f in dataclasses.fields(cls)}
    missing, unknown = sorted(names - set(body)), sorted(set(body) - names)
    if missing or unknown:
        raise ValueError(
            f"data/profiles.yaml, {where}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )
    return body


def build_profile(name: str, body: dict[str, Any]) -> PlatformProfile:
    """The profile ``name`` from its data in profiles.yaml; ValueError for a wrong key or
    network."""
    body = _build(PlatformProfile, name, {"name": name, **body})
    ui = _build(PlatformUI, f"{name}.ui", dict(body["ui"]))
    return PlatformProfile(
        **{
            **body,
            "egress_ips": tuple(
                ipaddress.ip_network(str(v), strict=True) for v in body["egress_ips"]
            ),
            "ui": PlatformUI(**{**ui, "smtp_fields": tuple(ui["smtp_fields"])}),
            "encryption_labels": {str(k): str(v) for k, v in body["encryption_labels"].items()},
        }
    )


@cache
def load_profiles() -> dict[str, PlatformProfile]:
    """Every built-in profile by name."""
    raw: dict[str, dict[str, Any]] = load_data_file("profiles.yaml")
    return {name: build_profile(name, body) for name, body in raw.items()}


def get_profile(name: str) -> PlatformProfile:
    """The built-in profile ``name``; KeyError names the known ones."""
    profiles = load_profiles()
    if name not in profiles:
        raise KeyError(f"unknown platform profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]
