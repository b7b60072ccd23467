"""The server's TLS certificate as a reader needs it: subject, issuer, names, expiry.

Pure: read from the ssl module's decoding of a verified peer where that holds every field, else
from the DER form with cryptography (imported only then: it costs ``maildiag smtp`` start-up).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["Certificate", "certificate_from_decoded", "parse_certificate"]


@dataclass(frozen=True)
class Certificate:
    """What a reader needs to know of the server's certificate."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: datetime.datetime
    self_signed: bool

    def days_left(self, now: datetime.datetime | None = None) -> int:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).days

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": list(self.names),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(),
            "self_signed": self.self_signed,
        }


def parse_certificate(der: bytes, decoded: dict[str, Any] | None = None) -> Certificate:
    """The reader-relevant fields of a DER certificate.

    ``decoded`` is the same certificate as the ssl module decodes it (``getpeercert()``, which
    it fills for a verified peer only); when it holds every field, it is read instead.
    """
    if decoded:
        certificate = certificate_from_decoded(decoded)
        if certificate is not None:
            return certificate
    # cryptography costs a noticeable share of the command's start-up; only TLS needs it.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)

    def common_name(name: Any) -> str:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else name.rfc4514_string()

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(a) for a in san.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        names = ()
    return Certificate(
        subject=common_name(cert.subject),
        issuer=common_name(cert.issuer),
        names=names,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.issuer == cert.subject,
    )


def certificate_from_decoded(decoded: dict[str, Any]) -> Certificate | None:
    """What :func:`parse_certificate` reads from the DER form, read from the ssl module's
    decoding instead; None when that lacks something (no common name, say), so that
    cryptography reads the DER form as before.
    """

    def common_name(name: Any) -> str | None:
        return next((v for rdn in name for k, v in rdn if k == "commonName"), None)

    try:
        subject = common_name(decoded["subject"])
        issuer = common_name(decoded["issuer"])
        alt_names = decoded.get("subjectAltName", ())
        dns_names = tuple(v for k, v in alt_names if k == "DNS")
        addresses = tuple(
            str(ipaddress.ip_address(v.strip())) for k, v in alt_names if k == "IP Address"
        )
        not_after = datetime.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(decoded["notAfter"]), datetime.UTC
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(subject, str) or not isinstance(issuer, str):
        return None
    if not all(isinstance(n, str) and n.isascii() for n in dns_names):
        return None  # an IA5String holds ASCII only: let cryptography judge such a name
    return Certificate(
        subject=subject,
        issuer=issuer,
        names=dns_names + addresses,
        not_after=not_after,
        self_signed=decoded["issuer"] == decoded["subject"],
    )
