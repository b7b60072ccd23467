"""Benchmark: 200 concurrent SMTP sessions against the sandbox's company MX.

Run on demand: ``.venv/bin/python benchmarks/sandbox_load.py [--sessions 200] [--rounds 3]``.
Each round measures a baseline first (aiosmtpd accepting and discarding, no storage) and then
the sandbox MX (fsync'ed local copy + queue, then redirection to the platform's Maildir), on
the same machine in the same run, and reports the sandbox's figures as ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

from diagnostics.sandbox.loadgen import LoadResult, deliver_concurrently, null_sink
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox


def _line(label: str, result: LoadResult) -> str:
    return (
        f"{label:10} {result.sessions_per_second:8.1f} sessions/s   "
        f"p50 {result.percentile(0.5) * 1000:7.1f} ms   p99 {result.percentile(0.99) * 1000:7.1f} ms   "
        f"errors {len(result.errors)}"
    )


async def one_round(sessions: int) -> tuple[LoadResult, LoadResult, float]:
    async with null_sink() as port:
        baseline = await deliver_concurrently(
            "127.0.0.1", port, sessions=sessions, recipient="jobs@acme.example"
        )
    environ = {
        "ACME_SMTP_PASSWORD": os.urandom(8).hex(),
        "ACME_RETAIL_SMTP_PASSWORD": os.urandom(8).hex(),
    }
    with tempfile.TemporaryDirectory() as state:
        async with Sandbox(
            load_scenario("healthy"), state_dir=Path(state), environ=environ
        ) as world:
            host, port = world.endpoints.dial("198.51.100.10", 25)
            loop = asyncio.get_running_loop()
            started = loop.time()
            sandbox = await deliver_concurrently(
                host, port, sessions=sessions, recipient="jobs@acme.example"
            )
            await world.drain(120)
            end_to_end = loop.time() - started
            arrived = len(world.platform_mailbox("acme"))
            if arrived != sessions - len(sandbox.errors):
                raise SystemExit(f"lost mail: {arrived} of {sessions} arrived")
    return baseline, sandbox, end_to_end


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios_rate, ratios_p50, ratios_p99 = [], [], []
    for round_number in range(1, args.rounds + 1):
        baseline, sandbox, end_to_end = await one_round(args.sessions)
        print(f"round {round_number}")
        print("  " + _line("baseline", baseline))
        print("  " + _line("sandbox", sandbox))
        print(
            f"  sandbox end to end (accept + redirect into the platform Maildir): {end_to_end:.2f} s, "
            f"{args.sessions / end_to_end:.1f} messages/s"
        )
        ratios_rate.append(sandbox.sessions_per_second / baseline.sessions_per_second)
        ratios_p50.append(sandbox.percentile(0.5) / baseline.percentile(0.5))
        ratios_p99.append(sandbox.percentile(0.99) / baseline.percentile(0.99))
    print(
        f"median over {args.rounds} rounds, sandbox / baseline: "
        f"throughput x{statistics.median(ratios_rate):.2f}, "
        f"p50 x{statistics.median(ratios_p50):.2f}, p99 x{statistics.median(ratios_p99):.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
