"""Account files for batches at scale: the example accounts renamed, each its own company,
domains, SMTP host, addresses and platform account, for the sandbox to play.

``Firm0007 GmbH`` at ``firm0007.example`` (``jobs@firm0007.example``, ``smtp.firm0007.example``,
subcompanies ``Firm0007 Retail GmbH`` ... as the example has them): the same shape as the file
it is made from, so that a scenario's expectations about ``Acme GmbH`` hold for
``Firm0007 GmbH``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diagnostics.datafiles import package_path

# The example account files the generated ones are shaped like (diagnostics/configs/).
SHAPES = ("acme.yaml", "acme-parent-only.yaml", "acme-three-subcompanies.yaml")


def firm(index: int) -> str:
    """The name part of the ``index``-th generated company: Firm0007."""
    return f"Firm{index:04d}"


def renamed(text: str, index: int) -> str:
    """An example account file's text, as the ``index``-th generated company's."""
    name = firm(index)
    slug = name.lower()
    return (
        text.replace("acme.example", f"{slug}.example")
        .replace("account: acme", f"account: {slug}")
        .replace("Acme ", f"{name} ")
    )


def subject_of(subject: str, index: int) -> str:
    """What an example's subject (``Acme Retail GmbH``) is called in the generated file."""
    return subject.replace("Acme ", f"{firm(index)} ", 1)


def generate_accounts(
    count: int, folder: Path, *, shapes: Sequence[str] = SHAPES, start: int = 1
) -> list[Path]:
    """Write ``count`` account files into ``folder`` (``firm0001.yaml`` ...), their shapes
    taken from ``shapes`` in turn; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [package_path("configs", shape).read_text(encoding="utf-8") for shape in shapes]
    paths = []
    for index in range(start, start + count):
        path = folder / f"{firm(index).lower()}.yaml"
        path.write_text(renamed(texts[(index - start) % len(texts)], index), encoding="utf-8")
        paths.append(path)
    return paths
