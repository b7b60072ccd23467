"""Benchmark: `maildiag smtp` of this tree against the same command of an earlier revision.

Run on demand: ``.venv/bin/python benchmarks/smtp_startup.py --before REV [--runs 21]``.
The earlier revision is taken with ``git archive`` into a temporary folder; both trees run
with the same interpreter against the same sandbox submission server (started from this
tree: STARTTLS on its port 587, from a platform egress address, sandbox CA trusted), in one
run and alternating, so that the machine's state weighs on both alike. Two commands each:

- ``smtp ... --json``: the whole "Test connection", start-up plus the SMTP session;
- ``smtp`` with a wrong ``--port``: start-up and option checking alone (refused, exit 2).

Prints each median, min and max, and the ratio of medians this tree / before (below 1:
faster than before).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sandbox_process import MAILDIAG, ROOT, sandbox_up, starttls_port

GIT = shutil.which("git") or "git"


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    return time.perf_counter() - started, done.returncode, done.stdout + done.stderr


def export(repo: Path, revision: str, into: Path) -> Path:
    """The files of ``revision`` of the repository at ``repo``, unpacked under ``into``."""
    archive = subprocess.run(
        [GIT, "-C", str(repo), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def package_of(tree: Path, env: dict[str, str]) -> Path:
    """Where ``import diagnostics`` finds the package when run in ``tree``."""
    done = subprocess.run(
        [sys.executable, "-c", "import diagnostics; print(diagnostics.__file__)"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip()).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--repo", type=Path, default=ROOT, help="repository of --before")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    password = "bench-" + os.urandom(6).hex()
    # As installed for use: Python may keep its bytecode caches (some shells set
    # PYTHONDONTWRITEBYTECODE, which makes every start compile the package again).
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    env.update({"ACME_SMTP_PASSWORD": password, "ACME_RETAIL_SMTP_PASSWORD": password})
    with tempfile.TemporaryDirectory() as scratch:
        trees = {
            "before": export(args.repo, args.before, Path(scratch) / "before"),
            "after": ROOT,
        }
        for name, tree in trees.items():
            # `python -m diagnostics` run in a tree imports that tree's package (the working
            # folder comes first on sys.path): make sure, or the comparison means nothing.
            found = package_of(tree, env)
            if found != tree / "diagnostics":
                raise SystemExit(f"{name}: diagnostics is imported from {found}, not {tree}")
        state = Path(scratch) / "state"
        with sandbox_up(env, str(state)) as described:
            port = starttls_port(described)
            smtp = [
                *MAILDIAG, "smtp",
                "--host", "smtp.acme.example", "--resolve", "smtp.acme.example:127.0.0.1",
                "--encryption", "starttls", "--account", "jobs@acme.example",
                "--password-env", "ACME_SMTP_PASSWORD", "--ca-file", described["ca_file"],
                "--source", described["egress_sources"]["3.121.59.239"],
                "--dns-server", described["dns"],
            ]  # fmt: skip
            commands = {
                "session": ([*smtp, "--port", port, "--json"], 0),
                "refused": ([*smtp, "--port", "0"], 2),
            }
            times: dict[tuple[str, str], list[float]] = {
                (command, tree): [] for command in commands for tree in trees
            }
            for warm_up in (True, *([False] * args.runs)):
                for command, (argv, expected) in commands.items():
                    for tree_name, tree in trees.items():
                        elapsed, code, output = timed(argv, env, tree)
                        if code != expected:
                            raise SystemExit(
                                f"{command} in {tree_name} exited {code}, not {expected}:\n{output}"
                            )
                        if not warm_up:
                            times[command, tree_name].append(elapsed)
    print(f"before: {args.before} (git archive); after: {ROOT}; {args.runs} runs each, alternating")
    for command in commands:
        medians = {}
        for tree_name in trees:
            values = times[command, tree_name]
            medians[tree_name] = statistics.median(values)
            print(
                f"{command:8} {tree_name:7} median {medians[tree_name] * 1000:7.1f} ms   "
                f"min {min(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
            )
        print(
            f"{command:8} ratio of medians after / before: {medians['after'] / medians['before']:.3f}"
        )


if __name__ == "__main__":
    main()
