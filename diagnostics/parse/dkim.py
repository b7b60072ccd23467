"""DKIM for the round trip: a signing key the sandbox publishes, and verification that says
why a signature broke (body changed, or a signed header changed).

dkimpy does the cryptography; keys are looked up first through the one DNS query function
(:func:`diagnostics.net.dns.query_dns`) with the context's resolver, and handed to dkimpy's synchronous ``dnsfunc``, so verification never blocks on the network.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

import dkim
import dns.asyncresolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from diagnostics.net.dns import query_dns

SELECTOR = "maildiag"
# What a mail client signs: every header the platform needs intact.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
)


@dataclass(frozen=True)
class DKIMKey:
    """A signing key and the TXT record that publishes it."""

    domain: str
    selector: str
    private_pem: bytes = field(repr=False)
    public_b64: str

    @classmethod
    def generate(cls, domain: str, selector: str = SELECTOR) -> DKIMKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(domain, selector, private, base64.b64encode(public).decode())

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}."

    @property
    def txt(self) -> str:
        """The record's rdata: one TXT character-string holds at most 255 octets."""
        value = f"v=DKIM1; k=rsa; p={self.public_b64}"
        return " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))


def sign(message: bytes, key: DKIMKey, headers: Iterable[bytes] = SIGNED_HEADERS) -> bytes:
    """``message`` with a DKIM-Signature (relaxed/relaxed) prepended."""
    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if b":" in line
    }
    include = [h for h in headers if h in present]
    signature = dkim.sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return bytes(signature) + message


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of one DKIM-Signature on a message."""

    domain: str
    selector: str
    verified: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "selector": self.selector,
            "verified": self.verified,
            "reason": self.reason,
        }


def _tags(value: bytes) -> dict[bytes, bytes]:
    tags = {}
    for part in value.split(b";"):
        name, sep, content = part.partition(b"=")
        if sep:
            tags[name.strip()] = b"".join(content.split())
    return tags


def signatures(message: bytes) -> list[tuple[str, str]]:
    """(domain, selector) of each DKIM-Signature, top to bottom."""
    parsed = dkim.DKIM(message)
    found = []
    for name, value in parsed.headers:
        if name.lower() == b"dkim-signature":
            tags = _tags(value)
            found.append((tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode()))
    return found


async def _fetch_keys(
    pairs: list[tuple[str, str]], resolver: dns.asyncresolver.Resolver
) -> dict[bytes, bytes]:
    keys: dict[bytes, bytes] = {}
    for domain, selector in pairs:
        name = f"{selector}._domainkey.{domain}."
        answer = await query_dns(resolver, name, "TXT", lifetime=float(resolver.lifetime))
        if answer.kind == "answer" and answer.records:
            keys[name.encode()] = answer.records[0].encode("utf-8", errors="replace")
    return keys


async def verify(message: bytes, resolver: dns.asyncresolver.Resolver) -> list[SignatureCheck]:
    """Check every DKIM-Signature of ``message``; the reason names what broke it."""
    pairs = signatures(message)
    keys = await _fetch_keys(pairs, resolver)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(name if name.endswith(b".") else name + b".")

    checks = []
    for index, (domain, selector) in enumerate(pairs):
        if f"{selector}._domainkey.{domain}.".encode() not in keys:
            # dkimpy reports a missing key as a plain failure; say what it is.
            reason = f"no usable key at {selector}._domainkey.{domain} (no TXT record found)"
            checks.append(SignatureCheck(domain, selector, False, reason))
            continue
        try:
            ok = bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc))
            reason = (
                "verified" if ok else "a signed header changed (the header hash does not match)"
            )
        except dkim.ValidationError as exc:
            ok = False
            reason = (
                "the body changed (body hash mismatch)" if "body hash" in str(exc) else str(exc)
            )
        except dkim.KeyFormatError as exc:
            ok = False
            reason = f"no usable key at {selector}._domainkey.{domain} ({exc})"
        except dkim.DKIMException as exc:
            ok = False
            reason = str(exc)
        checks.append(SignatureCheck(domain, selector, ok, reason))
    return checks
