"""Sandbox scenarios: the local mail world's settings and faults, one YAML file each.

A scenario names the DNS zones, the company's MX (redirection rules and forwarding faults),
its submission server (ports, certificate, users, allowlist), the platform's inbound side,
the candidates' mail server, and what its faults change in the findings an audit of it must
produce (``expect``: each entry with the reason for it).
``faults`` states the faults that hit an account's own names by role (the parent company's
domain, SMTP host, login, redirection), so that the scenario can play any account file
(:mod:`diagnostics.sandbox.account`). This module holds the models only; reading a file
(``extends``, validation, faults applied) is :mod:`diagnostics.sandbox.scenariofile`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from diagnostics.datafiles import package_path

SCENARIO_DIR = package_path("scenarios")
# The example account files the scenarios are played against (acme.yaml and its variants).
CONFIG_DIR = package_path("configs")
# The account a scenario plays unless it names another (which then holds its fault).
DEFAULT_CONFIG = "acme.yaml"

ForwardingStyle = Literal["redirect", "forward_inline", "forward_attachment"]
CertVariant = Literal[
    "valid", "expired", "self_signed", "wrong_host", "expiring_soon", "not_yet_valid"
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Record(_Model):
    """A DNS record in zone-file order: owner, type, rdata."""

    name: str
    rtype: str
    value: str
    ttl: int = 300


def _parse_record(item: Any) -> Any:
    # "mx MX 10 mx.acme.example." reads like a zone file line; a mapping works too.
    if isinstance(item, str):
        parts = item.split(maxsplit=2)
        if len(parts) != 3:
            raise ValueError(f"expected 'NAME TYPE VALUE', found {item!r}")
        return {"name": parts[0], "rtype": parts[1].upper(), "value": parts[2]}
    return item


class MXFaults(_Model):
    """What the company MX does wrong (nothing, by default)."""

    style: ForwardingStyle = "redirect"
    strip_headers: tuple[str, ...] = ()
    rewrite_from: bool = False
    subject_tag: str = ""
    footer: str = ""
    local_copy: bool = True
    delay_s: float = Field(default=0.0, ge=0, le=600)
    srs: bool = False


class CompanyMX(_Model):
    """The company's inbound mail server: local mailboxes and redirection rules."""

    address: str
    hostname: str
    mailboxes: tuple[str, ...] = ()
    # Custom address -> where the redirection sends it (the platform's inbound address).
    redirects: dict[str, str] = Field(default_factory=dict)
    faults: MXFaults = Field(default_factory=MXFaults)
    max_hops: int = Field(default=20, ge=2, le=100)


class SubmissionUser(_Model):
    """An account of the submission server; ``password`` is a ``${ENV}`` reference, or
    ``password_file`` the file an account file names (the server holds what it holds)."""

    account: str
    password: str = ""
    password_file: str = ""
    # The server holds a different password than the environment gives (a wrong password).
    wrong_password: bool = False
    # Extra addresses this account may send as (Send-As rights).
    send_as: tuple[str, ...] = ()


class SubmissionPorts(_Model):
    starttls: tuple[int, ...] = (587, 25)
    tls: tuple[int, ...] = (465,)


class Submission(_Model):
    """The company's submission server."""

    address: str
    hostname: str
    banner: str = "ESMTP Postfix"
    ports: SubmissionPorts = Field(default_factory=SubmissionPorts)
    starttls: Literal["required", "offered", "absent"] = "required"
    # Offer AUTH before STARTTLS on the plain ports (a server a client must not downgrade to).
    plaintext_auth: bool = False
    certificate: CertVariant = "valid"
    users: tuple[SubmissionUser, ...] = ()
    # None: every client may connect; otherwise only these networks (platform egress IPs).
    allowlist: tuple[str, ...] | None = None
    allowlist_action: Literal["reject", "drop"] = "reject"
    # normal; close_after_banner (greets, then hangs up); silent (accepts, never greets).
    behaviour: Literal["normal", "close_after_banner", "silent"] = "normal"

    @field_validator("allowlist")
    @classmethod
    def _networks(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for item in value:
                ipaddress.ip_network(item, strict=True)
        return value


class PlatformSide(_Model):
    """The platform's inbound side: which accounts exist and which candidates it knows."""

    address: str
    hostname: str = "inbound.m.personio.de"
    profile: str = "personio"
    # Account -> candidate address -> candidate id (mail from them is filed in their profile).
    accounts: dict[str, dict[str, str]] = Field(default_factory=dict)


class CandidateSide(_Model):
    """The candidates' mail server: every address in its domains has a mailbox."""

    address: str
    hostname: str = "mx.candidates.example"
    domains: tuple[str, ...] = ("candidates.example",)


class Expectation(_Model):
    """A finding the audit of this scenario must produce, where it differs from what a healthy
    world gives the same account file (the tests derive that baseline from the file).

    ``why`` names the fault, or the RFC or SPEC clause, that makes the finding what it is; a
    scenario file must give one for every entry (:func:`~diagnostics.sandbox.scenariofile.
    load_scenario` refuses an entry without).
    """

    check: str
    status: Literal["pass", "warn", "fail", "error", "skip"]
    subject: str | None = None
    cause: str | None = None
    why: str | None = None


class AccountFaults(_Model):
    """Faults stated by the role they hit, so that they apply to whichever account is played.

    Each hits the parent company: the domain of its custom address (``mx``, ``spf``,
    ``dmarc``), its SMTP host (``smtp_host``), its login (``login``) and its redirection
    (``redirect``; ``none`` removes every redirection). :mod:`diagnostics.sandbox.faults`
    applies them.
    """

    mx: Literal["published", "absent"] = "published"
    spf: Literal["published", "too_many_lookups"] = "published"
    dmarc: Literal["published", "reject"] = "published"
    smtp_host: Literal["public", "private"] = "public"
    login: Literal["works", "wrong_password"] = "works"
    redirect: Literal["platform", "none", "loop", "mistyped"] = "platform"


class Scenario(_Model):
    """The local mail world's settings and faults."""

    name: str
    summary: str
    config: str = DEFAULT_CONFIG
    # For a scenario whose fault is in its account file (``config``): the key of a user's own
    # file to change to see the same fault (it cannot be played on another account).
    account_fault: str = ""
    dns: dict[str, tuple[Record, ...]]
    dns_faults: dict[str, Literal["servfail", "timeout", "refused"]] = Field(default_factory=dict)
    company_mx: CompanyMX
    submission: Submission
    # Further submission servers: a subcompany that sends through a host of its own.
    other_submissions: tuple[Submission, ...] = ()
    faults: AccountFaults = Field(default_factory=AccountFaults)
    platform: PlatformSide
    candidates: CandidateSide
    # Timeouts of the audit's context in this world, where a fault makes the default wait long.
    timeouts: dict[str, float] = Field(default_factory=dict)
    expect: tuple[Expectation, ...] = ()

    @field_validator("dns", mode="before")
    @classmethod
    def _records(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            zone: [_parse_record(r) for r in records] if isinstance(records, list) else records
            for zone, records in value.items()
        }

    @property
    def submissions(self) -> tuple[Submission, ...]:
        """Every submission server of the world, the parent company's first."""
        return (self.submission, *self.other_submissions)

    @property
    def fault_in_account(self) -> bool:
        """The scenario's fault is in its own account file, not in the world."""
        return self.config != DEFAULT_CONFIG

    def config_path(self, base: Path | None = None) -> Path:
        """The account file this scenario is played against by default."""
        root = base or CONFIG_DIR
        return root / self.config
