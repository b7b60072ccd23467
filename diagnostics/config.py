"""The account configuration: one YAML file per account, loaded into the account model.

:func:`load_config` reads the file, checks every key (unknown keys are errors), resolves
secret references and cross-references (position -> subcompany) through
:mod:`diagnostics.model.validate`, and raises one :class:`~diagnostics.errors.ConfigError`
listing every problem with its key path, line, what was expected and what was found. A
secret's value never appears in a message. The model's classes are re-exported here for the
callers that read a loaded file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from diagnostics.errors import ConfigError, ConfigProblem, SecretError
from diagnostics.limits import InputTooLarge, read_bounded
from diagnostics.model.account import (
    AccountConfig,
    Company,
    Employee,
    Encryption,
    Platform,
    Position,
    SenderName,
    SendingIdentity,
    SmtpSettings,
    Subcompany,
)
from diagnostics.model.validate import Invalid, Problem, Rules
from diagnostics.safeyaml import YAMLLimit, load_bounded

__all__ = [
    "AccountConfig",
    "Company",
    "Employee",
    "Encryption",
    "Platform",
    "Position",
    "SenderName",
    "SendingIdentity",
    "SmtpSettings",
    "Subcompany",
    "load_config",
    "parse_config",
    "problems_in_file",
]


def _yaml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line number (1-based) of every key path in a YAML document, for error messages."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def _key_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def problems_in_file(
    problems: list[Problem], lines: Mapping[tuple[str | int, ...], int]
) -> list[ConfigProblem]:
    """Each problem in the file's words: its key path and the line it is on (or the line of
    the nearest enclosing key, for a key that is missing)."""
    found = []
    for problem in problems:
        line = None
        for cut in range(len(problem.loc), -1, -1):
            if problem.loc[:cut] in lines:
                line = lines[problem.loc[:cut]]
                break
        found.append(ConfigProblem(_key_path(problem.loc), problem.expected, problem.found, line))
    return found


def parse_config(
    text: str,
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> AccountConfig:
    """Validate the YAML ``text`` of an account file; ``source`` names it in errors."""
    try:
        raw = load_bounded(text)
    except YAMLLimit as exc:
        raise ConfigError(
            source, [ConfigProblem("(file)", "YAML within maildiag's bounds", str(exc), exc.line)]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            source, [ConfigProblem("(file)", "valid YAML", f"a syntax error: {problem}", line)]
        ) from None
    if not isinstance(raw, dict):
        kind = "an empty file" if raw is None else type(raw).__name__
        raise ConfigError(
            source,
            [ConfigProblem("(top level)", "a mapping with platform, company, ...", kind, 1)],
        )
    try:
        return Rules(environ=environ, base_dir=base_dir).account(raw)
    except Invalid as exc:
        problems = problems_in_file(exc.problems, _yaml_lines(text))
        # Only unresolvable references (variable unset, file unreadable or empty): SecretError.
        unresolved = all(problem.unresolved_secret for problem in exc.problems)
        error_type = SecretError if unresolved else ConfigError
        raise error_type(source, problems) from None


def raw_smtp_settings(path: Path) -> list[Mapping[str, object]]:
    """The ``smtp`` mappings of the account file's company and subcompanies as written (no
    validation, no secret resolved), read within the bounds of every account file; none when
    the file cannot be read (:func:`load_config` says why). For those who need a look at the
    file before the audit loads it: the sandbox (password references), a batch (SMTP hosts)."""
    try:
        raw = load_bounded(read_bounded(path, "config").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return []  # InputTooLarge and YAMLLimit are ValueErrors
    if not isinstance(raw, dict):
        return []
    identities = [raw.get("company")]
    if isinstance(raw.get("subcompanies"), list):
        identities += raw["subcompanies"]
    return [
        identity["smtp"]
        for identity in identities
        if isinstance(identity, dict) and isinstance(identity.get("smtp"), dict)
    ]


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> AccountConfig:
    """Load and validate the account file at ``path`` (``password_file`` is relative to it)."""
    path = Path(path)
    try:
        text = read_bounded(path, "config").decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            path, [ConfigProblem("(file)", "a readable YAML file", exc.strerror or str(exc))]
        ) from None
    except InputTooLarge as exc:
        raise ConfigError(path, [ConfigProblem("(file)", "a smaller file", str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [ConfigProblem("(file)", "UTF-8 text", str(exc))]) from None
    return parse_config(text, source=str(path), environ=environ, base_dir=path.parent)
