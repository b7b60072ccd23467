"""Findings folded by root cause: one problem per cause and fix, with every place it applies.

A check that knows the root cause of what it found names it in the finding's evidence, under
``root_cause``: a mapping whose ``kind`` says what the cause is and whose other fields pin it
down (the SMTP host and the egress IPs it refuses; the server that changes redirected mail and
how). Findings with equal ``root_cause`` are one problem with one fix, however many ports,
subcompanies and checks show it. A finding without one is a problem of its own: nothing is
merged by comparing free text, so two wrong passwords of two accounts stay two problems.

Grouping is presentation: the JSON report and junit.xml keep one entry per finding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.findings import Cause, Finding, Status

__all__ = ["Place", "Problem", "group_by_root_cause", "root_cause_key"]


@dataclass(frozen=True)
class Place:
    """Where one finding of a problem applies: its check, its (sub)company and, when the
    finding names one, the server port or the address (``smtp.acme.example port 587``)."""

    check: str
    subject: str
    where: str = ""


@dataclass(frozen=True)
class Problem:
    """One root cause and its fix, and the findings (report order) that show it."""

    findings: tuple[Finding, ...]
    title: str
    remediation: str

    @property
    def status(self) -> Status:
        return max(f.status for f in self.findings)

    @property
    def cause(self) -> Cause | None:
        """The cause of the gravest finding."""
        return next(f.cause for f in self.findings if f.status is self.status)

    @property
    def places(self) -> tuple[Place, ...]:
        return tuple(Place(f.check, f.subject, _where(f)) for f in self.findings)

    @property
    def checks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.check for f in self.findings))

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.subject for f in self.findings))

    def where_lines(self, *, checks: bool = True) -> list[str]:
        """Every place, one line per (sub)company and where, with the checks that show it
        there: ``Acme GmbH (smtp.acme.example port 587): allowlist.reachability`` (without
        them when not ``checks``)."""
        by_place: dict[tuple[str, str], list[str]] = {}
        for place in self.places:
            names = by_place.setdefault((place.subject, place.where), [])
            if place.check not in names:
                names.append(place.check)
        return [
            f"{subject}{f' ({where})' if where else ''}"
            + (f": {', '.join(names)}" if checks else "")
            for (subject, where), names in by_place.items()
        ]

    def applies_to(self) -> str:
        """:meth:`where_lines` on one line, separated by semicolons."""
        return "; ".join(self.where_lines())


def root_cause_key(finding: Finding) -> str | None:
    """The finding's root cause as a comparable key; None when its check names none."""
    cause = finding.evidence.get("root_cause")
    if not isinstance(cause, Mapping) or not cause.get("kind"):
        return None
    return json.dumps(_plain(cause), sort_keys=True, ensure_ascii=False)


def group_by_root_cause(
    findings: Iterable[Finding], *, least: Status = Status.WARN
) -> list[Problem]:
    """The findings of status ``least`` or graver, one :class:`Problem` per root cause, in
    the order of each problem's first finding (the order an admin works in)."""
    groups: dict[object, list[Finding]] = {}
    for index, finding in enumerate(findings):
        if finding.status < least:
            continue
        key = root_cause_key(finding)
        groups.setdefault(index if key is None else key, []).append(finding)
    return [_problem(members) for members in groups.values()]


def _problem(members: list[Finding]) -> Problem:
    first = members[0]
    if len(members) == 1:
        return Problem((first,), first.title, first.remediation or first.detail)
    cause = first.evidence["root_cause"]
    describe = _DESCRIBE.get(str(cause.get("kind")), _describe_common)
    title, remediation = describe(cause, members)
    return Problem(tuple(members), title, remediation)


# -- what a problem of each kind is called, and its fix ------------------------------------


def _describe_common(cause: Mapping[str, Any], members: Sequence[Finding]) -> tuple[str, str]:
    """The gravest finding's title; the remediations, each once."""
    gravest = max(members, key=lambda f: f.status)
    return gravest.title, _each_once(f.remediation for f in members)


def _describe_refused(cause: Mapping[str, Any], members: Sequence[Finding]) -> tuple[str, str]:
    ips = [str(ip) for ip in cause.get("egress_ips", ())]
    noun = "egress IP" if len(ips) == 1 else "egress IPs"
    title = f"{cause.get('smtp_host')} refuses {noun} {_and(ips)}{_on_ports(members)}"
    return title, _each_once(f.remediation for f in members)


def _describe_lacking(cause: Mapping[str, Any], members: Sequence[Finding]) -> tuple[str, str]:
    ips = [_bare(str(ip)) for ip in cause.get("egress_ips", ())]
    noun = "egress IP" if len(ips) == 1 else "egress IPs"
    title = (
        f"The allowlist documented for {cause.get('allowlist_of')} lacks {noun} {_and(ips)} "
        f"({cause.get('smtp_host')}{_on_ports(members)})"
    )
    return title, _each_once(f.remediation for f in members)


_CHANGES = {
    "forward_inline": "forwards mail inline instead of redirecting it",
    "forward_attachment": "forwards mail as an attachment instead of redirecting it",
    "from_rewritten": "rewrites the From of redirected mail",
    "headers_stripped": "strips headers from redirected mail",
    "subject_tagged": "tags the Subject of redirected mail",
    "footer_appended": "adds a footer to the body of redirected mail",
}
_EFFECTS = {
    "headers.retention": "recruiters do not get the message as the candidate wrote it "
    "(headers.retention)",
    "headers.dkim": "the candidate's DKIM signature breaks, so mail from domains with a strict "
    "DMARC policy is junked or refused (headers.dkim)",
    "redirect.roundtrip": "the test message does not arrive as it should (redirect.roundtrip)",
}


def _describe_changes(cause: Mapping[str, Any], members: Sequence[Finding]) -> tuple[str, str]:
    from diagnostics.parse.headers.forwarding import remediation_for

    faults = [str(f) for f in cause.get("faults", ())]
    tag = cause.get("subject_tag")
    changes = []
    for fault in faults:
        change = _CHANGES.get(fault, fault)
        if fault == "subject_tagged" and tag:
            where = "at the end" if cause.get("tag_position") == "suffix" else "in front"
            change = f"puts {str(tag)!r} {where} of the Subject of redirected mail"
        changes.append(change)
    server = cause.get("server") or "The server that passes the message on"
    title = f"{server} {_and(changes)}"
    addresses = list(
        dict.fromkeys(str(f.evidence["address"]) for f in members if "address" in f.evidence)
    )
    effects = [
        _EFFECTS[check] for check in dict.fromkeys(f.check for f in members) if check in _EFFECTS
    ]
    family = cause.get("server_family")
    fixes = [
        remediation_for(
            fault,
            str(family) if family else None,
            custom_address=addresses,
            inbound_address=str(cause.get("inbound_address") or "") or None,
        )
        for fault in faults
    ]
    intro = f"Because of it, {_and(effects)}. " if effects else ""
    return title, intro + " ".join(fixes)


_DESCRIBE: dict[str, Callable[[Mapping[str, Any], Sequence[Finding]], tuple[str, str]]] = {
    "egress_ips_refused": _describe_refused,
    "allowlist_lacks_egress_ips": _describe_lacking,
    "redirection_changes_message": _describe_changes,
}


# -- helpers -------------------------------------------------------------------------------


def _where(finding: Finding) -> str:
    evidence = finding.evidence
    host = evidence.get("smtp_host") or evidence.get("host")
    port = evidence.get("port")
    if host and port:
        return f"{host} port {port}"
    address = evidence.get("address")
    return str(address) if address else ""


def _on_ports(members: Sequence[Finding]) -> str:
    ports = list(dict.fromkeys(str(f.evidence["port"]) for f in members if f.evidence.get("port")))
    if not ports:
        return ""
    return f" on port {ports[0]}" if len(ports) == 1 else f" on ports {_and(ports)}"


def _bare(network: str) -> str:
    return network.removesuffix("/32").removesuffix("/128")


def _and(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _each_once(texts: Iterable[str]) -> str:
    return " ".join(dict.fromkeys(t for t in texts if t))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
