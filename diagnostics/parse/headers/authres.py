"""Authentication-Results (RFC 8601): what each receiving server says SPF, DKIM, DMARC and ARC
gave, comments dropped, quoted values unquoted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    squash,
)


@dataclass(frozen=True)
class AuthResult:
    """One result of an Authentication-Results header (RFC 8601): ``dkim=pass header.d=...``.

    ``authserv_id`` is None when the header has none (Microsoft 365 omits it).
    """

    authserv_id: str | None
    method: str
    result: str
    reason: str | None
    properties: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The property ``name`` (``smtp.mailfrom``, ``header.d``, ...), if present."""
        return next((v for k, v in self.properties if k == name.lower()), None)

    def describe(self) -> str:
        """``method=result``, the reason and the properties, on one line."""
        props = " ".join(f"{k}={v}" for k, v in self.properties)
        reason = f" reason={self.reason!r}" if self.reason else ""
        return f"{self.method}={self.result}{reason}" + (f" ({props})" if props else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "authserv_id": self.authserv_id,
            "method": self.method,
            "result": self.result,
            "reason": self.reason,
            "properties": dict(self.properties),
        }


def _strip_comments(text: str) -> str:
    out: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and (quoted or depth):
            if not depth:
                out.append(text[i : i + 2])
            i += 2
            continue
        if quoted:
            out.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")
        elif not depth:
            quoted = ch == '"'
            out.append(ch)
        i += 1
    return "".join(out)


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


_METHOD = re.compile(r"^([A-Za-z0-9][\w.-]*)\s*(?:/\s*\d+)?\s*=\s*([\w-]+)")
# A name starts where a run of name characters starts: a long run without "=" stays linear.
_PROPERTY = re.compile(r'(?<![\w.-])([A-Za-z0-9][\w.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results_value(value: str) -> tuple[AuthResult, ...]:
    """The results of one Authentication-Results value (comments dropped)."""
    parts = [p.strip() for p in _split_unquoted(_strip_comments(squash(value)), ";")]
    if not parts or not parts[0]:
        return ()
    authserv_id: str | None
    if _METHOD.match(parts[0]):
        authserv_id, resinfos = None, parts
    else:
        authserv_id, resinfos = parts[0].split()[0], parts[1:]
    results = []
    for part in resinfos:
        match = _METHOD.match(part)
        if match is None:
            continue
        reason, properties = None, []
        for key, raw in _PROPERTY.findall(part[match.end() :]):
            if key.lower() == "reason":
                reason = _unquote(raw)
            else:
                properties.append((key.lower(), _unquote(raw)))
        results.append(
            AuthResult(
                authserv_id=authserv_id,
                method=match.group(1).lower(),
                result=match.group(2).lower(),
                reason=reason,
                properties=tuple(properties),
            )
        )
    return tuple(results)


def parse_authentication_results(message: MessageInput) -> tuple[AuthResult, ...]:
    """Every result of every Authentication-Results header, topmost (newest) header first."""
    msg = as_message(message)
    return tuple(
        result
        for key, raw in msg.raw_items()
        if key.lower() == "authentication-results"
        for result in parse_authentication_results_value(str(raw))
    )
