"""Terminal text: what the command line prints, made safe to print.

Text written by strangers (headers, banners, bounces) goes out through :func:`printable`."""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe for a terminal: line breaks and tabs as spaces, control characters
    (including ESC of terminal escape sequences) and bidi overrides removed."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category == "Cs":
            out.append("\ufffd")
        elif category != "Cc" and ch not in _BIDI_CONTROLS:
            out.append(ch)
    return "".join(out)
