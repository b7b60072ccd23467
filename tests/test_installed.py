"""maildiag as its users run it: built into a wheel, installed into a fresh venv, run from an
empty folder that is not the repository, on account files that live in that folder.

Nothing here imports the checkout: every step is a process of the fresh venv, started in the
user's folder, so a file missing from the wheel, a path resolved against the package instead
of the caller's folder, or an exit code that does not fail a job shows up as it would for a
user. The sandbox is the only mail world (loopback).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# What a checkout holds besides the sources: none of it belongs in a wheel build.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "reports", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", ".sandbox",
)  # fmt: skip
# The user's own account: not acme's names, two SMTP settings, one subcompany without any.
ACCOUNT = ROOT / "fixtures" / "accounts" / "globex.yaml"


@dataclass(frozen=True)
class Installed:
    """A fresh venv with maildiag installed from the wheel, and the user's empty folder."""

    venv: Path
    wheel: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(
        self, folder: Path, *argv: str, timeout: float = 240, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` (its first item a command of the venv) run in ``folder``, as a user would."""
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTEST", "VIRTUAL_ENV", "PYTHON"))
        }
        environ["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
        environ.update(env or {})
        return subprocess.run(
            [self.bin(argv[0]), *argv[1:]],
            cwd=folder,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build a wheel from a copy of the checkout and install it (with its ``jupyter`` extra,
    and the nbval a drift check needs) into a new venv."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCES)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("maildiag-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"maildiag[jupyter] @ {wheel.as_uri()}",
         "pytest", "nbval"],
        check=True,
        timeout=600,
    )  # fmt: skip
    yield Installed(venv, wheel)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The user's folder: empty but for their account files."""
    work = tmp_path / "audits"
    work.mkdir()
    shutil.copyfile(ACCOUNT, work / "globex.yaml")
    return work


def _findings(report: Path) -> set[tuple[str, str, str]]:
    data = json.loads(report.read_text(encoding="utf-8"))
    return {(f["check"], f["subject"], f["status"]) for f in data["findings"]}


def _failing(report: Path) -> set[tuple[str, str, str]]:
    return {f for f in _findings(report) if f[2] in ("fail", "error")}


@pytest.mark.timeout(900)
def test_the_wheel_ships_the_notebooks_scenarios_and_sanitize_file(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in (
        "diagnostics/notebooks/audit.ipynb",
        "diagnostics/notebooks/sanitize.cfg",
        "diagnostics/scenarios/healthy.yaml",
        "diagnostics/scenarios/demo.yaml",
        "diagnostics/configs/acme.yaml",
    ):
        assert name in names, name
    # Test data stays out of the wheel.
    assert not [n for n in names if n.startswith(("tests/", "fixtures/")) or "invalid" in n]


@pytest.mark.timeout(900)
def test_demo_writes_its_report_in_the_users_folder_and_exits_by_its_verdict(
    installed: Installed, folder: Path
) -> None:
    # This process reads the checkout's demo scenario and derives its baseline from the
    # checkout's acme.yaml, which the wheel ships unchanged: what the installed demo must give.
    from diagnostics.sandbox.scenariofile import load_scenario
    from tests.scenario_baseline import report_of

    run = installed.run(folder, "maildiag", "demo")

    # The demo world's two faults are deliberate: the verdict fails, and so does the exit code.
    assert run.returncode == 1, run.stderr[-3000:]
    report = folder / "reports" / "demo" / "report.json"
    demo = load_scenario("demo")
    findings = json.loads(report.read_text(encoding="utf-8"))["findings"]
    assert [(f["check"], f["subject"], f["status"], f["cause"]) for f in findings] == report_of(
        demo.config_path(), demo.expect
    )
    assert (folder / "reports" / "demo" / "audit.ipynb").is_file()
    assert "report: reports/demo/report.html" in run.stdout.splitlines()
    assert "without encryption" not in run.stderr


@pytest.mark.timeout(900)
def test_audit_of_the_users_own_account_in_the_sandbox(installed: Installed, folder: Path) -> None:
    healthy = installed.run(folder, "maildiag", "audit", "globex.yaml", "--sandbox", "healthy")
    assert healthy.returncode == 0, healthy.stdout[-3000:] + healthy.stderr[-2000:]
    assert healthy.stdout.startswith("verdict: pass")
    assert not _failing(folder / "reports" / "globex" / "report.json")

    faulty = installed.run(
        folder, "maildiag", "audit", "globex.yaml", "--sandbox", "egress-ip-missing",
        "--report-dir", "out/egress",
    )  # fmt: skip
    assert faulty.returncode == 1, faulty.stdout[-3000:] + faulty.stderr[-2000:]
    failing = _failing(folder / "out" / "egress" / "report.json")
    assert {check for check, _subject, _status in failing} == {"allowlist.reachability"}
    assert {status for _check, _subject, status in failing} == {"fail"}


@pytest.mark.timeout(900)
def test_batch_from_the_users_folder_with_a_relative_report_dir(
    installed: Installed, folder: Path
) -> None:
    text = (folder / "globex.yaml").read_text(encoding="utf-8")
    for name in ("initech", "umbrella"):
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")

    run = installed.run(
        folder, "maildiag", "batch", "globex.yaml", "initech.yaml", "umbrella.yaml",
        "--sandbox", "healthy", "--report-dir", "out", "--notebooks", "all",
    )  # fmt: skip

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for name in ("globex", "initech", "umbrella"):
        report = folder / "out" / name / "report.json"
        assert json.loads(report.read_text(encoding="utf-8"))["verdict"] == "pass", name
        assert (folder / "out" / name / "audit.ipynb").is_file()  # --notebooks all
    assert (folder / "out" / "index.html").is_file()
    summary = json.loads((folder / "out" / "index.json").read_text(encoding="utf-8"))
    assert summary["verdicts"] == {"pass": 3} and summary["need_action"] == 0


@pytest.mark.timeout(900)
def test_papermill_fails_the_job_on_a_failing_audit(installed: Installed, folder: Path) -> None:
    copied = installed.run(folder, "maildiag", "notebook", "audit", "audit.ipynb")
    assert copied.returncode == 0, copied.stderr
    assert (folder / "audit.ipynb").is_file()

    ok = installed.run(
        folder, "papermill", "--engine", "maildiag", "audit.ipynb", "healthy.ipynb", "-p", "config", "globex.yaml",
        "-p", "sandbox", "healthy", "-p", "report_dir", "reports/healthy",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "without encryption" not in ok.stderr

    failing = installed.run(
        folder, "papermill", "--engine", "maildiag", "audit.ipynb", "failing.ipynb", "-p", "config", "globex.yaml",
        "-p", "sandbox", "egress-ip-missing", "-p", "report_dir", "reports/failing",
    )  # fmt: skip
    assert failing.returncode == 1
    assert "AuditFailed: verdict fail" in failing.stderr
    # Everything is written all the same: the executed notebook and the whole report folder.
    assert (folder / "failing.ipynb").is_file()
    assert _failing(folder / "reports" / "failing" / "report.json")
    assert (folder / "reports" / "failing" / "report.html").is_file()

    never = installed.run(
        folder, "papermill", "--engine", "maildiag", "audit.ipynb", "never.ipynb", "-p", "config", "globex.yaml",
        "-p", "sandbox", "egress-ip-missing", "-p", "report_dir", "reports/never",
        "-p", "fail_on", "never",
    )  # fmt: skip
    assert never.returncode == 0, never.stderr[-3000:]


@pytest.mark.timeout(900)
def test_the_drift_recipe_passes_unchanged_and_fails_after_a_change(
    installed: Installed, folder: Path
) -> None:
    """The README's recipe: commit an executed audit beside the account file, let nbval re-run
    it later, from that folder or from anywhere else."""
    assert installed.run(folder, "maildiag", "notebook", "audit", "audit.ipynb").returncode == 0
    assert installed.run(folder, "maildiag", "notebook", "sanitize", "sanitize.cfg").returncode == 0
    executed = installed.run(
        folder, "papermill", "--engine", "maildiag", "audit.ipynb", "globex-audit.ipynb",
        "-p", "config", "globex.yaml", "-p", "sandbox", "healthy",
        "-p", "report_dir", "reports/globex",
    )  # fmt: skip
    assert executed.returncode == 0, executed.stderr[-3000:]
    # nbval runs the kernel in the notebook's folder, papermill in the caller's: here the same.
    nbval = (
        "pytest", "-p", "no:cacheprovider", "--nbval",
        "--nbval-sanitize-with", f"{folder.name}/sanitize.cfg", f"{folder.name}/globex-audit.ipynb",
    )  # fmt: skip

    unchanged = installed.run(folder.parent, *nbval)
    assert unchanged.returncode == 0, unchanged.stdout[-4000:]

    account = yaml.safe_load((folder / "globex.yaml").read_text(encoding="utf-8"))
    account["company"]["allowlist"] = account["company"]["allowlist"][:1]
    (folder / "globex.yaml").write_text(yaml.safe_dump(account), encoding="utf-8")
    changed = installed.run(folder.parent, *nbval)
    assert changed.returncode == 1, changed.stdout[-4000:]
    # The difference is shown: the committed verdict against today's.
    assert "Cell outputs differ" in changed.stdout
    assert "Verdict: pass (" in changed.stdout and "Verdict: fail (" in changed.stdout
