"""The account file's ``mailbox:``: defaults from the SMTP settings, each mistake named, no
secret shown."""

from __future__ import annotations

from pathlib import Path

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


def test_dkim_names_a_selector_and_an_rsa_key_file_never_shown(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from diagnostics.parse.dkim import DKIMKey

    key = DKIMKey.generate("company.test", "s1")
    (tmp_path / "dkim.pem").write_bytes(key.private_pem)
    text = account("  dkim: {selector: S1, key_file: dkim.pem}")
    config = parse_config(text, source="a.yaml", environ=ENVIRON, base_dir=tmp_path)
    assert config.company.dkim is not None
    assert config.company.dkim.selector == "s1"
    assert config.company.dkim.key.reveal().encode() == key.private_pem
    assert "PRIVATE KEY" not in repr(config.company.dkim)

    (tmp_path / "not-a-key.pem").write_text("-----BEGIN NOTHING-----\nsecret-material\n")
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "ed.pem").write_bytes(ed)
    for body, expected, found in [
        ("{selector: 's 1', key_file: dkim.pem}", "a DKIM selector like s1", "'s 1'"),
        (
            "{selector: s1, key_file: missing.pem}",
            "a readable PEM file",
            f"{tmp_path / 'missing.pem'}: No such file or directory",
        ),
        (
            "{selector: s1, key_file: not-a-key.pem}",
            "an unencrypted PEM RSA private key (as opendkim-genkey writes)",
            f"{tmp_path / 'not-a-key.pem'}: not one (content not shown)",
        ),
        (
            "{selector: s1, key_file: ed.pem}",
            "an RSA private key (rsa-sha256, what every DKIM verifier checks)",
            f"{tmp_path / 'ed.pem'}: not one (content not shown)",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(
                account(f"  dkim: {body}"), source="a.yaml", environ=ENVIRON, base_dir=tmp_path
            )
        ((key_path, wanted, got),) = [(p.key, p.expected, p.found) for p in caught.value.problems]
        assert key_path.startswith("company.dkim.")
        assert wanted.startswith(expected), wanted
        assert got == found
        assert "secret-material" not in str(caught.value)
