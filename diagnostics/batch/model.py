"""One account's run in a batch, as the index shows it and ``index.json`` keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diagnostics.findings import Status

# Verdicts worst first, as the index sorts them; a run that did not happen is worse still.
# What a batch runs: an account file, its report folder, its sandbox scenario ("" for live).
Item = tuple[Path, Path, str]

_GRAVITY = {s.value: rank for rank, s in enumerate(sorted(Status, reverse=True), start=1)}


@dataclass(frozen=True)
class BatchRun:
    """One account's run: where its report is, its verdict, or why it could not run."""

    config: Path
    directory: Path
    verdict: str | None = None
    summary: dict[str, int] | None = None
    error: str | None = None
    company: str = ""
    #: The titles of the account's fail and error findings, in report order.
    to_fix: tuple[str, ...] = ()
    #: The causes of its fail and error findings, each once, in report order.
    causes: tuple[str, ...] = ()
    #: The executed notebook, when one was written for it.
    notebook: Path | None = None
    #: Who ran it: the process, or the Dask worker (and its egress address).
    ran_on: str = ""
    #: How many times it was started (more than once when a worker died under it).
    attempts: int = 1
    #: Taken from an earlier run of the same batch (``--resume``), not run again.
    resumed: bool = False
    #: The account file's fingerprint when it ran: a changed file runs again on resume.
    fingerprint: str = ""
    #: The sandbox scenario it ran in ("" for a live audit).
    scenario: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_action(self) -> bool:
        return self.error is not None or self.verdict in ("fail", "error")

    @property
    def gravity(self) -> int:
        """0 for a run that did not happen, then error, fail, warn, pass, skip."""
        return 0 if self.error is not None else _GRAVITY.get(self.verdict or "", 99)

    @classmethod
    def from_report(
        cls, config: Path, directory: Path, report: dict[str, Any], **more: Any
    ) -> BatchRun:
        """The run whose report folder holds ``report`` (a ``report.json`` document)."""
        failing = [f for f in report["findings"] if f["status"] in ("fail", "error")]
        return cls(
            config=config,
            directory=directory,
            verdict=report["verdict"],
            summary=dict(report["summary"]),
            company=report["company"],
            to_fix=tuple(f"{f['title']} ({f['subject']})" for f in failing),
            causes=tuple(dict.fromkeys(str(f["cause"]) for f in failing if f.get("cause"))),
            **more,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = str(self.config)
        data["directory"] = str(self.directory)
        data["notebook"] = str(self.notebook) if self.notebook else None
        data["to_fix"] = list(self.to_fix)
        data["causes"] = list(self.causes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRun:
        return cls(
            **{
                **data,
                "config": Path(data["config"]),
                "directory": Path(data["directory"]),
                "notebook": Path(data["notebook"]) if data.get("notebook") else None,
                "to_fix": tuple(data.get("to_fix", ())),
                "causes": tuple(data.get("causes", ())),
            }
        )
