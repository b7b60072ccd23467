"""Each scenario file's world really has its fault: a candidate mail to the custom address and
a send through the configured SMTP settings show, over real sockets, what the scenario says.

Every scenario in fixtures/scenarios/ must have an entry in ``EFFECTS``.
"""

from __future__ import annotations

import email.policy
import ssl
import time
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import dns.resolver
import pytest

from diagnostics.audit import run_audit
from diagnostics.config import AccountConfig, SmtpSettings, load_config
from diagnostics.errors import DialError, SandboxError
from diagnostics.net.session import SessionOutcome, probe_session
from diagnostics.parse.headers.retention import RETAINED
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.scenario import SCENARIO_DIR
from diagnostics.sandbox.scenariofile import load_scenario, scenario_names
from diagnostics.sandbox.world import Sandbox
from diagnostics.secrets import Secret

CANDIDATE = "max.mustermann@example.org"


def application() -> bytes:
    """A candidate's reply in an ongoing conversation, with every header that matters."""
    message = EmailMessage()
    message["From"] = f"Max Mustermann <{CANDIDATE}>"
    message["To"] = "jobs@acme.example"
    message["Cc"] = "max.privat@example.org"
    message["Subject"] = "Re: Ihre Bewerbung als Store Manager"
    message["Date"] = "Thu, 26 Nov 2026 09:30:00 +0100"
    message["Message-ID"] = "<reply-1@example.org>"
    message["Reply-To"] = CANDIDATE
    message["In-Reply-To"] = "<invite-7@acme.example>"
    message["References"] = "<invite-7@acme.example>"
    message.set_content("Guten Tag,\n\ngerne komme ich zum Gespräch.\n")
    return message.as_bytes(policy=email.policy.SMTP)


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def redirect_one(world: Sandbox, *, wait: bool = True) -> None:
    await world.platform_client.send_direct(
        mail_from=CANDIDATE, rcpt_tos=["jobs@acme.example"], data=application()
    )
    if wait:
        await world.drain(10)


def only(world: Sandbox, account_folder: str = "unassigned") -> EmailMessage:
    box = world.platform_mailbox("acme", account_folder)
    assert len(box) == 1
    return parse(box.read(box.keys()[0]))


def config_of(world: Sandbox) -> AccountConfig:
    return load_config(world.scenario.config_path(), environ=world.environ)


async def send_as_platform(world: Sandbox, *, egress_ip: str | None = None) -> str:
    config = config_of(world)
    assert config.company.smtp is not None and config.company.custom_address is not None
    result = await world.platform_client.send_via(
        config.company.smtp,
        mail_from=config.company.custom_address,
        rcpt_tos=["anna.schmidt@candidates.example"],
        data=b"Subject: Einladung\r\n\r\nHallo\r\n",
        egress_ip=egress_ip,
    )
    return result.reply


async def healthy(world: Sandbox) -> None:
    await redirect_one(world)
    arrived = only(world)
    for name in RETAINED:
        assert arrived[name] == parse(application())[name], name
    assert len(world.company_mailbox("jobs@acme.example")) == 1
    for egress_ip in world.egress_sources:
        assert (await send_as_platform(world, egress_ip=egress_ip)).startswith("2.0.0 Ok")


async def forward_inline(world: Sandbox) -> None:
    await redirect_one(world)
    arrived = only(world)
    assert arrived["From"] == "jobs@acme.example"
    assert arrived["Subject"] == "Fwd: Re: Ihre Bewerbung als Store Manager"
    assert arrived["In-Reply-To"] is None
    body = arrived.get_content()
    assert "---------- Forwarded message ---------" in body
    assert f"From: Max Mustermann <{CANDIDATE}>" in body


async def forward_as_attachment(world: Sandbox) -> None:
    await redirect_one(world)
    arrived = only(world)
    assert arrived["From"] == "jobs@acme.example"
    attached = [p for p in arrived.walk() if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1
    inner = attached[0].get_content()
    assert inner["Message-ID"] == "<reply-1@example.org>"


async def from_rewritten(world: Sandbox) -> None:
    await redirect_one(world)
    arrived = only(world)
    assert arrived["From"].addresses[0].addr_spec == "jobs@acme.example"
    assert arrived["From"].addresses[0].display_name == "Max Mustermann via jobs@acme.example"
    assert arrived["X-Original-From"] == f"Max Mustermann <{CANDIDATE}>"
    assert arrived["Message-ID"] == "<reply-1@example.org>"


async def headers_stripped(world: Sandbox) -> None:
    await redirect_one(world)
    arrived = only(world)
    assert (arrived["Reply-To"], arrived["In-Reply-To"], arrived["References"]) == (
        None,
        None,
        None,
    )
    assert arrived["Message-ID"] == "<reply-1@example.org>"
    assert arrived["Cc"] == "max.privat@example.org"


async def subject_tagged(world: Sandbox) -> None:
    await redirect_one(world)
    assert only(world)["Subject"] == "[EXTERNAL] Re: Ihre Bewerbung als Store Manager"


async def footer_appended(world: Sandbox) -> None:
    await redirect_one(world)
    body = only(world).get_content()
    assert body.startswith("Guten Tag,")
    assert body.rstrip().endswith(
        "CAUTION: This email originated from outside of the organization."
    )


async def no_local_copy(world: Sandbox) -> None:
    await redirect_one(world)
    only(world)
    assert len(world.company_mailbox("jobs@acme.example")) == 0


async def no_redirect(world: Sandbox) -> None:
    await redirect_one(world)
    assert len(world.platform_mailbox("acme")) == 0
    assert len(world.company_mailbox("jobs@acme.example")) == 1
    assert len(world.postmaster) == 0


async def mistyped_platform_address(world: Sandbox) -> None:
    await redirect_one(world)
    assert len(world.platform_mailbox("acme")) == 0
    assert len(world.postmaster) == 1
    bounce = world.postmaster.read(world.postmaster.keys()[0])
    assert b"Final-Recipient: rfc822; acme-job@m.personio.de" in bounce
    assert b"Status: 5.1.1" in bounce


async def mail_loop(world: Sandbox) -> None:
    await redirect_one(world)
    assert len(world.platform_mailbox("acme")) == 0
    copies = len(world.company_mailbox("jobs@acme.example")) + len(
        world.company_mailbox("recruiting@acme.example")
    )
    assert copies == world.scenario.company_mx.max_hops
    bounce = world.postmaster.read(world.postmaster.keys()[0])
    assert b"Status: 5.4.6" in bounce


async def slow_delivery(world: Sandbox) -> None:
    delay = world.scenario.company_mx.faults.delay_s
    before = time.time()
    await redirect_one(world, wait=False)
    # Accepted and stored (the MX answers 250 only then), and held in the queue until a time
    # the fault puts after the acceptance: read from the queue, not guessed from a wait.
    assert world._relay is not None
    queue = world._relay.queue
    [held] = [queue.load(key) for key in queue.pending()]
    assert held.rcpt_tos == ("acme-jobs@m.personio.de",)
    assert held.not_before >= before + delay
    await world.drain(10)
    assert len(world.platform_mailbox("acme")) == 1
    assert time.time() >= held.not_before  # delivered, and not before it was due


async def egress_ip_missing(world: Sandbox) -> None:
    allowed, refused = ["3.121.59.239", "3.65.146.216"], "18.158.122.164"
    for egress_ip in allowed:
        assert (await send_as_platform(world, egress_ip=egress_ip)).startswith("2.0.0 Ok")
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as error:
        await send_as_platform(world, egress_ip=refused)
    assert error.value.code == 554


async def bad_password(world: Sandbox) -> None:
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as error:
        await send_as_platform(world)
    assert error.value.code == 535


async def expired_certificate(world: Sandbox) -> None:
    # aiosmtplib lets the verification error of a STARTTLS handshake through unwrapped.
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        await send_as_platform(world)
    assert error.value.verify_message == "certificate has expired"


async def account_mismatch(world: Sandbox) -> None:
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as error:
        await send_as_platform(world)
    assert error.value.code == 553
    assert "not owned by user recruiting@acme.example" in error.value.message


async def wrong_encryption(world: Sandbox) -> None:
    # A TLS ClientHello sent to a server that greets in plain text: the handshake fails.
    with pytest.raises(aiosmtplib.SMTPException) as error:
        await send_as_platform(world)
    assert isinstance(error.value.__cause__, ssl.SSLError | ConnectionError | TimeoutError)


async def self_signed_certificate(world: Sandbox) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        await send_as_platform(world)
    assert error.value.verify_message == "self-signed certificate"


async def wrong_host_certificate(world: Sandbox) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as error:
        await send_as_platform(world)
    assert "Hostname mismatch" in str(error.value.verify_message)


async def starttls_not_offered(world: Sandbox) -> None:
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS extension not supported"):
        await send_as_platform(world)
    assert world.submission is not None and world.submission.authentications == []


async def closes_after_banner(world: Sandbox) -> None:
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send_as_platform(world)


async def session_of(world: Sandbox) -> SessionOutcome:
    config = config_of(world)
    assert config.company.smtp is not None
    return await probe_session(
        world.context(config), config.company.smtp, "jobs@acme.example", send_test=False
    )


async def no_banner(world: Sandbox) -> None:
    outcome = await session_of(world)
    banner = outcome.step("banner")
    assert outcome.failed == "banner" and banner is not None and banner.timed_out


async def starttls_on_implicit_port(world: Sandbox) -> None:
    outcome = await session_of(world)
    assert outcome.settings.port == 465 and outcome.settings.encryption == "starttls"
    banner = outcome.step("banner")
    assert outcome.failed == "banner" and banner is not None and banner.timed_out


async def smtp_host_private(world: Sandbox) -> None:
    answer = await world.resolver().resolve("smtp.acme.example", "A")
    assert [r.to_text() for r in answer] == ["10.0.0.25"]
    with pytest.raises(SandboxError):
        world.endpoints.dial("10.0.0.25", 587)


async def no_mx(world: Sandbox) -> None:
    with pytest.raises(dns.resolver.NoAnswer):
        await world.resolver().resolve("acme.example", "MX")
    # The platform finds the MX through the one DNS layer, whose error names what DNS said.
    with pytest.raises(
        DialError, match=r"MX of acme\.example: the name exists but has no MX record"
    ):
        await redirect_one(world)


async def spf_too_many_lookups(world: Sandbox) -> None:
    resolver = world.resolver()
    spf = [r.to_text() for r in await resolver.resolve("acme.example", "TXT")]
    assert spf == [
        '"v=spf1 mx a:smtp.acme.example include:_spf1.acme.example include:_spf2.acme.example include:_spf3.acme.example -all"'
    ]
    lookups = 5  # mx, a, three includes
    for name in ("_spf1", "_spf2", "_spf3"):
        record = (await resolver.resolve(f"{name}.acme.example", "TXT"))[0].to_text()
        lookups += record.count(" a:")
    assert lookups == 12


async def dmarc_reject(world: Sandbox) -> None:
    record = (await world.resolver().resolve("_dmarc.acme.example", "TXT"))[0].to_text()
    assert record == '"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@acme.example"'


Found = tuple[str, str, str, str | None]


async def sender_findings(world: Sandbox) -> list[Found]:
    """What the sender checks find for the world's account file, each identity's proof sent
    through the world: (check, subject, status, cause), in report order."""
    findings = await run_checks(world.context(config_of(world)), select(["sender"]))
    return [
        (f.check, f.subject, f.status.value, f.cause.value if f.cause else None) for f in findings
    ]


# The sender scenarios differ from healthy only in their account file: each must give the
# sender findings its file's fault calls for, with every proof sent through the world.


async def sender_parent_only(world: Sandbox) -> None:
    # No subcompanies: both positions belong to the parent (SPEC 1), and sender_name company
    # puts one name, the company's, into From.
    assert await sender_findings(world) == [
        ("sender.resolution", "Acme GmbH", "pass", None),
        ("sender.resolution", "Acme GmbH", "pass", None),
        ("sender.display_name", "Acme GmbH", "pass", None),
    ]


async def sender_subcompany_without_smtp(world: Sandbox) -> None:
    # Retail's candidates get mail from the platform's address (SPEC 1): delivered, but not
    # as the company; the parent's own position is unchanged.
    assert await sender_findings(world) == [
        ("sender.resolution", "Acme Retail GmbH", "warn", None),
        ("sender.resolution", "Acme GmbH", "pass", None),
        ("sender.display_name", "Acme GmbH", "pass", None),
        ("sender.display_name", "Acme GmbH", "pass", None),
        ("sender.display_name", "Acme Retail GmbH", "pass", None),
    ]


async def sender_unknown_subcompany(world: Sandbox) -> None:
    # The file does not load (SPEC 4): the audit stops at config.schema, no sender finding.
    result = await run_audit(world.scenario.config_path(), sandbox=world)
    assert result.config_error is not None
    assert "positions[0].subcompany" in str(result.config_error)
    assert [
        (f.check, f.subject, f.status.value, f.cause.value if f.cause else None)
        for f in result.report.findings
    ] == [("config.schema", "acme-unknown-subcompany", "fail", "unknown")]


async def sender_name_with_newline(world: Sandbox) -> None:
    # The employee's name holds a line break: it cannot go into From (RFC 5322 section 2.2),
    # so the position's mail and the name fail; the company's own name is fine.
    assert await sender_findings(world) == [
        ("sender.resolution", "Acme GmbH", "fail", "unknown"),
        ("sender.display_name", "Acme GmbH", "fail", "unknown"),
        ("sender.display_name", "Acme GmbH", "pass", None),
    ]


async def sender_international_names(world: Sandbox) -> None:
    # Non-ASCII names and a comma go out as RFC 2047 encoded words or RFC 5322 quoting and
    # decode back exactly: nothing fails.
    company, sub = "Société Générale (Acme) S.A.", "株式会社アクメ"
    assert await sender_findings(world) == [
        ("sender.resolution", company, "pass", None),
        ("sender.resolution", sub, "pass", None),
        ("sender.display_name", company, "pass", None),
        ("sender.display_name", company, "pass", None),
        ("sender.display_name", company, "pass", None),
        ("sender.display_name", sub, "pass", None),
    ]


async def four_logins_work(world: Sandbox) -> None:
    accounts = {
        "ACME": "jobs@acme.example",
        "ACME_RETAIL": "jobs@retail.acme.example",
        "ACME_LABS": "jobs@labs.acme.example",
        "ACME_LOGISTICS": "jobs@logistics.acme.example",
    }
    for name, local in accounts.items():
        settings = SmtpSettings(
            host="smtp.acme.example", port=587, encryption="starttls", account=local,
            password=Secret(world.environ[f"{name}_SMTP_PASSWORD"], source="test"),
        )  # fmt: skip
        result = await world.platform_client.send_via(
            settings,
            mail_from=local,
            rcpt_tos=["anna.schmidt@candidates.example"],
            data=b"Subject: x\r\n\r\nx\r\n",
        )
        assert result.reply.startswith("2.0.0 Ok")
    # Each position goes out as its own subcompany, with sender_name company's names.
    subjects = ("Acme Retail GmbH", "Acme Labs GmbH", "Acme Logistics GmbH", "Acme GmbH")
    assert await sender_findings(world) == [
        *(("sender.resolution", subject, "pass", None) for subject in subjects),
        *(
            ("sender.display_name", subject, "pass", None)
            for subject in (subjects[-1], *subjects[:-1])
        ),
    ]


async def parent_login_cannot_send_as_the_subcompany(world: Sandbox) -> None:
    config = config_of(world)
    retail = config.subcompanies[0].smtp
    assert retail is not None and retail.account == "jobs@acme.example"
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as error:
        await world.platform_client.send_via(
            retail, mail_from="jobs@retail.acme.example", rcpt_tos=["anna.schmidt@candidates.example"],
            data=b"Subject: x\r\n\r\nx\r\n",
        )  # fmt: skip
    assert error.value.code == 553


async def demo(world: Sandbox) -> None:
    await subject_tagged(world)
    with pytest.raises(aiosmtplib.SMTPConnectResponseError):
        await send_as_platform(world, egress_ip="18.158.122.164")


async def markup_banner(world: Sandbox) -> None:
    outcome = await session_of(world)
    assert outcome.greeting is not None
    assert '<script>alert("banner")</script>' in str(outcome.greeting)


EFFECTS: dict[str, Callable[[Sandbox], Awaitable[None]]] = {
    "healthy": healthy,
    "forward-inline": forward_inline,
    "forward-as-attachment": forward_as_attachment,
    "from-rewritten": from_rewritten,
    "headers-stripped": headers_stripped,
    "subject-tagged": subject_tagged,
    "footer-appended": footer_appended,
    "no-local-copy": no_local_copy,
    "no-redirect": no_redirect,
    "mistyped-platform-address": mistyped_platform_address,
    "mail-loop": mail_loop,
    "slow-delivery": slow_delivery,
    "egress-ip-missing": egress_ip_missing,
    "bad-password": bad_password,
    "expired-certificate": expired_certificate,
    "account-mismatch": account_mismatch,
    "wrong-encryption": wrong_encryption,
    "self-signed-certificate": self_signed_certificate,
    "wrong-host-certificate": wrong_host_certificate,
    "starttls-not-offered": starttls_not_offered,
    "closes-after-banner": closes_after_banner,
    "no-banner": no_banner,
    "starttls-on-implicit-port": starttls_on_implicit_port,
    "smtp-host-private": smtp_host_private,
    "no-mx": no_mx,
    "spf-too-many-lookups": spf_too_many_lookups,
    "dmarc-reject": dmarc_reject,
    "sender-parent-only": sender_parent_only,
    "sender-subcompany-without-smtp": sender_subcompany_without_smtp,
    "sender-unknown-subcompany": sender_unknown_subcompany,
    "sender-name-with-newline": sender_name_with_newline,
    "sender-international-names": sender_international_names,
    "sender-three-subcompanies": four_logins_work,
    "sender-subcompany-account-mismatch": parent_login_cannot_send_as_the_subcompany,
    "demo": demo,
    "markup-banner": markup_banner,
}


def test_every_scenario_file_has_its_world_effect_tested() -> None:
    assert sorted(EFFECTS) == scenario_names()
    assert SCENARIO_DIR.is_dir()


@pytest.mark.parametrize("name", scenario_names())
async def test_scenario_world_has_its_fault(
    name: str, tmp_path: Path, environ: dict[str, str]
) -> None:
    async with Sandbox(load_scenario(name), state_dir=tmp_path / "state", environ=environ) as world:
        await EFFECTS[name](world)
