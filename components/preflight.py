"""Checks made before anything is declared, so that a refusal registers nothing.

An exception raised after the first registration does not take that registration back (the
SDK waits for outstanding ones; reference/pulumi.md), so every refusal happens here. A
credential that applying the plan will need is looked for while planning, so that a missing
one stops `pulumi preview` with one sentence instead of failing half-way through
`pulumi up`. Values are never read here, only whether they are there; the one exception is
`probe_configurators`, the read-only look the experimental configurator route takes first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pulumi

from components import pki
from components.access_trust import ApprovedCluster, node_addresses, nodes_to_fix
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    ApplianceError,
    configurator_paths,
    key_log_refusal,
)
from components.settings import (
    BIGIP_PASSWORD_VARIABLE,
    PROJECT,
    SSH_SECRET_VARIABLES,
    Cluster,
    F5LoadBalancer,
    Settings,
)
from components.trust_stores import check_trust_store

__all__ = [
    "BIGIP_PASSWORD_VARIABLE",
    "check_credentials",
    "check_load_balancers",
    "probe_configurators",
    "warn_about_environment",
]


def check_credentials(settings: Settings, approved: Mapping[str, ApprovedCluster]) -> None:
    """Raise pulumi.RunError listing every credential this run will need but cannot find."""
    problems = []
    logs_in = []
    lifecycle = []  # clusters whose run would send requests to Aria Suite Lifecycle
    for cluster in settings.clusters:
        reasons = []
        nodes = _nodes_to_fix(cluster, approved[cluster.name])
        if nodes and cluster.certificate_method == "lifecycle_manager":
            lifecycle.append(cluster.name)
        if nodes and cluster.certificate_method == "configurator":
            reasons.append(f"node(s) {', '.join(nodes)} need a new certificate")
        route = cluster.ssh if cluster.certificate_method == "ssh" else cluster.lifecycle_manager
        if nodes and route is not None:
            for key in route.secret_keys:
                variable = SSH_SECRET_VARIABLES.get(key)
                if key in route.keys_in_config or (variable and os.environ.get(variable)):
                    continue
                fallback = f" nor the environment variable {variable}" if variable else ""
                problems.append(
                    f"cluster {cluster.name}: node(s) {', '.join(nodes)} need a new certificate "
                    f"through the {cluster.certificate_method} route, which needs the secret "
                    f"config key {key}, but "
                    f"neither that key{fallback} is set; set it with `pulumi config set "
                    f"--secret {key}`."
                )
        if cluster.load_balancer_root_ca and cluster.certificate_method == "configurator":
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
    if lifecycle and refusal:
        problems.append(
            f"cluster(s) {', '.join(lifecycle)}: this run would send the Aria Suite Lifecycle "
            f"password and a node's private key, but {refusal}"
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


def _nodes_to_fix(cluster: Cluster, approved: ApprovedCluster) -> list[str]:
    if not cluster.writes_certificates:
        return []
    return nodes_to_fix(cluster, approved.observation)


def probe_configurators(settings: Settings, approved: Mapping[str, ApprovedCluster]) -> None:
    """certificate_method configurator is experimental: before a plan that writes through it,
    each node that would be written to is probed read-only (probe_configurator), and the run
    stops while planning when one does not answer as the path table expects."""
    problems = []
    config = pulumi.Config(PROJECT)
    for cluster in settings.clusters:
        if cluster.certificate_method != "configurator":
            continue
        to_fix = set(_nodes_to_fix(cluster, approved[cluster.name]))
        if not to_fix:
            continue
        # Imported here: the probe needs requests, which a plan without it never loads.
        from components.appliance.routes.configurator import probe_configurator

        password = config.get(cluster.admin_password_key) or os.environ.get(
            ADMIN_PASSWORD_VARIABLE, ""
        )
        observation = approved[cluster.name].observation
        trusted = "".join(
            pki.bundle_pem([root]) for root in approved[cluster.name].trusted_root_cas
        )
        addresses = {node.fqdn: node for node in node_addresses(cluster)}
        for served in observation.nodes:
            if served.fqdn not in to_fix:
                continue
            try:
                probe_configurator(addresses[served.fqdn], served, trusted, password)
            except ApplianceError as problem:
                problems.append(f"cluster {cluster.name}: {problem}")
    if problems:
        raise pulumi.RunError("\n".join(problems))
