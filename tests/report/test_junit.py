"""Tests for the JUnit report: it parses, counts right, survives control characters, redacts."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from diagnostics.report.junit import render_junit, write_junit
from tests.report.test_html import HOSTILE, make_report


def parse() -> ET.Element:
    # Our own output, not untrusted input: the test is that ElementTree can read it.
    return ET.fromstring(render_junit(make_report()).encode("utf-8"))  # noqa: S314


def test_counts() -> None:
    root = parse()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    expected = {"tests": "8", "failures": "4", "errors": "1", "skipped": "1", "time": "1.541"}
    assert {k: suite.get(k) for k in expected} == expected
    assert suite.get("name") == "maildiag"
    assert len(suite.findall("testcase")) == 8
    assert len(suite.findall("testcase/failure")) == 4
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 1


def test_testcases() -> None:
    cases = parse().findall("testsuite/testcase")
    assert [c.get("classname") for c in cases][:3] == ["config.schema", "smtp.auth", "smtp.connect"]
    auth = cases[1]
    assert auth.get("name") == "Acme GmbH: Authentication failed"
    assert auth.get("time") == "0.041"
    failure = auth.find("failure")
    assert failure is not None
    assert failure.get("message") == "Authentication failed"
    assert failure.get("type") == "auth_failed"
    assert failure.text == (
        "535 5.7.8 invalid for password ********\n\nRemediation: Enter the mailbox's password."
    )
    assert cases[0].find("failure") is None
    assert cases[4].findtext("system-out") == "WARN: soft fail"


def test_hostile_text_round_trips_with_control_character_replaced() -> None:
    connect = parse().findall("testsuite/testcase")[2]
    shown = HOSTILE.replace("\x07", "\ufffd")
    assert connect.get("name") == f"Acme Retail GmbH: {shown}"
    assert connect.get("time") == "1.500"
    error = connect.find("error")
    assert error is not None
    assert error.get("message") == shown
    assert error.text == f"{shown}\n\nRemediation: Open port 587 | 465 for the platform."
    assert "<script" not in render_junit(make_report())


def test_no_secret() -> None:
    assert "canary-secret-123" not in render_junit(make_report())


def test_write_junit_replaces_atomically(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text("old", encoding="utf-8")
    path = write_junit(make_report(), tmp_path)
    assert path == tmp_path / "junit.xml"
    assert path.read_text(encoding="utf-8") == render_junit(make_report())
    assert os.listdir(tmp_path) == ["junit.xml"]
