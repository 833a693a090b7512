"""The load-balancer side of the trust: one small interface, one module per kind of load balancer.

The core (`components.access_trust`) only ever calls `declare_trust_store`; it never names a
vendor. Adding a kind (NSX-T load balancer, NSX Advanced Load Balancer, ...) means one new
module with `check` and `declare_trust` functions and one line in `_KINDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pulumi

__all__ = ["ClusterTrust", "TrustStoreOutputs", "check_trust_store", "declare_trust_store"]


@dataclass(frozen=True)
class ClusterTrust:
    """What a load balancer in front of one cluster must trust and verify."""

    cluster: str  # cluster name from settings, used in Pulumi resource names only
    service_fqdn: str  # the name every node certificate carries (CN and SAN)
    nodes: Sequence[Any]  # settings.Node: fqdn, address, service_port
    root_ca_bundle_pem: pulumi.Input[str]  # every root CA to trust (old + new in a rotation)
    root_ca_sha256s: pulumi.Input[Sequence[str]]  # their fingerprints, in bundle order
    previous_cluster: str | None = None  # the cluster's name before a rename (aliases)


@dataclass(frozen=True)
class TrustStoreOutputs:
    """What one load balancer trusts after the change, for exports and checks."""

    trusted_sha256s: pulumi.Output[Sequence[str]]
    object_names: pulumi.Input[list[str]]  # where the trust lives: CA object + profile, or a file
    # The resources that must be in place before a node may move to these root CAs: what
    # waits for "this load balancer trusts them" depends on exactly these.
    written: Sequence[pulumi.Resource] = ()


# kind -> module; a module has `check(load_balancer, cluster) -> list[str]` and `declare_trust`.
_KINDS = {"f5": "components.trust_stores.f5", "pem_file": "components.trust_stores.pem_file"}


def _module(load_balancer: Any) -> ModuleType:
    if load_balancer.kind not in _KINDS:
        raise ValueError(
            f"load balancer {load_balancer.name}: kind {load_balancer.kind!r} is not supported "
            f"(expected one of: {', '.join(sorted(_KINDS))})."
        )
    # Imported on first use, so that a kind's SDK (pulumi_f5bigip) loads only when a stack
    # uses it.
    return importlib.import_module(_KINDS[load_balancer.kind])


def check_trust_store(load_balancer: Any, cluster: Any) -> list[str]:
    """What would stop `load_balancer` from serving `cluster` (settings.Cluster), as operator
    sentences; the program asks every load balancer before it declares the first resource."""
    try:
        module = _module(load_balancer)
    except ValueError as problem:
        return [str(problem)]
    problems: list[str] = module.check(load_balancer, cluster)
    return problems


def declare_trust_store(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the resources that make `load_balancer` trust and verify the cluster's nodes
    (after `check_trust_store` found nothing wrong)."""
    outputs: TrustStoreOutputs = _module(load_balancer).declare_trust(load_balancer, trust, parent)
    return outputs
