"""Mutation testing of the pure modules (mutmut, one worker) and its figures per module.

Run on demand, never in the test run (``pip install -e '.[mutation]'`` first)::

    .venv/bin/python benchmarks/mutation.py                    # mutate, test, tabulate
    .venv/bin/python benchmarks/mutation.py --module diagnostics.parse.spf --time-limit 1800
    .venv/bin/python benchmarks/mutation.py --report-only --list-survivors

``[tool.mutmut]`` in pyproject.toml names the modules and the tests: mutmut copies the package
into ``mutants/``, mutates those modules and, for each mutant, runs the selected tests that
reach the mutated function, fastest first, until one fails (killed); a mutant no test fails
on survived. Results stay in ``mutants/``: a later run without ``--module`` tests only the
mutants not tested yet and those of functions changed since, so a run stopped by
``--time-limit`` goes on where it stopped. ``--module`` tests every mutant of that module
again, which gives its figures afresh after new tests.

The run takes one worker: mutmut reads its worker count from the command line only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")
# How `mutmut results --all true` names each outcome, grouped as the table shows them.
COLUMNS = {
    "killed": ("killed",),
    "survived": ("survived",),
    "timeout": ("timeout",),
    "suspicious": ("suspicious", "segfault"),
    "skipped": ("skipped", "caught by type check"),
    "no tests": ("no tests",),
    "unchecked": ("not checked", "check was interrupted by user"),
}
_RESULT_LINE = re.compile(r"^\s+(?P<name>\S+__mutmut_\d+): (?P<status>.+)$")


def module_of(mutant: str) -> str:
    """The dotted module a mutant's name starts with (``diagnostics.parse.spf``).

    mutmut names a mutant ``<module>.x_<function>__mutmut_<n>`` or, in a method,
    ``<module>.xǁ<class>ǁ<method>__mutmut_<n>``.
    """
    parts = mutant.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].startswith(("x_", "xǁ")):
            return ".".join(parts[:index])
    return mutant.rpartition(".")[0]


def selected(module: str, modules: list[str]) -> bool:
    """Whether ``module`` is one of ``modules`` or inside one (every module when none)."""
    return not modules or any(module == m or module.startswith(m + ".") for m in modules)


def run_mutmut(modules: list[str], time_limit: float | None) -> float:
    """Run ``mutmut run`` on one worker, for ``modules`` only if given; its wall time in s.

    At ``time_limit`` seconds it is stopped: every mutant it finished keeps its result (mutmut
    writes each one as it comes), the one under test is tested again by the next run.
    """
    command = [str(MUTMUT), "run", "--max-children", "1", *(f"{m}.*" for m in modules)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        process.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        print(f"\nstopping mutmut after {time_limit:.0f} s", file=sys.stderr)
        # Ctrl-C, as mutmut expects it; its worker's pytest may swallow it, so then the group.
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                if sig is signal.SIGINT:
                    process.send_signal(sig)
                else:
                    os.killpg(process.pid, sig)
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    return time.monotonic() - started


def read_results() -> dict[str, str]:
    """Every mutant's outcome as ``mutmut results --all true`` prints it, by mutant name."""
    output = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        match["name"]: match["status"]
        for match in map(_RESULT_LINE.match, output.splitlines())
        if match
    }


def table(results: dict[str, str], modules: list[str]) -> list[str]:
    """One row per module (mutants, each column's count, killed share of those tested)."""
    column_of = {status: column for column, statuses in COLUMNS.items() for status in statuses}
    counts: dict[str, Counter[str]] = {}
    for name, status in results.items():
        module = module_of(name)
        if not selected(module, modules):
            continue
        counts.setdefault(module, Counter())[column_of.get(status, "suspicious")] += 1
    width = max([len("module"), *map(len, counts)])
    header = f"{'module':<{width}} {'mutants':>7} " + " ".join(f"{c:>10}" for c in COLUMNS)
    lines = [header + f" {'killed %':>8}"]
    total: Counter[str] = Counter()
    for module in sorted(counts):
        lines.append(_row(module, counts[module], width))
        total.update(counts[module])
    lines.append(_row("total", total, width))
    return lines


def _row(label: str, count: Counter[str], width: int) -> str:
    tested = count["killed"] + count["survived"] + count["timeout"] + count["suspicious"]
    share = f"{100 * count['killed'] / tested:.1f}" if tested else "-"
    cells = " ".join(f"{count[c]:>10}" for c in COLUMNS)
    return f"{label:<{width}} {count.total():>7} {cells} {share:>8}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAME",
        help="a dotted module or package (diagnostics.parse.spf); may be repeated",
    )
    parser.add_argument("--time-limit", type=float, metavar="S", help="stop mutmut after S s")
    parser.add_argument("--report-only", action="store_true", help="tabulate the stored results")
    parser.add_argument(
        "--list-survivors", action="store_true", help="print each survivor's name and diff"
    )
    args = parser.parse_args()
    if not MUTMUT.exists():
        print(f"{MUTMUT} is missing: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    if not args.report_only:
        elapsed = run_mutmut(args.module, args.time_limit)
        print(f"\nmutmut ran {elapsed / 60:.1f} min on one worker")
    results = read_results()
    print("\n".join(table(results, args.module)))
    if args.list_survivors:
        for name, status in results.items():
            if status == "survived" and selected(module_of(name), args.module):
                shown = subprocess.run(
                    [str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True
                )
                print(f"\n{shown.stdout.rstrip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
