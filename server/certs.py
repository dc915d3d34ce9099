"""Development certificates for mutual TLS: one CA, one server pair, client pairs.

`lez-server certs --out DIR` writes `ca.pem` (+ `ca.key`), `server.pem`/`server.key` (valid for
localhost, 127.0.0.1 and ::1 plus any extra host names) and one `<name>.pem`/`<name>.key` per
client, whose Common Name is the identity to list in the clients file. ECDSA P-256 keys,
private keys written with mode 0600. For development and tests only: production certificates
come from the organisations' PKI (the seeds' PKIoverheid/OIN model).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS: Final = 365
DEFAULT_CLIENTS: Final = ("dev-operator", "gent-enforcement", "public-checker")


@dataclass(frozen=True, slots=True)
class Pair:
    """A certificate and its private key, PEM encoded."""

    cert: bytes
    key: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LEZ development"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    cn: str = "LEZ development CA",
) -> tuple[Pair, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)), key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
    hosts: Sequence[str] = (),
) -> Pair:
    """A leaf certificate signed by the CA, for a server (with SANs) or a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        sans: list[x509.GeneralName] = []
        for h in ("localhost", "127.0.0.1", "::1", *hosts):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_dev_certs(
    out: Path, *, clients: Sequence[str] = DEFAULT_CLIENTS, hosts: Sequence[str] = ()
) -> list[Path]:
    """Write a CA, a server pair and client pairs into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_cert = make_ca()
    pairs = {"ca": ca, "server": issue(ca_key, ca_cert, "lez-server", server=True, hosts=hosts)}
    for name in clients:
        pairs[name] = issue(ca_key, ca_cert, name, server=False)
    written: list[Path] = []
    for name, pair in pairs.items():
        _write(out / f"{name}.pem", pair.cert, private=False)
        _write(out / f"{name}.key", pair.key, private=True)
        written += [out / f"{name}.pem", out / f"{name}.key"]
    return written
