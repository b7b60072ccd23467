"""``maildiag batch --scheduler ADDRESS``: the audits on a Dask distributed cluster, one task
per account, each writing its report folder where it runs.

The report folders must be reachable by every worker at the same path as here (workers on
this machine, or a shared file system): the worker writes the folder, this process reads
nothing from the worker but the run's summary.

A task lost with its worker is run again by Dask on another worker. Each start of a task is
noted in ``.starts`` in its report folder (one line per start, naming the worker) before the
audit begins, so a run knows how many times it was started, and the index says so.

A worker may own egress IPs of the platform: it sends from them, and says so with a resource
``egress-<IP>`` (``dask worker ADDRESS --resources "egress-3.121.59.239=1"``). The greeting
probes of ``allowlist.reachability`` from an owned egress IP are tasks of their own that
only its owner runs (:class:`DaskProber`); those of an egress IP no worker owns run in the
audit, as in a local batch. In the sandbox a worker plays the egress IP by the loopback
source address the world gives it, as a local run does.

On a worker, an audit task leaves the worker's thread pool at once (``secede``): it waits on
the network, and the greeting probes it submits must find a free thread even on a worker
with one. At most ``jobs`` audits run at once in one worker process, and at most
``per_host`` of them at once talk to the same SMTP host.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from diagnostics.batch.local import audit_accounts, smtp_hosts
from diagnostics.batch.model import BatchRun, Item
from diagnostics.context import GREETING_PROBER
from diagnostics.redact import redact
from diagnostics.smtpgreeting import GreetingProbe, ProbeResult, run_greeting_probe

#: The file in a report folder that notes each start of the account's audit task.
STARTS = ".starts"
#: The prefix of a Dask worker resource naming an egress IP the worker sends from.
EGRESS_RESOURCE = "egress-"

# One worker process's bounds over all the audit tasks it runs (each in its own thread).
_bounds_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}
_per_host: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _bound(table: dict[Any, threading.BoundedSemaphore], key: Any, size: int) -> Any:
    with _bounds_lock:
        return table.setdefault(key, threading.BoundedSemaphore(max(1, size)))


def worker_egress_ips(resources: dict[str, float]) -> list[str]:
    """The egress IPs a worker's resources say it sends from."""
    return sorted(
        name.removeprefix(EGRESS_RESOURCE) for name in resources if name.startswith(EGRESS_RESOURCE)
    )


def _who(worker: Any) -> str:
    """``ran_on`` for a Dask worker: its address, and the egress IPs it owns."""
    owned = worker_egress_ips(dict(worker.state.total_resources))
    return f"dask worker {worker.address}" + (f" (egress {', '.join(owned)})" if owned else "")


def note_start(directory: Path, who: str) -> int:
    """Note a start of the account's task in its report folder; how many starts it has had."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STARTS
    with path.open("a", encoding="utf-8") as handle:
        handle.write(who + "\n")
    return len(starts(directory))


def starts(directory: Path) -> list[str]:
    """The workers that started the account's task, in order (none when it never started)."""
    try:
        return (directory / STARTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def greeting_task(probe: GreetingProbe) -> ProbeResult:
    """A Dask task: make the greeting probe ``probe`` from this worker, which owns its egress
    IP; its result, naming the worker."""
    from distributed import get_worker

    who = _who(get_worker())
    return replace(asyncio.run(run_greeting_probe(probe)), probed_by=who)


class DaskProber:
    """Sends each greeting probe of an egress IP that a worker owns to that worker (as a
    task restricted to its ``egress-<IP>`` resource); a probe of any other egress IP is made
    where the audit runs."""

    def __init__(self, client: Any) -> None:
        self.client = client
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        self.owned = {ip for w in workers for ip in worker_egress_ips(w.get("resources", {}))}

    async def __call__(self, probe: GreetingProbe) -> ProbeResult | None:
        if probe.egress_ip not in self.owned:
            return None
        return await asyncio.to_thread(self._remote, probe)

    def _remote(self, probe: GreetingProbe) -> ProbeResult | None:
        from distributed import TimeoutError as DaskTimeout

        timeouts = probe.timeouts
        # The probe's own bounds, and time for the owner to be free (or to come back).
        wait = timeouts.connect * 2 + timeouts.banner + timeouts.command + 30
        future = self.client.submit(
            greeting_task, probe, resources={f"{EGRESS_RESOURCE}{probe.egress_ip}": 1},
            pure=False, priority=10,
        )  # fmt: skip
        try:
            result: ProbeResult = future.result(timeout=wait)
        except (DaskTimeout, TimeoutError, Exception):
            # The owner could not make it (gone for good, or too late): made here instead,
            # an answer if not from the owner.
            future.cancel()
            return None
        return result


def audit_task(
    config: str, directory: str, scenario: str, options: dict[str, int]
) -> dict[str, Any]:
    """A Dask task: audit one account on this worker and write its report folder; the run,
    as a dict."""
    from distributed import get_client, get_worker, secede

    worker = get_worker()
    who = _who(worker)
    attempts = note_start(Path(directory), who)
    prober = DaskProber(get_client())
    secede()
    runs: list[BatchRun] = []
    with ExitStack() as held:
        # Read by the check context the audit makes (in asyncio.run's copy of this context).
        GREETING_PROBER.set(prober)
        held.callback(GREETING_PROBER.set, None)
        # The hosts first, in name order (so that two audits sharing two hosts cannot wait on
        # each other), then a place among the ``jobs``: one waiting for its host keeps none.
        for host in smtp_hosts(Path(config)):
            held.enter_context(_bound(_per_host, (host, options["per_host"]), options["per_host"]))
        held.enter_context(_bound(_slots, "jobs", options["jobs"]))
        asyncio.run(
            audit_accounts(
                [(Path(config), Path(directory), scenario)],
                on_done=runs.append,
                jobs=1,
                per_host=1,
                ran_on=who,
            )
        )
    return replace(runs[0], attempts=attempts).to_dict()


def run_distributed(
    items: Sequence[Item], *, scheduler: str, jobs: int, per_host: int
) -> Iterator[BatchRun]:
    """Each run of ``items`` as it ends, audited on the Dask cluster whose scheduler listens
    at ``scheduler``; ``jobs`` and ``per_host`` bound each worker process.

    ImportError when ``distributed`` (the ``dask`` extra) is not installed; OSError when the
    scheduler does not answer.
    """
    from distributed import Client, KilledWorker, as_completed

    if not items:
        return
    options = {"jobs": jobs, "per_host": per_host}
    batch = uuid.uuid4().hex[:8]
    with Client(scheduler, set_as_default=False) as client:
        waiting = deque(enumerate(items))
        submitted: dict[str, Item] = {}

        def submit() -> Any:
            index, item = waiting.popleft()
            config, directory, scenario = item
            (directory / STARTS).unlink(missing_ok=True)  # a fresh count for this batch
            future = client.submit(
                audit_task, str(config), str(directory), scenario, options,
                key=f"audit-{batch}-{index}", pure=False, retries=0,
            )  # fmt: skip
            submitted[future.key] = item
            return future

        def window() -> int:
            # Every task secedes at once, so the scheduler would hand a worker all of them
            # (a thread each): only as many as the workers run at once are out.
            return max(1, jobs * max(1, len(client.nthreads())))

        # On this client's loop: as_completed would look for a default client otherwise.
        running = as_completed(loop=client.loop)
        while waiting and len(submitted) < window():
            running.add(submit())
        for future in running:
            config, directory, scenario = submitted.pop(future.key)
            try:
                data = future.result()
            except KilledWorker:
                count = len(starts(directory))
                run = BatchRun(
                    config, directory, attempts=count, scenario=scenario,
                    error=f"the worker auditing it died {count} times",
                )  # fmt: skip
            except Exception as exc:  # a bug in one audit must not end the batch
                message = f"internal error (a bug in maildiag): {type(exc).__name__}: {exc}"
                run = BatchRun(
                    config, directory, error=redact(message[:2000]),
                    attempts=len(starts(directory)), scenario=scenario,
                )  # fmt: skip
            else:
                run = replace(BatchRun.from_dict(data), config=config, directory=directory)
            # Dropped, so that Dask does not audit a finished account again when the worker
            # that holds its result dies later.
            future.release()
            while waiting and len(submitted) < window():
                running.add(submit())
            yield run
