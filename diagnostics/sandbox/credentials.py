"""The passwords a sandbox generated, in a file its user can source: ``. STATE/credentials.env``.

``maildiag sandbox up`` plays accounts whose passwords (``${ACME_SMTP_PASSWORD}``) were not in
its environment with generated ones; a person who then runs ``maildiag smtp`` against it needs
them. They go to a file only its owner can read, created with that mode (never a moment
readable by others), as ``export NAME='value'`` lines; output names the file, never a value.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

CREDENTIALS_FILE = "credentials.env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def shell_quote(value: str) -> str:
    """``value`` as one single-quoted shell word: nothing in it is expanded."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def render_credentials(values: Mapping[str, str]) -> str:
    """``export NAME='value'`` lines, sorted by name; ValueError for a name a shell refuses."""
    for name in values:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name a shell can export")
    lines = [f"export {name}={shell_quote(values[name])}\n" for name in sorted(values)]
    return "# Passwords maildiag sandbox up generated; read with: . THIS_FILE\n" + "".join(lines)


def write_credentials(directory: Path, values: Mapping[str, str]) -> Path | None:
    """Write ``values`` to ``directory/credentials.env``, mode 0600; its path.

    With no values the file is removed (a folder used again must not offer the passwords of an
    earlier run) and None is returned. The file is written under another name and renamed, so a
    reader never sees half of it, and ``mkstemp`` creates it 0600 from the start.
    """
    path = directory / CREDENTIALS_FILE
    if not values:
        path.unlink(missing_ok=True)
        return None
    text = render_credentials(values)
    descriptor, temp = tempfile.mkstemp(prefix=f".{CREDENTIALS_FILE}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path
