"""Stack files as the harness sees them: their config, with nodes pointed at emulators."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from emulators.appliance import ApplianceCluster

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROGRAM = PROJECT_DIR / "__main__.py"
PROJECT = "ws1-access-lb-trust"


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` of stacks/Pulumi.<stack>.yaml, keys without the project prefix."""
    document = yaml.safe_load((PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return {key.split(":", 1)[1]: value for key, value in document["config"].items()}


def pointed_at(config: dict[str, Any], emulators: dict[str, ApplianceCluster]) -> dict[str, Any]:
    """The config with each cluster's nodes reached at its emulator's loopback ports."""
    config = copy.deepcopy(config)
    for cluster in config["clusters"]:
        emulator = emulators[cluster["name"]]
        for node in cluster["nodes"]:
            emulated = emulator.node(node["fqdn"])
            node.update(
                address=emulated.address,
                service_port=emulated.port,
                configurator_port=emulated.configurator_port,
            )
    return config


def with_configurator_route(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every cluster on certificate_method configurator (the shipped local
    stack uses ssh; tests that exercise the configurator's regeneration switch it here)."""
    for cluster in config["clusters"]:
        cluster["certificate_method"] = "configurator"
        cluster.pop("ssh", None)
        for node in cluster["nodes"]:
            node.pop("ssh_port", None)
            node.pop("ssh_host_key", None)
    return config
