"""Fixtures shared by every test module: a running sandbox mail world per test, loopback only."""

from __future__ import annotations

import io
import ipaddress
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from diagnostics.config import AccountConfig, load_config
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox

ACME = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "acme.yaml"


def _loopback_only(address: Any) -> None:
    if not isinstance(address, tuple):
        return  # a Unix socket
    host = str(address[0])
    try:
        loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise AssertionError(f"a test tried to reach {host}: tests talk to loopback only")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every socket a test opens may only connect or send to a loopback address."""
    connect, connect_ex, sendto = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.socket.sendto,
    )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _loopback_only(address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _loopback_only(address)
        return connect_ex(self, address)

    def guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _loopback_only(args[-1])
        return sendto(self, data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", guarded_sendto)
    yield


@pytest.fixture
def environ() -> dict[str, str]:
    """Fresh random passwords for the account file's references, as IT would export them."""
    return {
        "ACME_SMTP_PASSWORD": "pw-" + secrets.token_urlsafe(16),
        "ACME_RETAIL_SMTP_PASSWORD": "pw-" + secrets.token_urlsafe(16),
    }


@pytest.fixture
def healthy() -> Scenario:
    return load_scenario("healthy")


@pytest.fixture
def make_world(
    tmp_path: Path, environ: dict[str, str]
) -> Callable[..., AbstractAsyncContextManager[Sandbox]]:
    """Start a sandbox of a scenario on a state folder (default: one per test)."""

    def make(scenario: Scenario, *, state_dir: Path | None = None) -> Sandbox:
        return Sandbox(scenario, state_dir=state_dir or tmp_path / "state", environ=environ)

    return make


@pytest.fixture
async def world(make_world: Callable[..., Sandbox], healthy: Scenario) -> AsyncIterator[Sandbox]:
    async with make_world(healthy) as running:
        yield running


@pytest.fixture
def acme(world: Sandbox) -> AccountConfig:
    return load_config(ACME, environ=world.environ)


def forms_of(password: str) -> list[str]:
    """The password as it could leak: plain, base64 (AUTH LOGIN), and in AUTH PLAIN blobs."""
    import base64

    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0jobs@acme.example\0{password}".encode()).decode(),
    ]


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, writing "LEVEL message" through the redacting filter into the
    stream beside it."""
    from diagnostics.redact import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"maildiag.test.{secrets.token_hex(4)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    handler.close()
