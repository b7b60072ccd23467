"""The benchmarks' mail server: ``maildiag sandbox up`` as a process of its own, as a person
runs it, so that what is timed is only the client under test."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAILDIAG = [sys.executable, "-m", "diagnostics"]


@contextlib.contextmanager
def sandbox_up(env: Mapping[str, str], state: Path | str) -> Iterator[dict[str, Any]]:
    """The healthy sandbox running with ``env`` on ``state``; its description (the JSON line
    ``sandbox up --json`` prints). Stopped with Ctrl-C (SIGINT) on leaving, as a person stops it."""
    process = subprocess.Popen(
        [*MAILDIAG, "sandbox", "up", "--scenario", "healthy", "--state", str(state), "--json"],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


def starttls_port(described: Mapping[str, Any]) -> str:
    """The local port that plays the submission server's port 587."""
    return str(
        next(s["listen"] for s in described["servers"] if s["world"].endswith(":587"))
    ).rsplit(":", 1)[1]
