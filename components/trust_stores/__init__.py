"""The load-balancer side of the trust: one small interface, one module per kind of load balancer.

The core (`components.access_trust`) only ever calls `declare_trust_store`; it never names a
vendor. Adding a kind (NSX-T load balancer, NSX Advanced Load Balancer, ...) means one new
module with a `declare_trust` function and one line in `_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

__all__ = ["ClusterTrust", "TrustStoreOutputs", "declare_trust_store"]


@dataclass(frozen=True)
class ClusterTrust:
    """What a load balancer in front of one cluster must trust and verify."""

    cluster: str  # cluster name from settings, used in Pulumi resource names only
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


def _kinds() -> dict[str, TrustStoreFactory]:
    # Imported here so that a kind's SDK (pulumi_f5bigip) loads only when a stack uses it.
    from components.trust_stores import f5, pem_file

    return {"f5": f5.declare_trust, "pem_file": pem_file.declare_trust}


def declare_trust_store(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the resources that make `load_balancer` trust and verify the cluster's nodes."""
    kinds = _kinds()
    if load_balancer.kind not in kinds:
        raise ValueError(
            f"load balancer {load_balancer.name}: kind {load_balancer.kind!r} is not supported "
            f"(expected one of: {', '.join(sorted(kinds))})."
        )
    return kinds[load_balancer.kind](load_balancer, trust, parent)
