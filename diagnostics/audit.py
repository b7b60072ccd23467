"""An audit: load one account file, build the context (live or sandbox), run the checks,
and write the report folder.

:func:`audit` runs what an :class:`~diagnostics.options.AuditOptions` asks for, whoever
asks (the command line, the audit notebook, ``diagnose --confirm``): it is the one place that
starts the sandbox and expands ``--timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnostics.checks.config import schema_failures
from diagnostics.config import load_config
from diagnostics.context import Context, Timeouts, live_resolver, named_resolver, system_trust
from diagnostics.errors import ConfigError
from diagnostics.model.account import AccountConfig
from diagnostics.options import AuditOptions
from diagnostics.registry import run_checks, select
from diagnostics.report.json import write_json
from diagnostics.report.model import Report
from diagnostics.roundtrip import RoundTripOptions
from diagnostics.sandbox.world import Sandbox


@dataclass(frozen=True)
class AuditResult:
    """The report, and the configuration error that cut the audit short, if any."""

    report: Report
    config_error: ConfigError | None = None

    @property
    def exit_code(self) -> int:
        """2 for a configuration error, else 1 when any finding is fail/error, else 0."""
        return 2 if self.config_error is not None else self.report.exit_code


def live_context(
    config: AccountConfig,
    *,
    config_path: Path | None = None,
    timeouts: Timeouts | None = None,
    ca_file: Path | None = None,
    nameserver: tuple[str, int] | None = None,
    static_hosts: Mapping[str, tuple[str, ...]] | None = None,
    send_test: bool = False,
    roundtrip: RoundTripOptions | None = None,
) -> Context:
    """The context of a live run: the system's resolver (or ``nameserver``), the system's
    trust store plus ``ca_file``, ``static_hosts`` for connecting."""
    timeouts = timeouts or Timeouts()
    return Context(
        config=config,
        resolver=(
            named_resolver(nameserver, timeouts.dns)
            if nameserver is not None
            else live_resolver(timeouts.dns)
        ),
        trust=system_trust(ca_file),
        timeouts=timeouts,
        config_path=config_path,
        send_test=send_test,
        static_hosts=dict(static_hosts or {}),
        dns_server=f"{nameserver[0]}:{nameserver[1]}" if nameserver is not None else None,
        roundtrip=roundtrip,
    )


async def run_audit(
    config_path: Path,
    *,
    sandbox: Sandbox | None = None,
    only: Iterable[str] | None = None,
    timeouts: Timeouts | None = None,
    environ: Mapping[str, str] | None = None,
    ca_file: Path | None = None,
    send_test: bool = False,
    nameserver: tuple[str, int] | None = None,
    static_hosts: Mapping[str, tuple[str, ...]] | None = None,
    roundtrip: RoundTripOptions | None = None,
) -> AuditResult:
    """Audit the account file at ``config_path``; in ``sandbox`` when given, else live.

    ``nameserver`` (address, port) replaces the system's resolver of a live audit;
    ``static_hosts`` take the place of the hosts file and DNS for connecting; ``roundtrip``
    asks a live audit for the round trip through the company's mailbox. ValueError when
    ``only`` names an unknown check (before anything runs).
    """
    specs = select(only)
    mode = "sandbox" if sandbox is not None else "live"
    scenario = sandbox.scenario.name if sandbox is not None else None
    try:
        config = load_config(config_path, environ=sandbox.environ if sandbox else environ)
    except ConfigError as error:
        report = Report(
            findings=tuple(schema_failures(error, config_path.stem)),
            account="",
            company=config_path.stem,
            mode=mode,
            config_file=str(config_path),
            scenario=scenario,
        )
        return AuditResult(report, error)
    context: Context
    if sandbox is not None:
        context = sandbox.context(
            config, config_path=config_path, timeouts=timeouts, send_test=send_test
        )
        if static_hosts:
            context = dataclasses.replace(context, static_hosts=dict(static_hosts))
    else:
        context = live_context(
            config,
            config_path=config_path,
            timeouts=timeouts,
            ca_file=ca_file,
            nameserver=nameserver,
            static_hosts=static_hosts,
            send_test=send_test,
            roundtrip=roundtrip,
        )
    findings = await run_checks(context, specs)
    report = Report(
        findings=tuple(findings),
        account=config.platform.account,
        company=config.company.name,
        mode=mode,
        config_file=str(config_path),
        scenario=scenario,
    )
    return AuditResult(report)


async def audit(
    options: AuditOptions,
    *,
    sandbox_log: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> AuditResult:
    """Run the audit ``options`` ask for, starting (and stopping) the sandbox world it names.

    ``sandbox_log`` is entered around the sandbox's life (the notebook keeps its log in the
    report folder). ValueError for an unknown check or scenario, before anything starts.
    """
    from diagnostics.sandbox.account import sandbox_for

    select(options.only)
    timeouts = Timeouts.per_step(options.timeout) if options.timeout else None
    if options.wait is not None:
        timeouts = dataclasses.replace(timeouts or Timeouts(), roundtrip=options.wait)
    wanted = options.roundtrip or options.probe_platform
    roundtrip = (
        RoundTripOptions(
            via=options.via,
            clean=options.clean,
            probe_platform=options.probe_platform,
            send=options.roundtrip,
        )
        if wanted
        else None
    )
    async with contextlib.AsyncExitStack() as stack:
        world = None
        if options.sandbox:
            if sandbox_log is not None:
                stack.enter_context(sandbox_log())
            world = await stack.enter_async_context(sandbox_for(options.sandbox, options.config))
        return await run_audit(
            options.config,
            sandbox=world,
            only=options.only,
            timeouts=timeouts,
            ca_file=options.ca_file,
            send_test=options.send_test,
            nameserver=options.dns_server,
            static_hosts=options.static_hosts,
            roundtrip=roundtrip,
        )


def write_report(report: Report, directory: Path) -> Path:
    """Write the report folder (report.json, report.html, report.md, junit.xml), each file
    atomically; returns the path of ``report.json``."""
    from diagnostics.report.html import write_html
    from diagnostics.report.junit import write_junit
    from diagnostics.report.markdown import write_markdown

    path = write_json(report, directory)
    write_html(report, directory)
    write_markdown(report, directory)
    write_junit(report, directory)
    return path
