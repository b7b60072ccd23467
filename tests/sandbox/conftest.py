"""Helpers for the sandbox tests; the fixtures live in tests/conftest.py (re-exported here for
modules that import them by name)."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
from typing import Any

from diagnostics.sandbox.scenario import Scenario
from tests.conftest import ACME, acme, environ, healthy, make_world, world

__all__ = [
    "ACME",
    "acme",
    "candidate_mail",
    "environ",
    "healthy",
    "make_world",
    "with_changes",
    "world",
]


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
