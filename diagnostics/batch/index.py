"""The batch's summary: ``index.html`` (one row per account, worst first), the same table
sorted by company (``index-company.html``) and by what to fix first (``index-fix.html``), each
column header linking to its order, with the causes most accounts get wrong; and
``index.json`` beside them, which is also the batch's state for ``--resume``.

The pages carry no script: sorting is three pages of one table.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diagnostics.batch.model import BatchRun
from diagnostics.batch.plan import INDEX_JSON, SCHEMA
from diagnostics.report.json import write_atomic

PAGES = {
    "verdict": "index.html",
    "company": "index-company.html",
    "fix": "index-fix.html",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1a1a1a; line-height: 1.4; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
th, td { border: 1px solid #bbbbbb; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eeeeee; }
th a { color: inherit; }
ul { margin: 0; padding-left: 1.2rem; }
.badge { display: inline-block; padding: 0.1rem 0.4rem; border-radius: 0.2rem;
  font-weight: bold; font-family: monospace; white-space: nowrap; }
.meta { color: #444444; }
"""


def _order(runs: Sequence[BatchRun], by: str) -> list[BatchRun]:
    def company(run: BatchRun) -> str:
        return (run.company or run.config.stem).casefold()

    def first_fix(run: BatchRun) -> str:
        return (run.error or (run.to_fix[0] if run.to_fix else "\uffff")).casefold()

    if by == "company":
        return sorted(runs, key=lambda r: (company(r), r.gravity))
    if by == "fix":
        return sorted(runs, key=lambda r: (first_fix(r), r.gravity, company(r)))
    return sorted(runs, key=lambda r: (r.gravity, company(r)))


def causes_across(runs: Sequence[BatchRun]) -> list[tuple[str, int]]:
    """Each cause of a fail or error finding, with how many accounts have it, most first."""
    counted = Counter(cause for run in runs for cause in run.causes)
    return sorted(counted.items(), key=lambda item: (-item[1], item[0]))


def render_page(
    runs: Sequence[BatchRun],
    report_dir: Path,
    *,
    by: str = "verdict",
    not_run: Sequence[Path] = (),
    interrupted: bool = False,
) -> str:
    """One page of the index, its rows in the order ``by`` names; every value escaped."""
    from diagnostics.report.colours import STATUS_COLOURS
    from diagnostics.report.html import counts_text, text

    badge_css = "".join(
        f".status-{status.value} {{ background: {bg}; color: {fg}; }}\n"
        for status, (bg, fg) in STATUS_COLOURS.items()
    )
    rows = []
    for run in _order(runs, by):
        link = text(Path(os.path.relpath(run.directory, report_dir)).as_posix() + "/report.html")
        account = f'{text(run.company or "—")}<br><span class="meta">{text(run.config)}</span>'
        if run.error is not None:
            rows.append(
                f'<tr><td>{account}</td><td><span class="badge status-error">ERROR</span></td>'
                f"<td>the audit did not run</td><td>{text(run.error)}</td><td></td></tr>"
            )
            continue
        verdict = text(run.verdict or "")
        fix = (
            "<ul>" + "".join(f"<li>{text(title)}</li>" for title in run.to_fix) + "</ul>"
            if run.to_fix
            else "nothing"
        )
        notes = []
        if run.notebook is not None:
            href = text(Path(os.path.relpath(run.notebook, report_dir)).as_posix())
            notes.append(f'<a href="{href}">notebook</a>')
        if run.attempts > 1:
            notes.append(f'<span class="meta">ran {run.attempts} times: its worker died</span>')
        if run.resumed:
            notes.append('<span class="meta">from an earlier run</span>')
        rows.append(
            f'<tr><td>{account}</td><td><span class="badge status-{verdict}">{verdict.upper()}</span></td>'
            f"<td>{text(counts_text(run.summary or {}))}</td><td>{fix}</td>"
            f'<td><a href="{link}">report</a>{"<br>" if notes else ""}{"<br>".join(notes)}</td></tr>'
        )
    failing = sum(run.needs_action for run in runs)
    noun = "account" if len(runs) == 1 else "accounts"
    headers = {
        "company": "Company and account file",
        "verdict": "Verdict",
        "counts": "Findings",
        "fix": "What to fix first",
    }

    def header(key: str) -> str:
        label = text(headers[key])
        if key not in PAGES or key == by:
            mark = " ▾" if key == by else ""
            return f'<th scope="col">{label}{mark}</th>'
        return f'<th scope="col"><a href="{PAGES[key]}">{label}</a></th>'

    causes = causes_across(runs)
    cause_rows = "".join(
        f'<tr><th scope="row"><code>{text(cause)}</code></th><td>{count}</td></tr>'
        for cause, count in causes
    )
    cause_table = (
        "<h2>What most accounts get wrong</h2>\n<table>\n<thead><tr>"
        '<th scope="col">Cause</th><th scope="col">Accounts</th></tr></thead>\n'
        f"<tbody>{cause_rows}</tbody>\n</table>\n"
        if causes
        else ""
    )
    notice = ""
    if interrupted or not_run:
        notice = (
            f"<p><strong>The batch was interrupted: {len(not_run)} account(s) did not run."
            "</strong> <code>maildiag batch --resume</code> with the same account files runs "
            "them and keeps these.</p>\n"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>maildiag batch: {len(runs)} {noun}</title>\n"
        f"<style>{_STYLE}{badge_css}</style>\n</head>\n<body>\n"
        f"<h1>maildiag batch: {len(runs)} {noun}, {failing} need action</h1>\n"
        + notice
        + cause_table
        + "<table>\n<thead><tr>"
        + header("company")
        + header("verdict")
        + header("counts")
        + header("fix")
        + '<th scope="col"></th></tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )


def render_index(runs: Sequence[BatchRun], report_dir: Path) -> str:
    """``index.html``: the accounts worst first."""
    return render_page(runs, report_dir)


def summary(
    runs: Sequence[BatchRun], *, not_run: Sequence[Path] = (), interrupted: bool = False
) -> dict[str, Any]:
    """``index.json``: every run, the counts by verdict and by cause, what did not run."""
    verdicts = Counter("not run" if run.error else (run.verdict or "") for run in runs)
    return {
        "schema": SCHEMA,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "accounts": [run.to_dict() for run in runs],
        "not_run": [str(config) for config in not_run],
        "verdicts": dict(sorted(verdicts.items())),
        "causes": dict(causes_across(runs)),
        "need_action": sum(run.needs_action for run in runs),
    }


def write_state(
    report_dir: Path,
    runs: Sequence[BatchRun],
    *,
    not_run: Sequence[Path] = (),
    interrupted: bool = False,
) -> Path:
    """Write ``index.json`` (atomically): what ran so far."""
    document = summary(runs, not_run=not_run, interrupted=interrupted)
    return write_atomic(report_dir / INDEX_JSON, json.dumps(document, indent=1) + "\n")


def write_index(
    report_dir: Path,
    runs: Sequence[BatchRun],
    *,
    not_run: Sequence[Path] = (),
    interrupted: bool = False,
) -> Path:
    """Write ``index.json`` and the three pages; the path of ``index.html``."""
    write_state(report_dir, runs, not_run=not_run, interrupted=interrupted)
    for by, name in PAGES.items():
        page = render_page(runs, report_dir, by=by, not_run=not_run, interrupted=interrupted)
        write_atomic(report_dir / name, page)
    return report_dir / PAGES["verdict"]
