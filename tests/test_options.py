"""One AuditOptions for the command line, the notebook and diagnose --confirm; maildiag
audit's --timeout, --dns-server and --resolve, exercised through main() against loopback
servers only."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from diagnostics.cli import main
from diagnostics.context import Timeouts
from diagnostics.notebook import run_notebook_audit
from diagnostics.options import AuditOptions, parse_nameserver, parse_static_hosts
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sandbox.scenariofile import load_scenario
from tests.conftest import ACME

# An address in the world's network that no sandbox server plays: connecting there is what
# the platform would meet at a host that does not answer.
NOWHERE = "198.51.100.99"


def healthy_zones() -> dict[str, list[ZoneRecord]]:
    return {
        zone: [ZoneRecord(r.name, r.rtype, r.value, r.ttl) for r in records]
        for zone, records in load_scenario("healthy").dns.items()
    }


@asynccontextmanager
async def dns_server(faults: Mapping[str, str] | None = None) -> AsyncIterator[SandboxDNS]:
    async with SandboxDNS(healthy_zones(), faults=faults) as server:
        yield server


async def run(*argv: str) -> tuple[int, str, str]:
    """main(argv) in a thread, so that loopback servers keep running in this test's loop."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def passwords_exported(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """The account file's password variables, exported as IT would for a live audit."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def findings(out: str) -> dict[str, dict[str, Any]]:
    return {f["check"]: f for f in json.loads(out)["findings"] if f["subject"] == "Acme GmbH"}


# -- parsing, in one place ----------------------------------------------------------------------


def test_the_network_options_parse_as_maildiag_smtp_parses_them() -> None:
    assert parse_static_hosts(["SMTP.acme.example:127.0.0.1", "smtp.acme.example:[::1]"]) == {
        "smtp.acme.example": ("127.0.0.1", "::1")
    }
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver(None) is None
    assert parse_nameserver("") is None
    with pytest.raises(
        ValueError, match=re.escape("--resolve 'smtp.acme.example': expected HOST:ADDRESS")
    ):
        parse_static_hosts(["smtp.acme.example"])
    with pytest.raises(
        ValueError, match=re.escape("--dns-server 'dns.example': expected an IP address")
    ):
        parse_nameserver("dns.example")


def test_one_place_expands_a_step_timeout() -> None:
    assert Timeouts.per_step(4) == Timeouts(dns=4, connect=4, banner=4, command=4, data=4, check=48)
    options = AuditOptions(
        config=ACME, static_hosts={"a.example": ("127.0.0.1",)}, dns_server=("::1", 5353)
    )
    assert (options.dns_server_text, options.resolve_text) == ("[::1]:5353", "a.example:127.0.0.1")
    with pytest.raises(ValueError, match="--timeout 0: expected a number of seconds above 0"):
        AuditOptions(config=ACME, timeout=0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--dns-server", "dns.example", "--dns-server 'dns.example': expected an IP address"),
        ("--resolve", "smtp.acme.example", "--resolve 'smtp.acme.example': expected HOST:ADDRESS"),
        ("--timeout", "-1", "--timeout -1: expected a number of seconds above 0"),
    ],
)
async def test_a_malformed_network_option_is_a_usage_error(
    option: str, value: str, message: str, tmp_path: Path
) -> None:
    code, out, err = await run("audit", str(ACME), option, value, "--report-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert message in err
    assert not (tmp_path / "report.json").exists()


# -- maildiag audit, live, against a loopback DNS server ---------------------------------------


async def test_audit_asks_the_dns_server_it_is_given(
    passwords_exported: None, tmp_path: Path
) -> None:
    async with dns_server() as server:
        code, out, err = await run(
            "audit", str(ACME), "--only", "dns", "--dns-server", f"127.0.0.1:{server.port}",
            "--json", "--report-dir", str(tmp_path),
        )  # fmt: skip
        asked = {name for name, _, _ in server.queries}
    assert code == 1, err
    found = findings(out)
    assert {c: (f["status"], f["cause"]) for c, f in found.items()} == {
        "dns.mx": ("pass", None),
        # The sandbox's zones hold documentation addresses, which no live platform reaches.
        "dns.smtp_host": ("fail", "connection_timeout"),
        "dns.spf": ("pass", None),
        "dns.dmarc": ("pass", None),
    }
    assert {f["evidence"]["resolver"] for f in found.values()} == {f"127.0.0.1:{server.port}"}
    assert {"acme.example.", "smtp.acme.example.", "_dmarc.acme.example."} <= asked


async def test_audit_names_a_broken_dns_server_instead_of_the_customers_domain(
    passwords_exported: None, tmp_path: Path
) -> None:
    async with dns_server({"*": "nxdomain"}) as server:
        code, out, _ = await run(
            "audit", str(ACME), "--only", "dns.mx,dns.smtp_host", "--json",
            "--dns-server", f"127.0.0.1:{server.port}", "--report-dir", str(tmp_path),
        )  # fmt: skip
    assert code == 1
    found = findings(out)
    assert {c: (f["status"], f["cause"]) for c, f in found.items()} == {
        "dns.mx": ("error", "local_resolver"),
        "dns.smtp_host": ("error", "local_resolver"),
    }
    assert found["dns.mx"]["title"] == (
        f"DNS does not work on the machine running the audit (resolver 127.0.0.1:{server.port})"
    )
    assert "--dns-server" in found["dns.mx"]["remediation"]


async def test_audit_timeout_bounds_each_step(passwords_exported: None, tmp_path: Path) -> None:
    async with dns_server({"acme.example": "timeout"}) as server:
        started = time.perf_counter()
        code, out, _ = await run(
            "audit", str(ACME), "--only", "dns.mx", "--timeout", "0.5", "--json",
            "--dns-server", f"127.0.0.1:{server.port}", "--report-dir", str(tmp_path),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    assert code == 1
    mx = findings(out)["dns.mx"]
    # The resolver itself answers (for the platform's domain): the domain's servers are blamed.
    assert (mx["status"], mx["cause"]) == ("error", "dns_failure")
    assert mx["detail"].startswith("acme.example MX: no answer within 0.5 s (the query timed out).")
    assert elapsed < 10  # generous: the default step timeout alone would be 5 s


# -- maildiag audit --sandbox --resolve, and the notebook --------------------------------------


async def test_audit_resolve_overrides_where_the_sandbox_connects(
    environ: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = await run(
        "audit", str(ACME), "--sandbox", "healthy", "--only", "smtp.connect,dns.smtp_host",
        "--resolve", f"smtp.acme.example:{NOWHERE}", "--timeout", "2", "--json",
        "--report-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 1, err
    found = findings(out)
    # Connecting honours --resolve; the record lookup stays on DNS, as the platform sees it.
    assert found["dns.smtp_host"]["status"] == "pass"
    connect = found["smtp.connect"]
    assert (connect["status"], connect["cause"]) == ("fail", "connection_timeout")
    assert connect["evidence"]["address"] in (None, NOWHERE)
    assert NOWHERE in json.dumps(connect["evidence"])


async def test_the_notebook_takes_the_same_network_options(tmp_path: Path) -> None:
    audit = await run_notebook_audit(
        config=str(ACME),
        sandbox="healthy",
        only="smtp.connect",
        report_dir=str(tmp_path),
        timeout_s=2,
        resolve=f"smtp.acme.example:{NOWHERE}",
        fail_on="never",
    )
    [connect, *_] = [f for f in audit.result.report.findings if f.subject == "Acme GmbH"]
    assert (connect.check, connect.status.value, connect.cause and connect.cause.value) == (
        "smtp.connect",
        "fail",
        "connection_timeout",
    )
    with pytest.raises(ValueError, match="--dns-server 'nope': expected an IP address"):
        await run_notebook_audit(config=str(ACME), sandbox="healthy", dns_server="nope")


async def test_a_whole_audit_waits_one_timeout_for_a_resolver_that_never_answers(
    passwords_exported: None, tmp_path: Path
) -> None:
    async with dns_server({"*": "timeout"}) as server:
        started = time.perf_counter()
        code, out, _ = await run(
            "audit", str(ACME), "--dns-server", f"127.0.0.1:{server.port}", "--timeout", "1",
            "--json", "--report-dir", str(tmp_path),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    assert code == 1
    local = {c for c, f in findings(out).items() if f["cause"] == "local_resolver"}
    assert local == {"dns.mx", "dns.smtp_host", "dns.spf", "dns.dmarc", "smtp.connect"}
    assert all(findings(out)[c]["status"] == "error" for c in local)
    # Every check that needs DNS waited on the same timeout; none waited on a second one
    # (a generous bound: two timeouts and a half).
    assert elapsed < 2.5
