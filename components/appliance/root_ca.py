"""Dynamic resource: the appliance root CA(s) a cluster's load balancers must trust.

Inputs carry the program-time observation (fingerprints and PEM bundle), so preview shows
exactly what will be trusted. `create`/`update` observe the cluster again and refuse to go
on if it changed since preview; `read` reports what the nodes publish now (refresh).
`delete` changes nothing on the appliance: the root CA belongs to it, and removing this
resource only stops this program from managing trust in it.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, UpdateResult

from components import pki
from components.appliance.client import NodeAddress
from components.appliance.observation import ClusterObservation, decide_trust, observe_cluster
from components.dynamic import TrustProvider, is_unknown

__all__ = ["ApplianceRootCA", "ApplianceRootCAProvider"]

_INPUT_KEYS = (
    "cluster",
    "nodes",
    "pins",
    "trust_on_first_use",
    "root_ca_sha256s",
    "root_ca_bundle_pem",
)


class ApplianceRootCAProvider(TrustProvider):
    replace_keys = ("cluster",)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not news.get("nodes"):
            failures.append(CheckFailure("nodes", "at least one node is required."))
        for pin in news.get("pins") or []:
            if is_unknown(pin):
                continue
            try:
                pki.normalize_fingerprint(str(pin), "root_ca_sha256")
            except pki.CertificateError as problem:
                failures.append(CheckFailure("pins", str(problem)))
        if not is_unknown(news.get("root_ca_bundle_pem")):
            try:
                pki.load_bundle(str(news["root_ca_bundle_pem"]), "the planned root CA bundle")
            except pki.CertificateError as problem:
                failures.append(CheckFailure("root_ca_bundle_pem", str(problem)))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["cluster"]), outs=_apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        observation = _observe(props)
        outs = dict(props)
        outs.update(_observed_outputs(observation))
        return ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def _observe(props: dict[str, Any]) -> ClusterObservation:
    nodes = [NodeAddress.from_input(node) for node in props["nodes"]]
    return observe_cluster(str(props["cluster"]), nodes)


def _observed_outputs(observation: ClusterObservation) -> dict[str, Any]:
    return {
        "root_ca_sha256s": observation.root_ca_sha256s,
        "root_ca_bundle_pem": observation.root_ca_bundle_pem,
        "root_cas": [
            {
                "sha256": summary.sha256,
                "subject": summary.subject,
                "not_after": summary.not_after.isoformat(),
            }
            for summary in map(pki.summarize, observation.root_cas)
        ],
        "node_root_ca_sha256s": observation.node_root_ca_sha256s(),
    }


def _apply(props: dict[str, Any]) -> dict[str, Any]:
    observation = _observe(props)
    decide_trust(observation, list(props.get("pins") or []), bool(props["trust_on_first_use"]))
    planned = sorted(props["root_ca_sha256s"])
    if sorted(observation.root_ca_sha256s) != planned:
        raise RuntimeError(
            f"cluster {props['cluster']}: the appliance root CA changed after this run was "
            f"planned (planned {', '.join(planned)}; the nodes now publish "
            f"{', '.join(observation.root_ca_sha256s)}). Nothing was trusted; run "
            "`pulumi preview` again to review the new fingerprint."
        )
    outs = {key: props[key] for key in _INPUT_KEYS if key in props}
    outs.update(_observed_outputs(observation))
    return outs


class ApplianceRootCA(pulumi.dynamic.Resource, module="ws1", name="ApplianceRootCA"):
    """The root CA(s) that the cluster's nodes publish, verified and approved for trust."""

    root_ca_sha256s: pulumi.Output[list[str]]
    root_ca_bundle_pem: pulumi.Output[str]
    root_cas: pulumi.Output[list[dict[str, str]]]
    node_root_ca_sha256s: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        *,
        cluster: str,
        nodes: list[NodeAddress],
        pins: list[str],
        trust_on_first_use: bool,
        observation: ClusterObservation,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "cluster": cluster,
            "nodes": [node.as_input() for node in nodes],
            "pins": pins,
            "trust_on_first_use": trust_on_first_use,
            "root_ca_sha256s": observation.root_ca_sha256s,
            "root_ca_bundle_pem": observation.root_ca_bundle_pem,
            # Output-only: known after apply (preview shows the inputs above).
            "root_cas": None,
            "node_root_ca_sha256s": None,
        }
        super().__init__(ApplianceRootCAProvider(), name, props, opts)

