"""Durable Maildir mailboxes for the sandbox mail world.

The sandbox SMTP servers store every accepted message here before answering 250, so a
delivery is only reported done once the message and its directory entry are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import os
import pathlib
import re
import socket
import stat
import threading
import time
import uuid

__all__ = ["Maildir"]

_SUBDIRS = ("tmp", "new", "cur")
_LISTED = ("new", "cur")

# Key layout: <sec>.M<usec>P<pid>Q<seq>R<random>.<host>, the usual Maildir shape; ordering
# only relies on the leading time and sequence.
_KEY_ORDER = re.compile(r"(\d+)(?:\.M(\d+)P\d+Q(\d+))?")

_name_lock = threading.Lock()
_last_usec = 0
_sequence = 0


def _hostname() -> str:
    name = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())
    return name or "localhost"


_HOST = _hostname()


def _new_key() -> str:
    global _last_usec, _sequence
    with _name_lock:
        # Clamped so that keys sort in allocation order even if the wall clock steps back.
        _last_usec = max(time.time_ns() // 1000, _last_usec)
        _sequence += 1
        usec, seq = _last_usec, _sequence
    seconds, micros = divmod(usec, 1_000_000)
    token = uuid.uuid4().hex[:16]
    return f"{seconds}.M{micros:06d}P{os.getpid()}Q{seq}R{token}.{_HOST}"


def _order(key: str) -> tuple[int, int, int, str]:
    match = _KEY_ORDER.match(key)
    if match is None:
        return (0, 0, 0, key)
    seconds, micros, seq = match.groups()
    return (int(seconds), int(micros or 0), int(seq or 0), key)


def _check_key(key: str) -> None:
    if (
        not isinstance(key, str)
        or not key
        or key.startswith(".")
        or "/" in key
        or "\0" in key
        or (os.altsep is not None and os.altsep in key)
    ):
        raise ValueError(f"invalid Maildir key: {key!r}")


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Maildir:
    """One Maildir mailbox: messages are files in ``new/`` or ``cur/``, keyed by file name.

    Safe to use from several threads and from several objects on the same root; keys are
    unique per process and carry a random part against clashes between processes.
    """

    def __init__(self, root: pathlib.Path, *, create: bool = True) -> None:
        """Open the Maildir at ``root``, creating it and its subdirectories (0700) if asked.

        With ``create=False`` a missing ``tmp/``, ``new/`` or ``cur/`` raises
        FileNotFoundError.
        """
        self.root = pathlib.Path(root)
        # Opened again and again (each look into a mailbox): one stat when it is complete,
        # where creating each folder again costs a write lock on its parent.
        missing = [sub for sub in _SUBDIRS if not (self.root / sub).is_dir()]
        if missing and not create:
            raise FileNotFoundError(f"not a Maildir, {missing[0]}/ is missing: {self.root}")
        if missing:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for sub in missing:
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    def deliver(self, data: bytes) -> str:
        """Store ``data`` byte for byte and return its key once it is durable on disk.

        Blocks on fsync; from async code use ``adeliver``. On failure nothing is left in
        the mailbox.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"message data must be bytes, not {type(data).__name__}")
        key = _new_key()
        tmp_path = self.root / "tmp" / key
        new_path = self.root / "new" / key
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        placed = tmp_path
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp_path, new_path)
            placed = new_path
            _fsync_dir(new_path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                placed.unlink()
            raise
        return key

    async def adeliver(self, data: bytes) -> str:
        """Run ``deliver`` in a worker thread so the fsync does not block the event loop."""
        return await asyncio.to_thread(self.deliver, data)

    def keys(self) -> list[str]:
        """List the keys in ``new/`` and ``cur/`` in delivery order; ``tmp/`` is never listed."""
        names: set[str] = set()
        for sub in _LISTED:
            with os.scandir(self.root / sub) as entries:
                names.update(
                    entry.name
                    for entry in entries
                    if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)
                )
        return sorted(names, key=_order)

    def read(self, key: str) -> bytes:
        """Return the stored bytes of ``key``; KeyError if absent, ValueError if unsafe."""
        _check_key(key)
        for sub in _LISTED:
            try:
                return (self.root / sub / key).read_bytes()
            except FileNotFoundError:
                continue
        raise KeyError(key)

    def message(self, key: str) -> email.message.EmailMessage:
        """Parse the message stored under ``key`` with ``email.policy.default``."""
        return email.message_from_bytes(self.read(key), policy=email.policy.default)

    def messages(self) -> list[email.message.EmailMessage]:
        """Parse every message, in delivery order."""
        return [self.message(key) for key in self.keys()]

    def remove(self, key: str) -> None:
        """Delete ``key``; KeyError if absent, ValueError if unsafe.

        Not fsynced: after a crash a removed message may come back (at-least-once).
        """
        _check_key(key)
        for sub in _LISTED:
            try:
                (self.root / sub / key).unlink()
            except FileNotFoundError:
                continue
            return
        raise KeyError(key)

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            _check_key(key)
        except ValueError:
            return False
        return any(_is_regular_file(self.root / sub / key) for sub in _LISTED)

    def __repr__(self) -> str:
        return f"Maildir({str(self.root)!r})"


def _is_regular_file(path: pathlib.Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False
