"""Notebook kernels as a Jupyter user meets them: no transport warning in the terminal of a
papermill run maildiag makes (or of `papermill --engine maildiag`), and an executed audit
notebook renders to HTML with `jupyter nbconvert` (the `jupyter` extra)."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from diagnostics.demo import AUDIT_NOTEBOOK
from diagnostics.kernels import kernel_config

BIN = Path(sys.executable).parent
KERNEL_WARNING = "running over TCP without encryption"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run(*command: str | Path, cwd: Path) -> Run:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """`maildiag demo --report-dir out` run by a user in an empty folder."""
    folder = tmp_path_factory.mktemp("user")
    return run(BIN / "maildiag", "demo", "--report-dir", "out", cwd=folder), folder / "out"


def test_kernels_are_asked_for_transport_encryption() -> None:
    assert kernel_config().KernelManager.transport_encryption == "auto"


def test_a_demo_run_prints_no_kernel_warning(demo: tuple[Run, Path]) -> None:
    result, out = demo
    assert result.code == 1, result.err  # the demo scenario's faults are deliberate
    assert (out / "audit.ipynb").exists()
    assert KERNEL_WARNING not in result.err
    assert "IPKernelApp" not in result.err


def test_nbconvert_renders_the_executed_audit_notebook(
    demo: tuple[Run, Path], tmp_path: Path
) -> None:
    _, out = demo
    result = run(
        BIN / "jupyter", "nbconvert", "--to", "html", out / "audit.ipynb",
        "--output-dir", tmp_path, cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    page = (tmp_path / "audit.html").read_text(encoding="utf-8")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "fail"
    # The verdict line the notebook printed, as the page shows it.
    verdict = f"Verdict: fail ({report['summary']['fail']} fail"
    assert html.escape(verdict) in page


def test_papermill_run_directly_is_quiet_with_the_maildiag_engine(tmp_path: Path) -> None:
    command = [
        BIN / "papermill", AUDIT_NOTEBOOK, tmp_path / "audit.ipynb",
        "-p", "sandbox", "healthy", "-p", "report_dir", tmp_path / "report", "--no-progress-bar",
    ]  # fmt: skip
    quiet = run(*command, "--engine", "maildiag", cwd=tmp_path)
    assert quiet.code == 0, quiet.err
    assert KERNEL_WARNING not in quiet.err
    assert json.loads((tmp_path / "report" / "report.json").read_text())["verdict"] == "pass"
    # papermill's own engine leaves the kernel unencrypted, and the kernel says so.
    plain = run(*command, cwd=tmp_path)
    assert plain.code == 0, plain.err
    assert KERNEL_WARNING in plain.err
