"""Secret values that never show themselves.

A :class:`Secret` holds a password in memory. ``str``, ``repr``, ``format`` and pickling all
give a mask; the only way to the value is :meth:`Secret.reveal`, which the SMTP AUTH step
calls and nothing else should. Secrets are resolved from references, never from literals:
``${ENV_VAR}`` (the environment) or ``password_file: PATH``.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

MASK = "********"

# Very short values would mask ordinary letters everywhere when redacting text.
_MIN_REDACT_LENGTH = 4
_known_lock = threading.Lock()
_known_values: set[str] = set()
# Grows with each value added: lets redact.py rebuild its matcher only when something is new.
_known_version = 0

ENV_REFERENCE = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}$")


class Secret:
    """A secret string; masked everywhere except :meth:`reveal`."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, *, source: str) -> None:
        self._value = value
        self._source = source
        if len(value) >= _MIN_REDACT_LENGTH:
            # SMTP AUTH carries the password in base64, alone (LOGIN) or after NUL bytes
            # (PLAIN); the bare form covers the first, redact.py handles the rest.
            forms = {value, base64.b64encode(value.encode()).decode()}
            global _known_version
            with _known_lock:
                if not forms <= _known_values:
                    _known_values.update(forms)
                    _known_version += 1

    @property
    def source(self) -> str:
        """Where the value came from (``env:NAME`` or ``file:PATH``), safe to show."""
        return self._source

    def reveal(self) -> str:
        """The value itself: for the AUTH step only."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK}, source={self._source!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __copy__(self) -> Secret:
        return self


def env_reference_name(text: str) -> str | None:
    """The variable name of a ``${NAME}`` reference, or None when ``text`` is not one."""
    match = ENV_REFERENCE.match(text.strip())
    return match.group("name") if match else None


def resolve_env(name: str, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The secret held by environment variable ``name``; None when unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if not value:
        return None
    return Secret(value, source=f"env:{name}")


def read_secret_file(path: Path) -> Secret:
    """The first line of ``path`` as a secret (trailing newline dropped); OSError passes up."""
    from diagnostics.limits import InputTooLarge, limit, variable

    most = limit("password")
    with path.open("rb") as handle:
        # The first line is the password: read no further than the limit (/dev/zero, a log).
        data = handle.read(most + 1)
    first = data.split(b"\n", 1)[0]
    if len(first) > most:
        raise InputTooLarge(
            f"the first line of {path} is longer than {most:,} bytes, the limit for a password "
            f"(set {variable('password')} to raise it)"
        )
    text = first.decode("utf-8", "replace").rstrip("\r")
    return Secret(text, source=f"file:{path}")


MAX_KEY_FILE = 64 * 1024


def read_private_key(path: Path) -> Secret:
    """The PEM RSA private key (unencrypted) in ``path``, as a secret. OSError
    passes up; ValueError says what was expected (never what was found)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise ValueError(f"a PEM file of at most {MAX_KEY_FILE} bytes")
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError("an unencrypted PEM RSA private key (as opendkim-genkey writes)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("an RSA private key (rsa-sha256, what every DKIM verifier checks)")
    return Secret(data.decode("ascii", "replace"), source=f"file:{path}")


def known_values() -> list[str]:
    """Every secret value (and base64 form) created in this process, longest first."""
    with _known_lock:
        return sorted(_known_values, key=len, reverse=True)


def known_version() -> int:
    """A number that changes whenever a secret value is added (cheap: nothing is copied)."""
    return _known_version


def known_snapshot() -> tuple[int, frozenset[str]]:
    """(version, values): the values of :func:`known_values`, and a number that changes
    whenever one is added."""
    with _known_lock:
        return _known_version, frozenset(_known_values)
