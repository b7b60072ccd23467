"""``maildiag batch``: one papermill audit per account file, in parallel processes, with
progress, a failure in one run recorded while the others go on, and an ``index.html`` over all
of them."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from diagnostics.demo import run_audit_notebook
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
    company: str = ""
    #: The titles of the account's fail and error findings, in report order.
    to_fix: tuple[str, ...] = ()


def _one(config: Path, directory: Path, sandbox: str) -> BatchRun:
    try:
        run_audit_notebook(config, directory, sandbox=sandbox)
        report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    except Exception as exc:  # one broken run must not stop the others; it is reported
        # A failed cell carries the kernel's exception: its name and message say what is
        # wrong (the account file's key, the unknown scenario), the cell's traceback does not.
        ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
        message = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
        return BatchRun(config, directory, error=redact(message[:2000]))
    to_fix = tuple(
        f"{f['title']} ({f['subject']})"
        for f in report["findings"]
        if f["status"] in ("fail", "error")
    )
    return BatchRun(
        config, directory, report["verdict"], report["summary"], None, report["company"], to_fix
    )


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


_INDEX_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; line-height: 1.4; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #bbbbbb; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eeeeee; }
ul { margin: 0; padding-left: 1.2rem; }
.badge { display: inline-block; padding: 0.1rem 0.4rem; border-radius: 0.2rem;
  font-weight: bold; font-family: monospace; white-space: nowrap; }
.meta { color: #444444; }
"""


def render_index(runs: list[BatchRun], report_dir: Path) -> str:
    """The summary page: one row per account (its company, verdict, counts, what to fix
    first), linking its report; every value escaped."""
    from diagnostics.report.colours import STATUS_COLOURS
    from diagnostics.report.html import counts_text, text

    badge_css = "".join(
        f".status-{status.value} {{ background: {bg}; color: {fg}; }}\n"
        for status, (bg, fg) in STATUS_COLOURS.items()
    )
    rows = []
    for run in runs:
        link = text(run.directory.relative_to(report_dir).as_posix() + "/report.html")
        account = f'{text(run.company or "—")}<br><span class="meta">{text(run.config)}</span>'
        if run.error is not None:
            rows.append(
                f'<tr><td>{account}</td><td><span class="badge status-error">ERROR</span></td>'
                f"<td>the audit did not run</td><td>{text(run.error)}</td><td></td></tr>"
            )
            continue
        counts = counts_text(run.summary or {})
        verdict = text(run.verdict or "")
        fix = (
            "<ul>" + "".join(f"<li>{text(title)}</li>" for title in run.to_fix) + "</ul>"
            if run.to_fix
            else "nothing"
        )
        rows.append(
            f'<tr><td>{account}</td><td><span class="badge status-{verdict}">{verdict.upper()}</span></td>'
            f'<td>{text(counts)}</td><td>{fix}</td><td><a href="{link}">report</a></td></tr>'
        )
    failing = sum(run.error is not None or run.verdict in ("fail", "error") for run in runs)
    noun = "account" if len(runs) == 1 else "accounts"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>maildiag batch: {len(runs)} {noun}</title>\n"
        f"<style>{_INDEX_STYLE}{badge_css}</style>\n</head>\n<body>\n"
        f"<h1>maildiag batch: {len(runs)} {noun}, {failing} need action</h1>\n"
        '<table>\n<thead><tr><th scope="col">Company and account file</th>'
        '<th scope="col">Verdict</th><th scope="col">Findings</th>'
        '<th scope="col">What to fix first</th><th scope="col"></th></tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )
