"""SPF macros (RFC 7208 section 7): their syntax, and their expansion from known values.

Pure: the values come in as a :class:`MacroValues` (the caller looks up the validated name
``p`` and reads the clock for ``t``), and nothing here touches DNS. What a caller must know:

- A domain-spec may use the letters ``s l o d i p h v``; the explanation text fetched for
  ``exp=`` may also use ``c r t`` (section 7.3). Anything else after ``%`` but ``%%``,
  ``%_`` and ``%-`` is a syntax error, and so is a zero digit transformer.
- :func:`expand_domain` drops one trailing dot and, past 253 characters, labels from the
  left until the name fits (section 7.3); :func:`expand` keeps the text as it comes out.
- An upper-case letter is URL-escaped after its transformers: every byte outside the
  unreserved set (letters, digits, ``- . _ ~``) becomes ``%XX``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from diagnostics.errors import DiagnosticsError

__all__ = [
    "DOMAIN_LETTERS",
    "EXPLANATION_LETTERS",
    "MacroError",
    "MacroValues",
    "closeness",
    "domain_spec",
    "expand",
    "expand_domain",
    "is_macro_string",
    "letters",
]

DOMAIN_LETTERS: Final = "slodiphv"
EXPLANATION_LETTERS: Final = DOMAIN_LETTERS + "crt"
MAX_NAME: Final = 253

_TOPLABEL: Final = re.compile(
    r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9]"
)
# One macro-expand with any letter, or a macro-literal run; what is left is a syntax error.
_TOKEN: Final = re.compile(
    r"%\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[.\-+,/_=]*)\}"
    r"|%(?P<escape>[%_-])|(?P<literal>[\x21-\x24\x26-\x7e]+)|(?P<space> +)"
)


class MacroError(DiagnosticsError, ValueError):
    """A macro-string that RFC 7208 section 7.1 does not allow."""


@dataclass(frozen=True)
class MacroValues:
    """What the macro letters stand for in one evaluation (RFC 7208 section 7.3)."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    domain: str
    helo: str
    validated: str = "unknown"
    receiver: str = "unknown"
    timestamp: int | None = None

    @property
    def local_part(self) -> str:
        local, at, _ = self.sender.rpartition("@")
        return local if at and local else "postmaster"

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]

    def value(self, letter: str) -> str:
        ip = self.ip
        if letter == "i":
            if ip.version == 4:
                return str(ip)
            return ".".join(ip.exploded.replace(":", "").upper())
        if letter == "c":
            return str(ip)
        if letter == "v":
            return "in-addr" if ip.version == 4 else "ip6"
        if letter == "t":
            if self.timestamp is None:
                raise MacroError("%{t} needs the time of the check, which was not given")
            return str(self.timestamp)
        values = {
            "s": self.sender,
            "l": self.local_part,
            "o": self.sender_domain,
            "d": self.domain,
            "h": self.helo,
            "p": self.validated,
            "r": self.receiver,
        }
        return values[letter]


def _tokens(text: str, allowed: str) -> list[re.Match[str]]:
    tokens, position = [], 0
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            raise MacroError(f"'{text}': invalid character or '%' at position {position + 1}")
        letter, digits = token.group("letter"), token.group("digits")
        if letter is not None and letter.lower() not in allowed:
            raise MacroError(f"'{text}': %{{{letter}}} is not a macro allowed here")
        if digits and int(digits) == 0:
            raise MacroError(f"'{text}': a macro cannot keep zero parts ('{token.group()}')")
        tokens.append(token)
        position = token.end()
    return tokens


def is_macro_string(text: str, *, explanation: bool = False, spaces: bool = False) -> bool:
    """Whether ``text`` is a macro-string (``spaces``: an explain-string, which may hold
    spaces) whose macros use only the letters allowed in a domain-spec or, with
    ``explanation``, in explanation text."""
    try:
        tokens = _tokens(text, EXPLANATION_LETTERS if explanation else DOMAIN_LETTERS)
    except MacroError:
        return False
    return spaces or all(t.group("space") is None for t in tokens)


def letters(text: str) -> set[str]:
    """The macro letters ``text`` uses, lower-cased; empty for text that is not valid."""
    try:
        tokens = _tokens(text, EXPLANATION_LETTERS)
    except MacroError:
        return set()
    return {t.group("letter").lower() for t in tokens if t.group("letter")}


def domain_spec(text: str) -> str:
    """A valid domain-spec (section 7.1: a macro-string ending in a macro or in a top label
    that is not all digits) without its trailing dot; MacroError says what is wrong."""
    if not text:
        raise MacroError("the domain is empty")
    if not is_macro_string(text):
        raise MacroError("invalid character or macro in the domain")
    body = text[:-1] if text.endswith(".") else text
    tokens = _tokens(body, DOMAIN_LETTERS)
    if tokens and tokens[-1].group("literal") is None:
        return text
    head, dot, toplabel = body.rpartition(".")
    if not dot or not head or not _TOPLABEL.fullmatch(toplabel):
        raise MacroError(f"the domain must end in a top-level label of letters, not '{toplabel}'")
    return body


def closeness(name: str, domain: str) -> int:
    """How well a name suits ``%{p}`` for ``domain``: 0 for the domain itself, 1 for a name
    under it, 2 for any other (section 7.3: the first two SHOULD be preferred)."""
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    return 0 if name == domain else 1 if name.endswith("." + domain) else 2


def _transform(value: str, digits: str, reverse: str, delimiters: str) -> str:
    parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        parts = parts[-int(digits) :]
    return ".".join(parts)


def expand(text: str, values: MacroValues, *, explanation: bool = False) -> str:
    """``text`` with its macros replaced; MacroError if it is not a valid macro-string."""
    out = []
    for token in _tokens(text, EXPLANATION_LETTERS if explanation else DOMAIN_LETTERS):
        letter = token.group("letter")
        if letter is not None:
            value = _transform(
                values.value(letter.lower()),
                token.group("digits"),
                token.group("reverse"),
                token.group("delimiters"),
            )
            out.append(quote(value, safe="") if letter.isupper() else value)
        elif token.group("escape") is not None:
            out.append({"%": "%", "_": " ", "-": "%20"}[token.group("escape")])
        elif token.group("space") is not None:
            if not explanation:
                raise MacroError(f"'{text}': a space is not allowed in a domain")
            out.append(token.group())
        else:
            out.append(token.group())
    return "".join(out)


def expand_domain(spec: str, values: MacroValues) -> str:
    """The name a domain-spec stands for: expanded, without a trailing dot, and cut to 253
    characters by dropping labels from the left."""
    name = expand(spec, values)
    name = name[:-1] if name.endswith(".") else name
    while len(name) > MAX_NAME and "." in name:
        name = name.split(".", 1)[1]
    return name
