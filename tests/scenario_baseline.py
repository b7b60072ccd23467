"""What an audit of a healthy sandbox world must report for an account file: the baseline
that every scenario's ``expect`` is laid over.

The rule is written here from SPEC.md and the account file alone, without the product's code,
so that a finding the audit gets wrong disagrees with it instead of being recorded as right.
Healthy means: every name resolves, every server answers and speaks what the file says, every
login and every redirection works. In such a world each check gives ``pass`` for a subject it
applies to and ``skip`` for one it does not apply to. Whether it applies is read off the file:

- SPEC section 4: ``smtp`` is optional for the company and for each subcompany, and so are a
  subcompany's ``custom_address`` and anyone's ``allowlist``. SPEC section 1: a subcompany
  without settings of its own falls back to the parent's, so the checks of what it lacks skip
  it (the parent's findings cover its mail).
- SPEC section 5, ``dns.*`` and the round trip (``redirect.*``, ``headers.*``): one finding per
  company and subcompany; a name that several of them share (a custom address's domain, an
  SMTP host, a custom address) is checked once, for the first in file order, and the others
  skip, pointing to it.
- SPEC section 5, ``sender.resolution``: one finding per position, about the (sub)company it
  belongs to (the parent when it names none). ``sender.display_name``: one per name that can
  stand in a From header (SPEC section 1): each employee's when ``sender_name: employee``,
  about the company, then each (sub)company's own name, about it.
- ``config.schema``: one ``pass`` for a valid file, about the company.

:data:`RULES` is that table, one row per check of SPEC section 5. A scenario names only what
its fault changes; :func:`expected_findings` lays its entries over the baseline, and
:func:`report_of` gives the result in report order, for tests that compare whole reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

Key = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Subject:
    """The company or a subcompany, as the account file gives it."""

    name: str
    custom_address: str | None
    smtp: Mapping[str, Any] | None
    allowlist: Sequence[str] | None
    is_company: bool

    @property
    def domain(self) -> str | None:
        if self.custom_address is None:
            return None
        return self.custom_address.rsplit("@", 1)[1].casefold()

    @property
    def smtp_host(self) -> str | None:
        # Host names compare without case (RFC 4343).
        return None if self.smtp is None else str(self.smtp["host"]).casefold()


@dataclass(frozen=True)
class Expected:
    """One finding the audit must produce, and why."""

    check: str
    subject: str
    status: str
    cause: str | None = None
    why: str = ""

    @property
    def key(self) -> Key:
        return (self.check, self.subject, self.status, self.cause)


# (applies, why): a rule sees the subject and the subjects before it in the file.
Verdict = tuple[bool, str]
Rule = Callable[[Subject, Sequence[Subject]], Verdict]


def needs_smtp(subject: Subject, earlier: Sequence[Subject]) -> Verdict:
    """The check tests the (sub)company's own SMTP settings (SPEC 4: optional)."""
    if subject.smtp is not None:
        return True, f"{subject.name} has SMTP settings of its own"
    if subject.is_company:
        return False, f"{subject.name} has no SMTP settings: the platform sends from its address"
    return False, f"{subject.name} has no SMTP settings of its own (SPEC 1: its parent's apply)"


def needs_address(subject: Subject) -> Verdict:
    """The check looks at the (sub)company's own custom address (SPEC 4: optional)."""
    if subject.custom_address is None:
        return False, f"{subject.name} has no custom address of its own"
    return True, f"{subject.name} has the custom address {subject.custom_address}"


def first_with_domain(subject: Subject, earlier: Sequence[Subject]) -> Verdict:
    """``dns.mx``, ``dns.spf``, ``dns.dmarc``: a domain is looked up once, for its first subject."""
    applies, why = needs_address(subject)
    if applies and subject.domain in {s.domain for s in earlier}:
        return False, f"{subject.domain} is checked for an earlier (sub)company"
    return applies, why


def first_with_host(subject: Subject, earlier: Sequence[Subject]) -> Verdict:
    """``dns.smtp_host``: an SMTP host is resolved once, for its first subject."""
    applies, why = needs_smtp(subject, earlier)
    if applies and subject.smtp_host in {s.smtp_host for s in earlier}:
        return False, f"{subject.smtp_host} is checked for an earlier (sub)company"
    return applies, why


def first_with_address(subject: Subject, earlier: Sequence[Subject]) -> Verdict:
    """The round trip: one test message per custom address, judged for its first subject."""
    applies, why = needs_address(subject)
    address = (subject.custom_address or "").casefold()
    if applies and address in {(s.custom_address or "").casefold() for s in earlier}:
        return False, f"{address} is tested for an earlier (sub)company"
    return applies, why


def documented_allowlist(subject: Subject, earlier: Sequence[Subject]) -> Verdict:
    """``allowlist.coverage`` compares the allowlist the file documents (SPEC 4: optional);
    a subcompany that sends through its parent's SMTP host is covered by the parent's."""
    applies, why = needs_smtp(subject, earlier)
    if not applies:
        return applies, why
    if subject.allowlist is not None:
        return True, f"{subject.name} documents an allowlist"
    parent = earlier[0] if earlier else None
    if (
        parent is not None
        and parent.allowlist is not None
        and parent.smtp_host == subject.smtp_host
    ):
        return True, f"{subject.name} sends through {parent.name}'s host and its allowlist"
    return False, f"{subject.name} documents no allowlist to compare (SPEC 4: it is optional)"


SMTP_SESSION = (
    "smtp.connect",
    "smtp.tls",
    "smtp.auth",
    "smtp.sender",
    "smtp.provider",
    "smtp.settings_probe",
)
ROUND_TRIP = (
    "redirect.roundtrip",
    "redirect.local_copy",
    "redirect.loop",
    "headers.retention",
    "headers.forwarding_style",
    "headers.dkim",
)

# Check id -> when it applies to a (sub)company; in the order of the report.
RULES: dict[str, Rule] = {
    "config.account_matches_address": needs_smtp,
    "config.port_encryption": needs_smtp,
    "dns.mx": first_with_domain,
    "dns.smtp_host": first_with_host,
    "dns.spf": first_with_domain,
    "dns.dmarc": first_with_domain,
    **dict.fromkeys(SMTP_SESSION, needs_smtp),
    "allowlist.coverage": documented_allowlist,
    "allowlist.reachability": needs_smtp,
    **dict.fromkeys(ROUND_TRIP, first_with_address),
}
# Every check, in the order of the report: those made from the file's lists rather than per
# (sub)company (see the module docstring) around the table.
CHECK_IDS = ("config.schema", *RULES, "sender.resolution", "sender.display_name")


def subjects(account: Mapping[str, Any]) -> list[Subject]:
    """The company, then each subcompany in file order."""
    company = account["company"]
    found = [
        Subject(
            company["name"],
            company.get("custom_address"),
            company.get("smtp"),
            company.get("allowlist"),
            is_company=True,
        )
    ]
    found += [
        Subject(
            sub["name"], sub.get("custom_address"), sub.get("smtp"), sub.get("allowlist"), False
        )
        for sub in account.get("subcompanies") or ()
    ]
    return found


def baseline(account: Mapping[str, Any]) -> list[Expected]:
    """Every finding a healthy world gives for ``account`` (an account file as data), in the
    order of the report."""
    company = account["company"]["name"]
    every = subjects(account)
    found = [Expected("config.schema", company, "pass", why="the file is valid (SPEC 4)")]
    for check_id, rule in RULES.items():
        for index, subject in enumerate(every):
            applies, why = rule(subject, every[:index])
            found.append(Expected(check_id, subject.name, "pass" if applies else "skip", why=why))
    for position in account.get("positions") or ():
        owner = position.get("subcompany") or company
        why = f"position {position['title']} belongs to {owner}"
        found.append(Expected("sender.resolution", owner, "pass", why=why))
    # SPEC 4 gives no default for sender_name; the platform's is the employee's name.
    if account["company"].get("sender_name", "employee") == "employee":
        for employee in account.get("employees") or ():
            why = f"sender_name employee: {employee['name']}'s name goes into From"
            found.append(Expected("sender.display_name", company, "pass", why=why))
    for subject in every:
        why = f"{subject.name}'s own name goes into From"
        found.append(Expected("sender.display_name", subject.name, "pass", why=why))
    return found


def baseline_of(path: Path) -> list[Expected]:
    """:func:`baseline` of the account file at ``path``."""
    return baseline(yaml.safe_load(path.read_text(encoding="utf-8")))


class Entry(Protocol):
    """A scenario's ``expect`` entry (:class:`diagnostics.sandbox.scenario.Expectation`)."""

    @property
    def check(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def cause(self) -> str | None: ...
    @property
    def why(self) -> str | None: ...


def overlay(
    base: Iterable[Expected], entries: Iterable[Entry], company: str
) -> list[tuple[Entry, Expected | None]]:
    """Each entry with the baseline finding it replaces: one of the same check and subject
    not yet replaced (so that duplicates stay counted), or None when it adds a finding. An
    entry without a subject is about the company."""
    remaining = list(base)
    pairs: list[tuple[Entry, Expected | None]] = []
    for entry in entries:
        subject = entry.subject or company
        replaced = next(
            (b for b in remaining if (b.check, b.subject) == (entry.check, subject)), None
        )
        if replaced is not None:
            remaining.remove(replaced)
        pairs.append((entry, replaced))
    return pairs


def expected_findings(
    base: Sequence[Expected], entries: Iterable[Entry], company: str
) -> Counter[Key]:
    """The baseline with the scenario's entries laid over it, as a multiset of
    (check, subject, status, cause)."""
    pairs = overlay(base, entries, company)
    expected = Counter(b.key for b in base)
    expected.subtract(b.key for _, b in pairs if b is not None)
    expected.update((e.check, e.subject or company, e.status, e.cause) for e, _ in pairs)
    return +expected


def in_report_order(base: Sequence[Expected], entries: Iterable[Entry], company: str) -> list[Key]:
    """The baseline in report order, each finding a scenario entry replaces given as the entry
    says: what a whole report of the scenario lists, finding by finding, for a test that
    compares the order too. An entry that adds a finding has no place in that order:
    ValueError names it."""
    pairs = overlay(base, entries, company)
    added = [e for e, b in pairs if b is None]
    if added:
        named = "; ".join(f"{e.check} {e.subject or company} {e.status}" for e in added)
        raise ValueError(f"entries that replace no baseline finding have no report order: {named}")
    # By identity: equal baseline findings (two employees' names) stay apart.
    replacing = {id(b): e for e, b in pairs if b is not None}
    ordered: list[Key] = []
    for finding in base:
        entry = replacing.get(id(finding))
        if entry is None:
            ordered.append(finding.key)
        else:
            ordered.append((entry.check, entry.subject or company, entry.status, entry.cause))
    return ordered


def report_of(config_path: Path, entries: Iterable[Entry]) -> list[Key]:
    """:func:`in_report_order` for the account file at ``config_path`` and a scenario's
    ``expect`` entries: (check, subject, status, cause) of each finding, in report order."""
    base = baseline_of(config_path)
    return in_report_order(base, entries, base[0].subject)


def restating(base: Sequence[Expected], entries: Iterable[Entry], company: str) -> list[str]:
    """Entries whose why does not match what they say: one that restates the baseline
    finding it replaces must say so (a why starting with "baseline"), and one that says
    "baseline" must restate it."""
    wrong = []
    for entry, replaced in overlay(base, entries, company):
        same = replaced is not None and replaced.key[2:] == (entry.status, entry.cause)
        if same != (entry.why or "").startswith("baseline"):
            wrong.append(f"{entry.check} {entry.subject} {entry.status}: {entry.why}")
    return wrong
