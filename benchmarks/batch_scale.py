"""``maildiag batch`` at scale: generated accounts in the sandbox, timed and weighed.

Run on demand::

    .venv/bin/python benchmarks/batch_scale.py [--sizes 10,100,1000] [--notebooks none]

For each size, that many account files are generated (``diagnostics.sandbox.generate``:
varied companies, domains and subcompany shapes) and spread over four scenarios (healthy,
egress-ip-missing, bad-password, starttls-not-offered); ``maildiag batch`` runs them as one
command (one process per core, the default concurrency). Printed per size: the wall time, the
accounts per second, the cost per account (wall and CPU, so that growth with the size shows),
the CPU the parent process took (the progress bar and the index),
the peak memory of the whole process tree (sampled every 0.1 s from /proc), and how many
accounts got the verdict their scenario gives. The goal: 1,000 accounts under 2 minutes on
2 cores, under 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SCENARIOS = ("healthy", "egress-ip-missing", "bad-password", "starttls-not-offered")
EXPECTED = {
    "healthy": "pass",
    "egress-ip-missing": "fail",
    "bad-password": "fail",
    "starttls-not-offered": "fail",
}

SCRIPT = """
import json, resource, sys
from pathlib import Path
from diagnostics.batch import run_batch
plan = json.loads(Path(sys.argv[1]).read_text())
runs = run_batch(
    [Path(p) for p in plan["configs"]],
    report_dir=Path(plan["report_dir"]),
    sandbox={Path(p): s for p, s in plan["scenarios"].items()},
    notebooks=plan["notebooks"],
    progress=sys.stderr,
)
own = resource.getrusage(resource.RUSAGE_SELF)
json.dump(
    {
        "runs": [[str(r.config), r.verdict, r.error] for r in runs],
        "parent_cpu": own.ru_utime + own.ru_stime,
    },
    sys.stdout,
)
"""


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def run(size: int, notebooks: str) -> dict[str, float]:
    from diagnostics.sandbox.generate import generate_accounts

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        configs = generate_accounts(size, folder / "accounts")
        scenarios = {str(c): SCENARIOS[i % len(SCENARIOS)] for i, c in enumerate(configs)}
        plan = folder / "plan.json"
        plan.write_text(
            json.dumps(
                {
                    "configs": [str(c) for c in configs],
                    "report_dir": str(folder / "batch"),
                    "scenarios": scenarios,
                    "notebooks": notebooks,
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed wheel has its bytecode
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(plan)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.1):
                peak = max(peak, _tree_rss(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = process.communicate()
        done.set()
        sampler.join()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        document = json.loads(out)
        right = sum(
            verdict == EXPECTED[scenarios[config]] and error is None
            for config, verdict, error in document["runs"]
        )
    return {
        "size": size,
        "wall_s": wall,
        "rate": size / wall,
        "wall_ms_per_account": 1000 * wall / size,
        "cpu_ms_per_account": 1000 * cpu / size,
        # The parent's share: progress, index.json while running, the pages at the end.
        "parent_cpu_s": document["parent_cpu"],
        "peak_mib": peak / 2**20,
        "right": right,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="account counts (10,100,1000)")
    parser.add_argument("--notebooks", default="none", choices=("all", "failing", "none"))
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; --notebooks {args.notebooks}")
    print(f"{'accounts':>8} {'wall':>8} {'per s':>7} {'wall/acct':>10} {'cpu/acct':>9} "
          f"{'× first':>8} {'parent cpu':>11} {'peak':>9} {'verdicts right':>15}")  # fmt: skip
    first = None
    for size in (int(s) for s in args.sizes.split(",")):
        row = run(size, args.notebooks)
        # The growth, as the CPU per account against the first (smallest) size of this run.
        first = first or row["cpu_ms_per_account"]
        print(
            f"{row['size']:>8} {row['wall_s']:>7.1f}s {row['rate']:>7.1f} "
            f"{row['wall_ms_per_account']:>8.0f}ms {row['cpu_ms_per_account']:>7.0f}ms "
            f"{row['cpu_ms_per_account'] / first:>7.2f}× {row['parent_cpu_s']:>10.1f}s "
            f"{row['peak_mib']:>6.0f} MiB {int(row['right']):>8}/{row['size']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
