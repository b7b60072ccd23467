"""The ``maildiag`` command line: a parser builder and :func:`main`.

Exit codes: 0 no ``fail``/``error``; 1 at least one; 2 usage or configuration error.

Longer than 600 lines: the parser builder holds every command's options and help; each
command is a short function, and what it prints is rendered by :mod:`diagnostics.report.terminal`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

from diagnostics import __version__
from diagnostics.errors import ConfigError, DiagnosticsError
from diagnostics.options import AuditOptions
from diagnostics.options import parse_nameserver as _nameserver
from diagnostics.options import parse_static_hosts as _static_hosts
from diagnostics.redact import RedactingFilter, redact

# Heavy modules (pydantic, dnspython, aiosmtpd, cryptography) are imported by the commands
# that need them, so that `maildiag --help` answers at once.

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
# Stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, which also says "did you mean" for a mistyped command or option.

    Python 3.11's argparse has no ``suggest_on_error``. Every subcommand's parser is one too
    (argparse makes them of the main parser's class), and each refuses the arguments it does
    not know itself: handed up to the main parser, as argparse does, they would be judged
    against the main parser's options instead of the subcommand's. So, unlike argparse's,
    ``parse_known_args`` here never returns unknown arguments.
    """

    _given: Sequence[str] = ()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = list(sys.argv[1:] if args is None else args)
        # A parser with subcommands passes their arguments on: only its extras are its own.
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        self._given = given if leaf else ()
        parsed, extras = super().parse_known_args(given, namespace)
        if extras:
            self._given = extras
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        hints = [f"did you mean {match!r}?" for match in self._close_options(self._given)]
        super().error("\n".join([message, *hints]))

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            import difflib  # only a refused value needs it

            choices = [str(choice) for choice in action.choices or ()]
            close = difflib.get_close_matches(str(value), choices, n=1)
            if not close:
                raise
            raise argparse.ArgumentError(
                action, f"{exc.message}\ndid you mean {close[0]!r}?"
            ) from None

    def _close_options(self, strings: Sequence[str]) -> list[str]:
        """For each unknown long option among ``strings``, the known one it is closest to."""
        import difflib  # only a refused command line needs it

        known = [option for option in self._option_string_actions if option.startswith("--")]
        found: list[str] = []
        for string in strings:
            if string == "--":
                break
            name = string.split("=", 1)[0]
            if not name.startswith("--") or name in self._option_string_actions:
                continue
            if any(option.startswith(name) for option in known):  # an abbreviation
                continue
            found += [m for m in difflib.get_close_matches(name, known, n=1) if m not in found]
        return found


def _network_options(parser: argparse.ArgumentParser, *, timeout: bool = True) -> None:
    """The options of every command that connects: trust, time, and name resolution."""
    parser.add_argument("--ca-file", type=Path, help="extra CA certificates to trust (PEM)")
    if timeout:
        parser.add_argument(
            "--timeout", type=float, metavar="SECONDS", help="time allowed per network step"
        )
    parser.add_argument(
        "--dns-server",
        metavar="ADDRESS[:PORT]",
        help="ask this DNS server instead of the system's resolver (live runs)",
    )
    parser.add_argument(
        "--resolve",
        action="append",
        metavar="HOST:ADDRESS",
        help="connect to ADDRESS for HOST instead of what DNS says (repeatable), as curl "
        "--resolve does",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. With ``command``, only that command's options are added (the others
    are listed, without theirs): what a run needs, at a fraction of the start-up cost."""

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = _Parser(
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
    if wanted("audit"):
        audit.add_argument("config", type=Path, help="the account's YAML file")
        audit.add_argument("--sandbox", metavar="SCENARIO", help="run in the local sandbox world")
        audit.add_argument(
            "--only",
            action="append",
            metavar="IDS",
            help="check ids or families, comma-separated (repeatable), e.g. config,smtp.tls",
        )
        audit.add_argument("--report-dir", type=Path, help="where to write the report folder")
        audit.add_argument("--json", action="store_true", help="print the JSON report on stdout")
        audit.add_argument(
            "--all",
            action="store_true",
            help="list every finding (by default: what needs action, then a count of the rest)",
        )
        audit.add_argument(
            "--send-test",
            action="store_true",
            help="send one test message per SMTP setting, from the custom address to itself",
        )
        audit.add_argument(
            "--notebook",
            action="store_true",
            help="run through notebooks/audit.ipynb (papermill) and keep the executed notebook "
            "in the report folder",
        )
        _network_options(audit)
        audit.add_argument(
            "--roundtrip",
            action="store_true",
            help="send one tagged test message to each custom address and watch the company "
            "mailbox over IMAP for the kept copy and for bounces (live audits)",
        )
        audit.add_argument(
            "--via",
            choices=("mx", "submission"),
            default="mx",
            help="send the round trip's message to the MX on port 25, as candidates' mail "
            "arrives (default), or through the company's SMTP server with its account",
        )
        audit.add_argument(
            "--wait", type=float, metavar="SECONDS", help="how long the round trip watches (120)"
        )
        audit.add_argument(
            "--clean",
            action="store_true",
            help="afterwards delete the round trip's own messages (copies and bounces carrying its "
            "tag), nothing else",
        )
        audit.add_argument(
            "--probe-platform",
            action="store_true",
            help="ask the platform's inbound MX whether it knows the account's inbound address "
            "(RCPT TO, no message is sent)",
        )

    smtp = commands.add_parser("smtp", help='the "Test connection" check alone')
    if wanted("smtp"):
        smtp.add_argument("--host", required=True, help="SMTP host, as entered on the platform")
        smtp.add_argument("--port", required=True, type=int, help="SMTP port (587, 465, 25, ...)")
        smtp.add_argument(
            "--encryption", required=True, help="starttls | tls (implicit TLS, 'SSL') | none"
        )
        smtp.add_argument(
            "--account",
            required=True,
            help="the SMTP login: the custom address, or whatever the server accepts (CORP\\jobs)",
        )
        smtp.add_argument(
            "--password-env",
            required=True,
            metavar="VAR",
            help="environment variable holding the password",
        )
        smtp.add_argument(
            "--sender", help="the address to send as (default: the account, when it is an address)"
        )
        smtp.add_argument(
            "--send-test", action="store_true", help="send a test message from the sender to itself"
        )
        smtp.add_argument("--source", metavar="ADDRESS", help="local address to connect from")
        _network_options(smtp)
        smtp.add_argument("--report-dir", type=Path, help="also write the report folder here")
        smtp.add_argument("--json", action="store_true", help="print the JSON report on stdout")

    headers = commands.add_parser("headers", help="header retention and hop analysis")
    if wanted("headers"):
        headers.add_argument("received", help="the message as it arrived (.eml), or - for stdin")
        headers.add_argument(
            "--original", metavar="SENT", help="the message as it was sent (.eml), or - for stdin"
        )
        headers.add_argument(
            "--original-from",
            metavar="CONFIG",
            type=Path,
            help="fetch the original from the company mailbox of this account file (IMAP): the copy "
            "kept there, found by --tag or by the message's Message-ID",
        )
        headers.add_argument(
            "--tag",
            help="the round trip's tag (maildiag-rt-...) to find the copy by; default: "
            "the tag in the message, else its Message-ID",
        )
        _network_options(headers)
        headers.add_argument("--json", action="store_true", help="print the analysis as JSON")

    watch = commands.add_parser(
        "watch",
        help="watch the company mailbox while the platform's 'Send test mail' is pressed",
        description="Exit codes: 0 the platform's message arrived and nothing bounced; 1 it "
        "did not arrive in time, a bounce came, or a mailbox could not be read; 2 usage.",
    )
    if wanted("watch"):
        watch.add_argument("config", type=Path, help="the account's YAML file")
        watch.add_argument(
            "--timeout", type=float, default=300, metavar="SECONDS", help="how long to watch (300)"
        )
        _network_options(watch, timeout=False)
        watch.add_argument("--json", action="store_true", help="print what arrived as JSON")

    diagnose = commands.add_parser(
        "diagnose",
        help="classify an SMTP error, exception text, transcript or bounce (.eml)",
        description="Exit codes: 0 every cause was recognised; 1 a cause is unknown or a "
        "confirming check fails; 2 an input or the account file cannot be read.",
    )
    if wanted("diagnose"):
        diagnose.add_argument(
            "input",
            metavar="FILE",
            help="a text or .eml to classify, a folder of them, an mbox, or - for stdin",
        )
        diagnose.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
        diagnose.add_argument(
            "--config", type=Path, help="the account's file: say which checks confirm the cause"
        )
        diagnose.add_argument(
            "--confirm", action="store_true", help="with --config: run those checks now"
        )
        diagnose.add_argument(
            "--sandbox", metavar="SCENARIO", help="with --confirm: run them in the sandbox world"
        )
        diagnose.add_argument("--report-dir", type=Path, help="with --confirm: the report folder")

    batch = commands.add_parser(
        "batch", help="many accounts' audits at once: a report folder each, and an index"
    )
    if wanted("batch"):
        from diagnostics.batch.local import DEFAULT_JOBS, DEFAULT_PER_HOST

        batch.add_argument("configs", nargs="+", type=Path, metavar="CONFIG", help="account files")
        batch.add_argument(
            "--jobs",
            type=int,
            default=DEFAULT_JOBS,
            help=f"audits at a time in each process (default {DEFAULT_JOBS})",
        )
        batch.add_argument(
            "--processes",
            type=int,
            metavar="N",
            help="processes running audits (default: one per core)",
        )
        batch.add_argument(
            "--per-host",
            type=int,
            default=DEFAULT_PER_HOST,
            metavar="N",
            help=f"audits at a time talking to the same SMTP host, across the batch "
            f"(on a Dask cluster: in each worker process; default {DEFAULT_PER_HOST})",
        )
        batch.add_argument(
            "--notebooks",
            choices=("all", "failing", "none"),
            default="failing",
            help="which accounts get the executed audit notebook, a kernel each (default failing)",
        )
        batch.add_argument(
            "--resume",
            action="store_true",
            help="keep the accounts an earlier, interrupted run of this batch finished",
        )
        batch.add_argument(
            "--sandbox",
            default="",
            metavar="SCENARIO",
            help="run every audit in this sandbox world",
        )
        batch.add_argument(
            "--report-dir",
            type=Path,
            default=Path("reports/batch"),
            help="where the folders and index.html go",
        )
        batch.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run the audits on this Dask scheduler's workers (tcp://HOST:PORT; the report "
            "folder must be reachable by them; needs pip install 'maildiag[dask]')",
        )

    demo = commands.add_parser(
        "demo", help="run the audit notebook on the sandbox's demo scenario (reports/demo/)"
    )
    if wanted("demo"):
        demo.add_argument("--scenario", default="demo", help="the sandbox scenario to audit")
        demo.add_argument("--report-dir", type=Path, help="where to write (default reports/demo/)")
        demo.add_argument(
            "--screenshot",
            type=Path,
            metavar="PNG",
            help="also render report.html in headless Chromium and save a PNG of it here",
        )

    notebook = commands.add_parser(
        "notebook",
        help="copy a shipped notebook (audit, dns, ...) into your folder, or print its path",
        description="Without NAME: list the shipped notebooks. NAME OUT: copy it to OUT "
        "(to run with papermill or to commit). NAME --path: print where it is installed. "
        "NAME 'sanitize' is the nbval sanitize file for drift checks.",
    )
    if wanted("notebook"):
        notebook.add_argument("name", nargs="?", metavar="NAME", help="audit, dns, sanitize, ...")
        notebook.add_argument(
            "output", nargs="?", type=Path, metavar="OUT", help="where to copy it"
        )
        notebook.add_argument("--path", action="store_true", help="print the installed path")
        notebook.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    completion = commands.add_parser(
        "completion",
        help="print the shell completion script",
        description='bash: eval "$(maildiag completion bash)" in ~/.bashrc; zsh: maildiag '
        "completion zsh > ~/.zfunc/_maildiag (a folder on $fpath); tcsh: eval "
        '"`maildiag completion tcsh`" in ~/.tcshrc.',
    )
    if wanted("completion"):
        completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="bash, zsh or tcsh")

    sandbox = commands.add_parser("sandbox", help="the local mail world")
    if wanted("sandbox"):
        sandbox_commands = sandbox.add_subparsers(
            dest="sandbox_command", required=True, metavar="ACTION"
        )
        up = sandbox_commands.add_parser("up", help="run the sandbox and print its endpoints")
        from diagnostics.datafiles import package_path

        names = ", ".join(sorted(p.stem for p in package_path("scenarios").glob("*.yaml")))
        up.add_argument("--scenario", default="healthy", help=f"one of: {names}")
        up.add_argument("--state", type=Path, help="keep the sandbox's mail in this folder")
        up.add_argument(
            "--config", type=Path, help="play this account file (default: the scenario's own)"
        )
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
    # aiosmtpd logs every session at INFO, and a client that aborts a handshake (as probes do)
    # at ERROR: the sandbox's servers speak only into a log file or with --verbose.
    aiosmtpd_log.setLevel(level if (log_file or verbose) else logging.CRITICAL)
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


def _audit_options(args: argparse.Namespace) -> AuditOptions:
    """``maildiag audit``'s options as the one :class:`AuditOptions` every audit runs from."""
    only = _split_only(args.only)
    return AuditOptions(
        config=args.config,
        sandbox=args.sandbox or "",
        only=tuple(only) if only else None,
        report_dir=args.report_dir,
        timeout=args.timeout,
        ca_file=args.ca_file,
        send_test=bool(args.send_test),
        dns_server=_nameserver(args.dns_server),
        static_hosts=_static_hosts(args.resolve),
        roundtrip=bool(args.roundtrip),
        via=args.via,
        clean=bool(args.clean),
        probe_platform=bool(args.probe_platform),
        wait=args.wait,
    )


async def _audit(
    options: AuditOptions, out: TextIO, err: TextIO, *, as_json: bool = False, every: bool = False
) -> int:
    from diagnostics.audit import audit, write_report
    from diagnostics.report.json import render_json

    report_dir = options.report_dir or _default_report_dir(options.config)
    result = await audit(options)
    if result.config_error is not None:
        print(redact(str(result.config_error)), file=err)
    path = write_report(result.report, report_dir)
    if as_json:
        out.write(render_json(result.report))
    else:
        from diagnostics.report.terminal import print_report

        print_report(result.report, out, every=every)
        print(f"report: {path.parent / 'report.html'}", file=out)
    return result.exit_code


def _audit_notebook(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``maildiag audit --notebook``: the same audit, executed as notebooks/audit.ipynb, so that
    the report folder holds the executed notebook too (SPEC section 8)."""
    from diagnostics.demo import run_audit_notebook
    from diagnostics.findings import Status
    from diagnostics.registry import select
    from diagnostics.report.json import read_json
    from diagnostics.report.model import Report
    from diagnostics.sandbox.account import load_account_world

    options = _audit_options(args)
    select(options.only)  # an unknown check id is a usage error here, not a failed notebook cell
    if options.sandbox:
        load_account_world(options.sandbox, options.config)  # likewise a scenario it cannot play
    directory = (options.report_dir or _default_report_dir(options.config)).resolve()
    notebook = run_audit_notebook(
        options.config,
        directory,
        sandbox=options.sandbox,
        only=",".join(options.only or ()),
        ca_file=options.ca_file,
        send_test=options.send_test,
        timeout=options.timeout,
        dns_server=options.dns_server_text,
        resolve=options.resolve_text,
        roundtrip=options.roundtrip,
        via=options.via,
        clean=options.clean,
        probe_platform=options.probe_platform,
        wait=options.wait or 0,
    )
    report = Report.from_dict(read_json(directory / "report.json"))
    if args.json:
        out.write((directory / "report.json").read_text(encoding="utf-8"))
    else:
        from diagnostics.report.terminal import print_report

        print_report(report, out, every=args.all)
        print(f"executed notebook: {notebook}", file=out)
        print(f"report: {directory / 'report.html'}", file=out)
    # A file that did not load has one problem (key, expected, found) per finding; a file that
    # loaded may still fail config.schema (a custom address no mail can reach): not a usage error.
    invalid = [
        f
        for f in report.findings
        if f.check == "config.schema" and f.status >= Status.FAIL and "expected" in f.evidence
    ]
    if invalid:  # as without --notebook: the file's problems on stderr, exit 2
        print(redact(invalid[0].detail), file=err)
        return EXIT_USAGE
    return report.exit_code


def _in_thread(function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    """``function(*args)`` run in a daemon thread: it is waited for only where it is needed,
    so that a command refused for its options neither waits for it nor hears of its errors."""
    import concurrent.futures  # the commands that run a loop import it anyway

    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"maildiag-{function.__name__}", daemon=True).start()
    return future


async def _smtp(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from diagnostics.context import Timeouts, system_trust

    # Loading the system's trust store keeps OpenSSL busy for a while, without the GIL: it
    # loads in a thread while the imports below run; its errors surface where they did.
    trust = _in_thread(system_trust, args.ca_file)
    from diagnostics.adhoc import adhoc_config, run_smtp_check
    from diagnostics.report.json import render_json

    config = adhoc_config(
        host=args.host,
        port=args.port,
        encryption=args.encryption,
        account=args.account,
        password_env=args.password_env,
        sender=args.sender,
    )
    timeouts = Timeouts.per_step(args.timeout) if args.timeout else Timeouts()
    static_hosts = _static_hosts(args.resolve)
    nameserver = _nameserver(args.dns_server)
    trust_store = await asyncio.wrap_future(trust)
    report = await run_smtp_check(
        config,
        trust=trust_store,
        send_test=args.send_test,
        source=args.source,
        static_hosts=static_hosts,
        timeouts=timeouts,
        nameserver=nameserver,
    )
    if args.report_dir:
        from diagnostics.audit import write_report

        write_report(report, args.report_dir)
    if args.json:
        out.write(render_json(report))
    else:
        from diagnostics.report.terminal import print_report

        print_report(report, out)
    return report.exit_code


def _headers(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from diagnostics.limits import read_bounded, read_stream_bounded
    from diagnostics.parse.headers.analysis import analyse_headers
    from diagnostics.parse.headers.message import parse_message

    if args.received == "-" and args.original == "-":
        raise ValueError("only one of RECEIVED and --original can be - (stdin)")

    def read(name: str) -> bytes:
        try:
            data = (
                read_stream_bounded(sys.stdin.buffer, "standard input", "message")
                if name == "-"
                else read_bounded(Path(name), "message")
            )
        except OSError as exc:
            raise ValueError(f"cannot read {name}: {exc.strerror or exc}") from None
        if not parse_message(data).keys():
            raise ValueError(f"{name}: no header fields, not an e-mail message")
        return data

    arrived = read(args.received)
    original = read(args.original) if args.original else None
    kept_in = ""
    if args.original_from is not None:
        if args.original:
            raise ValueError("give --original or --original-from, not both")
        original, kept_in = asyncio.run(_kept_copy(args, arrived))
    analysis = analyse_headers(arrived, original=original)
    code = EXIT_FINDINGS if analysis.failed else EXIT_OK
    if args.json:
        out.write(json.dumps(analysis.to_dict(), indent=2) + "\n")
        return code
    from diagnostics.report.terminal import print_headers, printable

    if kept_in:
        print(f"original: the copy kept in {printable(kept_in)}", file=out)
    print_headers(analysis, args.received, out)
    return code


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``maildiag watch``: what arrives in the company mailboxes after "Send test mail"."""
    from diagnostics.audit import live_context
    from diagnostics.config import load_config
    from diagnostics.report import terminal
    from diagnostics.watch import watch

    if args.timeout <= 0:
        raise ValueError(f"--timeout {args.timeout:g}: expected a number of seconds above 0")
    config = load_config(args.config)
    context = live_context(
        config,
        config_path=args.config,
        ca_file=args.ca_file,
        nameserver=_nameserver(args.dns_server),
        static_hosts=_static_hosts(args.resolve),
    )
    ui = config.profile.ui
    print(f"Watching for {args.timeout:g} s. {terminal.watch_prompt(ui)}", file=err)
    result = await watch(
        context,
        timeout=args.timeout,
        on_seen=(lambda seen: None) if args.json else (lambda seen: terminal.print_seen(seen, out)),
    )
    if args.json:
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        terminal.print_watch_verdict(result, ui, args.timeout, out)
    return result.exit_code


async def _kept_copy(args: argparse.Namespace, arrived: bytes) -> tuple[bytes, str]:
    """``headers --original-from CONFIG``: the copy the company mailbox kept, and where.
    ValueError (a usage error) when it cannot be had, naming why."""
    from diagnostics.audit import live_context
    from diagnostics.config import load_config
    from diagnostics.context import Timeouts
    from diagnostics.errors import DialError, ProbeError, SandboxError
    from diagnostics.liveroundtrip import fetch_original, mailbox_failure, tag_of

    config = load_config(args.original_from)
    context = live_context(
        config,
        config_path=args.original_from,
        timeouts=Timeouts.per_step(args.timeout) if args.timeout else None,
        ca_file=args.ca_file,
        nameserver=_nameserver(args.dns_server),
        static_hosts=_static_hosts(args.resolve),
    )
    try:
        return await fetch_original(context, arrived, args.tag or tag_of(arrived))
    except LookupError as exc:
        raise ValueError(f"--original-from {args.original_from}: {exc}") from None
    except (ProbeError, DialError, SandboxError, OSError) as exc:
        step, said = mailbox_failure(exc)
        raise ValueError(f"--original-from {args.original_from}: mailbox {step}: {said}") from None


def _diagnose(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when every input's cause is recognised (and confirmed checks pass), 1 when one is
    ``unknown`` or a confirming check fails, 2 when an input or the config cannot be read."""
    from diagnostics.diagnose import diagnose
    from diagnostics.diagnose.inputs import confirming_checks, read_inputs
    from diagnostics.findings import Cause
    from diagnostics.report.terminal import printable

    name: str = args.input
    try:
        stdin = sys.stdin.buffer.read() if name == "-" else None
        inputs = read_inputs(name, stdin)
    except OSError as exc:
        print(f"maildiag: cannot read {printable(name)}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE
    results = [(label, diagnose(data)) for label, data in inputs]
    code = (
        EXIT_FINDINGS
        if any(d.cause is Cause.UNKNOWN for _, d in results) or not results
        else EXIT_OK
    )
    confirm = {label: confirming_checks(d.cause) for label, d in results} if args.config else {}
    if args.json:
        documents = []
        for label, diagnosis in results:
            document = {"input": label, **diagnosis.to_dict()}
            if args.config:
                document["confirm_with"] = list(confirm[label])
            documents.append(document)
        # One file (or stdin) answers with one object; a folder or an mbox with a list.
        single = len(documents) == 1 and len(inputs) == 1 and inputs[0][0] in (name, "-")
        payload: Any = documents
        if single:
            payload = {k: v for k, v in documents[0].items() if k != "input"}
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        from diagnostics.report.terminal import print_diagnoses

        print_diagnoses(results, out, confirm=confirm, config=args.config)
    if args.config and args.confirm:
        to_run = sorted({c for label in confirm for c in confirm[label]})
        if to_run:
            options = AuditOptions(
                config=args.config,
                sandbox=args.sandbox or "",
                only=tuple(to_run),
                report_dir=args.report_dir,
            )
            import asyncio  # only --confirm runs a loop

            print("== confirming checks", file=out)
            # The few confirming checks, each shown, passing or not.
            audit_code = asyncio.run(_audit(options, out, err, every=True))
            code = max(code, audit_code)
    return code


def _batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when every audit ran and none failed, 1 otherwise; 2 for an unknown scenario or
    a missing account file, found before any kernel starts, or --scheduler without the
    ``dask`` extra."""
    from diagnostics.batch import run_batch

    if args.scheduler:
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise ValueError("--scheduler needs Dask distributed: pip install 'maildiag[dask]'")

    if args.sandbox:
        from diagnostics.sandbox.account import load_account_world

        for config in args.configs:
            load_account_world(args.sandbox, config)
    missing = [str(config) for config in args.configs if not config.is_file()]
    if missing:
        raise ValueError(f"no such account file: {', '.join(missing)}")
    from diagnostics.batch import BatchInterrupted

    try:
        runs = run_batch(
            args.configs,
            report_dir=args.report_dir,
            jobs=args.jobs,
            sandbox=args.sandbox,
            progress=err,
            notebooks=args.notebooks,
            resume=args.resume,
            processes=args.processes,
            per_host=args.per_host,
            scheduler=args.scheduler,
        )
    except BatchInterrupted as stopped:
        print(
            f"maildiag: interrupted: {len(stopped.runs)} account(s) finished, "
            f"{len(stopped.not_run)} did not run; index: {args.report_dir / 'index.html'}; "
            "run the same command with --resume to finish",
            file=err,
        )
        return EXIT_INTERRUPTED
    for run in runs:
        state = f"error: {run.error}" if run.error else f"verdict {run.verdict}"
        print(f"{run.config}: {state} ({run.directory})", file=out)
    print(f"index: {args.report_dir / 'index.html'}", file=out)
    failed = any(run.error or run.verdict in ("fail", "error") for run in runs)
    return EXIT_FINDINGS if failed else EXIT_OK


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit as ``audit`` does, by the verdict of the report folder it wrote: 0 no fail/error
    finding, 1 at least one (the default scenario's two faults are deliberate, so it exits 1);
    2 when --screenshot is asked for and there is no browser (checked before the notebook runs)."""
    from diagnostics.demo import run_demo
    from diagnostics.report.json import read_json

    if args.screenshot is not None:
        from diagnostics.report.browser import BrowserUnavailable, require_browser

        try:
            require_browser()
        except BrowserUnavailable as exc:
            print(f"maildiag: {redact(str(exc))}", file=err)
            return EXIT_USAGE
    directory = run_demo(scenario=args.scenario, report_dir=args.report_dir)
    # Shown as the user would type it: relative to their folder when it is inside it.
    if directory.is_relative_to(Path.cwd()):
        directory = directory.relative_to(Path.cwd())
    from diagnostics.report.model import Report

    report = Report.from_dict(read_json(directory / "report.json"))
    from diagnostics.report.terminal import verdict_text

    print(verdict_text(report), file=out)
    print(f"executed notebook: {directory / 'audit.ipynb'}", file=out)
    main_file = directory / "report.html"
    print(f"report: {main_file if main_file.exists() else directory / 'report.json'}", file=out)
    if args.screenshot is not None:
        from diagnostics.report.browser import BrowserUnavailable, screenshot

        try:
            png = screenshot(main_file, args.screenshot)
        except BrowserUnavailable as exc:
            print(f"maildiag: {redact(str(exc))}", file=err)
            return EXIT_USAGE
        print(f"screenshot: {png}", file=out)
    return report.exit_code


def _notebook(args: argparse.Namespace, out: TextIO) -> int:
    """List, locate or copy a shipped notebook; ValueError (exit 2) for a wrong name or an
    existing OUT without --force."""
    import shutil

    from diagnostics.datafiles import shipped_notebook, shipped_notebooks

    if args.name is None:
        for name, path in shipped_notebooks().items():
            print(f"{name:28} {path.name}", file=out)
        return EXIT_OK
    source = shipped_notebook(args.name)
    if args.path or args.output is None:
        if args.output is not None:
            raise ValueError("give either OUT or --path, not both")
        print(source, file=out)
        return EXIT_OK
    target: Path = args.output
    if target.is_dir():
        target = target / source.name
    if target.exists() and not args.force:
        raise ValueError(f"{target} exists; --force overwrites it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(target, file=out)
    return EXIT_OK


def _completion(args: argparse.Namespace, out: TextIO) -> int:
    """The completion script for ``args.shell``, made by shtab from this very parser."""
    import shtab

    parser = build_parser()
    actions = list(parser._actions)
    for action in actions:  # every subcommand's options too
        if isinstance(action, argparse._SubParsersAction):
            actions += [a for sub in action.choices.values() for a in sub._actions]
        elif action.type is Path:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    out.write(shtab.complete(parser, shell=args.shell))
    return EXIT_OK


async def _sandbox_up(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio
    import shlex

    from diagnostics.sandbox.account import load_account_world
    from diagnostics.sandbox.credentials import write_credentials
    from diagnostics.sandbox.world import Sandbox

    scenario = load_account_world(args.scenario, args.config)
    if args.state is not None:
        args.state.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Sandbox(scenario, state_dir=args.state) as world:
            # In the state folder, so it lives as long as the folder: a temporary one goes at stop.
            # Absolute, as it is read from another shell, maybe in another folder.
            credentials = write_credentials(world.state_dir.absolute(), world.generated_secrets())
            description = {
                **world.describe(),
                "credentials_file": str(credentials) if credentials else None,
            }
            if not args.json:
                from diagnostics.report.terminal import print_endpoints

                print_endpoints(description, out)
                print(f"CA certificate: {description['ca_file']}", file=out)
                if credentials is not None:
                    names = ", ".join(description["secrets_generated"])
                    print(f"Passwords generated for {names}, to use in another shell:", file=out)
                    print(f"  . {shlex.quote(str(credentials))}   (readable by you only)", file=out)
                print("Press Ctrl-C to stop.", file=out)
            out.write(json.dumps(description) + "\n")
            out.flush()
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("sandbox stopped", file=sys.stderr)
    return EXIT_OK


def _crash_log(exc: BaseException) -> Path:
    """The traceback of ``exc``, secrets masked, in a file of the user's own (0600) in the
    temporary folder; its path."""
    import tempfile
    import traceback

    text = redact("".join(traceback.format_exception(exc)))
    handle, name = tempfile.mkstemp(prefix="maildiag-crash-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as log:
        log.write(f"maildiag {__version__}\n{text}")
    return Path(name)


_COMMANDS = frozenset(
    {"audit", "smtp", "headers", "watch", "diagnose", "batch", "demo", "notebook", "sandbox"}
)


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, when the options before it are plainly the top-level ones;
    None (every command's options are built) otherwise, for help, errors and completion."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in ("-v", "--verbose") or word.startswith("--log-file="):
            index += 1
        elif word == "--log-file":
            index += 2
        else:
            return word if word in _COMMANDS else None
    return None


def _run_loop(coroutine: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, imported only by the commands that run a loop (diagnose and headers
    start without it)."""
    import asyncio

    return asyncio.run(coroutine)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser(_command_named(sys.argv[1:] if argv is None else argv))
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
                if args.notebook:
                    return _audit_notebook(args, out, err)
                options = _audit_options(args)
                return _run_loop(_audit(options, out, err, as_json=args.json, every=args.all))
            if args.command == "smtp":
                return _run_loop(_smtp(args, out))
            if args.command == "headers":
                return _headers(args, out)
            if args.command == "diagnose":
                return _diagnose(args, out, err)
            if args.command == "watch":
                return _run_loop(_watch(args, out, err))
            if args.command == "demo":
                return _demo(args, out, err)
            if args.command == "batch":
                return _batch(args, out, err)
            if args.command == "completion":
                return _completion(args, out)
            if args.command == "notebook":
                return _notebook(args, out)
            return _run_loop(_sandbox_up(args, out))
    except BrokenPipeError:
        # The reader went away (`maildiag ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FINDINGS
    except ConfigError as exc:
        print(redact(str(exc)), file=err)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"maildiag: {redact(str(exc))}", file=err)
        return EXIT_USAGE
    except DiagnosticsError as exc:
        print(f"maildiag: {redact(str(exc))}", file=err)
        return EXIT_FINDINGS
    except RecursionError:
        # A message, report or file nested deeper than Python's parsers recurse.
        print(
            "maildiag: the input is nested too deeply to read (MIME parts or structures "
            "inside each other, hundreds of levels)",
            file=err,
        )
        return EXIT_USAGE
    except MemoryError:
        print("maildiag: the input is too large to read in memory", file=err)
        return EXIT_USAGE
    except Exception as exc:
        if args.verbose:
            raise
        path = _crash_log(exc)
        print(
            f"maildiag: internal error (a bug in maildiag, not in your setup): "
            f"{type(exc).__name__}; the details are in {path}",
            file=err,
        )
        return EXIT_BUG
