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
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    ApplianceError,
    configurator_paths,
    key_log_refusal,
)
from components.settings import F5LoadBalancer, Settings
from components.trust_stores import check_trust_store
from components.trust_stores.bigip_rest import BIGIP_PASSWORD_VARIABLE

__all__ = [
    "BIGIP_PASSWORD_VARIABLE",
    "check_credentials",
    "check_load_balancers",
    "warn_about_environment",
]


def check_credentials(settings: Settings, approved: Mapping[str, ApprovedCluster]) -> None:
    """Raise pulumi.RunError listing every credential this run will need but cannot find."""
    problems = []
    logs_in = []
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
        if reasons:
            logs_in.append(cluster.name)
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
    if logs_in:
        try:
            configurator_paths()  # an override that does not parse is said while planning
        except ApplianceError as problem:
            problems.append(f"cluster(s) {', '.join(logs_in)}: {problem}")
    refusal = key_log_refusal()
    if logs_in and refusal:
        problems.append(
            f"cluster(s) {', '.join(logs_in)}: this run would log in to the appliance "
            f"configurator, but {refusal}"
        )
    # The program's own REST resources log in to every F5 entry whenever its declaration
    # changed or on refresh; which runs that are is not known here, so any run is refused.
    bigips = [lb.name for lb in settings.load_balancers if isinstance(lb, F5LoadBalancer)]
    if bigips and refusal:
        problems.append(
            f"load balancer(s) {', '.join(bigips)}: this run may log in to the BIG-IP "
            f"management API, but {refusal}"
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
    # Logical names join the entry's and the cluster's names with "-", which both may
    # contain: entry "a" for cluster "b-c" and entry "a-b" for cluster "c" would declare the
    # same URNs (refused by the engine only after other registrations went through).
    seen: dict[str, str] = {}
    for lb in settings.load_balancers:
        joined = f"{lb.name}-{lb.cluster}"
        if joined in seen:
            problems.append(
                f"load balancer {lb.name} (cluster {lb.cluster}) and load balancer "
                f"{seen[joined]} give their resources the same names ({joined}-...); rename "
                "one of them."
            )
        seen.setdefault(joined, f"{lb.name} (cluster {lb.cluster})")
    if problems:
        raise pulumi.RunError("\n".join(problems))


def warn_about_environment() -> None:
    key_log = os.environ.get("SSLKEYLOGFILE")
    if key_log and not os.path.isdir(os.path.dirname(os.path.abspath(key_log))):
        # Python's TLS opens that file for every connection; said once, here, instead of as
        # a FileNotFoundError on every node.
        raise pulumi.RunError(
            f"environment variable SSLKEYLOGFILE names {key_log}, whose directory does not "
            "exist, so no TLS connection can be made; unset SSLKEYLOGFILE (expected: unset, "
            "or a file in an existing directory while debugging TLS)."
        )
    if key_log:
        pulumi.log.warn(
            "SSLKEYLOGFILE is set: the TLS session keys of this run are written to that file; "
            "a run that logs in to the configurator (which carries the appliance admin "
            "password) is refused unless WS1_ACCESS_ALLOW_SSLKEYLOGFILE=true. Unset it unless "
            "you are debugging TLS."
        )
