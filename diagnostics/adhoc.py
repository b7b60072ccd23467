"""The "Test connection" check alone (``maildiag smtp``): SMTP settings given on the command
line instead of an account file, checked by the same ``smtp`` family as an audit.

``maildiag smtp`` should answer about as fast as a one-shot SMTP tool (swaks), so this path
leaves out what it does not need: importing pydantic and building the account file's models
costs more than the SMTP session itself. The options are checked with the very rules the
account file's models apply (:mod:`diagnostics.fields`) and held in the small frozen classes
below, which offer everything an :class:`~diagnostics.config.AccountConfig` offers to read
(``tests/test_adhoc.py`` keeps the two in step, value for value and message for message).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import dns.asyncresolver

from diagnostics import fields
from diagnostics.checks.config import classify_login
from diagnostics.context import Context, Timeouts, live_resolver, system_trust
from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.profiles import IPNetwork, PlatformProfile, load_profiles
from diagnostics.registry import run_checks, select
from diagnostics.report.model import Report
from diagnostics.secrets import Secret, resolve_env

if TYPE_CHECKING:
    from diagnostics.config import AccountConfig

SMTP_CHECKS = ("smtp",)


@dataclass(frozen=True)
class AdhocSmtpSettings:
    """:class:`~diagnostics.config.SmtpSettings`'s fields, checked by the same rules."""

    host: str
    port: int
    encryption: str
    account: str
    password: Secret

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> AdhocSmtpSettings:
        """A copy with the fields in ``update`` replaced, unchecked (as pydantic's)."""
        return dataclasses.replace(self, **(update or {}))


@dataclass(frozen=True)
class AdhocCompany:
    """:class:`~diagnostics.config.Company`'s fields."""

    name: str
    custom_address: str | None = None
    smtp: AdhocSmtpSettings | None = None
    allowlist: tuple[IPNetwork, ...] | None = None
    sender_name: str = "employee"


@dataclass(frozen=True)
class AdhocPlatform:
    """:class:`~diagnostics.config.Platform`'s fields."""

    profile: str
    account: str


@dataclass(frozen=True)
class AdhocConfig:
    """:class:`~diagnostics.config.AccountConfig`'s fields, properties and methods, for one
    company without subcompanies, positions or employees."""

    platform: AdhocPlatform
    company: AdhocCompany
    subcompanies: tuple[AdhocCompany, ...] = ()
    positions: tuple[Any, ...] = ()
    employees: tuple[Any, ...] = ()

    @property
    def profile(self) -> PlatformProfile:
        """The platform profile this account uses."""
        return load_profiles()[self.platform.profile]

    @property
    def inbound_address(self) -> str:
        """The platform's inbound address for this account."""
        return self.profile.inbound_address_for(self.platform.account)

    def identities(self) -> tuple[AdhocCompany, ...]:
        """The company, then each subcompany (there are none)."""
        return (self.company, *self.subcompanies)

    def subcompany(self, name: str) -> NoReturn:
        """KeyError: there are no subcompanies."""
        raise KeyError(name)


def _apply_rules(checks: list[tuple[str, Callable[[Any], Any], Any]]) -> dict[str, Any]:
    """Each ``(field, rule, value)`` checked, in order: the values by field. ConfigError lists
    every problem found, each under the command-line option that gave the value, as the
    models' ValidationError would be reported."""
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for field, rule, value in checks:
        try:
            values[field] = rule(value)
        except fields.FieldProblem as problem:
            option = "--" + {"custom_address": "sender"}.get(field, field).replace("_", "-")
            found = fields.found_text(problem.found, (field,))
            problems.append(ConfigProblem(option, problem.expected, found))
    if problems:
        raise ConfigError("command line", problems)
    return values


def adhoc_config(
    *,
    host: str,
    port: int,
    encryption: str,
    account: str,
    password_env: str,
    sender: str | None = None,
    profile: str = "personio",
    environ: Mapping[str, str] | None = None,
) -> AdhocConfig:
    """An account configuration holding just these SMTP settings; ConfigError names the option."""
    secret = resolve_env(password_env, environ)
    if secret is None:
        raise ConfigError(
            "--password-env",
            [
                ConfigProblem(
                    "--password-env",
                    f"environment variable {password_env} to hold the password",
                    f"{password_env} unset or empty",
                )
            ],
        )
    # As the models validate: the SMTP settings first (every problem at once), then the
    # company's address, then the platform.
    smtp = _apply_rules(
        [
            ("host", fields.host, host),
            ("port", fields.port, port),
            ("encryption", fields.encryption, encryption),
            ("account", fields.login, account),
        ]
    )
    if sender:
        company = _apply_rules([("custom_address", fields.email, sender)])
    else:
        # Without --sender the login is the custom address, when it is an address at all.
        try:
            company = {"custom_address": fields.email(account)}
        except fields.FieldProblem:
            company = {"custom_address": None}
    platform = _apply_rules(
        [
            ("profile", lambda name: fields.profile_name(name, load_profiles()), profile),
            ("account", fields.platform_account, "adhoc"),
        ]
    )
    settings = AdhocSmtpSettings(**smtp, password=secret)
    return AdhocConfig(
        platform=AdhocPlatform(**platform),
        company=AdhocCompany(
            name=f"{account} at {host}", custom_address=company["custom_address"], smtp=settings
        ),
    )


async def run_smtp_check(
    config: AccountConfig | AdhocConfig,
    *,
    ca_file: Path | None = None,
    trust: ssl.SSLContext | None = None,
    send_test: bool = False,
    source: str | None = None,
    static_hosts: Mapping[str, tuple[str, ...]] | None = None,
    timeouts: Timeouts | None = None,
    nameserver: tuple[str, int] | None = None,
) -> Report:
    """Run the ``smtp`` checks for ``config`` against the live server.

    ``nameserver`` (address, port) replaces the system's resolver configuration; ``trust``,
    when given, is :func:`~diagnostics.context.system_trust` of ``ca_file`` made beforehand.
    """
    timeouts = timeouts or Timeouts()
    if nameserver is None:
        resolver = live_resolver(timeouts.dns)
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
        resolver.lifetime = timeouts.dns
    context = Context(
        # An AdhocConfig offers all that an AccountConfig offers to read (see the module's
        # docstring); the smtp checks and the runner only read.
        config=cast("AccountConfig", config),
        resolver=resolver,
        trust=trust if trust is not None else system_trust(ca_file),
        timeouts=timeouts,
        send_test=send_test,
        source_address=source,
        static_hosts=dict(static_hosts or {}),
    )
    findings = await run_checks(context, select(SMTP_CHECKS))
    company = config.company
    if company.smtp is not None:
        login = classify_login(company.smtp.account, company.custom_address, config.profile)
        if login is not None:
            evidence = {"account": company.smtp.account, "custom_address": company.custom_address}
            findings.insert(
                0, login.finding("config.account_matches_address", company.name, evidence)
            )
    return Report(
        findings=tuple(findings),
        account=config.platform.account,
        company=config.company.name,
        mode="live",
    )
