"""certificate_method: configurator (EXPERIMENTAL): "Auto Generate Certificate" over the
appliance configurator's HTTP session.

The session pattern (cookie, X-Vk token, form POST) is VMware's (Initialize-WorkspaceOne in
vmware/power-validated-solutions-for-cloud-foundation); the certificate requests are NOT
publicly documented: their paths and fields are this project's guess, kept in one table
(client.CONFIGURATOR_PATHS). Hence `probe_configurator`, a read-only look while planning that
stops the run when a node does not answer as that table expects.
"""

from __future__ import annotations

from collections.abc import Sequence

from components import pki
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    PATHS_OVERRIDE_VARIABLE,
    ApplianceError,
    ApplianceUnavailable,
    NodeAddress,
    ServedNode,
    configurator_paths,
    observe_node,
)
from components.appliance.routes import CertificateRoute, Credential
from components.appliance.session import open_configurator

__all__ = ["ConfiguratorRoute", "probe_configurator"]


class ConfiguratorRoute(CertificateRoute):
    def __init__(self, password_key: str, credential: Credential, trusted_roots_pem: str) -> None:
        self._password_key = password_key
        self._credential = credential
        self._trusted_pem = trusted_roots_pem

    def missing(self) -> list[str]:
        if self._credential(self._password_key, ADMIN_PASSWORD_VARIABLE) is None:
            return [
                "no appliance admin password is configured; set it with `pulumi config set "
                f"--secret {self._password_key} ...` or the {ADMIN_PASSWORD_VARIABLE} "
                "environment variable"
            ]
        return []

    def install(
        self, node: NodeAddress, current: ServedNode, common_name: str, sans: Sequence[str]
    ) -> ServedNode:
        password = self._credential(self._password_key, ADMIN_PASSWORD_VARIABLE) or ""
        # The certificate the service port just served is pinned first: no second handshake
        # when the configurator presents the same one (see open_configurator).
        with open_configurator(node, self._trusted_pem, password, current=current) as session:
            session.generate_certificate(common_name, list(sans))
        after = observe_node(node)
        pki.check_server_names(
            after.served_certificate,
            common_name,
            list(sans),
            f"the certificate node {node.fqdn} serves after regeneration",
        )
        return after


def probe_configurator(
    node: NodeAddress, current: ServedNode, trusted_roots_pem: str, password: str
) -> None:
    """Read-only: the login page (200, no redirect, the X-Vk token), the login, and the
    current-certificate read (a JSON object), exactly as the table expects. Nothing is
    written. Raises ApplianceError saying what was answered and how to compare it."""
    paths = configurator_paths()
    try:
        with open_configurator(node, trusted_roots_pem, password, current=current) as session:
            session.current_certificate()
    except ApplianceUnavailable:
        # Not evidence about the path table: the write itself meets it, node by node, under
        # the outage guard.
        return
    except (ApplianceError, pki.CertificateError) as problem:
        table = ", ".join(f"{name}: {method} {path}" for name, (method, path) in paths.items())
        raise ApplianceError(
            f"node {node.fqdn}: the configurator does not answer as this program expects, so "
            f"certificate_method: configurator (experimental) stops here, before any write. "
            f"What it answered: {problem} The program expects: {table}; every answer HTTP 200 "
            "without redirects, JSON after the login page. To compare: open "
            f"https://{node.fqdn}:{node.configurator_port}/cfg/ssl in a browser with the "
            "developer tools' Network tab recording, regenerate the certificate by hand, save "
            "the capture as HAR and compare its requests with that table (README, 'Checking "
            f"the configurator paths'; override them with {PATHS_OVERRIDE_VARIABLE}), or use "
            "certificate_method: ssh."
        ) from None
