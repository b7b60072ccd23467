"""Checks of the configuration itself: ``config.schema``, ``config.account_matches_address``,
``config.port_encryption``.

Pure tier: :func:`classify_account` and :func:`classify_port_encryption` turn settings into
outcomes; the registered checks turn outcomes into findings, one per company or subcompany.
"""

from __future__ import annotations

from diagnostics.context import Context
from diagnostics.errors import ConfigError
from diagnostics.fields import same_address, special_use_domain
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.model.account import AccountConfig, Company, SmtpSettings, Subcompany
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check

# Port -> the encryption that port is defined for (RFC 8314 for 465, RFC 6409 for 587).
STANDARD_PORTS = {465: "tls", 587: "starttls", 25: "starttls"}


def _smtp_path(profile: PlatformProfile) -> str:
    ui = profile.ui
    return f"{ui.settings_path} > {ui.use_custom_address} Yes > {ui.use_for_sending} Yes"


def classify_account(
    custom_address: str | None, smtp: SmtpSettings, profile: PlatformProfile
) -> Outcome:
    """Whether the SMTP account is the custom address it sends as."""
    ui = profile.ui
    if custom_address is None:
        return Outcome(
            Status.FAIL,
            "SMTP settings without a custom address",
            f"SMTP account {smtp.account} is set, but no custom address: the platform only "
            "sends through your server as the custom address.",
            Cause.SENDER_NOT_OWNED,
            f"In {ui.settings_path}, select Yes for '{ui.use_custom_address}' and enter "
            f"{smtp.account} as {ui.custom_address_label}.",
        )
    if same_address(smtp.account, custom_address):
        return Outcome(
            Status.PASS,
            "SMTP account is the custom address",
            f"Account {smtp.account} sends as {custom_address}.",
        )
    return Outcome(
        Status.FAIL,
        "SMTP account differs from the custom address",
        f"Account {smtp.account} would send as {custom_address}. Servers that enforce sender "
        "ownership (Microsoft 365, Google Workspace, Postfix with "
        "reject_sender_login_mismatch) refuse this with 'Sender address rejected' or "
        "'SendAsDenied'.",
        Cause.SENDER_NOT_OWNED,
        f"In {_smtp_path(profile)}, set Account to {custom_address} (the "
        f"{ui.custom_address_label}) and enter that mailbox's password. If the mail must come "
        f"from {smtp.account}, make that the {ui.custom_address_label} instead.",
    )


def classify_login(
    login: str, custom_address: str | None, profile: PlatformProfile
) -> Outcome | None:
    """For ``maildiag smtp``: a warning when the login is not the custom address (None when it
    is). The server may accept such a login; the platform logs in with the custom address."""
    if custom_address is not None and same_address(login, custom_address):
        return None
    ui = profile.ui
    if custom_address is None:
        return Outcome(
            Status.WARN,
            f"Login {login} is not an e-mail address",
            f"The server may accept the login {login}, but the platform logs in with the "
            f"{ui.custom_address_label} as Account and sends as that address; smtp.sender tries "
            f"MAIL FROM {login} instead.",
            remediation=f"Run again with --sender and the {ui.custom_address_label} to test "
            f"sending as it. In {_smtp_path(profile)}, the Account must be the "
            f"{ui.custom_address_label} itself.",
        )
    return Outcome(
        Status.WARN,
        f"Login {login} is not the custom address {custom_address}",
        f"Login {login} would send as {custom_address}. Servers that enforce sender ownership "
        "(Microsoft 365, Google Workspace, Postfix with reject_sender_login_mismatch) refuse "
        "this with 'Sender address rejected' or 'SendAsDenied'; smtp.sender shows whether "
        "this one does.",
        remediation=f"In {_smtp_path(profile)}, set Account to {custom_address} (the "
        f"{ui.custom_address_label}) and enter that mailbox's password.",
    )


def classify_custom_address(custom_address: str, profile: PlatformProfile) -> Outcome | None:
    """A fail when ``custom_address`` is on a special-use domain (``.test``, ``.local``, ...),
    which no candidate's mail server delivers to; None otherwise."""
    name = special_use_domain(custom_address)
    if name is None:
        return None
    ui = profile.ui
    return Outcome(
        Status.FAIL,
        f"Custom address {custom_address} cannot receive candidates' mail",
        f"{custom_address} is on the special-use domain .{name}, reserved for private networks, "
        "tests and documentation (IANA's Special-Use Domain Names): candidates' mail servers "
        "cannot deliver to it, so their applications and replies bounce, and the platform's "
        "'Send test mail' fails.",
        Cause.DNS_FAILURE,
        f"In {ui.settings_path}, select Yes for '{ui.use_custom_address}' and enter an "
        f"address on a domain your company receives internet mail for as "
        f"{ui.custom_address_label}; set the file's custom_address to the same address.",
    )


def classify_port_encryption(smtp: SmtpSettings, profile: PlatformProfile) -> Outcome:
    """Whether port and encryption agree (465 <-> implicit TLS, 587/25 <-> STARTTLS)."""
    label = profile.encryption_label
    path = _smtp_path(profile)
    port, encryption = smtp.port, smtp.encryption
    setting = f"Port {port} with Encryption {label(encryption)}"
    if encryption == "none":
        return Outcome(
            Status.WARN,
            f"{setting}: the password travels unencrypted",
            "Without encryption the account's password and every candidate mail cross the "
            "internet in clear text; many servers refuse AUTH without TLS.",
            remediation=f"In {path}, choose Port 587 with Encryption {label('starttls')}, or "
            f"Port 465 with Encryption {label('tls')}.",
        )
    expected = STANDARD_PORTS.get(port)
    if expected is None:
        return Outcome(
            Status.WARN,
            f"{setting}: a non-standard port",
            f"Port {port} is not a standard submission port, so the encryption it speaks cannot "
            "be known from the settings alone; smtp.tls tries it.",
            remediation=f"Confirm with the mail server's administrator that port {port} speaks "
            f"{label(encryption)}; the standard choices are 587 with {label('starttls')} and "
            f"465 with {label('tls')}.",
        )
    if expected != encryption:
        if encryption == "tls":
            speaks = f"port {port} speaks plain SMTP first and upgrades with STARTTLS"
            fix = (
                f"choose Encryption {label('starttls')} on port {port}, or Port 465 with "
                f"Encryption {label('tls')}"
            )
        else:
            speaks = "port 465 expects TLS from the first byte (implicit TLS, RFC 8314)"
            fix = (
                f"choose Encryption {label('tls')} on port 465, or Port 587 with Encryption "
                f"{label('starttls')}"
            )
        return Outcome(
            Status.FAIL,
            f"{setting} do not match",
            f"{setting}: {speaks}. The connection test fails with a TLS handshake error or "
            "a timeout.",
            Cause.TLS_MISMATCH,
            f"In {path}, {fix}.",
        )
    if port == 25:
        return Outcome(
            Status.WARN,
            f"{setting}: port 25 is meant for server-to-server relay",
            "Port 25 is often blocked between networks and many servers do not offer AUTH "
            "there; 587 is the submission port (RFC 6409).",
            remediation=f"In {path}, prefer Port 587 with Encryption {label('starttls')} if "
            "your server offers it.",
        )
    return Outcome(Status.PASS, f"{setting} agree")


def _no_smtp(check_id: str, subject: str) -> Finding:
    return Finding(
        check=check_id,
        status=Status.SKIP,
        subject=subject,
        title="No SMTP settings of its own",
        detail="Nothing to compare: this (sub)company has no SMTP settings; "
        "sender.resolution shows which route its mail takes.",
    )


@check("config.schema", flow="configuration", title="Configuration file")
async def schema(context: Context) -> list[Finding]:
    """The file loaded: every key valid and every reference resolved (else no context)."""
    config = context.config
    where = str(context.config_path) if context.config_path else "the configuration"
    unreachable = [
        outcome.finding(
            "config.schema",
            identity.name,
            {"key": key, "custom_address": identity.custom_address},
        )
        for key, identity in _custom_address_keys(config)
        if identity.custom_address is not None
        and (outcome := classify_custom_address(identity.custom_address, config.profile))
    ]
    if unreachable:
        return unreachable
    return [
        Finding(
            check="config.schema",
            status=Status.PASS,
            subject=config.company.name,
            title="Configuration is valid",
            detail=f"{where}: platform {config.profile.display_name}, account "
            f"{config.platform.account} (inbound address {config.inbound_address}), "
            f"{len(config.subcompanies)} subcompanies, {len(config.positions)} positions, "
            f"{len(config.employees)} employees; every reference resolves.",
            evidence={
                "file": where,
                "inbound_address": config.inbound_address,
                "subcompanies": [s.name for s in config.subcompanies],
            },
        )
    ]


def _custom_address_keys(config: AccountConfig) -> list[tuple[str, Company | Subcompany]]:
    """Each identity with the key path of its custom address in the file."""
    keys: list[tuple[str, Company | Subcompany]] = [("company.custom_address", config.company)]
    for index, sub in enumerate(config.subcompanies):
        keys.append((f"subcompanies[{index}].custom_address", sub))
    return keys


def schema_failures(error: ConfigError, subject: str) -> list[Finding]:
    """One ``config.schema`` fail per problem of a configuration that did not load."""
    return [
        Finding(
            check="config.schema",
            status=Status.FAIL,
            subject=subject,
            title=f"Configuration key '{problem.key}' is invalid",
            detail=problem.render(error.file),
            evidence=problem.as_dict(),
            cause=Cause.UNKNOWN,
            remediation=(
                f"In {error.file}{f' line {problem.line}' if problem.line else ''}, correct "
                f"'{problem.key}': expected {problem.expected}; found {problem.found}. "
                "Then run the audit again."
            ),
        )
        for problem in error.problems
    ]


@check(
    "config.account_matches_address",
    flow="configuration",
    title="SMTP account equals the custom address",
)
async def account_matches_address(context: Context) -> list[Finding]:
    config = context.config
    findings = []
    for identity in config.identities():
        subject, custom_address, smtp = identity.name, identity.custom_address, identity.smtp
        if smtp is None:
            findings.append(_no_smtp("config.account_matches_address", subject))
            continue
        outcome = classify_account(custom_address, smtp, config.profile)
        findings.append(
            outcome.finding(
                "config.account_matches_address",
                subject,
                dict(
                    account=smtp.account,
                    custom_address=custom_address,
                ),
            )
        )
    return findings


@check("config.port_encryption", flow="configuration", title="Port and encryption agree")
async def port_encryption(context: Context) -> list[Finding]:
    config = context.config
    findings = []
    for identity in config.identities():
        subject, smtp = identity.name, identity.smtp
        if smtp is None:
            findings.append(_no_smtp("config.port_encryption", subject))
            continue
        outcome = classify_port_encryption(smtp, config.profile)
        findings.append(
            outcome.finding(
                "config.port_encryption",
                subject,
                dict(
                    host=smtp.host,
                    port=smtp.port,
                    encryption=smtp.encryption,
                ),
            )
        )
    return findings
