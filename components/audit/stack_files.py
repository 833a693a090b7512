"""Read stack files (Pulumi.<stack>.yaml) directly, without the Pulumi CLI, into the program's
own settings: every input rule and error message is `components.settings.parse_settings`'."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.settings import (
    PROJECT,
    SSH_SECRET_VARIABLES,
    Settings,
    SettingsError,
    parse_settings,
)

__all__ = ["StackFile", "StackFileError", "read_stack_file"]

_MAX_BYTES = 4 * 1024 * 1024


class StackFileError(ValueError):
    """A stack file could not be read or its configuration is not usable; str() says where."""


@dataclass(frozen=True)
class StackFile:
    """One stack: its name (from Pulumi.<name>.yaml), its file and its validated settings."""

    name: str
    path: Path
    settings: Settings
    # Clusters whose ssh route issues from the stack's own CA (`ssh.issuing_ca: generated`):
    # the audit cannot know that CA's fingerprint (it is in the state), only its subject.
    stack_ca_clusters: frozenset[str] = frozenset()


def read_stack_file(path: Path) -> StackFile:
    """Read and validate one stack file; StackFileError names the file and every problem.

    Secret values (`secure:` entries) are never decrypted: the settings only need to know
    that a key is set, exactly as `load_settings` tells them under the CLI.
    """
    try:
        with path.open("rb") as handle:
            text = handle.read(_MAX_BYTES + 1)
    except OSError as error:
        raise StackFileError(
            f"stack file {path}: cannot be read ({error.strerror}); expected a Pulumi stack "
            "file such as stacks/Pulumi.local.yaml."
        ) from None
    if len(text) > _MAX_BYTES:
        raise StackFileError(f"stack file {path}: larger than 4 MiB; expected a stack file.")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StackFileError(
            f"stack file {path}: is not valid YAML{where}; expected a Pulumi stack file "
            "(a top-level `config:` mapping)."
        ) from None
    config = document.get("config") if isinstance(document, Mapping) else None
    if not isinstance(config, Mapping):
        raise StackFileError(
            f"stack file {path}: has no `config:` mapping; expected a Pulumi stack file whose "
            f"config holds the {PROJECT}:clusters and {PROJECT}:load_balancers keys."
        )
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    prefix = f"{PROJECT}:"
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue  # other namespaces (pulumi:, f5bigip:) are not this program's settings
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secret_keys.add(key)
            value = "(set)"  # never decrypted: only whether it is set matters here
        raw[key[len(prefix) :]] = value
    try:
        settings = parse_settings(
            _without_write_routes(raw), secret_keys, project_dir=_project_dir(path)
        )
    except SettingsError as error:
        raise StackFileError(f"stack file {path}: {error}") from None
    return StackFile(_stack_name(path), path, settings, _stack_ca_clusters(raw))


def _stack_ca_clusters(raw: dict[str, Any]) -> frozenset[str]:
    clusters = raw.get("clusters")
    return frozenset(
        str(cluster.get("name"))
        for cluster in (clusters if isinstance(clusters, list) else [])
        if isinstance(cluster, Mapping)
        and cluster.get("certificate_method") == "ssh"
        and isinstance(cluster.get("ssh"), Mapping)
        and cluster["ssh"].get("issuing_ca") == "generated"
    )


def _without_write_routes(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings without each cluster's certificate route (`certificate_method`, `ssh`,
    `lifecycle_manager`, and the nodes' SSH port and host key).

    The audit never writes a certificate, so nothing of a route is used; and its files (the
    issuing CA, the Lifecycle management CA) may exist only where `pulumi up` runs, not on a
    monitoring host. Everything the audit judges (nodes, names, pins, load balancers) stays.
    The routes' secret keys go too (their default names, and those a route names), or they
    would be unknown keys without the route that names them.
    """
    clusters = raw.get("clusters")
    if not isinstance(clusters, list):
        return raw
    route_secrets = set(SSH_SECRET_VARIABLES)
    stripped: list[Any] = []
    for cluster in clusters:
        if isinstance(cluster, Mapping):
            for route in ("ssh", "lifecycle_manager"):
                settings = cluster.get(route)
                if isinstance(settings, Mapping):
                    route_secrets.update(
                        str(value)
                        for key, value in settings.items()
                        if str(key).endswith("_key") and isinstance(value, str)
                    )
            cluster = {
                key: value
                for key, value in cluster.items()
                if key not in ("certificate_method", "ssh", "lifecycle_manager")
            }
            nodes = cluster.get("nodes")
            if isinstance(nodes, list):
                cluster["nodes"] = [
                    {k: v for k, v in node.items() if k not in ("ssh_port", "ssh_host_key")}
                    if isinstance(node, Mapping)
                    else node
                    for node in nodes
                ]
        stripped.append(cluster)
    # A key a route shares with what the audit reads (the admin password, for --appliance)
    # stays.
    route_secrets -= {"applianceAdminPassword"} | {
        str(cluster.get("admin_password_key"))
        for cluster in clusters
        if isinstance(cluster, Mapping)
    }
    kept = {key: value for key, value in raw.items() if key not in route_secrets}
    return {**kept, "clusters": stripped}


def _stack_name(path: Path) -> str:
    name = path.name
    if name.startswith("Pulumi.") and name.endswith((".yaml", ".yml")):
        return name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    return path.stem


def _project_dir(path: Path) -> Path:
    """Where relative paths of the stack are resolved: the directory holding Pulumi.yaml (the
    stack file's or a parent, as with stackConfigDir), else the stack file's own directory."""
    directory = path.resolve().parent
    for candidate in (directory, *directory.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return directory
