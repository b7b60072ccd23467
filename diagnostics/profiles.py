"""Platform profiles: the recruiting platform's fixed facts, read from ``data/profiles.yaml``.

A profile names the platform's inbound domain, the rule that turns an account into its inbound
address, the egress IPs its SMTP client connects from, and the labels of its settings screens
that remediation texts quote.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PlatformUI(BaseModel):
    """Labels and menu paths of the platform's settings, as its users see them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


class PlatformProfile(BaseModel):
    """One recruiting platform."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    inbound_domain: str
    inbound_address: str
    egress_ips: tuple[IPNetwork, ...]
    ui: PlatformUI
    encryption_labels: dict[str, str]

    @field_validator("egress_ips", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(str(v), strict=True) for v in value)

    def inbound_address_for(self, account: str) -> str:
        """The platform's inbound address for ``account`` (``acme`` -> ``acme-jobs@m.personio.de``)."""
        return self.inbound_address.format(account=account)

    def encryption_label(self, encryption: str) -> str:
        """How the platform's Encryption field names ``encryption``."""
        return self.encryption_labels.get(encryption, encryption)


@cache
def load_profiles() -> dict[str, PlatformProfile]:
    """Every built-in profile by name."""
    text = resources.files("diagnostics").joinpath("data/profiles.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return {name: PlatformProfile(name=name, **body) for name, body in raw.items()}


def get_profile(name: str) -> PlatformProfile:
    """The built-in profile ``name``; KeyError names the known ones."""
    profiles = load_profiles()
    if name not in profiles:
        raise KeyError(f"unknown platform profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]
