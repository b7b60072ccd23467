"""The account configuration: one YAML file per account, loaded into frozen, typed objects.

:func:`load_config` reads the file, validates every key (unknown keys are errors), resolves
secret references and cross-references (position -> subcompany), and raises one
:class:`~diagnostics.errors.ConfigError` listing every problem with its key path, line,
what was expected and what was found. A secret's value never appears in a message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from diagnostics import fields
from diagnostics.errors import ConfigError, ConfigProblem, SecretError
from diagnostics.fields import FieldProblem
from diagnostics.profiles import IPNetwork, PlatformProfile, load_profiles
from diagnostics.secrets import Secret, env_reference_name, read_secret_file, resolve_env

Encryption = Literal["starttls", "tls", "none"]
SenderName = Literal["employee", "company"]

T = TypeVar("T")


def _problem(expected: str, found: Any) -> PydanticCustomError:
    return PydanticCustomError(
        "maildiag", "expected {expected}", {"expected": expected, "found": found}
    )


def _checked(rule: Callable[[Any], T], value: Any) -> T:
    """``rule(value)`` (a rule of :mod:`diagnostics.fields`), its problem as pydantic's error."""
    try:
        return rule(value)
    except FieldProblem as problem:
        raise _problem(problem.expected, problem.found) from None


def _email(value: Any) -> str:
    return _checked(fields.email, value)


EmailAddress = Annotated[str, Field(json_schema_extra={"format": "email"})]


class _SecretReference(NamedTuple):
    """How a password is given in the file: ``env`` (``password``), ``file``, ``both``, ``neither``."""

    kind: str
    value: Any


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class SmtpSettings(_Model):
    """The SMTP settings the platform uses to send as a custom address."""

    host: str
    port: int
    encryption: Encryption
    account: str
    password: Secret

    @model_validator(mode="before")
    @classmethod
    def _password_reference(cls, data: Any) -> Any:
        # Only gathers the reference: resolving (and failing) happens in the field validator,
        # so that a bad secret reference does not hide the block's other problems.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        has_literal = "password" in data
        has_file = "password_file" in data
        if has_literal and has_file:
            data.pop("password_file")
            data["password"] = _SecretReference("both", None)
        elif has_file:
            data["password"] = _SecretReference("file", data.pop("password_file"))
        elif not has_literal:
            data["password"] = _SecretReference("neither", None)
        return data

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any, info: ValidationInfo) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, _SecretReference):
            value = _SecretReference("env", value)
        context = info.context or {}
        if value.kind == "both":
            raise PydanticCustomError(
                "secret_reference",
                "expected {expected}",
                {
                    "expected": "either password or password_file, not both",
                    "found": "both password and password_file",
                    "key": "password_file",
                },
            )
        if value.kind == "neither":
            raise PydanticCustomError(
                "missing_password",
                "expected {expected}",
                {"expected": "password: ${ENV_VAR} or password_file: PATH", "found": "neither"},
            )
        if value.kind == "file":
            return _secret_from_file(value.value, context)
        return _secret_from_env(value.value, context)

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> str:
        return _checked(fields.host, value)

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        return _checked(fields.port, value)

    @field_validator("encryption", mode="before")
    @classmethod
    def _encryption(cls, value: Any) -> str:
        return _checked(fields.encryption, value)

    @field_validator("account", mode="before")
    @classmethod
    def _account(cls, value: Any) -> str:
        # A login is whatever the server accepts; config.account_matches_address says when it
        # is not the custom address.
        return _checked(fields.login, value)


def _secret_from_env(value: Any, context: Mapping[str, Any]) -> Secret:
    name = env_reference_name(value) if isinstance(value, str) else None
    if name is None:
        # The found value is not echoed: it may be the password itself.
        raise PydanticCustomError(
            "literal_secret",
            "expected {expected}",
            {
                "expected": "a reference ${ENV_VAR} (or use password_file: PATH)",
                "found": "a literal value (not shown)",
            },
        )
    secret = resolve_env(name, context.get("environ"))
    if secret is None:
        raise PydanticCustomError(
            "missing_secret",
            "expected {expected}",
            {
                "expected": f"environment variable {name} to be set and non-empty",
                "found": f"{name} unset or empty",
            },
        )
    return secret


def _secret_from_file(value: Any, context: Mapping[str, Any]) -> Secret:
    if not isinstance(value, str) or not value:
        raise _problem("a path to a file holding the password", value)
    base = context.get("base_dir") or Path.cwd()
    path = Path(value) if Path(value).is_absolute() else Path(base) / value
    try:
        secret = read_secret_file(path)
    except OSError as exc:
        raise PydanticCustomError(
            "missing_secret",
            "expected {expected}",
            {
                "expected": "a readable file holding the password",
                "found": f"{path}: {exc.strerror}",
                "key": "password_file",
            },
        ) from None
    if not secret.reveal():
        raise PydanticCustomError(
            "missing_secret",
            "expected {expected}",
            {
                "expected": "a password on the first line",
                "found": f"{path} is empty",
                "key": "password_file",
            },
        )
    return secret


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise _problem("a list of IP networks like [3.121.59.239/32]", value)
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError as exc:
            raise _problem(
                f"IP networks in CIDR notation like 3.121.59.239/32 ({exc})", item
            ) from None
    return tuple(networks)


class _SendingIdentity(_Model):
    """What a company or subcompany sends as: custom address, SMTP settings, allowlist."""

    name: str = Field(min_length=1)
    custom_address: EmailAddress | None = None
    smtp: SmtpSettings | None = None
    allowlist: tuple[IPNetwork, ...] | None = None

    @field_validator("custom_address", mode="before")
    @classmethod
    def _custom_address(cls, value: Any) -> str:
        return _email(value)

    @field_validator("allowlist", mode="before")
    @classmethod
    def _allowlist(cls, value: Any) -> tuple[IPNetwork, ...]:
        return _networks(value)


class Company(_SendingIdentity):
    """The parent company's identity and sending settings."""

    sender_name: SenderName = "employee"


class Subcompany(_SendingIdentity):
    """A subcompany; what it leaves out falls back to the parent company."""


class Position(_Model):
    """A job position; it belongs to a subcompany, or to the parent when none is named."""

    title: str = Field(min_length=1)
    subcompany: str | None = None


class Employee(_Model):
    """An employee who may send candidate mail under their own name."""

    name: str = Field(min_length=1)
    email: EmailAddress

    @field_validator("email", mode="before")
    @classmethod
    def _valid_email(cls, value: Any) -> str:
        return _email(value)


class Platform(_Model):
    """Which platform profile and which account on it."""

    profile: str
    account: str

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        return _checked(lambda name: fields.profile_name(name, load_profiles()), value)

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _checked(fields.platform_account, value)


class AccountConfig(_Model):
    """One account's whole configuration."""

    platform: Platform
    company: Company
    subcompanies: tuple[Subcompany, ...] = ()
    positions: tuple[Position, ...] = ()
    employees: tuple[Employee, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> AccountConfig:
        names = [s.name for s in self.subcompanies]
        for index, name in enumerate(names):
            if name in names[:index] or name == self.company.name:
                raise PydanticCustomError(
                    "reference",
                    "expected {expected}",
                    {
                        "expected": "subcompany names that are unique and differ from the company",
                        "found": f"{name!r} twice",
                        "loc": ("subcompanies", index, "name"),
                    },
                )
        for index, position in enumerate(self.positions):
            if position.subcompany is not None and position.subcompany not in names:
                if position.subcompany == self.company.name:
                    continue
                known = ", ".join(repr(n) for n in names) or "none defined"
                raise PydanticCustomError(
                    "reference",
                    "expected {expected}",
                    {
                        "expected": f"a subcompany defined under subcompanies ({known})",
                        "found": repr(position.subcompany),
                        "loc": ("positions", index, "subcompany"),
                    },
                )
        return self

    @property
    def profile(self) -> PlatformProfile:
        """The platform profile this account uses."""
        return load_profiles()[self.platform.profile]

    @property
    def inbound_address(self) -> str:
        """The platform's inbound address for this account."""
        return self.profile.inbound_address_for(self.platform.account)

    def identities(self) -> tuple[Company | Subcompany, ...]:
        """The company, then each subcompany: everything that sends under its own name."""
        return (self.company, *self.subcompanies)

    def subcompany(self, name: str) -> Subcompany:
        """The subcompany called ``name``; KeyError when there is none."""
        for sub in self.subcompanies:
            if sub.name == name:
                return sub
        raise KeyError(name)


_EXPECTED_BY_TYPE = {
    "missing": "this key to be present",
    "extra_forbidden": "no such key (unknown keys are errors; check the spelling)",
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "string_too_short": "a non-empty text",
}


# Errors whose "found" text was written for the reader (and never holds a secret's value).
_SECRET_ERRORS = {"literal_secret", "missing_secret", "missing_password", "secret_reference"}
_VERBATIM_FOUND = _SECRET_ERRORS | {"reference"}


def _yaml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line number (1-based) of every key path in a YAML document, for error messages."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def _key_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_found = fields.found_text


def problems_from_validation(
    exc: ValidationError, lines: Mapping[tuple[str | int, ...], int]
) -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per pydantic error, in the file's words."""
    problems = []
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        loc = tuple(ctx.get("loc", error["loc"]))
        if error["type"] in _SECRET_ERRORS:
            # Raised on the password field; the key the reader wrote may be password_file.
            loc = (*loc[:-1], ctx.get("key", "password"))
        expected = ctx.get("expected") or _EXPECTED_BY_TYPE.get(error["type"]) or error["msg"]
        if error["type"] == "literal_error":
            expected = f"one of {ctx.get('expected', '')}"
        if error["type"] == "missing":
            found = "nothing"
        elif error["type"] == "extra_forbidden":
            # An unknown key may be a misspelt password (Password:, passwort:): never echo it.
            found = "an unknown key (its value is not shown)"
        elif "found" in ctx:
            verbatim = error["type"] in _VERBATIM_FOUND
            found = str(ctx["found"]) if verbatim else _found(ctx["found"], loc)
        else:
            found = _found(error.get("input"), loc)
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        problems.append(ConfigProblem(_key_path(loc), str(expected), found, line))
    return problems


def parse_config(
    text: str,
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> AccountConfig:
    """Validate the YAML ``text`` of an account file; ``source`` names it in errors."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            source, [ConfigProblem("(file)", "valid YAML", f"a syntax error: {problem}", line)]
        ) from None
    if not isinstance(raw, dict):
        kind = "an empty file" if raw is None else type(raw).__name__
        raise ConfigError(
            source,
            [ConfigProblem("(top level)", "a mapping with platform, company, ...", kind, 1)],
        )
    try:
        return AccountConfig.model_validate(raw, context={"environ": environ, "base_dir": base_dir})
    except ValidationError as exc:
        problems = problems_from_validation(exc, _yaml_lines(text))
        # Only unresolvable references (variable unset, file unreadable or empty): SecretError.
        unresolved = all(error["type"] == "missing_secret" for error in exc.errors())
        error_type = SecretError if unresolved else ConfigError
        raise error_type(source, problems) from None


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> AccountConfig:
    """Load and validate the account file at ``path`` (``password_file`` is relative to it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            path, [ConfigProblem("(file)", "a readable YAML file", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [ConfigProblem("(file)", "UTF-8 text", str(exc))]) from None
    return parse_config(text, source=str(path), environ=environ, base_dir=path.parent)
