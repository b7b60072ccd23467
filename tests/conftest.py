"""Fixtures shared by every test module: a running sandbox mail world per test, loopback only."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from diagnostics.config import AccountConfig, load_config
from diagnostics.sandbox.scenario import Scenario, load_scenario
from diagnostics.sandbox.world import Sandbox

ACME = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "acme.yaml"


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
