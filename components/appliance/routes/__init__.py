"""How a node gets its certificate: one small interface, one module per route.

Shaped like the trust-store side (components/trust_stores): `ApplianceCertificate` keeps the
rolling order and the outage guard for every route, and only asks a route to observe a node,
to install a certificate on it, and to say what it needs first. Which route a cluster uses is
the stack's `certificate_method` (README, "Certificate routes"); a new route is one module.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from components.appliance.client import NodeAddress, ServedNode, observe_node
from components.settings import SSH_SECRET_VARIABLES

__all__ = ["METHODS_THAT_WRITE", "CertificateRoute", "Credential", "open_route", "route_secret"]

# (config key, environment variable) -> the secret, or None: TrustProvider.credential.
Credential = Callable[[str, str], str | None]

# What each write route is, for the preview warning of `certificate_method: none`.
METHODS_THAT_WRITE = {
    "lifecycle_manager": "lifecycle_manager (Aria Suite Lifecycle's public REST API replaces "
    "the product certificate with one from your CA)",
    "ssh": "ssh (the appliance's own installExternalCertificate.hzn as root, VMware's "
    "documented automation; certificates from your CA or from a CA the stack generates)",
    "configurator": "configurator (experimental: its certificate requests are not publicly "
    "documented)",
}


class CertificateRoute(abc.ABC):
    """One way of putting a certificate with given names on one node."""

    # True for a route whose one request changes every node of the cluster (Lifecycle):
    # then every node, not only those that needed it, is observed and guarded afterwards.
    changes_every_node = False

    def observe(self, node: NodeAddress) -> ServedNode:
        """What the node serves now (its TLS handshake and published root CA)."""
        return observe_node(node)

    def observed(self, nodes: Sequence[ServedNode]) -> None:  # noqa: B027 (optional hook)
        """What every node of the cluster served before any change, in the stack's order
        (a route may reuse a certificate it finds there); most routes need nothing of it."""

    @abc.abstractmethod
    def missing(self) -> list[str]:
        """What this route needs but cannot find (sentences); checked before any node."""

    @abc.abstractmethod
    def install(
        self, node: NodeAddress, current: ServedNode, common_name: str, sans: Sequence[str]
    ) -> ServedNode:
        """Give `node` a certificate for these names; return what it serves afterwards."""


def route_secret(
    credential: Credential, route: Mapping[str, Any], setting: str, default_key: str
) -> str | None:
    """The secret whose config key name the route's `setting` holds. Only the default key
    name falls back to its environment variable (as settings.password_key says)."""
    key = str(route[setting])
    variable = SSH_SECRET_VARIABLES[default_key] if key == default_key else ""
    return credential(key, variable)


def open_route(
    props: Mapping[str, Any], credential: Credential, trusted_roots_pem: str
) -> CertificateRoute:
    """The route an ApplianceCertificate's inputs name (no `route` input: the configurator,
    as every stack declared before routes existed)."""
    route: Mapping[str, Any] = props.get("route") or {"method": "configurator"}
    method = route.get("method")
    if method == "lifecycle_manager":
        from components.appliance.routes.lifecycle import LifecycleRoute

        return LifecycleRoute(route, credential, trusted_roots_pem)
    if method == "ssh":
        from components.appliance.routes.ssh import SshInstallRoute

        # The stack's own CA (ssh.issuing_ca: generated) brings its key as a secret input.
        key = props.get("issuing_ca_key_pem")
        return SshInstallRoute(route, credential, trusted_roots_pem, str(key) if key else None)
    if method == "configurator":
        from components.appliance.routes.configurator import ConfiguratorRoute

        return ConfiguratorRoute(str(props["admin_password_key"]), credential, trusted_roots_pem)
    raise RuntimeError(f"certificate route {method!r} is not one this program knows")
