"""The registry of checks by stable id, and the runner that executes them.

A check is an ``async`` function of a :class:`~diagnostics.context.Context` that returns
findings. The runner executes the selected checks concurrently, each under its own timeout;
an exception or a timeout inside a check becomes an ``error`` finding naming the check, never
a crash of the run.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Status
from diagnostics.net.dns import started_health
from diagnostics.redact import redact
from diagnostics.resolverfault import blames_dns, local_resolver_finding

Flow = Literal["configuration", "outbound", "inbound", "sender"]
CheckFunction = Callable[[Context], Awaitable[list[Finding]]]


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its id, the flow it belongs to and its function."""

    id: str
    flow: Flow
    title: str
    function: CheckFunction

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


_REGISTRY: dict[str, CheckSpec] = {}


def check(check_id: str, *, flow: Flow, title: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated coroutine function as check ``check_id``."""

    def register(function: CheckFunction) -> CheckFunction:
        if check_id in _REGISTRY and _REGISTRY[check_id].function is not function:
            raise ValueError(f"check {check_id} registered twice")
        _REGISTRY[check_id] = CheckSpec(check_id, flow, title, function)
        return function

    return register


# Reports list families in the order an admin works through them: the file, then what the
# platform needs to send (DNS, SMTP, allowlist), then what it needs to receive, then who sends.
FAMILY_ORDER = ("config", "dns", "smtp", "allowlist", "redirect", "headers", "sender")


def _order(spec: CheckSpec) -> int:
    return FAMILY_ORDER.index(spec.family) if spec.family in FAMILY_ORDER else len(FAMILY_ORDER)


def all_checks() -> dict[str, CheckSpec]:
    """Every registered check by id: families in :data:`FAMILY_ORDER`, checks as registered."""
    for family in FAMILY_ORDER:
        importlib.import_module(f"diagnostics.checks.{family}")
    return {spec.id: spec for spec in sorted(_REGISTRY.values(), key=_order)}


def select(only: Iterable[str] | None = None) -> list[CheckSpec]:
    """The checks named by ``only`` (ids or family names); all when None.

    ValueError names what is unknown and what is known.
    """
    if not only:
        return list(all_checks().values())
    wanted = [w.strip() for w in only if w.strip()]
    named = {w.split(".", 1)[0] for w in wanted}
    if named <= set(FAMILY_ORDER):
        # Import only the families asked for: `maildiag smtp` need not load DKIM or pandas.
        for family in sorted(named):
            importlib.import_module(f"diagnostics.checks.{family}")
        checks = {spec.id: spec for spec in sorted(_REGISTRY.values(), key=_order)}
    else:
        checks = all_checks()
    loaded = {spec.family for spec in checks.values()}
    unknown = [w for w in wanted if w not in checks and w not in loaded]
    if unknown:
        every = all_checks()
        families = sorted({spec.family for spec in every.values()})
        raise ValueError(
            f"unknown check or family: {', '.join(unknown)}; "
            f"known families: {', '.join(families)}; known checks: {', '.join(every)}"
        )
    return [s for s in checks.values() if s.id in wanted or s.family in wanted]


def _subject(context: Context) -> str:
    return context.config.company.name


def _crashed(
    spec: CheckSpec, context: Context, exc: Exception, started: float, cause: Cause
) -> Finding:
    return Finding(
        check=spec.id,
        status=Status.ERROR,
        subject=_subject(context),
        title=f"{spec.title}: the check could not run",
        detail=redact(f"{type(exc).__name__}: {exc}"),
        evidence={"exception": type(exc).__name__},
        cause=cause,
        remediation="This is a fault of maildiag, not of your setup: report it with "
        "this finding attached.",
        duration_ms=(time.perf_counter() - started) * 1000,
    )


async def _run_one(spec: CheckSpec, context: Context) -> list[Finding]:
    started = time.perf_counter()
    timeout = context.timeouts.check
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            findings = await spec.function(context)
    except TimeoutError as exc:
        if not scope.expired():
            # A step inside the check timed out (e.g. StepTimeout) and the check let it
            # escape: report that step, not a check that ran out of its own time.
            return [_crashed(spec, context, exc, started, Cause.CONNECTION_TIMEOUT)]
        return [
            Finding(
                check=spec.id,
                status=Status.ERROR,
                subject=_subject(context),
                title=f"{spec.title}: did not finish in {timeout:g} s",
                detail=f"The check {spec.id} was stopped after {timeout:g} seconds.",
                cause=Cause.CONNECTION_TIMEOUT,
                remediation="Run the check again; if it times out again, the server named in "
                "the evidence of the other checks does not answer in time.",
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        ]
    except Exception as exc:  # a bug or an unexpected failure must not end the run
        return [_crashed(spec, context, exc, started, Cause.UNKNOWN)]
    elapsed = (time.perf_counter() - started) * 1000
    return [f if f.duration_ms else f.with_duration(elapsed) for f in findings]


async def run_checks(context: Context, specs: Iterable[CheckSpec]) -> list[Finding]:
    """Run ``specs`` concurrently; findings come back in the order of ``specs``."""
    results = await asyncio.gather(*(_run_one(spec, context) for spec in specs))
    findings = [finding for findings in results for finding in findings]
    health = await started_health(context)
    if health is not None and not health.works:
        # The run's own resolver failed: no finding may blame a name for it.
        findings = [local_resolver_finding(f, health) if blames_dns(f) else f for f in findings]
    return findings
