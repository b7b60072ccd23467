"""Fixtures for the sandbox tests: a running mail world per test, on loopback only."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from diagnostics.config import AccountConfig, load_config
from diagnostics.sandbox.scenario import Scenario, load_scenario
from diagnostics.sandbox.world import Sandbox

ACME = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "acme.yaml"


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


def with_changes(scenario: Scenario, **sections: dict[str, Any]) -> Scenario:
    """``scenario`` with fields of its sections replaced (``submission={"allowlist": ...}``)."""
    update = {
        name: getattr(scenario, name).model_copy(update=fields) for name, fields in sections.items()
    }
    return scenario.model_copy(update=update)


def candidate_mail(
    token: str, *, sender: str = "max.mustermann@example.org", to: str = "jobs@acme.example"
) -> bytes:
    """A candidate's application as a mail client writes it, tagged with ``token``."""
    message = email.message.EmailMessage()
    message["From"] = email.utils.formataddr(("Max Mustermann", sender))
    message["To"] = to
    message["Subject"] = f"Bewerbung als Store Manager [{token}]"
    message["Date"] = email.utils.formatdate()
    message["Message-ID"] = f"<{token}@example.org>"
    message.set_content(f"Sehr geehrte Damen und Herren,\n\nanbei meine Bewerbung. {token}\n")
    return message.as_bytes(policy=email.policy.SMTP)
