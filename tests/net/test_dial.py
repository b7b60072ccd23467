"""The one dialer, against real loopback servers: a hosts-file name (from an injected hosts
mapping, never the machine's /etc/hosts), ``--resolve``, the source address, the sandbox's
endpoints, one error for a refused connection, and ``maildiag smtp --host localhost``."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import dns.asyncresolver
import pytest

from diagnostics.cli import main
from diagnostics.config import AccountConfig, parse_config
from diagnostics.context import Context, Endpoints, Timeouts
from diagnostics.errors import DialError, SandboxError
from diagnostics.findings import Status
from diagnostics.net import Dialer, dial, system_hosts
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

PASSWORD = "Dial-Test-Pw-5521"
# Nothing listens on the discard port: a DNS query there is refused at once, and never leaves
# loopback.
NO_DNS = "127.0.0.1:9"


class FakeSMTP:
    """A loopback SMTP server that accepts everyone; it records each client's address."""

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        writer.write(b"220 fake.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-fake.test\r\n250 AUTH PLAIN LOGIN\r\n")
                elif verb == b"AUTH":
                    writer.write(b"235 2.7.0 Authentication successful\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def fake_smtp() -> AsyncIterator[FakeSMTP]:
    fake = FakeSMTP()
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    try:
        yield fake
    finally:
        fake.server.close()
        await fake.server.wait_closed()


async def greeted(sock: socket.socket) -> str:
    """The greeting the server sends on ``sock``, which is then closed: the server has seen
    the connection once this returns."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1024), 5)
    finally:
        sock.close()
    return data.decode()


def refusing_resolver() -> dns.asyncresolver.Resolver:
    """A resolver aimed at :data:`NO_DNS`: any query it is asked fails at once on loopback."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = 9
    resolver.lifetime = 1
    return resolver


def corp_context(config: AccountConfig, **options: Any) -> Context:
    """A live context whose hosts file names mail.corp.test, and whose DNS answers nothing."""
    return Context(
        config=config,
        resolver=refusing_resolver(),
        trust=ssl.create_default_context(),
        hosts={"mail.corp.test": ("127.0.0.1",)},
        dns_server=NO_DNS,
        **options,
    )


def account(host: str, port: int) -> str:
    return (
        "platform: {profile: personio, account: acme}\n"
        "company:\n"
        "  name: Acme GmbH\n"
        "  custom_address: jobs@acme.example\n"
        f"  smtp: {{host: '{host}', port: {port}, encryption: none, account: jobs@acme.example, "
        "password: '${ACME_SMTP_PASSWORD}'}\n"
    )


# -- resolving for connecting -----------------------------------------------------------------


def test_the_hosts_file_is_read_with_localhost_always_in(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# a comment\n10.1.2.3  mail.corp.test Mail  # inline\nfe80::1%eth0 linklocal.test\n"
        "not-an-address broken.test\n",
        encoding="utf-8",
    )
    assert system_hosts(hosts) == {
        "localhost": ("127.0.0.1", "::1"),
        "mail.corp.test": ("10.1.2.3",),
        "mail": ("10.1.2.3",),
        "linklocal.test": ("fe80::1",),
    }
    assert system_hosts(tmp_path / "missing") == {"localhost": ("127.0.0.1", "::1")}


async def test_a_hosts_file_name_is_dialed_without_dns() -> None:
    # The resolver would be asked only if the name were not in the hosts mapping.
    dialer = Dialer(hosts={"mail.corp.test": ("127.0.0.1",)}, dns_server=NO_DNS)
    async with fake_smtp() as server:
        sock = await dialer.dial("mail.corp.test", server.port)
        assert (await greeted(sock)).startswith("220")
    assert server.peers == ["127.0.0.1"]


async def test_resolve_overrides_the_hosts_file_and_dns() -> None:
    dialer = Dialer(
        static_hosts={"smtp.acme.example": ("127.0.0.1",)},
        hosts={"smtp.acme.example": ("192.0.2.1",)},
        dns_server=NO_DNS,
    )
    assert await dialer.addresses("SMTP.Acme.Example.") == ["127.0.0.1"]
    async with fake_smtp() as server:
        sock = await dialer.dial("smtp.acme.example", server.port)
        assert (await greeted(sock)).startswith("220")
    assert server.peers == ["127.0.0.1"]


async def test_the_source_address_binds_the_local_end() -> None:
    dialer = Dialer(hosts={"mail.corp.test": ("127.0.0.1",)}, dns_server=NO_DNS)
    async with fake_smtp() as server:
        sock = await dialer.dial("mail.corp.test", server.port, source="127.0.0.7")
        assert sock.getsockname()[0] == "127.0.0.7"
        assert (await greeted(sock)).startswith("220")
    assert server.peers == ["127.0.0.7"]


async def test_the_next_address_is_tried_when_one_refuses() -> None:
    dialer = Dialer(hosts={"mail.corp.test": ("127.0.0.2", "127.0.0.1")}, dns_server=NO_DNS)
    async with fake_smtp() as server:
        # 127.0.0.2 has no listener on this port: refused, then 127.0.0.1 answers.
        sock = await dialer.dial("mail.corp.test", server.port)
        assert (await greeted(sock)).startswith("220")
    assert server.peers == ["127.0.0.1"]


async def test_a_refused_connection_is_one_error_naming_step_host_and_port() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(DialError) as caught:
            await Dialer().dial("127.0.0.1", port)
    error = caught.value
    assert (error.step, error.host, error.port) == ("connect", "127.0.0.1", port)
    assert str(error) == f"connect: 127.0.0.1 port {port}: {error.cause}"
    assert isinstance(error.__cause__, ConnectionRefusedError)


async def test_a_name_dns_does_not_know_is_one_error_from_the_named_server() -> None:
    zones = {"acme.example": [ZoneRecord("mx", "A", "198.51.100.10")]}
    async with SandboxDNS(zones) as server:
        dialer = Dialer(resolver=server.resolver(timeout=1), dns_server=f"127.0.0.1:{server.port}")
        with pytest.raises(DialError) as caught:
            await dialer.addresses("gone.acme.example", 587)
    assert (caught.value.step, caught.value.host, caught.value.port) == (
        "resolve",
        "gone.acme.example",
        587,
    )
    assert str(caught.value) == "resolve: gone.acme.example does not exist in DNS (NXDOMAIN)"
    assert not caught.value.local


# -- the sandbox's endpoints ------------------------------------------------------------------


async def test_the_sandbox_dials_world_addresses_through_its_endpoints_only() -> None:
    zones = {
        "acme.example": [
            ZoneRecord("smtp", "A", "198.51.100.20"),
            ZoneRecord("other", "A", "198.51.100.99"),
        ]
    }
    async with SandboxDNS(zones) as dns_server, fake_smtp() as server:
        endpoints = Endpoints({("198.51.100.20", 587): ("127.0.0.1", server.port)}, strict=True)
        dialer = Dialer(endpoints, dns_server.resolver(timeout=1), mode="sandbox")
        sock = await dialer.dial("smtp.acme.example", 587)
        assert (await greeted(sock)).startswith("220")
        with pytest.raises(
            SandboxError, match=r"no sandbox server plays 198\.51\.100\.99 port 587"
        ):
            await dialer.dial("other.acme.example", 587)
        # The world has no hosts file: localhost is a name like any other there.
        with pytest.raises(DialError, match="localhost"):
            await dialer.addresses("localhost")
    assert server.peers == ["127.0.0.1"]


# -- the checks and the command line go through it --------------------------------------------


async def test_the_smtp_checks_connect_to_a_hosts_file_name() -> None:
    environ = {"ACME_SMTP_PASSWORD": PASSWORD}
    async with fake_smtp() as server:
        config = parse_config(
            account("mail.corp.test", server.port), source="x.yaml", environ=environ
        )
        context = corp_context(config, timeouts=Timeouts.per_step(2))
        findings = await run_checks(context, select(["smtp.connect"]))
    assert [(f.check, f.status) for f in findings] == [("smtp.connect", Status.PASS)]
    assert server.peers


async def test_smtp_command_connects_to_localhost_as_swaks_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_SMTP_PASSWORD", PASSWORD)
    async with fake_smtp() as server:
        out, err = io.StringIO(), io.StringIO()
        argv = [
            "smtp", "--host", "localhost", "--port", str(server.port), "--encryption", "none",
            "--account", "jobs@acme.example", "--password-env", "FAKE_SMTP_PASSWORD",
            "--dns-server", NO_DNS, "--timeout", "2", "--json",
        ]  # fmt: skip
        code = await asyncio.to_thread(main, argv, out=out, err=err)
    report = json.loads(out.getvalue())
    connect = next(f for f in report["findings"] if f["check"] == "smtp.connect")
    assert (connect["status"], connect["cause"]) == ("pass", None), err.getvalue()
    assert "does not exist in DNS" not in out.getvalue()
    assert server.peers[0] == "127.0.0.1"
    assert code in (0, 1)
    assert PASSWORD not in out.getvalue() + err.getvalue()


async def test_dial_takes_a_context_or_a_dialer() -> None:
    config = parse_config(
        account("mail.corp.test", 25), source="x.yaml", environ={"ACME_SMTP_PASSWORD": "x"}
    )
    async with fake_smtp() as server:
        context = corp_context(config)
        for where in (context, Dialer.of(context)):
            sock = await dial(where, "mail.corp.test", server.port)
            assert (await greeted(sock)).startswith("220")
    assert server.peers == ["127.0.0.1", "127.0.0.1"]
