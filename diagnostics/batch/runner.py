"""``maildiag batch``: many accounts' audits, a few processes each running many at once, with
a progress bar, each account's report folder written as soon as its audit ends, the executed
notebook for the accounts that ask for it, and the index.

Ctrl-C stops the batch: the reports finished by then stay, complete, and ``index.json`` and the
pages list what ran and what did not; ``--resume`` runs the rest. A process that dies loses
no account: what it held and had not finished runs again (at most twice more). With a Dask
scheduler's address, the audits run on its cluster instead (:mod:`.distributed`).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any, Literal, TextIO

from diagnostics.batch.index import write_index, write_state
from diagnostics.batch.local import DEFAULT_JOBS, DEFAULT_PER_HOST, smtp_hosts, worker_main
from diagnostics.batch.model import BatchRun, Item
from diagnostics.batch.plan import finished, folders
from diagnostics.redact import redact

Notebooks = Literal["all", "failing", "none"]
# Times a process's unfinished accounts are started again after it died.
RETRIES = 2
# index.json is rewritten at most this often while accounts finish (and at the end), and
# never more than this share of the parent's time: each write holds every run so far, so a
# batch of thousands writes it less often as it grows.
_STATE_EVERY_S = 1.0
_STATE_SHARE = 0.05


class BatchInterrupted(Exception):
    """Ctrl-C stopped the batch; ``runs`` are those that finished (their index is written)."""

    def __init__(self, runs: list[BatchRun], not_run: list[Path]) -> None:
        super().__init__(f"interrupted: {len(runs)} finished, {len(not_run)} not run")
        self.runs = runs
        self.not_run = not_run


@dataclass
class _Worker:
    """A child process, its two pipes, and the accounts it holds (handed out, not yet back)."""

    process: Any
    inbox: Any
    results: Any
    holding: dict[Path, Item] = field(default_factory=dict)
    closed: bool = False
    gone: bool = False

    @property
    def open(self) -> bool:
        """Whether it takes more accounts."""
        return not self.closed and not self.gone and self.process.is_alive()


class _HostOwners:
    """Which process holds accounts of which SMTP host, and how many."""

    def __init__(self) -> None:
        self.owner: dict[str, _Worker] = {}
        self.held: Counter[str] = Counter()
        self._hosts: dict[Path, list[str]] = {}

    def of(self, item: Item) -> list[str]:
        if item[0] not in self._hosts:
            self._hosts[item[0]] = smtp_hosts(item[0])
        return self._hosts[item[0]]

    def free_for(self, item: Item, worker: _Worker) -> bool:
        """Whether no other process holds accounts of ``item``'s hosts."""
        return all(self.owner.get(host, worker) is worker for host in self.of(item))

    def take(self, item: Item, worker: _Worker) -> None:
        for host in self.of(item):
            self.owner[host] = worker
            self.held[host] += 1

    def give_back(self, item: Item) -> None:
        for host in self.of(item):
            self.held[host] -= 1
            if self.held[host] <= 0:
                del self.held[host]
                self.owner.pop(host, None)


def run_local(
    items: Sequence[Item],
    *,
    jobs: int,
    per_host: int,
    processes: int | None = None,
) -> Iterator[BatchRun]:
    """Each run of ``items`` as it ends, audited in ``processes`` child processes (one per
    core by default), each running up to ``jobs`` audits at once.

    Accounts are handed out as the processes have room for them (``jobs`` and a few more
    each), not split up front: a process whose accounts are slow (a server that times out)
    does not keep the others' share waiting while its siblings are idle. An account whose
    SMTP host a process already has accounts for goes to that process, so that ``per_host``
    bounds the whole batch's audits against one server, not each process's. What a process
    that died held runs again in another (at most :data:`RETRIES` more times).
    """
    if not items:
        return
    context = multiprocessing.get_context("spawn")
    options = {"jobs": jobs, "per_host": per_host}
    count = max(1, min(processes or os.cpu_count() or 1, len(items)))
    # Handed to a process beyond what it runs, so that it never waits for the next one.
    window = max(1, jobs) + max(2, jobs // 2)
    attempts = {item[0]: 1 for item in items}
    todo = list(items)
    workers: list[_Worker] = []
    hosts = _HostOwners()
    by_name = {str(item[0]): item[0] for item in items}
    pending = set(attempts)

    def start() -> None:
        # Pipe(duplex=False) gives (the end that reads, the end that writes).
        child_reads, parent_writes = context.Pipe(duplex=False)
        parent_reads, child_writes = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main, args=(child_reads, child_writes, options), daemon=True
        )
        process.start()
        # Only the child keeps these ends: its death is then the end of its pipes.
        child_reads.close()
        child_writes.close()
        workers.append(_Worker(process, parent_writes, parent_reads))

    def hand(worker: _Worker, message: tuple[str, str, str] | None) -> None:
        try:
            worker.inbox.send(message)
        except OSError:
            worker.gone = True

    def feed() -> None:
        """Hand out what waits (starting processes for it); close the inboxes once nothing
        does."""
        while todo and sum(w.open for w in workers) < count:
            start()
        for worker in [w for w in workers if w.open]:
            while len(worker.holding) < window and not worker.gone:
                at = next((i for i, item in enumerate(todo) if hosts.free_for(item, worker)), -1)
                if at < 0:
                    break
                item = todo.pop(at)
                worker.holding[item[0]] = item
                hosts.take(item, worker)
                hand(worker, (str(item[0]), str(item[1]), item[2]))
            if not todo:
                hand(worker, None)
                worker.closed = True

    def take(worker: _Worker) -> BatchRun | None:
        """The run ``worker`` sent, unless it is one already had; None too when its pipe
        ended (the process is gone)."""
        try:
            data = worker.results.recv()
        except (EOFError, OSError):
            worker.gone = True
            return None
        run = BatchRun.from_dict(data)
        config = by_name[str(run.config)]
        if (item := worker.holding.pop(config, None)) is not None:
            hosts.give_back(item)
        if config not in pending:
            return None
        pending.discard(config)
        return replace(run, config=config, attempts=attempts[config])

    def drained(worker: _Worker) -> Iterator[BatchRun]:
        """Every run ``worker`` has sent and not yet been read."""
        while not worker.gone and worker.results.poll():
            if (run := take(worker)) is not None:
                yield run

    def arrived(wait: float) -> Iterator[BatchRun]:
        """Every run the processes have sent (waiting up to ``wait`` for one)."""
        listening = {w.results: w for w in workers if not w.gone}
        for reader in mp_connection.wait(list(listening), timeout=wait):
            yield from drained(listening[reader])

    def buried() -> Iterator[BatchRun]:
        """The runs given up on in processes that died; their other accounts wait again."""
        for worker in [w for w in workers if w.gone or not w.process.is_alive()]:
            # What it sent before it ended is read first: only what it still held is lost.
            yield from drained(worker)
            workers.remove(worker)
            worker.process.join(5)
            worker.results.close()
            worker.inbox.close()
            for config, item in worker.holding.items():
                hosts.give_back(item)
                if attempts[config] > RETRIES:
                    pending.discard(config)
                    yield BatchRun(
                        config, item[1], attempts=attempts[config], scenario=item[2],
                        error=f"the process auditing it died (exit code "
                        f"{worker.process.exitcode}) {attempts[config]} times",
                    )  # fmt: skip
                else:
                    attempts[config] += 1
                    todo.insert(0, item)

    try:
        while pending:
            feed()
            yield from arrived(0.5)
            yield from buried()
    finally:
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in workers:
            worker.process.join(5)


def _notebook(config: Path, directory: Path, sandbox: str) -> tuple[str, str | None]:
    """Execute the audit notebook into ``directory``: its path, or why it could not run."""
    from diagnostics.demo import run_audit_notebook

    try:
        return str(run_audit_notebook(config, directory, sandbox=sandbox)), None
    except Exception as exc:  # one broken notebook must not stop the others; it is reported
        ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
        message = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
        return "", redact(message[:2000])


def _wants_notebook(run: BatchRun, notebooks: Notebooks) -> bool:
    """Whether ``notebooks`` asks for ``run``'s executed notebook (a run that could not start
    has none to show)."""
    if run.error is not None:
        return False
    return notebooks == "all" or (notebooks == "failing" and run.needs_action)


def run_batch(
    configs: list[Path],
    *,
    report_dir: Path,
    jobs: int = DEFAULT_JOBS,
    sandbox: str | Mapping[Path, str] = "",
    progress: TextIO | None = None,
    notebooks: Notebooks = "failing",
    resume: bool = False,
    processes: int | None = None,
    per_host: int = DEFAULT_PER_HOST,
    scheduler: str | None = None,
) -> list[BatchRun]:
    """Audit every file of ``configs`` (in the sandbox scenario ``sandbox`` names, for all or
    per file); write each report folder, the notebooks ``notebooks`` asks for, and the index;
    the runs, in the order of ``configs``.

    With ``scheduler`` (a Dask scheduler's address) the audits run on that cluster's workers
    (:mod:`diagnostics.batch.distributed`; ``report_dir`` must be reachable by them), and the
    notebooks still run here.

    BatchInterrupted on Ctrl-C, once the index of what ran is written.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    report_dir.mkdir(parents=True, exist_ok=True)
    directories = folders(configs, report_dir)
    done = finished(report_dir, configs) if resume else {}

    def scenario(config: Path) -> str:
        return sandbox if isinstance(sandbox, str) else sandbox.get(config, "")

    items = [
        (config, directories[config], scenario(config)) for config in configs if config not in done
    ]
    results: dict[Path, BatchRun] = dict(done)

    def ordered() -> list[BatchRun]:
        return [results[config] for config in configs if config in results]

    def missing() -> list[Path]:
        return [config for config in configs if config not in results]

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    console = None if progress is None else _console(progress)
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("audits", total=len(configs), completed=len(done), rate="")
        started, saved, pause = time.monotonic(), 0.0, _STATE_EVERY_S
        try:
            if scheduler is None:
                stream = run_local(items, jobs=jobs, per_host=per_host, processes=processes)
            else:
                # Imported only here: distributed is an optional extra, and slow to import.
                from diagnostics.batch.distributed import run_distributed

                stream = run_distributed(items, scheduler=scheduler, jobs=jobs, per_host=per_host)
            for count, run in enumerate(stream, start=1):
                results[run.config] = run
                elapsed = time.monotonic() - started
                bar.update(task, advance=1, rate=f"{count / max(elapsed, 1e-6):.1f}/s")
                if time.monotonic() - saved >= pause:
                    began = time.monotonic()
                    write_state(report_dir, ordered(), not_run=missing(), interrupted=True)
                    saved = time.monotonic()
                    pause = max(_STATE_EVERY_S, (saved - began) / _STATE_SHARE)
        except KeyboardInterrupt:
            write_index(report_dir, ordered(), not_run=missing(), interrupted=True)
            raise BatchInterrupted(ordered(), missing()) from None
        wanted = [run for run in ordered() if not run.resumed and _wants_notebook(run, notebooks)]
        if wanted:
            notes = bar.add_task("notebooks", total=len(wanted), rate="")
            try:
                _notebooks(wanted, results, jobs=processes, bar=(bar, notes))
            except KeyboardInterrupt:
                write_index(report_dir, ordered(), not_run=missing(), interrupted=True)
                raise BatchInterrupted(ordered(), missing()) from None
    write_index(report_dir, ordered())
    return ordered()


def _notebooks(
    wanted: list[BatchRun],
    results: dict[Path, BatchRun],
    *,
    jobs: int | None,
    bar: tuple[Any, Any],
) -> None:
    """Execute the audit notebook of each run of ``wanted`` (a kernel each, in processes)."""
    progress, task = bar
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(jobs or os.cpu_count() or 1, len(wanted)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(_notebook, run.config, run.directory, run.scenario): run for run in wanted
        }
        for future in as_completed(futures):
            run = futures[future]
            path, error = future.result()
            if error is None:
                # Named as the run's folder is (relative when the report folder is).
                results[run.config] = replace(run, notebook=run.directory / Path(path).name)
            else:
                results[run.config] = replace(run, extra={**run.extra, "notebook_error": error})
            progress.advance(task)


def _console(stream: TextIO):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(file=stream, width=100)
