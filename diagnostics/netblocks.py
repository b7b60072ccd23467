"""CIDR arithmetic over IPv4 and IPv6 networks, pure: how an administrator writes a network
(:func:`compact`, :func:`listing`), containment and overlap across address families,
:func:`too_broad` (an entry that admits a large share of the internet, outside
:data:`INTERNAL` ranges) and :func:`compare_allowlist` (which egress networks an allowlist
covers, as a :class:`Coverage`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from diagnostics.profiles import IPNetwork

# An allowlist entry wider than this that reaches beyond internal ranges admits other
# organisations' hosts (a /16 is one organisation's block at most; an IPv6 /32 a provider's).
BROAD_PREFIX = {4: 16, 6: 32}
# Private, shared, loopback and link-local ranges: out of reach from the internet.
INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)


def compact(network: IPNetwork) -> str:
    """``network`` as an administrator writes it: a single address bare, else in CIDR."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def listing(networks: Iterable[IPNetwork]) -> str:
    """``networks`` as :func:`compact` writes them, comma-separated."""
    return ", ".join(compact(n) for n in networks)


def contains(outer: IPNetwork, inner: IPNetwork) -> bool:
    """Whether ``inner`` lies within ``outer`` (never across address families)."""
    if isinstance(outer, ipaddress.IPv4Network) and isinstance(inner, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(outer, ipaddress.IPv6Network) and isinstance(inner, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def overlap(a: IPNetwork, b: IPNetwork) -> bool:
    """Whether ``a`` and ``b`` share an address (CIDR blocks overlap only by containment)."""
    return contains(a, b) or contains(b, a)


def collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    """``networks`` merged into disjoint maximal blocks, IPv4 first, then IPv6."""
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def too_broad(network: IPNetwork) -> bool:
    """Whether ``network`` admits a large share of the internet (0.0.0.0/0, a public /8)."""
    if network.prefixlen >= BROAD_PREFIX[network.version]:
        return False
    return not any(contains(internal, network) for internal in INTERNAL)


@dataclass(frozen=True)
class Coverage:
    """An allowlist compared with the platform's egress networks.

    ``covered`` and ``missing`` partition the egress networks; ``extra`` are allowlist entries
    that hold no egress network; ``broader`` are entries that hold one and more besides;
    ``too_broad`` are entries that admit a large share of the internet.
    """

    covered: tuple[IPNetwork, ...]
    missing: tuple[IPNetwork, ...]
    extra: tuple[IPNetwork, ...]
    broader: tuple[IPNetwork, ...]
    too_broad: tuple[IPNetwork, ...]


def compare_allowlist(allowlist: Iterable[IPNetwork], egress_ips: Iterable[IPNetwork]) -> Coverage:
    """Which egress networks ``allowlist`` covers, by CIDR arithmetic (IPv4 and IPv6).

    An egress network is covered when it lies within the union of the allowlist's networks:
    adjacent entries that together span it count, a /16 holding an egress /32 counts.
    """
    allowed = tuple(allowlist)
    egress = tuple(egress_ips)
    # Collapsed blocks are disjoint and maximal, so a CIDR block inside their union lies
    # inside one of them.
    union = collapse(allowed)
    covered = tuple(e for e in egress if any(contains(block, e) for block in union))
    return Coverage(
        covered=covered,
        missing=tuple(e for e in egress if e not in covered),
        extra=tuple(n for n in allowed if not any(overlap(n, e) for e in egress)),
        broader=tuple(
            n for n in allowed if any(contains(n, e) and n.prefixlen < e.prefixlen for e in egress)
        ),
        too_broad=tuple(n for n in allowed if too_broad(n)),
    )
