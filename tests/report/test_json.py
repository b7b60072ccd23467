"""Tests for the JSON report: its schema, atomic writing, reading back, and redaction."""

from __future__ import annotations

import datetime
import errno
import json
import os
from pathlib import Path

import pytest

from diagnostics.errors import ReportError
from diagnostics.findings import Cause, Finding, Status
from diagnostics.report import SCHEMA, Report, read_json, write_json
from diagnostics.report.json import render_json
from diagnostics.secrets import MASK, Secret

WHEN = datetime.datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=datetime.UTC)


def make_report(*findings: Finding) -> Report:
    return Report(
        findings=findings,
        account="acme",
        company="Acme GmbH",
        mode="sandbox",
        config_file="fixtures/configs/acme.yaml",
        scenario="healthy",
        generated_at=WHEN,
    )


FINDINGS = (
    Finding(check="config.schema", status=Status.PASS, subject="Acme GmbH", title="valid"),
    Finding(
        check="smtp.auth",
        status=Status.FAIL,
        subject="Acme Retail GmbH",
        title="Authentication failed",
        detail="535 5.7.8 Authentication credentials invalid",
        evidence={"transcript": ["AUTH PLAIN ********", "535 5.7.8"]},
        cause=Cause.AUTH_FAILED,
        remediation="Enter the mailbox's password.",
        duration_ms=41.25,
    ),
    Finding(check="dns.spf", status=Status.WARN, subject="Acme GmbH", title="soft fail"),
    Finding(
        check="config.port_encryption", status=Status.SKIP, subject="Acme Labs GmbH", title="-"
    ),
    Finding(check="dns.mx", status=Status.PASS, subject="Acme Retail GmbH", title="MX ok"),
)


def test_to_dict_exact() -> None:
    assert make_report(*FINDINGS).to_dict() == {
        "schema": "maildiag.report/1",
        "tool": {"name": "maildiag", "version": "0.1.0"},
        "generated_at": "2025-03-01T09:30:15+00:00",
        "mode": "sandbox",
        "scenario": "healthy",
        "config_file": "fixtures/configs/acme.yaml",
        "account": "acme",
        "company": "Acme GmbH",
        "verdict": "fail",
        "summary": {"skip": 1, "pass": 2, "warn": 1, "fail": 1, "error": 0, "total": 5},
        "findings": [f.to_dict() for f in FINDINGS],
    }
    assert SCHEMA == "maildiag.report/1"


@pytest.mark.parametrize(
    ("statuses", "verdict", "exit_code"),
    [
        ((), "pass", 0),
        ((Status.SKIP, Status.SKIP), "skip", 0),
        ((Status.WARN, Status.PASS), "warn", 0),
        ((Status.ERROR, Status.FAIL, Status.PASS), "error", 1),
    ],
)
def test_summary_counts_every_status(
    statuses: tuple[Status, ...], verdict: str, exit_code: int
) -> None:
    findings = [
        Finding(check="x.y", status=s, subject="Acme GmbH", title="t", cause=Cause.UNKNOWN)
        for s in statuses
    ]
    report = make_report(*findings)
    data = report.to_dict()
    assert data["verdict"] == verdict
    assert report.exit_code == exit_code
    expected = {"skip": 0, "pass": 0, "warn": 0, "fail": 0, "error": 0}
    for status in statuses:
        expected[status.value] += 1
    assert data["summary"] == {**expected, "total": len(statuses)}
    assert list(data["summary"]) == ["skip", "pass", "warn", "fail", "error", "total"]


def test_write_json_round_trip(tmp_path: Path) -> None:
    report = make_report(*FINDINGS)
    target = tmp_path / "reports" / "acme"
    path = write_json(report, target)
    assert path == target / "report.json"
    assert path.read_text(encoding="utf-8") == render_json(report)
    assert read_json(path) == report.to_dict()
    assert sorted(os.listdir(target)) == ["report.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_json_replaces_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "report.json"
    old.write_text('{"schema": "maildiag.report/1", "old": true}\n', encoding="utf-8")
    old_inode = old.stat().st_ino
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        renames.append((str(src), str(dst)))
        # At the moment of the rename the old report is still whole.
        assert json.loads(Path(dst).read_text(encoding="utf-8"))["old"] is True
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = write_json(make_report(*FINDINGS), tmp_path)
    [(src, dst)] = renames
    assert dst == str(old)
    assert Path(src).parent == tmp_path
    assert Path(src).name.startswith(".report.json.")
    assert path.stat().st_ino != old_inode
    assert read_json(path)["summary"]["total"] == 5
    assert "old" not in read_json(path)
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_failed_rename_keeps_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A read-only folder would be the natural failure, but the tests run as root, which ignores
    # permissions: the failing rename cannot be produced otherwise, so it is patched in.
    old = tmp_path / "report.json"
    old.write_text("old report\n", encoding="utf-8")

    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ReportError) as caught:
        write_json(make_report(*FINDINGS), tmp_path)
    assert str(caught.value) == f"cannot write {old}: Permission denied"
    assert isinstance(caught.value.__cause__, OSError)
    assert old.read_text(encoding="utf-8") == "old report\n"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


@pytest.mark.parametrize("below", ["", "sub"])
def test_unwritable_folder_is_a_report_error(tmp_path: Path, below: str) -> None:
    # A report folder that is a file fails even for root, in mkdir or in creating the temp file.
    blocker = tmp_path / "reports"
    blocker.write_text("not a folder\n", encoding="utf-8")
    directory = blocker / below if below else blocker
    with pytest.raises(ReportError) as caught:
        write_json(make_report(*FINDINGS), directory)
    assert str(caught.value).startswith(f"cannot write {directory / 'report.json'}: ")
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"
    assert sorted(os.listdir(tmp_path)) == ["reports"]


def test_unencodable_text_leaves_old_report_and_no_temp(tmp_path: Path) -> None:
    old = tmp_path / "report.json"
    old.write_text("old report\n", encoding="utf-8")
    # A lone surrogate: what the email package makes of undecodable header bytes.
    finding = Finding(check="headers.retention", status=Status.PASS, subject="A", title="\udcff")
    with pytest.raises(ReportError, match=f"^cannot write {old}: "):
        write_json(make_report(finding), tmp_path)
    assert old.read_text(encoding="utf-8") == "old report\n"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": "maildiag.report/2", "findings": []}', "is not a maildiag.report/1 report"),
        ('{"findings": []}', "is not a maildiag.report/1 report"),
        ('["maildiag.report/1"]', "is not a maildiag.report/1 report"),
        ("{not json", "cannot read report"),
    ],
)
def test_read_json_rejects_other_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "report.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=message) as caught:
        read_json(path)
    assert str(path) in str(caught.value)


def test_read_json_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ReportError, match=r"^cannot read report .*absent\.json: "):
        read_json(path)


@pytest.mark.parametrize(
    "value",
    ["Report-Leak-Pw-2291", 'Quote"And\\Slash-Pw-8812'],
    ids=["plain", "json-escaped"],
)
def test_rendered_json_redacts_secrets(tmp_path: Path, value: str) -> None:
    Secret(value, source="env:TEST_REPORT_PASSWORD")
    leaky = Finding(
        check="smtp.auth",
        status=Status.ERROR,
        subject="Acme GmbH",
        title="AUTH crashed",
        detail=f"SMTPAuthenticationError: bad password {value} for jobs@acme.example",
        evidence={"sent": [f"password={value}"]},
        cause=Cause.UNKNOWN,
    )
    text = render_json(make_report(leaky))
    assert value not in text
    assert json.dumps(value)[1:-1] not in text  # nor its JSON-escaped form
    data = json.loads(text)
    assert data["findings"][0]["detail"] == (
        f"SMTPAuthenticationError: bad password {MASK} for jobs@acme.example"
    )
    assert data["findings"][0]["evidence"] == {"sent": [f"password={MASK}"]}
    written = write_json(make_report(leaky), tmp_path).read_text(encoding="utf-8")
    assert written == text
    assert value not in json.loads(written)["findings"][0]["detail"]


def test_a_report_read_back_from_json_is_the_same_report(tmp_path: Path) -> None:
    report = make_report(*FINDINGS)
    again = Report.from_dict(read_json(write_json(report, tmp_path)))
    assert again.to_dict() == report.to_dict()
    assert again.findings[1] == FINDINGS[1]
    assert (again.verdict, again.exit_code, again.generated_at) == (
        Status.FAIL,
        1,
        WHEN.replace(microsecond=0),
    )
