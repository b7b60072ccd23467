"""The ``maildiag`` command line: a parser builder and :func:`main`.

Exit codes: 0 no ``fail``/``error``; 1 at least one; 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from diagnostics import __version__
from diagnostics.audit import run_audit, write_report
from diagnostics.errors import ConfigError, DiagnosticsError
from diagnostics.redact import RedactingFilter, redact
from diagnostics.report.json import render_json
from diagnostics.sandbox.scenario import load_scenario, scenario_names
from diagnostics.sandbox.world import Sandbox

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maildiag",
        description="Validate and diagnose the recruiting e-mail setup of an HR platform account.",
    )
    parser.add_argument("--version", action="version", version=f"maildiag {__version__}")
    parser.add_argument("--log-file", type=Path, help="write the log to this file")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every SMTP line (secrets stay masked)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = commands.add_parser("audit", help="run all checks for one account")
    audit.add_argument("config", type=Path, help="the account's YAML file")
    audit.add_argument("--sandbox", metavar="SCENARIO", help="run in the local sandbox world")
    audit.add_argument(
        "--only",
        action="append",
        metavar="IDS",
        help="check ids or families, comma-separated (repeatable), e.g. config,smtp.tls",
    )
    audit.add_argument("--report-dir", type=Path, help="where to write the report folder")
    audit.add_argument("--ca-file", type=Path, help="extra CA certificates to trust (PEM)")
    audit.add_argument("--json", action="store_true", help="print the JSON report on stdout")

    sandbox = commands.add_parser("sandbox", help="the local mail world")
    sandbox_commands = sandbox.add_subparsers(
        dest="sandbox_command", required=True, metavar="ACTION"
    )
    up = sandbox_commands.add_parser("up", help="run the sandbox and print its endpoints")
    up.add_argument("--scenario", default="healthy", help=f"one of: {', '.join(scenario_names())}")
    up.add_argument("--state", type=Path, help="keep the sandbox's mail in this folder")
    up.add_argument("--json", action="store_true", help="print the endpoints as JSON only")
    return parser


@contextlib.contextmanager
def _logging(log_file: Path | None, *, verbose: bool = False) -> Iterator[None]:
    """Log to ``log_file`` (or warnings to stderr) through the redacting filter, then restore."""
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        level = logging.INFO
    else:
        handler = logging.StreamHandler(sys.stderr)
        level = logging.WARNING
    if verbose:
        level = logging.DEBUG
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    aiosmtpd_log = logging.getLogger("mail.log")
    saved = (root.handlers[:], root.level, aiosmtpd_log.level)
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every session at INFO and its own deprecations at WARNING.
    aiosmtpd_log.setLevel(level if (log_file or verbose) else logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        aiosmtpd_log.setLevel(saved[2])
        handler.close()


def _split_only(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _default_report_dir(config: Path) -> Path:
    return Path("reports") / config.stem


async def _audit(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    only = _split_only(args.only)
    report_dir = args.report_dir or _default_report_dir(args.config)
    async with contextlib.AsyncExitStack() as stack:
        world = None
        if args.sandbox:
            world = await stack.enter_async_context(Sandbox(load_scenario(args.sandbox)))
        result = await run_audit(args.config, sandbox=world, only=only, ca_file=args.ca_file)
    if result.config_error is not None:
        print(redact(str(result.config_error)), file=err)
    path = write_report(result.report, report_dir)
    if args.json:
        out.write(render_json(result.report))
    else:
        summary = result.report.summary()
        counts = ", ".join(f"{v} {k}" for k, v in summary.items() if v)
        print(f"verdict: {result.report.verdict.value} ({counts})", file=out)
        for finding in result.report.findings:
            print(
                f"  {finding.status.value:5} {finding.check:34} {finding.subject}: {finding.title}",
                file=out,
            )
        print(f"report: {path}", file=out)
    return result.exit_code


def _endpoint_table(description: dict[str, object], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"maildiag sandbox: scenario {description['scenario']}")
    for column in ("role", "host name", "world address", "listens on"):
        table.add_column(column)
    table.add_row("DNS (authoritative)", "", "", str(description["dns"]))
    servers = description["servers"]
    assert isinstance(servers, list)
    for server in servers:
        table.add_row(server["role"], server["hostname"], server["world"], server["listen"])
    egress = description["egress_sources"]
    assert isinstance(egress, dict)
    for ip, source in egress.items():
        table.add_row("platform egress IP", "", ip, f"{source} (source address)")
    Console(file=out, width=120).print(table)


async def _sandbox_up(args: argparse.Namespace, out: TextIO) -> int:
    scenario = load_scenario(args.scenario)
    if args.state is not None:
        args.state.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Sandbox(scenario, state_dir=args.state) as world:
            description = world.describe()
            if not args.json:
                _endpoint_table(description, out)
                print(f"CA certificate: {description['ca_file']}", file=out)
                print("Press Ctrl-C to stop.", file=out)
            out.write(json.dumps(description) + "\n")
            out.flush()
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("sandbox stopped", file=sys.stderr)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    log_file = args.log_file
    if log_file is None and args.command == "sandbox" and args.state is not None:
        log_file = args.state / "sandbox.log"
    try:
        with _logging(log_file, verbose=args.verbose):
            if args.command == "audit":
                return asyncio.run(_audit(args, out, err))
            return asyncio.run(_sandbox_up(args, out))
    except ConfigError as exc:
        print(redact(str(exc)), file=err)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"maildiag: {redact(str(exc))}", file=err)
        return EXIT_USAGE
    except DiagnosticsError as exc:
        print(f"maildiag: {redact(str(exc))}", file=err)
        return EXIT_FINDINGS
