"""The other direction, opt-in: does each node's appliance trust the load balancer root CA that
the stack declares (`load_balancer_root_ca`)? Reading it takes a configurator login (admin
password from WS1_ACCESS_ADMIN_PASSWORD), so the audit does it only when asked (--appliance).

The session is the program's own (`open_configurator`): TLS verified against the root CA the
node publishes, used only where the stack pins that root CA or trusts on first use, exactly
the root CAs the program itself would log in with. One GET of the installed load balancer
root CA; nothing is sent but the login.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from components import pki
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    ApplianceError,
    NodeAddress,
    ServedNode,
)
from components.appliance.session import open_configurator
from components.settings import Cluster

__all__ = ["ApplianceTrust", "read_appliance_trust"]


@dataclass(frozen=True)
class ApplianceTrust:
    """`problem`: the node does not trust the declared root CA; `unknown`: could not tell."""

    fqdn: str
    problem: str | None = None
    unknown: str | None = None


def read_appliance_trust(
    cluster: Cluster, address: NodeAddress, served: ServedNode
) -> ApplianceTrust:
    declared_pem = cluster.load_balancer_root_ca
    if declared_pem is None:
        return ApplianceTrust(address.fqdn)
    fqdn = address.fqdn
    password = os.environ.get(ADMIN_PASSWORD_VARIABLE)
    if not password:
        return ApplianceTrust(
            fqdn,
            unknown=f"node {fqdn}: set {ADMIN_PASSWORD_VARIABLE} to read which load balancer "
            "root CA the appliance trusts (--appliance).",
        )
    pins = cluster.root_ca_sha256
    if (pins and served.root_ca_sha256 not in pins) or (
        not pins and not cluster.trust_on_first_use
    ):
        return ApplianceTrust(
            fqdn,
            unknown=f"node {fqdn}: not logging in to its configurator: the root CA it publishes "
            f"({served.root_ca_sha256}) is neither pinned nor trusted on first use.",
        )
    try:
        declared = pki.load_certificate(declared_pem, "load_balancer_root_ca")
        with open_configurator(
            address, pki.to_pem(served.root_ca), password, current=served
        ) as session:
            installed_pem = session.load_balancer_root_ca()
        installed = (
            pki.load_bundle(installed_pem, f"the load balancer root CA on node {fqdn}")
            if installed_pem.strip()
            else []
        )
    except (ApplianceError, pki.CertificateError) as error:
        return ApplianceTrust(fqdn, unknown=f"node {fqdn}: {error}")
    wanted = pki.sha256_fingerprint(declared)
    held = [pki.sha256_fingerprint(c) for c in installed]
    if wanted in held:
        return ApplianceTrust(fqdn)
    return ApplianceTrust(
        fqdn,
        problem=f"the appliance on node {fqdn} does not trust the load balancer root CA "
        f"{wanted} (load_balancer_root_ca); it trusts {', '.join(held) or 'none'}.",
    )
