"""YAML that a stranger may have written, loaded within bounds.

PyYAML's safe loader builds no objects, but it still expands every alias (a 1.5 KB "billion
laughs" file becomes gigabytes), follows an alias into its own anchor (a structure that
contains itself), and recurses once per nesting level. Before anything is composed, the event
stream (read iteratively, without recursion) is checked:

- nesting at most :data:`MAX_DEPTH` levels;
- at most :data:`MAX_VALUES` values once every alias is expanded (counted, never built);
- no alias inside the node it refers to.

:class:`YAMLLimit` (a ValueError) says which bound was passed, and where.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser and safe loader when PyYAML has them (several times faster, the same
# events and data); the pure-Python ones otherwise. Both are safe loaders.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 64
MAX_VALUES = 200_000


class YAMLLimit(ValueError):
    """The text passes a bound; ``line`` (1-based) is where, when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def check_bounds(text: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """YAMLLimit when ``text`` nests too deep, expands to too many values, or has an alias
    inside its own anchor; yaml.YAMLError for a syntax error.

    A text libyaml refuses is read again by the pure-Python parser, whose error says what it
    found where it expected something else, and which leaves nesting to the bound here.
    """
    try:
        _check_bounds(text, max_depth, max_values, _LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
        _check_bounds(text, max_depth, max_values, yaml.SafeLoader)
        raise


def _check_bounds(text: str, max_depth: int, max_values: int, loader: type[Any]) -> None:
    # Per open collection: its anchor (or None) and the values counted inside it so far.
    stack: list[tuple[str | None, int]] = []
    sizes: dict[str, int] = {}
    total = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if any(open_anchor == anchor for open_anchor, _ in stack):
                raise YAMLLimit(f"the alias *{anchor} is inside the &{anchor} it refers to", line)
            added = sizes.get(anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor is not None:
                sizes[str(event.anchor)] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= max_depth:
                raise YAMLLimit(f"nesting deeper than {max_depth} levels", line)
            stack.append((str(event.anchor) if event.anchor is not None else None, 0))
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            closed, inside = stack.pop()
            if closed is not None:
                sizes[closed] = inside + 1
            added = inside + 1
            total -= inside  # counted already, value by value
        else:
            continue
        total += added
        if total > max_values:
            raise YAMLLimit(f"more than {max_values:,} values once aliases are expanded", line)
        if stack:
            parent, inside = stack[-1]
            stack[-1] = (parent, inside + added)


def load_bounded(text: str) -> Any:
    """``yaml.safe_load(text)`` once :func:`check_bounds` passed. Aliases are shared in the
    result, as PyYAML builds them; the bound is on what they would expand to."""
    check_bounds(text)
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
