"""Dynamic resource: the appliance root CA(s) a cluster's load balancers must trust.

Inputs carry the program-time decision (fingerprints and PEM bundle of the root CAs the
nodes publish, plus an incoming root CA during a rotation), so preview shows exactly what
will be trusted. `create`/`update` observe the cluster again and refuse to go on if it
changed since preview; `read` reports what the nodes publish now (refresh).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from cryptography import x509
from pulumi.dynamic import CheckFailure, CheckResult, ReadResult

from components import pki
from components.appliance.base import ApplianceProvider
from components.appliance.client import NodeAddress
from components.appliance.observation import (
    ClusterObservation,
    TrustDecisionError,
    decide_trust,
    observe_cluster,
    oldest_first,
)
from components.dynamic import is_unknown

__all__ = ["ApplianceRootCA", "ApplianceRootCAProvider"]

_INPUT_KEYS = (
    "cluster",
    "nodes",
    "pins",
    "trust_on_first_use",
    "incoming_root_ca_pem",
    "root_ca_sha256s",
    "root_ca_bundle_pem",
)


class ApplianceRootCAProvider(ApplianceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not news.get("nodes"):
            failures.append(CheckFailure("nodes", "at least one node is required."))
        pins = news.get("pins")
        for pin in [] if is_unknown(pins) else pins or []:
            try:
                pki.normalize_fingerprint(str(pin), "root_ca_sha256")
            except pki.CertificateError as problem:
                failures.append(CheckFailure("pins", str(problem)))
        if not is_unknown(news.get("root_ca_bundle_pem")):
            try:
                bundle = str(news.get("root_ca_bundle_pem") or "")
                pki.load_bundle(bundle, "the planned root CA bundle")
            except pki.CertificateError as problem:
                failures.append(CheckFailure("root_ca_bundle_pem", str(problem)))
        return CheckResult(news, failures)

    def converge(self, props: dict[str, Any]) -> dict[str, Any]:
        observation = _observe(props)
        planned = sorted(props["root_ca_sha256s"])
        try:
            roots = decide_trust(
                observation,
                list(props.get("pins") or []),
                bool(props["trust_on_first_use"]),
                _incoming(props),
            )
        except TrustDecisionError as problem:
            refusal = str(problem)
        else:
            refusal = ""
        if refusal:
            # Raised outside the `except`: one sentence, no chained repeat of it.
            raise RuntimeError(
                f"cluster {props['cluster']}: the appliance root CA changed after this run was "
                f"planned (planned {', '.join(planned)}; the nodes now publish "
                f"{', '.join(observation.node_root_ca_sha256s().values())}), and the new one "
                f"may not be trusted: {refusal} Nothing was trusted; run `pulumi preview` "
                "again to review it."
            )
        now_trusted = sorted(pki.sha256_fingerprint(root) for root in roots)
        if now_trusted != planned:
            raise RuntimeError(
                f"cluster {props['cluster']}: the appliance root CA changed after this run was "
                f"planned (planned {', '.join(planned)}; now {', '.join(now_trusted)}). Nothing "
                "was trusted; run `pulumi preview` again to review the new fingerprint."
            )
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs.update(_outputs(observation, roots))
        return outs

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # What the nodes publish now, without the trust decision: refresh reports drift,
        # and the next preview decides whether it may be trusted.
        observation = _observe(props)
        roots = list(observation.root_cas)
        incoming = _incoming(props)
        if (
            incoming is not None
            and pki.sha256_fingerprint(incoming) not in observation.root_ca_sha256s
        ):
            roots.append(incoming)
        outs = dict(props)
        outs.update(_outputs(observation, oldest_first(roots)))
        return ReadResult(id_=id_, outs=outs)


def _observe(props: dict[str, Any]) -> ClusterObservation:
    nodes = [NodeAddress.from_input(node) for node in props["nodes"]]
    return observe_cluster(str(props["cluster"]), nodes)


def _incoming(props: dict[str, Any]) -> x509.Certificate | None:
    pem = props.get("incoming_root_ca_pem")
    return pki.load_certificate(str(pem), "incoming_root_ca") if pem else None


def _outputs(observation: ClusterObservation, roots: Sequence[x509.Certificate]) -> dict[str, Any]:
    return {
        "root_ca_sha256s": [pki.sha256_fingerprint(root) for root in roots],
        "root_ca_bundle_pem": pki.bundle_pem(roots),
        "root_cas": [
            {
                "sha256": summary.sha256,
                "subject": summary.subject,
                "not_after": summary.not_after.isoformat(),
            }
            for summary in map(pki.summarize, roots)
        ],
        "node_root_ca_sha256s": observation.node_root_ca_sha256s(),
    }


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
        incoming_root_ca_pem: str | None,
        trusted_root_cas: Sequence[x509.Certificate],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "cluster": cluster,
            "nodes": [node.as_input() for node in nodes],
            "pins": pins,
            "trust_on_first_use": trust_on_first_use,
            "incoming_root_ca_pem": incoming_root_ca_pem or "",
            "root_ca_sha256s": [pki.sha256_fingerprint(root) for root in trusted_root_cas],
            "root_ca_bundle_pem": pki.bundle_pem(trusted_root_cas),
            # Output-only: known after apply (preview shows the inputs above).
            "root_cas": None,
            "node_root_ca_sha256s": None,
        }
        super().__init__(ApplianceRootCAProvider(), name, props, opts)
