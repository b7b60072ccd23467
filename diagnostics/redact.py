"""Keeps secret values out of every text that leaves memory: logs, exceptions, evidence.

Every :class:`~diagnostics.secrets.Secret` made in this process is known here;
:func:`redact` replaces each value (and its base64 form) in a text with the mask, and
:class:`RedactingFilter` does it to every log record.
"""

from __future__ import annotations

import logging

from diagnostics.secrets import MASK, known_values


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by the mask."""
    for value in known_values():
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in the message and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
