"""`maildiag smtp`'s options build the account model an account file builds (diagnostics.adhoc):
the same classes, the same values, and for a wrong value the same problem, named by the option.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from diagnostics.adhoc import adhoc_config
from diagnostics.config import parse_config
from diagnostics.errors import ConfigError
from diagnostics.model.account import AccountConfig, Company, Platform, SmtpSettings
from diagnostics.profiles import PlatformProfile, PlatformUI, load_profiles
from diagnostics.secrets import MASK

PASSWORD = "correct-horse-battery"
ENVIRON = {"SMTP_PASSWORD": PASSWORD}
BASE: dict[str, Any] = {
    "host": "smtp.acme.example",
    "port": 587,
    "encryption": "starttls",
    "account": "jobs@acme.example",
}


def account_file(options: dict[str, Any]) -> str:
    """The account file that says what ``options`` say (json is a subset of YAML)."""
    company: dict[str, Any] = {"name": f"{options['account']} at {options['host']}"}
    custom_address = options.get("sender") or options.get("custom_address")
    if custom_address:
        company["custom_address"] = custom_address
    company["smtp"] = {
        **{key: options[key] for key in ("host", "port", "encryption", "account")},
        "password": "${SMTP_PASSWORD}",
    }
    platform = {"profile": options.get("profile", "personio"), "account": "adhoc"}
    return json.dumps({"platform": platform, "company": company})


def from_options(**options: Any) -> AccountConfig:
    return adhoc_config(**options, password_env="SMTP_PASSWORD", environ=ENVIRON)


def from_file(text: str) -> AccountConfig:
    return parse_config(text, source="adhoc.yaml", environ=ENVIRON)


VALID = [
    {},
    dict(host="SMTP.Acme.Example.", port=465, encryption="SSL", account="Jobs@ACME.example"),
    dict(sender="Recruiting@Acme.Example"),
    dict(host="192.0.2.10", port=25, encryption=" StartTLS "),
    dict(host="2001:DB8:0::1", port=2525, encryption="implicit"),
    dict(host="mail.example", port=1, encryption="tls/starttls", account="jöbs@bücher.example"),
    dict(host="mail.bücher.example", port=65535, encryption="none", account="a.b+c@d-e.example"),
    dict(account="jobs@acme.test"),
    dict(account="svc@corp.local", sender="jobs@acme.example"),
]


@pytest.mark.parametrize("options", VALID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options_and_file_build_the_same_objects(options: dict[str, Any]) -> None:
    options = {**BASE, **options}
    custom_address = options.get("sender") or options["account"]
    built = from_options(**options)
    loaded = from_file(account_file({**options, "custom_address": custom_address}))
    assert built == loaded
    assert type(built) is type(loaded) is AccountConfig
    assert type(built.company) is Company and type(built.platform) is Platform
    assert type(built.company.smtp) is SmtpSettings


@pytest.mark.parametrize("login", ["CORP\\jobs", "svc", "jobs@acme", "jobs..x@acme.example"])
def test_a_login_that_is_no_address_builds_without_a_custom_address(login: str) -> None:
    built = from_options(**{**BASE, "account": login})
    assert built.company.custom_address is None
    assert built.company.smtp is not None and built.company.smtp.account == login
    assert built == from_file(account_file({**BASE, "account": login}))


# option given -> the value (and the key of the account file that holds the same value)
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
    dict(account=""),
    dict(account="jobs@acme.example\r\nRCPT TO:<x@y.example>"),
    dict(account="jobs@acme.example\t"),
    dict(sender="nope"),
    dict(sender="jobs@acme.example>"),
    dict(sender="jobs@acme.example\n"),
    dict(sender="jobs@localhost"),
    dict(profile="workday"),
]
KEYS = {
    "host": "company.smtp.host",
    "port": "company.smtp.port",
    "encryption": "company.smtp.encryption",
    "account": "company.smtp.account",
    "sender": "company.custom_address",
    "profile": "platform.profile",
}


@pytest.mark.parametrize("wrong", WRONG, ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()))
def test_a_wrong_option_is_the_file_s_problem_named_by_the_option(wrong: dict[str, Any]) -> None:
    [option] = wrong
    with pytest.raises(ConfigError) as from_command_line:
        from_options(**{**BASE, **wrong})
    with pytest.raises(ConfigError) as from_account_file:
        from_file(account_file({**BASE, **wrong}))
    [problem] = from_command_line.value.problems
    [in_file] = from_account_file.value.problems
    assert from_command_line.value.file == "command line"
    assert (problem.key, problem.line) == (f"--{option}", None)
    assert in_file.key == KEYS[option]
    assert (problem.expected, problem.found) == (in_file.expected, in_file.found)
    assert str(from_command_line.value) == (
        f"command line: key '--{option}': expected {problem.expected}; found {problem.found}"
    )


def test_every_wrong_smtp_option_is_named_at_once_and_before_the_sender() -> None:
    with pytest.raises(ConfigError) as info:
        from_options(host="smtp..x", port=0, encryption="starttlss", account="", sender="nope")
    assert [p.key for p in info.value.problems] == [
        "--host",
        "--port",
        "--encryption",
        "--account",
    ]
    with pytest.raises(ConfigError) as info:
        from_options(**{**BASE, "sender": "nope", "profile": "workday"})
    assert [p.key for p in info.value.problems] == ["--sender"]


def test_an_unset_password_variable_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        adhoc_config(**BASE, password_env="NO_SUCH_VARIABLE", environ={})
    assert str(info.value) == (
        "--password-env: key '--password-env': expected environment variable NO_SUCH_VARIABLE "
        "to hold the password; found NO_SUCH_VARIABLE unset or empty"
    )


def test_the_configuration_uses_the_profiles_everyone_uses() -> None:
    config = from_options(**BASE)
    assert config.profile is load_profiles()["personio"]
    assert isinstance(config.profile, PlatformProfile)
    assert isinstance(config.profile.ui, PlatformUI)
    assert config.inbound_address == "adhoc-jobs@m.personio.de"
    assert config.identities() == (config.company,)


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


def test_the_configuration_is_frozen_and_its_password_masked() -> None:
    config = from_options(**BASE)
    assert config.company.smtp is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.company.smtp.port = 25  # type: ignore[misc]
    with pytest.raises(KeyError):
        config.subcompany("Acme Retail")
    for text in (repr(config), str(config), f"{config.company.smtp}"):
        assert PASSWORD not in text
    assert repr(config).count(MASK) == 1
    assert config.company.smtp.password.reveal() == PASSWORD


def test_settings_on_another_port_keep_everything_else() -> None:
    smtp = from_options(**BASE).company.smtp
    assert smtp is not None
    trial = smtp.on_port(465, "tls")
    assert (trial.host, trial.port, trial.encryption, trial.account) == (
        "smtp.acme.example",
        465,
        "tls",
        "jobs@acme.example",
    )
    assert trial.password is smtp.password
    with pytest.raises(KeyError):
        smtp.on_port(465, "ssl")
