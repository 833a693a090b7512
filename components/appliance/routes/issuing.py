"""What the routes that install a certificate from the operator's CA share: reading that CA
and its key, issuing a node certificate, and waiting until a node serves it."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import pki
from components.appliance.client import ApplianceError, NodeAddress, ServedNode, observe_node
from components.appliance.session import heartbeat_ok

__all__ = ["issue_node_certificate", "load_issuing_ca", "wait_until_served"]

# A private CA may issue for longer, but browsers cap public ones at 398 days; staying under
# that keeps the node certificate acceptable wherever it is looked at.
_NODE_CERTIFICATE_DAYS = 397


def load_issuing_ca(
    certificate_pem: str, key_pem: str, key_setting: str, key_place: str = ""
) -> tuple[x509.Certificate, Any]:
    """The issuing CA and its private key; ApplianceError (never quoting the key) when the
    key is not readable or is not that CA's. The key is in the secret config key named by
    `key_setting`, or (the stack's own CA) in `key_place`, which then names it instead."""
    certificate = pki.load_certificate(certificate_pem, "issuing_ca")
    place = key_place or f"the secret config key named by {key_setting}"
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        # Not the parser's message: it could quote what it read.
        raise ApplianceError(
            f"{place} does not hold an unencrypted PEM "
            "private key; expected the private key of issuing_ca."
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) or (
        key.public_key().public_bytes(serialization.Encoding.DER, public)
        != certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    ):
        raise ApplianceError(
            f"{place} holds a private key that is not the "
            f"key of issuing_ca ({pki.sha256_fingerprint(certificate)}); expected the RSA or EC "
            "key of that CA."
        )
    return certificate, key


def issue_node_certificate(
    ca: x509.Certificate, ca_key: Any, common_name: str, sans: Sequence[str]
) -> tuple[x509.Certificate, str]:
    """A node certificate (CN = service FQDN, SANs as the seed asks) and its key's PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(days=_NODE_CERTIFICATE_DAYS), ca.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in sans]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    certificate = builder.sign(ca_key, hashes.SHA256())
    # PKCS#8: what OpenSSL writes by default; the docs name PKCS#1 as accepted only from 20.10.
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate, key_pem


def wait_until_served(
    node: NodeAddress, certificate: x509.Certificate, ca_pem: str, seconds: float, setting: str
) -> ServedNode:
    """After an install the appliance restarts its service: wait (bounded) until the node
    serves `certificate` on its service port and its heartbeat answers "ok" through it."""
    wanted = pki.sha256_fingerprint(certificate)
    deadline = time.monotonic() + seconds
    pause, seen = 0.1, "nothing (the node did not answer)"
    while True:
        try:
            after = observe_node(node)
            seen = f"certificate {after.served_sha256}"
            if after.served_sha256 == wanted and heartbeat_ok(node, ca_pem, wanted):
                return after
            if after.served_sha256 == wanted:
                seen += ", but the heartbeat does not answer ok yet"
        except ApplianceError:
            pass
        if time.monotonic() + pause > deadline:
            raise ApplianceError(
                f"node {node.fqdn}: the certificate {wanted} was installed, but within "
                f"{seconds:g} s ({setting}) the node served {seen}. Stopped before the next "
                "node; check the node's service, then run `pulumi up` again."
            )
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
