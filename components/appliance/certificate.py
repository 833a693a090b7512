"""Dynamic resource: the server certificate every node of a cluster serves (CN and SANs).

The program observes which nodes serve a certificate without the required names and passes
that list as an input, so preview shows which nodes will get a new certificate. `update`
regenerates ("Auto Generate Certificate (self-signed)") on those nodes only, one node at a
time, and checks what each node serves afterwards. A node that already serves the right
names is never touched, and an `up` with nothing to fix makes no configurator login.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, ReadResult

from components import pki
from components.appliance.base import ApplianceProvider
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    NodeAddress,
    ServedNode,
    observe_node,
    open_configurator,
)
from components.appliance.observation import (
    ClusterObservation,
    cluster_observation,
    needs_certificate,
    observe_cluster,
    observe_nodes,
)
from components.dynamic import is_unknown

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
)


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

    def needs_repair(self, _olds: dict[str, Any], news: dict[str, Any]) -> bool:
        # Refresh may already have recorded the same wrong certificate in state; a node
        # that serves the wrong names is always something to fix.
        return bool(news.get("nodes_needing_certificate"))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        nodes = [NodeAddress.from_input(node) for node in props["nodes"]]
        observation = observe_cluster(str(props["cluster"]), nodes)
        outs = dict(props)
        outs.update(_served_outputs(observation.nodes))
        outs["nodes_needing_certificate"] = observation.nodes_needing_certificate(
            str(props["common_name"]), list(props["sans"])
        )
        return ReadResult(id_=id_, outs=outs)

    def converge(self, props: dict[str, Any]) -> dict[str, Any]:
        common_name = str(props["common_name"])
        sans = [str(name) for name in props["sans"]]
        trusted_pem = str(props["trusted_root_ca_bundle_pem"])
        nodes = [NodeAddress.from_input(value) for value in props["nodes"]]
        # Every node is observed once, all at once; then only the nodes that need it get a
        # new certificate, one node at a time (rolling), each observed once more afterwards.
        # A node that cannot be observed stops the change before any node is touched.
        before = cluster_observation(str(props["cluster"]), nodes, observe_nodes(nodes))
        served: list[ServedNode] = []
        for node, current in zip(nodes, before.nodes, strict=True):
            if not needs_certificate(current, common_name, sans):
                served.append(current)
                continue
            served.append(
                self._regenerate(
                    node, current, common_name, sans, trusted_pem, str(props["admin_password_key"])
                )
            )
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs.update(_served_outputs(served))
        outs["nodes_needing_certificate"] = []
        return outs

    def _regenerate(
        self,
        node: NodeAddress,
        before: ServedNode,
        common_name: str,
        sans: list[str],
        trusted_pem: str,
        password_key: str,
    ) -> ServedNode:
        password = self.credential(password_key, ADMIN_PASSWORD_VARIABLE)
        if password is None:
            raise RuntimeError(
                f"node {node.fqdn}: a new certificate is needed but no appliance admin "
                f"password is configured; set it with `pulumi config set --secret "
                f"{password_key} ...` or the {ADMIN_PASSWORD_VARIABLE} environment variable."
            )
        # The configurator is tried first with the certificate just observed on the service
        # port: no second handshake when the node presents the same one on both ports.
        with open_configurator(
            node, trusted_pem, password, presented_sha256=before.served_sha256
        ) as configurator:
            configurator.generate_certificate(common_name, sans)
        after = observe_node(node)
        if after.problem:
            raise RuntimeError(f"after regeneration, {after.problem}")
        pki.check_server_names(
            after.served_certificate,
            common_name,
            sans,
            f"the certificate node {node.fqdn} serves after regeneration",
        )
        return after


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
            "nodes_needing_certificate": observation.nodes_needing_certificate(common_name, sans),
            "served": None,
        }
        super().__init__(ApplianceCertificateProvider(), name, props, opts)
