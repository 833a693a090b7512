"""Checks made before anything is declared, so that a refusal registers nothing.

An exception raised after the first registration does not take that registration back (the
SDK waits for outstanding ones; reference/pulumi.md), so every refusal happens here. A
credential that applying the plan will need is looked for while planning, so that a missing
one stops `pulumi preview` with one sentence instead of failing half-way through
`pulumi up`. Values are never read here, only whether they are there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pulumi

from components.access_trust import ApprovedCluster, required_names
from components.appliance.client import ADMIN_PASSWORD_VARIABLE
from components.settings import F5LoadBalancer, Settings
from components.trust_stores import check_trust_store

__all__ = [
    "BIGIP_PASSWORD_VARIABLE",
    "check_credentials",
    "check_load_balancers",
    "warn_about_environment",
]

BIGIP_PASSWORD_VARIABLE = "BIGIP_PASSWORD"  # noqa: S105 (a variable's name)


def check_credentials(settings: Settings, approved: Mapping[str, ApprovedCluster]) -> None:
    """Raise pulumi.RunError listing every credential this run will need but cannot find."""
    problems = []
    for cluster in settings.clusters:
        reasons = []
        if cluster.manage_certificate:
            nodes = approved[cluster.name].observation.nodes_needing_certificate(
                cluster.service_fqdn, required_names(cluster)
            )
            if nodes:
                reasons.append(f"node(s) {', '.join(nodes)} need a new certificate")
        if cluster.load_balancer_root_ca:
            reasons.append("the load balancer root CA is managed on the appliance")
        if (
            reasons
            and not cluster.admin_password_in_config
            and not os.environ.get(ADMIN_PASSWORD_VARIABLE)
        ):
            problems.append(
                f"cluster {cluster.name}: {' and '.join(reasons)}, which needs the appliance "
                f"admin password, but neither the secret config key {cluster.admin_password_key} "
                f"nor the environment variable {ADMIN_PASSWORD_VARIABLE} is set; set it with "
                f"`pulumi config set --secret {cluster.admin_password_key}`."
            )
    for lb in settings.load_balancers:
        if (
            isinstance(lb, F5LoadBalancer)
            and not lb.password_in_config
            and not os.environ.get(BIGIP_PASSWORD_VARIABLE)
        ):
            problems.append(
                f"load balancer {lb.name}: neither the secret config key {lb.password_key} nor "
                f"the environment variable {BIGIP_PASSWORD_VARIABLE} is set; set it with "
                f"`pulumi config set --secret {lb.password_key}`."
            )
    if problems:
        raise pulumi.RunError("\n".join(problems))


def check_load_balancers(settings: Settings) -> None:
    """Raise pulumi.RunError listing what any load balancer of any cluster refuses."""
    problems = [
        f"cluster {cluster.name}: {problem}"
        for cluster in settings.clusters
        for lb in settings.load_balancers_for(cluster.name)
        for problem in check_trust_store(lb, cluster)
    ]
    if problems:
        raise pulumi.RunError("\n".join(problems))


def warn_about_environment() -> None:
    if os.environ.get("SSLKEYLOGFILE"):
        pulumi.log.warn(
            "SSLKEYLOGFILE is set: the TLS session keys of this run, including the configurator "
            "login that carries the appliance admin password, are written to that file. Unset "
            "it unless you are debugging TLS."
        )
