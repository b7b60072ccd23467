"""Benchmark: the sandbox round trip, company MX -> redirection -> platform inbound.

Run on demand: ``.venv/bin/python benchmarks/roundtrip.py [--messages 200] [--rounds 3]``.
Each round first measures a bare aiosmtpd server that only stores each message in a Maildir
(the baseline: SMTP plus one durable write), then the sandbox: the same messages to the
company MX, which stores a local copy and a queue entry durably, relays them to the platform's
inbound MX, which stores them durably again. Messages per second are counted until the last
message is in the platform's Maildir. Also the latency of one audit's round trip
(redirect.roundtrip on the healthy scenario). Figures are printed as ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from diagnostics.checks.redirect import probe_roundtrip
from diagnostics.config import load_config
from diagnostics.sandbox.loadgen import deliver_concurrently, maildir_sink
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[1]
ENVIRON = {
    "ACME_SMTP_PASSWORD": "bench-password-1",
    "ACME_RETAIL_SMTP_PASSWORD": "bench-password-2",
}


async def baseline(messages: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        box = Maildir(Path(folder) / "sink")
        async with maildir_sink(box) as port:
            started = time.perf_counter()
            result = await deliver_concurrently(
                "127.0.0.1", port, sessions=messages, recipient="jobs@acme.example"
            )
            elapsed = time.perf_counter() - started
        if result.errors or len(box) != messages:
            raise SystemExit(
                f"baseline lost mail: {len(box)} of {messages}, errors {result.errors[:3]}"
            )
    return messages / elapsed


async def sandbox_rate(messages: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with Sandbox(
            load_scenario("healthy"), state_dir=Path(folder), environ=ENVIRON
        ) as world:
            host, port = world.endpoints.dial("198.51.100.10", 25)
            started = time.perf_counter()
            result = await deliver_concurrently(
                host, port, sessions=messages, recipient="jobs@acme.example"
            )
            await world.drain(120)
            elapsed = time.perf_counter() - started
            arrived = len(world.platform_mailbox("acme"))
        if result.errors or arrived != messages:
            raise SystemExit(
                f"sandbox lost mail: {arrived} of {messages}, errors {result.errors[:3]}"
            )
    return messages / elapsed


async def audit_roundtrip() -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with Sandbox(
            load_scenario("healthy"), state_dir=Path(folder), environ=ENVIRON
        ) as world:
            config = load_config(ROOT / "fixtures" / "configs" / "acme.yaml", environ=world.environ)
            started = time.perf_counter()
            trip = await probe_roundtrip(world.context(config), "jobs@acme.example")
            elapsed = time.perf_counter() - started
            if trip.arrived is None:
                raise SystemExit("the round trip's message did not arrive")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios, trips, bares, worlds = [], [], [], []
    for number in range(1, args.rounds + 1):
        bare = await baseline(args.messages)
        world = await sandbox_rate(args.messages)
        trip = await audit_roundtrip()
        ratios.append(world / bare)
        trips.append(trip)
        bares.append(bare)
        worlds.append(world)
        print(
            f"round {number}: bare Maildir server {bare:7.1f} msg/s, sandbox round trip {world:7.1f} msg/s "
            f"({world / bare:.0%} of bare); one audit round trip {trip * 1000:.0f} ms"
        )
    print(
        f"median over {args.rounds} rounds: sandbox / bare = {statistics.median(ratios):.0%}; "
        f"audit round trip {statistics.median(trips) * 1000:.0f} ms"
    )
    print(
        f"median msg/s: bare Maildir server {statistics.median(bares):.1f}, "
        f"sandbox round trip {statistics.median(worlds):.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
