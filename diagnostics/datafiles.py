"""The product's own files, found where the package is installed: its data files
(``diagnostics/data/*.yaml``: profiles, providers, rules, remediation texts), read one way, and
the notebooks, scenarios and example account files it ships.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any


def load_data_file(name: str) -> Any:
    """The parsed contents of ``diagnostics/data/<name>``.

    libyaml's safe loader, when PyYAML has it, builds the same data several times faster than
    the pure-Python one (it matters to ``maildiag smtp``'s start-up); both are safe loaders.
    """
    import yaml

    text = resources.files("diagnostics").joinpath("data", name).read_text("utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


def package_path(*parts: str) -> Path:
    """The installed location of a file or folder shipped inside the package (notebooks,
    scenarios, example account files), found through ``importlib.resources``, so that a wheel
    installed anywhere finds what a checkout finds.

    The notebooks are handed to papermill and nbval by path, so the package must live on the
    file system (a wheel always does; a zip import would not, and is refused here).
    """
    location = resources.files("diagnostics").joinpath(*parts)
    if not isinstance(location, Path):
        raise RuntimeError(f"maildiag's {'/'.join(parts)} is not on the file system: {location}")
    return location


def shipped_notebooks() -> dict[str, Path]:
    """The notebooks the package ships, by name (``audit``, ``dns``, ...), and ``sanitize``:
    the nbval sanitize file that masks what differs between two runs of the same setup."""
    folder = package_path("notebooks")
    found = {path.stem: path for path in sorted(folder.glob("*.ipynb"))}
    found["sanitize"] = folder / "sanitize.cfg"
    return found


def shipped_notebook(name: str) -> Path:
    """The shipped notebook ``name`` (``audit`` or ``audit.ipynb``; ``sanitize`` for the nbval
    sanitize file); ValueError naming the known ones, and the closest, for any other name."""
    import difflib

    known = shipped_notebooks()
    stem = name.removesuffix(".ipynb").removesuffix(".cfg")
    if stem in known:
        return known[stem]
    close = difflib.get_close_matches(stem, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"no shipped notebook {name!r}{hint}; known: {', '.join(known)}")
