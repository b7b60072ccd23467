"""What the four DNS check modules share: one finding per subject, each name checked once.

:func:`per_group` runs a check's evaluation once per distinct key (a domain, an SMTP host)
over the company and its subcompanies (:class:`Sender`): the first subject's finding covers
the others, which get a ``skip`` pointing to it; it says when a name is not played by the
sandbox or when the run's resolver does not work. Beside it: the ``skip`` finding of a
subject without a custom address (:func:`no_custom_address`), :func:`resolve_host` (an IP
literal is its own address), the phrasing helpers :func:`listing` and :func:`sentence`, and
:func:`combine`, which makes one outcome of several :class:`Issue`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.config import AccountConfig, SmtpSettings
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import (
    NEGATIVE,
    DNSAnswer,
    DNSQueries,
    describe_resolver,
    query_addresses,
    started_health,
)
from diagnostics.resolverfault import local_resolver_finding
from diagnostics.unplayed import unplayed_outcome

__all__ = [
    "Evaluate",
    "Issue",
    "Sender",
    "answer_addresses",
    "combine",
    "custom_addresses_of",
    "listing",
    "no_custom_address",
    "per_group",
    "resolve_host",
    "sentence",
    "smtp_hosts_of",
]


def answer_addresses(answers: Iterable[DNSAnswer]) -> tuple[str, ...]:
    return tuple(r for a in answers if a.kind == "answer" for r in a.records)


def listing(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Issue:
    status: Status
    title: str
    remediation: str = ""
    cause: Cause | None = None


def combine(issues: Sequence[Issue], passed: str, detail: str) -> Outcome:
    if not issues:
        return Outcome(Status.PASS, passed, detail)
    worst = max(issues, key=lambda i: i.status)
    remediation = " ".join(dict.fromkeys(i.remediation for i in issues if i.remediation))
    return Outcome(worst.status, worst.title, detail, worst.cause, remediation)


@dataclass(frozen=True)
class Sender:
    subject: str
    custom_address: str | None
    smtp: SmtpSettings | None
    is_company: bool

    @property
    def domain(self) -> str | None:
        if self.custom_address is None:
            return None
        return self.custom_address.rsplit("@", 1)[1].lower()


def _senders(config: AccountConfig) -> list[Sender]:
    company = config.company
    senders = [Sender(company.name, company.custom_address, company.smtp, True)]
    senders += [Sender(s.name, s.custom_address, s.smtp, False) for s in config.subcompanies]
    return senders


Evaluate = Callable[[str, list[Sender]], Awaitable[tuple[Outcome, dict[str, Any]]]]


async def per_group(
    context: Context,
    check_id: str,
    key: Callable[[Sender], str | None],
    what: str,
    evaluate: Evaluate,
    missing: Callable[[Sender], Finding],
) -> list[Finding]:
    """One finding per subject: ``evaluate`` runs once per distinct key (domain or host)."""
    senders = _senders(context.config)
    groups: dict[str, list[Sender]] = {}
    for sender in senders:
        value = key(sender)
        if value is not None:
            groups.setdefault(value, []).append(sender)
    results = await asyncio.gather(*(evaluate(k, g) for k, g in groups.items()))
    health = await started_health(context)
    by_subject: dict[str, Finding] = {}
    for (value, group), (outcome, evidence) in zip(groups.items(), results, strict=True):
        queries = evidence.get("queries", ())
        unplayed = [q["query"].split()[0] for q in queries if q.get("unplayed")]
        if unplayed and outcome.status >= Status.WARN:
            outcome = unplayed_outcome(outcome, unplayed)
        evidence = {**evidence, "resolver": describe_resolver(context.resolver)}
        first, others = group[0], group[1:]
        detail = outcome.detail
        if others:
            names = listing([o.subject for o in others])
            detail += f" The {what} {value} is also that of {names}: this finding covers them too."
        finding = Finding(
            check=check_id,
            status=outcome.status,
            subject=first.subject,
            title=outcome.title,
            detail=detail,
            evidence={**evidence, "subjects": [s.subject for s in group]},
            cause=outcome.cause,
            remediation=outcome.remediation,
        )
        if (
            health is not None
            and not health.works
            and outcome.status >= Status.WARN
            and any(q["kind"] in NEGATIVE for q in queries)
        ):
            finding = local_resolver_finding(finding, health)
        by_subject[first.subject] = finding
        for other in others:
            by_subject[other.subject] = Finding(
                check=check_id,
                status=Status.SKIP,
                subject=other.subject,
                title=f"Same {what} as {first.subject}",
                detail=f"The {what} {value} is checked once, in the {check_id} finding for "
                f"{first.subject}.",
                evidence={what.replace(" ", "_"): value},
            )
    return [by_subject.get(s.subject) or missing(s) for s in senders]


def no_custom_address(check_id: str, context: Context) -> Callable[[Sender], Finding]:
    config = context.config

    def finding(sender: Sender) -> Finding:
        if sender.is_company:
            detail = (
                f"Nothing to look up: {sender.subject} has no custom address; candidates write "
                f"to and receive mail from the platform's address {config.inbound_address}."
            )
        else:
            detail = (
                f"Nothing to look up: {sender.subject} has no custom address of its own and "
                f"uses the settings of {config.company.name}, checked in their finding."
            )
        return Finding(
            check=check_id,
            status=Status.SKIP,
            subject=sender.subject,
            title="No custom address of its own",
            detail=detail,
        )

    return finding


def custom_addresses_of(group: Sequence[Sender]) -> list[str]:
    return list(dict.fromkeys(s.custom_address for s in group if s.custom_address))


def smtp_hosts_of(group: Sequence[Sender]) -> list[str]:
    return list(dict.fromkeys(s.smtp.host for s in group if s.smtp is not None))


async def resolve_host(queries: DNSQueries, host: str) -> tuple[tuple[str, ...], list[DNSAnswer]]:
    """The addresses of ``host`` (itself when it is an IP literal) and the answers behind them."""
    try:
        return (str(ipaddress.ip_address(host)),), []
    except ValueError:
        pass
    answers = list(await query_addresses(queries, host))
    return answer_addresses(answers), answers
