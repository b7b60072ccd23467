"""The sandbox mail world over real sockets: DNS, submission (STARTTLS, implicit TLS, AUTH,
sender ownership, allowlist), the MX redirection with its local copy, durability on a kept state
folder, and mail folders only for mailboxes that get mail."""

from __future__ import annotations

import asyncio
import email.policy
import os
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from diagnostics.config import AccountConfig
from diagnostics.context import Endpoints
from diagnostics.errors import SandboxError
from diagnostics.net import connect_socket, smtp_session
from diagnostics.sandbox import world as world_module
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.smtpserver import require_loopback
from diagnostics.sandbox.world import Sandbox
from tests.sandbox.conftest import candidate_mail, with_changes

SUBMISSION = "198.51.100.20"
MX = "198.51.100.10"
EGRESS = ("3.121.59.239", "3.65.146.216", "18.158.122.164")


@asynccontextmanager
async def submission(
    world: Sandbox,
    port: int,
    *,
    egress_ip: str | None = EGRESS[0],
    tls: ssl.SSLContext | None = None,
    timeout: float = 5.0,
    **options: Any,
) -> AsyncIterator[aiosmtplib.SMTP]:
    """An SMTP client session to the submission server, from a platform egress IP."""
    host, local_port = world.endpoints.dial(SUBMISSION, port)
    source = world.egress_sources[egress_ip] if egress_ip else None
    sock = await connect_socket(host, local_port, timeout=timeout, source=source)
    async with smtp_session(
        sock,
        hostname="smtp.acme.example",
        tls_context=tls or world.trust(),
        timeout=timeout,
        **options,
    ) as client:
        if client.last_ehlo_response is None:
            await client.ehlo()
        yield client


async def test_mx_query_is_answered_by_the_sandbox_dns(world: Sandbox) -> None:
    resolver = world.resolver(timeout=2)
    mx = await resolver.resolve("acme.example", "MX")
    assert [r.to_text() for r in mx] == ["10 mx.acme.example."]
    address = await resolver.resolve("mx.acme.example", "A")
    assert [r.to_text() for r in address] == [MX]
    spf = await resolver.resolve("acme.example", "TXT")
    assert [r.to_text() for r in spf] == ['"v=spf1 mx a:smtp.acme.example -all"']
    assert ("acme.example.", "MX", "udp") in world.dns.queries


async def test_starttls_then_auth_succeeds_with_the_sandbox_ca(
    world: Sandbox, acme: AccountConfig
) -> None:
    smtp = acme.company.smtp
    assert smtp is not None
    async with submission(world, 587, start_tls=False) as client:
        assert client.supports_extension("starttls")
        # Postfix with smtpd_tls_auth_only: no AUTH before the session is encrypted.
        assert not client.supports_extension("auth")
        await client.starttls()
        await client.ehlo()
        assert sorted(client.server_auth_methods) == ["login", "plain"]
        cipher = client.get_transport_info("ssl_object")
        assert cipher.version() in ("TLSv1.2", "TLSv1.3")
        peer = cipher.getpeercert()
        assert ("DNS", "smtp.acme.example") in peer["subjectAltName"]
        response = await client.auth_plain(smtp.account, smtp.password.reveal())
        assert response.code == 235
    assert world.submission is not None
    assert world.submission.authentications == [("jobs@acme.example", "PLAIN", True)]


async def test_wrong_password_is_refused_once_with_535(world: Sandbox, acme: AccountConfig) -> None:
    async with submission(world, 587) as client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.auth_login("jobs@acme.example", "not-the-password")
    assert refused.value.code == 535
    assert "5.7.8" in refused.value.message
    assert world.submission is not None
    assert world.submission.authentications == [("jobs@acme.example", "LOGIN", False)]


async def test_platform_client_makes_exactly_one_auth_attempt(
    make_world: Callable[..., Sandbox], healthy: Scenario, environ: dict[str, str]
) -> None:
    users = tuple(u.model_copy(update={"wrong_password": True}) for u in healthy.submission.users)
    async with make_world(with_changes(healthy, submission={"users": users})) as world:
        from diagnostics.config import load_config
        from tests.sandbox.conftest import ACME

        config = load_config(ACME, environ=world.environ)
        assert config.company.smtp is not None
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await world.platform_client.send_via(
                config.company.smtp,
                mail_from="jobs@acme.example",
                rcpt_tos=["anna.schmidt@candidates.example"],
                data=candidate_mail("t1"),
            )
        assert refused.value.code == 535
        assert world.submission is not None
        assert world.submission.authentications == [("jobs@acme.example", "PLAIN", False)]


async def test_mail_before_starttls_is_refused(world: Sandbox) -> None:
    async with submission(world, 587, start_tls=False) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("jobs@acme.example")
    assert refused.value.code == 530
    assert "STARTTLS" in refused.value.message


async def test_implicit_tls_on_465_authenticates_and_relays_to_the_candidate(
    world: Sandbox, acme: AccountConfig
) -> None:
    retail = acme.subcompanies[0].smtp
    assert retail is not None and retail.port == 465
    result = await world.platform_client.send_via(
        retail,
        mail_from="jobs@retail.acme.example",
        rcpt_tos=["anna.schmidt@candidates.example"],
        data=candidate_mail("implicit", sender="jobs@retail.acme.example"),
        egress_ip=EGRESS[1],
    )
    assert result.reply.startswith("2.0.0 Ok: queued as")
    await world.drain(5)
    box = world.candidate_mailbox("anna.schmidt@candidates.example")
    assert len(box) == 1
    delivered = box.read(box.keys()[0])
    assert delivered.startswith(b"Return-Path: <jobs@retail.acme.example>\r\n")
    assert b"from outbound.m.personio.de ([3.65.146.216])" in delivered
    assert b"with ESMTPSA" in delivered


async def test_sender_other_than_the_account_is_rejected(
    world: Sandbox, acme: AccountConfig
) -> None:
    smtp = acme.company.smtp
    assert smtp is not None
    async with submission(world, 587) as client:
        await client.auth_plain(smtp.account, smtp.password.reveal())
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("jobs@retail.acme.example")
        accepted = await client.mail("jobs@acme.example")
    assert refused.value.code == 553
    assert refused.value.message == (
        "5.7.1 <jobs@retail.acme.example>: Sender address rejected: not owned by user "
        "jobs@acme.example"
    )
    assert accepted.code == 250


@pytest.mark.parametrize("action", ["reject", "drop"])
async def test_allowlist_refuses_the_egress_ip_left_out_and_accepts_the_others(
    make_world: Callable[..., Sandbox], healthy: Scenario, action: str
) -> None:
    scenario = with_changes(
        healthy,
        submission={
            "allowlist": ("3.121.59.239/32", "3.65.146.216/32"),
            "allowlist_action": action,
        },
    )
    async with make_world(scenario) as world:
        for egress_ip in EGRESS[:2]:
            async with submission(world, 587, egress_ip=egress_ip) as client:
                assert client.last_ehlo_response is not None
                assert client.last_ehlo_response.code == 250
        if action == "reject":
            with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
                async with submission(world, 587, egress_ip=EGRESS[2]):
                    pass
            assert refused.value.code == 554
            assert refused.value.message == (
                "5.7.1 <unknown[18.158.122.164]>: Client host rejected: Access denied"
            )
        else:
            with pytest.raises(aiosmtplib.SMTPTimeoutError):
                async with submission(world, 587, egress_ip=EGRESS[2], timeout=0.5):
                    pass


async def test_mail_to_the_custom_address_reaches_unassigned_and_keeps_a_copy(
    world: Sandbox,
) -> None:
    data = candidate_mail("roundtrip-1")
    result = await world.platform_client.send_direct(
        mail_from="max.mustermann@example.org", rcpt_tos=["jobs@acme.example"], data=data
    )
    assert result.reply.startswith("2.0.0 Ok")
    await world.drain(5)
    local = world.company_mailbox("jobs@acme.example")
    unassigned = world.platform_mailbox("acme", "unassigned")
    assert (len(local), len(unassigned)) == (1, 1)
    arrived = message_from_bytes(unassigned.read(unassigned.keys()[0]), policy=email.policy.default)
    assert arrived["Message-ID"] == "<roundtrip-1@example.org>"
    assert arrived["To"] == "jobs@acme.example"
    received = arrived.get_all("Received")
    assert len(received) == 2
    assert "by inbound.m.personio.de" in received[0]
    assert "for <acme-jobs@m.personio.de>" in received[0]
    assert "by mx.acme.example" in received[1]
    # The redirect passes the original bytes on: only Received fields are added.
    assert unassigned.read(unassigned.keys()[0]).endswith(data)


async def test_mail_from_a_known_candidate_is_filed_in_their_profile(world: Sandbox) -> None:
    await world.platform_client.send_direct(
        mail_from="anna.schmidt@candidates.example",
        rcpt_tos=["jobs@acme.example"],
        data=candidate_mail("reply", sender="anna.schmidt@candidates.example"),
    )
    await world.drain(5)
    assert len(world.platform_mailbox("acme", "candidates/c-1001")) == 1
    assert len(world.platform_mailbox("acme", "unassigned")) == 0


async def test_messages_and_queue_survive_a_restart(
    make_world: Callable[..., Sandbox], healthy: Scenario, tmp_path: Any
) -> None:
    state = tmp_path / "kept"
    delayed = with_changes(
        healthy,
        company_mx={"faults": healthy.company_mx.faults.model_copy(update={"delay_s": 0.5})},
    )
    async with make_world(delayed, state_dir=state) as world:
        await world.platform_client.send_direct(
            mail_from="max.mustermann@example.org",
            rcpt_tos=["jobs@acme.example"],
            data=candidate_mail("restart"),
        )
        # Stopped before the delayed redirection ran: the message waits in the queue on disk.
        assert len(world.platform_mailbox("acme")) == 0
    async with make_world(healthy, state_dir=state) as world:
        assert len(world.company_mailbox("jobs@acme.example")) == 1
        await world.drain(5)
        unassigned = world.platform_mailbox("acme")
        assert len(unassigned) == 1
        assert b"<restart@example.org>" in unassigned.read(unassigned.keys()[0])
    async with make_world(healthy, state_dir=state) as world:
        assert len(world.platform_mailbox("acme")) == 1
        assert len(world.company_mailbox("jobs@acme.example")) == 1


async def test_no_local_copy_fault(make_world: Callable[..., Sandbox], healthy: Scenario) -> None:
    faults = healthy.company_mx.faults.model_copy(update={"local_copy": False})
    async with make_world(with_changes(healthy, company_mx={"faults": faults})) as world:
        await world.platform_client.send_direct(
            mail_from="max.mustermann@example.org",
            rcpt_tos=["jobs@acme.example"],
            data=candidate_mail("nocopy"),
        )
        await world.drain(5)
        assert len(world.company_mailbox("jobs@acme.example")) == 0
        assert len(world.platform_mailbox("acme")) == 1


async def test_forward_as_attachment_fault(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    faults = healthy.company_mx.faults.model_copy(update={"style": "forward_attachment"})
    async with make_world(with_changes(healthy, company_mx={"faults": faults})) as world:
        await world.platform_client.send_direct(
            mail_from="max.mustermann@example.org",
            rcpt_tos=["jobs@acme.example"],
            data=candidate_mail("attached"),
        )
        await world.drain(5)
        box = world.platform_mailbox("acme")
        arrived = message_from_bytes(box.read(box.keys()[0]), policy=email.policy.default)
        assert arrived["From"] == "jobs@acme.example"
        assert arrived["Subject"].startswith("Fwd: Bewerbung")
        parts = [p.get_content_type() for p in arrived.walk()]
        assert "message/rfc822" in parts


async def test_redirect_loop_is_stopped_by_the_hop_limit(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    looping = with_changes(
        healthy,
        company_mx={
            "mailboxes": ("jobs@acme.example", "recruiting@acme.example"),
            "redirects": {
                "jobs@acme.example": "recruiting@acme.example",
                "recruiting@acme.example": "jobs@acme.example",
            },
            "max_hops": 6,
        },
    )
    async with make_world(looping) as world:
        await world.platform_client.send_direct(
            mail_from="max.mustermann@example.org",
            rcpt_tos=["jobs@acme.example"],
            data=candidate_mail("loop"),
        )
        await world.drain(10)
        copies = len(world.company_mailbox("jobs@acme.example")) + len(
            world.company_mailbox("recruiting@acme.example")
        )
        # Arrivals carrying 0..5 Received fields are accepted, each keeping a local copy; the
        # one that arrives with 6 is refused.
        assert copies == 6
        assert len(world.platform_mailbox("acme")) == 0
        assert len(world.postmaster) == 1
        bounce = world.postmaster.read(world.postmaster.keys()[0])
        assert b"Status: 5.4.6" in bounce
        assert b"suspected mail loop" in bounce


async def test_mistyped_platform_address_bounces_with_user_unknown(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    mistyped = with_changes(
        healthy, company_mx={"redirects": {"jobs@acme.example": "acme-job@m.personio.de"}}
    )
    async with make_world(mistyped) as world:
        await world.platform_client.send_direct(
            mail_from="max.mustermann@example.org",
            rcpt_tos=["jobs@acme.example"],
            data=candidate_mail("typo"),
        )
        await world.drain(5)
        assert len(world.platform_mailbox("acme")) == 0
        bounce = message_from_bytes(
            world.postmaster.read(world.postmaster.keys()[0]), policy=email.policy.default
        )
        assert bounce.get_content_type() == "multipart/report"
        assert bounce.get_param("report-type") == "delivery-status"
        status = [p for p in bounce.walk() if p.get_content_type() == "message/delivery-status"]
        assert len(status) == 1
        text = world.postmaster.read(world.postmaster.keys()[0])
        assert b"Final-Recipient: rfc822; acme-job@m.personio.de" in text
        assert b"Status: 5.1.1" in text


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("expired", "certificate has expired"),
        ("self_signed", "self-signed certificate"),
        ("wrong_host", "Hostname mismatch"),
    ],
)
async def test_bad_certificates_fail_verification(
    make_world: Callable[..., Sandbox], healthy: Scenario, variant: str, reason: str
) -> None:
    async with make_world(with_changes(healthy, submission={"certificate": variant})) as world:
        with pytest.raises(aiosmtplib.SMTPConnectError) as failed:
            async with submission(world, 465, use_tls=True):
                pass
        cause = failed.value.__cause__ or failed.value.__context__
        assert isinstance(cause, ssl.SSLCertVerificationError)
        assert reason in str(cause.verify_message)


async def test_sandbox_never_dials_outside_its_world(world: Sandbox) -> None:
    with pytest.raises(SandboxError, match="never dials out"):
        world.endpoints.dial("192.0.2.99", 25)
    assert Endpoints().dial("192.0.2.99", 25) == ("192.0.2.99", 25)
    with pytest.raises(SandboxError, match="loopback"):
        require_loopback("0.0.0.0")  # noqa: S104 - the point is that it is refused


async def test_describe_lists_endpoints_without_secrets(
    world: Sandbox, environ: dict[str, str]
) -> None:
    described = world.describe()
    roles = sorted({s["role"] for s in described["servers"]})
    assert roles == [
        "candidates MX",
        "company MX",
        "platform inbound",
        "submission (STARTTLS)",
        "submission (implicit TLS)",
    ]
    assert described["egress_sources"] == {
        "3.121.59.239": "127.0.10.1",
        "3.65.146.216": "127.0.10.2",
        "18.158.122.164": "127.0.10.3",
    }
    assert described["secrets_from_environment"] == [
        "ACME_RETAIL_SMTP_PASSWORD",
        "ACME_SMTP_PASSWORD",
    ]
    text = repr(described)
    for password in environ.values():
        assert password not in text


async def test_stop_releases_every_port(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    async with make_world(healthy) as world:
        listening = [tuple(s["listen"].rsplit(":", 1)) for s in world.describe()["servers"]]
    for host, port in listening:
        with pytest.raises(OSError):
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            writer.close()


async def test_a_relay_fault_bounces_instead_of_retrying_forever(
    world: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        # A bug inside the relay cannot be provoked from outside; this stands in for one.
        raise RuntimeError("relay bug")

    assert world._relay is not None
    monkeypatch.setattr(world._relay, "_mx_addresses", broken)
    await world.platform_client.send_direct(
        mail_from="max.mustermann@example.org",
        rcpt_tos=["jobs@acme.example"],
        data=candidate_mail("relay-bug"),
    )
    await world.drain(5)
    assert len(world.platform_mailbox("acme")) == 0
    bounce = world.postmaster.read(world.postmaster.keys()[0])
    assert b"451 4.4.1 internal error: RuntimeError" in bounce


async def test_a_session_introduces_itself_by_its_source_address(world: Sandbox) -> None:
    """No EHLO name of our own: the address literal of the socket, not socket.getfqdn() (a
    reverse lookup of this machine that could leave loopback)."""
    async with submission(world, 587) as client:
        assert client.local_hostname == f"[{world.egress_sources[EGRESS[0]]}]"
        assert client.last_ehlo_response is not None


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of every file and folder fsynced from now on."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


async def redirect_one(world: Sandbox, token: str) -> None:
    """A candidate's mail to the custom address, through the MX, queue and relay."""
    await world.platform_client.send_direct(
        mail_from="max.mustermann@example.org",
        rcpt_tos=["jobs@acme.example"],
        data=candidate_mail(token),
    )
    await world.drain(5)


async def test_a_world_on_its_own_folder_makes_folders_only_for_mail_and_never_fsyncs(
    healthy: Scenario, environ: dict[str, str], fsynced: list[str]
) -> None:
    async with Sandbox(healthy, environ=environ) as world:
        state = world.state_dir
        await redirect_one(world, "throwaway")
        mailboxes = state / "company" / "mailboxes"
        assert sorted(p.name for p in mailboxes.iterdir()) == ["jobs@acme.example"]
        assert (mailboxes / "jobs@acme.example" / "new").is_dir()
        assert (state / "company" / "queue" / "new").is_dir()
        assert sorted(p.name for p in (state / "platform" / "acme").iterdir()) == ["unassigned"]
        assert not (state / "company" / "postmaster").exists()
        assert not (state / "candidates").exists()
        # Mailboxes that never got mail read as empty, and looking does not make them.
        assert len(world.company_mailbox("jobs@retail.acme.example")) == 0
        assert world.postmaster.keys() == []
        assert len(world.candidate_mailbox("anna.schmidt@candidates.example")) == 0
        assert len(world.platform_mailbox("acme", "candidates/c-1001")) == 0
        assert not (mailboxes / "jobs@retail.acme.example").exists()
        assert not (state / "candidates").exists()
        assert len(world.company_mailbox("jobs@acme.example")) == 1
        assert [a.folder for a in world.mailboxes().arrived("throwaway")] == ["unassigned"]
    assert fsynced == []
    assert not state.exists()


def _shm_with_room() -> bool:
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return False
    return room.f_bavail * room.f_frsize >= world_module._SHM_ROOM and os.access(
        "/dev/shm", os.W_OK | os.X_OK
    )


async def test_a_throwaway_world_lives_in_dev_shm_unless_tmpdir_says_otherwise(
    healthy: Scenario, environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    world_module._throwaway_parent.cache_clear()
    try:
        async with Sandbox(healthy, environ=environ) as world:
            await redirect_one(world, "in-memory")
            expected = Path("/dev/shm") if _shm_with_room() else Path(tempfile.gettempdir())
            assert world.state_dir.parent == expected
            assert oct(world.state_dir.stat().st_mode & 0o777) == oct(0o700)
            assert len(world.company_mailbox("jobs@acme.example")) == 1
        assert not world.state_dir.exists()
        # A TMPDIR the user set is where throwaway worlds go, /dev/shm or not.
        world_module._throwaway_parent.cache_clear()
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
        async with Sandbox(healthy, environ=environ) as world:
            assert world.state_dir.parent == tmp_path
    finally:
        world_module._throwaway_parent.cache_clear()


async def test_a_kept_world_makes_a_removed_mailbox_folder_again_when_looked_into(
    make_world: Callable[..., Sandbox], healthy: Scenario, tmp_path: Path
) -> None:
    async with make_world(healthy, state_dir=tmp_path / "kept") as world:
        box = world.company_mailbox("jobs@retail.acme.example")
        assert len(box) == 0
        shutil.rmtree(box.root)
        again = world.company_mailbox("jobs@retail.acme.example")
        assert len(again) == 0 and (again.root / "new").is_dir()


async def test_a_world_on_a_given_folder_fsyncs_every_delivery(
    make_world: Callable[..., Sandbox], healthy: Scenario, tmp_path: Path, fsynced: list[str]
) -> None:
    state = tmp_path / "kept"
    async with make_world(healthy, state_dir=state) as world:
        fsynced.clear()  # the CA certificate written at start
        await redirect_one(world, "kept")
    synced: dict[str, list[str]] = {}
    for path in map(Path, fsynced):
        # A message's file while still in tmp/, then the new/ folder it was renamed into.
        kind, box = (
            ("file", path.parent.parent) if path.parent.name == "tmp" else (path.name, path.parent)
        )
        synced.setdefault(box.relative_to(state).as_posix(), []).append(kind)
    boxes = ("company/mailboxes/jobs@acme.example", "company/queue", "platform/acme/unassigned")
    assert synced == {box: ["file", "new"] for box in boxes}
    # A kept world has every mailbox's folders from the start, for a mail client to open.
    assert (state / "company" / "mailboxes" / "jobs@retail.acme.example" / "new").is_dir()
