"""Tests for the sandbox CA, mostly over real TLS handshakes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import pathlib
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from diagnostics.sandbox.certs import (
    CERT_VARIANTS,
    WRONG_HOSTNAME,
    CertVariant,
    IssuedCert,
    SandboxCA,
)

HOST = "mx.sandbox.test"
BANNER = b"220 mx.sandbox.test ESMTP ready\r\n"
# OpenSSL 3 spells "self-signed", 1.1.1 "self signed".
SELF_SIGNED_MESSAGES = {"self-signed certificate", "self signed certificate"}

# OpenSSL X509_V_ERR_* codes; stable across OpenSSL releases.
CERT_NOT_YET_VALID = 9
CERT_HAS_EXPIRED = 10
DEPTH_ZERO_SELF_SIGNED_CERT = 18
SELF_SIGNED_CERT_IN_CHAIN = 19
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64


@pytest.fixture(scope="module")
def ca() -> SandboxCA:
    return SandboxCA()


@contextlib.asynccontextmanager
async def tls_server(issued: IssuedCert, *, send_ca: bool = False) -> AsyncIterator[int]:
    """Serve ``issued`` on 127.0.0.1 and yield the port; on exit wait for every connection."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(BANNER)
            await writer.drain()
            await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()

    context = issued.server_context(send_ca=send_ca)
    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
    # On Python 3.11 wait_closed() only waits for open connections (including ones whose
    # handshake failed) if it is already waiting when close() is called.
    closed = asyncio.create_task(server.wait_closed())
    await asyncio.sleep(0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await closed


async def fetch_banner(port: int, context: ssl.SSLContext, server_hostname: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_hostname
    )
    try:
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def handshake_error(
    issued: IssuedCert,
    context: ssl.SSLContext,
    server_hostname: str = HOST,
    *,
    send_ca: bool = False,
) -> ssl.SSLCertVerificationError:
    async with tls_server(issued, send_ca=send_ca) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
            await fetch_banner(port, context, server_hostname)
    return excinfo.value


def load(issued: IssuedCert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- real handshakes ------------------------------------------------------------------------


async def test_valid_certificate_verifies(ca: SandboxCA) -> None:
    issued = ca.issue([HOST])
    async with tls_server(issued) as port:
        assert await fetch_banner(port, ca.client_context(), HOST) == BANNER


async def test_valid_certificate_verifies_for_ip_address(ca: SandboxCA) -> None:
    issued = ca.issue(["127.0.0.1"])
    async with tls_server(issued) as port:
        assert await fetch_banner(port, ca.client_context(), "127.0.0.1") == BANNER


async def test_valid_certificate_verifies_for_every_listed_name(ca: SandboxCA) -> None:
    issued = ca.issue([HOST, "smtp.sandbox.test", "::1"])
    async with tls_server(issued) as port:
        assert await fetch_banner(port, ca.client_context(), "smtp.sandbox.test") == BANNER


async def test_expired_certificate_fails(ca: SandboxCA) -> None:
    error = await handshake_error(ca.issue([HOST], variant="expired"), ca.client_context())
    assert error.verify_code == CERT_HAS_EXPIRED
    assert error.verify_message == "certificate has expired"


async def test_not_yet_valid_certificate_fails(ca: SandboxCA) -> None:
    error = await handshake_error(ca.issue([HOST], variant="not_yet_valid"), ca.client_context())
    assert error.verify_code == CERT_NOT_YET_VALID
    assert error.verify_message == "certificate is not yet valid"


async def test_self_signed_certificate_fails(ca: SandboxCA) -> None:
    error = await handshake_error(ca.issue([HOST], variant="self_signed"), ca.client_context())
    assert error.verify_code == DEPTH_ZERO_SELF_SIGNED_CERT
    assert error.verify_message in SELF_SIGNED_MESSAGES


async def test_wrong_host_certificate_fails_hostname_check(ca: SandboxCA) -> None:
    issued = ca.issue([HOST], variant="wrong_host")
    error = await handshake_error(issued, ca.client_context())
    assert error.verify_code == HOSTNAME_MISMATCH
    assert error.verify_message == f"Hostname mismatch, certificate is not valid for '{HOST}'."


async def test_wrong_host_certificate_fails_ip_check(ca: SandboxCA) -> None:
    issued = ca.issue(["127.0.0.1"], variant="wrong_host")
    error = await handshake_error(issued, ca.client_context(), "127.0.0.1")
    assert error.verify_code == IP_ADDRESS_MISMATCH
    assert error.verify_message == "IP address mismatch, certificate is not valid for '127.0.0.1'."


async def test_expiring_soon_certificate_verifies(ca: SandboxCA) -> None:
    issued = ca.issue([HOST], variant="expiring_soon", expiring_in_days=3)
    async with tls_server(issued) as port:
        assert await fetch_banner(port, ca.client_context(), HOST) == BANNER
    remaining = issued.not_after - utcnow()
    assert datetime.timedelta(days=2) < remaining <= datetime.timedelta(days=4)


@pytest.mark.parametrize("trust", ["other_ca", "nothing"])
async def test_client_that_does_not_trust_the_ca_fails(ca: SandboxCA, trust: str) -> None:
    if trust == "other_ca":
        context = SandboxCA(organization="someone else").client_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    error = await handshake_error(ca.issue([HOST]), context)
    assert error.verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert error.verify_message == "unable to get local issuer certificate"


async def test_server_sending_its_ca_verifies_for_trusting_client(ca: SandboxCA) -> None:
    async with tls_server(ca.issue([HOST]), send_ca=True) as port:
        assert await fetch_banner(port, ca.client_context(), HOST) == BANNER


async def test_server_sending_its_ca_fails_for_client_that_does_not_trust_it(
    ca: SandboxCA,
) -> None:
    context = SandboxCA(organization="someone else").client_context()
    error = await handshake_error(ca.issue([HOST]), context, send_ca=True)
    assert error.verify_code == SELF_SIGNED_CERT_IN_CHAIN
    assert error.verify_message in {
        "self-signed certificate in certificate chain",
        "self signed certificate in certificate chain",
    }


def test_write_ca_replaces_file_atomically(ca: SandboxCA, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "sandbox-ca.pem"
    target.write_bytes(b"stale")
    assert ca.write_ca(target) == target
    assert target.read_bytes() == ca.ca_pem
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandbox-ca.pem"]


async def test_write_ca_round_trip_trusted_by_default_context(
    ca: SandboxCA, tmp_path: pathlib.Path
) -> None:
    target = ca.write_ca(tmp_path / "sandbox-ca.pem")
    context = ssl.create_default_context(cafile=target)
    async with tls_server(ca.issue([HOST])) as port:
        assert await fetch_banner(port, context, HOST) == BANNER


# --- certificate contents -------------------------------------------------------------------


def test_ca_certificate_extensions(ca: SandboxCA) -> None:
    cert = x509.load_pem_x509_certificate(ca.ca_pem)
    assert cert.subject == cert.issuer
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical is True
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    now = utcnow()
    assert now - datetime.timedelta(days=2) < cert.not_valid_before_utc < now
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=3640)


def test_valid_leaf_extensions_and_chain(ca: SandboxCA) -> None:
    issued = ca.issue([HOST, "10.0.0.7"])
    cert = load(issued)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_pem)

    assert issued.variant == "valid"
    assert issued.hostnames == (HOST, "10.0.0.7")
    assert issued.chain_pem == issued.cert_pem + ca.ca_pem
    assert cert.issuer == ca_cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    cert.verify_directly_issued_by(ca_cert)

    now = utcnow()
    assert now - datetime.timedelta(days=2) < cert.not_valid_before_utc < now
    assert issued.not_after == cert.not_valid_after_utc
    assert issued.not_after.tzinfo is datetime.UTC
    assert datetime.timedelta(days=89) < issued.not_after - now <= datetime.timedelta(days=90)


def test_private_key_is_unencrypted_pkcs8_matching_the_leaf(ca: SandboxCA) -> None:
    issued = ca.issue([HOST])
    assert issued.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == load(issued).public_key()


@pytest.mark.parametrize(
    ("variant", "starts_in_days", "ends_in_days"),
    [("expired", -100, -10), ("not_yet_valid", 10, 100), ("expiring_soon", -1, 7)],
)
def test_validity_windows(
    ca: SandboxCA, variant: CertVariant, starts_in_days: int, ends_in_days: int
) -> None:
    issued = ca.issue([HOST], variant=variant)
    cert = load(issued)
    now = utcnow()
    slack = datetime.timedelta(minutes=1)
    starts = now + datetime.timedelta(days=starts_in_days)
    ends = now + datetime.timedelta(days=ends_in_days)
    assert abs(cert.not_valid_before_utc - starts) < slack
    assert abs(cert.not_valid_after_utc - ends) < slack
    assert issued.not_after == cert.not_valid_after_utc


def test_self_signed_leaf_is_its_own_issuer(ca: SandboxCA) -> None:
    issued = ca.issue([HOST], variant="self_signed")
    cert = load(issued)
    assert cert.issuer == cert.subject
    assert issued.chain_pem == issued.cert_pem
    assert issued.hostnames == (HOST,)
    cert.verify_directly_issued_by(cert)
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_pem))


def test_wrong_host_records_the_wrong_name(ca: SandboxCA) -> None:
    issued = ca.issue([HOST], variant="wrong_host")
    san = load(issued).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert issued.hostnames == (WRONG_HOSTNAME,) == ("wrong-host.invalid",)
    assert san.get_values_for_type(x509.DNSName) == ["wrong-host.invalid"]
    assert issued.chain_pem == issued.cert_pem + ca.ca_pem


def test_repr_does_not_leak_key_material(ca: SandboxCA) -> None:
    issued = ca.issue([HOST])
    assert "PRIVATE KEY" not in repr(issued)
    assert repr(issued).startswith("IssuedCert(variant='valid', hostnames=('mx.sandbox.test',)")


def test_issue_rejects_bad_arguments(ca: SandboxCA) -> None:
    with pytest.raises(TypeError):
        ca.issue(HOST)
    with pytest.raises(ValueError, match="at least one hostname"):
        ca.issue([])
    with pytest.raises(ValueError, match="unknown certificate variant"):
        ca.issue([HOST], variant="revoked")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expiring_in_days"):
        ca.issue([HOST], variant="expiring_soon", expiring_in_days=0)


# --- contexts -------------------------------------------------------------------------------


def test_server_context_settings_and_no_leftover_files(
    ca: SandboxCA, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", os.fspath(tmp_path))
    context = ca.issue([HOST]).server_context()
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    assert list(tmp_path.iterdir()) == []


def test_client_context_trusts_only_the_sandbox_ca(ca: SandboxCA) -> None:
    context = ca.client_context()
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    trusted = context.get_ca_certs(binary_form=True)
    assert trusted == [
        x509.load_pem_x509_certificate(ca.ca_pem).public_bytes(serialization.Encoding.DER)
    ]


def test_every_variant_is_issued_and_labelled(ca: SandboxCA) -> None:
    assert CERT_VARIANTS == (
        "valid",
        "expired",
        "self_signed",
        "wrong_host",
        "expiring_soon",
        "not_yet_valid",
    )
    assert [ca.issue([HOST], variant=v).variant for v in CERT_VARIANTS] == list(CERT_VARIANTS)
