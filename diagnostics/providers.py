"""Mail providers and what they are known to require, read from ``data/providers.yaml``.

:func:`recognise` names the provider behind an SMTP host, its MX hosts or its greeting;
:meth:`Provider.rule_for` finds the provider-specific meaning of a reply at a session step.
Pure functions over data: the SMTP and DNS checks bring the names and replies.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Cause


@dataclass(frozen=True)
class Rule:
    """A reply a provider gives, and what it means."""

    step: str
    cause: Cause
    remediation: str
    enhanced: str | None = None
    text: str | None = None
    # True: only when the login is the sender address; False: only when they differ.
    same_login: bool | None = None

    def matches(
        self, step: str, enhanced: str | None, text: str, *, same_login: bool | None = None
    ) -> bool:
        if step != self.step:
            return False
        if self.same_login is not None and same_login is not None and same_login != self.same_login:
            return False
        if self.enhanced is not None and enhanced != self.enhanced:
            return False
        return self.text is None or re.search(self.text, text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class RelayHost:
    """A host of the provider that does not take a mailbox login, and why."""

    pattern: str
    why: str


@dataclass(frozen=True)
class Submission:
    """The provider's documented submission endpoint."""

    host: str
    port: int
    encryption: str


@dataclass(frozen=True)
class Provider:
    """A mail provider and its known constraints."""

    key: str
    name: str
    hosts: tuple[str, ...]
    mx: tuple[str, ...]
    banner: str
    submission: Submission
    requirements: tuple[str, ...]
    sender_checked_after_data: bool
    relay_hosts: tuple[RelayHost, ...]
    rules: tuple[Rule, ...]

    def serves_host(self, host: str) -> bool:
        return _any_match(host, self.hosts)

    def serves_mx(self, hosts: Iterable[str]) -> bool:
        return any(_any_match(h, self.mx) for h in hosts)

    def greets_with(self, banner: str) -> bool:
        return bool(self.banner) and re.search(self.banner, banner) is not None

    def relay_host(self, host: str) -> RelayHost | None:
        """The reason ``host`` cannot take the platform's login, or None."""
        name = host.lower().rstrip(".")
        return next((r for r in self.relay_hosts if fnmatch.fnmatchcase(name, r.pattern)), None)

    def rule_for(
        self, step: str, enhanced: str | None, text: str, *, same_login: bool | None = None
    ) -> Rule | None:
        """The provider's meaning of a reply at ``step``, or None."""
        return next(
            (r for r in self.rules if r.matches(step, enhanced, text, same_login=same_login)),
            None,
        )


def _any_match(host: str, patterns: Iterable[str]) -> bool:
    name = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _provider(key: str, raw: dict[str, Any]) -> Provider:
    return Provider(
        key=key,
        name=raw["name"],
        hosts=tuple(raw.get("hosts", ())),
        mx=tuple(raw.get("mx", ())),
        banner=raw.get("banner", ""),
        submission=Submission(**raw["submission"]),
        requirements=tuple(raw.get("requirements", ())),
        sender_checked_after_data=bool(raw.get("sender_checked_after_data", False)),
        relay_hosts=tuple(RelayHost(**r) for r in raw.get("relay_hosts", ())),
        rules=tuple(
            Rule(
                step=r["step"],
                cause=Cause(r["cause"]),
                remediation=" ".join(r["remediation"].split()),
                enhanced=r.get("enhanced"),
                same_login=r.get("same_login"),
                text=r.get("text"),
            )
            for r in raw.get("rules", ())
        ),
    )


@cache
def load_providers() -> tuple[Provider, ...]:
    """Every known provider, in the data file's order."""
    raw = load_data_file("providers.yaml")
    return tuple(_provider(key, body) for key, body in raw.items())


@dataclass(frozen=True)
class Recognition:
    """Which provider was recognised, and from what."""

    provider: Provider | None
    evidence: tuple[str, ...]


def recognise(
    *, smtp_host: str | None, mx_hosts: Iterable[str] = (), banner: str | None = None
) -> Recognition:
    """The provider behind an SMTP host, MX hosts or greeting (the SMTP host decides first)."""
    mx = [h.lower().rstrip(".") for h in mx_hosts]
    for provider in load_providers():
        evidence = []
        if smtp_host and provider.serves_host(smtp_host):
            evidence.append(f"SMTP host {smtp_host}")
        if banner and provider.greets_with(banner):
            evidence.append(f"greeting '{banner[:80]}'")
        if mx and provider.serves_mx(mx):
            evidence.append(f"MX {', '.join(mx)}")
        if evidence:
            return Recognition(provider, tuple(evidence))
    return Recognition(None, ())
