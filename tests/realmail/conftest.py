"""Fixtures: a real Postfix and Dovecot world on loopback, and IMAP servers that never answer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.realmail.servers import RealMail, SilentServer, start_realmail

_MISSING = [name for name in ("postfix", "postconf", "dovecot") if shutil.which(name) is None]


def _require_servers() -> None:
    if _MISSING:
        pytest.fail(f"Debian packages postfix, dovecot-imapd, dovecot-lmtpd needed: {_MISSING}")
    if os.geteuid() != 0:
        pytest.fail("Postfix and Dovecot bind port 25 and 993 and switch users: run as root")


@pytest.fixture
def realmail_factory() -> Iterator[Callable[..., RealMail]]:
    """Start a real mail world with the knobs of ``start_realmail`` (one at a time).

    The ports are fixed (127.0.25.1:25 and friends), so starting a second world in one test
    stops the first. Every world is stopped and its folder removed at teardown, also when
    the test failed.
    """
    _require_servers()
    worlds: list[RealMail] = []

    def start(**knobs: Any) -> RealMail:
        for world in worlds:
            world.stop()
        world = start_realmail(**knobs)
        worlds.append(world)
        return world

    try:
        yield start
    finally:
        errors = []
        for world in worlds:
            try:
                world.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def realmail(realmail_factory: Callable[..., RealMail]) -> RealMail:
    """The default world: jobs@company.test kept locally and redirected to the platform."""
    return realmail_factory()


@pytest.fixture
def silent_imap() -> Iterator[SilentServer]:
    """A loopback TCP server that accepts connections and never sends a byte."""
    server = SilentServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mute_imap() -> Iterator[SilentServer]:
    """A loopback IMAP server that greets (``* OK``) and then never answers a command."""
    server = SilentServer(greeting=b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n").start()
    try:
        yield server
    finally:
        server.stop()
