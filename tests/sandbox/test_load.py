"""A bounded load test on loopback: correctness under concurrency, never a timing assertion.

200 SMTP sessions at once against the company MX, each delivering one message to the custom
address; afterwards every message is in the platform's Maildir exactly once, and in the
company's local copy exactly once. Figures are measured by benchmarks/sandbox_load.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest

from diagnostics.sandbox.loadgen import deliver_concurrently
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.world import Sandbox

SESSIONS = 200
TOKEN = re.compile(rb"Message-ID: <(load-\d{5})@load\.example>")


def tokens_in(box: Maildir) -> Counter[str]:
    found: Counter[str] = Counter()
    for key in box.keys():
        match = TOKEN.search(box.read(key))
        assert match is not None, f"{key} carries no load token"
        found[match.group(1).decode()] += 1
    return found


@pytest.mark.load
async def test_200_concurrent_sessions_lose_and_duplicate_nothing(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    async with make_world(healthy) as world:
        host, port = world.endpoints.dial(healthy.company_mx.address, 25)
        result = await deliver_concurrently(
            host, port, sessions=SESSIONS, recipient="jobs@acme.example", timeout=90
        )
        assert result.errors == ()
        assert len(result.session_seconds) == SESSIONS
        await world.drain(90)
        expected = Counter({token: 1 for token in result.tokens})
        assert tokens_in(world.platform_mailbox("acme", "unassigned")) == expected
        assert tokens_in(world.company_mailbox("jobs@acme.example")) == expected
        assert len(world.postmaster) == 0
