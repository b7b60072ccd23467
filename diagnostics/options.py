"""What an audit is asked to do, whoever asks: the command line, the audit notebook, or
``maildiag diagnose --confirm``.

:class:`AuditOptions` is built from ``maildiag audit``'s options or the notebook's parameters
and handed to :func:`diagnostics.audit.audit`, the one place that starts the sandbox and
builds the context. The network options are parsed here once for every command that takes
them (``--resolve HOST:ADDRESS``, ``--dns-server ADDRESS[:PORT]``, ``--timeout SECONDS``).
This module stays light: ``maildiag smtp`` imports it before anything else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = ["AuditOptions", "parse_nameserver", "parse_static_hosts"]


def parse_static_hosts(values: Iterable[str] | None) -> dict[str, tuple[str, ...]]:
    """``HOST:ADDRESS`` overrides (``[v6]`` or a bare IPv6 address after the last colon), as
    ``curl --resolve`` takes them; a host given twice gets both addresses. ValueError naming
    the malformed value."""
    hosts: dict[str, list[str]] = {}
    for value in values or ():
        host, sep, address = (
            value.rpartition(":")
            if value.count(":") > 1 and "]" not in value
            else value.partition(":")
        )
        if not sep or not host or not address:
            raise ValueError(f"--resolve {value!r}: expected HOST:ADDRESS")
        hosts.setdefault(host.lower(), []).append(address.strip("[]"))
    return {host: tuple(addresses) for host, addresses in hosts.items()}


def parse_nameserver(value: str | None) -> tuple[str, int] | None:
    """``ADDRESS[:PORT]`` of a DNS server (port 53 when not given), or None for the system's
    resolver. ValueError when the address is not an IP address."""
    if value is None or not value.strip():
        return None
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "53")
    try:
        return str(ipaddress.ip_address(host.strip("[]"))), int(port or 53)
    except ValueError:
        raise ValueError(
            f"--dns-server {value!r}: expected an IP address, optionally :PORT"
        ) from None


@dataclass(frozen=True)
class AuditOptions:
    """One audit run's options.

    ``sandbox`` names a scenario ("" audits the live setup); ``only`` check ids or families
    (None: all); ``timeout`` seconds per network step (None: the defaults, see
    :meth:`diagnostics.context.Timeouts.per_step`); ``dns_server`` replaces the system's
    resolver in a live audit (the sandbox always asks its own DNS); ``static_hosts`` take the
    place of the hosts file and DNS for connecting, in both modes.
    """

    config: Path
    sandbox: str = ""
    only: tuple[str, ...] | None = None
    report_dir: Path | None = None
    timeout: float | None = None
    ca_file: Path | None = None
    send_test: bool = False
    dns_server: tuple[str, int] | None = None
    static_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The live round trip: one tagged message, watched in the company's mailbox over IMAP.
    roundtrip: bool = False
    via: str = "mx"
    clean: bool = False
    probe_platform: bool = False
    # Seconds the round trip watches the mailbox (None: Timeouts.roundtrip).
    wait: float | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"--timeout {self.timeout:g}: expected a number of seconds above 0")
        if self.wait is not None and self.wait <= 0:
            raise ValueError(f"--wait {self.wait:g}: expected a number of seconds above 0")
        if self.via not in ("mx", "submission"):
            raise ValueError(f"--via {self.via!r}: expected mx or submission")
        if self.sandbox and (self.roundtrip or self.probe_platform):
            raise ValueError(
                "--roundtrip and --probe-platform are for live audits: the sandbox always runs "
                "its own round trip"
            )
        if not self.roundtrip and (self.via != "mx" or self.clean or self.wait is not None):
            raise ValueError("--via, --clean and --wait go with --roundtrip")
        object.__setattr__(self, "static_hosts", MappingProxyType(dict(self.static_hosts)))

    @property
    def dns_server_text(self) -> str:
        """``ADDRESS:PORT`` as the user would type it, "" for the system's resolver."""
        if self.dns_server is None:
            return ""
        address, port = self.dns_server
        return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

    @property
    def resolve_text(self) -> str:
        """The ``--resolve`` overrides as one comma-separated literal (the notebook's form)."""
        return ",".join(
            f"{host}:[{a}]" if ":" in a else f"{host}:{a}"
            for host, addresses in self.static_hosts.items()
            for a in addresses
        )
