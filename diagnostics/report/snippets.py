"""The allowlist snippets of a run, as the reports' "Settings to copy" show them.

The ``allowlist.*`` findings carry ready-to-paste lines per server family in their evidence
(``snippets``). Here they are told once each (the same lines for two ports or two subcompanies
are one block, headed by every place they are for), and ordered by the server family the SMTP
server greeted as (``server_family`` in the evidence of ``allowlist.reachability``): that
family's lines first, then the firewall's, then the other families', folded. A server that
did not say what it is gets the firewall's lines first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from diagnostics.findings import Finding

__all__ = ["CopyBlock", "detected_families", "family_name", "snippets_to_copy"]

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
    from diagnostics.checks.allowlist import load_server_families

    known = load_server_families().get(family)
    return known.name if known is not None else family


def _title_and_server(key: str) -> tuple[str, str]:
    """A snippet's heading and the server family it is for, as its data file names them."""
    from diagnostics.checks.allowlist import load_snippet_templates

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
    from diagnostics.checks.allowlist import snippet_rank

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
