"""``maildiag batch``: many accounts' audits, a few processes each running many at once, with
a progress bar, each account's report folder written as soon as its audit ends, the executed
notebook for the accounts that ask for it, and the index.

Ctrl-C stops the batch: the reports finished by then stay, complete, and ``index.json`` and the
pages list what ran and what did not; ``--resume`` runs the rest. A process that dies loses
no account: what it had not finished runs again in a new one (at most twice). With a Dask
scheduler's address, the audits run on its cluster instead (:mod:`.distributed`).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TextIO

from diagnostics.batch.index import write_index, write_state
from diagnostics.batch.local import DEFAULT_JOBS, DEFAULT_PER_HOST, shard_main
from diagnostics.batch.model import BatchRun, Item
from diagnostics.batch.plan import finished, folders
from diagnostics.redact import redact

Notebooks = Literal["all", "failing", "none"]
# Times a process's unfinished accounts are started again after it died.
RETRIES = 2
# index.json is rewritten at most this often while accounts finish (and at the end).
_STATE_EVERY_S = 1.0


class BatchInterrupted(Exception):
    """Ctrl-C stopped the batch; ``runs`` are those that finished (their index is written)."""

    def __init__(self, runs: list[BatchRun], not_run: list[Path]) -> None:
        super().__init__(f"interrupted: {len(runs)} finished, {len(not_run)} not run")
        self.runs = runs
        self.not_run = not_run


def run_local(
    items: Sequence[Item],
    *,
    jobs: int,
    per_host: int,
    processes: int | None = None,
) -> Iterator[BatchRun]:
    """Each run of ``items`` as it ends, audited in ``processes`` child processes (one per
    core by default), each running up to ``jobs`` audits at once."""
    if not items:
        return
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    options = {"jobs": jobs, "per_host": per_host}
    count = max(1, min(processes or os.cpu_count() or 1, len(items)))
    attempts = {item[0]: 1 for item in items}
    shards = [list(items[index::count]) for index in range(count)]
    live: dict[Any, list[Item]] = {}

    def start(shard: list[Item]) -> None:
        process = context.Process(
            target=shard_main,
            args=([(str(c), str(d), s) for c, d, s in shard], options, results),
            daemon=True,
        )
        process.start()
        live[process] = shard

    for shard in shards:
        start(shard)
    pending = {item[0] for item in items}
    by_name = {str(item[0]): item for item in items}
    try:
        while pending:
            try:
                data = results.get(timeout=0.5)
            except queue.Empty:
                for process in [p for p in live if not p.is_alive()]:
                    shard = live.pop(process)
                    left = [item for item in shard if item[0] in pending]
                    if not left:
                        continue
                    retry = [item for item in left if attempts[item[0]] <= RETRIES]
                    for config, directory, scenario in left:
                        if attempts[config] > RETRIES:
                            pending.discard(config)
                            yield BatchRun(
                                config, directory, attempts=attempts[config], scenario=scenario,
                                error=f"the process auditing it died (exit code "
                                f"{process.exitcode}) {attempts[config]} times",
                            )  # fmt: skip
                    for config, _, _ in retry:
                        attempts[config] += 1
                    if retry:
                        start(retry)
                continue
            run = BatchRun.from_dict(data)
            config = by_name[str(run.config)][0]
            if config not in pending:
                continue
            pending.discard(config)
            yield replace(run, config=config, attempts=attempts[config])
    finally:
        for process in live:
            if process.is_alive():
                process.terminate()
        for process in live:
            process.join(5)


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
        started, saved = time.monotonic(), 0.0
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
                if time.monotonic() - saved >= _STATE_EVERY_S:
                    write_state(report_dir, ordered(), not_run=missing(), interrupted=True)
                    saved = time.monotonic()
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
