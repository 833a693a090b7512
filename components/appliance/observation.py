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
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components import pki
from components.appliance.client import ApplianceError, NodeAddress, ServedNode, observe_node
from components.appliance.stack_ca import named_like_a_stack_ca

__all__ = [
    "MAX_PARALLEL_OBSERVATIONS",
    "ClusterObservation",
    "NodeResult",
    "TrustDecisionError",
    "cluster_observation",
    "decide_trust",
    "impostor_refusal",
    "needs_certificate",
    "observe_cluster",
    "observe_nodes",
    "oldest_first",
    "stack_ca_claims",
    "with_stack_ca",
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

    def without(self, fqdns: Collection[str]) -> ClusterObservation:
        """The same observation without these nodes (and the root CAs only they publish)."""
        nodes = tuple(node for node in self.nodes if node.fqdn not in fqdns)
        kept = {node.root_ca_sha256 for node in nodes}
        roots = tuple(root for root in self.root_cas if pki.sha256_fingerprint(root) in kept)
        return ClusterObservation(cluster=self.cluster, nodes=nodes, root_cas=roots)

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


def stack_ca_claims(
    observation: ClusterObservation, subject: x509.Name, pins: Sequence[str]
) -> dict[str, str]:
    """Node FQDN -> fingerprint of the root CA it publishes, for every node whose root CA
    carries the stack CA's subject without being pinned: it is approved only if it IS the
    stack's CA (fingerprint equality, checked where that CA is known), never by its name."""
    return {
        node.fqdn: node.root_ca_sha256
        for node in observation.nodes
        if node.root_ca.subject == subject and node.root_ca_sha256 not in pins
    }


def with_stack_ca(
    roots: Sequence[x509.Certificate], stack_ca: x509.Certificate
) -> tuple[x509.Certificate, ...]:
    """`roots` and the stack's own CA, each once, in the one stable order (oldest_first)."""
    own = pki.sha256_fingerprint(stack_ca)
    others = [root for root in roots if pki.sha256_fingerprint(root) != own]
    return oldest_first([*others, stack_ca])


def decide_trust(
    observation: ClusterObservation,
    pins: Sequence[str],
    trust_on_first_use: bool,
    incoming_root_ca: x509.Certificate | None = None,
    now: datetime | None = None,
    incoming_key: str = "incoming_root_ca",
    *,
    stack_ca: x509.Certificate | None = None,
    stack_ca_subject: x509.Name | None = None,
) -> tuple[x509.Certificate, ...]:
    """The root CAs the load balancers must trust; TrustDecisionError when they may not.

    With pins, every root CA a node publishes must be pinned; several pinned root CAs are
    the rotation case, and the load balancers then trust all of them until every node
    serves from the new one. Without pins (trust on first use, explicitly configured), all
    nodes must publish the same root CA. `incoming_root_ca` (from the stack config) is the
    root CA a rotation moves to: it is trusted ahead of time, so that no node ever serves
    a certificate its load balancers do not trust yet.

    The stack's own CA (`ssh.issuing_ca: generated`) needs no pin: the stack generated it.
    Where its certificate is known (`stack_ca`, in the providers), it is always trusted, a
    node publishing exactly it is approved, and an unpinned root CA that carries its subject
    but is another certificate is refused. Where only its subject is known
    (`stack_ca_subject`, while the program runs), the nodes whose root CA carries it are left
    out of this decision and out of the result, for the exact check to settle. The two are
    never given together (ValueError): the certificate would make its subject redundant.
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
    # One or the other: the providers know the certificate, the program only its subject.
    if stack_ca is not None and stack_ca_subject is not None:
        raise ValueError("decide_trust takes stack_ca or stack_ca_subject, not both")
    own_ca = stack_ca is not None or stack_ca_subject is not None
    if stack_ca is not None:
        stack_ca_subject = stack_ca.subject
    if stack_ca_subject is not None:
        claims = stack_ca_claims(observation, stack_ca_subject, pins)
        if stack_ca is not None:
            _refuse_impostors(cluster, claims, stack_ca)
        observation = observation.without(claims)
    if own_ca and pins:
        _refuse_previous_stack_ca(observation, pins)
    roots = _decide_observed(
        observation, pins, trust_on_first_use, incoming_root_ca, now, incoming_key
    )
    return roots if stack_ca is None else with_stack_ca(roots, stack_ca)


def _refuse_previous_stack_ca(observation: ClusterObservation, pins: Sequence[str]) -> None:
    """An unpinned root CA named like a CA this program generates, on a cluster with its own
    CA, but not with this cluster's stack CA subject: most likely the stack CA made for an
    earlier service_fqdn (which CA that was cannot be known from here: its subject named the
    old FQDN). Said as such, rather than as an appliance root CA regenerated by someone."""
    previous = [
        node
        for node in observation.nodes
        if node.root_ca_sha256 not in pins and named_like_a_stack_ca(node.root_ca.subject)
    ]
    if not previous:
        return
    raise TrustDecisionError(
        f"cluster {observation.cluster}: "
        + "; ".join(
            f"node {node.fqdn} publishes root CA {node.root_ca_sha256} "
            f"({node.root_ca.subject.rfc4514_string()})"
            for node in previous
        )
        + ", named like a CA this program generates (ssh.issuing_ca: generated) but not like "
        "this stack's CA for the current service_fqdn: most likely this stack's PREVIOUS CA, "
        "made for an earlier service_fqdn (a new service_fqdn makes a new CA). Nothing was "
        "changed on any load balancer. To move the nodes to the new CA, compare that "
        "fingerprint with the stack output root_ca_sha256s of the last `up` and pin it in "
        "root_ca_sha256: the load balancers then trust both while the ssh route moves every "
        "node to the new CA, one at a time; remove the pin afterwards."
    )


def _refuse_impostors(cluster: str, claims: Mapping[str, str], stack_ca: x509.Certificate) -> None:
    own = pki.sha256_fingerprint(stack_ca)
    impostors = {fqdn: sha256 for fqdn, sha256 in claims.items() if sha256 != own}
    if impostors:
        raise TrustDecisionError(impostor_refusal(cluster, impostors, own))


def impostor_refusal(cluster: str, impostors: Mapping[str, str], own: str) -> str:
    """The sentence for nodes publishing a root CA named like the stack's own CA that is not it."""
    return (
        f"cluster {cluster}: "
        + "; ".join(f"node {fqdn} publishes root CA {sha256}" for fqdn, sha256 in impostors.items())
        + f", which carries the subject of this stack's own CA but is not it (the stack's CA "
        f"is {own}). Nothing was changed on any load balancer. A root CA is never trusted for "
        "its name; if you approve that one (for example the CA of a stack whose state was "
        "lost), pin its fingerprint in root_ca_sha256, and the ssh route then moves the "
        "node(s) to this stack's CA."
    )


def _decide_observed(
    observation: ClusterObservation,
    pins: Sequence[str],
    trust_on_first_use: bool,
    incoming_root_ca: x509.Certificate | None,
    now: datetime | None,
    incoming_key: str,
) -> tuple[x509.Certificate, ...]:
    """decide_trust for the nodes that are not the stack CA's to settle."""
    cluster, served = observation.cluster, observation.nodes
    if not served and incoming_root_ca is None:
        return ()  # every node is on the stack's CA: no other root CA to judge
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
