"""The sandbox: a local mail world on loopback, built from a scenario.

``async with Sandbox(load_scenario("healthy")) as world:`` starts, in the running event loop,
the DNS server, the company MX and submission server, the platform's inbound MX and the
candidates' mail server, each on an ephemeral loopback port, and the relay that carries mail
between them. DNS answers world addresses (documentation ranges); :attr:`Sandbox.endpoints`
maps each world address and port to the loopback socket that plays it. The platform's egress
IPs are played by their own loopback source addresses (127.0.10.x).

Mail is stored in Maildirs under ``state_dir``. On a ``state_dir`` given to it, a sandbox
makes every mailbox's folders at start and stores every message durably (fsync) before it
answers 250, and a sandbox started again on the same folder has all its mail and delivers what
was still queued. Without one, it works in a temporary folder that it removes at stop, makes a
mailbox's folders with its first message (one that never got mail reads as empty), and stores
mail without fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import weakref
from collections import ChainMap
from collections.abc import Mapping
from functools import cache, lru_cache, partial
from pathlib import Path
from types import TracebackType
from typing import Any

import dns.asyncresolver
import dns.resolver

from diagnostics.context import Context, Endpoints, Timeouts
from diagnostics.errors import SandboxError
from diagnostics.fields import envelope_address
from diagnostics.model.account import AccountConfig
from diagnostics.parse.dkim import DKIMKey
from diagnostics.profiles import get_profile
from diagnostics.sandbox.certs import IssuedCert, SandboxCA
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sandbox.mailboxes import SandboxMailboxes
from diagnostics.sandbox.maildir import Maildir
from diagnostics.sandbox.mx import CompanyMXHandler
from diagnostics.sandbox.platform import (
    CandidateHandler,
    InboundAccount,
    PlatformClient,
    PlatformInboundHandler,
)
from diagnostics.sandbox.relay import Queue, Relay
from diagnostics.sandbox.scenario import Scenario, Submission, SubmissionUser
from diagnostics.sandbox.smtpserver import Gate, PeerMap, SandboxSMTP, bound_port, listen
from diagnostics.sandbox.submission import Account, SubmissionHandler
from diagnostics.secrets import Secret, env_reference_name, read_secret_file

LOOPBACK = "127.0.0.1"
# Each platform egress IP gets 127.0.10.<n>; the company relay sends from 127.0.20.1.
_EGRESS_BASE = ipaddress.ip_address("127.0.10.1")
_RELAY_SOURCE = "127.0.20.1"
_SERVER_IDLE_S = 60
PROBE_LOCAL_PART = "maildiag-probe"


_CA_LOCK = threading.Lock()
_CA: list[SandboxCA] = []


def _world_ca() -> SandboxCA:
    """The CA of every world in this process: each world trusts it alone, and a batch of many
    worlds would otherwise make a CA and a certificate per server for each. Made under a lock:
    worlds started at once in several threads (a Dask worker's audits) must get the same."""
    with _CA_LOCK:
        if not _CA:
            _CA.append(SandboxCA())
        return _CA[0]


@lru_cache(maxsize=1024)
def _certificate(hostname: str, variant: str) -> IssuedCert:
    """The server certificate of ``hostname`` in ``variant``, issued once per process."""
    return _world_ca().issue([hostname], variant=variant)  # type: ignore[arg-type]


@lru_cache(maxsize=1024)
def _server_context(certificate: IssuedCert) -> ssl.SSLContext:
    """A TLS server context serving ``certificate`` (one serves any number of listeners)."""
    return certificate.server_context()


@cache
def _candidates_key(domain: str) -> DKIMKey:
    """The key the candidates' domain signs the round trip's message with: one per process,
    as a 2048-bit RSA key takes tens of milliseconds to make, which a batch of many worlds
    would pay for each (every world publishes it in its own DNS)."""
    return DKIMKey.generate(domain)


# A throwaway world's mail is a few messages of a few KB; this much room left in memory-backed
# /dev/shm is plenty (a container may give it only 64 MB, shared with others).
_SHM = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private (0700) folder in it
_SHM_ROOM = 32 * 2**20


@cache
def _throwaway_parent() -> str | None:
    """Where a world on its own folder keeps it: memory-backed /dev/shm when the machine has
    one with room, else the usual temporary folder (None).

    Such a world's mail is removed when it stops and never needs to reach a disk; on a disk
    file system each folder made and removed and each message written costs a journal
    entry, and a batch makes thousands of them. An explicit TMPDIR is the user's choice and
    is kept.
    """
    if os.environ.get("TMPDIR"):
        return None
    try:
        room = os.statvfs(_SHM)
    except OSError:
        return None
    if not os.access(_SHM, os.W_OK | os.X_OK) or room.f_bavail * room.f_frsize < _SHM_ROOM:
        return None
    return str(_SHM)


class Sandbox:
    """The local mail world of one scenario; an async context manager.

    ``state_dir`` is the folder kept for its mail across restarts; without it the world uses
    a temporary folder of its own, removed at stop.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        state_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self._own_state = state_dir is None
        self.state_dir = (
            Path(state_dir)
            if state_dir
            else Path(tempfile.mkdtemp(prefix="maildiag-sandbox-", dir=_throwaway_parent()))
        )
        # Every mailbox of this world is opened through this, so that all of them store mail
        # alike. A world on its own temporary folder removes it at stop: its mail cannot
        # outlive the process, so an fsync would only make each delivery wait for the disk,
        # and a folder no mail reaches is made for nothing. A world on a kept folder (``sandbox
        # up --state``) keeps every mailbox's folders from the start, for a mail client to open.
        self._new_maildir = partial(Maildir, lazy=self._own_state, durable=not self._own_state)
        self.profile = get_profile(scenario.platform.profile)
        base_env = environ if environ is not None else os.environ
        self._generated: dict[str, str] = {}
        # Generated first: a variable exported empty is one the sandbox generated a value for.
        self.environ: Mapping[str, str] = ChainMap(self._generated, dict(base_env))
        self.egress_sources = {
            str(network.network_address): str(_EGRESS_BASE + index)
            for index, network in enumerate(self.profile.egress_ips)
        }
        world_by_source = {source: egress for egress, source in self.egress_sources.items()}
        world_by_source[_RELAY_SOURCE] = scenario.company_mx.address
        self.peers = PeerMap(world_by_source)
        self.ca = _world_ca()
        # The round trip's test sender writes as a candidate would, DKIM-signed with a key
        # published in the candidates' zone.
        self.probe_sender = f"{PROBE_LOCAL_PART}@{scenario.candidates.domains[0]}"
        self.dkim_key = _candidates_key(scenario.candidates.domains[0])
        zones = {
            zone: [ZoneRecord(r.name, r.rtype, r.value, r.ttl) for r in records]
            for zone, records in scenario.dns.items()
        }
        probe_zone = scenario.candidates.domains[0].rstrip(".")
        zones.setdefault(probe_zone, []).append(
            ZoneRecord(self.dkim_key.record_name, "TXT", self.dkim_key.txt)
        )
        self.dns = SandboxDNS(
            zones,
            host=LOOPBACK,
            faults=scenario.dns_faults,
        )
        self._routes: dict[tuple[str, int], tuple[str, int]] = {}
        self._servers: list[asyncio.Server] = []
        # Python 3.11's Server.close() leaves accepted connections open; stop() closes these.
        self._sessions: weakref.WeakSet[SandboxSMTP] = weakref.WeakSet()
        self._relay: Relay | None = None
        self._started = False
        self.submission: SubmissionHandler | None = None
        # Every submission server by host name (a subcompany may send through its own).
        self.submissions: dict[str, SubmissionHandler] = {}
        self.inbound: dict[str, InboundAccount] = {}
        self.candidate_server: CandidateHandler | None = None
        # Mailboxes looked into, by folder, each opened once.
        self._opened: dict[Path, Maildir] = {}

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every server; SandboxError when something cannot start."""
        if self._started:
            raise SandboxError("this sandbox is already running")
        self._started = True
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # A throwaway world's folder goes with the process: no fsync (see _new_maildir).
            self.ca_file = self.ca.write_ca(
                self.state_dir / "sandbox-ca.pem", durable=not self._own_state
            )
            await self.dns.start()
            await self._start_servers()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every server; queued mail stays in a given state folder, and a temporary one
        is removed. Idempotent."""
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for session in list(self._sessions):
            if isinstance(session.transport, asyncio.Transport):
                session.transport.abort()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost
        for server in servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await server.wait_closed()
        await self.dns.stop()
        self._started = False
        if self._own_state:
            # Removed in a thread, so that the event loop goes on serving the other worlds of a
            # batch meanwhile.
            await asyncio.to_thread(shutil.rmtree, self.state_dir, ignore_errors=True)

    async def _serve(
        self,
        world: tuple[str, int],
        handler: Any,
        *,
        hostname: str,
        gate: Gate | None = None,
        ssl_context: ssl.SSLContext | None = None,
        **smtp: Any,
    ) -> None:
        make = partial(
            SandboxSMTP,
            handler,
            gate=gate or Gate(self.peers),
            implicit_tls=ssl_context is not None,
            hostname=hostname,
            timeout=_SERVER_IDLE_S,
            enable_SMTPUTF8=True,
            **smtp,
        )

        def factory() -> SandboxSMTP:
            session = make()
            self._sessions.add(session)
            return session

        server = await listen(factory, host=LOOPBACK, ssl_context=ssl_context)
        self._servers.append(server)
        self._routes[(str(ipaddress.ip_address(world[0])), world[1])] = (
            LOOPBACK,
            bound_port(server),
        )

    def _secret(self, user: SubmissionUser) -> Secret:
        if user.password_file:
            # The account file names the file; the server holds what it holds.
            value = read_secret_file(Path(user.password_file)).reveal()
            name = user.password_file
        else:
            found = env_reference_name(user.password)
            if found is None:
                raise SandboxError(
                    f"scenario {self.scenario.name}: password must be a ${{ENV}} reference"
                )
            name = found
            value = self.environ.get(name, "")
            if not value:
                value = self._generated[name] = secrets.token_urlsafe(18)
        if user.wrong_password:
            # The server holds another password than the one the account file resolves to.
            value = "wrong-" + secrets.token_urlsafe(12)
        return Secret(value, source=f"sandbox:{name}")

    async def _start_submission(
        self, sub: Submission, queue: Queue
    ) -> tuple[SubmissionHandler, IssuedCert]:
        """One submission server: its logins, certificate, allowlist and ports."""
        accounts = {
            user.account: Account(
                user.account,
                self._secret(user),
                frozenset(envelope_address(a).casefold() for a in (user.account, *user.send_as)),
            )
            for user in sub.users
        }
        handler = SubmissionHandler(hostname=sub.hostname, accounts=accounts, queue=queue)
        certificate = _certificate(sub.hostname, sub.certificate)
        allowlist = (
            tuple(ipaddress.ip_network(n) for n in sub.allowlist)
            if sub.allowlist is not None
            else None
        )
        gate = Gate(self.peers, allowlist, sub.allowlist_action, sub.behaviour)
        common: dict[str, Any] = {
            "hostname": sub.hostname,
            "gate": gate,
            "ident": sub.banner,
            "auth_required": True,
            "authenticator": handler.authenticator,
        }
        for port in sub.ports.starttls:
            await self._serve(
                (sub.address, port),
                handler,
                tls_context=None if sub.starttls == "absent" else _server_context(certificate),
                require_starttls=sub.starttls == "required",
                auth_require_tls=not sub.plaintext_auth,
                **common,
            )
        for port in sub.ports.tls:
            await self._serve(
                (sub.address, port),
                handler,
                ssl_context=_server_context(certificate),
                # aiosmtpd only knows STARTTLS sessions as encrypted; this one is from byte one.
                auth_require_tls=False,
                **common,
            )
        return handler, certificate

    async def _start_servers(self) -> None:
        scenario = self.scenario
        root = self.state_dir
        new_maildir = self._new_maildir
        queue = Queue(new_maildir(root / "company" / "queue"))
        self.postmaster = new_maildir(root / "company" / "postmaster")
        resolver = self.dns.resolver(timeout=5.0)

        mx = scenario.company_mx
        mailboxes = {
            a: new_maildir(root / "company" / "mailboxes" / a.lower()) for a in mx.mailboxes
        }
        domains = {a.rsplit("@", 1)[-1] for a in (*mx.mailboxes, *mx.redirects)}
        self.company_mailboxes = mailboxes
        await self._serve(
            (mx.address, 25),
            CompanyMXHandler(mx, domains=domains, mailboxes=mailboxes, queue=queue),
            hostname=mx.hostname,
            ident="ESMTP",
        )

        for index, sub in enumerate(scenario.submissions):
            handler, certificate = await self._start_submission(sub, queue)
            self.submissions[sub.hostname] = handler
            if index == 0:
                self.submission, self.certificate = handler, certificate

        platform = scenario.platform
        for account, candidates in platform.accounts.items():
            self.inbound[account] = InboundAccount(
                account,
                self.profile.inbound_address_for(account),
                candidates,
                root / "platform" / account,
                open_maildir=new_maildir,
            )
        await self._serve(
            (platform.address, 25),
            PlatformInboundHandler(hostname=platform.hostname, accounts=self.inbound),
            hostname=platform.hostname,
            ident="ESMTP",
        )

        cand = scenario.candidates
        self.candidate_server = CandidateHandler(
            hostname=cand.hostname,
            domains=set(cand.domains),
            root=root / "candidates",
            open_maildir=new_maildir,
        )
        await self._serve(
            (cand.address, 25), self.candidate_server, hostname=cand.hostname, ident="ESMTP"
        )

        self.endpoints = Endpoints(self._routes, strict=True)
        self._relay = Relay(
            queue,
            resolver=resolver,
            endpoints=self.endpoints,
            helo=mx.hostname,
            postmaster=self.postmaster,
            bounce_domains=frozenset({*domains, *cand.domains}),
            source=_RELAY_SOURCE,
        )
        self._relay.start()
        self.platform_client = PlatformClient(
            resolver=resolver,
            endpoints=self.endpoints,
            trust=self.trust(),
            egress_sources=self.egress_sources,
            helo=f"outbound.{self.profile.inbound_domain}",
        )

    # -- what tests, checks and notebooks use -----------------------------------------------

    def resolver(self, *, timeout: float = 5.0) -> dns.asyncresolver.Resolver:
        """A dnspython resolver aimed at the sandbox's DNS server."""
        return self.dns.resolver(timeout=timeout)

    def trust(self) -> ssl.SSLContext:
        """A client TLS context that trusts the sandbox CA (and nothing else)."""
        return self.ca.client_context()

    def _maildir(self, *parts: str) -> Maildir:
        """The Maildir under the state folder at ``parts``, opened once. In a throwaway world
        it reads as empty while it has no folder (no mail yet, or removed meanwhile) and the
        next message makes the folder again; in a kept one, a folder removed meanwhile is made
        again when it is looked into."""
        path = self.state_dir.joinpath(*parts)
        box = self._opened.get(path)
        if box is None or (not box.lazy and not box.root.is_dir()):
            box = self._opened[path] = self._new_maildir(path)
        return box

    def company_mailbox(self, address: str) -> Maildir:
        """The company's local mailbox of ``address`` (an internationalised domain in either
        form: the world keeps it by its A-label)."""
        return self._maildir("company", "mailboxes", envelope_address(address).lower())

    def platform_mailbox(self, account: str, folder: str = "unassigned") -> Maildir:
        """The platform's inbound ``folder`` (``unassigned`` or ``candidates/<id>``) of ``account``."""
        return self._maildir("platform", account, *folder.split("/"))

    def candidate_mailbox(self, address: str) -> Maildir:
        """The mailbox of candidate ``address``."""
        return self._maildir("candidates", address.lower())

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until the company relay has delivered (or bounced) everything queued."""
        if self._relay is None:
            raise SandboxError("the sandbox is not running")
        await self._relay.drain(timeout)

    def mailboxes(self) -> SandboxMailboxes:
        """Where the round trip's message and its echoes land in this world."""
        return SandboxMailboxes(self)

    def context(
        self,
        config: AccountConfig,
        *,
        config_path: Path | None = None,
        timeouts: Timeouts | None = None,
        send_test: bool = False,
    ) -> Context:
        """The check context for ``config`` in this world."""
        if timeouts is None:
            defaults = {
                "dns": 3,
                "connect": 5,
                "banner": 10,
                "command": 10,
                "data": 20,
                "check": 60,
                # Loopback delivers in milliseconds; three seconds is slow here, and leaves room
                # for a machine busy with a batch of audits, whose own loop runs late.
                "roundtrip": 10,
                "roundtrip_warn": 3,
            }
            timeouts = Timeouts(**{**defaults, **self.scenario.timeouts})
        # One audit's checks ask the same names again and again (the SMTP host from every
        # check that connects): remembered for the audit's life, as the stub resolver of any
        # machine would, within their TTLs. What does not answer is asked again.
        resolver = self.resolver(timeout=timeouts.dns)
        resolver.cache = dns.resolver.Cache()
        return Context(
            config=config,
            resolver=resolver,
            trust=self.trust(),
            mode="sandbox",
            endpoints=self.endpoints,
            egress_sources=self.egress_sources,
            timeouts=timeouts,
            config_path=config_path,
            scenario=self.scenario.name,
            send_test=send_test,
            mailboxes=self.mailboxes(),
        )

    def describe(self) -> dict[str, Any]:
        """The world's endpoints, as ``maildiag sandbox up`` prints them (no secrets)."""
        names = {
            (self.scenario.company_mx.address, 25): (
                "company MX",
                self.scenario.company_mx.hostname,
            ),
            (self.scenario.platform.address, 25): (
                "platform inbound",
                self.scenario.platform.hostname,
            ),
            (self.scenario.candidates.address, 25): (
                "candidates MX",
                self.scenario.candidates.hostname,
            ),
        }
        for sub in self.scenario.submissions:
            for port in sub.ports.starttls:
                names[(sub.address, port)] = (
                    f"submission ({'STARTTLS' if sub.starttls != 'absent' else 'plain'})",
                    sub.hostname,
                )
            for port in sub.ports.tls:
                names[(sub.address, port)] = ("submission (implicit TLS)", sub.hostname)
        servers = [
            {
                "role": names.get(world, ("server", ""))[0],
                "hostname": names.get(world, ("", ""))[1],
                "world": f"{world[0]}:{world[1]}",
                "listen": f"{local[0]}:{local[1]}",
            }
            for world, local in self._routes.items()
        ]
        return {
            "scenario": self.scenario.name,
            "state_dir": str(self.state_dir),
            "dns": f"{self.dns.host}:{self.dns.port}",
            "ca_file": str(self.ca_file),
            "servers": servers,
            "egress_sources": dict(self.egress_sources),
            "inbound_addresses": {a: i.inbound_address for a, i in self.inbound.items()},
            "secrets_from_environment": sorted(
                name for name in self._referenced_secrets() if name not in self._generated
            ),
            "secrets_generated": sorted(self._generated),
        }

    def generated_secrets(self) -> dict[str, str]:
        """The passwords this sandbox generated, by variable name (those unset or empty in its
        environment); ``maildiag sandbox up`` hands them to its user in a file."""
        return dict(self._generated)

    def _referenced_secrets(self) -> list[str]:
        return [
            name
            for sub in self.scenario.submissions
            for user in sub.users
            if (name := env_reference_name(user.password)) is not None
        ]
