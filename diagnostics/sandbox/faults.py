"""A scenario's faults stated by role, applied to the world of whichever account it plays.

Pure: :func:`apply_faults` turns a world (a :class:`Scenario` whose sections describe a
healthy setup) into the same world with the faults of ``scenario.faults`` in its DNS zones,
its company MX and its submission logins. The roles are read off the world itself: the parent
company is the first mailbox of the company MX, the first submission server and its first
login, which is how both the shipped acme world and :func:`diagnostics.sandbox.account.
account_world` order them.
"""

from __future__ import annotations

from collections.abc import Callable

from diagnostics.sandbox.scenario import AccountFaults, Record, Scenario

__all__ = ["PRIVATE_SMTP_ADDRESS", "apply_faults"]

# RFC 1918: works inside the company, unreachable from the platform.
PRIVATE_SMTP_ADDRESS = "10.0.0.25"
# Documentation addresses (RFC 5737) for the hosts a too-long SPF chain names.
_SPF_CHAIN = (("_spf1", ("a1", "a2", "a3")), ("_spf2", ("b1", "b2")), ("_spf3", ("c1", "c2")))

_Zones = dict[str, tuple[Record, ...]]


def owner_name(record: Record, zone: str) -> str:
    """The record's owner as an absolute name without the final dot, lower case."""
    name = record.name
    if name.endswith("."):
        return name.rstrip(".").lower()
    if name == "@":
        return zone.rstrip(".").lower()
    return f"{name}.{zone.rstrip('.')}".lower()


def zone_of(name: str, zones: _Zones) -> str | None:
    """The most specific zone ``name`` belongs to, or None when the world does not play it."""
    name = name.rstrip(".").lower()
    best: str | None = None
    for zone in zones:
        origin = zone.rstrip(".").lower()
        if (name == origin or name.endswith("." + origin)) and (
            best is None or len(origin) > len(best.rstrip("."))
        ):
            best = zone
    return best


def _edit(
    zones: _Zones, owner: str, rtype: str, change: Callable[[Record], Record | None]
) -> _Zones:
    """``zones`` with every ``rtype`` record of ``owner`` passed through ``change`` (None drops it)."""
    edited: _Zones = {}
    for zone, records in zones.items():
        kept = []
        for record in records:
            if record.rtype == rtype and owner_name(record, zone) == owner:
                changed = change(record)
                if changed is not None:
                    kept.append(changed)
            else:
                kept.append(record)
        edited[zone] = tuple(kept)
    return edited


def _add(zones: _Zones, records: list[Record]) -> _Zones:
    edited = dict(zones)
    for record in records:
        zone = zone_of(record.name, edited)
        if zone is None:
            continue
        edited[zone] = (*edited[zone], record)
    return edited


def _unquoted(value: str) -> str:
    return value.strip().removeprefix('"').removesuffix('"')


def _spf_chain(zones: _Zones, domain: str) -> _Zones:
    """The domain's SPF record with three includes that together need more than 10 lookups."""
    includes = [f"include:{label}.{domain}" for label, _ in _SPF_CHAIN]

    def longer(record: Record) -> Record:
        terms = _unquoted(record.value).split()
        if not terms or terms[0] != "v=spf1":
            return record
        # The includes go before the final "all", which must stay last to mean anything.
        tail = [terms.pop()] if terms[-1].lstrip("+-~?") == "all" else []
        return record.model_copy(update={"value": f'"{" ".join([*terms, *includes, *tail])}"'})

    zones = _edit(zones, domain, "TXT", longer)
    added: list[Record] = []
    address = 1
    for label, hosts in _SPF_CHAIN:
        terms = " ".join(f"a:{host}.{domain}" for host in hosts)
        added.append(Record(name=f"{label}.{domain}.", rtype="TXT", value=f'"v=spf1 {terms} ~all"'))
    for _, hosts in _SPF_CHAIN:
        for host in hosts:
            added.append(Record(name=f"{host}.{domain}.", rtype="A", value=f"192.0.2.{address}"))
            address += 1
    return _add(zones, added)


def _without_mx_term(record: Record) -> Record:
    terms = _unquoted(record.value).split()
    if not terms or terms[0] != "v=spf1" or "mx" not in terms:
        return record
    return record.model_copy(update={"value": f'"{" ".join(t for t in terms if t != "mx")}"'})


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def _mistyped(address: str) -> str:
    """The address with the last letter of its local part missing (acme-jobs -> acme-job)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:-1]}@{domain}"


def apply_faults(world: Scenario) -> Scenario:
    """``world`` with ``world.faults`` applied to its parent company; ``world`` unchanged when
    it states none."""
    faults = world.faults
    if faults == AccountFaults():
        return world
    zones: _Zones = dict(world.dns)
    mx = world.company_mx
    submission = world.submission
    parent = mx.mailboxes[0] if mx.mailboxes else None
    domain = _domain(parent) if parent else None
    if domain is not None:
        if faults.mx == "absent":
            zones = _edit(zones, domain, "MX", lambda record: None)
            # Its SPF record then names no "mx" either: a void lookup would be a second fault.
            zones = _edit(zones, domain, "TXT", _without_mx_term)
        if faults.spf == "too_many_lookups":
            zones = _spf_chain(zones, domain)
        if faults.dmarc == "reject":
            policy = f'"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@{domain}"'
            zones = _edit(
                zones,
                f"_dmarc.{domain}",
                "TXT",
                lambda record: record.model_copy(update={"value": policy}),
            )
    if faults.smtp_host == "private":
        zones = _edit(
            zones,
            submission.hostname.lower(),
            "A",
            lambda record: record.model_copy(update={"value": PRIVATE_SMTP_ADDRESS}),
        )
    if faults.login == "wrong_password" and submission.users:
        first = submission.users[0].model_copy(update={"wrong_password": True})
        submission = submission.model_copy(update={"users": (first, *submission.users[1:])})
    if faults.redirect == "none":
        mx = mx.model_copy(update={"redirects": {}})
    elif parent is not None and faults.redirect == "mistyped" and parent in mx.redirects:
        redirects = {**mx.redirects, parent: _mistyped(mx.redirects[parent])}
        mx = mx.model_copy(update={"redirects": redirects})
    elif parent is not None and domain is not None and faults.redirect == "loop":
        # Two addresses that redirect to each other, as a mistaken pair of rules does.
        other = f"recruiting@{domain}"
        mailboxes = (parent, other, *(a for a in mx.mailboxes[1:] if a != other))
        redirects = {**mx.redirects, parent: other, other: parent}
        mx = mx.model_copy(update={"mailboxes": mailboxes, "redirects": redirects})
    return world.model_copy(update={"dns": zones, "company_mx": mx, "submission": submission})
