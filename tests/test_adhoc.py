"""`maildiag smtp` checks its options without pydantic (diagnostics.adhoc): the configuration
it builds, and every message for a wrong option, must be those of the account file's models.

The reference below is how diagnostics.adhoc built the configuration through the pydantic
models before it stopped loading them; each case is run through both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from diagnostics import fields
from diagnostics.adhoc import (
    AdhocCompany,
    AdhocConfig,
    AdhocPlatform,
    AdhocSmtpSettings,
    adhoc_config,
)
from diagnostics.config import (
    AccountConfig,
    Company,
    Platform,
    SmtpSettings,
    problems_from_validation,
)
from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.profiles import PlatformProfile, PlatformUI, load_profiles
from diagnostics.secrets import resolve_env

ENVIRON = {"SMTP_PASSWORD": "correct-horse-battery"}


def reference_config(
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
    """The configuration as the pydantic models build it (diagnostics.adhoc until now)."""
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
    smtp = {"host": host, "port": port, "encryption": encryption, "account": account}
    try:
        settings = SmtpSettings.model_validate({**smtp, "password": secret})
        # Without --sender the login is the custom address, when it is an address at all.
        custom: dict[str, Any] = {"custom_address": sender} if sender else {}
        if not sender:
            try:
                custom = {"custom_address": fields.email(account)}
            except fields.FieldProblem:
                custom = {}
        company = Company.model_validate({"name": f"{account} at {host}", **custom}).model_copy(
            update={"smtp": settings}
        )
        return AccountConfig(platform=Platform(profile=profile, account="adhoc"), company=company)
    except ValidationError as exc:
        problems = problems_from_validation(exc, {})
        for problem in problems:
            option = problem.key.rsplit(".", 1)[-1].replace("_", "-")
            problem.key = "--" + {"custom-address": "sender"}.get(option, option)
        raise ConfigError("command line", problems) from None


def profile_data(profile: PlatformProfile) -> dict[str, Any]:
    return dataclasses.asdict(profile)


def config_data(config: Any) -> dict[str, Any]:
    """Everything the smtp checks, the runner and the report read of a configuration."""
    smtp = config.company.smtp
    return {
        "platform": (config.platform.profile, config.platform.account),
        "company": (
            config.company.name,
            config.company.custom_address,
            config.company.allowlist,
            config.company.sender_name,
        ),
        "smtp": (smtp.host, smtp.port, smtp.encryption, smtp.account),
        "password": (smtp.password.reveal(), smtp.password.source, str(smtp.password)),
        "rest": (config.subcompanies, config.positions, config.employees),
        "identities": [(i.name, i.custom_address) for i in config.identities()],
        "inbound_address": config.inbound_address,
        "profile": profile_data(config.profile),
        "labels": [config.profile.encryption_label(e) for e in ("starttls", "tls", "none", "x")],
        "inbound_for": config.profile.inbound_address_for("acme"),
        "trial": (lambda t: (t.host, t.port, t.encryption, t.account, t.password.reveal()))(
            smtp.model_copy(update={"port": 465, "encryption": "tls"})
        ),
    }


VALID = [
    dict(host="smtp.acme.example", port=587, encryption="starttls", account="jobs@acme.example"),
    dict(
        host="SMTP.Acme.Example.",
        port=465,
        encryption="SSL",
        account="Jobs@ACME.example",
        sender="Recruiting@Acme.Example",
    ),
    dict(
        host="192.0.2.10", port=25, encryption=" StartTLS ", account="jobs@acme.example", sender=""
    ),
    dict(host="2001:DB8:0::1", port=2525, encryption="implicit", account="jobs@acme.example"),
    dict(host="mail.example", port=1, encryption="tls/starttls", account="jöbs@bücher.example"),
    dict(host="mail.example", port=65535, encryption="none", account="a.b+c@d-e.example"),
]


@pytest.mark.parametrize("options", VALID)
def test_the_configuration_is_the_models_one(options: dict[str, Any]) -> None:
    common = {"password_env": "SMTP_PASSWORD", "environ": ENVIRON}
    fast = adhoc_config(**options, **common)
    assert isinstance(fast, AdhocConfig)
    assert config_data(fast) == config_data(reference_config(**options, **common))


WRONG = [
    dict(host="smtp..acme.example"),
    dict(host=""),
    dict(host="-smtp.acme.example"),
    dict(host="a" * 300),
    dict(host="smtp_acme.example"),
    dict(port=0),
    dict(port=65536),
    dict(port=-587),
    dict(encryption="starttlss"),
    dict(encryption=""),
    dict(encryption="ssl/tls"),
    dict(account="jobs@acme.example\r\nRCPT TO:<x@y.example>"),
    dict(sender="nope"),
    dict(sender="jobs@acme.example>"),
    dict(sender="jobs@acme.example\n"),
    dict(host="smtp..x", port=0, encryption="starttlss", account="nope"),
    dict(host="smtp..x", sender="nope"),
    dict(port=70000, account="jobs@acme.example\t"),
    dict(profile="workday"),
    dict(profile="workday", sender="nope"),
]


def outcome(build: Any, options: dict[str, Any]) -> tuple[Any, ...]:
    """What a configuration builder makes of ``options``: the configuration or the error."""
    try:
        config = build(**options)
    except ConfigError as exc:
        return type(exc), str(exc), [p.as_dict() for p in exc.problems]
    return ("built", config_data(config))


@pytest.mark.parametrize("wrong", WRONG)
def test_every_message_for_a_wrong_option_is_the_models_one(wrong: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "host": "smtp.acme.example",
        "port": 587,
        "encryption": "starttls",
        "account": "jobs@acme.example",
        "password_env": "SMTP_PASSWORD",
        "environ": ENVIRON,
        **wrong,
    }
    expected = outcome(reference_config, options)
    assert expected[0] is ConfigError
    assert outcome(adhoc_config, options) == expected


@pytest.mark.parametrize(
    "edge",
    [
        # Logins that are not e-mail addresses: whatever the server accepts.
        dict(account="nope"),
        dict(account="jobs@acme"),
        dict(account="jobs..x@acme.example"),
        dict(account="jobs@" + "a" * 300 + ".example"),
        dict(account="CORP\\jobs"),
        dict(account="jobs@acme.test"),
        dict(account="svc@corp.local", sender="jobs@acme.example"),
        dict(account="x" * 65 + "@acme.example"),
        dict(account="jobs@acme.example."),
        dict(account='"quoted local"@acme.example'),
        dict(account="jobs@[192.0.2.1]"),
        dict(account="jobs@localhost"),
        dict(sender="jobs@xn--bcher-kva.example"),
        dict(host="a" * 63 + "." + "b" * 63),
        dict(host="a" * 64 + ".example"),
        dict(host="127.000.000.001"),
        dict(host="::ffff:192.0.2.1"),
        dict(host="smtp.acme.example.."),
        dict(encryption="TLS"),
        dict(encryption=" none\n"),
    ],
)
def test_edge_cases_come_out_alike(edge: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "host": "smtp.acme.example",
        "port": 587,
        "encryption": "starttls",
        "account": "jobs@acme.example",
        "password_env": "SMTP_PASSWORD",
        "environ": ENVIRON,
        **edge,
    }
    assert outcome(adhoc_config, options) == outcome(reference_config, options)


def test_an_unset_password_variable_is_the_same_error() -> None:
    options: dict[str, Any] = {
        "host": "smtp..acme.example",
        "port": 587,
        "encryption": "starttls",
        "account": "jobs@acme.example",
        "password_env": "NO_SUCH_VARIABLE",
        "environ": {},
    }
    with pytest.raises(ConfigError) as expected:
        reference_config(**options)
    with pytest.raises(ConfigError) as fast:
        adhoc_config(**options)
    assert str(fast.value) == str(expected.value)
    assert "NO_SUCH_VARIABLE unset or empty" in str(fast.value)


@pytest.mark.parametrize(
    ("light", "model"),
    [
        (AdhocConfig, AccountConfig),
        (AdhocSmtpSettings, SmtpSettings),
        (AdhocCompany, Company),
        (AdhocPlatform, Platform),
    ],
)
def test_the_light_classes_offer_what_the_models_offer(light: type, model: type) -> None:
    """A field, property or method added to a model must be added to its stand-in as well."""
    fields = [f.name for f in dataclasses.fields(light)]
    assert fields == list(model.model_fields)
    own = {n for n in vars(model) if not n.startswith(("_", "model_"))}
    assert own <= set(dir(light))


def test_the_configuration_uses_the_profiles_everyone_uses() -> None:
    config = adhoc_config(
        host="smtp.acme.example",
        port=587,
        encryption="starttls",
        account="jobs@acme.example",
        password_env="SMTP_PASSWORD",
        environ=ENVIRON,
    )
    assert config.profile is load_profiles()["personio"]
    assert isinstance(config.profile, PlatformProfile)
    assert isinstance(config.profile.ui, PlatformUI)


def test_a_profile_with_a_missing_or_unknown_key_is_refused() -> None:
    from diagnostics.profiles import build_profile

    body = dict(load_profiles()["personio"].__dict__)
    body.pop("name")
    body["ui"] = dict(body["ui"].__dict__)
    body["egress_ips"] = [str(n) for n in body["egress_ips"]]
    assert build_profile("copy", body).egress_ips == load_profiles()["personio"].egress_ips
    with pytest.raises(
        ValueError, match=r"copy: missing \['display_name'\], unknown \['displayname'\]"
    ):
        build_profile(
            "copy", {**{k: v for k, v in body.items() if k != "display_name"}, "displayname": "x"}
        )
    with pytest.raises(ValueError, match=r"copy.ui: missing \['sender_name'\], unknown nothing"):
        build_profile(
            "copy", {**body, "ui": {k: v for k, v in body["ui"].items() if k != "sender_name"}}
        )


def test_the_configuration_is_frozen() -> None:
    config = adhoc_config(
        host="smtp.acme.example",
        port=587,
        encryption="starttls",
        account="jobs@acme.example",
        password_env="SMTP_PASSWORD",
        environ=ENVIRON,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.company.smtp.port = 25  # type: ignore[misc, union-attr]
    with pytest.raises(KeyError):
        config.subcompany("Acme Retail")
    assert "correct-horse-battery" not in repr(config)
