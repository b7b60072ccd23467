"""Many audits in one process: each account's audit runs in this process's event loop, beside
the others, with a bound on how many run at once and on how many at once talk to the same SMTP
host; each account's report folder is written as soon as its audit ends.

:func:`audit_accounts` is what one process does (the command line starts one per core, a Dask
worker runs it too); :func:`worker_main` is the entry of such a process, which takes accounts
from its parent as it has room for them and sends each finished run back through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from diagnostics.batch.model import BatchRun, Item
from diagnostics.batch.plan import fingerprint
from diagnostics.redact import redact

# Audits at once in one process, and at once per SMTP host (the batch hands the accounts of
# one host to one process, so that this bounds the whole batch's audits against a server).
# An audit mostly waits (on servers, on mail to arrive), so a process keeps many going; the
# loop's lag (below) stops it from starting more than its core can serve. One audit per host:
# an audit of an account with three subcompanies holds up to 15 connections at once to its
# SMTP host (measured in the sandbox), and Exchange's receive connectors take 20 at once from
# one source by default (MaxInboundConnectionPerSource), Postfix 50
# (smtpd_client_connection_count_limit); a second audit beside it would have the server
# refuse connections, which the report would blame on the company.
DEFAULT_JOBS = 16
DEFAULT_PER_HOST = 1


# How late the event loop may run before no further audit starts (seconds), and how often it
# is measured.
MAX_LAG_S = 0.05
_LAG_TICK_S = 0.02


class _LoopLag:
    """How late this event loop wakes a sleeper, smoothed: how busy it is."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(_LAG_TICK_S)
            late = max(0.0, loop.time() - started - _LAG_TICK_S)
            self.seconds = 0.7 * self.seconds + 0.3 * late


def smtp_hosts(config: Path) -> list[str]:
    """The SMTP hosts the account file names (none when unreadable: the audit reports why)."""
    from diagnostics.config import raw_smtp_settings

    hosts = {
        host.lower().rstrip(".")
        for smtp in raw_smtp_settings(config)
        if isinstance(host := smtp.get("host"), str) and host
    }
    return sorted(hosts)


async def audit_one(config: Path, directory: Path, *, sandbox: str, ran_on: str) -> BatchRun:
    """Audit ``config`` (in the world ``sandbox`` plays for it, when given) and write its report
    folder; the run, or why it could not run."""
    from diagnostics.audit import run_audit, write_report
    from diagnostics.errors import DiagnosticsError
    from diagnostics.sandbox.account import sandbox_for

    stamp = fingerprint(config)
    try:
        if sandbox:
            async with sandbox_for(sandbox, config) as world:
                result = await run_audit(config, sandbox=world)
        else:
            result = await run_audit(config)
        # Four files, each written and synced to disk: in a thread, so that the other audits'
        # servers in this loop are not kept waiting on the disk.
        await asyncio.to_thread(write_report, result.report, directory)
    except (DiagnosticsError, OSError, ValueError) as exc:
        # What the account's file or world says is wrong (an unknown scenario, say).
        return BatchRun(
            config, directory, error=redact(f"{type(exc).__name__}: {exc}"[:2000]),
            ran_on=ran_on, fingerprint=stamp, scenario=sandbox,
        )  # fmt: skip
    return BatchRun.from_report(
        config,
        directory,
        result.report.to_dict(),
        ran_on=ran_on,
        fingerprint=stamp,
        scenario=sandbox,
    )


async def audit_accounts(
    items: Sequence[Item] | AsyncIterable[Item],
    *,
    on_done: Callable[[BatchRun], None],
    jobs: int = DEFAULT_JOBS,
    per_host: int = DEFAULT_PER_HOST,
    ran_on: str = "",
) -> None:
    """Audit each (account file, report folder, sandbox scenario or "" for live) of ``items``
    (a list, or items as they are handed in), ``jobs`` at a time and at most ``per_host`` at a
    time per SMTP host; ``on_done`` hears of each run as it ends."""
    running = asyncio.Semaphore(max(1, jobs))
    per_host_limits: dict[str, asyncio.Semaphore] = {}
    who = ran_on or f"process {os.getpid()}"
    lag = _LoopLag()
    watcher = asyncio.create_task(lag.watch())
    active = 0

    async def one(config: Path, directory: Path, sandbox: str) -> None:
        nonlocal active
        async with contextlib.AsyncExitStack() as held:
            # The hosts first, in name order (so that two audits sharing two hosts cannot wait
            # on each other), then a place among the ``jobs``: an audit waiting for its host
            # keeps no place from the accounts of other hosts.
            for host in smtp_hosts(config):
                limit = per_host_limits.setdefault(host, asyncio.Semaphore(max(1, per_host)))
                await held.enter_async_context(limit)
            await held.enter_async_context(running)
            # A busy loop answers every audit's servers late, and a round trip measured in a
            # late loop reads as a slow company server: start another audit only while the
            # loop keeps time (and always when none runs).
            while active and lag.seconds > MAX_LAG_S:  # noqa: ASYNC110 - a measure, no event
                await asyncio.sleep(_LAG_TICK_S)
            active += 1
            held.callback(_done_one)
            try:
                run = await audit_one(config, directory, sandbox=sandbox, ran_on=who)
            except Exception as exc:  # a bug in one audit must not end the others'
                message = f"internal error (a bug in maildiag): {type(exc).__name__}: {exc}"
                run = BatchRun(
                    config, directory, error=redact(message[:2000]), ran_on=who, scenario=sandbox
                )
        on_done(run)

    def _done_one() -> None:
        nonlocal active
        active -= 1

    started: set[asyncio.Task[None]] = set()
    try:
        if isinstance(items, AsyncIterable):
            async for item in items:
                task = asyncio.create_task(one(*item))
                started.add(task)
                task.add_done_callback(started.discard)
        else:
            started.update(asyncio.create_task(one(*item)) for item in items)
        await asyncio.gather(*started)
    finally:
        watcher.cancel()
        for task in started:
            task.cancel()


def worker_main(inbox: Any, results: Any, options: dict[str, Any]) -> None:
    """A child process's work: audit each (account file, report folder, scenario) its parent
    sends on the pipe ``inbox`` until ``None`` comes, and send each run on the pipe
    ``results`` as a dict.

    The parent hands out a few accounts more than ``jobs`` and one more as each ends, so
    that a process with slow accounts does not hold the batch's others while its siblings
    wait. Each process has pipes of its own: one that is killed mid-write can spoil only its
    own, never stall its siblings'. It leaves Ctrl-C to its parent, which stops it once it
    has recorded what finished.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(inbox, results, options))


async def _serve(inbox: Any, results: Any, options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    handed: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue()

    def receive() -> None:
        # The pipe only blocks: read in a thread, handed to the loop. A parent gone is the end.
        item: tuple[str, str, str] | None = None
        try:
            while (item := inbox.recv()) is not None:
                loop.call_soon_threadsafe(handed.put_nowait, item)
        except (EOFError, OSError):
            pass
        loop.call_soon_threadsafe(handed.put_nowait, None)

    threading.Thread(target=receive, name="batch-inbox", daemon=True).start()

    async def items() -> AsyncIterator[Item]:
        while (item := await handed.get()) is not None:
            config, directory, scenario = item
            yield Path(config), Path(directory), scenario

    await audit_accounts(
        items(),
        jobs=options["jobs"],
        per_host=options["per_host"],
        on_done=lambda run: results.send(run.to_dict()),
    )
