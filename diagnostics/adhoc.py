"""The "Test connection" check alone (``maildiag smtp``): SMTP settings given on the command
line instead of an account file, checked by the same ``smtp`` family as an audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dns.asyncresolver

from diagnostics.config import AccountConfig, Company, Platform, SmtpSettings
from diagnostics.context import Context, Timeouts, live_resolver, system_trust
from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.registry import run_checks, select
from diagnostics.report.model import Report
from diagnostics.secrets import resolve_env

SMTP_CHECKS = ("smtp",)


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
    from pydantic import ValidationError

    from diagnostics.config import problems_from_validation

    smtp = {"host": host, "port": port, "encryption": encryption, "account": account}
    try:
        settings = SmtpSettings.model_validate({**smtp, "password": secret})
        company = Company.model_validate(
            {"name": f"{account} at {host}", "custom_address": sender or account}
        ).model_copy(update={"smtp": settings})
        return AccountConfig(platform=Platform(profile=profile, account="adhoc"), company=company)
    except ValidationError as exc:
        problems = problems_from_validation(exc, {})
        for problem in problems:
            option = problem.key.rsplit(".", 1)[-1].replace("_", "-")
            problem.key = "--" + {"custom-address": "sender"}.get(option, option)
        raise ConfigError("command line", problems) from None


async def run_smtp_check(
    config: AccountConfig,
    *,
    ca_file: Path | None = None,
    send_test: bool = False,
    source: str | None = None,
    static_hosts: Mapping[str, tuple[str, ...]] | None = None,
    timeouts: Timeouts | None = None,
    nameserver: tuple[str, int] | None = None,
) -> Report:
    """Run the ``smtp`` checks for ``config`` against the live server.

    ``nameserver`` (address, port) replaces the system's resolver configuration.
    """
    timeouts = timeouts or Timeouts()
    resolver = live_resolver(timeouts.dns)
    if nameserver is not None:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
        resolver.lifetime = timeouts.dns
    context = Context(
        config=config,
        resolver=resolver,
        trust=system_trust(ca_file),
        timeouts=timeouts,
        send_test=send_test,
        source_address=source,
        static_hosts=dict(static_hosts or {}),
    )
    findings = await run_checks(context, select(SMTP_CHECKS))
    return Report(
        findings=tuple(findings),
        account=config.platform.account,
        company=config.company.name,
        mode="live",
    )
