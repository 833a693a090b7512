"""Dynamic resource: the load balancer's private root CA, installed on every appliance node.

This is the seed procedure's "What to do next": where the load balancer terminates SSL with
a certificate from its own private CA, the appliance must trust that CA. Reading it needs a
configurator login, so it is read on `refresh` (and on apply), never while planning.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, ReadResult

from components import pki
from components.appliance.base import ApplianceProvider
from components.appliance.client import ADMIN_PASSWORD_VARIABLE, ApplianceError, NodeAddress
from components.dynamic import is_unknown

__all__ = ["ApplianceLoadBalancerRootCA", "ApplianceLoadBalancerRootCAProvider"]

# What refresh records for a node it could not check; never equal to a fingerprint.
UNVERIFIABLE = "unverifiable"

_INPUT_KEYS = (
    "cluster",
    "nodes",
    "certificate_pem",
    "sha256",
    "admin_password_key",
    "trusted_root_ca_bundle_pem",
)


class ApplianceLoadBalancerRootCAProvider(ApplianceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        pem = news.get("certificate_pem")
        if not is_unknown(pem):
            try:
                certificate = pki.load_certificate(str(pem or ""), "load_balancer_root_ca")
                pki.check_ca(certificate, "load_balancer_root_ca")
            except pki.CertificateError as problem:
                failures.append(CheckFailure("certificate_pem", str(problem)))
        return CheckResult(news, failures)

    def needs_repair(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        # Refresh found a node with another CA installed: put ours back.
        installed = olds.get("installed_sha256s") or {}
        return any(value != news.get("sha256") for value in installed.values())

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outs = dict(props)
        outs["installed_sha256s"] = {
            node.fqdn: _installed_sha256(pem) if pem is not None else UNVERIFIABLE
            for node, pem in self._each_node(props, None)
        }
        return ReadResult(id_=id_, outs=outs)

    def converge(self, props: dict[str, Any]) -> dict[str, Any]:
        installed = {
            node.fqdn: _installed_sha256(pem or "")
            for node, pem in self._each_node(props, str(props["certificate_pem"]))
        }
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs["installed_sha256s"] = installed
        return outs

    def _each_node(
        self, props: dict[str, Any], install_pem: str | None
    ) -> list[tuple[NodeAddress, str | None]]:
        """Log in to each node; install `install_pem` where it is missing; return what is there.

        Reading only (refresh): a node whose TLS no longer verifies against the stored root
        CAs (the root CA was regenerated since) is reported as None, so that refresh still
        completes and the next `up`, with the new root CA, repairs it. There is no
        unverified fallback: the login carries the admin password.
        """
        # Imported here: the program declares this resource without ever loading requests.
        from components.appliance.session import open_configurator

        password_key = str(props["admin_password_key"])
        password = self.credential(password_key, ADMIN_PASSWORD_VARIABLE)
        if password is None:
            raise RuntimeError(
                f"cluster {props['cluster']}: the load balancer root CA is managed but no "
                f"appliance admin password is configured; set it with `pulumi config set "
                f"--secret {password_key} ...` or the {ADMIN_PASSWORD_VARIABLE} environment "
                "variable."
            )
        found: list[tuple[NodeAddress, str | None]] = []
        for node in (NodeAddress.from_input(value) for value in props["nodes"]):
            if install_pem is None:
                try:
                    with open_configurator(
                        node, str(props["trusted_root_ca_bundle_pem"]), password
                    ) as configurator:
                        found.append((node, configurator.load_balancer_root_ca()))
                except ApplianceError:
                    found.append((node, None))
                continue
            with open_configurator(
                node, str(props["trusted_root_ca_bundle_pem"]), password
            ) as configurator:
                current = configurator.load_balancer_root_ca()
                if _installed_sha256(current) != props["sha256"]:
                    configurator.install_load_balancer_root_ca(install_pem)
                    current = configurator.load_balancer_root_ca()
                    if _installed_sha256(current) != props["sha256"]:
                        raise RuntimeError(
                            f"node {node.fqdn}: the load balancer root CA was sent but the "
                            "configurator reports another one installed."
                        )
            found.append((node, current))
        return found


def _installed_sha256(pem: str) -> str:
    if not pem.strip():
        return ""
    return pki.sha256_fingerprint(pki.load_certificate(pem, "the installed load balancer root CA"))


class ApplianceLoadBalancerRootCA(
    pulumi.dynamic.Resource, module="ws1", name="ApplianceLoadBalancerRootCA"
):
    """The load balancer's root CA as the appliance nodes trust it."""

    sha256: pulumi.Output[str]
    installed_sha256s: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        *,
        cluster: str,
        nodes: list[NodeAddress],
        certificate_pem: str,
        admin_password_key: str,
        trusted_root_ca_bundle_pem: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        certificate = pki.load_certificate(certificate_pem, "load_balancer_root_ca")
        props: dict[str, Any] = {
            "cluster": cluster,
            "nodes": [node.as_input() for node in nodes],
            "certificate_pem": pki.to_pem(certificate),
            "sha256": pki.sha256_fingerprint(certificate),
            "admin_password_key": admin_password_key,
            "trusted_root_ca_bundle_pem": trusted_root_ca_bundle_pem,
            "installed_sha256s": None,
        }
        super().__init__(ApplianceLoadBalancerRootCAProvider(), name, props, opts)
