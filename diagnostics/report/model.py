"""The report of one run: findings plus what a reader needs to place them."""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from diagnostics import __version__
from diagnostics.findings import Finding, Status, exit_code, verdict

SCHEMA = "maildiag.report/1"
"""The ``schema`` of :meth:`Report.to_dict` (``report.json``): its readers check it."""


@dataclass(frozen=True)
class Report:
    """One audit's findings and where they came from."""

    findings: tuple[Finding, ...]
    account: str
    company: str
    mode: str
    config_file: str | None = None
    scenario: str | None = None
    generated_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )

    @property
    def verdict(self) -> Status:
        return verdict(f.status for f in self.findings)

    @property
    def exit_code(self) -> int:
        return exit_code(f.status for f in self.findings)

    def summary(self) -> dict[str, int]:
        """Count of findings per status, every status present."""
        counts = Counter(f.status for f in self.findings)
        return {status.value: counts.get(status, 0) for status in Status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report read back from ``report.json`` (:meth:`to_dict` output)."""
        return cls(
            findings=tuple(Finding.from_dict(f) for f in data["findings"]),
            account=str(data["account"]),
            company=str(data["company"]),
            mode=str(data["mode"]),
            config_file=data.get("config_file"),
            scenario=data.get("scenario"),
            generated_at=datetime.datetime.fromisoformat(data["generated_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``maildiag.report/1``)."""
        return {
            "schema": SCHEMA,
            "tool": {"name": "maildiag", "version": __version__},
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "mode": self.mode,
            "scenario": self.scenario,
            "config_file": self.config_file,
            "account": self.account,
            "company": self.company,
            "verdict": self.verdict.value,
            "summary": {**self.summary(), "total": len(self.findings)},
            "findings": [f.to_dict() for f in self.findings],
        }
