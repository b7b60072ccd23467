"""In-memory certificate authority for the sandbox mail world.

Issues leaf certificates in deliberately good and bad variants so that TLS checks can be
exercised against real handshakes on loopback. Everything here is for the sandbox only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_VARIANTS", "WRONG_HOSTNAME", "CertVariant", "IssuedCert", "SandboxCA"]

CertVariant = Literal[
    "valid", "expired", "self_signed", "wrong_host", "expiring_soon", "not_yet_valid"
]
CERT_VARIANTS: tuple[CertVariant, ...] = get_args(CertVariant)

WRONG_HOSTNAME = "wrong-host.invalid"

_DAY = datetime.timedelta(days=1)
# RFC 5280 caps commonName at 64 characters; longer names live only in the SAN.
_MAX_CN_LENGTH = 64


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate with its chain and private key, all PEM-encoded.

    ``hostnames`` are the names actually placed in the SAN; for ``wrong_host`` that is the
    wrong name, not the one requested.
    """

    variant: CertVariant
    hostnames: tuple[str, ...]
    cert_pem: bytes = field(repr=False)
    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    not_after: datetime.datetime

    def server_context(self, *, send_ca: bool = False) -> ssl.SSLContext:
        """Build a TLS server context serving this certificate (TLS 1.2+, no client certs).

        By default only the leaf is sent: the issuing CA is a root, which real servers omit,
        so a client that does not trust it fails with "unable to get local issuer
        certificate". ``send_ca=True`` serves ``chain_pem`` instead; such a client then fails
        with "self-signed certificate in certificate chain". The PEM passes through a
        private temporary directory that is removed before this returns.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_NONE
        with tempfile.TemporaryDirectory(prefix="maildiag-tls-") as private_dir:
            bundle = pathlib.Path(private_dir, "server.pem")
            fd = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write((self.chain_pem if send_ca else self.cert_pem) + self.key_pem)
            context.load_cert_chain(bundle)
        return context


class SandboxCA:
    """A throwaway certificate authority whose key exists only in memory."""

    def __init__(self, *, organization: str = "maildiag sandbox") -> None:
        """Generate the CA key pair and self-signed CA certificate (valid ~10 years)."""
        self.organization = organization
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} CA"[:_MAX_CN_LENGTH]),
            ]
        )
        self._ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 3650 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                _key_usage(key_cert_sign=True, crl_sign=True),
                critical=True,
            )
            .add_extension(self._ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        hostnames: Sequence[str],
        *,
        variant: CertVariant = "valid",
        expiring_in_days: int = 7,
    ) -> IssuedCert:
        """Issue a leaf server certificate for ``hostnames`` in the requested variant.

        Hostnames that parse as IP addresses go into the SAN as IP addresses. A bare ``str``
        is rejected (it would be read as a sequence of one-letter names).
        """
        if isinstance(hostnames, str):
            raise TypeError("hostnames must be a sequence of names, not a single str")
        names = tuple(hostnames)
        if not names:
            raise ValueError("at least one hostname is required")
        if variant not in CERT_VARIANTS:
            raise ValueError(f"unknown certificate variant {variant!r}")
        if variant == "expiring_soon" and expiring_in_days < 1:
            raise ValueError("expiring_in_days must be at least 1; use variant='expired'")

        if variant == "wrong_host":
            names = (WRONG_HOSTNAME,)
        now = _now()
        not_before, not_after = {
            "valid": (now - _DAY, now + 90 * _DAY),
            "wrong_host": (now - _DAY, now + 90 * _DAY),
            "self_signed": (now - _DAY, now + 90 * _DAY),
            "expired": (now - 100 * _DAY, now - 10 * _DAY),
            "not_yet_valid": (now + 10 * _DAY, now + 100 * _DAY),
            "expiring_soon": (now - _DAY, now + expiring_in_days * _DAY),
        }[variant]

        leaf_key = ec.generate_private_key(ec.SECP256R1())
        subject_attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization)]
        if len(names[0]) <= _MAX_CN_LENGTH:
            subject_attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
        subject = x509.Name(subject_attrs)
        self_signed = variant == "self_signed"

        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if self_signed else self._cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                critical=False,
            )
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
        cert = builder.sign(leaf_key if self_signed else self._key, hashes.SHA256())

        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        return IssuedCert(
            variant=variant,
            hostnames=names,
            cert_pem=cert_pem,
            chain_pem=cert_pem if self_signed else cert_pem + self.ca_pem,
            key_pem=leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            not_after=cert.not_valid_after_utc,
        )

    def client_context(self) -> ssl.SSLContext:
        """Build a verifying client context that trusts this CA and nothing else."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        context.check_hostname = True
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def write_ca(self, path: pathlib.Path, *, durable: bool = True) -> pathlib.Path:
        """Write the CA certificate as PEM to ``path`` atomically (mode 0644) and return it;
        on disk before it returns unless not ``durable`` (a folder that goes with the process).

        The parent directory must exist; an existing file is replaced.
        """
        path = pathlib.Path(path)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.ca_pem)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)
        except BaseException:
            pathlib.Path(tmp_name).unlink(missing_ok=True)
            raise
        return path


def _now() -> datetime.datetime:
    # X.509 times carry whole seconds; dropping microseconds keeps not_after exact.
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
