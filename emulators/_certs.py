"""X.509 material for the emulators: appliance root CAs and the server certificates they issue.

Kept apart from `components/pki.py` on purpose: the emulator must not share code with the
product it is used to test, or a bug in one would hide the same bug in the other.
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# "rsa1024" exists only so that tests can present a key the product must refuse.
KEY_TYPES: tuple[str, ...] = ("rsa1024", "rsa2048", "rsa3072", "rsa4096", "ecp256", "ecp384")

ROOT_CA_VALIDITY = datetime.timedelta(days=3652)
SERVER_CERTIFICATE_VALIDITY = datetime.timedelta(days=730)
# Backdated so that a client whose clock runs a little behind still accepts a fresh certificate.
CLOCK_SKEW = datetime.timedelta(hours=1)

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def new_private_key(key_type: str) -> PrivateKey:
    """A fresh private key of the named type (see KEY_TYPES)."""
    if key_type.startswith("rsa") and key_type in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    if key_type == "ecp256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecp384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def is_dns_name(name: str) -> bool:
    """True for an ASCII DNS host name, optionally with a leading '*.' wildcard label."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return all(_DNS_LABEL.match(label) for label in labels)


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sha256_fingerprint(certificate: x509.Certificate) -> str:
    """Upper-case, colon-separated SHA-256 of the DER certificate, as consoles display it."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def key_size(key: PrivateKey) -> int:
    return key.key_size if isinstance(key, rsa.RSAPrivateKey) else key.curve.key_size


@dataclass(frozen=True)
class ServerCertificate:
    """A leaf certificate with its key, as an appliance node would keep them on disk."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def pem(self) -> str:
        return to_pem(self.certificate)

    @property
    def common_name(self) -> str:
        attributes = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attributes[0].value) if attributes else ""

    @property
    def dns_names(self) -> list[str]:
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return list(san.value.get_values_for_type(x509.DNSName))


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed appliance root CA ("vmware Identity Manager Root CA ...")."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @classmethod
    def create(
        cls,
        key_type: str = "rsa2048",
        validity: datetime.timedelta = ROOT_CA_VALIDITY,
        subject: x509.Name | None = None,
    ) -> CertificateAuthority:
        """`subject`: another CA's name, copied (tests of a CA that only claims a name)."""
        key = new_private_key(key_type)
        # The appliance names its root after the product plus a random suffix, so two
        # appliances never produce the same subject; the suffix mimics that.
        name = subject or x509.Name(
            [
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"vmware Identity Manager Root CA {secrets.token_hex(5)}"
                ),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VMware"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @property
    def pem(self) -> str:
        return to_pem(self.certificate)

    @property
    def sha256(self) -> str:
        return sha256_fingerprint(self.certificate)

    def issue(
        self,
        common_name: str,
        dns_names: Sequence[str],
        *,
        key_type: str = "rsa2048",
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> ServerCertificate:
        """A server certificate for `dns_names` (no SAN extension when the list is empty)."""
        key = new_private_key(key_type)
        now = datetime.datetime.now(datetime.UTC)
        not_before = not_before or now - CLOCK_SKEW
        not_after = not_after or now + SERVER_CERTIFICATE_VALIDITY
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
                critical=False,
            )
        return ServerCertificate(builder.sign(self.private_key, hashes.SHA256()), key)
