"""Dynamic resource: the appliance root CA(s) a cluster's load balancers must trust.

Inputs carry the program-time decision (fingerprints and PEM bundle of the root CAs the
nodes publish, plus an incoming root CA during a rotation), so preview shows exactly what
will be trusted. `create`/`update` observe the cluster again and refuse to go on if it
changed since preview; `read` reports what the nodes publish now (refresh).

With the stack's own CA (`ssh.issuing_ca: generated`, components/appliance/stack_ca.py) its
certificate is an input (`stack_ca_pem`) that is approved as it is: it is always trusted, and
a node publishing exactly it needs no pin. The program could only sort the nodes by the
CA's subject (`stack_ca_claims`); `check` settles them by fingerprint where the certificate
is known, so preview refuses a root CA that carries the stack CA's name but is not it.
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
    impostor_refusal,
    observe_cluster,
    oldest_first,
    with_stack_ca,
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
    "stack_ca_pem",
    "stack_ca_claims",
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
        failures.extend(_check_claims(news))
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
                stack_ca=_stack_ca(props),
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
        stack_ca = _stack_ca(props)
        ordered = oldest_first(roots) if stack_ca is None else with_stack_ca(roots, stack_ca)
        outs = dict(props)
        outs.update(_outputs(observation, ordered))
        return ReadResult(id_=id_, outs=outs)


def _check_claims(news: dict[str, Any]) -> list[CheckFailure]:
    """Nodes whose root CA carries the stack CA's subject must publish exactly the stack's CA.
    While preview creates the CA its certificate is unknown, and no published root CA can be
    a CA that does not exist yet."""
    claims = news.get("stack_ca_claims") or {}
    pem = news.get("stack_ca_pem")
    if not claims or is_unknown(claims):
        return []
    if is_unknown(pem) or not pem:
        own = "not generated yet: a new one is made in this run"
    else:
        own = pki.sha256_fingerprint(pki.load_certificate(str(pem), "the stack's CA"))
    impostors = {str(fqdn): str(sha256) for fqdn, sha256 in claims.items() if sha256 != own}
    if not impostors:
        return []
    return [CheckFailure("stack_ca_claims", impostor_refusal(str(news["cluster"]), impostors, own))]


def _stack_ca(props: dict[str, Any]) -> x509.Certificate | None:
    pem = props.get("stack_ca_pem")
    return pki.load_certificate(str(pem), "the stack's CA") if pem else None


def _fingerprints(roots: Sequence[x509.Certificate]) -> list[str]:
    return [pki.sha256_fingerprint(root) for root in roots]


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
        trusted_root_cas: Sequence[x509.Certificate] | pulumi.Output[Sequence[x509.Certificate]],
        stack_ca_pem: pulumi.Input[str] | None = None,
        stack_ca_claims: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        # With the stack's own CA the planned roots are an Output (they include a certificate
        # known only as a resource output); otherwise plain values, as preview shows them.
        if isinstance(trusted_root_cas, pulumi.Output):
            sha256s: Any = trusted_root_cas.apply(_fingerprints)
            bundle: Any = trusted_root_cas.apply(pki.bundle_pem)
        else:
            sha256s, bundle = _fingerprints(trusted_root_cas), pki.bundle_pem(trusted_root_cas)
        props: dict[str, Any] = {
            "cluster": cluster,
            "nodes": [node.as_input() for node in nodes],
            "pins": pins,
            "trust_on_first_use": trust_on_first_use,
            "incoming_root_ca_pem": incoming_root_ca_pem or "",
            "root_ca_sha256s": sha256s,
            "root_ca_bundle_pem": bundle,
            # Output-only: known after apply (preview shows the inputs above).
            "root_cas": None,
            "node_root_ca_sha256s": None,
        }
        if stack_ca_pem is not None:
            # Only for such a cluster: a stack without its own CA plans no change.
            props["stack_ca_pem"] = stack_ca_pem
            props["stack_ca_claims"] = stack_ca_claims or {}
        super().__init__(ApplianceRootCAProvider(), name, props, opts)
