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

from diagnostics.audit import AuditResult, audit, write_report
from diagnostics.errors import AuditFailed
from diagnostics.options import AuditOptions, parse_nameserver, parse_static_hosts
from diagnostics.redact import RedactingFilter
from diagnostics.sandbox.scenariofile import load_scenario

if TYPE_CHECKING:
    import pandas

    from diagnostics.report.tables import Chart, Message, StyledTable

FAIL_ON = ("fail", "warn", "never")


@dataclass(frozen=True)
class NotebookAudit:
    """An audit's result, with what the notebook shows."""

    result: AuditResult
    report_path: Path
    #: The least grave status that fails the run: "fail" (fail or error), "warn", or "never".
    fail_on: str = "fail"

    def raise_for_verdict(self) -> None:
        """Raise :class:`AuditFailed` when the verdict reaches ``fail_on`` (the notebook's last
        cell calls it, so that papermill exits non-zero on a failing setup)."""
        from diagnostics.findings import Status
        from diagnostics.report.html import counts_line

        report = self.result.report
        if self.fail_on != "never" and report.verdict >= Status(self.fail_on):
            raise AuditFailed(
                report.verdict.value,
                self.fail_on,
                counts_line(report.findings),
                self.report_path.parent / "report.html",
            )

    @property
    def verdict_line(self) -> str:
        from diagnostics.report.html import counts_line

        report = self.result.report
        return f"Verdict: {report.verdict.value} ({counts_line(report.findings)})"

    def findings_table(self) -> pandas.DataFrame:
        from diagnostics.report.tables import findings_frame

        return findings_frame(self.result.report.findings)

    def roundtrips(self) -> pandas.DataFrame:
        """Each round trip (sandbox, or live with ``roundtrip``): what was sent, where it went,
        how long it took and what came back."""
        from diagnostics.report.tables import roundtrip_frame

        return roundtrip_frame(self.result.report.findings)

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
        """What to fix: the ``fail``, ``error`` and ``warn`` findings folded by root cause
        (one row per cause and fix, with every check, (sub)company and place it applies to),
        worst first, with the remediation (a sentence saying so when there is none)."""
        from diagnostics.report.grouping import group_by_root_cause
        from diagnostics.report.tables import Message, problems_frame, styled

        problems = sorted(
            group_by_root_cause(self.result.report.findings), key=lambda p: -p.status.rank
        )
        if not problems:
            return Message("Nothing to fix: no check failed or warned.")
        frame = problems_frame(problems)
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
    fail_on: str = "fail",
    dns_server: str = "",
    resolve: str = "",
    roundtrip: bool = False,
    via: str = "mx",
    clean: bool = False,
    probe_platform: bool = False,
    wait_s: float = 0,
) -> NotebookAudit:
    """Audit ``config`` (in the sandbox world ``sandbox`` when given) and write the report folder.

    ``only`` is a comma-separated list of checks or families; ``timeout_s`` (0: the defaults)
    bounds every network step; ``ca_file`` adds CA certificates (PEM) to the trust store;
    ``send_test`` sends one test message per SMTP setting, from the custom address to itself;
    ``dns_server`` (``ADDRESS[:PORT]``) replaces the system's resolver of a live audit and
    ``resolve`` (``HOST:ADDRESS``, comma-separated) overrides where hosts are connected to, as
    ``maildiag audit --dns-server/--resolve`` do; ``roundtrip`` (with ``via``, ``clean``,
    ``wait_s``) and ``probe_platform`` are ``maildiag audit --roundtrip/--probe-platform``;
    ``fail_on`` (``fail``, ``warn`` or ``never``) is checked here, before anything runs, and
    applied by :meth:`NotebookAudit.raise_for_verdict`.
    """
    if fail_on not in FAIL_ON:
        raise ValueError(
            f"parameter fail_on: expected one of {', '.join(FAIL_ON)}, found {fail_on!r}"
        )
    # Relative paths start in the kernel's working folder: where papermill was run (it starts
    # the kernel there), nbval's notebook folder, or the CLI's caller (which passes them absolute).
    if config:
        config_path = Path(config)
    elif sandbox:
        config_path = load_scenario(sandbox).config_path()
    else:
        raise ValueError(
            "parameter config: expected the account's YAML file (or sandbox, to audit the "
            'scenario\'s example account), found ""'
        )
    directory = Path(report_dir or f"reports/{config_path.stem}")
    selection = tuple(part.strip() for part in only.split(",") if part.strip()) or None
    options = AuditOptions(
        config=config_path,
        sandbox=sandbox,
        only=selection,
        report_dir=directory,
        timeout=float(timeout_s) or None,
        ca_file=Path(ca_file) if ca_file else None,
        send_test=bool(send_test),
        dns_server=parse_nameserver(dns_server),
        static_hosts=parse_static_hosts(
            part.strip() for part in resolve.split(",") if part.strip()
        ),
        roundtrip=bool(roundtrip),
        via=via,
        clean=bool(clean),
        probe_platform=bool(probe_platform),
        wait=float(wait_s) or None,
    )
    result = await audit(options, sandbox_log=lambda: _sandbox_log(directory / "sandbox.log"))
    path = write_report(result.report, directory)
    return NotebookAudit(result, path, fail_on)
