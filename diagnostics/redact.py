"""Keeps secret values out of every text that leaves memory: logs, exceptions, evidence.

Every :class:`~diagnostics.secrets.Secret` made in this process is known here;
:func:`redact` replaces each value (and its base64 form) in a text with the mask, and
:class:`RedactingFilter` does it to every log record.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

from diagnostics.secrets import MASK, known_values

# AUTH PLAIN sends base64("\0login\0password"): the password's own base64 form is not a
# substring of that, so base64-looking tokens are decoded and masked whole when they hold a
# secret. Eight characters are the shortest such blob for a four-character secret.
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def _holds_secret(token: str, values: list[str]) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    text = decoded.decode("utf-8", errors="replace")
    return any(value in text for value in values)


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by the mask.

    Also masks whole base64 tokens that decode to text holding a secret (AUTH PLAIN).
    """
    values = known_values()
    if not values:
        return text
    text = _BASE64_TOKEN.sub(
        lambda match: MASK if _holds_secret(match.group(), values) else match.group(), text
    )
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in the message, traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
