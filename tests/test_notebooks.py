"""The notebooks, executed for real by papermill in a Jupyter kernel, results read back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from tests.conftest import forms_of
from tests.scenario_baseline import report_of

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def outputs(notebook: Path) -> str:
    executed = nbformat.read(str(notebook), as_version=4)
    texts = []
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts += [data.get(kind, "") for kind in ("text/plain", "text/markdown", "text/html")]
    return "\n".join(texts)


@pytest.mark.timeout(180)
def test_diagnose_notebook_takes_a_pasted_text_and_a_path(tmp_path: Path) -> None:
    pasted = tmp_path / "pasted.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "diagnose_failed_test_mail.ipynb"),
        str(pasted),
        parameters={"text": "530 5.7.0 Must issue a STARTTLS command first", "path": ""},
        progress_bar=False,
        cwd=str(NOTEBOOKS.parent),
    )
    text = outputs(pasted)
    assert "pasted text: starttls_required" in text
    assert "config.port_encryption, smtp.tls" in text

    folder = tmp_path / "folder.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "diagnose_failed_test_mail.ipynb"),
        str(folder),
        parameters={"text": "", "path": str(BOUNCES)},
        progress_bar=False,
        cwd=str(NOTEBOOKS.parent),
    )
    # The second run is about the folder: one diagnosis per file in it, each named by its
    # path with a cause of SPEC section 9, and nothing left of the pasted text.
    from diagnostics.findings import Cause

    folder_text = outputs(folder)
    files = sorted(p for p in BOUNCES.iterdir() if p.suffix != ".yaml")
    causes = "|".join(cause.value for cause in Cause)
    diagnosed = re.findall(rf"^(.+): (?:{causes})$", folder_text, re.MULTILINE)
    assert sorted(diagnosed) == [str(p) for p in files]
    assert folder_text.count("What to do:") == len(files)
    assert "pasted text" not in folder_text


@pytest.mark.timeout(180)
def test_demo_runs_the_audit_notebook_in_the_kernels_loop(tmp_path: Path) -> None:
    from diagnostics.demo import run_demo
    from diagnostics.sandbox.scenariofile import load_scenario

    directory = run_demo(report_dir=tmp_path / "demo")
    report = json.loads((directory / "report.json").read_text())
    # The derived baseline, with what the demo's two faults change in place.
    demo = load_scenario("demo")
    assert [
        (f["check"], f["subject"], f["status"], f["cause"]) for f in report["findings"]
    ] == report_of(demo.config_path(), demo.expect)
    text = outputs(directory / "audit.ipynb")
    assert f"Verdict: fail (6 fail, 2 warn, {report['summary']['pass']} pass, 21 skip)" in text
    assert "allowlist.reachability" in text
    assert (directory / "sandbox.log").read_text().count(
        "redirected to acme-jobs@m.personio.de"
    ) >= 2


def test_an_unknown_notebook_parameter_is_an_error(tmp_path: Path) -> None:
    from diagnostics.demo import AUDIT_NOTEBOOK, declared_parameters, execute

    assert declared_parameters(AUDIT_NOTEBOOK) == {
        "config",
        "sandbox",
        "only",
        "report_dir",
        "timeout_s",
        "ca_file",
        "send_test",
        "fail_on",
        "dns_server",
        "resolve",
        "roundtrip",
        "via",
        "clean",
        "probe_platform",
        "wait_s",
    }
    with pytest.raises(
        ValueError,
        match="has no parameter sandbox_name; it declares: ca_file, clean, config, dns_server, fail_on",
    ):
        execute(AUDIT_NOTEBOOK, tmp_path / "out.ipynb", {"sandbox_name": "healthy"})
    assert not (tmp_path / "out.ipynb").exists()


@pytest.mark.timeout(180)
def test_markup_from_a_banner_is_escaped_in_reports_and_notebook_tables(tmp_path: Path) -> None:
    from diagnostics.demo import run_demo

    directory = run_demo(scenario="markup-banner", report_dir=tmp_path / "markup")
    raw = '<script>alert("banner")</script>'
    report_json = (directory / "report.json").read_text()
    assert r"alert(\"banner\")" in report_json  # the banner is in the evidence, as data
    html = (directory / "report.html").read_text()
    assert raw not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;banner&quot;)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    markdown = (directory / "report.md").read_text()
    assert raw not in markdown
    # CommonMark reads a backslash-escaped "<" as the character, never as a tag: no "<" of the
    # banner's is left unescaped (the cells' own line breaks are the only markup), and no
    # HTML entity makes the file unreadable as plain text.
    assert re.findall(r"(?<!\\)<(?!br>)", markdown) == []
    assert r"\<script>alert(" in markdown and r"\<img src=x" in markdown
    assert "&lt;" not in markdown and "&amp;" not in markdown
    # Rendered by a CommonMark renderer with tables (as GitHub and GitLab render it): text.
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<script" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;alert(&quot;banner&quot;)&lt;/script&gt;" in rendered
    notebook = nbformat.read(str(directory / "audit.ipynb"), as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            rendered = output.get("data", {}).get("text/html", "")
            assert raw not in rendered and "<img src=x" not in rendered


@pytest.mark.timeout(180)
def test_a_password_reaches_no_artefact_of_a_notebook_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import secrets

    from diagnostics.demo import run_demo

    password = "Nb-canary-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("ACME_SMTP_PASSWORD", password)
    # bad-password: the server holds another password, so a refused AUTH is in the run too.
    directory = run_demo(scenario="bad-password", report_dir=tmp_path / "canary")
    captured = capfd.readouterr()
    report = json.loads((directory / "report.json").read_text())
    assert any(
        f["check"] == "smtp.auth" and f["cause"] == "auth_failed" for f in report["findings"]
    )
    texts = {str(p): p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file()}
    texts["stdout+stderr"] = captured.out + captured.err
    assert {Path(p).name for p in texts if p != "stdout+stderr"} >= {
        "audit.ipynb", "report.html", "report.json", "report.md", "junit.xml", "sandbox.log",
    }  # fmt: skip
    for form in forms_of(password):
        assert [name for name, text in texts.items() if form in text] == []


CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "configs"


@pytest.mark.timeout(300)
def test_batch_runs_each_account_and_indexes_them(tmp_path: Path) -> None:
    import io

    from diagnostics.cli import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("platform: {profile: personio, account: acme}\ncompany: {name: Broken\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["batch", str(CONFIGS / "acme.yaml"), str(CONFIGS / "acme-parent-only.yaml"), str(broken),
         "--sandbox", "healthy", "--jobs", "2", "--report-dir", str(tmp_path / "batch")],
        out=out, err=err,
    )  # fmt: skip
    assert code == 1  # the broken file's audit fails (config.schema); the others pass
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split(" (", 1)[0] for line in lines[:3]] == [
        "verdict pass", "verdict pass", "verdict fail",
    ]  # fmt: skip
    index = (tmp_path / "batch" / "index.html").read_text()
    assert index.count("<tr><td>") == 3
    assert '<a href="acme/report.html">' in index and '<a href="broken/report.html">' in index
    for name in ("acme", "acme-parent-only", "broken"):
        assert (tmp_path / "batch" / name / "report.html").exists()
    from diagnostics.report.browser import read_report

    broken_title = next(
        f["title"]
        for f in json.loads((tmp_path / "batch" / "broken" / "report.json").read_text())["findings"]
        if f["status"] == "fail"
    )
    page = read_report(tmp_path / "batch" / "index.html", must_see=["Acme GmbH", broken_title])
    assert page.verdict == "maildiag batch: 3 accounts, 1 need action"
    assert page.unseen == [] and page.blocked_requests == [] and page.script_elements == 0
    rows = [line for line in page.text.splitlines() if line.startswith("Acme GmbH")]
    assert rows and "PASS" in page.text and page.text.count("FAIL") == 1


@pytest.mark.timeout(300)
def test_batch_records_a_run_that_cannot_start_and_goes_on(tmp_path: Path) -> None:
    from diagnostics.batch import run_batch

    runs = run_batch(
        [CONFIGS / "acme.yaml", CONFIGS / "acme-parent-only.yaml"],
        report_dir=tmp_path / "batch", jobs=2, sandbox="no-such-world",
    )  # fmt: skip
    assert [run.verdict for run in runs] == [None, None]
    assert all(run.error and "no-such-world" in run.error for run in runs)
    index = (tmp_path / "batch" / "index.html").read_text()
    assert index.count('<span class="badge status-error">ERROR</span>') == 2
    assert index.count("the audit did not run") == 2


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_parameter_is_typed_and_documented_for_help_notebook(notebook: str) -> None:
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / notebook))
    assert parameters, f"{notebook} declares no parameters"
    for name, spec in parameters.items():
        assert spec["inferred_type_name"] in ("str", "float", "bool"), (notebook, name, spec)
        assert spec["help"].strip(), (notebook, name)
        assert "password" not in name.lower(), (notebook, name)


@pytest.mark.timeout(240)
def test_a_password_reaches_no_papermill_or_ci_log(tmp_path: Path) -> None:
    """The papermill command line (cell outputs logged at DEBUG) on a refused AUTH, and nbval
    as CI runs it, each in its own process: the password is in neither's output or files."""
    import os
    import secrets
    import subprocess
    import sys

    password = "Ci-canary-" + secrets.token_urlsafe(12)
    env = {**os.environ, "ACME_SMTP_PASSWORD": password, "ACME_RETAIL_SMTP_PASSWORD": password}
    bin_dir = Path(sys.executable).parent
    root = NOTEBOOKS.parent
    out = tmp_path / "reports"
    papermill_run = subprocess.run(
        [str(bin_dir / "papermill"), "notebooks/audit.ipynb", str(tmp_path / "audit.ipynb"),
         "-p", "config", "fixtures/configs/acme.yaml", "-p", "sandbox", "bad-password",
         "-p", "report_dir", str(out), "--log-output", "--log-level", "DEBUG",
         "--no-progress-bar"],
        cwd=root, env=env, capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    # The failing verdict fails the papermill run (fail_on="fail"), after the report is written.
    assert papermill_run.returncode == 1, papermill_run.stderr[-2000:]
    assert "AuditFailed: verdict fail" in papermill_run.stderr
    assert "auth_failed" in (out / "report.json").read_text()  # the refused AUTH happened
    assert "Verdict: fail" in papermill_run.stdout + papermill_run.stderr  # cells were logged
    nbval_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
         "--nbval", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "notebooks/audit.ipynb",
         f"--junitxml={tmp_path / 'ci-junit.xml'}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    assert nbval_run.returncode == 0, nbval_run.stdout[-3000:]
    texts = {
        "papermill stdout": papermill_run.stdout,
        "papermill stderr": papermill_run.stderr,
        "nbval stdout": nbval_run.stdout,
        "nbval stderr": nbval_run.stderr,
    }
    texts |= {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    assert {"audit.ipynb", "report.html", "sandbox.log", "ci-junit.xml"} <= {
        Path(name).name for name in texts
    }
    for form in forms_of(password):
        assert [name for name, text in texts.items() if form in text] == []


@pytest.mark.timeout(240)
def test_audit_through_the_notebook_keeps_the_executed_notebook(tmp_path: Path) -> None:
    import io

    from diagnostics.cli import main
    from diagnostics.sandbox.scenariofile import load_scenario

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["audit", str(CONFIGS / "acme.yaml"), "--sandbox", "demo", "--notebook",
         "--report-dir", str(tmp_path / "acme")],
        out=out, err=err,
    )  # fmt: skip
    assert (code, err.getvalue()) == (1, "")
    folder = tmp_path / "acme"
    assert {p.name for p in folder.iterdir()} >= {
        "audit.ipynb", "report.html", "report.json", "report.md", "junit.xml", "sandbox.log",
    }  # fmt: skip
    report = json.loads((folder / "report.json").read_text())
    demo = load_scenario("demo")
    assert [
        (f["check"], f["subject"], f["status"], f["cause"]) for f in report["findings"]
    ] == report_of(demo.config_path(), demo.expect)
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("verdict: fail (6 fail, 2 warn, ")
    assert f"executed notebook: {folder / 'audit.ipynb'}" in printed
    assert "Verdict: fail" in outputs(folder / "audit.ipynb")


@pytest.mark.timeout(240)
def test_audit_through_the_notebook_reports_bad_input_like_the_plain_audit(
    tmp_path: Path,
) -> None:
    import io

    from diagnostics.cli import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("platform: {profile: personio, account: acme}\ncompany: {name: 42}\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["audit", str(broken), "--notebook", "--report-dir", str(tmp_path / "b")], out=out, err=err
    )
    assert code == 2
    assert str(broken) in err.getvalue() and "company" in err.getvalue()
    assert (tmp_path / "b" / "audit.ipynb").exists()  # the run is documented all the same

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["audit", str(CONFIGS / "acme.yaml"), "--notebook", "--only", "smtp.nosuch",
         "--report-dir", str(tmp_path / "c")],
        out=out, err=err,
    )  # fmt: skip
    assert code == 2 and "smtp.nosuch" in err.getvalue()
    assert not (tmp_path / "c").exists()  # refused before anything ran
