"""DMARC (RFC 9989, "DMARCbis", which replaced RFC 7489): record parsing and policy discovery.

Pure tier: :func:`is_dmarc_record`, :func:`parse_record`, :func:`tree_walk_names`. I/O tier:
:func:`discover`, which takes the DNS as an async ``lookup(name, rdtype)`` function (see
:data:`diagnostics.parse.spf.Lookup`).

What a caller must know:

- Discovery is the DNS tree walk: ``_dmarc.<domain>`` first, then ``_dmarc.<parent>`` for each
  parent in turn, at most :data:`MAX_QUERIES` queries; a name of more than 8 labels jumps to
  its shortest 7 labels after the first query. The walk stops at the first name holding
  exactly one valid record; a name with several is ignored.
- Without a public suffix list the only suffix known to be public is the top-level label:
  ``_dmarc.<tld>`` is never queried.
- A record found at a parent applies through ``sp=`` (``np=`` when the domain does not
  exist), falling back to ``p=`` (:meth:`Discovery.policy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from diagnostics.errors import DiagnosticsError
from diagnostics.parse.spf import Lookup

__all__ = [
    "MAX_QUERIES",
    "Discovery",
    "DmarcRecord",
    "DmarcSyntaxError",
    "Policy",
    "discover",
    "is_dmarc_record",
    "parse_record",
    "tree_walk_names",
]

Policy = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]

MAX_QUERIES: Final = 8
# A name longer than this many labels continues the walk from its shortest this-many labels.
_LONG_NAME_LABELS: Final = 7
_POLICIES: Final[tuple[Policy, ...]] = ("none", "quarantine", "reject")
# Nothing is known about the name: its server failed, refused or was not reached in time.
_FAILED: Final = ("servfail", "refused", "timeout", "unreachable")
# DMARCbis tags, plus RFC 7489's rf and ri, which receivers still meet and may ignore.
_KNOWN_TAGS: Final = frozenset(
    {"v", "p", "sp", "np", "adkim", "aspf", "t", "pct", "psd", "rua", "ruf", "fo", "rf", "ri"}
)


class DmarcSyntaxError(DiagnosticsError, ValueError):
    """A TXT string that is not a DMARC record."""


@dataclass(frozen=True)
class DmarcRecord:
    """A parsed DMARC record.

    ``p`` is None when absent or invalid; ``notes`` lists what was ignored or invalid, in
    plain words (DMARCbis: invalid values fall back to defaults, unknown tags are ignored).
    """

    text: str
    p: Policy | None
    sp: Policy | None = None
    np: Policy | None = None
    adkim: Alignment = "r"
    aspf: Alignment = "r"
    testing: bool = False
    pct: str | None = None
    psd: Literal["y", "n", "u"] = "u"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def is_dmarc_record(text: str) -> bool:
    """Whether a TXT string is a DMARC record: it starts with the tag ``v=DMARC1``."""
    if not text.startswith("v=DMARC1"):
        return False
    rest = text[len("v=DMARC1") :].lstrip(" \t")
    return not rest or rest.startswith(";")


def _tags(text: str) -> tuple[dict[str, str], list[str]]:
    tags: dict[str, str] = {}
    notes: list[str] = []
    for part in text.split(";")[1:]:
        if not part.strip(" \t"):
            continue
        name, equals, value = part.partition("=")
        name, value = name.strip(" \t").lower(), value.strip(" \t")
        if not equals or not name:
            notes.append(f"'{part.strip()}' is not a tag=value pair and was ignored")
        elif name in tags:
            notes.append(f"tag {name} appears twice; the first value counts")
        else:
            tags[name] = value
    return tags, notes


def _policy(tags: Mapping[str, str], name: str, notes: list[str]) -> Policy | None:
    value = tags.get(name)
    if value is None:
        return None
    for policy in _POLICIES:
        if value.lower() == policy:
            return policy
    notes.append(f"{name}={value} is not none, quarantine or reject and was ignored")
    return None


def _alignment(tags: Mapping[str, str], name: str, notes: list[str]) -> Alignment:
    value = tags.get(name, "r").lower()
    if value == "s":
        return "s"
    if value != "r":
        notes.append(f"{name}={tags[name]} is not r or s; relaxed (r) applies")
    return "r"


def _uris(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(uri.strip() for uri in value.split(",") if uri.strip())


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC record; DmarcSyntaxError when it does not start with ``v=DMARC1``."""
    if not is_dmarc_record(text):
        raise DmarcSyntaxError(f"not a DMARC record (it must start with v=DMARC1): {text!r}")
    tags, notes = _tags(text)
    p = _policy(tags, "p", notes)
    if "p" not in tags:
        notes.append("the record has no p= tag")
    pct = tags.get("pct")
    if pct is not None:
        notes.append(f"pct={pct} is ignored: DMARCbis removed pct (use t=y to test a policy)")
    testing = tags.get("t", "n").lower()
    if testing not in ("y", "n"):
        notes.append(f"t={tags['t']} is not y or n; n applies")
    psd = tags.get("psd", "u").lower()
    if psd not in ("y", "n", "u"):
        notes.append(f"psd={tags['psd']} is not y, n or u; u applies")
        psd = "u"
    notes += [f"unknown tag {name} was ignored" for name in tags if name not in _KNOWN_TAGS]
    return DmarcRecord(
        text=text,
        p=p,
        sp=_policy(tags, "sp", notes),
        np=_policy(tags, "np", notes),
        adkim=_alignment(tags, "adkim", notes),
        aspf=_alignment(tags, "aspf", notes),
        testing=testing == "y",
        pct=pct,
        psd="y" if psd == "y" else "n" if psd == "n" else "u",
        rua=_uris(tags.get("rua")),
        ruf=_uris(tags.get("ruf")),
        notes=tuple(notes),
    )


def tree_walk_names(domain: str) -> tuple[str, ...]:
    """The domains whose ``_dmarc`` name the tree walk queries for ``domain``, in order."""
    labels = domain.rstrip(".").lower().split(".")
    names = [".".join(labels)]
    count = len(labels) - 1
    if len(labels) > _LONG_NAME_LABELS + 1:
        count = _LONG_NAME_LABELS
    # The top-level label alone is a public suffix: never asked for a policy.
    while count >= 2 and len(names) < MAX_QUERIES:
        names.append(".".join(labels[-count:]))
        count -= 1
    return tuple(names)


@dataclass(frozen=True)
class Discovery:
    """What the tree walk found for ``domain``.

    ``queried`` lists the ``_dmarc`` names asked, in order; ``found_at`` is the domain whose
    record applies (None without one); ``ignored`` says which names held records that could
    not be used and why; ``failure`` is the DNS failure that stopped the walk, if any.
    """

    domain: str
    queried: tuple[str, ...]
    record: DmarcRecord | None = None
    found_at: str | None = None
    ignored: tuple[str, ...] = ()
    failure: str | None = None

    @property
    def inherited(self) -> bool:
        """Whether the record was found at a parent rather than at the domain itself."""
        return self.found_at is not None and self.found_at != self.domain

    def policy(self, *, domain_exists: bool = True) -> tuple[Policy, str] | None:
        """The policy that applies to the domain and the tag it comes from; None without a
        record. A missing or invalid ``p=`` counts as ``none``."""
        record = self.record
        if record is None:
            return None
        if self.inherited:
            if not domain_exists and record.np is not None:
                return record.np, "np"
            if record.sp is not None:
                return record.sp, "sp"
        return (record.p or "none"), "p"


async def discover(domain: str, *, lookup: Lookup) -> Discovery:
    """Find the DMARC record that applies to ``domain`` by the DNS tree walk."""
    domain = domain.rstrip(".").lower()
    queried: list[str] = []
    ignored: list[str] = []
    for name in tree_walk_names(domain):
        qname = f"_dmarc.{name}"
        queried.append(qname)
        answer = await lookup(qname, "TXT")
        if answer.kind in _FAILED:
            failure = f"{qname} TXT: {answer.detail}"
            return Discovery(domain, tuple(queried), ignored=tuple(ignored), failure=failure)
        if answer.kind != "answer":
            continue
        valid = [text for text in answer.records if is_dmarc_record(text)]
        invalid = len(answer.records) - len(valid)
        if len(valid) > 1:
            ignored.append(f"{qname} holds {len(valid)} DMARC records, so none of them counts")
            continue
        if not valid:
            if invalid:
                ignored.append(f"{qname} holds TXT records that do not start with v=DMARC1")
            continue
        return Discovery(
            domain,
            tuple(queried),
            record=parse_record(valid[0]),
            found_at=name,
            ignored=tuple(ignored),
        )
    return Discovery(domain, tuple(queried), ignored=tuple(ignored))
