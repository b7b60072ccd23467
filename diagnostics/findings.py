"""Findings: what one check established about one subject, typed and frozen.

``Status`` is ordered by gravity, so ``max()`` over a run's statuses gives its verdict and
:func:`exit_code` the command line's exit code.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Status(enum.Enum):
    """A finding's status, ordered by gravity (``skip`` < ``pass`` < ``warn`` < ``fail`` < ``error``)."""

    SKIP = "skip"
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {s: i for i, s in enumerate(Status)}


class Cause(enum.Enum):
    """Why something failed: the diagnosis causes of the product contract."""

    DNS_FAILURE = "dns_failure"
    # The resolver of the machine running maildiag does not work: nobody else's DNS is at fault.
    LOCAL_RESOLVER = "local_resolver"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    TLS_MISMATCH = "tls_mismatch"
    TLS_CERTIFICATE = "tls_certificate"
    STARTTLS_REQUIRED = "starttls_required"
    AUTH_FAILED = "auth_failed"
    AUTH_DISABLED = "auth_disabled"
    AUTH_MECHANISM = "auth_mechanism"
    SENDER_NOT_OWNED = "sender_not_owned"
    RELAY_DENIED = "relay_denied"
    CLIENT_IP_REJECTED = "client_ip_rejected"
    RECIPIENT_UNKNOWN = "recipient_unknown"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    POLICY_REJECTED = "policy_rejected"
    FORWARDING_BLOCKED = "forwarding_blocked"
    TEMPORARY_FAILURE = "temporary_failure"
    LOOP_DETECTED = "loop_detected"
    UNKNOWN = "unknown"


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class Finding:
    """What one check established about one subject (a company or subcompany).

    ``evidence`` is structured (transcripts with secrets masked, DNS answers, header diffs);
    ``cause`` is set for ``fail`` and ``error``; ``remediation`` says what IT should change.
    """

    check: str
    status: Status
    subject: str
    title: str
    detail: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    cause: Cause | None = None
    remediation: str = ""
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen(self.evidence))
        if self.status in (Status.FAIL, Status.ERROR) and self.cause is None:
            raise ValueError(f"a {self.status.value} finding of {self.check} needs a cause")

    def with_duration(self, duration_ms: float) -> Finding:
        """The same finding with its duration set (the runner measures it); its evidence,
        frozen already, is shared rather than frozen again."""
        timed = copy.copy(self)
        object.__setattr__(timed, "duration_ms", duration_ms)
        return timed

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (report schema ``maildiag.report/1``)."""
        return {
            "check": self.check,
            "status": self.status.value,
            "subject": self.subject,
            "title": self.title,
            "detail": self.detail,
            "evidence": _plain(self.evidence),
            "cause": self.cause.value if self.cause else None,
            "remediation": self.remediation,
            "duration_ms": round(self.duration_ms, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """A finding read back from :meth:`to_dict` output (KeyError/ValueError if malformed)."""
        return cls(
            check=str(data["check"]),
            status=Status(data["status"]),
            subject=str(data["subject"]),
            title=str(data["title"]),
            detail=str(data.get("detail") or ""),
            evidence=data.get("evidence") or {},
            cause=Cause(data["cause"]) if data.get("cause") else None,
            remediation=str(data.get("remediation") or ""),
            duration_ms=float(data.get("duration_ms") or 0.0),
        )


@dataclass(frozen=True)
class Outcome:
    """What a pure classification concluded, before it is about a check and a subject."""

    status: Status
    title: str
    detail: str = ""
    cause: Cause | None = None
    remediation: str = ""

    def finding(
        self, check: str, subject: str, evidence: Mapping[str, Any] | None = None
    ) -> Finding:
        """The finding of ``check`` about ``subject`` that this outcome makes."""
        return Finding(
            check=check,
            status=self.status,
            subject=subject,
            title=self.title,
            detail=self.detail,
            evidence=evidence or {},
            cause=self.cause,
            remediation=self.remediation,
        )


def verdict(statuses: Iterable[Status]) -> Status:
    """The gravest status; ``pass`` for an empty run."""
    return max(statuses, default=Status.PASS)


def exit_code(statuses: Iterable[Status]) -> int:
    """1 when any finding is ``fail`` or ``error``, else 0."""
    return 1 if verdict(statuses) >= Status.FAIL else 0
