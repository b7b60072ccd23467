"""The account file's ``mailbox:``: defaults from the SMTP settings, each mistake named, no
secret shown."""

from __future__ import annotations

import pytest

from diagnostics.config import parse_config
from diagnostics.errors import ConfigError
from diagnostics.model.account import MailboxSettings

PASSWORD = "imap-Secret-4711"
ENVIRON = {"SMTP_PW": "smtp-Secret-0815", "IMAP_PW": PASSWORD}


def account(company_extra: str = "", subcompany: str = "") -> str:
    return f"""
platform: {{profile: personio, account: acme}}
company:
  name: ACME
  custom_address: jobs@company.test
  smtp:
    host: mail.company.test
    port: 587
    encryption: starttls
    account: jobs@company.test
    password: ${{SMTP_PW}}
{company_extra}
{subcompany}
"""


def load(text: str) -> object:
    return parse_config(text, source="acme.yaml", environ=ENVIRON)


def problems(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [(p.key, p.expected, p.found) for p in caught.value.problems]


def test_no_mailbox_key_reads_the_custom_address_over_imaps_with_the_smtp_login() -> None:
    config = parse_config(account(), source="acme.yaml", environ=ENVIRON)
    assert config.company.mailbox is None
    mailbox = config.company.mailbox_settings()
    assert mailbox is not None
    assert (mailbox.host, mailbox.port, mailbox.encryption, mailbox.account) == (
        "mail.company.test",
        993,
        "tls",
        "jobs@company.test",
    )
    assert mailbox.password is not None and mailbox.password.reveal() == ENVIRON["SMTP_PW"]
    assert mailbox.token_command is None


def test_what_the_mailbox_leaves_out_comes_from_the_smtp_settings() -> None:
    config = parse_config(
        account("  mailbox: {encryption: starttls}"), source="acme.yaml", environ=ENVIRON
    )
    mailbox = config.company.mailbox_settings()
    assert mailbox == MailboxSettings(
        host="mail.company.test",
        port=143,
        encryption="starttls",
        account="jobs@company.test",
        password=config.company.smtp.password if config.company.smtp else None,
    )


def test_a_mailbox_of_its_own_with_its_password() -> None:
    text = account(
        "  mailbox: {host: imap.company.test, port: 10993, account: 'CORP\\jobs', "
        "password: '${IMAP_PW}'}"
    )
    mailbox = parse_config(text, source="a.yaml", environ=ENVIRON).company.mailbox_settings()
    assert mailbox is not None
    assert (mailbox.host, mailbox.port, mailbox.encryption, mailbox.account) == (
        "imap.company.test",
        10993,
        "tls",
        "CORP\\jobs",
    )
    assert mailbox.password is not None and mailbox.password.reveal() == PASSWORD


def test_token_command_is_split_like_a_shell_line_and_not_run_when_loading() -> None:
    text = account(
        "  mailbox: {host: outlook.office365.com, token_command: \"oama access 'jobs@x.test'\"}"
    )
    mailbox = parse_config(text, source="a.yaml", environ=ENVIRON).company.mailbox_settings()
    assert mailbox is not None
    assert mailbox.token_command == ("oama", "access", "jobs@x.test")
    assert mailbox.password is None


def test_each_mistake_is_named_with_its_key_and_no_secret_is_shown() -> None:
    text = account(
        "  mailbox: {encryption: none, port: 0, token_command: [], password: '${IMAP_PW}', "
        "colour: blue}",
        """subcompanies:
  - name: Sub
    custom_address: jobs@sub.test
    mailbox: {port: 993}""",
    )
    found = problems(text)
    assert found == [
        (
            "company.mailbox.colour",
            "no such key (unknown keys are errors; check the spelling)",
            "an unknown key (its value is not shown)",
        ),
        ("company.mailbox.encryption", "tls (IMAPS, port 993) or starttls (port 143)", "'none'"),
        ("company.mailbox.port", "a port number from 1 to 65535 (IMAP: 993 or 143)", "0"),
        (
            "company.mailbox.token_command",
            "one of password, password_file or token_command",
            "password and token_command",
        ),
        ("subcompanies[0].mailbox.host", "this key to be present", "nothing"),
        ("subcompanies[0].mailbox.account", "this key to be present", "nothing"),
        (
            "subcompanies[0].mailbox.password",
            "password: ${ENV_VAR}, password_file: PATH or token_command: COMMAND (this "
            "(sub)company has no smtp settings to take it from)",
            "none of them",
        ),
    ]
    assert not any(PASSWORD in part for problem in found for part in problem)


def test_an_empty_token_command_is_refused() -> None:
    found = problems(account("  mailbox: {token_command: '  '}"))
    assert found == [
        (
            "company.mailbox.token_command",
            "a command that prints an OAuth2 access token",
            "'  '",
        )
    ]
