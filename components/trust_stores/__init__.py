"""The load-balancer side of the trust: one small interface, one module per kind of load balancer.

The core (`components.access_trust`) only ever calls `declare_trust_store`; it never names a
vendor. Adding a kind (NSX-T load balancer, NSX Advanced Load Balancer, ...) means one new
module with a `declare_trust` function and one line in `_KINDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

__all__ = ["ClusterTrust", "TrustStoreOutputs", "declare_trust_store"]


@dataclass(frozen=True)
class ClusterTrust:
    """What a load balancer in front of one cluster must trust and verify."""

    cluster: str  # cluster name from settings, used in resource and object names
    service_fqdn: str  # the name every node certificate carries (CN and SAN)
    nodes: Sequence[Any]  # settings.Node: fqdn, address, service_port
    root_ca_bundle_pem: pulumi.Input[str]  # every root CA to trust (old + new in a rotation)
    root_ca_sha256s: pulumi.Input[Sequence[str]]  # their fingerprints, in bundle order


@dataclass(frozen=True)
class TrustStoreOutputs:
    """What one load balancer trusts after the change, for exports and checks."""

    trusted_sha256s: pulumi.Output[list[str]]
    object_names: pulumi.Output[list[str]]  # where the trust lives: CA object + profile, or a file


TrustStoreFactory = Callable[[Any, ClusterTrust, pulumi.Resource], TrustStoreOutputs]


# kind -> the module that declares it. A module is imported only when a stack has a load
# balancer of its kind, so a stack without F5 never loads pulumi_f5bigip (a large SDK).
_KINDS: dict[str, str] = {
    "f5": "components.trust_stores.f5",
    "pem_file": "components.trust_stores.pem_file",
}


def declare_trust_store(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the resources that make `load_balancer` trust and verify the cluster's nodes."""
    if load_balancer.kind not in _KINDS:
        raise ValueError(
            f"load balancer {load_balancer.name}: kind {load_balancer.kind!r} is not supported "
            f"(expected one of: {', '.join(sorted(_KINDS))})."
        )
    declare: TrustStoreFactory = importlib.import_module(_KINDS[load_balancer.kind]).declare_trust
    return declare(load_balancer, trust, parent)
