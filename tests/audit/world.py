"""Emulated clusters and BIG-IPs, and the stack files that describe them, for audit tests."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from emulators.appliance import ApplianceCluster
from emulators.bigip import EmulatedBigip

BIGIP_PASSWORD = "audit-bigip-Pa55"  # noqa: S105 (the emulated BIG-IP's test password)
BIGIP_USER = "auditor"


def nodes_of(cluster: ApplianceCluster) -> list[dict[str, Any]]:
    return [
        {
            "fqdn": node.fqdn,
            "address": node.address,
            "service_port": node.port,
            "configurator_port": node.configurator_port,
        }
        for node in cluster.nodes
    ]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cluster_config(
    name: str,
    cluster: ApplianceCluster,
    *,
    pins: Sequence[str] = (),
    extra_nodes: Sequence[dict[str, Any]] = (),
    **more: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "service_fqdn": cluster.service_fqdn,
        "ssl_termination": "passthrough",
        "nodes": [*nodes_of(cluster), *extra_nodes],
        "manage_certificate": False,
        **more,
    }
    if pins:
        config["root_ca_sha256"] = list(pins)
    else:
        config["trust_on_first_use"] = True
    return config


def pem_file_lb(name: str, cluster: str, path: Path) -> dict[str, Any]:
    return {"name": name, "kind": "pem_file", "cluster": cluster, "path": str(path)}


def f5_lb(name: str, cluster: str, bigip: EmulatedBigip, ca_file: Path) -> dict[str, Any]:
    ca_file.write_text(bigip.management_ca_pem)
    return {
        "name": name,
        "kind": "f5",
        "cluster": cluster,
        "address": bigip.address,
        "port": bigip.port,
        "username": BIGIP_USER,
        "management_ca_path": str(ca_file),
    }


def bigip_trusting(
    bigip: EmulatedBigip, service_fqdn: str, roots_pem: str, *, authenticate_name: str = ""
) -> None:
    """The profile and CA object as the program's F5 resources leave them on the device."""
    ca_path = f"/Common/ws1-{service_fqdn}-rootca"
    bigip.add_certificate(ca_path, roots_pem)
    bigip.add_server_ssl_profile(
        f"/Common/ws1-{service_fqdn}-serverssl",
        caFile=ca_path,
        peerCertMode="require",
        authenticate="always",
        authenticateDepth=2,
        untrustedCertResponseControl="drop",
        expireCertResponseControl="drop",
        serverName=service_fqdn,
        authenticateName=authenticate_name or service_fqdn,
    )


def write_stack(
    path: Path,
    clusters: Sequence[dict[str, Any]],
    load_balancers: Sequence[dict[str, Any]],
    **more: Any,
) -> Path:
    config: dict[str, Any] = {
        "ws1-access-lb-trust:clusters": list(clusters),
        "ws1-access-lb-trust:load_balancers": list(load_balancers),
    }
    for key, value in more.items():
        config[f"ws1-access-lb-trust:{key}"] = value
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path
