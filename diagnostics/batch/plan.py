"""Which accounts a batch runs, into which folders, and which an earlier run already finished.

A batch's state is ``index.json`` in its report folder (see :mod:`diagnostics.batch.index`):
written as accounts finish, so that an interrupted batch leaves the list of what ran, and
``--resume`` runs only the rest (and any account whose file changed since).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from diagnostics.batch.model import BatchRun

INDEX_JSON = "index.json"
SCHEMA = "maildiag.batch/1"


def folders(configs: list[Path], report_dir: Path) -> dict[Path, Path]:
    """Each account file's report folder: its name, with -2, -3 ... for names taken twice."""
    names: dict[Path, Path] = {}
    taken: set[Path] = set()
    for config in configs:
        stem = config.stem
        directory, suffix = report_dir / stem, 2
        while directory in taken:
            directory, suffix = report_dir / f"{stem}-{suffix}", suffix + 1
        taken.add(directory)
        names[config] = directory
    return names


def fingerprint(config: Path) -> str:
    """The account file's length and CRC-32 ("" when it cannot be read: it runs again)."""
    try:
        data = config.read_bytes()
    except OSError:
        return ""
    return f"{len(data)}:{zlib.crc32(data):08x}"


def finished(report_dir: Path, configs: list[Path]) -> dict[Path, BatchRun]:
    """The accounts of ``configs`` an earlier run of this batch finished: recorded in its
    ``index.json`` with the same file contents, and their report still there."""
    try:
        state = json.loads((report_dir / INDEX_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("schema") != SCHEMA:
        return {}
    wanted = {config.resolve(): config for config in configs}
    done: dict[Path, BatchRun] = {}
    for entry in state.get("accounts", ()):
        try:
            run = BatchRun.from_dict(entry)
        except (TypeError, KeyError, ValueError):
            continue
        config = wanted.get(run.config.resolve())
        if config is None or run.error is not None:
            continue
        if run.fingerprint != fingerprint(config):
            continue
        if not (run.directory / "report.json").is_file():
            continue
        done[config] = BatchRun.from_dict({**run.to_dict(), "config": str(config), "resumed": True})
    return done
