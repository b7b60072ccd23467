"""The "Test connection" check alone (``maildiag smtp``): SMTP settings given on the command
line instead of an account file, checked by the same ``smtp`` family as an audit.

The options become the same account model an account file becomes
(:mod:`diagnostics.model.account`), checked by the same rules
(:mod:`diagnostics.model.validate`), with each problem named by the option that gave the
value. Neither pydantic nor YAML is needed for it: ``maildiag smtp`` should answer about as
fast as a one-shot SMTP tool (swaks).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from diagnostics import fields
from diagnostics.checks.config import classify_login
from diagnostics.context import Context, Timeouts, live_resolver, named_resolver, system_trust
from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.model.account import AccountConfig, Company
from diagnostics.model.validate import Invalid, Rules
from diagnostics.registry import run_checks, select
from diagnostics.report.model import Report
from diagnostics.secrets import resolve_env

SMTP_CHECKS = ("smtp",)
# The option that gives each value, where its name is not the model's.
_OPTIONS = {"custom_address": "--sender"}


def _option_errors(exc: Invalid) -> ConfigError:
    """The problems of ``exc``, each under the command-line option that gave the value."""
    problems = []
    for problem in exc.problems:
        field = str(problem.loc[-1])
        option = _OPTIONS.get(field, "--" + field.replace("_", "-"))
        problems.append(ConfigProblem(option, problem.expected, problem.found))
    return ConfigError("command line", problems)


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
) -> AccountConfig:
    """An account configuration holding just these SMTP settings; ConfigError names the option.

    Without ``sender`` the login is the custom address, when it is an e-mail address at all.
    """
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
    rules = Rules(environ=environ)
    smtp = {"host": host, "port": port, "encryption": encryption, "account": account}
    try:
        # The SMTP settings first (every problem at once), then the sender, then the platform.
        settings = rules.one(rules.smtp_settings({**smtp, "password": secret}, ()))
        custom_address = (
            rules.one(rules.value({"custom_address": sender}, (), "custom_address", fields.email))
            if sender
            else _address_or_none(account)
        )
        platform = rules.one(rules.platform({"profile": profile, "account": "adhoc"}, ()))
    except Invalid as exc:
        raise _option_errors(exc) from None
    company = Company(name=f"{account} at {host}", custom_address=custom_address, smtp=settings)
    return AccountConfig(platform=platform, company=company)


def _address_or_none(login: str) -> str | None:
    try:
        return fields.email(login)
    except fields.FieldProblem:
        return None


async def run_smtp_check(
    config: AccountConfig,
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
        resolver = named_resolver(nameserver, timeouts.dns)
    context = Context(
        config=config,
        resolver=resolver,
        trust=trust if trust is not None else system_trust(ca_file),
        timeouts=timeouts,
        send_test=send_test,
        source_address=source,
        static_hosts=dict(static_hosts or {}),
        dns_server=f"{nameserver[0]}:{nameserver[1]}" if nameserver else None,
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
