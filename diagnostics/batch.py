"""``maildiag batch``: one papermill audit per account file, in parallel processes, with
progress, a failure in one run recorded while the others go on, and an ``index.html`` over all
of them."""

from __future__ import annotations

import html
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from diagnostics.demo import AUDIT_NOTEBOOK, execute
from diagnostics.redact import redact
from diagnostics.report.json import write_atomic


@dataclass(frozen=True)
class BatchRun:
    """One account's run: where its report is, its verdict, or why it could not run."""

    config: Path
    directory: Path
    verdict: str | None = None
    summary: dict[str, int] | None = None
    error: str | None = None


def _one(config: Path, directory: Path, sandbox: str) -> BatchRun:
    try:
        execute(
            AUDIT_NOTEBOOK,
            directory / "audit.ipynb",
            {
                "config": str(config.resolve()),
                "sandbox": sandbox,
                "only": "",
                "report_dir": str(directory),
                "timeout_s": 0,
            },
        )
        report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    except Exception as exc:  # one broken run must not stop the others; it is reported
        return BatchRun(config, directory, error=redact(f"{type(exc).__name__}: {exc}"[:2000]))
    return BatchRun(config, directory, report["verdict"], report["summary"])


def run_batch(
    configs: list[Path],
    *,
    report_dir: Path,
    jobs: int = 2,
    sandbox: str = "",
    progress: TextIO | None = None,
) -> list[BatchRun]:
    """Audit every file of ``configs`` (``jobs`` at a time); write ``index.html``; the runs."""
    from rich.progress import Progress

    names: dict[Path, Path] = {}
    for config in configs:
        stem = config.stem
        directory = report_dir / stem
        suffix = 2
        while directory in names.values():
            directory, suffix = report_dir / f"{stem}-{suffix}", suffix + 1
        names[config] = directory
    runs: list[BatchRun] = []
    with Progress(console=None if progress is None else _console(progress), transient=False) as bar:
        task = bar.add_task("audits", total=len(configs))
        # One process per run: each kernel client builds its own event loop and sockets,
        # which a thread of this process would leave behind.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
            futures = {
                pool.submit(_one, config, names[config], sandbox): config for config in configs
            }
            for future in as_completed(futures):
                runs.append(future.result())
                bar.advance(task)
    runs.sort(key=lambda run: configs.index(run.config))
    write_atomic(report_dir / "index.html", render_index(runs, report_dir))
    return runs


def _console(stream: TextIO):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(file=stream, width=100)


def render_index(runs: list[BatchRun], report_dir: Path) -> str:
    """The summary page: one row per account, linking its report; everything escaped."""
    rows = []
    for run in runs:
        link = html.escape(str(run.directory.relative_to(report_dir) / "report.html"))
        name = html.escape(str(run.config))
        if run.error is not None:
            rows.append(
                f"<tr><td>{name}</td><td class=error>ERROR</td><td colspan=2>{html.escape(run.error)}</td></tr>"
            )
            continue
        counts = ", ".join(f"{n} {k}" for k, n in (run.summary or {}).items() if n and k != "total")
        verdict = html.escape(run.verdict or "")
        rows.append(
            f'<tr><td>{name}</td><td class="{verdict}">{verdict.upper()}</td>'
            f'<td>{html.escape(counts)}</td><td><a href="{link}">report</a></td></tr>'
        )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>maildiag batch</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.3em .6em}.fail,.error{background:#fdd}"
        ".warn{background:#ffd}.pass{background:#dfd}</style></head><body>"
        f"<h1>maildiag batch: {len(runs)} accounts</h1><table><tr><th>account file</th><th>verdict</th>"
        "<th>findings</th><th></th></tr>" + "".join(rows) + "</table></body></html>\n"
    )
