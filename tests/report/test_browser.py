"""report.html in a real headless Chromium: what a reader sees, and that the page does nothing
but show itself (no request, script, dialog or console error).

The reports are written by an in-process audit of a sandbox scenario (no papermill), run to
completion with asyncio.run before the browser starts. The tests are plain sync functions:
Playwright's sync API refuses a thread whose asyncio loop is running. Chromium loads the
report's file:// URL only; every other request is aborted inside the browser.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from pathlib import Path

import pytest

from diagnostics.audit import run_audit, write_report
from diagnostics.cli import main
from diagnostics.errors import DiagnosticsError, ReportError
from diagnostics.findings import Status
from diagnostics.report.browser import (
    ENV_VAR,
    BrowserUnavailable,
    read_report,
    require_browser,
    screenshot,
)
from diagnostics.report.html import group_by_flow, verdict_line, worst_by_subject
from diagnostics.report.model import Report
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "fixtures" / "configs" / "acme.yaml"
BANNER_SCRIPT = '<script>alert("banner")</script>'
BANNER_IMG = "<img src=x onerror=alert(1)>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def audited(scenario: str, directory: Path) -> tuple[Report, Path]:
    """Audit acme.yaml in the sandbox world of ``scenario``; the report and its report.html."""

    async def audit() -> Report:
        world = Sandbox(load_scenario(scenario), state_dir=directory / "state", environ={})
        async with world:
            result = await run_audit(ACME, sandbox=world)
        assert result.config_error is None
        return result.report

    report = asyncio.run(audit())
    write_report(report, directory / "report")
    html = directory / "report" / "report.html"
    assert html.is_file()
    return report, html


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_demo_report_shows_its_verdict_first_and_every_failure(tmp_path: Path) -> None:
    report, html = audited("demo", tmp_path)
    failing = [f for f in report.findings if f.status in (Status.FAIL, Status.ERROR)]
    # The demo's deliberate faults: the input of this test is what the scenario promises.
    assert sorted({f.check for f in failing}) == [
        "allowlist.reachability",
        "headers.dkim",
        "headers.retention",
    ]
    titles = sorted({f.title for f in failing})

    page = read_report(html, must_see=titles)

    assert (
        page.verdict
        == verdict_line(report)
        == "Verdict: fail — 2 problems to fix, found by 6 checks"
    )
    assert page.text.startswith(page.verdict + "\n")
    assert page.tag_counts["h1"] == 1
    assert page.verdict_top is not None
    assert 0 <= page.verdict_top < page.viewport[1] == 900
    assert page.verdict_in_first_viewport
    assert page.unseen == []
    for title in titles:
        assert title in page.text
    assert page.blocked_requests == []
    assert page.console_errors == []
    assert page.dialogs == []
    assert page.script_elements == 0
    assert page.title == "maildiag report: Acme GmbH"
    assert report.company == "Acme GmbH"


def test_markup_in_a_banner_is_shown_as_text_and_never_runs(tmp_path: Path) -> None:
    report, html = audited("markup-banner", tmp_path)
    # The greeting is quoted in the details of the smtp.connect findings; they passed, so
    # they are folded away under "N passed": the reader sees it once the folds are open.
    quoting = {f.check for f in report.findings if BANNER_SCRIPT + BANNER_IMG in f.detail}
    assert "smtp.connect" in quoting

    folded = read_report(html, must_see=[BANNER_SCRIPT])
    assert folded.unseen == [BANNER_SCRIPT]
    page = read_report(html, must_see=[BANNER_SCRIPT, BANNER_IMG], unfold=True)

    assert BANNER_SCRIPT in page.text
    assert BANNER_IMG in page.text
    assert page.unseen == []
    assert page.dialogs == []
    assert page.script_elements == 0
    assert "script" not in page.tag_counts
    assert "img" not in page.tag_counts
    assert page.blocked_requests == []
    assert page.console_errors == []


def test_a_healthy_report_passes_and_shows_no_fail_badge(tmp_path: Path) -> None:
    report, html = audited("healthy", tmp_path)

    page = read_report(html, must_see=["Nothing: no check failed."])

    assert report.verdict is Status.PASS
    assert page.verdict == verdict_line(report) == "Verdict: pass — nothing needs action"
    assert page.unseen == []
    assert re.findall(r"\b(?:FAIL|ERROR)\b", page.text) == []
    # Folded: a PASS badge per flow heading and per cell of the at-a-glance table, nothing else.
    groups = group_by_flow(report.findings)
    glance = sum(
        status is Status.PASS
        for row in worst_by_subject(report.findings).values()
        for status in row.values()
    )
    assert page.text.count("PASS") == len(groups) + glance
    folds = []
    for _, members in groups:
        passed = sum(f.status is Status.PASS for f in members)
        skipped = sum(f.status is Status.SKIP for f in members)
        parts = [f"{passed} passed"] * bool(passed) + [f"{skipped} skipped"] * bool(skipped)
        folds.append(" and ".join(parts))
    assert [line for line in page.text.splitlines() if " passed" in line] == folds
    unfolded = read_report(html, unfold=True)
    assert unfolded.text.count("PASS") == len(groups) + glance + report.summary()["pass"]
    assert page.blocked_requests == []


def test_the_reader_records_what_a_hostile_page_tries(tmp_path: Path) -> None:
    """The detectors the report tests rely on: each one sees what it is there to see."""
    hostile = tmp_path / "hostile.html"
    hostile.write_text(
        "<!DOCTYPE html><html><head><title>hostile</title>"
        '<link rel="stylesheet" href="https://assets.example/site.css"></head><body>'
        "<h1>first</h1><img src=pixel.png>"
        "<details><summary>more</summary><p>folded away</p></details>"
        '<p style="visibility: hidden">ghost</p><p style="display: none">gone</p>'
        "<div>in a cell<details><summary>evidence</summary>in a cell</details></div>"
        '<script>console.error("boom"); alert("hi")</script></body></html>',
        encoding="utf-8",
    )

    page = read_report(
        hostile, must_see=["first", "folded away", "ghost", "gone", "in a cell", "not there"]
    )

    assert page.verdict == "first"
    assert page.unseen == ["folded away", "ghost", "gone", "not there"]
    assert page.text.split() == ["first", "more", "in", "a", "cell", "evidence"]
    assert sorted(page.blocked_requests) == [
        (tmp_path / "pixel.png").resolve().as_uri(),
        "https://assets.example/site.css",
    ]
    assert page.dialogs == ["hi"]
    assert page.script_elements == 1
    assert page.tag_counts["img"] == 1
    assert "boom" in page.console_errors


def test_screenshot_writes_a_png_of_the_first_screen(tmp_path: Path) -> None:
    _report, html = audited("demo", tmp_path)
    target = tmp_path / "shots" / "report.png"

    assert screenshot(html, target, width=800, height=600) == target

    assert png_size(target.read_bytes()) == (800, 600)
    assert [p.name for p in target.parent.iterdir()] == ["report.png"]  # no temp file left


@pytest.mark.timeout(180)
def test_demo_screenshot_end_to_end(tmp_path: Path) -> None:
    png = tmp_path / "demo-report.png"
    out, err = io.StringIO(), io.StringIO()

    code = main(
        ["demo", "--report-dir", str(tmp_path / "demo"), "--screenshot", str(png)],
        out=out,
        err=err,
    )

    # `maildiag demo` exits by its verdict, as audit does: the demo world's faults fail it.
    assert code == 1, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("verdict: fail (6 fail, 2 warn, ")
    assert lines[-1] == f"screenshot: {png}"
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert png_size(data) == (1280, 900)
    assert (tmp_path / "demo" / "report.html").is_file()
    # Rendered, not blank: the verdict band of a failing report at the top of the picture,
    # its pink background right of the text and its red left border.
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        assert rgb.getpixel((1200, 40)) == (0xFD, 0xEC, 0xEE)
        assert rgb.getpixel((36, 60)) == (0xB0, 0x00, 0x20)


def test_a_missing_chromium_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-chromium"
    monkeypatch.setenv(ENV_VAR, str(missing))
    html = tmp_path / "report.html"
    html.write_text("<!DOCTYPE html><title>t</title><h1>x</h1>", encoding="utf-8")

    with pytest.raises(BrowserUnavailable, match=r"apt-get install chromium") as raised:
        read_report(html)
    assert str(missing) in str(raised.value)
    assert isinstance(raised.value, ReportError)
    assert isinstance(raised.value, DiagnosticsError)
    with pytest.raises(BrowserUnavailable, match=r"apt-get install chromium"):
        screenshot(html, tmp_path / "shot.png")
    assert not (tmp_path / "shot.png").exists()

    # The command line checks before running the notebook, and exits 2 with the message.
    out, err = io.StringIO(), io.StringIO()
    png = tmp_path / "demo.png"
    code = main(
        ["demo", "--report-dir", str(tmp_path / "demo"), "--screenshot", str(png)],
        out=out,
        err=err,
    )
    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("maildiag: $MAILDIAG_CHROMIUM is ")
    assert "apt-get install chromium" in err.getvalue()
    assert not png.exists()
    assert not (tmp_path / "demo").exists()


def test_no_chromium_on_path_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        BrowserUnavailable, match=r"no Chromium found .*\(apt-get install chromium\)"
    ):
        require_browser()


def test_a_missing_playwright_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    with pytest.raises(BrowserUnavailable, match=re.escape("pip install -e '.[browser]'")):
        require_browser()
