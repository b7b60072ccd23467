"""The sandbox world of a scenario played on a user's own account file.

A scenario describes acme's world and its faults. Played on another account, the world is
built from that account instead: DNS zones for its domains (MX, SPF, DMARC, A, PTR), one
submission server per SMTP host with the ports and logins the account gives, the company MX
redirecting each custom address to the account's platform inbound address, and the platform
profile's egress IPs allowlisted. From the scenario it takes only what is not acme's: its
faults (:class:`~diagnostics.sandbox.scenario.AccountFaults`, applied by role), the behaviour
of its servers (certificate, STARTTLS, banner, forwarding), the egress IPs its allowlist
lacks, its timeouts, the platform's and the candidates' side.

Pure tier: :func:`account_world`. I/O tier: :func:`load_account_world` (reads the files) and
:func:`sandbox_for` (the :class:`Sandbox` an audit of ``config`` with ``--sandbox`` starts).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from diagnostics.config import load_config, raw_smtp_settings
from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.fields import envelope_address
from diagnostics.model.account import AccountConfig, SmtpSettings
from diagnostics.profiles import get_profile
from diagnostics.sandbox.faults import apply_faults, zone_of
from diagnostics.sandbox.scenario import (
    CompanyMX,
    PlatformSide,
    Record,
    Scenario,
    Submission,
    SubmissionPorts,
    SubmissionUser,
)
from diagnostics.sandbox.scenariofile import load_scenario, scenario_path
from diagnostics.sandbox.world import Sandbox
from diagnostics.secrets import env_reference_name

__all__ = ["account_world", "is_own_account", "load_account_world", "sandbox_for"]

# Documentation addresses (RFC 5737) the world gives the account's servers.
_NETWORK = ipaddress.ip_network("198.51.100.0/24")
_MX_ADDRESS = _NETWORK[10]
_FIRST_SUBMISSION = 20
# Where a port of a real server belongs, whatever an account file says of it.
_STANDARD_STARTTLS = (587, 25)
_STANDARD_TLS = (465,)


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host(settings: SmtpSettings) -> str:
    return settings.host.lower().rstrip(".")


def _parent(host: str) -> str:
    labels = host.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else host


def _refuse_account_fault(scenario: Scenario, config_path: Path) -> ConfigError:
    hint = scenario.account_fault or "change the same key in your file as its file does"
    return ConfigError(
        scenario_path(scenario.name),
        [
            ConfigProblem(
                "config",
                f"a scenario whose fault is in the sandbox world: the point of {scenario.name} "
                f"is in its own account file {scenario.config}, so it cannot be played with "
                f"another account. To see it with yours, {hint} in {config_path.name} and run "
                f"--sandbox healthy (or audit {scenario.config_path()} itself with --sandbox "
                f"{scenario.name})",
                str(config_path),
            )
        ],
    )


def _user(settings: SmtpSettings) -> SubmissionUser:
    """The server's login for ``settings``: the password the account file refers to."""
    source = settings.password.source
    kind, _, where = source.partition(":")
    if kind == "file":
        return SubmissionUser(account=settings.account, password_file=where)
    return SubmissionUser(account=settings.account, password=f"${{{where}}}")


def _ports(settings: list[SmtpSettings], base: SubmissionPorts) -> SubmissionPorts:
    starttls, tls = list(base.starttls), list(base.tls)
    for item in settings:
        if item.port in (*_STANDARD_STARTTLS, *_STANDARD_TLS, *starttls, *tls):
            continue
        (tls if item.encryption == "tls" else starttls).append(item.port)
    return SubmissionPorts(starttls=tuple(starttls), tls=tuple(tls))


def _allowlist(scenario: Scenario, config: AccountConfig) -> tuple[str, ...] | None:
    """The account profile's egress IPs, less those the scenario's allowlist lacks."""
    allowlist = scenario.submission.allowlist
    if allowlist is None:
        return None
    allowed = [ipaddress.ip_network(n) for n in allowlist]
    lacking = {
        network.network_address
        for network in get_profile(scenario.platform.profile).egress_ips
        if not any(network.network_address in n for n in allowed)
    }
    return tuple(str(n) for n in config.profile.egress_ips if n.network_address not in lacking)


_Rows = list[tuple[str, str, str]]


def _servers(scenario: Scenario, config: AccountConfig, home: str, rows: _Rows) -> list[Submission]:
    """One submission server per SMTP host of the account (the parent's first), each with the
    scenario's server behaviour; their A records go to ``rows``."""
    by_host: dict[str, list[SmtpSettings]] = {}
    for identity in config.identities():
        if identity.smtp is not None:
            by_host.setdefault(_host(identity.smtp), []).append(identity.smtp)
    base = scenario.submission
    allowlist = _allowlist(scenario, config)
    servers = []
    for index, (host, settings) in enumerate(by_host.items()):
        address = host if _is_ip(host) else str(_NETWORK[_FIRST_SUBMISSION + index])
        if not _is_ip(host):
            rows.append((host, "A", address))
        users: dict[str, SubmissionUser] = {}
        for item in settings:
            users.setdefault(item.account.casefold(), _user(item))
        update = {
            "address": address,
            "hostname": host,
            "ports": _ports(settings, base.ports),
            "users": tuple(users.values()),
            "allowlist": allowlist,
        }
        servers.append(base.model_copy(update=update))
    if not servers:
        # An account that sends only from the platform's address still has a world to audit.
        update = {
            "address": str(_NETWORK[_FIRST_SUBMISSION]),
            "hostname": f"smtp.{home}",
            "users": (),
            "allowlist": allowlist,
        }
        servers.append(base.model_copy(update=update))
    return servers


def _domain_rows(config: AccountConfig, domains: list[str], mx_host: str) -> _Rows:
    """MX, SPF (naming the SMTP hosts that send as the domain) and DMARC of each domain."""
    senders: dict[str, list[str]] = {domain: [] for domain in domains}
    for identity in config.identities():
        if identity.custom_address and identity.smtp is not None:
            senders[_domain(envelope_address(identity.custom_address))].append(_host(identity.smtp))
    rows: _Rows = []
    for domain, hosts in senders.items():
        # An SMTP host given by its address is authorised by it (RFC 7208 ip4/ip6).
        terms = [
            f"ip{ipaddress.ip_address(h).version}:{h}" if _is_ip(h) else f"a:{h}"
            for h in dict.fromkeys(hosts)
        ]
        rows += [
            (domain, "MX", f"10 {mx_host}."),
            (domain, "TXT", f'"{" ".join(["v=spf1", "mx", *terms, "-all"])}"'),
            (f"_dmarc.{domain}", "TXT", f'"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}"'),
        ]
    return rows


def _zones(rows: _Rows, origins: list[str]) -> dict[str, tuple[Record, ...]]:
    """``rows`` in the most specific zone of each name (a zone of its own for a name under
    none of ``origins``), and a PTR for each address."""
    origins = list(origins)
    for name, _, _ in rows:
        if not any(name == o or name.endswith("." + o) for o in origins):
            origins.append(_parent(name))
    zones: dict[str, list[Record]] = {origin: [] for origin in dict.fromkeys(origins)}
    for name, rtype, value in rows:
        zone = zone_of(name, {z: () for z in zones})
        assert zone is not None  # every name got its zone above
        zones[zone].append(Record(name=f"{name}.", rtype=rtype, value=value))
        if rtype == "A" and ipaddress.ip_address(value) in _NETWORK:
            label, _, origin = ipaddress.ip_address(value).reverse_pointer.partition(".")
            zones.setdefault(origin, []).append(Record(name=label, rtype="PTR", value=f"{name}."))
    return {zone: tuple(found) for zone, found in zones.items()}


def account_world(scenario: Scenario, config: AccountConfig, *, config_path: Path) -> Scenario:
    """The world of ``scenario`` built from ``config`` (the account file at ``config_path``),
    with the scenario's faults applied to it.

    ConfigError when the scenario's fault is in its own account file (``config:``), which a
    user's file does not have.
    """
    if scenario.fault_in_account:
        raise _refuse_account_fault(scenario, config_path)
    # The world holds every address and domain in the form mail carries it: an
    # internationalised domain by its A-label, as RCPT TO names it and DNS is asked for it.
    addresses = list(
        dict.fromkeys(
            envelope_address(i.custom_address) for i in config.identities() if i.custom_address
        )
    )
    domains = list(dict.fromkeys(_domain(a) for a in addresses))
    hosts = [_host(i.smtp) for i in config.identities() if i.smtp is not None]
    home = (
        domains[0]
        if domains
        else next((_parent(h) for h in hosts if not _is_ip(h)), "company.example")
    )
    mx_host = f"mx.{home}"
    if mx_host in hosts:
        # The company MX is a server of its own, even when an SMTP host has its usual name.
        mx_host = f"inbound-mx.{home}"
    rows: _Rows = [(mx_host, "A", str(_MX_ADDRESS))]
    servers = _servers(scenario, config, home, rows)
    rows += _domain_rows(config, domains, mx_host)
    profile = config.profile
    platform_host = (
        scenario.platform.hostname
        if profile.inbound_domain == get_profile(scenario.platform.profile).inbound_domain
        else f"inbound.{profile.inbound_domain}"
    )
    candidates = scenario.candidates
    rows += [
        (profile.inbound_domain, "MX", f"10 {platform_host}."),
        (platform_host, "A", scenario.platform.address),
        *((domain, "MX", f"10 {candidates.hostname}.") for domain in candidates.domains),
        (candidates.hostname, "A", candidates.address),
    ]
    first_candidates = next(iter(scenario.platform.accounts.values()), {})
    world = scenario.model_copy(
        update={
            "config": str(config_path),
            "account_fault": "",
            "dns": _zones(rows, [*domains, profile.inbound_domain, *candidates.domains]),
            # The scenario's zone faults name acme's zones; they do not carry over.
            "dns_faults": {},
            "company_mx": CompanyMX(
                address=str(_MX_ADDRESS),
                hostname=mx_host,
                mailboxes=tuple(addresses),
                redirects={a: config.inbound_address for a in addresses},
                faults=scenario.company_mx.faults,
                max_hops=scenario.company_mx.max_hops,
            ),
            "submission": servers[0],
            "other_submissions": tuple(servers[1:]),
            "platform": PlatformSide(
                address=scenario.platform.address,
                hostname=platform_host,
                profile=config.platform.profile,
                accounts={config.platform.account: dict(first_candidates)},
            ),
            # What the audit must find depends on the account: the scenario's list is acme's.
            "expect": (),
        }
    )
    return apply_faults(Scenario.model_validate(world.model_dump()))


def is_own_account(scenario: Scenario, config_path: Path) -> bool:
    """``config_path`` is the account file the scenario was written for."""
    own = scenario.config_path()
    try:
        return own.resolve() == config_path.resolve() or own.samefile(config_path)
    except OSError:
        return False


def _password_references(config_path: Path) -> list[str]:
    """The ``${NAME}`` references of the account file's SMTP passwords."""
    return [
        name
        for smtp in raw_smtp_settings(config_path)
        if isinstance(password := smtp.get("password"), str)
        and (name := env_reference_name(password))
    ]


def load_account_world(
    scenario: str | Path | Scenario,
    config_path: Path | str | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Scenario:
    """The world that plays ``scenario`` for the account file at ``config_path``: the
    scenario's own world when that is its own file (or none is given).

    ConfigError for an invalid account file, or a scenario whose fault is in its own file.
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if config_path is None or is_own_account(loaded, Path(config_path)):
        return loaded
    path = Path(config_path).resolve()
    env = os.environ if environ is None else environ
    # The world needs the names of the passwords, not their values: the sandbox generates
    # those it is not given, and the audit reads the file again with them.
    standing = {name: "-" for name in _password_references(path) if not env.get(name)}
    try:
        config = load_config(path, environ={**env, **standing})
    except ConfigError:
        # The audit reports what is wrong with the file (config.schema); nothing to play.
        return loaded
    return account_world(loaded, config, config_path=path)


def sandbox_for(
    scenario: str | Path | Scenario,
    config_path: Path | str | None = None,
    *,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Sandbox:
    """The sandbox an audit of ``config_path`` in ``scenario`` runs in (not started)."""
    world = load_account_world(scenario, config_path, environ=environ)
    return Sandbox(world, state_dir=state_dir, environ=environ)
