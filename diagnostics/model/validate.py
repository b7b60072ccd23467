"""Build the account model from plain mappings, every value checked by the field rules.

The one validation of an account, whatever it comes from: the account file's YAML
(:mod:`diagnostics.config` adds the file name and line numbers) and ``maildiag smtp``'s
options (:mod:`diagnostics.adhoc` names the option instead of the key). Every problem of the
input is collected, in the order of the model's fields, a mapping's unknown keys after its
known ones; the cross-references (position -> subcompany, unique names) are checked once
everything else is valid. A problem never shows a secret: the value found under a password
key is not shown, and an unknown key's value is not shown either (it may be a misspelt
password).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from diagnostics import fields
from diagnostics.model.account import (
    ENCRYPTIONS,
    IMAP_PORTS,
    AccountConfig,
    Company,
    DkimSigning,
    Employee,
    Encryption,
    MailboxEncryption,
    MailboxSettings,
    Platform,
    Position,
    SenderName,
    SmtpSettings,
    Subcompany,
)
from diagnostics.profiles import load_profiles
from diagnostics.secrets import (
    Secret,
    env_reference_name,
    read_private_key,
    read_secret_file,
    resolve_env,
)

__all__ = ["Invalid", "Loc", "Problem", "Rules"]

Loc = tuple[str | int, ...]
T = TypeVar("T")

UNKNOWN_KEY_EXPECTED: Final = "no such key (unknown keys are errors; check the spelling)"
UNKNOWN_KEY_FOUND: Final = "an unknown key (its value is not shown)"
_MAPPING: Final = "a mapping of keys to values"
_EMPLOYEE: Final[SenderName] = "employee"
_IDENTITY_KEYS: Final = ("name", "custom_address", "smtp", "allowlist", "mailbox", "dkim")
_MAILBOX_ENCRYPTIONS: dict[str, MailboxEncryption] = {"tls": "tls", "starttls": "starttls"}
_SENDER_NAMES: dict[object, SenderName] = {"employee": "employee", "company": "company"}


@dataclass(frozen=True)
class Problem:
    """One value that breaks its rule, at ``loc`` (keys and list indexes from the top)."""

    loc: Loc
    expected: str
    found: str
    #: A well-formed secret reference that does not resolve (variable unset, file unreadable
    #: or empty): the file is right, the machine running it is not set up.
    unresolved_secret: bool = False


class Invalid(Exception):
    """The input breaks the rules; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class _Failed:
    """A value that broke its rule (its problem is recorded)."""


_FAILED: Final = _Failed()


def _valid(value: T | _Failed) -> T:
    """``value``, known to have passed its rule (no problem was recorded for it)."""
    assert not isinstance(value, _Failed)
    return value


# -- rules for values the field rules leave to the model -----------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise fields.FieldProblem("text", value)
    return value


def _non_empty_text(value: Any) -> str:
    if _text(value) == "":
        raise fields.FieldProblem("a non-empty text", value)
    return str(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _encryption(value: Any) -> Encryption:
    return ENCRYPTIONS[fields.encryption(value)]


def _mailbox_encryption(value: Any) -> MailboxEncryption:
    return _MAILBOX_ENCRYPTIONS[fields.imap_encryption(value)]


def _sender_name(value: Any) -> SenderName:
    if not isinstance(value, str) or value not in _SENDER_NAMES:
        raise fields.FieldProblem("one of 'employee' or 'company'", value)
    return _SENDER_NAMES[value]


def _profile(value: Any) -> str:
    return fields.profile_name(_text(value), load_profiles())


def _platform_account(value: Any) -> str:
    return fields.platform_account(_text(value))


# -- the builder ------------------------------------------------------------------------------


class Rules:
    """Builds model objects from mappings, collecting every problem on the way.

    ``environ`` resolves ``${VAR}`` references (None: the process environment); ``base_dir``
    is where a relative ``password_file`` is (None: the working directory).
    """

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, base_dir: Path | None = None
    ) -> None:
        self.environ = environ
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    # Recording problems.

    def problem(self, loc: Loc, expected: str, found: Any) -> None:
        """A problem whose found value is shown as :func:`fields.found_text` shows it."""
        self.problems.append(Problem(loc, expected, fields.found_text(found, loc)))

    def said(self, loc: Loc, expected: str, found: str, *, unresolved: bool = False) -> None:
        """A problem whose found text is written for the reader (never holds a secret)."""
        self.problems.append(Problem(loc, expected, found, unresolved))

    def raise_problems(self) -> None:
        """Invalid with every problem so far, if there is any."""
        if self.problems:
            raise Invalid(list(self.problems))

    def one(self, built: T | _Failed) -> T:
        """``built`` (by a method below) when nothing broke a rule so far; else Invalid."""
        self.raise_problems()
        return _valid(built)

    # Values and mappings.

    def value(
        self,
        raw: Mapping[Any, Any],
        loc: Loc,
        key: str,
        rule: Callable[[Any], T],
        *,
        default: T | _Failed = _FAILED,
        required: bool = True,
    ) -> T | _Failed:
        """``rule(raw[key])``; the default when the key is absent and not ``required``."""
        if key not in raw:
            return self.missing((*loc, key)) if required else default
        try:
            return rule(raw[key])
        except fields.FieldProblem as problem:
            self.problem((*loc, key), problem.expected, problem.found)
            return _FAILED

    def missing(self, loc: Loc) -> _Failed:
        """A required key that is absent."""
        self.said(loc, "this key to be present", "nothing")
        return _FAILED

    def mapping(self, raw: Any, loc: Loc) -> Mapping[Any, Any] | None:
        """``raw`` when it is a mapping; else None, and a problem."""
        if isinstance(raw, dict):
            return raw
        self.problem(loc, _MAPPING, raw)
        return None

    def unknown_keys(self, raw: Mapping[Any, Any], loc: Loc, known: tuple[str, ...]) -> None:
        """A problem for each key of ``raw`` that is not ``known``, in the order written."""
        for key in raw:
            if not isinstance(key, str):
                self.problem((*loc, key), "keys that are text", key)
            elif key not in known:
                self.said((*loc, key), UNKNOWN_KEY_EXPECTED, UNKNOWN_KEY_FOUND)

    def items(self, raw: Mapping[Any, Any], loc: Loc, key: str) -> list[Any] | _Failed:
        """The list under ``key`` (empty when absent)."""
        if key not in raw:
            return []
        value = raw[key]
        if isinstance(value, list | tuple):
            return list(value)
        self.problem((*loc, key), "a list", value)
        return _FAILED

    # The model, class by class.

    def smtp_settings(self, raw: Any, loc: Loc) -> SmtpSettings | _Failed:
        """:class:`SmtpSettings` from ``{host, port, encryption, account, password |
        password_file}``; ``password`` may also be a :class:`Secret` already resolved."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        host = self.value(data, loc, "host", fields.host)
        port = self.value(data, loc, "port", fields.port)
        encryption = self.value(data, loc, "encryption", _encryption)
        # A login is whatever the server accepts; config.account_matches_address says when it
        # is not the custom address.
        account = self.value(data, loc, "account", fields.login)
        password = self.password(data, loc)
        self.unknown_keys(
            data, loc, ("host", "port", "encryption", "account", "password", "password_file")
        )
        if len(self.problems) > before:
            return _FAILED
        return SmtpSettings(
            host=_valid(host),
            port=_valid(port),
            encryption=_valid(encryption),
            account=_valid(account),
            password=_valid(password),
        )

    def mailbox_settings(
        self, raw: Any, loc: Loc, smtp: SmtpSettings | None
    ) -> MailboxSettings | _Failed:
        """:class:`MailboxSettings` from ``{host?, port?, encryption?, account?, password? |
        password_file? | token_command?}``; what is left out comes from the identity's SMTP
        settings (host, account, password), encryption ``tls``, and the port of the
        encryption."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        keys = ("host", "port", "encryption", "account", "password", "password_file")
        self.unknown_keys(data, loc, (*keys, "token_command"))
        needs = (
            "" if smtp is not None else " (this (sub)company has no smtp settings to take it from)"
        )
        host = self.value(
            data,
            loc,
            "host",
            fields.host,
            default=smtp.host if smtp else _FAILED,
            required=smtp is None,
        )
        tls: MailboxEncryption = "tls"
        encryption: MailboxEncryption | _Failed = self.value(
            data, loc, "encryption", _mailbox_encryption, default=tls, required=False
        )
        port = self.value(
            data,
            loc,
            "port",
            fields.imap_port,
            default=IMAP_PORTS[encryption] if isinstance(encryption, str) else _FAILED,
            required=False,
        )
        account = self.value(
            data,
            loc,
            "account",
            fields.login,
            default=smtp.account if smtp else _FAILED,
            required=smtp is None,
        )
        password: Secret | _Failed | None = None
        command: tuple[str, ...] | _Failed | None = None
        given = [k for k in ("password", "password_file", "token_command") if k in data]
        if len(given) > 1:
            self.said(
                (*loc, given[1]),
                "one of password, password_file or token_command",
                " and ".join(given),
            )
        elif "token_command" in data:
            command = self.value(data, loc, "token_command", fields.command)
        elif given:
            password = self.password(data, loc)
        elif smtp is not None:
            password = smtp.password
        else:
            self.said(
                (*loc, "password"),
                "password: ${ENV_VAR}, password_file: PATH or token_command: COMMAND" + needs,
                "none of them",
            )
        if len(self.problems) > before:
            return _FAILED
        return MailboxSettings(
            host=_valid(host),
            port=_valid(port),
            encryption=_valid(encryption),
            account=_valid(account),
            password=_valid(password),
            token_command=_valid(command),
        )

    def dkim_signing(self, raw: Any, loc: Loc) -> DkimSigning | _Failed:
        """:class:`DkimSigning` from ``{selector, key_file}``: a selector that is a DNS name and
        a PEM RSA private key in the file (relative to the account file); never shown."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        self.unknown_keys(data, loc, ("selector", "key_file"))
        selector = self.value(data, loc, "selector", fields.dkim_selector)
        key: Secret | _Failed = _FAILED
        if "key_file" not in data:
            self.missing((*loc, "key_file"))
        else:
            key = self._key_file(data["key_file"], (*loc, "key_file"))
        if len(self.problems) > before:
            return _FAILED
        return DkimSigning(selector=_valid(selector), key=_valid(key))

    def _key_file(self, value: Any, loc: Loc) -> Secret | _Failed:
        if not isinstance(value, str) or not value:
            self.problem(loc, "a path to a PEM file holding the DKIM private key", value)
            return _FAILED
        base = self.base_dir or Path.cwd()
        path = Path(value) if Path(value).is_absolute() else Path(base) / value
        try:
            return read_private_key(path)
        except OSError as exc:
            self.said(loc, "a readable PEM file", f"{path}: {exc.strerror}", unresolved=True)
        except ValueError as exc:
            self.said(loc, str(exc), f"{path}: not one (content not shown)")
        return _FAILED

    def password(self, data: Mapping[Any, Any], loc: Loc) -> Secret | _Failed:
        """The secret a ``password: ${VAR}`` or ``password_file: PATH`` reference names."""
        if "password" in data and "password_file" in data:
            self.said(
                (*loc, "password_file"),
                "either password or password_file, not both",
                "both password and password_file",
            )
            return _FAILED
        if "password_file" in data:
            return self._secret_from_file(data["password_file"], loc)
        if "password" not in data:
            self.said((*loc, "password"), "password: ${ENV_VAR} or password_file: PATH", "neither")
            return _FAILED
        value = data["password"]
        if isinstance(value, Secret):
            return value
        name = env_reference_name(value) if isinstance(value, str) else None
        if name is None:
            # The found value is not echoed: it may be the password itself.
            self.said(
                (*loc, "password"),
                "a reference ${ENV_VAR} (or use password_file: PATH)",
                "a literal value (not shown)",
            )
            return _FAILED
        secret = resolve_env(name, self.environ)
        if secret is None:
            self.said(
                (*loc, "password"),
                f"environment variable {name} to be set and non-empty",
                f"{name} unset or empty",
                unresolved=True,
            )
            return _FAILED
        return secret

    def _secret_from_file(self, value: Any, loc: Loc) -> Secret | _Failed:
        if not isinstance(value, str) or not value:
            self.problem((*loc, "password"), "a path to a file holding the password", value)
            return _FAILED
        base = self.base_dir or Path.cwd()
        path = Path(value) if Path(value).is_absolute() else Path(base) / value
        key = (*loc, "password_file")
        try:
            secret = read_secret_file(path)
        except OSError as exc:
            self.said(
                key,
                "a readable file holding the password",
                f"{path}: {exc.strerror}",
                unresolved=True,
            )
            return _FAILED
        except ValueError as exc:  # limits.InputTooLarge
            self.said(key, "a file whose first line is the password", str(exc))
            return _FAILED
        if not secret.reveal():
            self.said(key, "a password on the first line", f"{path} is empty", unresolved=True)
            return _FAILED
        return secret

    def _identity(self, data: Mapping[Any, Any], loc: Loc) -> dict[str, Any]:
        """The fields a company and a subcompany share, in the model's order, by name (each
        value checked, or the failed marker)."""
        raw_smtp = data.get("smtp")
        name = self.value(data, loc, "name", _non_empty_text)
        address = self.value(
            data, loc, "custom_address", fields.email, default=None, required=False
        )
        smtp = None if raw_smtp is None else self.smtp_settings(raw_smtp, (*loc, "smtp"))
        allowlist = self.value(
            data, loc, "allowlist", fields.networks, default=None, required=False
        )
        raw_mailbox = data.get("mailbox")
        mailbox = (
            None
            if raw_mailbox is None
            else self.mailbox_settings(
                raw_mailbox, (*loc, "mailbox"), smtp if isinstance(smtp, SmtpSettings) else None
            )
        )
        raw_dkim = data.get("dkim")
        dkim = None if raw_dkim is None else self.dkim_signing(raw_dkim, (*loc, "dkim"))
        return {
            "name": name,
            "custom_address": address,
            "smtp": smtp,
            "allowlist": allowlist,
            "mailbox": mailbox,
            "dkim": dkim,
        }

    def company(self, raw: Any, loc: Loc) -> Company | _Failed:
        """:class:`Company` from ``{name, custom_address?, smtp?, allowlist?, sender_name?}``."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        shared = self._identity(data, loc)
        sender_name: SenderName | _Failed = self.value(
            data, loc, "sender_name", _sender_name, default=_EMPLOYEE, required=False
        )
        self.unknown_keys(data, loc, (*_IDENTITY_KEYS, "sender_name"))
        if len(self.problems) > before:
            return _FAILED
        return Company(
            **{key: _valid(value) for key, value in shared.items()},
            sender_name=_valid(sender_name),
        )

    def subcompany(self, raw: Any, loc: Loc) -> Subcompany | _Failed:
        """:class:`Subcompany` from ``{name, custom_address?, smtp?, allowlist?}``."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        shared = self._identity(data, loc)
        self.unknown_keys(data, loc, _IDENTITY_KEYS)
        if len(self.problems) > before:
            return _FAILED
        return Subcompany(**{key: _valid(value) for key, value in shared.items()})

    def position(self, raw: Any, loc: Loc) -> Position | _Failed:
        """:class:`Position` from ``{title, subcompany?}``."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        title = self.value(data, loc, "title", _non_empty_text)
        sub = self.value(data, loc, "subcompany", _optional_text, default=None, required=False)
        self.unknown_keys(data, loc, ("title", "subcompany"))
        if len(self.problems) > before:
            return _FAILED
        return Position(title=_valid(title), subcompany=_valid(sub))

    def employee(self, raw: Any, loc: Loc) -> Employee | _Failed:
        """:class:`Employee` from ``{name, email}``."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        name = self.value(data, loc, "name", _non_empty_text)
        email = self.value(data, loc, "email", fields.email)
        self.unknown_keys(data, loc, ("name", "email"))
        if len(self.problems) > before:
            return _FAILED
        return Employee(name=_valid(name), email=_valid(email))

    def platform(self, raw: Any, loc: Loc) -> Platform | _Failed:
        """:class:`Platform` from ``{profile, account}``."""
        before = len(self.problems)
        data = self.mapping(raw, loc)
        if data is None:
            return _FAILED
        profile = self.value(data, loc, "profile", _profile)
        account = self.value(data, loc, "account", _platform_account)
        self.unknown_keys(data, loc, ("profile", "account"))
        if len(self.problems) > before:
            return _FAILED
        return Platform(profile=_valid(profile), account=_valid(account))

    def _list(
        self, data: Mapping[Any, Any], key: str, build: Callable[[Any, Loc], T | _Failed]
    ) -> tuple[T, ...] | _Failed:
        raw = self.items(data, (), key)
        if isinstance(raw, _Failed):
            return raw
        built = [build(item, (key, index)) for index, item in enumerate(raw)]
        if any(isinstance(item, _Failed) for item in built):
            return _FAILED
        return tuple(_valid(item) for item in built)

    def account(self, raw: Any) -> AccountConfig:
        """The whole :class:`AccountConfig` from the account file's top-level mapping;
        :class:`Invalid` lists every problem."""
        data = self.mapping(raw, ())
        if data is None:
            raise Invalid(list(self.problems))
        platform = (
            self.platform(data["platform"], ("platform",))
            if "platform" in data
            else self.missing(("platform",))
        )
        company = (
            self.company(data["company"], ("company",))
            if "company" in data
            else self.missing(("company",))
        )
        subcompanies = self._list(data, "subcompanies", self.subcompany)
        positions = self._list(data, "positions", self.position)
        employees = self._list(data, "employees", self.employee)
        self.unknown_keys(
            data, (), ("platform", "company", "subcompanies", "positions", "employees")
        )
        self.raise_problems()
        config = AccountConfig(
            platform=_valid(platform),
            company=_valid(company),
            subcompanies=_valid(subcompanies),
            positions=_valid(positions),
            employees=_valid(employees),
        )
        self._references(config)
        return config

    def _references(self, config: AccountConfig) -> None:
        """Unique subcompany names; every position's subcompany defined (the first problem)."""
        names = [s.name for s in config.subcompanies]
        for index, name in enumerate(names):
            if name in names[:index] or name == config.company.name:
                self.said(
                    ("subcompanies", index, "name"),
                    "subcompany names that are unique and differ from the company",
                    f"{name!r} twice",
                )
                self.raise_problems()
        for index, position in enumerate(config.positions):
            sub = position.subcompany
            if sub is not None and sub not in names and sub != config.company.name:
                known = ", ".join(repr(n) for n in names) or "none defined"
                self.said(
                    ("positions", index, "subcompany"),
                    f"a subcompany defined under subcompanies ({known})",
                    repr(sub),
                )
                self.raise_problems()
