"""The context's pieces that differ between live and sandbox runs."""

from __future__ import annotations

from pathlib import Path

import dns.asyncresolver
import dns.resolver
import pytest

from diagnostics.context import Endpoints, live_resolver, system_trust
from diagnostics.errors import SandboxError


def test_endpoints_map_world_addresses_and_refuse_others_when_strict() -> None:
    endpoints = Endpoints({("198.51.100.20", 587): ("127.0.0.1", 40001)}, strict=True)
    assert endpoints.dial("198.51.100.20", 587) == ("127.0.0.1", 40001)
    with pytest.raises(SandboxError, match=r"no sandbox server plays 198\.51\.100\.20 port 465"):
        endpoints.dial("198.51.100.20", 465)
    assert Endpoints().dial("2001:db8::1", 25) == ("2001:db8::1", 25)


def test_live_resolver_without_configuration_has_no_nameservers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = dns.asyncresolver.Resolver

    def unconfigured(configure: bool = True) -> dns.asyncresolver.Resolver:
        # No /etc/resolv.conf cannot be arranged on this machine without root-level changes
        # to the system; the constructor's documented failure is raised instead.
        if configure:
            raise dns.resolver.NoResolverConfiguration("no resolv.conf")
        return real(configure=False)

    monkeypatch.setattr(dns.asyncresolver, "Resolver", unconfigured)
    resolver = live_resolver(3.5)
    assert resolver.nameservers == []
    assert resolver.lifetime == 3.5


def test_system_trust_adds_a_ca_file(tmp_path: Path) -> None:
    from diagnostics.sandbox.certs import SandboxCA

    ca = SandboxCA()
    path = ca.write_ca(tmp_path / "ca.pem")
    before = len(system_trust().get_ca_certs())
    assert len(system_trust(path).get_ca_certs()) == before + 1
