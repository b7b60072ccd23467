"""What ``maildiag diagnose`` reads: one file, every file of a folder, every message of an
mbox, or standard input; and which checks confirm a diagnosis against the account.

Every input is read the same way, whichever path it came by: data that starts with an mbox
envelope line (``From sender date``) is split into its messages, and a file or stdin holding
one message gives one diagnosis under its own name. A message is split off only at an envelope
line after an empty line and before a header, so that a ``From `` line in a returned message's
body does not cut a bounce in two.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Cause

# "From MAILER-DAEMON Tue May 14 10:02:16 2024": the sender, then an asctime date.
_ENVELOPE = re.compile(
    rb"^From [^\s]+[ \t]+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[ \t][^\r\n]*\d\d:\d\d[^\r\n]*\r?\n"
    rb"(?=[A-Za-z0-9-]+:)",
    re.MULTILINE,
)
_AFTER_EMPTY_LINE = re.compile(rb"\n\r?\n\Z")
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of mbox ``data`` without their envelope lines, ``>From`` unquoted; data
    that does not start with an envelope line is one message."""
    if not data.startswith(b"From "):
        return [data]  # an mbox starts with an envelope line
    starts = [
        m
        for m in _ENVELOPE.finditer(data)
        if m.start() == 0
        or _AFTER_EMPTY_LINE.search(data, max(0, m.start() - 4), m.start()) is not None
    ]
    if not starts or starts[0].start() != 0:
        return [data]
    ends = [m.start() for m in starts[1:]] + [len(data)]
    return [
        _ESCAPED_FROM.sub(rb"\1", data[m.end() : end]) for m, end in zip(starts, ends, strict=True)
    ]


def _messages(label: str, data: bytes) -> list[tuple[str, bytes]]:
    messages = split_mbox(data)
    if len(messages) == 1:
        return [(label, messages[0])]
    return [(f"{label}#{index + 1}", message) for index, message in enumerate(messages)]


def read_inputs(name: str, stdin: bytes | None = None) -> list[tuple[str, bytes]]:
    """(label, bytes) of every input ``name`` holds; OSError names what cannot be read."""
    if name == "-":
        return _messages("-", stdin or b"")
    path = Path(name)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix != ".yaml"
        )
        return [item for p in files for item in _messages(str(p), p.read_bytes())]
    return _messages(str(path), path.read_bytes())


@cache
def _confirming() -> dict[str, tuple[str, ...]]:
    return {
        cause: tuple(checks) for cause, checks in load_data_file("confirming_checks.yaml").items()
    }


def confirming_checks(cause: Cause) -> tuple[str, ...]:
    """The check ids that confirm ``cause`` against an account's setup (may be none)."""
    return _confirming().get(cause.value, ())
