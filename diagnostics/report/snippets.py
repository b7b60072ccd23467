"""The allowlist snippets: ready-to-paste allowlist entries per server family, and the
snippets of a run as the reports' "Settings to copy" show them.

The templates come from ``data/allowlist_snippets.yaml`` (:func:`load_snippet_templates`,
filled by :func:`render_snippet`), the server families from ``data/server_families.yaml``
(:func:`load_server_families`; :func:`classify_server_family` names the one a host and its
greeting belong to). The ``allowlist.*`` findings carry :func:`render_snippets` in their
evidence (``snippets``). The reports tell each text once (the same lines for two ports or two
subcompanies are one block, headed by every place they are for), and order them by the server
family the SMTP server greeted as (``server_family`` in the evidence of
``allowlist.reachability``): that family's lines first, then the firewall's, then the other
families', folded. A server that did not say what it is gets the firewall's lines first.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import TypeVar

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Finding
from diagnostics.netblocks import compact
from diagnostics.profiles import IPNetwork

__all__ = [
    "FIREWALL",
    "CopyBlock",
    "ServerFamily",
    "SnippetTemplate",
    "classify_server_family",
    "detected_families",
    "family_name",
    "load_server_families",
    "load_snippet_templates",
    "render_snippet",
    "render_snippets",
    "snippet_rank",
    "snippets_to_copy",
]

# -- templates -----------------------------------------------------------------------------

_D = TypeVar("_D")


def _strict(cls: type[_D], body: object, where: str) -> _D:
    """``cls`` from one entry of a shipped data file: every key known, every required key
    present, every value text (a list of texts for a tuple). ValueError naming the entry.
    (Plain dataclasses: the text report, which ``maildiag smtp`` prints, loads no pydantic.)"""
    if not isinstance(body, dict):
        raise ValueError(f"{where}: expected a mapping, found {type(body).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(body) - set(known))
    missing = [n for n, f in known.items() if f.default is MISSING and n not in body]
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    values: dict[str, object] = {}
    for name, value in body.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = tuple(value)
        elif not (isinstance(value, str) or (value is None and known[name].default is None)):
            raise ValueError(f"{where}.{name}: expected text, found {value!r}")
        values[name] = value
    return cls(**values)


@dataclass(frozen=True)
class SnippetTemplate:
    """One server family's ready-to-paste allowlist entry (see the data file's header)."""

    server: str
    title: str
    item: str
    separator: str
    text: str
    item_v6: str | None = None
    header: str | None = None
    text_v6: str | None = None


@cache
def load_snippet_templates() -> dict[str, SnippetTemplate]:
    """Every snippet template by server family, in the data file's order."""
    raw = load_data_file("allowlist_snippets.yaml")
    return {
        family: _strict(SnippetTemplate, body, f"allowlist_snippets.yaml: {family}")
        for family, body in raw.items()
    }


def _item(template: SnippetTemplate, network: IPNetwork, port: int) -> str:
    pattern = template.item_v6 if network.version == 6 and template.item_v6 else template.item
    return pattern.format(
        ip=compact(network),
        address=network.network_address,
        prefixlen=network.prefixlen,
        port=port,
    )


def render_snippet(template: SnippetTemplate, networks: Sequence[IPNetwork], *, port: int) -> str:
    """``template`` filled with ``networks`` for SMTP port ``port``."""
    if template.text_v6 is None:
        groups = [(template.text, list(networks))]
    else:
        groups = [
            (template.text, [n for n in networks if n.version == 4]),
            (template.text_v6, [n for n in networks if n.version == 6]),
        ]
    parts = [template.header.format(port=port)] if template.header else []
    for text, members in groups:
        if members:
            items = template.separator.join(_item(template, n, port) for n in members)
            parts.append(text.format(items=items, port=port))
    return "\n".join(parts)


def snippet_rank(server: str, detected: str | None) -> int:
    """Where a snippet for ``server`` (a server family, or ``firewall``) goes when the SMTP
    server greeted as ``detected`` (None: not recognised): 0 that family's own, 1 the
    firewall's, 2 every other family's. Unrecognised, the firewall's come first."""
    if detected is not None and server == detected:
        return 0
    if server == FIREWALL:
        return 0 if detected is None else 1
    return 2 if detected is not None else 1


def render_snippets(
    networks: Sequence[IPNetwork], *, port: int, server_family: str | None = None
) -> dict[str, str]:
    """Every family's snippet for ``networks``, those for ``server_family`` (the family the
    server greeted as) first, then the firewall's; empty when there is nothing to permit."""
    if not networks:
        return {}
    templates = sorted(
        load_snippet_templates().items(),
        key=lambda item: snippet_rank(item[1].server, server_family),
    )
    return {family: render_snippet(template, networks, port=port) for family, template in templates}


# -- server families -----------------------------------------------------------------------

FIREWALL = "firewall"


@dataclass(frozen=True)
class ServerFamily:
    """How a mail server family is recognised (see ``data/server_families.yaml``)."""

    name: str
    greeting: str
    hosts: tuple[str, ...] = ()


@cache
def load_server_families() -> dict[str, ServerFamily]:
    """Every recognisable server family by key, in the data file's order (first match wins)."""
    raw = load_data_file("server_families.yaml")
    return {
        key: _strict(ServerFamily, body, f"server_families.yaml: {key}")
        for key, body in raw.items()
    }


def classify_server_family(greetings: Iterable[str], *, host: str = "") -> str | None:
    """The family (a key of :func:`load_server_families`) that ``host`` and its
    ``greetings`` name; None when they name none (many servers hide their software)."""
    texts = [g for g in greetings if g]
    name = host.lower().rstrip(".")
    for key, family in load_server_families().items():
        if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in family.hosts):
            return key
        if any(re.search(family.greeting, text, re.IGNORECASE) for text in texts):
            return key
    return None


# -- a run's snippets, as the reports show them --------------------------------------------

_CARRIERS = ("allowlist.coverage", "allowlist.reachability")


@dataclass(frozen=True)
class CopyBlock:
    """One ready-to-paste text: whom and where it is for, what it is, and the text.

    ``folded`` blocks are for a server family other than the one the server greeted as.
    """

    subject: str
    label: str
    content: str
    folded: bool = False


def detected_families(findings: Iterable[Finding]) -> dict[str, str]:
    """The server family each SMTP host greeted as (host -> family key), where it said."""
    found: dict[str, str] = {}
    for finding in findings:
        host, family = finding.evidence.get("smtp_host"), finding.evidence.get("server_family")
        if isinstance(host, str) and isinstance(family, str):
            found.setdefault(host, family)
    return found


def family_name(family: str) -> str:
    """What the reports call server family ``family`` ("Postfix")."""
    known = load_server_families().get(family)
    return known.name if known is not None else family


def _title_and_server(key: str) -> tuple[str, str]:
    """A snippet's heading and the server family it is for, as its data file names them."""
    template = load_snippet_templates().get(key)
    if template is None:
        return key, key
    return template.title or key, template.server


@dataclass
class _Entry:
    label: str
    content: str
    host: str
    rank: int
    order: int
    folded: bool
    subjects: list[str]
    ports: list[str]

    def heading(self) -> str:
        where = ", ".join(self.subjects)
        if self.host:
            noun = "port" if len(self.ports) == 1 else "ports"
            ports = f" {noun} {', '.join(self.ports)}" if self.ports else ""
            where += f" ({self.host}{ports})"
        return where


def snippets_to_copy(findings: Iterable[Finding]) -> list[CopyBlock]:
    """The allowlist snippets in the evidence of the ``allowlist.*`` findings, each text once,
    the detected server family's first (see the module docstring)."""
    carriers = [f for f in findings if f.check in _CARRIERS]
    families = detected_families(carriers)
    entries: dict[tuple[str, str, str], _Entry] = {}
    for finding in carriers:
        snippets = finding.evidence.get("snippets")
        if not isinstance(snippets, Mapping):
            continue
        host = str(finding.evidence.get("smtp_host") or "")
        port = finding.evidence.get("port")
        detected = finding.evidence.get("server_family") or families.get(host)
        for key, content in snippets.items():
            label, server = _title_and_server(str(key))
            rank = snippet_rank(server, str(detected) if detected else None)
            entry = entries.setdefault(
                (host, str(key), str(content)),
                _Entry(label, str(content), host, rank, len(entries), bool(detected), [], []),
            )
            entry.rank = min(entry.rank, rank)
            entry.folded = entry.folded and rank == 2
            if finding.subject not in entry.subjects:
                entry.subjects.append(finding.subject)
            if port is not None and str(port) not in entry.ports:
                entry.ports.append(str(port))
    # Within a rank, a family's blocks stay together (its ports one after the other).
    first_of: dict[str, int] = {}
    for (_, key, _), entry in entries.items():
        first_of.setdefault(key, entry.order)
    ordered = sorted(
        entries.items(), key=lambda item: (item[1].rank, first_of[item[0][1]], item[1].order)
    )
    return [
        CopyBlock(e.heading(), e.label, e.content, e.folded and e.rank == 2) for _, e in ordered
    ]
