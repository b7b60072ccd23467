"""Behaviours that once survived plausible mutations of the code (every other test still
passed): each test here fails on its mutation.

- a subcompany that falls back to the parent sends in the parent's name;
- a position that names the parent company itself resolves (no KeyError);
- ``ptr:example.com`` does not match ``badexample.com`` (a suffix needs its dot);
- a ``-0000`` Received date is read as UTC;
- AUTH LOGIN puts neither the password nor its base64 form in the transcript, nor does PLAIN;
- a 2.x.x enhanced code in the text is not taken for the failure's status.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from diagnostics.config import parse_config
from diagnostics.context import Timeouts
from diagnostics.net import DNSQueries
from diagnostics.net.session import probe_session
from diagnostics.parse.headers.received import parse_received
from diagnostics.parse.spf import check_host
from diagnostics.sandbox.certs import SandboxCA
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sender import resolve
from tests.checks.test_smtp import hostile_context

ACCOUNT = """
platform: {profile: personio, account: acme}
company:
  name: Acme GmbH
  sender_name: company
  custom_address: jobs@acme.example
  smtp: {host: smtp.acme.example, port: 587, encryption: starttls, account: jobs@acme.example, password: "${PW}"}
subcompanies:
  - {name: Acme Labs GmbH}
positions:
  - {title: Lab Technician, subcompany: Acme Labs GmbH}
  - {title: Controller, subcompany: Acme GmbH}
"""


def test_a_subcompany_without_settings_sends_in_the_parents_name() -> None:
    config = parse_config(ACCOUNT, source="a.yaml", environ={"PW": "x" * 8})
    rows = {row.position: row for row in resolve(config)}
    lab = rows["Lab Technician"]
    assert lab.owner == "Acme Labs GmbH"
    assert (lab.identity.sender, lab.identity.address) == ("Acme GmbH", "jobs@acme.example")
    assert lab.display_name == "Acme GmbH"


def test_a_position_naming_the_parent_company_resolves_to_it() -> None:
    config = parse_config(ACCOUNT, source="a.yaml", environ={"PW": "x" * 8})
    rows = {row.position: row for row in resolve(config)}
    controller = rows["Controller"]
    assert (controller.owner, controller.identity.route) == ("Acme GmbH", "own_server")


async def test_ptr_needs_a_dot_before_the_suffix() -> None:
    zones = {
        "example.com": [ZoneRecord("example.com.", "TXT", '"v=spf1 ptr:example.com -all"')],
        "badexample.com": [ZoneRecord("mail.badexample.com.", "A", "192.0.2.10")],
        "2.0.192.in-addr.arpa": [
            ZoneRecord("10.2.0.192.in-addr.arpa.", "PTR", "mail.badexample.com.")
        ],
    }
    async with SandboxDNS(zones) as server:
        queries = DNSQueries(server.resolver(timeout=1), lifetime=1)
        evaluation = await check_host("192.0.2.10", "example.com", lookup=queries)
    assert evaluation.result == "fail"


def test_a_received_date_in_minus_zero_is_utc() -> None:
    message = (
        b"Received: from a.example (a.example [192.0.2.1]) by mx.acme.example with ESMTP id 1;"
        b" Thu, 26 Nov 2026 09:30:00 -0000\r\n\r\nbody\r\n"
    )
    (hop,) = parse_received(message)
    assert hop.timestamp == dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
    assert hop.timestamp is not None and hop.timestamp.utcoffset() == dt.timedelta(0)


PASSWORD = "mutant-login-Secret-77"


@asynccontextmanager
async def login_only_server(mechanism: str) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    ca = SandboxCA()
    server_tls = ca.issue(["127.0.0.1"]).server_context()
    trust = ssl.create_default_context(cadata=ca.ca_pem.decode())

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 login.example ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    tls = writer.get_extra_info("ssl_object") is not None
                    offer = f"250 AUTH {mechanism}" if tls else "250 STARTTLS"
                    writer.write(b"250-login.example\r\n" + offer.encode() + b"\r\n")
                elif verb == b"STARTTLS":
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    await writer.start_tls(server_tls)
                    continue
                elif verb == b"AUTH" and b"LOGIN" in line.upper():
                    writer.write(b"334 VXNlcm5hbWU6\r\n")
                    await writer.drain()
                    await reader.readline()
                    writer.write(b"334 UGFzc3dvcmQ6\r\n")
                    await writer.drain()
                    await reader.readline()
                    writer.write(b"235 2.7.0 ok\r\n")
                elif verb == b"AUTH":
                    writer.write(b"235 2.7.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], trust
    finally:
        server.close()
        await server.wait_closed()


async def test_no_form_of_the_password_reaches_the_transcript() -> None:
    """LOGIN sends the password alone in base64, PLAIN after the account and NUL bytes: every
    form the server received is masked in the transcript."""
    forms = {
        PASSWORD,
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0jobs@acme.example\0{PASSWORD}".encode()).decode(),
    }
    for mechanism in ("LOGIN", "PLAIN"):
        async with login_only_server(mechanism) as (port, trust):
            context = hostile_context(
                port, Timeouts(connect=3, banner=3, command=3), trust=trust, password=PASSWORD
            )
            outcome = await probe_session(
                context, context.config.company.smtp, "jobs@acme.example", send_test=False
            )
        assert outcome.auth_mechanism == mechanism
        assert outcome.replies["auth"].code == 235
        text = "\n".join(outcome.transcript.as_text())
        assert "AUTH" in text
        for form in forms:
            assert form not in text, (mechanism, form)


def test_a_success_code_in_the_text_is_not_taken_for_the_failures_status() -> None:
    """RFC 3463 class 2 means success: the failure's status is the first 4.x.x or 5.x.x."""
    from diagnostics.diagnose import diagnose
    from diagnostics.findings import Cause

    diagnosis = diagnose("status 2.0.0 then 5.1.1")
    assert (diagnosis.cause, diagnosis.evidence.get("enhanced_status")) == (
        Cause.RECIPIENT_UNKNOWN,
        "5.1.1",
    )
    later = diagnose(
        "Message accepted with 2.6.0 queued, then delivery failed with status 5.2.2 (mailbox full)"
    )
    assert later.evidence.get("enhanced_status") == "5.2.2"
