"""What ``maildiag diagnose`` reads: one file, every file of a folder, every message of an
mbox, or standard input; and which checks confirm a diagnosis against the account."""

from __future__ import annotations

import mailbox
from functools import cache
from pathlib import Path

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Cause


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def read_inputs(name: str, stdin: bytes | None = None) -> list[tuple[str, bytes]]:
    """(label, bytes) of every input ``name`` holds; OSError names what cannot be read."""
    if name == "-":
        return [("-", stdin or b"")]
    path = Path(name)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix != ".yaml"
        )
        return [(str(p), p.read_bytes()) for p in files]
    if _is_mbox(path):
        box = mailbox.mbox(path, create=False)
        try:
            return [
                (f"{path}#{index + 1}", message.as_bytes()) for index, message in enumerate(box)
            ]
        finally:
            box.close()
    return [(str(path), path.read_bytes())]


@cache
def _confirming() -> dict[str, tuple[str, ...]]:
    return {
        cause: tuple(checks) for cause, checks in load_data_file("confirming_checks.yaml").items()
    }


def confirming_checks(cause: Cause) -> tuple[str, ...]:
    """The check ids that confirm ``cause`` against an account's setup (may be none)."""
    return _confirming().get(cause.value, ())
