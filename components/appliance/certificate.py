"""Dynamic resource: the server certificate every node of a cluster serves (CN and SANs).

The program observes which nodes serve a certificate without the required names (or, for a
route that issues from the operator's CA, one that CA did not issue) and passes that list as an
input, so preview shows which nodes will get a new certificate. `update` gives those nodes only
a new certificate through the cluster's route (components/appliance/routes: lifecycle_manager,
ssh, or the experimental configurator), one node at a time in the stack's node order, and
verifies what each node serves afterwards against the root CAs this run planned for the load
balancers, for the name they check. A node whose new certificate they would not accept (above
all: a new root CA) stops the run before the next node is touched, so at most one node is ever
off trust, and the error names it. A node that needs nothing is never touched, and an `up` with
nothing to fix calls no route at all.
"""

from __future__ import annotations

from typing import Any

import pulumi
from cryptography import x509
from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ReadResult

from components import pki
from components.appliance.base import ApplianceProvider
from components.appliance.client import NodeAddress, ServedNode
from components.appliance.observation import (
    ClusterObservation,
    cluster_observation,
    needs_certificate,
    observe_cluster,
    observe_nodes,
)
from components.appliance.routes import open_route
from components.dynamic import diff_inputs, is_unknown

__all__ = ["ApplianceCertificate", "ApplianceCertificateProvider"]

_INPUT_KEYS = (
    "cluster",
    "nodes",
    "common_name",
    "sans",
    "admin_password_key",
    "trusted_root_ca_bundle_pem",
    "served_sha256s",
    "nodes_needing_certificate",
    "route",
)
# Inputs that are the program's observation of the cluster, not part of the declaration.
_OBSERVATIONS = ("served_sha256s", "nodes_needing_certificate")
# The stack CA's private key (`ssh.issuing_ca: generated`): a secret input, never copied to
# the outputs and never compared (it is the key of route.issuing_ca_pem, which is).
_ISSUING_CA_KEY = "issuing_ca_key_pem"
# Route settings that say how a run behaves (how long to wait, how much validity a reused
# certificate needs), not what the nodes must serve: changing one alone is no update for
# preview to show. An update that happens anyway uses the new values (they are in `news`).
_ROUTE_RUN_SETTINGS = ("request_timeout_seconds", "restart_timeout_seconds", "reuse_min_days")


class ApplianceCertificateProvider(ApplianceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        common_name = news.get("common_name")
        sans = news.get("sans") or []
        if not is_unknown(common_name) and not is_unknown(sans) and common_name not in sans:
            failures.append(
                CheckFailure(
                    "sans",
                    f"the service FQDN {common_name} must also be a Subject Alternative Name "
                    "(some browsers require it).",
                )
            )
        if not news.get("nodes"):
            failures.append(CheckFailure("nodes", "at least one node is required."))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Update when the declaration changed, or when a node serves a certificate to fix.

        `served_sha256s` and `nodes_needing_certificate` are observations, not wishes: the
        program's (in `news`, so preview lists the nodes) and the one stored with the outputs
        by the last up or refresh. When both say the same about what each node serves, they
        are judged as they are. When they disagree, one of them is stale, and which one
        depends on who calls: in an `up` it is the stored one (the world changed since), in the
        engine's refresh check it is `news` (the engine passes the inputs stored BEFORE the
        up that regenerated; pkg/resource/deploy/step.go, RefreshStep). The live answer
        settles it, at the cost of one observation per node only in that case.
        """
        declared = {
            key: value
            for key, value in news.items()
            if key not in _OBSERVATIONS and key != _ISSUING_CA_KEY
        }
        if isinstance(declared.get("route"), dict) and isinstance(olds.get("route"), dict):
            declared["route"] = _without_run_settings(declared["route"])
            olds = {**olds, "route": _without_run_settings(olds["route"])}
        result = diff_inputs(olds, declared, self.replace_keys)
        if result.changes or is_unknown(news.get("served_sha256s")):
            return DiffResult(changes=True, replaces=result.replaces, delete_before_replace=False)
        if news.get("served_sha256s") == olds.get("served_sha256s"):
            to_fix = bool(news.get("nodes_needing_certificate")) or bool(
                olds.get("nodes_needing_certificate")
            )
        else:
            now = _observe(news)
            to_fix = bool(
                now.nodes_needing_certificate(
                    str(news["common_name"]), list(news["sans"]), _issuer(news)
                )
            ) or now.served_sha256s() != olds.get("served_sha256s")
        return DiffResult(changes=to_fix, replaces=[], delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        observation = _observe(props)
        outs = dict(props)
        outs.update(_served_outputs(observation.nodes))
        outs["nodes_needing_certificate"] = observation.nodes_needing_certificate(
            str(props["common_name"]), list(props["sans"]), _issuer(props)
        )
        return ReadResult(id_=id_, outs=outs)

    def converge(self, props: dict[str, Any]) -> dict[str, Any]:
        cluster = str(props["cluster"])
        common_name = str(props["common_name"])
        sans = [str(name) for name in props["sans"]]
        trusted_pem = str(props["trusted_root_ca_bundle_pem"])
        trusted_roots = pki.load_bundle(
            trusted_pem, f"cluster {cluster}: the planned trusted root CA bundle"
        )
        nodes = [NodeAddress.from_input(value) for value in props["nodes"]]
        # Every node is observed once, all at once; then only the nodes that need it get a
        # new certificate, one node at a time (rolling), each observed once more afterwards.
        # A node that cannot be observed stops the change before any node is touched.
        before = cluster_observation(cluster, nodes, observe_nodes(nodes))
        route = open_route(props, self.credential, trusted_pem)  # the key stays in `route`
        route.observed(before.nodes)
        issuer = _issuer(props)
        to_fix = [
            node.fqdn for node in before.nodes if needs_certificate(node, common_name, sans, issuer)
        ]
        missing = route.missing() if to_fix else []
        if missing:
            raise RuntimeError(
                f"cluster {cluster}: node(s) {', '.join(to_fix)} need a new certificate, but "
                + "; ".join(missing)
                + ". No node was touched."
            )
        served: list[ServedNode] = []
        # The stack's node order, always: the first node that needs a certificate is the
        # canary (README, "Rotating the appliance certificate"), and the outage guard below
        # stops there when its new certificate is not trusted.
        for node, current in zip(nodes, before.nodes, strict=True):
            changed_anyway = route.changes_every_node and bool(to_fix)
            if not changed_anyway and not needs_certificate(current, common_name, sans, issuer):
                served.append(current)
                continue
            after = route.install(node, current, common_name, sans)
            pki.check_server_names(
                after.served_certificate,
                common_name,
                sans,
                f"the certificate node {node.fqdn} serves after its new certificate",
            )
            _guard_against_outage(cluster, node, after, trusted_roots)
            served.append(after)
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs.update(_served_outputs(served))
        outs["nodes_needing_certificate"] = []
        return outs


def _issuer(props: dict[str, Any]) -> x509.Certificate | None:
    """The CA the cluster's route issues from, when it has one of its own (ssh,
    lifecycle_manager): a node serving a certificate from any other CA needs a new one."""
    route = props.get("route") or {}
    pem = route.get("issuing_ca_pem") if isinstance(route, dict) else None
    if not pem or is_unknown(pem):
        return None
    return pki.load_certificate(str(pem), f"{route.get('method')}.issuing_ca")


def _without_run_settings(route: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in route.items() if key not in _ROUTE_RUN_SETTINGS}


def _observe(props: dict[str, Any]) -> ClusterObservation:
    nodes = [NodeAddress.from_input(node) for node in props["nodes"]]
    return observe_cluster(str(props["cluster"]), nodes)


def _guard_against_outage(
    cluster: str,
    node: NodeAddress,
    after: ServedNode,
    trusted_roots: list[x509.Certificate],
) -> None:
    """Stop before the next node unless the load balancers trust what `node` serves now.

    Verified against the bundle this run planned (what every load balancer of the cluster
    was given), for the name the load balancers check (NodeAddress.verified_name). Raising
    here leaves exactly one node off trust, the one named, and every other node untouched.
    """
    chain = [after.served_certificate, *after.intermediates]
    name = node.verified_name
    try:
        pki.verify_served_chain(
            chain, trusted_roots, name, f"the certificate node {node.fqdn} serves now"
        )
        return
    except pki.CertificateError as problem:
        reason = str(problem)
    planned = ", ".join(pki.sha256_fingerprint(root) for root in trusted_roots)
    new_root = after.root_ca_sha256
    if new_root not in {pki.sha256_fingerprint(root) for root in trusted_roots}:
        raise RuntimeError(
            f"cluster {cluster}: node {node.fqdn} was regenerated and now serves a certificate "
            f"from a NEW root CA {new_root}, which the load balancers do not trust (they trust "
            f"{planned}). Stopped before the next node: {node.fqdn} is the only node off "
            "trust, no other node was touched. Next step (README, 'Rotating the appliance "
            "certificate', step 1, 'Announce the new root CA'): check that fingerprint on the "
            f"appliance console of {node.fqdn}, copy that root CA's PEM (it is served at "
            f"https://{node.fqdn}/horizon_workspace_rootca.pem), set incoming_root_ca to it "
            f"and, if the stack pins root_ca_sha256, add {new_root} to that list; then run "
            "`pulumi up` again: it trusts the new root CA on every load balancer first, then "
            "moves the other nodes."
        )
    raise RuntimeError(
        f"cluster {cluster}: node {node.fqdn} was regenerated, but the load balancers would "
        f"not accept what it serves now: {reason} Stopped before the next node: {node.fqdn} "
        "is the only node off trust. Check the certificate on its appliance console "
        "(Install SSL Certificates > Server Certificate), then run `pulumi up` again."
    )


def _served_outputs(served: Any) -> dict[str, Any]:
    nodes: list[ServedNode] = list(served)
    return {
        "served_sha256s": {node.fqdn: node.served_sha256 for node in nodes},
        "served": {
            node.fqdn: {
                "sha256": node.served_sha256,
                "sans": list(pki.summarize(node.served_certificate).sans),
                "not_after": pki.summarize(node.served_certificate).not_after.isoformat(),
                "root_ca_sha256": node.root_ca_sha256,
            }
            for node in nodes
        },
    }


class ApplianceCertificate(pulumi.dynamic.Resource, module="ws1", name="ApplianceCertificate"):
    """The server certificate each node serves, with the CN and SANs the cluster needs."""

    served_sha256s: pulumi.Output[dict[str, str]]
    served: pulumi.Output[dict[str, dict[str, Any]]]
    nodes_needing_certificate: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        cluster: str,
        nodes: list[NodeAddress],
        common_name: str,
        sans: list[str],
        admin_password_key: str,
        trusted_root_ca_bundle_pem: pulumi.Input[str],
        observation: ClusterObservation,
        nodes_needing_certificate: pulumi.Input[list[str]],
        route: dict[str, Any] | None = None,
        issuing_ca_key_pem: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "cluster": cluster,
            "nodes": [node.as_input() for node in nodes],
            "common_name": common_name,
            "sans": sans,
            # The NAME of the secret config key, never its value: see components/dynamic.py.
            "admin_password_key": admin_password_key,
            "trusted_root_ca_bundle_pem": trusted_root_ca_bundle_pem,
            "served_sha256s": observation.served_sha256s(),
            "nodes_needing_certificate": nodes_needing_certificate,
            "served": None,
        }
        if route is not None:
            # Names of secret keys and public facts only (see routes/ssh.py); absent for the
            # configurator, so stacks declared before routes existed plan no change.
            props["route"] = route
        if issuing_ca_key_pem is not None:
            # The stack CA's key: secret here, in the state (encrypted) and only here; the
            # provider reads it from its inputs and never returns it (stack_ca.py says how
            # the engine keeps it secret).
            props[_ISSUING_CA_KEY] = pulumi.Output.secret(issuing_ca_key_pem)
        super().__init__(ApplianceCertificateProvider(), name, props, opts)
