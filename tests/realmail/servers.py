"""Start and stop a real Postfix, a real Dovecot, a platform sink and a DNS server on loopback.

The mail world of a company whose recruiting mailbox ``jobs@company.test`` is redirected to a
recruiting platform's inbound address (``acme-jobs@m.personio.de`` by default), with a copy
kept in the local mailbox:

- MX: Postfix smtpd on 127.0.25.1:25 (STARTTLS offered), relaying only to its own domain;
  submission on 127.0.25.1:587 (TLS required, AUTH through Dovecot, sender = login).
- Dovecot: IMAP on 127.0.25.1:143 (STARTTLS) and 993 (implicit TLS), LMTP on 127.0.0.1 for
  Postfix, maildir under the folder; the certificate is for ``mx.company.test``.
- Platform sink: aiosmtpd on 127.0.26.1:25, accepting only the platform's inbound address(es).
- DNS: the sandbox's loopback DNS server (UDP and TCP) with the MX records of both domains.
- OAuth2 (optional): a token introspection endpoint (RFC 7662) on 127.0.0.1 that Dovecot's
  ``oauth2`` passdb asks, so that IMAP takes ``AUTHENTICATE XOAUTH2`` (and OAUTHBEARER) with
  one bearer token for the jobs account; password logins keep working beside it.

Everything lives in one temporary folder that is removed on stop. Nothing is delivered off
loopback: the only SMTP route is the sink, every other destination bounces (5.4.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import imaplib
import json
import os
import pwd
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from diagnostics.sandbox.certs import SandboxCA
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

__all__ = [
    "DEFAULT_TARGET",
    "EXTERNAL_TAG",
    "IMAPS_PORT",
    "IMAP_PORT",
    "INTROSPECTION_PATH",
    "JOBS",
    "MX_ADDR",
    "MX_HOSTNAME",
    "PLATFORM_ADDR",
    "PLATFORM_MX_HOSTNAME",
    "SMTP_PORT",
    "SUBMISSION_PORT",
    "Introspection",
    "RealMail",
    "RealMailError",
    "SilentServer",
    "Sink",
    "SinkMessage",
    "ThreadedDNS",
    "default_zones",
    "reap_orphans",
    "start_realmail",
]

DOMAIN: Final = "company.test"
JOBS: Final = "jobs@company.test"
MX_HOSTNAME: Final = "mx.company.test"
MX_ADDR: Final = "127.0.25.1"
SMTP_PORT: Final = 25
SUBMISSION_PORT: Final = 587
IMAP_PORT: Final = 143
IMAPS_PORT: Final = 993
PLATFORM_DOMAIN: Final = "m.personio.de"
PLATFORM_MX_HOSTNAME: Final = "mx.m.personio.de"
PLATFORM_ADDR: Final = "127.0.26.1"
DEFAULT_TARGET: Final = "acme-jobs@m.personio.de"
EXTERNAL_TAG: Final = "[EXTERNAL]"
INTROSPECTION_PATH: Final = "/oauth2/introspect"
# Postfix's own wording for an unknown recipient of a virtual mailbox domain.
USER_UNKNOWN: Final = (
    "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
)

_MAIL_USER: Final = "mail"
_QUEUE_DIRS: Final = ("maildrop", "incoming", "active", "deferred", "hold")
_START_TIMEOUT: Final = 15.0
_STOP_TIMEOUT: Final = 10.0
_POLL: Final = 0.02


class RealMailError(RuntimeError):
    """A server of the real mail world failed to start or to settle (with its log's tail)."""


def _sbin(name: str) -> str:
    """The full path of a Postfix or Dovecot program (they live in /usr/sbin)."""
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        raise RealMailError(f"{name} is not installed (apt-get install postfix dovecot-imapd)")
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (not reaped by us: Postfix's master is a daemon) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- the platform sink ---------------------------------------------------------------------


@dataclass(frozen=True)
class SinkMessage:
    """One message the platform sink accepted: envelope and the bytes as received."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def email(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _SinkHandler:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self._sink.accepts:
            self._sink.rejected.append(address)
            return USER_UNKNOWN.format(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self._sink.messages.append(
            SinkMessage(str(envelope.mail_from or ""), tuple(envelope.rcpt_tos), data)
        )
        return "250 2.0.0 Ok: queued"


class Sink:
    """The recruiting platform's inbound MX: aiosmtpd in its own thread and event loop."""

    def __init__(
        self, accepts: Sequence[str], *, host: str = PLATFORM_ADDR, port: int = SMTP_PORT
    ) -> None:
        self.accepts = frozenset(a.lower() for a in accepts)
        self.host, self.port = host, port
        #: Accepted messages, in arrival order.
        self.messages: list[SinkMessage] = []
        #: RCPT addresses answered with 550 5.1.1, in order.
        self.rejected: list[str] = []
        self._controller = Controller(
            _SinkHandler(self),
            hostname=host,
            port=port,
            server_hostname=PLATFORM_MX_HOSTNAME,
            ready_timeout=5.0,
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        with contextlib.suppress(AssertionError, RuntimeError):
            self._controller.stop()


# --- DNS -----------------------------------------------------------------------------------


def default_zones(
    extra: Mapping[str, Sequence[ZoneRecord]] | None = None,
) -> dict[str, list[ZoneRecord]]:
    """The zones of the world; ``extra`` records are appended (new zones are added).

    The root zone is served too, so that every other name is NXDOMAIN (not REFUSED).
    """
    zones: dict[str, list[ZoneRecord]] = {
        # The synthesised SOA would be "ns.. hostmaster..": the root zone brings its own.
        ".": [ZoneRecord(".", "SOA", "ns. hostmaster. 1 3600 600 86400 300")],
        f"{DOMAIN}.": [
            ZoneRecord(f"{DOMAIN}.", "MX", f"10 {MX_HOSTNAME}."),
            ZoneRecord(f"{MX_HOSTNAME}.", "A", MX_ADDR),
        ],
        f"{PLATFORM_DOMAIN}.": [
            ZoneRecord(f"{PLATFORM_DOMAIN}.", "MX", f"10 {PLATFORM_MX_HOSTNAME}."),
            ZoneRecord(f"{PLATFORM_MX_HOSTNAME}.", "A", PLATFORM_ADDR),
        ],
    }
    for origin, records in (extra or {}).items():
        key = origin if origin.endswith(".") else origin + "."
        zones.setdefault(key, []).extend(records)
    return zones


class ThreadedDNS:
    """``SandboxDNS`` served from a thread with its own event loop (sync and async tests)."""

    def __init__(self, zones: Mapping[str, Sequence[ZoneRecord]], host: str = "127.0.0.1") -> None:
        self.server = SandboxDNS(zones, host=host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="realmail-dns", daemon=True
        )

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        """``ADDR:PORT``, as ``--dns-server`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        return self.server.queries

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(5)

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


# --- silent servers ------------------------------------------------------------------------


class SilentServer:
    """A loopback TCP server that accepts and then never answers.

    With ``greeting=None`` it never sends a byte; otherwise it sends the greeting (e.g.
    ``b"* OK IMAP ready\\r\\n"``) and then reads and ignores every command.
    """

    def __init__(self, greeting: bytes | None = None, host: str = "127.0.0.1") -> None:
        self.greeting = greeting
        self._listener = socket.socket()
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self._listener.settimeout(_POLL * 5)
        self.host: str = host
        self.port: int = self._listener.getsockname()[1]
        #: Connections accepted so far, and every byte the clients sent.
        self.accepted = 0
        self.received = bytearray()
        self._conns: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="realmail-silent", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self._listener.accept()
                self.accepted += 1
                conn.settimeout(_POLL * 5)
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                self._conns.append(conn)
            for conn in list(self._conns):
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    self.received += chunk
                else:
                    self._conns.remove(conn)
                    conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._listener.close()


# --- the OAuth2 token introspection endpoint -----------------------------------------------


class _IntrospectionHandler(BaseHTTPRequestHandler):
    server: _IntrospectionHTTPServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(min(length, 64 * 1024)).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        if self.path.split("?", 1)[0] != INTROSPECTION_PATH:
            self._answer(404, {"error": "not_found"})
            return
        active = token == owner.token
        owner.answers.append(active)
        # RFC 7662 2.2: an unknown, expired or revoked token is just {"active": false}.
        self._answer(
            200,
            {
                "active": True,
                "username": owner.username,
                "scope": "https://outlook.office.com/IMAP.AccessAsUser.All",
                "token_type": "Bearer",
                "exp": int(time.time()) + 3600,
            }
            if active
            else {"active": False},
        )

    def _answer(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request line carries no token, but nothing is worth printing."""


class _IntrospectionHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: Introspection, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _IntrospectionHandler)


class Introspection:
    """An OAuth2 token introspection endpoint (RFC 7662, form POST ``token=...``) in a thread:
    exactly ``token`` is active, for ``username``; every other token is inactive."""

    def __init__(self, token: str, username: str = JOBS, host: str = "127.0.0.1") -> None:
        self.token = token
        self.username = username
        #: Whether each introspected token was active, in order (never the tokens).
        self.answers: list[bool] = []
        self._server = _IntrospectionHTTPServer(self, (host, 0))
        self.host: str = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL * 5},
            name="realmail-oauth2",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{INTROSPECTION_PATH}"

    def start(self) -> Introspection:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


# --- clients for the tests -----------------------------------------------------------------


class _SMTP(smtplib.SMTP):
    """smtplib that reaches ``mx.company.test`` on its loopback address (and verifies it)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        address = MX_ADDR if host == MX_HOSTNAME else host
        return socket.create_connection((address, port), timeout, self.source_address)


class _IMAP4(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        address = MX_ADDR if self.host == MX_HOSTNAME else self.host
        return socket.create_connection((address, self.port), timeout)


class _IMAP4_SSL(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        address = MX_ADDR if self.host == MX_HOSTNAME else self.host
        sock = socket.create_connection((address, self.port), timeout)
        wrapped: ssl.SSLSocket = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        return wrapped


# --- the world -----------------------------------------------------------------------------


@dataclass
class RealMail:
    """A running real mail world; ``stop()`` ends every process and removes the folder."""

    folder: Path
    ca_file: Path
    dns: ThreadedDNS
    sink: Sink
    jobs_address: str
    jobs_password: str
    target: str | None
    keep_copy: bool
    subject_tag: str | None
    lmtp_port: int
    maildir: Path
    maillog_path: Path
    dovecot_log_path: Path
    postfix_config_dir: Path
    mx_host: str = MX_ADDR
    mx_hostname: str = MX_HOSTNAME
    mx_port: int = SMTP_PORT
    submission_host: str = MX_ADDR
    submission_port: int = SUBMISSION_PORT
    imap_host: str = MX_ADDR
    imap_port: int = IMAP_PORT
    imaps_port: int = IMAPS_PORT
    #: The OAuth2 bearer token IMAP takes for the jobs account (None: passwords only).
    oauth_token: str | None = field(default=None, repr=False)
    introspection: Introspection | None = None
    _dovecot: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _postfix_pid: int | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- what tests read --

    @property
    def dns_address(self) -> str:
        """``ADDR:PORT`` of the DNS server, for ``--dns-server``."""
        return self.dns.address

    @property
    def sink_messages(self) -> list[SinkMessage]:
        return self.sink.messages

    @property
    def queue_dir(self) -> Path:
        return self.folder / "postfix" / "queue"

    def maillog(self) -> str:
        return self.maillog_path.read_text(errors="replace") if self.maillog_path.exists() else ""

    def queued(self) -> list[Path]:
        """Files in Postfix's queue (maildrop, incoming, active, deferred, hold)."""
        found: list[Path] = []
        for name in _QUEUE_DIRS:
            for root, _dirs, files in os.walk(self.queue_dir / name):
                found.extend(Path(root, f) for f in files)
        return found

    def wait_for_delivery(self, timeout: float = 15.0) -> None:
        """Wait until Postfix's queue is empty: everything delivered or bounced (bounded).

        A message whose delivery was deferred keeps the queue busy, so this raises
        ``RealMailError`` with the queue and the log's tail after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                queue = subprocess.run(
                    [_sbin("postqueue"), "-c", str(self.postfix_config_dir), "-p"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                raise RealMailError(
                    f"Postfix's queue is not empty after {timeout}s:\n{queue}\n"
                    f"maillog:\n{_tail(self.maillog_path)}"
                )
            time.sleep(_POLL)

    async def async_wait_for_delivery(self, timeout: float = 15.0) -> None:
        """``wait_for_delivery`` without blocking the running event loop."""
        await asyncio.to_thread(self.wait_for_delivery, timeout)

    def mailbox_raw(self) -> list[bytes]:
        """The jobs mailbox's messages as stored in the maildir (new and cur), oldest first."""
        paths = [p for sub in ("new", "cur") for p in (self.maildir / sub).glob("*")]
        paths.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in paths]

    def mailbox(self) -> list[EmailMessage]:
        """``mailbox_raw()`` parsed with the default (modern) e-mail policy."""
        parsed = []
        for raw in self.mailbox_raw():
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def client_context(self) -> ssl.SSLContext:
        """A verifying TLS client context that trusts only the world's CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def smtp(self, port: int = SMTP_PORT, timeout: float = 10.0) -> smtplib.SMTP:
        """smtplib connected to ``mx.company.test:port``; ``starttls(context=...)`` verifies
        the name ``mx.company.test``."""
        return _SMTP(MX_HOSTNAME, port, local_hostname="client.test", timeout=timeout)

    def imap(
        self, tls: Literal["implicit", "starttls"] = "implicit", timeout: float = 10.0
    ) -> imaplib.IMAP4:
        """imaplib connected to ``mx.company.test`` over TLS (verified), not logged in."""
        if tls == "implicit":
            return _IMAP4_SSL(
                MX_HOSTNAME, self.imaps_port, ssl_context=self.client_context(), timeout=timeout
            )
        client = _IMAP4(MX_HOSTNAME, self.imap_port, timeout=timeout)
        client.starttls(ssl_context=self.client_context())
        return client

    # -- stop --

    def stop(self) -> None:
        """Stop Postfix, Dovecot, the sink and DNS, then remove the folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[BaseException] = []
        steps = [self._stop_postfix, self._stop_dovecot, self.sink.stop, self.dns.stop]
        if self.introspection is not None:
            steps.append(self.introspection.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:
                errors.append(exc)
        shutil.rmtree(self.folder, ignore_errors=True)
        if errors:
            raise RealMailError(f"stopping the real mail world: {errors!r}") from errors[0]

    def _stop_postfix(self) -> None:
        _stop_postfix(self.postfix_config_dir, self.queue_dir)

    def _stop_dovecot(self) -> None:
        if self._dovecot is not None:
            _stop_process(self._dovecot)

    def __enter__(self) -> RealMail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT)


def _master_pid(queue_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((queue_dir / "pid" / "master.pid").read_text().split()[0])
    return None


def _stop_postfix(config_dir: Path, queue_dir: Path) -> None:
    pid = _master_pid(queue_dir)
    if pid is None or not _pid_alive(pid):
        return
    subprocess.run(
        [_sbin("postfix"), "-c", str(config_dir), "stop"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=_STOP_TIMEOUT,
    )
    deadline = time.monotonic() + _STOP_TIMEOUT
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(_POLL)


# --- configuration -------------------------------------------------------------------------

_MASTER_CF: Final = """\
{mx}:{smtp} inet n - n - - smtpd
{mx}:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=private/auth
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_login_maps=texthash:{conf}/sender_logins
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Anything not for company.test and not routed to the sink bounces, as an unresolvable
# domain does: nothing ever leaves loopback.
_OUTSIDE: Final = "error:5.4.4 Host or domain name not found (outside the loopback test world)"


def _main_cf(folder: Path, lmtp_port: int, *, starttls: bool, header_checks: bool) -> str:
    conf = folder / "postfix" / "conf"
    tls = folder / "tls"
    lines = [
        "compatibility_level = 3.6",
        f"queue_directory = {folder}/postfix/queue",
        f"data_directory = {folder}/postfix/data",
        "mail_owner = postfix",
        "setgid_group = postdrop",
        # Postfix only knows 127.0.0.1 as a local interface; master.cf binds 127.0.25.1.
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        f"myhostname = {MX_HOSTNAME}",
        f"mydomain = {DOMAIN}",
        f"myorigin = {DOMAIN}",
        "mydestination =",
        # A candidate's server is an outsider: nothing on loopback is trusted to relay.
        f"mynetworks = {MX_ADDR}/32",
        "relay_domains =",
        "relayhost =",
        "smtpd_relay_restrictions = reject_unauth_destination",
        f"smtpd_banner = {MX_HOSTNAME} ESMTP",
        f"virtual_mailbox_domains = {DOMAIN}",
        f"virtual_mailbox_maps = texthash:{conf}/mailboxes",
        f"virtual_alias_maps = texthash:{conf}/virtual",
        f"virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}",
        f"transport_maps = texthash:{conf}/transport",
        f"default_transport = {_OUTSIDE}",
        f"relay_transport = {_OUTSIDE}",
        "smtp_dns_support_level = disabled",
        "disable_dns_lookups = yes",
        "alias_maps =",
        "alias_database =",
        "biff = no",
        "smtputf8_enable = no",
        f"maillog_file = {folder}/postfix/maillog",
        f"maillog_file_prefixes = {folder}",
        f"smtpd_tls_chain_files = {tls}/key.pem, {tls}/cert.pem",
        f"smtpd_tls_security_level = {'may' if starttls else 'none'}",
        "smtpd_tls_loglevel = 1",
        "smtp_tls_security_level = none",
    ]
    if header_checks:
        lines.append(f"header_checks = regexp:{conf}/header_checks")
    return "\n".join(lines) + "\n"


def _oauth2_conf(introspection_url: str) -> str:
    """The ``oauth2`` passdb's settings (Dovecot 2.3): every token is introspected (RFC 7662,
    a form POST), and it must be active and name the user who logs in."""
    return f"""\
introspection_mode = post
introspection_url = {introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def _dovecot_conf(
    folder: Path, lmtp_port: int, auth_socket: Path, *, oauth2_conf: Path | None = None
) -> str:
    mail = pwd.getpwnam(_MAIL_USER)
    dovecot = folder / "dovecot"
    dh = Path("/usr/share/dovecot/dh.pem")
    mechanisms = "plain login" + (" xoauth2 oauthbearer" if oauth2_conf else "")
    # Each passdb answers its own mechanisms: a bearer token is never tried as a password.
    oauth2_passdb = (
        f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_conf}
}}
"""
        if oauth2_conf
        else ""
    )
    return f"""\
base_dir = {dovecot}/run
state_dir = {dovecot}/state
instance_name = maildiag-realmail
hostname = {MX_HOSTNAME}
log_path = {dovecot}/dovecot.log
info_log_path = {dovecot}/dovecot.log
protocols = imap lmtp
listen = {MX_ADDR}
ssl = yes
ssl_cert = <{folder}/tls/cert.pem
ssl_key = <{folder}/tls/key.pem
{f"ssl_dh = <{dh}" if dh.exists() else ""}
ssl_min_protocol = TLSv1.2
auth_mechanisms = {mechanisms}
first_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
mail_uid = {mail.pw_uid}
mail_gid = {mail.pw_gid}
mail_location = maildir:{folder}/mail/%d/%n
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN {dovecot}/users
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = {dovecot}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {IMAP_PORT}
  }}
  inet_listener imaps {{
    port = {IMAPS_PORT}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service auth {{
  unix_listener {auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


def _write_postfix(
    folder: Path,
    *,
    lmtp_port: int,
    target: str | None,
    keep_copy: bool,
    subject_tag: str | None,
    starttls: bool,
) -> Path:
    conf = folder / "postfix" / "conf"
    conf.mkdir(parents=True)
    (folder / "postfix" / "queue").mkdir()
    data = folder / "postfix" / "data"
    data.mkdir()
    shutil.chown(data, "postfix", "postfix")
    _write(
        conf / "main.cf",
        _main_cf(folder, lmtp_port, starttls=starttls, header_checks=subject_tag is not None),
    )
    _write(
        conf / "master.cf",
        _MASTER_CF.format(mx=MX_ADDR, smtp=SMTP_PORT, submission=SUBMISSION_PORT, conf=conf),
    )
    _write(conf / "mailboxes", f"{JOBS} OK\n")
    expansion = [JOBS] if keep_copy or target is None else []
    if target is not None:
        expansion.append(target)
    _write(conf / "virtual", f"{JOBS} {', '.join(expansion)}\n")
    _write(conf / "transport", f"{PLATFORM_DOMAIN} smtp:[{PLATFORM_ADDR}]:{SMTP_PORT}\n")
    _write(conf / "sender_logins", f"{JOBS} {JOBS}\n")
    if subject_tag is not None:
        _write(
            conf / "header_checks", f"/^Subject:[ \\t]*(.*)$/ REPLACE Subject: {subject_tag} $1\n"
        )
    return conf


def _start_postfix(conf: Path, queue_dir: Path, maillog: Path) -> int:
    result = subprocess.run(
        [_sbin("postfix"), "-c", str(conf), "start"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=_START_TIMEOUT,
    )
    pid = _master_pid(queue_dir)
    if result.returncode != 0 or pid is None or not _pid_alive(pid):
        raise RealMailError(
            f"postfix start failed (exit {result.returncode}): {result.stdout}{result.stderr}\n"
            f"maillog:\n{_tail(maillog)}"
        )
    return pid


def _start_dovecot(
    conf: Path, log: Path, auth_socket: Path, ports: Sequence[tuple[str, int]]
) -> subprocess.Popen[bytes]:
    # Dovecot's own output (before its log file is open) goes to a file beside the log.
    output_path = log.with_name("dovecot.out")
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [_sbin("dovecot"), "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while not ("starting up" in _tail(log, 5) and auth_socket.exists()):
            if process.poll() is not None:
                said = output_path.read_text(errors="replace")
                raise RealMailError(
                    f"dovecot exited with {process.returncode}: {said}\nlog:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise RealMailError(f"dovecot did not start in {_START_TIMEOUT}s:\n{_tail(log)}")
            time.sleep(_POLL)
        for host, port in ports:
            with socket.create_connection((host, port), timeout=_START_TIMEOUT):
                pass
    except BaseException:
        _stop_process(process)
        raise
    return process


def start_realmail(
    *,
    target: str | None = DEFAULT_TARGET,
    keep_copy: bool = True,
    subject_tag: str | bool | None = None,
    password: str | None = None,
    platform_accepts: Sequence[str] = (DEFAULT_TARGET,),
    mx_starttls: bool = True,
    extra_dns: Mapping[str, Sequence[ZoneRecord]] | None = None,
    oauth_token: str | None = None,
) -> RealMail:
    """Start the whole world and return it running; the caller must ``stop()`` it.

    - ``target``: where ``jobs@company.test`` is redirected (None: no redirect at all).
      A target the sink does not accept gets Postfix's real bounce (to the envelope sender).
    - ``keep_copy``: also deliver to the jobs mailbox (False: the alias maps only to target).
    - ``subject_tag``: prepend this tag (``True``: ``[EXTERNAL]``) to the Subject of every
      incoming message, as a security gateway does (a Postfix ``header_checks`` REPLACE).
    - ``password``: the jobs account's one password (IMAP and SMTP); random by default.
    - ``platform_accepts``: the addresses the platform sink accepts (others: 550 5.1.1).
    - ``mx_starttls``: whether the MX on port 25 offers STARTTLS.
    - ``extra_dns``: records appended to the DNS zones (new zones are added).
    - ``oauth_token``: IMAP also offers ``AUTH=XOAUTH2`` and ``AUTH=OAUTHBEARER``, checked by
      Dovecot's ``oauth2`` passdb against a loopback introspection endpoint for which exactly
      this bearer token is active (for ``jobs@company.test``); every other token is refused.

    On any start failure everything started so far is stopped, the folder removed, and
    ``RealMailError`` raised with the failing server's log tail.
    """
    if target is None and not keep_copy:
        raise ValueError("keep_copy=False needs a target: the mail would go nowhere")
    tag = EXTERNAL_TAG if subject_tag is True else (subject_tag or None)
    password = password or "pw-" + secrets.token_urlsafe(12)
    if ":" in password or "\n" in password:
        raise ValueError("the password cannot contain ':' or a newline (passwd-file format)")
    if oauth_token is not None and (not oauth_token or any(c in oauth_token for c in " \r\n")):
        raise ValueError("the OAuth2 token must be one word")
    if _in_use(MX_ADDR, SMTP_PORT) or _in_use(PLATFORM_ADDR, SMTP_PORT):
        reap_orphans()
    if _in_use(MX_ADDR, SMTP_PORT) or _in_use(PLATFORM_ADDR, SMTP_PORT):
        raise RealMailError(
            f"{MX_ADDR}:{SMTP_PORT} or {PLATFORM_ADDR}:{SMTP_PORT} is in use (another world?)"
        )

    folder = Path(tempfile.mkdtemp(prefix="maildiag-realmail-"))
    folder.chmod(0o755)
    # Whose world this is: an orphan (its test process killed) is reaped by the next start.
    (folder / "owner.pid").write_text(f"{os.getpid()}\n")
    started: list[Any] = []
    try:
        ca = SandboxCA(organization="maildiag realmail")
        issued = ca.issue([MX_HOSTNAME])
        tls = folder / "tls"
        tls.mkdir()
        ca_file = ca.write_ca(tls / "ca.pem")
        (tls / "cert.pem").write_bytes(issued.cert_pem)
        key = tls / "key.pem"
        key.touch(0o600)
        key.write_bytes(issued.key_pem)

        lmtp_port = _free_port("127.0.0.1")
        conf = _write_postfix(
            folder,
            lmtp_port=lmtp_port,
            target=target,
            keep_copy=keep_copy,
            subject_tag=tag,
            starttls=mx_starttls,
        )
        queue_dir = folder / "postfix" / "queue"
        maillog = folder / "postfix" / "maillog"

        mail = folder / "mail"
        mail.mkdir()
        shutil.chown(mail, _MAIL_USER, _MAIL_USER)
        dovecot_dir = folder / "dovecot"
        dovecot_dir.mkdir()
        users = _write(dovecot_dir / "users", f"{JOBS}:{{PLAIN}}{password}::::::\n", 0o640)
        shutil.chown(users, "root", "dovecot")
        auth_socket = queue_dir / "private" / "auth"
        introspection = None
        oauth2_conf = None
        if oauth_token is not None:
            introspection = Introspection(oauth_token).start()
            started.append(introspection)
            oauth2_conf = _write(
                dovecot_dir / "dovecot-oauth2.conf.ext", _oauth2_conf(introspection.url), 0o640
            )
            shutil.chown(oauth2_conf, "root", "dovecot")
        dovecot_conf = _write(
            dovecot_dir / "dovecot.conf",
            _dovecot_conf(folder, lmtp_port, auth_socket, oauth2_conf=oauth2_conf),
        )

        dns = ThreadedDNS(default_zones(extra_dns))
        dns.start()
        started.append(dns)
        sink = Sink(platform_accepts)
        sink.start()
        started.append(sink)

        # Postfix first: its start creates queue/private, where Dovecot puts the auth socket.
        _start_postfix(conf, queue_dir, maillog)
        started.append(lambda: _stop_postfix(conf, queue_dir))
        process = _start_dovecot(
            dovecot_conf,
            dovecot_dir / "dovecot.log",
            auth_socket,
            [(MX_ADDR, IMAP_PORT), (MX_ADDR, IMAPS_PORT), ("127.0.0.1", lmtp_port)],
        )
    except BaseException:
        for item in reversed(started):
            with contextlib.suppress(Exception):
                item() if callable(item) else item.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return RealMail(
        folder=folder,
        ca_file=ca_file,
        dns=dns,
        sink=sink,
        jobs_address=JOBS,
        jobs_password=password,
        target=target,
        keep_copy=keep_copy,
        subject_tag=tag,
        lmtp_port=lmtp_port,
        maildir=mail / DOMAIN / "jobs",
        maillog_path=maillog,
        dovecot_log_path=dovecot_dir / "dovecot.log",
        postfix_config_dir=conf,
        oauth_token=oauth_token,
        introspection=introspection,
        _dovecot=process,
    )


def reap_orphans() -> list[Path]:
    """Stop the servers of worlds whose test process died (killed by a timeout, say).

    Only folders of this module (``maildiag-realmail-*`` with an ``owner.pid`` of a process
    that is gone) are considered; their Postfix and Dovecot are found by their own pid files.
    Returns the folders removed.
    """
    reaped: list[Path] = []
    for folder in Path(tempfile.gettempdir()).glob("maildiag-realmail-*"):
        try:
            owner = int((folder / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        with contextlib.suppress(Exception):
            _stop_postfix(folder / "postfix" / "conf", folder / "postfix" / "queue")
        with contextlib.suppress(OSError, ValueError):
            pid = int((folder / "dovecot" / "run" / "master.pid").read_text())
            if _pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + _STOP_TIMEOUT
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(_POLL)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


def _in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (e.g. a world left over)."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def realmail(**knobs: Any) -> Iterator[RealMail]:
    """``start_realmail(**knobs)`` as a context manager that always stops the world."""
    world = start_realmail(**knobs)
    try:
        yield world
    finally:
        world.stop()
