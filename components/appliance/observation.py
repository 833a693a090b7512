"""What a cluster serves right now, and whether its root CA may be trusted.

The program observes every cluster while it runs (like a data source), so `pulumi preview`
shows the exact fingerprints each load balancer will trust, including a root CA regenerated
since the last `up`, without `--refresh`. The dynamic providers observe again when they
apply, and refuse to go on if the appliance changed in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from components import pki
from components.appliance.client import NodeAddress, ServedNode, observe_node

__all__ = [
    "ClusterObservation",
    "TrustDecisionError",
    "decide_trust",
    "needs_certificate",
    "observe_cluster",
    "oldest_first",
]


class TrustDecisionError(ValueError):
    """The cluster's root CA must not be trusted as it is; str() is an operator sentence."""


@dataclass(frozen=True)
class ClusterObservation:
    """Every node's published root CA and served certificate, with the trust decision made."""

    cluster: str
    nodes: tuple[ServedNode, ...]
    root_cas: tuple[x509.Certificate, ...]  # distinct, in node order: >1 only mid-rotation

    @property
    def root_ca_sha256s(self) -> list[str]:
        return [pki.sha256_fingerprint(root) for root in self.root_cas]

    @property
    def root_ca_bundle_pem(self) -> str:
        return pki.bundle_pem(self.root_cas)

    def served_sha256s(self) -> dict[str, str]:
        return {node.fqdn: node.served_sha256 for node in self.nodes}

    def node_root_ca_sha256s(self) -> dict[str, str]:
        return {node.fqdn: node.root_ca_sha256 for node in self.nodes}

    def nodes_needing_certificate(
        self, common_name: str, required_names: Sequence[str]
    ) -> list[str]:
        """FQDNs of the nodes whose served certificate must be replaced: it does not verify
        (expired, wrong issuer, wrong name), or lacks the CN or a required SAN."""
        return [
            node.fqdn for node in self.nodes if needs_certificate(node, common_name, required_names)
        ]


def needs_certificate(node: ServedNode, common_name: str, required_names: Sequence[str]) -> bool:
    if node.problem is not None:
        return True
    try:
        pki.check_server_names(node.served_certificate, common_name, required_names, node.fqdn)
    except pki.CertificateError:
        return True
    return False


def observe_cluster(
    cluster: str,
    nodes: Sequence[NodeAddress],
    *,
    now: datetime | None = None,
    timeout: float | None = None,
) -> ClusterObservation:
    """Observe every node, in parallel; each served certificate is checked against the
    root CA its node publishes, and each distinct root CA must be a sound CA."""
    with ThreadPoolExecutor(max_workers=min(8, len(nodes)) or 1) as pool:
        served = tuple(pool.map(lambda node: observe_node(node, timeout), nodes))
    root_cas: dict[str, x509.Certificate] = {}
    for node in served:
        if node.root_ca_sha256 not in root_cas:
            pki.check_ca(node.root_ca, f"the root CA published by node {node.fqdn}", now)
            root_cas[node.root_ca_sha256] = node.root_ca
    return ClusterObservation(cluster=cluster, nodes=served, root_cas=tuple(root_cas.values()))


def decide_trust(
    observation: ClusterObservation,
    pins: Sequence[str],
    trust_on_first_use: bool,
    incoming_root_ca: x509.Certificate | None = None,
    now: datetime | None = None,
) -> tuple[x509.Certificate, ...]:
    """The root CAs the load balancers must trust; TrustDecisionError when they may not.

    With pins, every root CA a node publishes must be pinned; several pinned root CAs are
    the rotation case, and the load balancers then trust all of them until every node
    serves from the new one. Without pins (trust on first use, explicitly configured), all
    nodes must publish the same root CA. `incoming_root_ca` (from the stack config) is the
    root CA a rotation moves to: it is trusted ahead of time, so that no node ever serves
    a certificate its load balancers do not trust yet.
    """
    cluster, served = observation.cluster, observation.nodes
    foreign = [node for node in served if not node.issued_by_root]
    if foreign:
        raise TrustDecisionError(
            f"cluster {cluster}: "
            + "; ".join(
                f"node {node.fqdn} serves a certificate that the root CA it publishes "
                f"({node.root_ca_sha256}) did not issue"
                for node in foreign
            )
            + ". A custom certificate from another CA? This program manages the certificates "
            "the appliance issues from its own root CA, and will not trust a root CA that "
            "does not back the node; install the appliance-generated certificate, or take "
            "this cluster out of the stack."
        )
    incoming_sha256 = ""
    if incoming_root_ca is not None:
        source = f"cluster {cluster}: the incoming root CA (config key incoming_root_ca)"
        pki.check_ca(incoming_root_ca, source, now)
        incoming_sha256 = pki.sha256_fingerprint(incoming_root_ca)
        if pins and incoming_sha256 not in pins:
            raise TrustDecisionError(
                f"cluster {cluster}: the incoming root CA {incoming_sha256} (config key "
                "incoming_root_ca) is not pinned; add its fingerprint to root_ca_sha256."
            )
    current = [
        root for root in observation.root_cas if pki.sha256_fingerprint(root) != incoming_sha256
    ]
    by_node = "; ".join(f"{node.fqdn} serves {node.root_ca_sha256}" for node in served)
    if pins:
        unpinned = [node for node in served if node.root_ca_sha256 not in pins]
        if unpinned:
            raise TrustDecisionError(
                f"cluster {cluster}: root CA pin mismatch: "
                + "; ".join(f"node {n.fqdn} serves {n.root_ca_sha256}" for n in unpinned)
                + f"; the stack pins {', '.join(pins)} (config key root_ca_sha256). "
                "Nothing was changed on any load balancer. If the appliance root CA was "
                "regenerated on purpose, add the new fingerprint to root_ca_sha256."
            )
    elif not trust_on_first_use:
        raise TrustDecisionError(
            f"cluster {cluster}: no root CA pin and trust_on_first_use is not set; the "
            f"nodes publish: {by_node}. Pin it with root_ca_sha256 after checking it on the "
            "appliance console, or set trust_on_first_use: true."
        )
    elif len(current) > 1:
        raise TrustDecisionError(
            f"cluster {cluster}: the nodes publish different root CAs ({by_node}). Without a "
            "pin this program will not choose between them; if this is a root CA rotation, "
            "pin both fingerprints with root_ca_sha256 (a list) to approve the overlap."
        )
    roots = list(observation.root_cas)
    if incoming_root_ca is not None and len(current) == len(roots):
        roots.append(incoming_root_ca)
    return oldest_first(roots)


def oldest_first(roots: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Root CAs in one stable order, whatever order the nodes answered in: the same roots
    must always make the same bundle, or every up would rewrite every trust store."""
    return tuple(sorted(roots, key=lambda r: (r.not_valid_before_utc, pki.sha256_fingerprint(r))))
