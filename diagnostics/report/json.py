"""The JSON report (``report.json``, schema ``maildiag.report/1``), written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from diagnostics.errors import ReportError
from diagnostics.redact import redact
from diagnostics.report.model import SCHEMA, Report


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def render_json(report: Report) -> str:
    """The report as JSON text, every known secret masked."""
    # Masked before encoding: JSON escapes quotes and backslashes, so a password holding one
    # would no longer match in the encoded text (and masking encoded text could hit syntax).
    return json.dumps(_redacted(report.to_dict()), indent=2, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8) or bytes to ``path`` through a temp file in the same folder and
    a rename.

    A reader sees the old file or the new one, never half of one; the data is on disk
    before the rename.
    """
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        temp = None
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ReportError(f"cannot write {path}: {reason}") from exc
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                Path(temp).unlink(missing_ok=True)
    return path


def write_json(report: Report, directory: Path) -> Path:
    """Write ``report.json`` into ``directory`` atomically; return its path."""
    return write_atomic(directory / "report.json", render_json(report))


def read_json(path: Path) -> dict[str, Any]:
    """A report written by :func:`write_json`; ReportError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ReportError(f"{path} is not a {SCHEMA} report")
    return data
