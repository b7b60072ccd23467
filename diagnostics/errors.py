"""The exception tree of maildiag.

Every error maildiag raises on purpose derives from :class:`DiagnosticsError`; third-party
exceptions are wrapped at the I/O tier with ``raise ... from exc``::

    DiagnosticsError
    ├── ConfigError            a configuration or scenario file is invalid (CLI exit 2)
    │   └── SecretError        a secret reference cannot be resolved
    ├── ProbeError             a network step could not be carried out
    │   ├── DialError          ... resolving or connecting to a host and port (names both)
    │   └── StepTimeout        ... because it did not finish in its time (also a TimeoutError)
    ├── SandboxError           the local mail world could not start or was misused
    ├── ReportError            a report could not be written
    └── AuditFailed            the audit notebook's verdict reached its ``fail_on`` (papermill
                               then exits non-zero, as a scheduled job must)

Messages are built from fields (``fmt``) so that every error names what a reader needs:
for a configuration error the file, the key path, what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DiagnosticsError(Exception):
    """Root of every error maildiag raises on purpose."""


class ConfigError(DiagnosticsError):
    """A configuration or scenario file is invalid.

    ``problems`` holds one entry per problem found, so that a user fixes the file in one go.
    """

    def __init__(self, file: Path | str, problems: list[ConfigProblem]) -> None:
        self.file = str(file)
        self.problems = problems
        lines = [f"{self.file}: {len(problems)} problem(s)"] if len(problems) > 1 else []
        lines += [p.render(self.file) for p in problems]
        super().__init__("\n".join(lines))


class ConfigProblem:
    """One problem in a configuration file: where, what was expected, what was found."""

    __slots__ = ("expected", "found", "key", "line")

    def __init__(self, key: str, expected: str, found: str, line: int | None = None) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        self.line = line

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: key '{self.key}': expected {self.expected}; found {self.found}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "expected": self.expected, "found": self.found, "line": self.line}


class SecretError(ConfigError):
    """A secret reference (``${ENV}`` or ``password_file``) cannot be resolved."""


class ProbeError(DiagnosticsError):
    """A network step could not be carried out; ``step`` names it (connect, banner, ...)."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(f"{step}: {message}")


class DialError(ProbeError):
    """Resolving ``host`` or connecting to it on ``port`` failed; ``cause`` says why.

    ``local`` marks a failure of the machine running maildiag (its resolver does not work),
    not of the host's owner.
    """

    def __init__(
        self,
        step: str,
        host: str,
        port: int,
        cause: str,
        *,
        message: str | None = None,
        local: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.cause = cause
        self.local = local
        super().__init__(step, message or f"{host} port {port}: {cause}")


class StepTimeout(ProbeError, TimeoutError):
    """A network step did not finish in its time."""

    fmt = "{step} timed out after {timeout:.3f} seconds"

    def __init__(self, step: str, timeout: float, *, budget: float | None = None) -> None:
        self.timeout = timeout
        # Set when the session's total budget, not the step's own timeout, ran out.
        self.budget = budget
        message = f"timed out after {timeout:.3f} seconds"
        if budget is not None:
            message += f" (the session's budget of {budget:g} s was used up)"
        ProbeError.__init__(self, step, message)


class SandboxError(DiagnosticsError):
    """The local mail world could not start or was asked for something it refuses."""


class ReportError(DiagnosticsError):
    """A report could not be written."""


class AuditFailed(DiagnosticsError):
    """The audit's verdict reached the notebook's ``fail_on``: raised by its last cell, after
    the report folder is written, so that papermill, cron and CI jobs exit non-zero."""

    def __init__(self, verdict: str, fail_on: str, counts: str, report: Path | str) -> None:
        self.verdict = verdict
        self.fail_on = fail_on
        super().__init__(
            f"verdict {verdict} ({counts}) reaches fail_on={fail_on!r}; the report is {report}"
        )
