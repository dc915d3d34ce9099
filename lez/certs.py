"""Development certificates for mutual TLS: a CA, server pairs and client pairs, as PEM files.

The one place that makes certificates for development and tests. Both the access service
(`lez-server certs`, `server/certs.py`) and the local DIV stand-in (`lez-div certs`) write their
sets with it: ECDSA P-256 keys, a self-signed CA, a server certificate valid for localhost,
127.0.0.1 and ::1 (plus any extra host names) and client certificates whose Common Name is the
caller's identity. Private keys are written with mode 0600. Production certificates come from
the organisations' PKI, never from here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS: Final = 365
ORGANISATION: Final = "LEZ development"
LOCAL_HOSTS: Final = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class Pair:
    """A certificate and its private key, PEM encoded."""

    cert: bytes
    key: bytes


def _name(cn: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
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
    cn: str = "LEZ development CA", *, organisation: str = ORGANISATION
) -> tuple[Pair, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA: its PEM pair, its key and its certificate (to issue leaves with)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, organisation))
        .issuer_name(_name(cn, organisation))
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
    organisation: str = ORGANISATION,
) -> Pair:
    """A leaf certificate signed by the CA, for a server (SANs: `LOCAL_HOSTS` + `hosts`) or a
    client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, organisation))
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
        for h in (*LOCAL_HOSTS, *hosts):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write one PEM file; a private key gets mode 0600 from its creation on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_pairs(out: Path, pairs: Mapping[str, Pair]) -> list[Path]:
    """Write `<name>.pem` and `<name>.key` for each pair into `out`; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, pair in pairs.items():
        write_pem(out / f"{name}.pem", pair.cert, private=False)
        write_pem(out / f"{name}.key", pair.key, private=True)
        written += [out / f"{name}.pem", out / f"{name}.key"]
    return written


def write_dev_set(
    out: Path,
    *,
    server_cn: str,
    clients: Sequence[str],
    hosts: Sequence[str] = (),
    ca_cn: str = "LEZ development CA",
    organisation: str = ORGANISATION,
) -> list[Path]:
    """Write `ca`, `server` and one pair per client name into `out`; returns the files."""
    ca, ca_key, ca_cert = make_ca(ca_cn, organisation=organisation)
    pairs = {
        "ca": ca,
        "server": issue(
            ca_key, ca_cert, server_cn, server=True, hosts=hosts, organisation=organisation
        ),
    }
    for name in clients:
        pairs[name] = issue(ca_key, ca_cert, name, server=False, organisation=organisation)
    return write_pairs(out, pairs)
