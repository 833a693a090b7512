"""Dynamic resource: the root CA a cluster's stack owns (`ssh.issuing_ca: generated`).

`create` generates the CA in this process; it exists nowhere else (no node, no network), so
its private key lives only in the stack state, as a secret output (`additional_secret_outputs`:
the engine encrypts it there). The load balancers trust its certificate, and the ssh route
issues every node certificate from it (components/access_trust.py wires both).

How the key travels, and why it stays secret (pulumi/pulumi, pkg/resource/plugin/
provider_plugin.go): the Python dynamic provider host answers Configure with
`acceptSecrets: false` (sdk/python/lib/pulumi/dynamic/__main__.py), so the engine strips the
secret wrapper before every call (`KeepSecrets: protocol.acceptSecrets`) and, after Create,
Update and Read, marks secret again every output named like a secret input or prior state
value (`annotateSecrets`). This resource's `private_key_pem` is secret by
`additional_secret_outputs`, whatever its provider returns; a consumer gets it as a separate
secret input (ApplianceCertificate `issuing_ca_key_pem`) and never returns it as an output.

Its certificate is not a plain value when the program runs, not even on later runs: trust
decisions that involve it are made where it is known (`.apply` over `certificate_pem`, and
the providers that get it as an input).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    UpdateResult,
)

from components import pki
from components.dynamic import TrustProvider, is_unknown

__all__ = [
    "PRODUCER",
    "StackIssuingCA",
    "StackIssuingCAProvider",
    "named_like_a_stack_ca",
    "stack_ca_subject",
]

PRODUCER = "ws1-access-lb-trust"
# NIST SP 800-57 Part 1 puts RSA 3072 at 128-bit security, acceptable beyond 2030; ten years
# is the lifetime of a root the operator does not want to rotate often (rotation before expiry
# is not built: README, "Certificate routes").
_KEY_SIZE = 3072
_VALIDITY = datetime.timedelta(days=3652)
_COMMON_NAME_LIMIT = 64  # RFC 5280, ub-common-name


def stack_ca_subject(service_fqdn: str) -> x509.Name:
    """The subject of the stack CA for a cluster: the program knows it while it runs (the
    certificate it does not), so it tells which published root CAs may be the stack's own.
    That is only a first sort: a root is the stack's own when its fingerprint is.

    A service FQDN too long for the CN whole is cut, and the first 8 hex digits of its
    SHA-256 are kept, so two long FQDNs that share a prefix still get different subjects."""
    common_name = f"{service_fqdn} {PRODUCER} CA"
    if len(common_name) > _COMMON_NAME_LIMIT:
        digest = hashlib.sha256(service_fqdn.encode()).hexdigest()[:8]
        head = f"{PRODUCER} CA {digest} "
        common_name = head + service_fqdn[: _COMMON_NAME_LIMIT - len(head)]
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, PRODUCER),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def named_like_a_stack_ca(name: x509.Name) -> bool:
    """True for a subject this program gives the CAs it generates (organization PRODUCER),
    whatever service FQDN it was made for: e.g. the CA of a cluster's earlier service_fqdn.
    A hint for the operator's message only, never a reason to trust."""
    organizations = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(attribute.value == PRODUCER for attribute in organizations)


def _impostor_refusal(cluster: str, claims: dict[str, str], own: str) -> str:
    # observation.py imports this module (named_like_a_stack_ca): imported late, no cycle.
    from components.appliance.observation import impostor_refusal

    return impostor_refusal(cluster, claims, own)


def _generate(service_fqdn: str) -> tuple[x509.Certificate, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)
    subject = stack_ca_subject(service_fqdn)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A few minutes back: a load balancer whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        # pathlen 0: it issues node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate, key_pem


class StackIssuingCAProvider(TrustProvider):
    """Generates once; afterwards the state IS the CA, so there is nothing to compare with,
    read back or remove anywhere else."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        name = news.get("service_fqdn")
        if not is_unknown(name) and not name:
            failures.append(CheckFailure("service_fqdn", "the cluster's service FQDN is required."))
        claims = news.get("published_claims")
        if not olds and claims and not is_unknown(claims):
            # About to be created (no prior inputs: the engine's Check for a new resource),
            # while nodes already publish an unpinned root CA with this CA's subject (a lost
            # state, say). A CA that does not exist yet cannot be theirs: ApplianceRootCA would
            # refuse it anyway, but only after this create; refused here, no CA is made.
            refusal = _impostor_refusal(
                str(news.get("cluster")),
                {str(fqdn): str(sha256) for fqdn, sha256 in claims.items()},
                "not generated yet: a new one would be made in this run",
            )
            failures.append(CheckFailure("published_claims", refusal))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        certificate, key_pem = _generate(str(props["service_fqdn"]))
        # No clock value besides the certificate itself: a saved plan compares outputs.
        return CreateResult(
            id_=str(props["cluster"]),
            outs={
                "cluster": props["cluster"],
                "service_fqdn": props["service_fqdn"],
                "certificate_pem": pki.bundle_pem([certificate]),
                "sha256": pki.sha256_fingerprint(certificate),
                "private_key_pem": key_pem,
            },
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new service FQDN is a new CA (its subject names the FQDN, and the program finds
        the stack's root CA among what the nodes publish by that subject). Anything else,
        the cluster's name (a label) included, keeps the CA: a new one would move every node."""
        fqdn = news.get("service_fqdn")
        replace = is_unknown(fqdn) or fqdn != olds.get("service_fqdn")
        return DiffResult(
            changes=replace,
            replaces=["service_fqdn"] if replace else [],
            delete_before_replace=False,
        )

    def update(self, _id: str, olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        # diff never asks for an update; should an engine call it, the CA stays as it is.
        return UpdateResult(outs=dict(olds))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # The CA exists only in the state: nothing outside it to refresh from. The key comes
        # back as it went in; the engine marks it secret again (annotateSecrets, module doc).
        # A `pulumi import` or `.get` passes no prior outputs (the SDK's dynamic host, Read,
        # falls back to the declared inputs), so it cannot adopt a CA: README, state loss.
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing to remove outside the state; the engine drops the key with the resource.
        return None


class StackIssuingCA(pulumi.dynamic.Resource, module="ws1", name="StackIssuingCA"):
    """A root CA generated by and kept in this stack; issues the cluster's node certificates."""

    certificate_pem: pulumi.Output[str]
    sha256: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        cluster: str,
        service_fqdn: str,
        published_claims: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "cluster": cluster,
            "service_fqdn": service_fqdn,
            # Node -> unpinned root CA it publishes under this CA's subject (the program's
            # stack_ca_claims): judged by `check` only when the CA is about to be created;
            # `diff` ignores it, so it never changes an existing CA.
            "published_claims": published_claims or {},
            # Output-only: known once generated (unknown in the preview that creates it).
            "certificate_pem": None,
            "sha256": None,
            "private_key_pem": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        super().__init__(
            StackIssuingCAProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret)
        )
