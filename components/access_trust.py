"""The seed procedure for one cluster, as a component: both directions of SSL trust.

Data flows one way: the cluster observation (made while the program runs, so preview shows
it) -> the approved root CA(s) -> every load balancer's trust store; the node certificate
with the names the termination mode requires; and, where the load balancer terminates SSL
with its own private CA, that CA on the appliance.

A cluster whose ssh route issues from the stack's own CA (`ssh.issuing_ca: generated`) has
one more step in front: that CA (components/appliance/stack_ca.py). Its certificate is a
resource output, never a plain value while the program runs, so what depends on it (the
planned bundle, which nodes need a certificate) is computed with `.apply` over it, and the
nodes that may publish it are settled by fingerprint where it is known (ApplianceRootCA).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pulumi
from cryptography import x509

from components import pki
from components.appliance.certificate import ApplianceCertificate
from components.appliance.client import ApplianceError, NodeAddress, ServedNode
from components.appliance.lb_root import ApplianceLoadBalancerRootCA
from components.appliance.observation import (
    ClusterObservation,
    NodeResult,
    TrustDecisionError,
    cluster_observation,
    decide_trust,
    observe_nodes,
    stack_ca_claims,
    with_stack_ca,
)
from components.appliance.root_ca import ApplianceRootCA
from components.appliance.routes import METHODS_THAT_WRITE
from components.appliance.stack_ca import StackIssuingCA, stack_ca_subject
from components.dynamic import is_unknown
from components.naming import Names
from components.settings import PROJECT, Cluster
from components.trust_stores import ClusterTrust, TrustStoreOutputs, declare_trust_store

__all__ = [
    "AccessTrust",
    "ApprovedCluster",
    "nodes_to_fix",
    "observe_and_approve",
    "required_names",
]


def required_names(cluster: Cluster) -> tuple[str, ...]:
    """The names every node certificate must carry (CN first), per the termination mode."""
    return pki.required_names(
        cluster.service_fqdn, cluster.node_fqdns, cluster.passthrough, cluster.extra_sans
    )


def node_addresses(cluster: Cluster) -> list[NodeAddress]:
    # The name each node's certificate is verified for: see NodeAddress.tls_name.
    tls_name = "" if cluster.passthrough else cluster.service_fqdn
    return [
        NodeAddress(node.fqdn, node.address, node.service_port, node.configurator_port, tls_name)
        for node in cluster.nodes
    ]


@dataclass(frozen=True)
class ApprovedCluster:
    """What a cluster serves now, and the root CAs its load balancers may trust."""

    observation: ClusterObservation
    trusted_root_cas: tuple[x509.Certificate, ...]
    # The root CA trusted ahead of the nodes moving to it (see incoming_root_ca_pem).
    incoming_root_ca_pem: str | None = None
    # Stack's own CA only: node -> the unpinned root CA it publishes under that CA's subject,
    # left out of `trusted_root_cas` for the exact check (decide_trust, stack_ca_claims).
    stack_ca_claims: dict[str, str] = field(default_factory=dict)


def observe_and_approve(
    clusters: Sequence[Cluster], now: datetime | None = None
) -> dict[str, ApprovedCluster]:
    """Observe every node of every cluster at once, then apply the trust rules per cluster.

    A refusal is one clean program error naming every cluster that was refused. Runs before
    any resource is declared, so a refused trust leaves every load balancer as it was
    (principle: nothing is trusted that was not verified).
    """
    results = observe_nodes([node for cluster in clusters for node in node_addresses(cluster)])
    approved: dict[str, ApprovedCluster] = {}
    problems: list[str] = []
    for index, cluster in enumerate(clusters):
        try:
            approved[cluster.name] = _approve(cluster, f"{PROJECT}:clusters[{index}]", results, now)
        except (ApplianceError, TrustDecisionError, pki.CertificateError) as problem:
            message = str(problem)
            if not message.startswith(f"cluster {cluster.name}"):
                message = f"cluster {cluster.name}: {message}"
            problems.append(message)
    if problems:
        raise pulumi.RunError("\n".join(problems))
    return approved


def _approve(
    cluster: Cluster,
    config_key: str,
    results: Mapping[NodeAddress, NodeResult],
    now: datetime | None,
) -> ApprovedCluster:
    # `config_key` is where the cluster is declared (`ws1-access-lb-trust:clusters[0]`).
    if cluster.load_balancer_root_ca is not None:
        source = f"config key {config_key}.load_balancer_root_ca"
        pki.check_ca(pki.load_certificate(cluster.load_balancer_root_ca, source), source, now)
    observation = cluster_observation(cluster.name, node_addresses(cluster), results, now)
    incoming = None
    incoming_pem = incoming_root_ca_pem(cluster, observation)
    key = "incoming_root_ca" if cluster.incoming_root_ca else _issuing_ca_key(cluster)
    if incoming_pem is not None:
        incoming = pki.load_certificate(incoming_pem, f"config key {config_key}.{key}")
    subject = stack_ca_subject(cluster.service_fqdn) if cluster.generates_ca else None
    trusted = decide_trust(
        observation,
        cluster.root_ca_sha256,
        cluster.trust_on_first_use,
        incoming,
        now,
        key,
        stack_ca_subject=subject,
    )
    claims = (
        {} if subject is None else stack_ca_claims(observation, subject, cluster.root_ca_sha256)
    )
    return ApprovedCluster(observation, trusted, incoming_pem, claims)


def _issuing_ca_key(cluster: Cluster) -> str:
    return f"{cluster.certificate_method}.issuing_ca"


def incoming_root_ca_pem(cluster: Cluster, observation: ClusterObservation) -> str | None:
    """The root CA the nodes are about to move to, trusted ahead of time: the stack's
    incoming_root_ca, else, while some node needs a new certificate, the operator's CA that
    the route issues from (no node needing one: nothing will move, nothing to trust)."""
    if cluster.incoming_root_ca is not None:
        return cluster.incoming_root_ca
    issuing_ca = cluster.issuing_ca
    if not (cluster.writes_certificates and issuing_ca):
        return None
    if not nodes_to_fix(cluster, observation):
        return None
    # A CA some node already publishes is trusted as observed; announcing it again would only
    # flip this input between runs.
    issuing = pki.sha256_fingerprint(pki.load_certificate(issuing_ca, _issuing_ca_key(cluster)))
    return None if issuing in observation.root_ca_sha256s else issuing_ca


def nodes_to_fix(cluster: Cluster, observation: ClusterObservation) -> list[str]:
    """The nodes that need a new certificate: wrong names or validity, or, with a route
    that issues from the operator's CA (ssh, lifecycle_manager), one that CA did not issue.

    With the stack's own CA, known here only by its subject, these are the nodes that surely
    need one (a root CA without that subject did not issue from it); `_stack_ca_to_fix`
    gives the exact list once the CA is known."""
    if cluster.generates_ca and cluster.writes_certificates:
        subject = stack_ca_subject(cluster.service_fqdn)
        named = set(
            observation.nodes_needing_certificate(cluster.service_fqdn, required_names(cluster))
        )
        return [
            node.fqdn
            for node in observation.nodes
            if node.fqdn in named or node.root_ca.subject != subject
        ]
    issuer = None
    if cluster.writes_certificates and cluster.issuing_ca:
        issuer = pki.load_certificate(cluster.issuing_ca, _issuing_ca_key(cluster))
    return observation.nodes_needing_certificate(
        cluster.service_fqdn, required_names(cluster), issuer
    )


def _publishes_stack_ca_subject(cluster: Cluster, observation: ClusterObservation) -> bool:
    """True when some node publishes a root CA named like this cluster's stack CA (pinned or
    not): the stack CA may be in use, so it stays among the trusted root CAs."""
    subject = stack_ca_subject(cluster.service_fqdn)
    return any(node.root_ca.subject == subject for node in observation.nodes)


def _stack_ca_to_fix(
    cluster: Cluster, observation: ClusterObservation, stack_ca_pem: str
) -> list[str]:
    """The exact nodes that need a certificate from the stack's CA (its PEM now known)."""
    stack_ca = pki.load_certificate(stack_ca_pem, "the stack's CA")
    return observation.nodes_needing_certificate(
        cluster.service_fqdn, required_names(cluster), stack_ca
    )


def route_input(
    cluster: Cluster,
    stack_ca_pem: pulumi.Output[str] | None = None,
    expiry_warning_days: int = 30,
) -> dict[str, Any] | None:
    """The route's resource input: key NAMES and public facts, never a secret (None for the
    configurator, whose input is admin_password_key, as before routes existed). With the
    stack's own CA, its certificate (`stack_ca_pem`) is the issuing CA and no key is named:
    the key is ApplianceCertificate's secret input instead. `expiry_warning_days`: Lifecycle
    reuses no locker certificate that expires within it."""
    lifecycle = cluster.lifecycle_manager
    if cluster.certificate_method == "lifecycle_manager" and lifecycle is not None:
        return {
            "method": "lifecycle_manager",
            "address": lifecycle.address,
            "port": lifecycle.port,
            "username": lifecycle.username,
            "password_key": lifecycle.password_key,
            "management_ca_pem": lifecycle.management_ca,
            "environment_id": lifecycle.environment_id,
            "product_id": lifecycle.product_id,
            "issuing_ca_pem": lifecycle.issuing_ca,
            "issuing_ca_key_key": lifecycle.issuing_ca_key_key,
            "request_timeout_seconds": lifecycle.request_timeout_seconds,
            "restart_timeout_seconds": lifecycle.restart_timeout_seconds,
            "reuse_min_days": expiry_warning_days,
        }
    ssh = cluster.ssh
    if cluster.certificate_method != "ssh" or ssh is None:
        return None
    route: dict[str, Any] = {
        "method": "ssh",
        "user": ssh.user,
        "authentication": ssh.authentication,
        "become": ssh.become,
        "password_key": ssh.password_key,
        "private_key_key": ssh.private_key_key,
        "root_password_key": ssh.root_password_key,
        "issuing_ca_pem": ssh.issuing_ca,
        "issuing_ca_key_key": ssh.issuing_ca_key_key,
        "restart_timeout_seconds": ssh.restart_timeout_seconds,
        "endpoints": {
            node.fqdn: {"port": node.ssh_port or ssh.port, "host_key": node.ssh_host_key}
            for node in cluster.nodes
        },
    }
    if stack_ca_pem is not None:
        # Said explicitly, and only here: an operator-CA stack's input has no `issuing_ca`
        # key, so it stays exactly as before the stack CA existed (no planned change).
        route.update(issuing_ca="generated", issuing_ca_pem=stack_ca_pem)
        del route["issuing_ca_key_key"]
    return route


def _after_trust_stores(stores: Iterable[TrustStoreOutputs]) -> list[pulumi.Resource]:
    """depends_on entries for "after every trust store is written", whatever the kind."""
    return [resource for store in stores for resource in store.written]


class AccessTrust(pulumi.ComponentResource):
    """SSL trust between one Workspace ONE Access cluster and the load balancers in front of it."""

    def __init__(
        self,
        cluster: Cluster,
        load_balancers: Sequence[Any],
        approved: ApprovedCluster,
        *,
        expiry_warning_days: int,
        now: datetime | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        names = Names(cluster.name, cluster.previous_name)
        super().__init__(
            "ws1-access-lb-trust:index:AccessTrust", cluster.name, None, names.options("", opts)
        )
        child = pulumi.ResourceOptions(parent=self)
        nodes = node_addresses(cluster)
        observation = approved.observation

        # The stack's own CA first: the load balancers trust it (the stack made it, no pin
        # needed), so the planned roots are those approved above plus it. It is declared
        # whenever the cluster generates its CA (manage_certificate: false keeps it, so
        # turning that back on moves no node), but trusted only where it is or will be used:
        # this cluster writes certificates from it, or some node already publishes a root CA
        # with its subject (settled by fingerprint in ApplianceRootCA). Otherwise it would be
        # a trust anchor that no node uses, whose key is in the state.
        self.stack_ca: StackIssuingCA | None = None
        planned: Any = approved.trusted_root_cas
        stack_ca_pem = None
        if cluster.generates_ca:
            self.stack_ca = StackIssuingCA(
                names("issuing-ca"),
                cluster=cluster.name,
                service_fqdn=cluster.service_fqdn,
                published_claims=approved.stack_ca_claims,
                opts=names.options("issuing-ca", child),
            )
        if self.stack_ca is not None and (
            cluster.writes_certificates or _publishes_stack_ca_subject(cluster, observation)
        ):
            stack_ca_pem = self.stack_ca.certificate_pem
            planned = stack_ca_pem.apply(
                lambda pem: with_stack_ca(
                    approved.trusted_root_cas, pki.load_certificate(pem, "the stack's CA")
                )
            )
        self.planned_roots = planned

        self.root_ca = ApplianceRootCA(
            names("root-ca"),
            cluster=cluster.name,
            nodes=nodes,
            pins=list(cluster.root_ca_sha256),
            trust_on_first_use=cluster.trust_on_first_use,
            incoming_root_ca_pem=approved.incoming_root_ca_pem,
            trusted_root_cas=planned,
            stack_ca_pem=stack_ca_pem,
            stack_ca_claims=approved.stack_ca_claims,
            opts=names.options("root-ca", child),
        )
        trust = ClusterTrust(
            cluster=cluster.name,
            service_fqdn=cluster.service_fqdn,
            nodes=cluster.nodes,
            root_ca_bundle_pem=self.root_ca.root_ca_bundle_pem,
            root_ca_sha256s=self.root_ca.root_ca_sha256s,
            previous_cluster=cluster.previous_name,
        )
        self.trust_stores = {lb.name: declare_trust_store(lb, trust, self) for lb in load_balancers}

        if cluster.writes_certificates:
            required = required_names(cluster)
            to_fix: Any = nodes_to_fix(cluster, observation)
            if stack_ca_pem is not None:
                to_fix = stack_ca_pem.apply(lambda pem: _stack_ca_to_fix(cluster, observation, pem))
            self.certificate: ApplianceCertificate | None = ApplianceCertificate(
                names("certificate"),
                cluster=cluster.name,
                nodes=nodes,
                common_name=cluster.service_fqdn,
                sans=list(required),
                admin_password_key=cluster.admin_password_key,
                trusted_root_ca_bundle_pem=self.root_ca.root_ca_bundle_pem,
                observation=observation,
                nodes_needing_certificate=to_fix,
                route=route_input(cluster, stack_ca_pem, expiry_warning_days),
                issuing_ca_key_pem=self.stack_ca.private_key_pem if self.stack_ca else None,
                # Every trust store first: a node may only move to a root CA once every
                # load balancer trusts it (README, "Rotating the appliance certificate").
                opts=names.options(
                    "certificate",
                    pulumi.ResourceOptions(
                        parent=self,
                        depends_on=_after_trust_stores(self.trust_stores.values()),
                    ),
                ),
            )
        else:
            self.certificate = None

        if cluster.load_balancer_root_ca and cluster.certificate_method == "configurator":
            # After the certificate: never two configurator sessions on a node at once.
            after_certificate = pulumi.ResourceOptions(
                parent=self, depends_on=[self.certificate] if self.certificate else []
            )
            ApplianceLoadBalancerRootCA(
                names("load-balancer-root-ca"),
                cluster=cluster.name,
                nodes=nodes,
                certificate_pem=cluster.load_balancer_root_ca,
                admin_password_key=cluster.admin_password_key,
                trusted_root_ca_bundle_pem=self.root_ca.root_ca_bundle_pem,
                opts=names.options("load-balancer-root-ca", after_certificate),
            )

        self._warn_at_plan_time(cluster, approved, expiry_warning_days, now)
        self.exports = self._exports(cluster, approved)
        self.register_outputs({"trust": self.exports})

    def _warn_at_plan_time(
        self,
        cluster: Cluster,
        approved: ApprovedCluster,
        warning_days: int,
        now: datetime | None,
    ) -> None:
        observation = approved.observation
        # Root CAs that may be the stack's own are judged by fingerprint, never on first use.
        first_use = observation.without(approved.stack_ca_claims).root_ca_sha256s
        if cluster.trust_on_first_use and first_use:
            pulumi.log.warn(
                f"cluster {cluster.name}: TRUST ON FIRST USE. The load balancers will trust "
                f"root CA {', '.join(first_use)} as the nodes publish it, "
                "without a pin. Compare it with the appliance console (Install SSL "
                "Certificates > Server Certificate) and pin it with root_ca_sha256.",
                resource=self,
            )
        for root_ca in approved.trusted_root_cas:
            self._warn_expiry(cluster.name, "root CA", root_ca, warning_days, now)
        required = required_names(cluster)
        to_fix = set(nodes_to_fix(cluster, observation))
        self._warn_about_route(cluster, [n.fqdn for n in observation.nodes if n.fqdn in to_fix])
        if self.stack_ca is not None and cluster.writes_certificates:
            # Known only as an output: said where it is known, or said that it is not.
            self.stack_ca.certificate_pem.apply(
                lambda pem: self._warn_about_stack_ca(cluster, observation, pem, warning_days, now),
                run_with_unknowns=True,
            )
        elif cluster.writes_certificates:
            self._warn_new_certificates(cluster, observation, to_fix)
        elif not cluster.manage_certificate:
            for fqdn in (node.fqdn for node in observation.nodes if node.fqdn in to_fix):
                pulumi.log.warn(
                    f"cluster {cluster.name}: node {fqdn} serves a certificate without the "
                    f"names or validity it needs (CN and SANs: {', '.join(required)}); "
                    "manage_certificate is false, so regenerate it in the appliance console.",
                    resource=self,
                )
        for node in observation.nodes:
            self._warn_expiry(
                cluster.name,
                f"certificate served by node {node.fqdn}",
                node.served_certificate,
                warning_days,
                now,
            )

    def _warn_new_certificates(
        self, cluster: Cluster, observation: ClusterObservation, to_fix: Iterable[str]
    ) -> None:
        # The Python dynamic host returns no detailed diff, so `preview --diff` shows the
        # certificate's update without property lines: say here what will change.
        required = required_names(cluster)
        fixing = set(to_fix)
        for node in observation.nodes:
            if node.fqdn in fixing:
                pulumi.log.warn(
                    f"cluster {cluster.name}: node {node.fqdn} gets a new certificate in "
                    f"this run: {_what_is_wrong(node, cluster.service_fqdn, required)}; "
                    f"the new one: CN {cluster.service_fqdn}, SANs {', '.join(required)}.",
                    resource=self,
                )

    def _warn_about_stack_ca(
        self,
        cluster: Cluster,
        observation: ClusterObservation,
        pem: Any,
        warning_days: int,
        now: datetime | None,
    ) -> None:
        """The stack's own CA: once known, which nodes move to it (and its expiry); while a
        preview creates it, what this preview cannot know, instead of a guess."""
        if is_unknown(pem) or not pem:
            subject = stack_ca_subject(cluster.service_fqdn).rfc4514_string()
            nodes = ", ".join(node.fqdn for node in observation.nodes)
            pulumi.log.warn(
                f"cluster {cluster.name}: this stack's own CA (ssh.issuing_ca: generated) is "
                "made in this run (its first run, or a new service_fqdn), so this preview cannot "
                "show its fingerprint, nor the exact bundle the load balancers get. `pulumi "
                f"up` generates a new root CA ({subject}, RSA 3072, 10 years), writes it into "
                "every load balancer's trust store FIRST (next to the root CAs trusted now), "
                f"then gives every node ({nodes}) a certificate from it over SSH, one node at "
                "a time, each verified against the load balancers before the next. Its key "
                "is kept only as a secret in the stack state.",
                resource=self,
            )
            return
        stack_ca = pki.load_certificate(str(pem), "the stack's CA")
        self._warn_expiry(cluster.name, "the stack's own CA", stack_ca, warning_days, now)
        self._warn_new_certificates(
            cluster, observation, _stack_ca_to_fix(cluster, observation, str(pem))
        )

    def _warn_about_route(self, cluster: Cluster, to_fix: list[str]) -> None:
        """Say what the chosen route will not do: `none` never writes, and the load balancer
        root CA has an evidenced route for no method but the (experimental) configurator."""
        if cluster.manage_certificate and cluster.certificate_method == "none" and to_fix:
            pulumi.log.warn(
                f"cluster {cluster.name}: node(s) {', '.join(to_fix)} need a new certificate "
                f"(CN {cluster.service_fqdn}, SANs {', '.join(required_names(cluster))}), but "
                "certificate_method is none (the default), so nothing is written to any node. "
                "Methods that can fix it: "
                + "; ".join(METHODS_THAT_WRITE.values())
                + ". Or replace it by hand (README, 'Certificate routes').",
                resource=self,
            )
        if cluster.writes_certificates and cluster.certificate_method == "configurator" and to_fix:
            pulumi.log.warn(
                f"cluster {cluster.name}: certificate_method configurator is EXPERIMENTAL: its "
                "certificate requests are not publicly documented (README, 'Certificate "
                "routes'); a read-only probe checked every node it will write to.",
                resource=self,
            )
        if cluster.load_balancer_root_ca and cluster.certificate_method != "configurator":
            pulumi.log.warn(
                f"cluster {cluster.name}: load_balancer_root_ca is declared, but no public "
                f"source shows how to install it with certificate_method "
                f"{cluster.certificate_method}"
                + (
                    " (Aria Suite Lifecycle takes the load balancer chain only when it builds a "
                    "cluster)"
                    if cluster.certificate_method == "lifecycle_manager"
                    else ""
                )
                + ", so this program does not guess: install it on every node by hand "
                "(configurator page Install SSL Certificates > Terminate SSL on a Load "
                "Balancer), or with certificate_method configurator (experimental).",
                resource=self,
            )
        if cluster.writes_certificates and cluster.ssh and cluster.ssh.trust_host_key_on_first_use:
            unpinned = [node.fqdn for node in cluster.nodes if not node.ssh_host_key]
            if unpinned:
                pulumi.log.warn(
                    f"cluster {cluster.name}: SSH HOST KEY TRUST ON FIRST USE for node(s) "
                    f"{', '.join(unpinned)}: the ssh route will send credentials to whatever "
                    "host key they present. Pin each with nodes[].ssh_host_key "
                    "(`ssh-keyscan <node> | ssh-keygen -lf -`).",
                    resource=self,
                )

    def _warn_expiry(
        self, cluster: str, what: str, certificate: Any, warning_days: int, now: datetime | None
    ) -> None:
        days = pki.days_until_expiry(certificate, now)
        if days <= warning_days:
            summary = pki.summarize(certificate)
            count = f"{abs(days)} day{'' if abs(days) == 1 else 's'}"
            when = f"expired {count} ago" if days < 0 else f"expires in {count}"
            pulumi.log.warn(
                f"cluster {cluster}: {what} {summary.subject} ({summary.sha256}) {when}, on "
                f"{summary.not_after.date().isoformat()}.",
                resource=self,
            )

    def _exports(self, cluster: Cluster, approved: ApprovedCluster) -> dict[str, Any]:
        # Only clock-independent values: `pulumi up --plan` compares every output with the
        # saved plan, so a "days left" figure would break a plan saved the day before.
        # Days left are in the preview warnings (_warn_expiry) instead.
        expires_on: Any
        if isinstance(self.planned_roots, pulumi.Output):  # with the stack's own CA
            expires_on = self.planned_roots.apply(_first_expiry)
        else:
            expires_on = _first_expiry(approved.trusted_root_cas)
        return {
            "service_fqdn": cluster.service_fqdn,
            "root_ca_sha256s": self.root_ca.root_ca_sha256s,
            "root_ca_expires_on": expires_on,
            "load_balancers": {
                name: {
                    "trusted_sha256s": outputs.trusted_sha256s,
                    "object_names": outputs.object_names,
                    "expires_on": expires_on,
                }
                for name, outputs in self.trust_stores.items()
            },
            "node_certificates": self.certificate.served if self.certificate else None,
        }


def _first_expiry(roots: Sequence[x509.Certificate]) -> str:
    first_to_expire = min(roots, key=lambda root: root.not_valid_after_utc)
    return first_to_expire.not_valid_after_utc.date().isoformat()


def _what_is_wrong(node: ServedNode, service_fqdn: str, required: Sequence[str]) -> str:
    """Why a node's served certificate is replaced, with the certificate's fingerprint."""
    served = pki.summarize(node.served_certificate)
    found = f"it serves {served.sha256} (SANs: {', '.join(served.sans) or 'none'})"
    if node.problem is not None:
        return f"{found}, and {node.problem}"
    try:
        pki.check_server_names(node.served_certificate, service_fqdn, required, node.fqdn)
    except pki.CertificateError as problem:
        return f"{found}, and {problem}"
    return f"{found}, not issued by the CA the route issues from (issuing_ca)"
