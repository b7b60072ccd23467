"""``maildiag batch`` at scale: generated accounts across scenarios, each with exactly the
findings its scenario gives an account of its shape; the index and its summary; an
interrupted batch that resumes without redoing what finished; a process that dies.

The expected findings come from tests/scenario_baseline.py (a healthy world's findings,
derived from the account file) with the scenario's ``expect`` entries laid over them, their
subjects renamed as the generated file renames the example's.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from diagnostics.batch import run_batch
from diagnostics.batch.index import causes_across, render_page
from diagnostics.batch.local import audit_accounts
from diagnostics.batch.model import BatchRun
from diagnostics.batch.runner import run_local
from diagnostics.sandbox.generate import generate_accounts, subject_of
from diagnostics.sandbox.scenario import Expectation
from diagnostics.sandbox.scenariofile import load_scenario
from tests.scenario_baseline import baseline_of, expected_findings

# (scenario, how many accounts, shapes): faults whose expectations name the example's subjects
# run on accounts of the example's shape; healthy runs on every shape.
PLAN = (
    ("healthy", 20, ("acme.yaml", "acme-parent-only.yaml", "acme-three-subcompanies.yaml")),
    ("egress-ip-missing", 15, ("acme.yaml",)),
    ("bad-password", 15, ("acme.yaml",)),
)


def _renamed_entries(name: str, index: int) -> list[Expectation]:
    if name == "healthy":
        return []  # healthy is the baseline (tests/test_scenarios.py holds it to that)
    scenario = load_scenario(name)
    return [
        entry.model_copy(
            update={"subject": subject_of(entry.subject, index) if entry.subject else None}
        )
        for entry in scenario.expect
    ]


def _sandbox_generates_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's password variables unset: each world generates its own."""
    for variable in ("ACME_SMTP_PASSWORD", "ACME_RETAIL_SMTP_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)


def _copies(config: Path, count: int) -> list[Path]:
    """``count`` copies of the account file ``config`` beside it: the same SMTP hosts."""
    copies = [config.with_name(f"{config.stem}-copy{n}.yaml") for n in range(1, count + 1)]
    for copy in copies:
        copy.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    return copies


def _findings(directory: Path) -> Counter[tuple[str, str, str, str | None]]:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return Counter((f["check"], f["subject"], f["status"], f["cause"]) for f in report["findings"])


@pytest.mark.timeout(600)
def test_fifty_generated_accounts_across_three_scenarios_get_their_exact_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sandbox_generates_passwords(monkeypatch)
    scenario_of: dict[Path, str] = {}
    index_of: dict[Path, int] = {}
    start = 1
    for name, count, shapes in PLAN:
        for offset, path in enumerate(
            generate_accounts(count, tmp_path / "accounts", shapes=shapes, start=start)
        ):
            scenario_of[path] = name
            index_of[path] = start + offset
        start += count
    configs = list(scenario_of)
    assert len(configs) == 50

    runs = run_batch(
        configs, report_dir=tmp_path / "batch", sandbox=scenario_of, notebooks="none",
        processes=2, jobs=4,
    )  # fmt: skip

    assert [run.config for run in runs] == configs
    assert [run.error for run in runs] == [None] * 50
    for run in runs:
        company = subject_of("Acme GmbH", index_of[run.config])
        expected = expected_findings(
            baseline_of(run.config),
            _renamed_entries(scenario_of[run.config], index_of[run.config]),
            company,
        )
        assert _findings(run.directory) == expected, run.config.name
        assert run.company == company and run.scenario == scenario_of[run.config]
    verdicts = Counter((scenario_of[run.config], run.verdict) for run in runs)
    assert verdicts == {("healthy", "pass"): 20, ("egress-ip-missing", "fail"): 15,
                        ("bad-password", "fail"): 15}  # fmt: skip

    summary = json.loads((tmp_path / "batch" / "index.json").read_text(encoding="utf-8"))
    assert summary["verdicts"] == {"pass": 20, "fail": 30}
    assert summary["need_action"] == 30 and summary["not_run"] == [] and not summary["interrupted"]
    # What most accounts get wrong: every bad-password account fails on auth_failed, every
    # egress-ip-missing one on client_ip_rejected.
    assert summary["causes"]["auth_failed"] == 15
    assert summary["causes"]["client_ip_rejected"] == 15
    page = (tmp_path / "batch" / "index.html").read_text(encoding="utf-8")
    assert "What most accounts get wrong" in page
    for name in ("index-company.html", "index-fix.html"):
        assert (tmp_path / "batch" / name).is_file()


def _run(
    name: str, verdict: str | None, fix: tuple[str, ...] = (), error: str | None = None
) -> BatchRun:
    return BatchRun(
        Path(f"/accounts/{name}.yaml"), Path(f"/batch/{name}"), verdict=verdict, company=name,
        to_fix=fix, causes=("auth_failed",) if fix else (), error=error, summary={},
    )  # fmt: skip


def test_the_index_pages_sort_by_verdict_company_and_what_to_fix() -> None:
    runs = [
        _run("Zeta", "pass"),
        _run("Alpha", "fail", ("Login refused (Alpha)",)),
        _run("Mid", "warn"),
        _run("Beta", None, error="ValueError: no such scenario"),
        _run("Gamma", "fail", ("Allowlist misses 3.65.146.216 (Gamma)",)),
    ]

    def order(by: str) -> list[str]:
        page = render_page(runs, Path("/batch"), by=by)
        return [name for name in ("Alpha", "Beta", "Gamma", "Mid", "Zeta")
                if f"<tr><td>{name}<br>" in page
                for _ in [0]] and sorted(
            ("Alpha", "Beta", "Gamma", "Mid", "Zeta"), key=lambda n: page.index(f"<tr><td>{n}<br>")
        )  # fmt: skip

    assert order("verdict") == ["Beta", "Alpha", "Gamma", "Mid", "Zeta"]  # worst first
    assert order("company") == ["Alpha", "Beta", "Gamma", "Mid", "Zeta"]
    assert order("fix") == ["Gamma", "Alpha", "Beta", "Mid", "Zeta"]  # "Allowlist" < "Login" < ...
    page = render_page(runs, Path("/batch"), by="company")
    assert '<a href="index.html">Verdict</a>' in page and '<a href="index-fix.html">' in page
    assert causes_across(runs) == [("auth_failed", 2)]
    assert "<script" not in page


SCRIPT = """
import sys
from pathlib import Path
from diagnostics.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(600)
def test_an_interrupted_batch_keeps_what_finished_and_resumes_the_rest(tmp_path: Path) -> None:
    configs = generate_accounts(24, tmp_path / "accounts", shapes=("acme.yaml",))
    report_dir = tmp_path / "batch"
    command = [
        sys.executable, "-c", SCRIPT, "batch", *map(str, configs), "--sandbox", "healthy",
        "--report-dir", str(report_dir), "--notebooks", "none", "--processes", "1", "--jobs", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    state = report_dir / "index.json"
    deadline = time.monotonic() + 240
    finished: list[dict[str, object]] = []
    while time.monotonic() < deadline and process.poll() is None:
        if state.is_file():
            try:
                finished = json.loads(state.read_text(encoding="utf-8"))["accounts"]
            except ValueError:
                finished = []  # being replaced (it is written atomically; a rename race)
            if len(finished) >= 3:
                break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in err

    first = json.loads(state.read_text(encoding="utf-8"))
    assert first["interrupted"] is True
    done = {entry["config"] for entry in first["accounts"]}
    assert 3 <= len(done) < 24
    assert set(first["not_run"]) == {str(c) for c in configs} - done
    # Every account the index lists has its whole report folder; what it does not list has none
    # that the resumed run would keep.
    for entry in first["accounts"]:
        folder = Path(entry["directory"])
        assert {p.name for p in folder.iterdir()} >= {
            "report.json",
            "report.html",
            "report.md",
            "junit.xml",
        }
    kept = {entry["config"]: (Path(entry["directory"]) / "report.json").stat().st_mtime_ns
            for entry in first["accounts"]}  # fmt: skip
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert "The batch was interrupted" in page

    resumed = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(state.read_text(encoding="utf-8"))
    assert final["interrupted"] is False and final["not_run"] == []
    assert [entry["config"] for entry in final["accounts"]] == [str(c) for c in configs]
    for entry in final["accounts"]:
        assert entry["resumed"] is (entry["config"] in kept)
        if entry["config"] in kept:  # not audited again
            folder = Path(entry["directory"])
            assert (folder / "report.json").stat().st_mtime_ns == kept[entry["config"]]
    assert final["verdicts"] == {"pass": 24}


@pytest.mark.timeout(600)
def test_only_the_failing_accounts_get_the_executed_notebook_by_default(tmp_path: Path) -> None:
    healthy, failing = generate_accounts(2, tmp_path / "accounts", shapes=("acme.yaml",))
    runs = run_batch(
        [healthy, failing], report_dir=tmp_path / "batch", processes=1,
        sandbox={healthy: "healthy", failing: "egress-ip-missing"},
    )  # fmt: skip
    assert [run.verdict for run in runs] == ["pass", "fail"]
    assert runs[0].notebook is None
    assert not (runs[0].directory / "audit.ipynb").exists()
    assert runs[1].notebook == runs[1].directory / "audit.ipynb"
    assert runs[1].notebook.is_file()
    page = (tmp_path / "batch" / "index.html").read_text(encoding="utf-8")
    assert f'<a href="{failing.stem}/audit.ipynb">notebook</a>' in page


@pytest.mark.timeout(600)
def test_a_process_killed_mid_batch_loses_no_account_and_its_accounts_run_again(
    tmp_path: Path,
) -> None:
    configs = generate_accounts(12, tmp_path / "accounts", shapes=("acme.yaml",))
    items = [(config, tmp_path / "batch" / config.stem, "healthy") for config in configs]
    runs: list[BatchRun] = []
    killed = 0
    for run in run_local(items, jobs=2, per_host=4, processes=2):
        runs.append(run)
        if not killed:
            # The first account is back: both processes hold accounts handed out to them.
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed = victim.pid
    assert sorted(run.config for run in runs) == sorted(configs)  # each once
    assert [(run.error, run.verdict) for run in runs] == [(None, "pass")] * 12
    again = [run for run in runs if run.attempts == 2]
    # What the killed process held ran again elsewhere, and only that.
    assert again and all(run.ran_on != f"process {killed}" for run in again)
    assert all(run.attempts == 1 for run in runs if run not in again)
    for run in runs:
        assert (run.directory / "report.json").is_file()
    page = render_page(runs, tmp_path / "batch")
    assert page.count("ran 2 times") == len(again)


@pytest.mark.timeout(300)
def test_an_audit_waiting_for_its_smtp_host_keeps_no_place_from_other_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sandbox_generates_passwords(monkeypatch)
    first, other = generate_accounts(2, tmp_path / "accounts", shapes=("acme.yaml",))
    # Three account files on the same SMTP hosts, then one on hosts of its own.
    same = [first, *_copies(first, 2)]
    items = [(config, tmp_path / "batch" / config.stem, "healthy") for config in (*same, other)]
    done: list[BatchRun] = []

    asyncio.run(audit_accounts(items, on_done=done.append, jobs=2, per_host=1))

    assert [(run.error, run.verdict) for run in done] == [(None, "pass")] * 4
    # One audit at a time per host: the copies run one after the other. Waiting for their
    # host, they hold none of the two places, so the other account ran beside the first
    # and ended among the first two (behind two copies, it would have been third at best).
    assert other in [run.config for run in done][:2]


@pytest.mark.timeout(300)
def test_the_accounts_of_one_smtp_host_run_in_one_process_so_the_bound_holds_batch_wide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sandbox_generates_passwords(monkeypatch)
    first, *others = generate_accounts(4, tmp_path / "accounts", shapes=("acme.yaml",))
    same = [first, *_copies(first, 3)]
    # The first process is handed four accounts (two jobs and two more) before the second
    # gets any: without regard to hosts, the copies after the first four would go there.
    order = [first, *others, *same[1:]]
    items = [(config, tmp_path / "batch" / config.stem, "healthy") for config in order]

    runs = list(run_local(items, jobs=2, per_host=1, processes=2))

    assert [(run.error, run.verdict) for run in runs] == [(None, "pass")] * 7
    by_config = {run.config: run.ran_on for run in runs}
    assert len({by_config[config] for config in same}) == 1
