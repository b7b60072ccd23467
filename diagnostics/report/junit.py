"""The JUnit report (``junit.xml``): one testcase per finding, for CI dashboards.

``fail`` findings are failures, ``error`` findings (the check could not run) are errors,
``skip`` findings are skipped; a ``warn`` finding passes and carries its text in
``system-out``. Built with ElementTree, which escapes; characters XML 1.0 forbids are replaced
first (see :func:`~diagnostics.report.html.clean`), and every value is redacted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.findings import Finding, Status
from diagnostics.report.html import clean
from diagnostics.report.json import write_atomic

if TYPE_CHECKING:
    from diagnostics.report.model import Report

__all__ = ["SUITE_NAME", "render_junit", "write_junit"]

SUITE_NAME = "maildiag"


def _seconds(duration_ms: float) -> str:
    return f"{duration_ms / 1000:.3f}"


def _body(finding: Finding) -> str:
    parts = [finding.detail]
    if finding.remediation:
        parts.append(f"Remediation: {finding.remediation}")
    return clean("\n\n".join(p for p in parts if p))


def _testcase(finding: Finding) -> ET.Element:
    case = ET.Element(
        "testcase",
        {
            "classname": clean(finding.check),
            "name": clean(f"{finding.subject}: {finding.title}"),
            "time": _seconds(finding.duration_ms),
        },
    )
    if finding.status in (Status.FAIL, Status.ERROR):
        tag = "failure" if finding.status is Status.FAIL else "error"
        outcome = ET.SubElement(
            case,
            tag,
            {
                "message": clean(finding.title),
                "type": clean(finding.cause.value if finding.cause else "unknown"),
            },
        )
        outcome.text = _body(finding)
    elif finding.status is Status.SKIP:
        ET.SubElement(case, "skipped", {"message": clean(finding.title)})
    elif finding.status is Status.WARN:
        body = _body(finding)
        out = clean(f"WARN: {finding.title}")
        ET.SubElement(case, "system-out").text = f"{out}\n\n{body}" if body else out
    return case


def render_junit(report: Report) -> str:
    """The report as JUnit XML: ``<testsuites>`` holding one ``<testsuite name="maildiag">``."""
    summary = report.summary()
    total_time = _seconds(sum(f.duration_ms for f in report.findings))
    counts = {
        "tests": str(len(report.findings)),
        "failures": str(summary[Status.FAIL.value]),
        "errors": str(summary[Status.ERROR.value]),
        "skipped": str(summary[Status.SKIP.value]),
        "time": total_time,
    }
    root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": SUITE_NAME,
            **counts,
            "timestamp": report.generated_at.isoformat(timespec="seconds"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("account", report.account),
        ("company", report.company),
        ("mode", report.mode),
        ("scenario", report.scenario or ""),
        ("config_file", report.config_file or ""),
        ("verdict", report.verdict.value),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": clean(value)})
    suite.extend(_testcase(f) for f in report.findings)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: Report, directory: Path) -> Path:
    """Write ``junit.xml`` into ``directory`` atomically; return its path."""
    return write_atomic(directory / "junit.xml", render_junit(report))
