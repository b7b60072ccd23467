"""The processes the suite starts reach loopback only, as the kernel saw them.

The guard in conftest.py holds the pytest process; Chromium, notebook kernels and `maildiag
sandbox up` are other processes. Each is run here the way the suite runs it, under
``strace -f`` (the child and everything it starts, down to Chromium's network service), and
every address it connected or sent to is read back from the trace: an IPv4 or IPv6 one that is
not loopback fails the test, and so does one the reader cannot parse. A UDP connect() counts
although it sends nothing: it was Chromium's IPv6 probe, the first sign of a request that had
got as far as the resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from diagnostics.audit import run_audit, write_report
from diagnostics.demo import AUDIT_NOTEBOOK
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from tests.conftest import ACME
from tests.test_sandbox_up import BASH, ENV, line_reader, next_line, read_exports

SYSCALLS = "connect,sendto,sendmsg,sendmmsg"
INET = ("AF_INET", "AF_INET6")
# strace prints a socket address as {sa_family=AF_..., ...}; the two IP forms are read out.
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_IPV4 = re.compile(r'AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_IPV6 = re.compile(r'AF_INET6, sin6_port=htons\((\d+)\), [^}]*?inet_pton\(AF_INET6, "([^"]+)"')


@dataclass(frozen=True)
class Destination:
    """One socket address a traced process connected or sent to."""

    family: str
    #: None for an IPv4/IPv6 address in a form this reader does not know.
    address: str | None
    port: int | None
    line: str

    @property
    def outside(self) -> bool:
        """An IPv4/IPv6 address that is not loopback (or cannot be read)."""
        if self.family not in INET:
            return False
        if self.address is None:
            return True
        ip = ipaddress.ip_address(self.address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return not ip.is_loopback


def destinations(trace: str) -> list[Destination]:
    """Every socket address in an strace log, in order (several per sendmmsg line)."""
    found = []
    for line in trace.splitlines():
        for family in _FAMILY.finditer(line):
            name = family.group(1)
            address = port = None
            if name in INET:
                form = _IPV4 if name == "AF_INET" else _IPV6
                parsed = form.match(line, family.start() + len("sa_family="))
                if parsed:
                    port, address = int(parsed.group(1)), parsed.group(2)
            found.append(Destination(name, address, port, line.strip()))
    return found


def outside_lines(trace: str) -> list[str]:
    """The trace lines holding an address outside loopback, each once."""
    return list(dict.fromkeys(d.line for d in destinations(trace) if d.outside))


def assert_loopback_only(log: Path, what: str) -> list[Destination]:
    """Fail, listing the offending lines, when ``log`` shows an address outside loopback."""
    trace = log.read_text(encoding="utf-8", errors="replace")
    offending = outside_lines(trace)
    assert not offending, f"{what} reached outside loopback:\n" + "\n".join(offending)
    return destinations(trace)


@pytest.fixture(scope="module")
def strace() -> str:
    found = shutil.which("strace")
    if found is None:
        pytest.fail("strace is not installed: apt-get install strace (.ci/run installs it)")
    return found


def traced(strace: str, log: Path, command: Sequence[str | Path]) -> list[str]:
    """``command`` under strace, following every process it starts, writing ``log``.

    With seccomp-bpf only the traced system calls stop the process, so Chromium keeps its pace.
    """
    return [
        strace, "-f", "-qq", "--seccomp-bpf", f"--trace={SYSCALLS}", "-o", str(log),
        *map(str, command),
    ]  # fmt: skip


def run_traced(
    strace: str, log: Path, command: Sequence[str | Path], *, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        traced(strace, log, command),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{command[:4]} failed under strace:\n{done.stderr[-3000:]}"
    return done


def test_the_reader_reports_outside_addresses_and_passes_loopback() -> None:
    trace = "\n".join(
        [
            '4465  connect(22, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:4860:4860::8888", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '3675  sendto(6, "T\\210"..., 49, 0, {sa_family=AF_INET, sin_port=htons(47310), sin_addr=inet_addr("127.0.0.1")}, 16) = 49',
            '3676  connect(7, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("93.184.216.34")}, 16) = -1 EINPROGRESS (Operation now in progress)',
            '3677  connect(8, {sa_family=AF_INET6, sin6_port=htons(25), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '3677  connect(9, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.10.3", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '3678  sendmsg(10, {msg_name={sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2a00:1450::", &sin6_addr), sin6_scope_id=0}, msg_namelen=28, msg_iov=[{iov_base="x", iov_len=1}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 1',
            '3679  sendmmsg(11, [{msg_hdr={msg_name={sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, msg_namelen=16}, msg_len=30}, {msg_hdr={msg_name={sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, msg_namelen=16}, msg_len=30}], 2, MSG_NOSIGNAL) = 2',
            '3680  connect(12, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:10.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '3681  connect(13, {sa_family=AF_INET6, sa_data="\\0\\1\\2"}, 12) = -1 EINVAL (Invalid argument)',
            '3682  connect(14, {sa_family=AF_UNIX, sun_path="/run/dbus/system_bus_socket"}, 110) = -1 ENOENT (No such file or directory)',
            "3683  sendto(15, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20",
            '3684  connect(16, {sa_family=AF_UNSPEC, sa_data="\\0\\0"}, 16) = 0',
        ]
    )  # fmt: skip
    found = destinations(trace)
    assert [(d.family, d.address, d.port) for d in found] == [
        ("AF_INET6", "2001:4860:4860::8888", 443),
        ("AF_INET", "127.0.0.1", 47310),
        ("AF_INET", "93.184.216.34", 443),
        ("AF_INET6", "::1", 25),
        ("AF_INET6", "::ffff:127.0.10.3", 53),
        ("AF_INET6", "2a00:1450::", 53),
        ("AF_INET", "127.0.0.53", 53),
        ("AF_INET", "10.255.255.53", 53),
        ("AF_INET6", "::ffff:10.0.0.1", 53),
        ("AF_INET6", None, None),
        ("AF_UNIX", None, None),
        ("AF_NETLINK", None, None),
        ("AF_UNSPEC", None, None),
    ]
    assert [d.address for d in found if d.outside] == [
        "2001:4860:4860::8888",
        "93.184.216.34",
        "2a00:1450::",
        "10.255.255.53",
        "::ffff:10.0.0.1",
        None,
    ]
    # The sendmmsg line holds a loopback and an outside address: it is listed, once.
    assert len(outside_lines(trace)) == 6


# A child that starts a grandchild, which connects UDP sockets to documentation addresses
# (RFC 5737, RFC 3849): a UDP connect() sends no packet, so nothing leaves the machine.
_REACHES_OUT = """
import socket
for family, address in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::9")):
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))
        except OSError:
            pass
"""


def test_the_trace_catches_a_grandchild_reaching_out(strace: str, tmp_path: Path) -> None:
    log = tmp_path / "strace.log"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_REACHES_OUT!r}])"
    run_traced(strace, log, [sys.executable, "-c", child], cwd=tmp_path)
    with pytest.raises(AssertionError, match="reached outside loopback") as raised:
        assert_loopback_only(log, "the probe")
    message = str(raised.value)
    assert 'inet_addr("192.0.2.1")' in message
    assert 'inet_pton(AF_INET6, "2001:db8::9"' in message


async def _healthy_report(directory: Path) -> Path:
    world = Sandbox(load_scenario("healthy"), state_dir=directory / "state", environ={})
    async with world:
        result = await run_audit(ACME, sandbox=world)
    assert result.config_error is None
    write_report(result.report, directory / "report")
    return directory / "report" / "report.html"


# Everything a page could ask the network for; the routing in browser.py must abort it all.
_REACHING_PAGE = """<!doctype html><title>reaching out</title><h1>Reaching out</h1>
<link rel="stylesheet" href="http://198.51.100.7/style.css">
<img src="https://example.com/logo.png" alt="">
<iframe src="http://example.net/"></iframe>
<script>fetch("https://example.org/track").catch(() => {});</script>
"""

# In the child, as `maildiag demo --screenshot` and the browser tests do.
_RENDER = """
import json, sys
from diagnostics.report.browser import read_report, screenshot
report, png, reaching = sys.argv[1:]
screenshot(report, png)
seen = read_report(report)
hostile = read_report(reaching)
print(json.dumps({"verdict": seen.verdict, "blocked": hostile.blocked_requests}))
"""


def test_chromium_rendering_a_report_reaches_loopback_only(strace: str, tmp_path: Path) -> None:
    report = asyncio.run(_healthy_report(tmp_path))
    reaching = tmp_path / "reaching.html"
    reaching.write_text(_REACHING_PAGE, encoding="utf-8")
    log, png = tmp_path / "strace.log", tmp_path / "report.png"
    done = run_traced(
        strace, log, [sys.executable, "-c", _RENDER, report, png, reaching], cwd=tmp_path
    )
    rendered = json.loads(done.stdout.splitlines()[-1])
    assert rendered["verdict"].startswith("Verdict: pass")
    assert png.read_bytes().startswith(b"\x89PNG")
    # The page did ask for the outside, so the trace below is the answer to a real attempt.
    assert "https://example.com/logo.png" in rendered["blocked"]
    found = assert_loopback_only(log, "Chromium")
    # Chromium was traced: its processes talk over Unix sockets.
    assert any(d.family == "AF_UNIX" for d in found)


def test_a_notebook_kernel_run_by_papermill_reaches_loopback_only(
    strace: str, tmp_path: Path
) -> None:
    log = tmp_path / "strace.log"
    papermill = Path(sys.executable).parent / "papermill"
    run_traced(
        strace, log,
        [papermill, AUDIT_NOTEBOOK, tmp_path / "audit.ipynb", "-p", "sandbox", "healthy",
         "-p", "report_dir", tmp_path / "report", "--no-progress-bar", "--engine", "maildiag"],
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "pass"
    found = assert_loopback_only(log, "papermill and its kernel")
    # The kernel's sockets and the sandbox's servers were traced, all on loopback.
    assert sum(d.family in INET for d in found) > 10


@contextmanager
def traced_sandbox_up(strace: str, log: Path, state: Path) -> Iterator[dict[str, Any]]:
    """`maildiag sandbox up --json` under strace; its JSON line. Stopped with Ctrl-C at exit:
    strace ignores the interrupt it shares a process group with, and the sandbox stops."""
    command = traced(
        strace, log, [sys.executable, "-m", "diagnostics", "sandbox", "up", "--json",
                      "--state", state]
    )  # fmt: skip
    with (
        (state.parent / "sandbox-up.stderr").open("w") as errors,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=state.parent,
            env=ENV,
            start_new_session=True,
        ) as process,
    ):
        try:
            yield json.loads(next_line(line_reader(process)))
        finally:
            with suppress(ProcessLookupError):  # it ended on its own
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise
    assert process.returncode == 0, (state.parent / "sandbox-up.stderr").read_text()


def test_sandbox_up_serving_a_session_reaches_loopback_only(strace: str, tmp_path: Path) -> None:
    state, up_log, smtp_log = tmp_path / "state", tmp_path / "up.log", tmp_path / "smtp.log"
    with traced_sandbox_up(strace, up_log, state) as described:
        credentials = Path(described["credentials_file"])
        assert "ACME_SMTP_PASSWORD" in read_exports(credentials)
        starttls = next(s for s in described["servers"] if s["role"] == "submission (STARTTLS)")
        # A session against it, as README.md shows, so that the sandbox has work to do.
        smtp = [
            sys.executable, "-m", "diagnostics", "smtp", "--json",
            "--host", "smtp.acme.example", "--resolve", "smtp.acme.example:127.0.0.1",
            "--port", starttls["listen"].rsplit(":", 1)[1], "--encryption", "starttls",
            "--account", "jobs@acme.example", "--password-env", "ACME_SMTP_PASSWORD",
            "--ca-file", state / "sandbox-ca.pem", "--source", "127.0.10.1",
            "--dns-server", described["dns"],
        ]  # fmt: skip
        done = run_traced(
            strace,
            smtp_log,
            [BASH, "-c", '. "$1" && shift && exec "$@"', "bash", credentials, *smtp],
            cwd=tmp_path,
        )
        assert json.loads(done.stdout)["findings"][0]["status"] == "pass"
    assert_loopback_only(smtp_log, "maildiag smtp")
    found = assert_loopback_only(up_log, "maildiag sandbox up")
    # The sandbox answered the session: its own DNS replies went to the client on loopback.
    assert any(d.family == "AF_INET" for d in found)
