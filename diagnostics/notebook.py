"""What the audit notebook calls: one function that runs an audit inside the kernel's own
event loop (top-level ``await``; no ``asyncio.run``), writes the report folder, and hands back
the tables the notebook displays. The notebook itself holds parameters and display only.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnostics.audit import AuditResult, run_audit, write_report
from diagnostics.context import Timeouts
from diagnostics.redact import RedactingFilter
from diagnostics.sandbox.scenario import load_scenario
from diagnostics.sandbox.world import Sandbox

if TYPE_CHECKING:
    import pandas

    from diagnostics.report.tables import Chart, Message, StyledTable

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NotebookAudit:
    """An audit's result, with what the notebook shows."""

    result: AuditResult
    report_path: Path

    @property
    def verdict_line(self) -> str:
        from diagnostics.report.html import counts_line

        report = self.result.report
        return f"Verdict: {report.verdict.value} ({counts_line(report.findings)})"

    def findings_table(self) -> pandas.DataFrame:
        from diagnostics.report.tables import findings_frame

        return findings_frame(self.result.report.findings)

    def resolution_table(self) -> pandas.DataFrame:
        """The sender resolution, from the sender.resolution findings (empty when not run)."""
        import pandas

        from diagnostics.report.tables import RESOLUTION_COLUMNS

        rows = [
            {column: f.evidence.get(column, "") for column in RESOLUTION_COLUMNS}
            for f in self.result.report.findings
            if f.check == "sender.resolution" and "position" in f.evidence
        ]
        return pandas.DataFrame(rows, columns=list(RESOLUTION_COLUMNS))

    def to_fix(self) -> StyledTable | Message:
        """The ``fail``, ``error`` and ``warn`` findings, worst first, with their remediation
        (a sentence saying so when there is none)."""
        from diagnostics.findings import Status
        from diagnostics.report.tables import Message, findings_frame, styled

        findings = sorted(
            (f for f in self.result.report.findings if f.status >= Status.WARN),
            key=lambda f: -f.status.rank,
        )
        if not findings:
            return Message("Nothing to fix: no check failed or warned.")
        frame = findings_frame(findings)[["status", "check", "subject", "title", "remediation"]]
        return styled(frame, name="to_fix")

    def findings(self) -> StyledTable:
        """Every finding, status coloured, with its remediation."""
        from diagnostics.report.tables import findings_frame, styled

        frame = findings_frame(self.result.report.findings)
        return styled(
            frame[["status", "check", "subject", "title", "remediation"]], name="findings"
        )

    def flow_tables(self) -> list[tuple[str, StyledTable]]:
        """One styled findings table per flow (configuration, outbound, inbound, sender), with
        the flow's heading, in report order."""
        from diagnostics.report.html import FLOWS, group_by_flow
        from diagnostics.report.tables import findings_frame, styled

        columns = ["status", "check", "subject", "title", "cause"]
        return [
            (FLOWS[flow], styled(findings_frame(members)[columns], name=f"flow_{flow}"))
            for flow, members in group_by_flow(self.result.report.findings)
        ]

    def status_by_company(self) -> StyledTable:
        """The worst status per (sub)company and flow, coloured: the account at a glance."""
        from diagnostics.report.tables import status_matrix, styled

        return styled(status_matrix(self.result.report.findings), name="status_by_company")

    def steps_table(self) -> pandas.DataFrame:
        """Every SMTP session's timed steps (resolve, connect, banner, EHLO, STARTTLS, AUTH...)."""
        from diagnostics.report.tables import steps_frame

        return steps_frame(self.result.report.findings)

    def steps_chart(self) -> Chart | None:
        """A bar per SMTP session, one segment per step (None when no session ran)."""
        from diagnostics.report.tables import steps_chart

        return steps_chart(self.steps_table())

    def timings_table(self) -> pandas.DataFrame:
        import pandas

        rows: list[dict[str, Any]] = [
            {"check": f.check, "subject": f.subject, "duration_ms": round(f.duration_ms, 1)}
            for f in self.result.report.findings
        ]
        return pandas.DataFrame(rows, columns=["check", "subject", "duration_ms"])


@contextlib.contextmanager
def _sandbox_log(path: Path) -> Any:
    """The sandbox's servers log to a file, not into whichever cell happens to run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(RedactingFilter())
    loggers = [logging.getLogger("diagnostics.sandbox"), logging.getLogger("mail.log")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, (propagate, level) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()


async def run_notebook_audit(
    *,
    config: str,
    sandbox: str = "",
    only: str = "",
    report_dir: str = "",
    timeout_s: float = 0,
    ca_file: str = "",
    send_test: bool = False,
) -> NotebookAudit:
    """Audit ``config`` (in the sandbox world ``sandbox`` when given) and write the report folder.

    ``only`` is a comma-separated list of checks or families; ``timeout_s`` (0: the defaults)
    bounds every network step; ``ca_file`` adds CA certificates (PEM) to the trust store;
    ``send_test`` sends one test message per SMTP setting, from the custom address to itself.
    """
    base = _base(config)
    config_path = base / config
    directory = base / (report_dir or f"reports/{Path(config).stem}")
    selection = [part.strip() for part in only.split(",") if part.strip()] or None
    timeouts = None
    if timeout_s:
        step = float(timeout_s)
        timeouts = Timeouts(
            dns=step, connect=step, banner=step, command=step, data=step, check=step * 12
        )
    async with contextlib.AsyncExitStack() as stack:
        world = None
        if sandbox:
            stack.enter_context(_sandbox_log(directory / "sandbox.log"))
            world = await stack.enter_async_context(Sandbox(load_scenario(sandbox)))
        result = await run_audit(
            config_path,
            sandbox=world,
            only=selection,
            timeouts=timeouts,
            ca_file=base / ca_file if ca_file else None,
            send_test=bool(send_test),
        )
    path = write_report(result.report, directory)
    return NotebookAudit(result, path.relative_to(base) if path.is_relative_to(base) else path)


def _base(config: str) -> Path:
    """Where relative paths start: the working directory, or the project's root when the
    notebook runs from ``notebooks/`` (as nbval runs it) and the file is not found there."""
    if Path(config).is_absolute() or Path(config).exists() or not (ROOT / config).exists():
        return Path.cwd()
    return ROOT
