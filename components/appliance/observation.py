"""What a cluster serves right now, and whether its root CA may be trusted.

The program observes every cluster while it runs (like a data source), so `pulumi preview`
shows the exact fingerprints each load balancer will trust, including a root CA regenerated
since the last `up`, without `--refresh`. The dynamic providers observe again when they
apply, and refuse to go on if the appliance changed in between.

Observing is waiting on the network, so every node of every cluster is observed at once in
one bounded pool (`observe_nodes`); what each cluster serves is then judged on its own
(`cluster_observation`, `decide_trust`). Read-only callers (an audit) use the same two steps.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components import pki
from components.appliance.client import ApplianceError, NodeAddress, ServedNode, observe_node

__all__ = [
    "MAX_PARALLEL_OBSERVATIONS",
    "ClusterObservation",
    "NodeResult",
    "TrustDecisionError",
    "cluster_observation",
    "decide_trust",
    "needs_certificate",
    "observe_cluster",
    "observe_nodes",
    "oldest_first",
]

# Connections open at once. Each is one small request that mostly waits on the network, so
# the bound is in the tens: a 30-node stack is observed in about one round trip.
MAX_PARALLEL_OBSERVATIONS = 32

# What observing one node gave: what it serves, or why it could not be observed (no
# answer, or an answer that is not a certificate).
NodeResult = ServedNode | ApplianceError | pki.CertificateError


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
        self,
        common_name: str,
        required_names: Sequence[str],
        issuer: x509.Certificate | None = None,
    ) -> list[str]:
        """FQDNs of the nodes whose served certificate must be replaced: it does not verify
        (expired, wrong issuer, wrong name), or lacks the CN or a required SAN, or (when the
        route issues from a CA of its own: `issuer`) that CA did not issue it."""
        return [
            node.fqdn
            for node in self.nodes
            if needs_certificate(node, common_name, required_names, issuer)
        ]


def needs_certificate(
    node: ServedNode,
    common_name: str,
    required_names: Sequence[str],
    issuer: x509.Certificate | None = None,
) -> bool:
    if node.problem is not None:
        return True
    if issuer is not None:
        try:
            node.served_certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return True
    try:
        pki.check_server_names(node.served_certificate, common_name, required_names, node.fqdn)
    except pki.CertificateError:
        return True
    return False


def observe_nodes(
    nodes: Sequence[NodeAddress], timeout: float | None = None
) -> dict[NodeAddress, NodeResult]:
    """Observe every node at once (at most MAX_PARALLEL_OBSERVATIONS connections), whatever
    cluster it belongs to; a node that cannot be observed does not stop the others."""

    # Workers start observing together, once every worker thread runs: starting a thread
    # waits for the GIL, and workers already busy with handshakes would hold it, spreading
    # the connections over tens of milliseconds.
    all_started = threading.Event()

    def observe(node: NodeAddress) -> NodeResult:
        all_started.wait()
        try:
            return observe_node(node, timeout)
        except (ApplianceError, pki.CertificateError) as problem:
            return problem

    distinct = list(dict.fromkeys(nodes))
    if not distinct:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_OBSERVATIONS, len(distinct))) as pool:
        try:
            futures = [pool.submit(observe, node) for node in distinct]
        finally:
            all_started.set()  # also when a thread could not start: never leave one waiting
        return {node: future.result() for node, future in zip(distinct, futures, strict=True)}


def cluster_observation(
    cluster: str,
    nodes: Sequence[NodeAddress],
    results: Mapping[NodeAddress, NodeResult],
    now: datetime | None = None,
) -> ClusterObservation:
    """One cluster's observation from `observe_nodes` results: each served certificate was
    checked against the root CA its node publishes; each distinct root CA must be a sound CA.
    Raises the first (in node order) node's failure, or pki.CertificateError for a bad CA."""
    served: list[ServedNode] = []
    for node in nodes:
        result = results[node]
        if not isinstance(result, ServedNode):
            raise result
        served.append(result)
    root_cas: dict[str, x509.Certificate] = {}
    for node_served in served:
        if node_served.root_ca_sha256 not in root_cas:
            source = f"the root CA published by node {node_served.fqdn}"
            pki.check_ca(node_served.root_ca, source, now)
            root_cas[node_served.root_ca_sha256] = node_served.root_ca
    return ClusterObservation(
        cluster=cluster, nodes=tuple(served), root_cas=tuple(root_cas.values())
    )


def observe_cluster(
    cluster: str,
    nodes: Sequence[NodeAddress],
    *,
    now: datetime | None = None,
    timeout: float | None = None,
) -> ClusterObservation:
    """Observe one cluster's nodes at once and judge them (see cluster_observation)."""
    return cluster_observation(cluster, nodes, observe_nodes(nodes, timeout), now)


def decide_trust(
    observation: ClusterObservation,
    pins: Sequence[str],
    trust_on_first_use: bool,
    incoming_root_ca: x509.Certificate | None = None,
    now: datetime | None = None,
    incoming_key: str = "incoming_root_ca",
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
        source = f"cluster {cluster}: the incoming root CA (config key {incoming_key})"
        pki.check_ca(incoming_root_ca, source, now)
        incoming_sha256 = pki.sha256_fingerprint(incoming_root_ca)
        if pins and incoming_sha256 not in pins:
            raise TrustDecisionError(
                f"cluster {cluster}: the incoming root CA {incoming_sha256} (config key "
                f"{incoming_key}) is not pinned; add its fingerprint to root_ca_sha256."
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
