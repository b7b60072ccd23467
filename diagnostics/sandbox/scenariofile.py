"""Reading scenario files: a name or a path, ``extends`` chains, validation, faults applied.

Scenario files ship in the package (``diagnostics/scenarios/``, also reachable as
``fixtures/scenarios/``); :func:`load_scenario` takes a name (``healthy``) or a path and
returns the validated :class:`~diagnostics.sandbox.scenario.Scenario` with its ``faults``
applied by :func:`~diagnostics.sandbox.faults.apply_faults`. Errors are
:class:`~diagnostics.errors.ConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diagnostics.errors import ConfigError, ConfigProblem
from diagnostics.limits import read_bounded
from diagnostics.safeyaml import load_bounded
from diagnostics.sandbox.faults import apply_faults
from diagnostics.sandbox.scenario import SCENARIO_DIR, Scenario


def scenario_names() -> list[str]:
    """The names of the scenarios shipped with the package."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(name_or_path: str | Path) -> Path:
    """The file of a scenario given by name (``healthy``) or path."""
    candidate = Path(name_or_path)
    # A folder of the user's that happens to share a scenario's name (reports/demo) is not one.
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return candidate
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it.

    Mappings merge key by key; anything else replaces, and so does an empty mapping, so that
    ``redirects: {}`` means "no redirection" rather than "the base's redirections".
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The scenario's YAML as data, with ``extends: NAME`` resolved (the base's keys first)."""
    if not path.is_file():
        known = ", ".join(scenario_names()) or "none"
        # A name the user gave is shown as given, not as the package's file it was looked for.
        where = f"scenario {path.stem}" if path.parent == SCENARIO_DIR and not seen else path
        raise ConfigError(
            where,
            [ConfigProblem("(file)", f"a scenario name or file (known: {known})", "no such file")],
        )
    try:
        raw = load_bounded(read_bounded(path, "config").decode("utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # YAMLLimit, InputTooLarge, UnicodeDecodeError
        raise ConfigError(path, [ConfigProblem("(file)", "valid YAML", str(exc))]) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, [ConfigProblem("(top level)", "a mapping", type(raw).__name__)])
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    base_path = path.parent / f"{base_name}.yaml"
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ConfigError(
            path, [ConfigProblem("extends", "a chain without cycles", str(base_name))]
        )
    base = _read_raw(base_path, (*seen, path.resolve()))
    # What a scenario expects is its own: an audit of a faulty world differs from its base's.
    base.pop("expect", None)
    return merge(base, raw)


def _unexplained(expect: Any) -> list[ConfigProblem]:
    """A problem for each ``expect`` entry that does not say, in one line, why it is expected.

    An expectation without its reason cannot be told from one recorded off the audit's own
    output, which guards against nothing the audit got wrong when it was recorded.
    """
    if not isinstance(expect, list):
        return []  # the model says what is wrong with it
    problems = []
    for index, entry in enumerate(expect):
        if not isinstance(entry, dict):
            continue
        why = entry.get("why")
        if isinstance(why, str) and why.strip() and "\n" not in why.strip():
            continue
        named = ", ".join(f"{k}: {entry[k]}" for k in ("check", "subject", "status") if k in entry)
        problems.append(
            ConfigProblem(
                f"expect[{index}].why",
                "one line saying why this finding is expected (the fault, or the RFC or SPEC "
                "clause behind it)",
                f"{'no why' if why is None else repr(why)[:80]} in {{{named}}}",
            )
        )
    return problems


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario (``extends: healthy`` takes another as its base), with its
    ``faults`` applied to its world.

    ConfigError names the file, the key and the problem; an ``expect`` entry without a
    ``why`` is one.
    """
    path = scenario_path(name_or_path)
    try:
        stat = path.stat()
    except OSError:
        return _load(path)  # _read_raw says what is wrong with it
    return _load_unchanged(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=128)
def _load_unchanged(path: Path, mtime_ns: int, size: int) -> Scenario:
    """:func:`_load` of a file as it is on disk (a batch plays one scenario for many accounts;
    the scenario is frozen, and an edited file is read again)."""
    return _load(path)


def _load(path: Path) -> Scenario:
    raw = _read_raw(path)
    unexplained = _unexplained(raw.get("expect"))
    if unexplained:
        raise ConfigError(path, unexplained)
    try:
        return apply_faults(Scenario.model_validate(raw))
    except ValidationError as exc:
        problems = [
            ConfigProblem(
                ".".join(str(p) for p in error["loc"]) or "(top level)",
                error["msg"],
                repr(error.get("input"))[:80],
            )
            for error in exc.errors(include_url=False)
        ]
        raise ConfigError(path, problems) from None
