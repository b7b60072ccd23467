"""The product's own data files (``diagnostics/data/*.yaml``: profiles, providers, rules,
remediation texts), read one way.
"""

from __future__ import annotations

from importlib import resources
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
