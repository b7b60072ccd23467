"""The relay's connection cache, MX cache and queue bookkeeping: what they save a busy queue,
and that none of them loses, duplicates or strands a message."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from diagnostics.sandbox import relay as relay_module
from diagnostics.sandbox.platform import PlatformInboundHandler
from diagnostics.sandbox.relay import QueuedMessage, Relay
from diagnostics.sandbox.world import Sandbox
from tests.sandbox.conftest import candidate_mail

INBOUND = "acme-jobs@m.personio.de"
NEXT_HOP = "inbound.m.personio.de"


def relay_of(world: Sandbox) -> Relay:
    assert world._relay is not None
    return world._relay


async def redirect(world: Sandbox, token: str) -> None:
    """A candidate's mail to jobs@, which the company MX redirects to the platform."""
    await world.platform_client.send_direct(
        mail_from="max.mustermann@example.org",
        rcpt_tos=["jobs@acme.example"],
        data=candidate_mail(token),
    )


def sessions_opened(relay: Relay, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next hops the relay opens a session with from now on."""
    opened: list[str] = []
    original = relay._open

    async def counting(sock: object, name: str) -> relay_module._Connection:
        opened.append(name)
        return await original(sock, name)  # type: ignore[arg-type]

    monkeypatch.setattr(relay, "_open", counting)
    return opened


def mx_queries(world: Sandbox) -> int:
    return sum(
        1 for name, rtype, _ in world.dns.queries if (name, rtype) == ("m.personio.de.", "MX")
    )


async def test_messages_to_one_next_hop_share_a_session_and_an_mx_lookup(
    world: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = relay_of(world)
    opened = sessions_opened(relay, monkeypatch)
    for number in range(3):
        await redirect(world, f"reuse-{number}")
        await world.drain(5)
    assert opened == [NEXT_HOP]
    assert mx_queries(world) == 1
    assert len(world.platform_mailbox("acme")) == 3
    assert relay.queue.pending() == []


async def test_deliveries_at_the_same_time_share_one_lookup(world: Sandbox) -> None:
    relay = relay_of(world)
    answers = await asyncio.gather(*(relay._mx_addresses("m.personio.de") for _ in range(5)))
    assert answers == [[(NEXT_HOP, "203.0.113.10")]] * 5
    assert mx_queries(world) == 1


async def test_an_expired_mx_answer_is_looked_up_again(world: Sandbox) -> None:
    relay = relay_of(world)
    await relay._mx_addresses("m.personio.de")
    _, hosts = relay._mx_cache["m.personio.de"]
    relay._mx_cache["m.personio.de"] = (0.0, hosts)  # its TTL has run out
    await relay._mx_addresses("m.personio.de")
    assert mx_queries(world) == 2
    assert relay._mx_cache["m.personio.de"][0] > 0.0


async def test_a_cached_session_the_next_hop_has_closed_is_replaced(
    world: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = relay_of(world)
    await redirect(world, "before")
    await world.drain(5)
    opened = sessions_opened(relay, monkeypatch)
    hosts = await relay._mx_addresses("m.personio.de")
    # The platform's server drops its end (as its idle timeout would); the relay sends the
    # next message before it has noticed.
    for session in list(world._sessions):
        platform = isinstance(session.event_handler, PlatformInboundHandler)
        if platform and isinstance(session.transport, asyncio.Transport):
            session.transport.abort()
    entry = QueuedMessage(
        "after", "max.mustermann@example.org", (INBOUND,), candidate_mail("after")
    )
    assert await relay._send(hosts, entry, (INBOUND,)) == {}
    assert opened == [NEXT_HOP]
    assert len(world.platform_mailbox("acme")) == 2


async def test_idle_sessions_are_closed(world: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "_IDLE_S", 0.05)
    relay = relay_of(world)
    opened = sessions_opened(relay, monkeypatch)
    swept = asyncio.Event()
    sweep = relay._close_idle_connections

    def sweeping() -> float:
        wake = sweep()
        if not relay._connections:
            swept.set()
        return wake

    monkeypatch.setattr(relay, "_close_idle_connections", sweeping)
    await redirect(world, "idle")
    await world.drain(5)
    assert opened == [NEXT_HOP]
    # The next sweep after the delivery (every 0.05 s here) leaves no session: waited for as
    # it happens, bounded, not guessed from how long a loaded machine takes.
    swept.clear()
    await asyncio.wait_for(swept.wait(), 5)
    await asyncio.gather(*relay._tasks)  # the QUITs
    assert not relay._connections
    assert len(world.platform_mailbox("acme")) == 1


async def test_an_entry_the_relay_was_not_told_about_is_delivered(world: Sandbox) -> None:
    """As one whose put was cancelled after the write, or one another process queued."""
    queue = relay_of(world).queue
    envelope = {"from": "max.mustermann@example.org", "to": [INBOUND], "not_before": 0}
    queue.maildir.deliver(
        b"X-Sandbox-Envelope: " + json.dumps(envelope).encode() + b"\r\n" + candidate_mail("disk")
    )
    await world.drain(5)
    box = world.platform_mailbox("acme")
    assert len(box) == 1
    assert b"<disk@example.org>" in box.read(box.keys()[0])
    assert queue.pending() == []


async def test_a_platform_folder_removed_while_running_is_created_again(world: Sandbox) -> None:
    await redirect(world, "kept")
    await world.drain(5)
    shutil.rmtree(world.platform_mailbox("acme").root)
    await redirect(world, "again")
    await world.drain(5)
    box = world.platform_mailbox("acme")
    assert len(box) == 1
    assert b"<again@example.org>" in box.read(box.keys()[0])
