"""`maildiag smtp` starts fast: it must not load what it does not need (no timing here).

The command is the platform's "Test connection" and should answer about as fast as swaks
(benchmarks/smtp_vs_swaks.py measures that). Most of its time used to go to importing
pydantic and the account file's models, aiosmtplib and cryptography; these tests run the
command in a fresh interpreter and check that none of them is loaded. They also hold the
certificate read from the ssl module's decoding (which spares cryptography) to cryptography's
reading of the same certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from diagnostics.cli import main
from diagnostics.parse.tlscert import certificate_from_decoded, parse_certificate
from diagnostics.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[1]

# Top-level packages the smtp command must leave alone, and the modules of our own that
# would bring them in.
HEAVY = {
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "cryptography",
    "aiosmtplib",
    "aiosmtpd",
    "pandas",
    "numpy",
    "matplotlib",
    "rich",
    "jinja2",
    "dkim",
    "papermill",
    "nbformat",
    "playwright",
}
HEAVY_OURS = {
    "diagnostics.config",
    "diagnostics.audit",
    "diagnostics.sandbox",
}

# Runs the command line as `maildiag` does, then says what the interpreter has loaded.
SCRIPT = """
import json, sys
from diagnostics.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def heavy_modules(modules: list[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if name.split(".")[0] in HEAVY
        or any(name == ours or name.startswith(ours + ".") for ours in HEAVY_OURS)
    )


def last_line(stderr: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stderr.strip().splitlines()[-1])
    return document


def test_wrong_options_are_refused_without_the_models() -> None:
    done = subprocess.run(
        [
            sys.executable, "-c", SCRIPT,
            "smtp", "--host", "smtp..acme.example", "--port", "0", "--encryption", "starttls",
            "--account", "jobs@acme.example", "--password-env", "STARTUP_TEST_PASSWORD",
        ],
        env={**os.environ, "STARTUP_TEST_PASSWORD": "startup-test-secret"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )  # fmt: skip
    loaded = last_line(done.stderr)
    assert loaded["code"] == 2
    assert "command line: key '--host': expected a host name" in done.stderr
    assert "command line: key '--port': expected a port number from 1 to 65535" in done.stderr
    assert heavy_modules(loaded["modules"]) == []


def test_the_trust_store_loaded_meanwhile_keeps_its_errors_where_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust store loads in a thread while the options are checked: wrong options still
    come first (and alone), and a missing --ca-file fails the command as a usage error."""
    monkeypatch.setenv("STARTUP_TEST_PASSWORD", "startup-test-secret")
    options = [
        "smtp", "--port", "587", "--encryption", "starttls", "--account", "jobs@acme.example",
        "--password-env", "STARTUP_TEST_PASSWORD", "--ca-file", str(tmp_path / "missing.pem"),
        "--resolve", "smtp.acme.example:127.0.0.1", "--dns-server", "127.0.0.1:9",
    ]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert main([*options, "--host", "smtp..acme.example"], out=out, err=err) == 2
    assert err.getvalue() == (
        "command line: key '--host': expected a host name like smtp.company.example "
        "(letters, digits, - and .); found 'smtp..acme.example'\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert main([*options, "--host", "smtp.acme.example"], out=out, err=err) == 2
    assert err.getvalue() == (
        f"maildiag: --ca-file {tmp_path / 'missing.pem'}: No such file or directory\n"
    )


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
async def test_a_whole_session_runs_without_the_heavy_modules(
    world: Sandbox, as_json: bool
) -> None:
    described = world.describe()
    port = next(s["listen"] for s in described["servers"] if s["world"].endswith(":587"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT,
        "smtp", "--host", "smtp.acme.example", "--resolve", "smtp.acme.example:127.0.0.1",
        "--port", port.rsplit(":", 1)[1], "--encryption", "starttls",
        "--account", "jobs@acme.example", "--password-env", "ACME_SMTP_PASSWORD",
        "--ca-file", described["ca_file"], "--source", described["egress_sources"]["3.121.59.239"],
        "--dns-server", described["dns"], *(["--json"] if as_json else []),
        env={**os.environ, "ACME_SMTP_PASSWORD": world.environ["ACME_SMTP_PASSWORD"]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    loaded = last_line(err.decode())
    assert loaded["code"] == 0, err.decode()
    if as_json:
        report = json.loads(out)
        assert [(f["check"], f["status"]) for f in report["findings"]] == [
            ("smtp.connect", "pass"),
            ("smtp.tls", "pass"),
            ("smtp.auth", "pass"),
            ("smtp.sender", "pass"),
            ("smtp.provider", "pass"),
            ("smtp.settings_probe", "pass"),
        ]
        # The certificate was read (from the ssl module's decoding, not by cryptography).
        tls = next(f for f in report["findings"] if f["check"] == "smtp.tls")
        assert "certificate for smtp.acme.example issued by" in tls["detail"]
    else:
        assert out.decode().startswith("verdict: pass (6 pass)")
    assert heavy_modules(loaded["modules"]) == []


# -- the certificate, read from the ssl module's decoding -------------------------------------

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    alt_names: list[x509.GeneralName] | None = None,
    ca: bool = False,
    not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(not_after or NOW + datetime.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if alt_names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _handshake(
    leaf: x509.Certificate, key: ec.EllipticCurvePrivateKey, trusted: bytes, tmp_path: Path
) -> tuple[dict[str, Any], bytes]:
    """A verified TLS handshake in memory: what the client's ssl module says of the leaf."""
    certfile, keyfile = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    certfile.write_bytes(_pem(leaf))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certfile, keyfile)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False  # verified against `trusted`; names are not the point
    client_context.load_verify_locations(cadata=trusted.decode())
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            break
    assert all(done.values())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return client.getpeercert(), der


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name((NameOID.COMMON_NAME, "Startup Test CA"), (NameOID.ORGANIZATION_NAME, "maildiag"))
    return _certificate(name, name, key, key, ca=True), key


def _subject_cases() -> list[tuple[str, x509.Name, list[x509.GeneralName] | None]]:
    dns = [x509.DNSName("smtp.acme.example"), x509.DNSName("mail.acme.example")]
    addresses = [
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::25")),
    ]
    return [
        ("names and addresses", _name((NameOID.COMMON_NAME, "smtp.acme.example")), dns + addresses),
        ("addresses before names", _name((NameOID.COMMON_NAME, "x")), addresses + dns),
        ("no alternative names", _name((NameOID.COMMON_NAME, "smtp.acme.example")), None),
        (
            "two common names",
            _name((NameOID.COMMON_NAME, "first.example"), (NameOID.COMMON_NAME, "second.example")),
            dns,
        ),
        ("non-ASCII common name", _name((NameOID.COMMON_NAME, "Müller Mail Straße")), dns),
        ("no common name", _name((NameOID.ORGANIZATION_NAME, "Acme")), dns),
    ]


@pytest.mark.parametrize(("case", "subject", "alt_names"), _subject_cases())
def test_the_decoded_certificate_reads_as_cryptography_reads_it(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    tmp_path: Path,
    case: str,
    subject: x509.Name,
    alt_names: list[x509.GeneralName] | None,
) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(subject, ca_cert.subject, key, ca_key, alt_names=alt_names)
    decoded, der = _handshake(leaf, key, _pem(ca_cert), tmp_path)
    assert parse_certificate(der, decoded) == parse_certificate(der)
    # Without a common name the decoding does not say all: cryptography reads the certificate.
    fast = certificate_from_decoded(decoded)
    assert (fast is None) == (case == "no common name")
    if fast is not None:
        assert fast == parse_certificate(der)


def test_a_self_signed_certificate_reads_alike(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name((NameOID.COMMON_NAME, "smtp.acme.example"), (NameOID.ORGANIZATION_NAME, "Acme"))
    leaf = _certificate(
        name,
        name,
        key,
        key,
        alt_names=[x509.DNSName("smtp.acme.example")],
        not_after=datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),
    )
    decoded, der = _handshake(leaf, key, _pem(leaf), tmp_path)
    fast = certificate_from_decoded(decoded)
    assert fast is not None
    assert fast == parse_certificate(der)
    assert fast.self_signed
    assert fast.not_after == datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def test_an_unverified_peer_is_read_by_cryptography() -> None:
    # getpeercert() is empty when the handshake did not verify: nothing to read from.
    assert certificate_from_decoded({}) is None
    assert certificate_from_decoded({"subject": "garbled"}) is None


def test_diagnose_starts_without_an_event_loop_yaml_or_tls(tmp_path: Path) -> None:
    # A folder of bounces is read with the compiled rule table: no PyYAML, no asyncio, no ssl.
    bounce = ROOT / "fixtures" / "bounces-corpus"
    sample = sorted(p for p in bounce.iterdir() if p.suffix == ".eml")[0]
    (tmp_path / sample.name).write_bytes(sample.read_bytes())
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "diagnose", "--json", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    loaded = last_line(done.stderr)
    assert loaded["code"] in (0, 1)
    assert heavy_modules(loaded["modules"]) == []
    assert [m for m in loaded["modules"] if m.split(".")[0] in {"yaml", "asyncio", "ssl"}] == []
