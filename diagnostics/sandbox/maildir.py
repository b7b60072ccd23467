"""Maildir mailboxes for the sandbox mail world.

The sandbox SMTP servers store every accepted message here before answering 250. By default a
mailbox is durable: a delivery is only reported done once the message and its directory entry
are on disk (fsync). A mailbox whose folder goes with the process can be opened without
durability: its messages still appear in ``new/`` whole, by the same rename, but are not
flushed to disk. A lazy mailbox makes its folders with its first message and reads as empty
until then, so that a world of many mailboxes makes folders only for those that get mail.
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
from collections.abc import Collection

__all__ = ["Maildir"]

_SUBDIRS = ("tmp", "new", "cur")
# tmp/ made last: a delivery that finds it renames into new/ at once, so new/ must be there
# already when several deliveries make a lazy mailbox at the same time.
_MADE_IN_ORDER = ("new", "cur", "tmp")
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

    def __init__(
        self,
        root: pathlib.Path,
        *,
        create: bool = True,
        lazy: bool = False,
        durable: bool = True,
    ) -> None:
        """Open the Maildir at ``root``, creating it and its subdirectories (0700) if asked.

        With ``create=False`` a missing ``tmp/``, ``new/`` or ``cur/`` raises
        FileNotFoundError. With ``lazy=True`` nothing is looked at or made now: the first
        delivery makes the folders (and makes them again if they were removed meanwhile),
        and until then the mailbox reads as empty. With ``durable=False`` a delivery is not
        fsynced; it is still renamed from ``tmp/`` into ``new/`` whole.
        """
        if lazy and not create:
            raise ValueError("a lazy Maildir creates its folders with its first message")
        self.root = pathlib.Path(root)
        self.lazy = lazy
        self.durable = durable
        if lazy:
            return
        # Opened again and again (each look into a mailbox): one stat when it is complete,
        # where creating each folder again costs a write lock on its parent.
        missing = [sub for sub in _SUBDIRS if not (self.root / sub).is_dir()]
        if missing and not create:
            raise FileNotFoundError(f"not a Maildir, {missing[0]}/ is missing: {self.root}")
        if missing:
            self._make(missing)

    def _make(self, subdirs: Collection[str] = _SUBDIRS) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in _MADE_IN_ORDER:
            if sub in subdirs:
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    def _open_tmp(self, path: pathlib.Path) -> int:
        """Create ``path`` in ``tmp/``; a lazy box makes its folders when they are missing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:
            if not self.lazy:
                raise
        self._make()
        return os.open(path, flags, 0o600)

    def deliver(self, data: bytes) -> str:
        """Store ``data`` byte for byte and return its key once it is in ``new/`` (and, if
        durable, on disk).

        Blocks on the disk; from async code use ``adeliver``. On failure nothing is left in
        the mailbox.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"message data must be bytes, not {type(data).__name__}")
        key = _new_key()
        tmp_path = self.root / "tmp" / key
        new_path = self.root / "new" / key
        fd = self._open_tmp(tmp_path)
        placed = tmp_path
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.rename(tmp_path, new_path)
            placed = new_path
            if self.durable:
                _fsync_dir(new_path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                placed.unlink()
            raise
        return key

    async def adeliver(self, data: bytes) -> str:
        """Run ``deliver`` in a worker thread so the disk does not block the event loop."""
        return await asyncio.to_thread(self.deliver, data)

    def keys(self) -> list[str]:
        """List the keys in ``new/`` and ``cur/`` in delivery order; ``tmp/`` is never listed."""
        names: set[str] = set()
        for sub in _LISTED:
            try:
                listing = os.scandir(self.root / sub)
            except FileNotFoundError:
                if self.lazy:
                    continue  # no mail yet, or the folder was removed: empty
                raise
            with listing as entries:
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
