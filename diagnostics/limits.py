"""Size limits on what maildiag reads, and how a user raises one.

Every input is written by someone else; each kind is read up to its limit and no further.
A limit is raised with an environment variable (``MAILDIAG_MAX_CONFIG_BYTES=4000000``), which
the error message names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

DEFAULTS: dict[str, int] = {
    # An account file with every position and employee of a large group stays far below.
    "config": 1024 * 1024,
    # A password, or one line of a password file.
    "password": 64 * 1024,
    # One message (.eml) to analyse: providers refuse mail above 25 to 150 MB.
    "message": 64 * 1024 * 1024,
}


class InputTooLarge(ValueError):
    """An input is larger than its limit; the message names the limit and the variable."""


def variable(kind: str) -> str:
    return f"MAILDIAG_MAX_{kind.upper()}_BYTES"


def limit(kind: str) -> int:
    """The limit for ``kind``: the environment's, when set to a positive number, else the
    default."""
    value = os.environ.get(variable(kind), "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULTS[kind]


def read_stream_bounded(stream: BinaryIO, name: str, kind: str) -> bytes:
    """What ``stream`` (standard input) holds, at most the limit of ``kind``."""
    most = limit(kind)
    data = stream.read(most + 1)
    if len(data) > most:
        raise InputTooLarge(
            f"{name} is larger than {most:,} bytes, the limit for a {kind} "
            f"(set {variable(kind)} to raise it)"
        )
    return data


def read_bounded(path: Path, kind: str) -> bytes:
    """The bytes of ``path``, at most the limit of ``kind``; InputTooLarge beyond it (OSError
    passes up). Reads no further than one byte past the limit, so /dev/zero is harmless."""
    most = limit(kind)
    with path.open("rb") as handle:
        data = handle.read(most + 1)
    if len(data) > most:
        raise InputTooLarge(
            f"{path} is larger than {most:,} bytes, the limit for a {kind} file "
            f"(set {variable(kind)} to raise it)"
        )
    return data
