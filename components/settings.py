"""Turn the stack configuration into typed, validated settings whose errors name the config key."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias

import pulumi
import pulumi.runtime
from pulumi.config import ConfigTypeError

from components import pki

__all__ = [
    "ADMIN_PASSWORD_ENVIRONMENT_VARIABLE",
    "CERTIFICATE_METHODS",
    "SSH_SECRET_VARIABLES",
    "PROJECT",
    "Cluster",
    "F5LoadBalancer",
    "LoadBalancer",
    "Node",
    "PemFileLoadBalancer",
    "Settings",
    "SettingsError",
    "LifecycleRoute",
    "SshRoute",
    "SslTermination",
    "VirtualServer",
    "load_settings",
    "parse_settings",
]

PROJECT = "ws1-access-lb-trust"
# Names of places a password is kept, not passwords (hence the noqa).
ADMIN_PASSWORD_ENVIRONMENT_VARIABLE = "WS1_ACCESS_ADMIN_PASSWORD"  # noqa: S105
BIGIP_PASSWORD_VARIABLE = "BIGIP_PASSWORD"  # noqa: S105 (as the F5 provider names it)

SslTermination: TypeAlias = Literal["load_balancer", "passthrough"]
# How a node gets its certificate (README, "Certificate routes").
CertificateMethod: TypeAlias = Literal["lifecycle_manager", "ssh", "configurator", "none"]
CERTIFICATE_METHODS = ("lifecycle_manager", "ssh", "configurator", "none")
Become: TypeAlias = Literal["root", "su", "sudo"]
# The environment variables the ssh route falls back to when its default secret keys are
# not set (names of places secrets are kept, not secrets).
SSH_SECRET_VARIABLES = {
    "sshPassword": "WS1_ACCESS_SSH_PASSWORD",  # noqa: S105
    "sshPrivateKey": "WS1_ACCESS_SSH_PRIVATE_KEY",
    "sshRootPassword": "WS1_ACCESS_SSH_ROOT_PASSWORD",  # noqa: S105
    "sshIssuingCaKey": "WS1_ACCESS_SSH_ISSUING_CA_KEY",
    "lifecycleManagerPassword": "WS1_ACCESS_LIFECYCLE_PASSWORD",  # noqa: S105
    "lifecycleIssuingCaKey": "WS1_ACCESS_LIFECYCLE_ISSUING_CA_KEY",
}

_CONFIGURATOR_PORT = 8443
_DEFAULT_ADMIN_PASSWORD_KEY = "applianceAdminPassword"  # noqa: S105
_DEFAULT_BIGIP_PASSWORD_KEY = "bigipPassword"  # noqa: S105
_TOP_LEVEL_KEYS = ("clusters", "load_balancers", "expiry_warning_days")
_CLUSTER_KEYS = (
    "name",
    "previous_name",
    "service_fqdn",
    "ssl_termination",
    "nodes",
    "root_ca_sha256",
    "trust_on_first_use",
    "extra_sans",
    "manage_certificate",
    "admin_password_key",
    "load_balancer_root_ca",
    "incoming_root_ca",
    "certificate_method",
    "ssh",
    "lifecycle_manager",
)
_NODE_KEYS = ("fqdn", "address", "service_port", "configurator_port", "ssh_port", "ssh_host_key")
_SSH_KEYS = (
    "user",
    "port",
    "authentication",
    "password_key",
    "private_key_key",
    "become",
    "root_password_key",
    "trust_host_key_on_first_use",
    "issuing_ca",
    "issuing_ca_path",
    "issuing_ca_key_key",
    "restart_timeout_seconds",
)
_LIFECYCLE_KEYS = (
    "address",
    "port",
    "username",
    "password_key",
    "management_ca_path",
    "environment_id",
    "product_id",
    "issuing_ca",
    "issuing_ca_path",
    "issuing_ca_key_key",
    "request_timeout_seconds",
    "restart_timeout_seconds",
)
# `ssh.issuing_ca: generated`: the stack's own CA instead of the operator's PEM.
_GENERATED_CA = "generated"
_SSH_HOST_KEY = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_COMMON_LB_KEYS = ("name", "previous_name", "kind", "cluster")
_PEM_FILE_KEYS = (*_COMMON_LB_KEYS, "path", "adopt_existing_file")
_F5_KEYS = (
    *_COMMON_LB_KEYS,
    "address",
    "port",
    "username",
    "password_key",
    "partition",
    "management_ca_path",
    "validate_management_certificate",
    "server_ssl_profile",
    "virtual_server",
    "device_group",
)
_VIRTUAL_SERVER_KEYS = ("destination", "port", "client_ssl_profile", "snat")
_KIND_KEYS = {"f5": _F5_KEYS, "pem_file": _PEM_FILE_KEYS}

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_CONFIG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_F5_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,254}")
_F5_PATH = re.compile(r"(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*){2,}")


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Node:
    """One appliance of a cluster: the name it is known by and where to connect to it."""

    fqdn: str
    address: str
    service_port: int = 443
    configurator_port: int = _CONFIGURATOR_PORT
    # The ssh route only: where its SSH server listens (None: SshRoute.port), and its host
    # key's SHA-256 fingerprint as `ssh-keygen -l` prints it ("SHA256:...").
    ssh_port: int | None = None
    ssh_host_key: str | None = None


@dataclass(frozen=True)
class SshRoute:
    """certificate_method: ssh. The node runs its own installExternalCertificate.hzn as root.

    Every secret is named by its config key, never held here: the provider reads it at call
    time (components/dynamic.py). The issuing CA is either the operator's own (its
    certificate declared here, trusted by the load balancers ahead of the move; its key a
    secret config key) or, with `issuing_ca: generated`, the stack's own: generated by the
    program, its key kept only as a secret output in the stack state
    (components/appliance/stack_ca.py); then `issuing_ca` is empty and no key is configured.
    """

    user: str
    issuing_ca: str = field(repr=False)
    generated_ca: bool = False
    authentication: Literal["password", "private_key"] = "password"
    port: int = 22
    password_key: str = "sshPassword"  # noqa: S105 (a key's name)
    private_key_key: str = "sshPrivateKey"
    become: Become = "su"
    root_password_key: str = "sshRootPassword"  # noqa: S105 (a key's name)
    trust_host_key_on_first_use: bool = False
    issuing_ca_key_key: str = "sshIssuingCaKey"
    restart_timeout_seconds: int = 600
    # The secret keys the stack sets (the others fall back to SSH_SECRET_VARIABLES).
    keys_in_config: tuple[str, ...] = ()

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The config keys this route reads secrets from, in the order they are needed."""
        keys = [self.password_key if self.authentication == "password" else self.private_key_key]
        if self.become == "su":
            keys.append(self.root_password_key)
        if not self.generated_ca:
            keys.append(self.issuing_ca_key_key)
        return tuple(keys)


@dataclass(frozen=True)
class LifecycleRoute:
    """certificate_method: lifecycle_manager. Aria Suite Lifecycle replaces the product
    certificate of the whole cluster with one from the operator's CA, imported into its locker.
    The management CA (the one that signs Lifecycle's own HTTPS certificate) is read here;
    the password and the issuing CA's key are named by their secret config keys only."""

    address: str
    management_ca: str = field(repr=False)
    issuing_ca: str = field(repr=False)
    port: int = 443
    username: str = "admin@local"
    password_key: str = "lifecycleManagerPassword"  # noqa: S105 (a key's name)
    # How VMware's PowerValidatedSolutions module names Workspace ONE Access in Lifecycle.
    environment_id: str = "globalenvironment"
    product_id: str = "vidm"
    issuing_ca_key_key: str = "lifecycleIssuingCaKey"
    request_timeout_seconds: int = 1800
    # After Lifecycle reports the replacement COMPLETED: how long each node may take to serve
    # the new certificate with its heartbeat answering ok.
    restart_timeout_seconds: int = 60
    keys_in_config: tuple[str, ...] = ()

    @property
    def secret_keys(self) -> tuple[str, ...]:
        return (self.password_key, self.issuing_ca_key_key)


@dataclass(frozen=True)
class Cluster:
    """A Workspace ONE Access cluster: its nodes, how its root CA is trusted, its certificate."""

    name: str
    service_fqdn: str
    ssl_termination: SslTermination
    nodes: tuple[Node, ...]
    root_ca_sha256: tuple[str, ...] = ()
    trust_on_first_use: bool = False
    extra_sans: tuple[str, ...] = ()
    manage_certificate: bool = True
    admin_password_key: str = _DEFAULT_ADMIN_PASSWORD_KEY
    # False means the provider falls back to ADMIN_PASSWORD_ENVIRONMENT_VARIABLE.
    admin_password_in_config: bool = False
    load_balancer_root_ca: str | None = field(default=None, repr=False)
    # A root CA the nodes are about to move to (rotation): trusted ahead of time.
    incoming_root_ca: str | None = field(default=None, repr=False)
    # The name this entry had before a rename: its resources keep their identity (aliases).
    previous_name: str | None = None
    # How nodes get their certificate; "none" (the default) never writes (README table).
    certificate_method: CertificateMethod = "none"
    ssh: SshRoute | None = None
    lifecycle_manager: LifecycleRoute | None = None

    @property
    def issuing_ca(self) -> str | None:
        """The operator's CA the write route issues node certificates from, if it has one."""
        route = self.ssh if self.certificate_method == "ssh" else self.lifecycle_manager
        return route.issuing_ca if route is not None and route.issuing_ca else None

    @property
    def generates_ca(self) -> bool:
        """True when the stack owns a CA (generated, key kept as a secret output) that issues
        the node certificates: ssh with `issuing_ca: generated`. Also with manage_certificate:
        false: the CA stays in the stack (and trusted) while certificates are left alone."""
        return self.certificate_method == "ssh" and self.ssh is not None and self.ssh.generated_ca

    @property
    def writes_certificates(self) -> bool:
        """True when this program puts certificates on the nodes (a write route is chosen)."""
        return self.manage_certificate and self.certificate_method != "none"

    @property
    def passthrough(self) -> bool:
        """True when the load balancer passes TLS through to the nodes."""
        return self.ssl_termination == "passthrough"

    @property
    def node_fqdns(self) -> tuple[str, ...]:
        return tuple(node.fqdn for node in self.nodes)

    @property
    def needs_admin_password(self) -> bool:
        """True when something has to log in to the appliance configurator."""
        return self.certificate_method == "configurator" and (
            self.manage_certificate or self.load_balancer_root_ca is not None
        )


@dataclass(frozen=True)
class VirtualServer:
    """The BIG-IP virtual server that users reach the cluster through."""

    destination: str
    port: int = 443
    client_ssl_profile: str | None = None
    # Source address translation: None (none), "automap", or the full path of a SNAT pool.
    snat: str | None = None


@dataclass(frozen=True)
class F5LoadBalancer:
    """An F5 BIG-IP that trusts the appliance root CA in a server-SSL profile."""

    kind: ClassVar[Literal["f5"]] = "f5"

    name: str
    cluster: str
    address: str
    username: str
    port: int = 443
    password_key: str = _DEFAULT_BIGIP_PASSWORD_KEY
    password_in_config: bool = False
    partition: str = "Common"
    management_ca_path: Path | None = None
    validate_management_certificate: bool = True
    server_ssl_profile: str = ""  # empty: ws1-<cluster>-serverssl
    virtual_server: VirtualServer | None = None
    # The config-sync device group the unit at `address` belongs to (None: standalone).
    device_group: str | None = None
    previous_name: str | None = None  # before a rename (see Cluster.previous_name)

    def __post_init__(self) -> None:
        if not self.server_ssl_profile:
            object.__setattr__(self, "server_ssl_profile", f"ws1-{self.cluster}-serverssl")

    @property
    def server_ssl_profile_path(self) -> str:
        """The profile's full path, as BIG-IP and pulumi_f5bigip name it."""
        return f"/{self.partition}/{self.server_ssl_profile}"


@dataclass(frozen=True)
class PemFileLoadBalancer:
    """A load balancer that reads its trusted CAs from a PEM bundle file (NGINX, HAProxy)."""

    kind: ClassVar[Literal["pem_file"]] = "pem_file"

    name: str
    cluster: str
    path: Path
    # True: a file already at `path` that this stack did not write may be taken over (its
    # mode is kept; destroy deletes it). False: such a file is refused while planning.
    adopt_existing_file: bool = False
    previous_name: str | None = None  # before a rename (see Cluster.previous_name)


LoadBalancer: TypeAlias = F5LoadBalancer | PemFileLoadBalancer


@dataclass(frozen=True)
class Settings:
    """Everything one stack declares."""

    clusters: tuple[Cluster, ...]
    load_balancers: tuple[LoadBalancer, ...]
    expiry_warning_days: int = 30

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(f"No cluster named {name!r} is declared in {PROJECT}:clusters.")

    def load_balancers_for(self, cluster_name: str) -> tuple[LoadBalancer, ...]:
        return tuple(lb for lb in self.load_balancers if lb.cluster == cluster_name)

    def password_keys_not_set(self) -> tuple[str, ...]:
        """Config keys a password is needed from but which the stack does not set.

        For these the providers fall back to an environment variable, so the program
        can check that it is there before anything is applied.
        """
        keys: list[str] = []
        for cluster in self.clusters:
            if cluster.needs_admin_password and not cluster.admin_password_in_config:
                keys.append(cluster.admin_password_key)
        for lb in self.load_balancers:
            if isinstance(lb, F5LoadBalancer) and not lb.password_in_config:
                keys.append(lb.password_key)
        return tuple(dict.fromkeys(keys))


class SettingsError(ValueError):
    """The stack configuration is not usable; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        header = f"The stack configuration has {count} {noun}:"
        super().__init__("\n".join((header, *self.problems)))


# ---------------------------------------------------------------------------- reading


def load_settings() -> Settings:
    """Read and validate this stack's configuration; raise SettingsError listing every problem."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    # Password values are never read here: only whether the key is set matters.
    for full_key in (*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.get_config_env()):
        if full_key.startswith(prefix):
            raw[full_key[len(prefix) :]] = "(set)"
    for key in ("clusters", "load_balancers"):
        try:
            value = config.get_object(key)
        except ConfigTypeError:
            # Not JSON: hand over the text, so the problem is reported with all the others.
            value = config.get(key)
        _put(raw, key, value)
    _put(raw, "expiry_warning_days", config.get("expiry_warning_days"))
    # The language host copies PULUMI_CONFIG_SECRET_KEYS into the runtime at start-up;
    # reading both keeps a harness that only sets the environment truthful.
    secret_keys = {prefix + key for key in raw if pulumi.runtime.is_config_secret(prefix + key)}
    secret_keys.update(pulumi.runtime.get_config_secret_keys_env())
    # Outside a real deployment (mocks, tests) the SDK reports a placeholder, not a directory.
    root = pulumi.runtime.get_root_directory()
    project_dir = Path(root) if root and Path(root).is_absolute() else Path.cwd()
    return parse_settings(raw, secret_keys, project_dir=project_dir)


def _put(raw: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        raw.pop(key, None)
    else:
        raw[key] = value


def parse_settings(
    raw: Mapping[str, Any],
    secret_keys: Collection[str],
    *,
    project_dir: Path | None = None,
) -> Settings:
    """Validate the stack configuration and build the settings, or raise SettingsError.

    `raw` maps each config key of the project namespace (without the `ws1-access-lb-trust:`
    prefix) to its value, objects already decoded; `secret_keys` holds the full keys the
    stack stores as secrets. Relative file paths are resolved against `project_dir`.
    """
    report = _Report()
    hidden = {key for key in _TOP_LEVEL_KEYS if f"{PROJECT}:{key}" in secret_keys}
    parser = _Parser(report, raw, frozenset(secret_keys), project_dir)

    cluster_objects = _top_list(report, raw, "clusters", "clusters" in hidden)
    lb_objects = _top_list(report, raw, "load_balancers", "load_balancers" in hidden)
    clusters = parser.clusters(cluster_objects)
    # Which clusters exist can only be told when every entry of the list is an object;
    # otherwise a load balancer's cluster reference cannot be judged, and saying it names
    # no declared cluster would only add noise to the real problem.
    declared = raw.get("clusters")
    clusters_known = isinstance(declared, list) and len(cluster_objects) == len(declared) > 0
    load_balancers = parser.load_balancers(lb_objects, clusters, clusters_known=clusters_known)
    days_value = raw.get("expiry_warning_days")
    expiry_warning_days = 30
    if days_value is not None:
        expiry_warning_days = _integer(
            report,
            "expiry_warning_days",
            days_value,
            "a whole number of days from 1 to 365",
            1,
            365,
            "expiry_warning_days" in hidden,
            30,
        )

    # Password keys are named inside the lists; without both lists, which keys are
    # known cannot be told, and guessing would only add noise to the real problem.
    if cluster_objects and lb_objects:
        allowed = {*_TOP_LEVEL_KEYS, _DEFAULT_ADMIN_PASSWORD_KEY, _DEFAULT_BIGIP_PASSWORD_KEY}
        allowed.update(parser.password_keys)
        generating = [cluster.name for cluster in clusters if cluster.generates_ca]
        for key in raw:
            if key == "sshIssuingCaKey" and key not in allowed and generating:
                # Left over from the operator's CA: say why it is no longer read.
                report.add(
                    key,
                    f"is set, but cluster(s) {', '.join(generating)} use ssh.issuing_ca: "
                    "generated, which needs no key: the program makes the stack's own CA and "
                    "keeps its key only as a secret in the stack state, so this key would never "
                    "be read. Remove it (`pulumi config rm sshIssuingCaKey`); if you meant your "
                    "own CA, give its PEM in ssh.issuing_ca or ssh.issuing_ca_path instead.",
                )
            elif key not in allowed:
                report.add(key, _unknown_key(key, sorted(allowed), top_level=True))

    if report.lines:
        raise SettingsError(report.lines)
    return Settings(tuple(clusters), tuple(load_balancers), expiry_warning_days)


class _Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = f"- {PROJECT}:{path}: {message}"
        if line not in self.lines:
            self.lines.append(line)


@dataclass
class _Object:
    """One config object being read: its path, its data, and whether values may be shown."""

    report: _Report
    path: str
    data: Mapping[str, Any]
    hidden: bool

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def get(self, key: str) -> Any:
        # A JSON null reads as "not given", so the default applies.
        return self.data.get(key)

    def problem(self, key: str | None, message: str) -> None:
        self.report.add(self.at(key) if key else self.path, message)

    def show(self, value: Any) -> str:
        return "the given value" if self.hidden else _show(value)

    def check_keys(self, known: Sequence[str], kind: str = "", other: Sequence[str] = ()) -> None:
        for key in self.data:
            if key in known:
                continue
            if key in other:
                keys = ", ".join(known)
                self.problem(key, f"does not apply to kind {kind} (its keys are: {keys}).")
            else:
                self.problem(key, _unknown_key(str(key), known))

    def child(self, key: str, value: Mapping[str, Any]) -> _Object:
        return _Object(self.report, key, value, self.hidden)

    def text(self, key: str, expected: str, *, required: bool = True) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.problem(key, f"is required; expected {expected}.")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(key, f"expected {expected}, got {_kind(value)}.")
            return None
        return value.strip()

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        # Values set with `pulumi config set --path` without --type arrive as text.
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        shown = self.show(value) if isinstance(value, str) else _kind(value)
        self.problem(key, f"expected true or false, got {shown}.")
        return default

    def seconds(self, key: str, default: int, maximum: int) -> int:
        """A timeout in whole seconds, from 1 to `maximum`; `default` when not set."""
        value = self.get(key)
        if value is None:
            return default
        return _integer(
            self.report,
            self.at(key),
            value,
            f"a whole number of seconds from 1 to {maximum}",
            1,
            maximum,
            self.hidden,
            default,
        )

    def port(self, key: str, default: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        return _integer(
            self.report,
            self.at(key),
            value,
            "a port number from 1 to 65535",
            1,
            65535,
            self.hidden,
            default,
        )


def _integer(
    report: _Report,
    path: str,
    value: Any,
    expected: str,
    low: int,
    high: int,
    hidden: bool,
    default: int,
) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None:
        shown = "the given value" if hidden else _show(value)
        got = shown if isinstance(value, str | float) else _kind(value)
        report.add(path, f"expected {expected}, got {got}.")
        return default
    if not low <= number <= high:
        report.add(path, f"expected {expected}, got {'the given value' if hidden else number}.")
        return default
    return number


def _top_list(report: _Report, raw: Mapping[str, Any], key: str, hidden: bool) -> list[_Object]:
    what, example = {
        "clusters": ("cluster", "ws1-prod"),
        "load_balancers": ("load balancer", "ws1-prod-nginx"),
    }[key]
    value = raw.get(key)
    if value is None:
        report.add(
            key,
            f"is not set; declare at least one {what} with "
            f"`pulumi config set --path '{key}[0].name' {example}` and its other fields, "
            "or by editing stacks/Pulumi.<stack>.yaml.",
        )
        return []
    if not isinstance(value, list) or isinstance(value, str):
        report.add(key, f"expected a list of objects, got {_kind(value)}.")
        return []
    if not value:
        report.add(key, f"expected at least one {what}, got an empty list.")
        return []
    objects: list[_Object] = []
    for index, item in enumerate(value):
        path = f"{key}[{index}]"
        if isinstance(item, Mapping):
            objects.append(_Object(report, path, item, hidden))
        else:
            report.add(path, f"expected an object, got {_kind(item)}.")
    return objects


class _Parser:
    """Builds the model while collecting every problem, so one run reports them all."""

    def __init__(
        self,
        report: _Report,
        raw: Mapping[str, Any],
        secret_keys: frozenset[str],
        project_dir: Path | None,
    ) -> None:
        self.report = report
        self.raw = raw
        self.secret_keys = secret_keys
        self.project_dir = project_dir
        self.password_keys: list[str] = []

    # -- clusters

    def clusters(self, objects: list[_Object]) -> list[Cluster]:
        clusters: list[Cluster] = []
        names: dict[str, str] = {}
        for obj in objects:
            obj.check_keys(_CLUSTER_KEYS)
            name = self.name(obj, names, "ws1-prod")
            clusters.append(self.cluster(obj, name))
        self.each_node_once(objects, clusters)
        self.previous_names(objects, [cluster.name for cluster in clusters])
        return [
            dataclasses.replace(cluster, previous_name=_previous_name(obj))
            for cluster, obj in zip(clusters, objects, strict=True)
        ]

    def previous_names(self, objects: list[_Object], names: list[str]) -> None:
        """`previous_name`: a valid name that no other entry of the list has now or had."""
        current = {name: obj.path for name, obj in zip(names, objects, strict=True) if name}
        claimed: dict[str, str] = {}
        for obj in objects:
            previous = obj.get("previous_name")
            if previous is None:
                continue
            if not isinstance(previous, str) or not _NAME.fullmatch(previous):
                obj.problem(
                    "previous_name",
                    f"{obj.show(previous)} is not a valid name (expected the entry's name "
                    "before the rename: 1-40 lower-case letters, digits and hyphens).",
                )
            elif previous in current and current[previous] != obj.path:
                obj.problem(
                    "previous_name",
                    f"{obj.show(previous)} is the name of {current[previous]} now; an entry's "
                    "previous_name must not be another entry's name (its resources would be "
                    "taken over).",
                )
            elif previous in claimed:
                obj.problem(
                    "previous_name",
                    f"{obj.show(previous)} is also the previous_name of {claimed[previous]}; "
                    "one old entry can become only one new entry.",
                )
            else:
                claimed[previous] = obj.path

    def each_node_once(self, objects: list[_Object], clusters: list[Cluster]) -> None:
        """One node declared twice (same FQDN, or same address and port), within a cluster or
        across clusters, would be regenerated by both declarations on every `up`, its CN
        flapping between them: refused, naming both places."""
        fqdns: dict[str, str] = {}
        endpoints: dict[tuple[str, int], str] = {}
        for obj, cluster in zip(objects, clusters, strict=True):
            for index, node in enumerate(cluster.nodes):
                path = f"{obj.at('nodes')}[{index}]"
                here = f"{PROJECT}:{path}"
                if node.fqdn and node.fqdn in fqdns:
                    if not fqdns[node.fqdn].startswith(f"{PROJECT}:{obj.at('nodes')}["):
                        # Within one cluster the fqdn check in `nodes` already said it.
                        self.report.add(
                            f"{path}.fqdn",
                            f"{obj.show(node.fqdn)} is also declared at {fqdns[node.fqdn]}; a "
                            "node belongs to one cluster, declared once.",
                        )
                    continue
                if node.fqdn:
                    fqdns[node.fqdn] = here
                endpoint = (node.address, node.service_port)
                if node.address and endpoint in endpoints:
                    self.report.add(
                        f"{path}.address",
                        f"{obj.show(f'{node.address}:{node.service_port}')} is also the address "
                        f"and service port of {endpoints[endpoint]}; each node is declared once, "
                        "with its own address.",
                    )
                elif node.address:
                    endpoints[endpoint] = here

    def name(self, obj: _Object, seen: dict[str, str], example: str) -> str:
        expected = (
            "a name of 1-40 lower-case letters, digits and hyphens, starting and ending "
            f"with a letter or digit, e.g. {example}"
        )
        name = obj.text("name", expected)
        if name is None:
            return ""
        if not _NAME.fullmatch(name):
            obj.problem("name", f"{obj.show(name)} is not a valid name (expected {expected}).")
        elif name in seen:
            obj.problem(
                "name",
                f"{obj.show(name)} is already the name of {seen[name]}; names must be unique.",
            )
        else:
            seen[name] = obj.path
        return name

    def cluster(self, obj: _Object, name: str) -> Cluster:
        service_fqdn = self.dns_name(
            obj, "service_fqdn", "the FQDN users type to reach the service", "ws1.corp.example"
        )
        termination = self.ssl_termination(obj)
        nodes = self.nodes(obj)
        pins = self.pins(obj)
        trust_on_first_use = obj.boolean("trust_on_first_use", False)
        if obj.get("root_ca_sha256") not in (None, []):
            if trust_on_first_use:
                obj.problem(
                    None,
                    "both root_ca_sha256 and trust_on_first_use: true are set; choose one: "
                    "keep the pin (recommended) and remove trust_on_first_use, or remove "
                    "root_ca_sha256 to trust whatever root CA the appliance presents.",
                )
        elif not trust_on_first_use:
            obj.problem(
                None,
                "neither root_ca_sha256 nor trust_on_first_use: true is set; choose one: "
                "pin the appliance root CA with root_ca_sha256: <its SHA-256 fingerprint> "
                "(recommended), or set trust_on_first_use: true to trust the root CA the "
                "appliance presents (its fingerprint is shown as a warning).",
            )
        extra_sans = self.extra_sans(obj)
        manage_certificate = obj.boolean("manage_certificate", True)
        method = self.certificate_method(obj)
        root_ca = self.load_balancer_root_ca(obj, termination)
        incoming_root_ca = self.certificate_pem(
            obj, "incoming_root_ca", "the root CA the nodes will move to"
        )
        admin_key = self.password_key(
            obj,
            "admin_password_key",
            _DEFAULT_ADMIN_PASSWORD_KEY,
            "appliance admin password",
            ADMIN_PASSWORD_ENVIRONMENT_VARIABLE,
            # Same rule as Cluster.needs_admin_password: only a configurator login needs it.
            needed=method == "configurator" and (manage_certificate or root_ca is not None),
        )
        ssh = self.ssh_route(obj, method, nodes, manage_certificate)
        lifecycle = self.lifecycle_route(obj, method)
        return Cluster(
            name=name,
            service_fqdn=service_fqdn,
            ssl_termination=termination,
            nodes=nodes,
            root_ca_sha256=pins,
            trust_on_first_use=trust_on_first_use,
            extra_sans=extra_sans,
            manage_certificate=manage_certificate,
            admin_password_key=admin_key,
            admin_password_in_config=admin_key in self.raw,
            load_balancer_root_ca=root_ca,
            incoming_root_ca=incoming_root_ca,
            certificate_method=method,
            ssh=ssh,
            lifecycle_manager=lifecycle,
        )

    def lifecycle_route(self, obj: _Object, method: CertificateMethod) -> LifecycleRoute | None:
        value = obj.get("lifecycle_manager")
        if method != "lifecycle_manager":
            if value is not None:
                obj.problem(
                    "lifecycle_manager", "applies only with certificate_method: lifecycle_manager."
                )
            return None
        if not isinstance(value, Mapping):
            obj.problem(
                "lifecycle_manager",
                "is required with certificate_method: lifecycle_manager; expected an object "
                "with address, management_ca_path and issuing_ca (README, 'Certificate routes').",
            )
            return None
        lcm = obj.child(obj.at("lifecycle_manager"), value)
        lcm.check_keys(_LIFECYCLE_KEYS)
        address = self.address(
            lcm, "address", "the host name of Aria Suite Lifecycle", required=True
        )
        what = "the PEM file of the CA that signs Aria Suite Lifecycle's HTTPS certificate"
        management_ca = ""
        path = self.file_path(lcm, "management_ca_path", what)
        if path is not None and not path.is_file():
            shown = "the given value" if lcm.hidden else repr(str(path))
            lcm.problem("management_ca_path", f"{shown} does not exist (expected {what}).")
        elif path is not None:
            try:
                roots = pki.load_bundle(path.read_bytes()[: 1024 * 1024], "the file")
                for root in roots:
                    pki.check_ca(root, "the file")
                management_ca = pki.bundle_pem(roots)
            except (OSError, pki.CertificateError) as error:
                lcm.problem("management_ca_path", f"{error} Expected {what}.")
        identifiers = {}
        for key, default in (("environment_id", "globalenvironment"), ("product_id", "vidm")):
            text = lcm.text(key, f"a Lifecycle identifier, e.g. {default}", required=False)
            if text is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", text):
                lcm.problem(key, f"{lcm.show(text)} is not an identifier Lifecycle uses.")
                text = None
            identifiers[key] = text or default
        timeout = lcm.seconds("request_timeout_seconds", 1800, 86400)
        restart = lcm.seconds("restart_timeout_seconds", 60, 3600)
        secrets = {
            key: self.password_key(
                lcm, key, default, what_, SSH_SECRET_VARIABLES[default], needed=True
            )
            for key, default, what_ in (
                ("password_key", "lifecycleManagerPassword", "Aria Suite Lifecycle password"),
                ("issuing_ca_key_key", "lifecycleIssuingCaKey", "issuing CA's private key"),
            )
        }
        return LifecycleRoute(
            address=address,
            management_ca=management_ca,
            issuing_ca=self.issuing_ca(lcm) or "",
            port=lcm.port("port", 443),
            username=lcm.text("username", "a Lifecycle user", required=False) or "admin@local",
            environment_id=identifiers["environment_id"],
            product_id=identifiers["product_id"],
            request_timeout_seconds=timeout,
            restart_timeout_seconds=restart,
            keys_in_config=tuple(name for name in secrets.values() if name in self.raw),
            **secrets,
        )

    def certificate_method(self, obj: _Object) -> CertificateMethod:
        """No silent default write route: without the key nothing is written (README)."""
        value = obj.get("certificate_method")
        if value is None:
            return "none"
        expected = " | ".join(CERTIFICATE_METHODS)
        text = obj.text("certificate_method", expected)
        if text in CERTIFICATE_METHODS:
            return text  # type: ignore[return-value]
        if text is not None:
            obj.problem(
                "certificate_method",
                f"{obj.show(text)} is not a certificate method (expected {expected}).",
            )
        return "none"

    def ssh_route(
        self,
        obj: _Object,
        method: CertificateMethod,
        nodes: tuple[Node, ...],
        manage_certificate: bool = True,
    ) -> SshRoute | None:
        value = obj.get("ssh")
        for index, node in enumerate(nodes):
            if method != "ssh" and (node.ssh_port is not None or node.ssh_host_key is not None):
                obj.report.add(
                    f"{obj.at('nodes')}[{index}]",
                    "ssh_port and ssh_host_key apply only with certificate_method: ssh.",
                )
        if method != "ssh":
            if value is not None:
                obj.problem("ssh", "applies only with certificate_method: ssh.")
            return None
        if not isinstance(value, Mapping):
            obj.problem(
                "ssh",
                "is required with certificate_method: ssh; expected an object with user, "
                "issuing_ca and how to log in (README, 'Certificate routes').",
            )
            return None
        ssh = obj.child(obj.at("ssh"), value)
        ssh.check_keys(_SSH_KEYS)
        user = ssh.text("user", "the SSH user, e.g. sshuser") or ""
        authentication = (
            ssh.text("authentication", "password or private_key", required=False) or "password"
        )
        if authentication not in ("password", "private_key"):
            ssh.problem(
                "authentication",
                f"{ssh.show(authentication)} is not an SSH authentication (expected password "
                "or private_key).",
            )
            authentication = "password"
        become = ssh.text("become", "root, su or sudo", required=False) or "su"
        if become not in ("root", "su", "sudo"):
            ssh.problem(
                "become",
                f"{ssh.show(become)} is not a way to become root (expected root: the user is "
                "root; su: su with the root password; sudo: sudo with the user's password).",
            )
            become = "su"
        if become == "sudo" and authentication != "password":
            ssh.problem("become", "sudo needs the user's password: use authentication: password.")
        if become == "root" and user not in ("", "root"):
            ssh.problem("become", f"root means the user is root, but user is {ssh.show(user)}.")
        tofu = ssh.boolean("trust_host_key_on_first_use", False)
        for index, node in enumerate(nodes):
            if node.ssh_host_key is None and not tofu:
                obj.report.add(
                    f"{obj.at('nodes')}[{index}].ssh_host_key",
                    "is required with certificate_method: ssh (the SHA-256 fingerprint of the "
                    "node's SSH host key, as `ssh-keyscan <node> | ssh-keygen -lf -` prints it, "
                    "e.g. SHA256:...); or set ssh.trust_host_key_on_first_use: true.",
                )
        generated = ssh.get("issuing_ca") == _GENERATED_CA
        issuing_ca = None
        if generated:
            self.generated_ca(ssh)
        else:
            issuing_ca = self.issuing_ca(ssh)
        timeout = ssh.seconds("restart_timeout_seconds", 600, 3600)
        secrets = {}
        for key, default, what in (
            ("password_key", "sshPassword", "SSH password"),
            ("private_key_key", "sshPrivateKey", "SSH private key"),
            ("root_password_key", "sshRootPassword", "root password for su"),
            ("issuing_ca_key_key", "sshIssuingCaKey", "issuing CA's private key"),
        ):
            if key == "issuing_ca_key_key" and generated:
                continue  # refused above when set: the generated CA's key is no config key
            # Only a route that writes needs its secrets: with manage_certificate: false no
            # node is ever logged in to, so an unset key must not stop the stack.
            needed = (
                manage_certificate
                and {
                    "password_key": authentication == "password",
                    "private_key_key": authentication == "private_key",
                    "root_password_key": become == "su",
                    "issuing_ca_key_key": True,
                }[key]
            )
            secrets[key] = self.password_key(
                ssh, key, default, what, SSH_SECRET_VARIABLES[default], needed=needed
            )
        return SshRoute(
            user=user,
            issuing_ca=issuing_ca or "",
            generated_ca=generated,
            authentication=authentication,  # type: ignore[arg-type]
            port=ssh.port("port", 22),
            become=become,  # type: ignore[arg-type]
            trust_host_key_on_first_use=tofu,
            restart_timeout_seconds=timeout,
            keys_in_config=tuple(name for name in secrets.values() if name in self.raw),
            **secrets,
        )

    def generated_ca(self, ssh: _Object) -> None:
        """`issuing_ca: generated`: the stack's own CA, so neither a CA file nor a key name.
        An issuing_ca_key_key is refused rather than ignored: it says the operator expects
        their own key to sign, which this choice never does."""
        if ssh.get("issuing_ca_path") is not None:
            ssh.problem(
                None,
                "issuing_ca: generated and issuing_ca_path are both set; give one of them "
                "(generated: the stack makes and keeps its own CA; issuing_ca_path: your CA).",
            )
        if ssh.get("issuing_ca_key_key") is not None:
            ssh.problem(
                "issuing_ca_key_key",
                "applies only to your own CA (issuing_ca PEM text or issuing_ca_path); with "
                "issuing_ca: generated the program makes the CA's key and keeps it only as a "
                "secret in the stack state. Remove issuing_ca_key_key.",
            )

    def issuing_ca(self, ssh: _Object) -> str | None:
        """The route's CA: PEM text (issuing_ca) or a PEM file (issuing_ca_path)."""
        what = "the CA that issues the node certificates"
        if ssh.get("issuing_ca") == _GENERATED_CA:
            # Only the ssh route reaches generated_ca(); Lifecycle imports the key into its
            # locker, so it needs a CA whose key the operator holds.
            ssh.problem(
                "issuing_ca",
                "generated is available only with certificate_method: ssh; give your CA's PEM "
                "text or issuing_ca_path (its key in the secret key named by "
                "issuing_ca_key_key).",
            )
            return None
        if ssh.get("issuing_ca") is not None and ssh.get("issuing_ca_path") is not None:
            ssh.problem(None, "both issuing_ca and issuing_ca_path are set; give one of them.")
            return None
        key, pem = "issuing_ca", self.certificate_pem(ssh, "issuing_ca", what)
        if ssh.get("issuing_ca_path") is not None:
            key, pem = "issuing_ca_path", None
            path = self.file_path(ssh, key, f"the PEM file of {what}")
            if path is not None and not path.is_file():
                shown = "the given value" if ssh.hidden else repr(str(path))
                ssh.problem(key, f"{shown} does not exist (expected the PEM file of {what}).")
            elif path is not None:
                try:
                    pem = pki.bundle_pem(
                        pki.load_bundle(path.read_bytes()[: 1024 * 1024], "the file")
                    )
                except (OSError, pki.CertificateError) as error:
                    ssh.problem(key, f"{error} Expected the PEM file of {what}.")
                    return None
        elif ssh.get("issuing_ca") is None:
            ssh.problem(
                None,
                f"issuing_ca or issuing_ca_path is required: {what} (its key goes into the "
                "secret config key named by issuing_ca_key_key); with certificate_method ssh, "
                "issuing_ca: generated makes the stack's own CA instead.",
            )
        if pem is None:
            return None
        try:
            [certificate] = pki.load_bundle(pem, key)
            pki.check_ca(certificate, key)
        except ValueError:
            ssh.problem(key, f"holds several certificates; expected exactly one: {what}.")
            return None
        except pki.CertificateError as problem:
            ssh.problem(key, str(problem))
            return None
        return pem

    def ssl_termination(self, obj: _Object) -> SslTermination:
        expected = "load_balancer or passthrough"
        value = obj.text("ssl_termination", expected)
        if value == "passthrough":
            return "passthrough"
        if value is not None and value != "load_balancer":
            obj.problem(
                "ssl_termination",
                f"{obj.show(value)} is not a kind of SSL termination (expected {expected}).",
            )
        return "load_balancer"

    def nodes(self, obj: _Object) -> tuple[Node, ...]:
        value = obj.get("nodes")
        if value is None:
            obj.problem("nodes", "is required; expected a list of node objects, each with an fqdn.")
            return ()
        if not isinstance(value, list):
            obj.problem("nodes", f"expected a list of objects, got {_kind(value)}.")
            return ()
        if not value:
            obj.problem("nodes", "expected at least one node, got an empty list.")
            return ()
        nodes: list[Node] = []
        seen: dict[str, str] = {}
        for index, item in enumerate(value):
            path = f"{obj.at('nodes')}[{index}]"
            if not isinstance(item, Mapping):
                obj.report.add(path, f"expected an object, got {_kind(item)}.")
                continue
            node = obj.child(path, item)
            node.check_keys(_NODE_KEYS)
            example = (
                f"ws1-{chr(ord('a') + index)}.corp.example"
                if index < 26
                else (f"ws1-node{index + 1}.corp.example")
            )
            fqdn = self.dns_name(node, "fqdn", "the node's FQDN", example)
            if fqdn and fqdn in seen:
                node.problem(
                    "fqdn",
                    f"{node.show(fqdn)} is already the fqdn of {seen[fqdn]}; "
                    "each node of a cluster has its own FQDN.",
                )
            elif fqdn:
                seen[fqdn] = path
            address = self.address(node, "address", "the IP address or host name to connect to")
            service_port = node.port("service_port", 443)
            configurator_port = node.port("configurator_port", _CONFIGURATOR_PORT)
            if service_port == _CONFIGURATOR_PORT:
                node.problem(
                    "service_port",
                    "8443 is the appliance configurator port; the service is on 443 (expected "
                    "the port the node serves Workspace ONE Access on, e.g. 443).",
                )
            elif service_port == configurator_port:
                node.problem(
                    "service_port",
                    f"{node.show(service_port)} is also the configurator_port; the service "
                    "and the appliance configurator need different ports.",
                )
            ssh_port = node.port("ssh_port", 0) or None
            ssh_host_key = node.text(
                "ssh_host_key", "SHA256:<43 base64 characters>", required=False
            )
            if ssh_host_key is not None and not _SSH_HOST_KEY.fullmatch(ssh_host_key):
                node.problem(
                    "ssh_host_key",
                    "expected the SHA-256 fingerprint of the node's SSH host key as "
                    "`ssh-keygen -l` prints it: SHA256: and 43 base64 characters.",
                )
                ssh_host_key = None
            nodes.append(
                Node(
                    fqdn,
                    address or fqdn,
                    service_port,
                    configurator_port,
                    ssh_port,
                    ssh_host_key,
                )
            )
        return tuple(nodes)

    def pins(self, obj: _Object) -> tuple[str, ...]:
        value = obj.get("root_ca_sha256")
        if value is None:
            return ()
        expected = "a SHA-256 fingerprint, or a list of them during a root CA rotation"
        if isinstance(value, str):
            items: list[tuple[str, Any]] = [(obj.at("root_ca_sha256"), value)]
        elif isinstance(value, list):
            if not value:
                obj.problem("root_ca_sha256", f"expected {expected}, got an empty list.")
            items = [(f"{obj.at('root_ca_sha256')}[{i}]", v) for i, v in enumerate(value)]
        else:
            obj.problem("root_ca_sha256", f"expected {expected}, got {_kind(value)}.")
            return ()
        pins: list[str] = []
        for path, item in items:
            text = item.strip() if isinstance(item, str) else None
            if text is None or not text:
                obj.report.add(path, f"expected a SHA-256 fingerprint, got {_kind(item)}.")
                continue
            try:
                # The same rules as the certificate code: colons, spaces or none, any case,
                # with or without openssl's "sha256 Fingerprint=" prefix.
                pins.append(pki.normalize_fingerprint(text, "this value"))
            except pki.CertificateError as error:
                shown = (
                    "the given value is not a SHA-256 fingerprint (expected 64 hex digits)"
                    if obj.hidden
                    else str(error).rstrip(".")
                )
                obj.report.add(
                    path,
                    f"{shown} (printed by `openssl x509 -noout -fingerprint -sha256`, or shown "
                    "on the appliance console).",
                )
        return tuple(dict.fromkeys(pins))

    def extra_sans(self, obj: _Object) -> tuple[str, ...]:
        value = obj.get("extra_sans")
        if value is None:
            return ()
        if not isinstance(value, list):
            obj.problem("extra_sans", f"expected a list of FQDNs, got {_kind(value)}.")
            return ()
        sans: list[str] = []
        for index, item in enumerate(value):
            path = f"{obj.at('extra_sans')}[{index}]"
            if not isinstance(item, str) or not item.strip():
                self.report.add(path, f"expected an FQDN, got {_kind(item)}.")
            elif san := self.dns_value(obj, path, item.strip(), "ws1.dc2.corp.example"):
                sans.append(san)
        return tuple(dict.fromkeys(sans))

    def load_balancer_root_ca(self, obj: _Object, termination: SslTermination) -> str | None:
        key = "load_balancer_root_ca"
        if obj.get(key) is not None and termination == "passthrough":
            obj.problem(
                key,
                "is set, but ssl_termination is passthrough: the appliance only needs the load "
                "balancer's root CA when the load balancer terminates SSL; remove it, or set "
                "ssl_termination: load_balancer.",
            )
            return None
        return self.certificate_pem(obj, key, "the load balancer's root CA")

    def certificate_pem(self, obj: _Object, key: str, expected: str) -> str | None:
        """PEM text read by the same rules as the certificate code (components/pki.py), so
        what one accepts the other never refuses; returned as canonical PEM."""
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            obj.problem(key, f"expected PEM text ({expected}), got {_kind(value)}.")
            return None
        try:
            certificates = pki.load_bundle(value, "the value")
        except pki.CertificateError as error:
            obj.problem(key, _pem_problem(error, expected))
            return None
        return pki.bundle_pem(certificates)

    # -- load balancers

    def load_balancers(
        self, objects: list[_Object], clusters: list[Cluster], *, clusters_known: bool
    ) -> list[LoadBalancer]:
        by_name = {cluster.name: cluster for cluster in clusters if cluster.name}
        load_balancers: list[LoadBalancer] = []
        names: dict[str, str] = {}
        files: dict[Path, str] = {}
        profiles: dict[tuple[str, int, str], str] = {}
        virtual_servers: dict[tuple[str, int], str] = {}
        placements: dict[tuple[str, int, str, str], str] = {}
        self.previous_names(objects, [_text_or_empty(obj.get("name")) for obj in objects])
        for obj in objects:
            kind = self.kind(obj)
            all_keys = tuple(dict.fromkeys((*_F5_KEYS, *_PEM_FILE_KEYS)))
            if kind is None:
                obj.check_keys(all_keys)
            else:
                obj.check_keys(_KIND_KEYS[kind], kind, all_keys)
            name = self.name(obj, names, "ws1-prod-f5" if kind == "f5" else "ws1-prod-nginx")
            cluster = self.cluster_reference(obj, by_name, clusters_known)
            if kind == "pem_file":
                path = self.file_path(obj, "path", "the PEM bundle file the load balancer reads")
                path = path or Path()
                if path in files:
                    obj.problem(
                        "path",
                        f"{obj.show(str(path))} is also the path of {files[path]}; each "
                        "pem_file load balancer needs its own file.",
                    )
                elif path != Path():
                    files[path] = obj.path
                adopt = obj.boolean("adopt_existing_file", False)
                load_balancers.append(
                    PemFileLoadBalancer(
                        name,
                        cluster,
                        path,
                        adopt_existing_file=adopt,
                        previous_name=_previous_name(obj),
                    )
                )
            elif kind == "f5":
                lb = self.f5(obj, name, cluster, by_name.get(cluster))
                device = (lb.address, lb.port, lb.server_ssl_profile_path)
                if self.one_entry_per_device_partition(obj, lb, placements):
                    pass  # the same collision, said once
                elif lb.address and device in profiles:
                    obj.problem(
                        "server_ssl_profile",
                        f"{obj.show(lb.server_ssl_profile_path)} on {obj.show(lb.address)} is "
                        f"also managed by {profiles[device]}; give each a different "
                        "server_ssl_profile.",
                    )
                elif lb.address:
                    profiles[device] = obj.path
                self.one_entry_per_virtual_server(obj, lb, virtual_servers)
                load_balancers.append(dataclasses.replace(lb, previous_name=_previous_name(obj)))
        return load_balancers

    def kind(self, obj: _Object) -> Literal["f5", "pem_file"] | None:
        expected = "f5 or pem_file"
        value = obj.text("kind", expected)
        if value == "f5":
            return "f5"
        if value == "pem_file":
            return "pem_file"
        if value is not None:
            obj.problem(
                "kind",
                f"{obj.show(value)} is not a supported kind of load balancer "
                f"(expected {expected}).",
            )
        return None

    def one_entry_per_device_partition(
        self, obj: _Object, lb: F5LoadBalancer, seen: dict[tuple[str, int, str, str], str]
    ) -> bool:
        """Refuse two F5 entries for one cluster on the same BIG-IP and partition.

        Device object names come from the cluster's service FQDN (so that renaming an entry
        renames nothing on the device), so two such entries would declare the same objects,
        fight over them, and destroying one would delete what the other still uses.
        """
        if not lb.address or not lb.cluster:
            return False
        where = (lb.address, lb.port, lb.partition, lb.cluster)
        if where not in seen:
            seen[where] = obj.path
            return False
        shown = "this BIG-IP" if obj.hidden else f"{lb.address}:{lb.port}"
        obj.problem(
            "partition",
            f"{seen[where]} already declares cluster {_show(lb.cluster)} on {shown} in partition "
            f"{lb.partition}; two entries there would declare the same objects (their names "
            "come from the cluster's service FQDN) and destroying one would delete the other's. "
            "Declare the cluster once per BIG-IP and partition, or give this entry another "
            "partition.",
        )
        return True

    def one_entry_per_virtual_server(
        self, obj: _Object, lb: F5LoadBalancer, seen: dict[tuple[str, int], str]
    ) -> None:
        """Refuse two F5 entries with one virtual server: they are one device group.

        The units of an HA pair (or any config-sync group) share their virtual servers. Their
        objects are named per cluster, so sync makes the second entry's objects collide with
        the first's (409 "already exists"), and destroying one entry deletes the objects the
        other one still uses.
        """
        vs = lb.virtual_server
        if vs is None or not vs.destination:
            return
        where = (vs.destination, vs.port)
        if where not in seen:
            seen[where] = obj.path
            return
        shown = "the given value" if obj.hidden else f"{vs.destination} port {vs.port}"
        obj.problem(
            "virtual_server.destination",
            f"{shown} is also the virtual server of {seen[where]}; two entries with the same "
            "virtual server are one device group (e.g. the two units of an HA pair): this "
            "program names the objects per cluster, so config sync would make them collide "
            '(409 "already exists"), and destroying one entry would delete the other\'s '
            "objects. Declare one entry per device group, at the management address of its "
            "active unit, with device_group set.",
        )

    def cluster_reference(
        self, obj: _Object, clusters: Mapping[str, Cluster], clusters_known: bool
    ) -> str:
        value = obj.text("cluster", "the name of a cluster declared in clusters")
        if value is None:
            return ""
        if clusters_known and value not in clusters:
            declared = ", ".join(_show(name) for name in clusters) or "none"
            close = difflib.get_close_matches(value, list(clusters), n=1)
            hint = f"; did you mean {_show(close[0])}?" if close else "."
            obj.problem(
                "cluster",
                f"{obj.show(value)} is not a declared cluster (declared: {declared}){hint}",
            )
        return value

    def f5(
        self, obj: _Object, name: str, cluster_name: str, cluster: Cluster | None
    ) -> F5LoadBalancer:
        address = self.address(
            obj,
            "address",
            "the host name or IP address of the BIG-IP management API",
            required=True,
        )
        if ":" in address:
            # go-bigip (vendored in terraform-provider-bigip v1.26.0, bigip.go NewSession)
            # builds "https://" + address + ":" + port, without brackets.
            obj.problem(
                "address",
                f"{obj.show(address)} is an IPv6 address, which the F5 provider cannot use (it "
                "builds its URL as https://<address>:<port>, without brackets); expected a host "
                "name that resolves to it, or an IPv4 address.",
            )
            address = ""
        port = obj.port("port", 443)
        username = obj.text("username", "the BIG-IP user name") or ""
        password_key = self.password_key(
            obj,
            "password_key",
            _DEFAULT_BIGIP_PASSWORD_KEY,
            "BIG-IP password",
            BIGIP_PASSWORD_VARIABLE,
            needed=True,
        )
        partition = self.f5_name(obj, "partition", "a BIG-IP partition name, e.g. Common")
        validate = obj.boolean("validate_management_certificate", True)
        ca_path = self.file_path(
            obj,
            "management_ca_path",
            "the PEM file of the CA that signs the BIG-IP management certificate",
            required=False,
        )
        if ca_path is not None and not ca_path.is_file():
            # The F5 provider reads this file itself; say so here rather than mid-apply. The
            # whole path is shown: cut to 80 characters it would lose the file name.
            shown = "the given value" if obj.hidden else repr(str(ca_path))
            obj.problem(
                "management_ca_path",
                f"{shown} does not exist (expected the PEM file of the CA "
                "that signs the BIG-IP management certificate).",
            )
        elif ca_path is not None:
            self.ca_file(obj, "management_ca_path", ca_path)
        if validate and ca_path is None and obj.get("management_ca_path") is None:
            obj.problem(
                "management_ca_path",
                "is required while validate_management_certificate is true; give the PEM file "
                "of the CA that signs the BIG-IP management certificate, or set "
                "validate_management_certificate: false (not recommended: the password is then "
                "sent to whoever answers at the address).",
            )
        profile = self.f5_name(
            obj, "server_ssl_profile", "a BIG-IP object name, e.g. ws1-prod-serverssl"
        )
        if profile is None and cluster is not None and cluster.service_fqdn:
            # Named after the service FQDN, like every other object on the device.
            profile = f"ws1-{cluster.service_fqdn}-serverssl"
        device_group = self.f5_name(
            obj, "device_group", "the name of the BIG-IP device group, e.g. ws1-ha"
        )
        virtual_server = self.virtual_server(obj, cluster)
        return F5LoadBalancer(
            name=name,
            cluster=cluster_name,
            address=address or "",
            username=username,
            port=port,
            password_key=password_key,
            password_in_config=password_key in self.raw,
            partition=partition or "Common",
            management_ca_path=ca_path,
            validate_management_certificate=validate,
            server_ssl_profile=profile or "",
            virtual_server=virtual_server,
            device_group=device_group,
        )

    def ca_file(self, obj: _Object, key: str, path: Path) -> None:
        """A CA file checked like every other CA input: PEM, CAs only, valid, no private key."""
        try:
            data = path.read_bytes()[: 1024 * 1024]
        except OSError as error:
            obj.problem(key, f"cannot be read ({error.strerror}); expected a readable PEM file.")
            return
        try:
            for certificate in pki.load_bundle(data, "the file"):
                pki.check_ca(certificate, "the file")
        except pki.CertificateError as error:
            obj.problem(
                key,
                f"{error} Expected the PEM file of the CA that signs the BIG-IP "
                "management certificate.",
            )

    def f5_name(self, obj: _Object, key: str, expected: str) -> str | None:
        value = obj.text(key, expected, required=False)
        if value is None:
            return None
        if "/" in value:
            obj.problem(
                key,
                f"{obj.show(value)} contains '/'; expected a name without a folder or "
                "partition (the partition comes from partition).",
            )
            return None
        if not _F5_NAME.fullmatch(value):
            obj.problem(
                key,
                f"{obj.show(value)} is not a valid BIG-IP name (expected letters, digits, "
                "'.', '_' and '-', starting with a letter or '_').",
            )
            return None
        return value

    def virtual_server(self, obj: _Object, cluster: Cluster | None) -> VirtualServer | None:
        value = obj.get("virtual_server")
        if value is None:
            return None
        if not isinstance(value, Mapping):
            obj.problem("virtual_server", f"expected an object, got {_kind(value)}.")
            return None
        vs = obj.child(obj.at("virtual_server"), value)
        vs.check_keys(_VIRTUAL_SERVER_KEYS)
        destination = vs.text("destination", "the IP address users connect to, e.g. 10.0.0.10")
        if destination is not None:
            try:
                destination = str(ipaddress.ip_address(destination))
            except ValueError:
                vs.problem(
                    "destination",
                    f"{vs.show(destination)} is not an IP address (expected the virtual "
                    "server's address, e.g. 10.0.0.10).",
                )
        port = vs.port("port", 443)
        if port == _CONFIGURATOR_PORT:
            vs.problem(
                "port",
                "8443 is the appliance configurator port; the load balancer must not use it "
                "for the service (expected e.g. 443).",
            )
        profile = vs.text(
            "client_ssl_profile", "the full path of a client-SSL profile", required=False
        )
        if profile is not None and not _F5_PATH.fullmatch(profile):
            vs.problem(
                "client_ssl_profile",
                f"{vs.show(profile)} is not a full BIG-IP path (expected e.g. "
                "/Common/ws1-clientssl).",
            )
        if cluster is not None and cluster.passthrough and profile is not None:
            vs.problem(
                "client_ssl_profile",
                f"is set, but cluster {_show(cluster.name)} uses ssl_termination: passthrough, "
                "so the load balancer does not terminate SSL; remove it, or set the cluster's "
                "ssl_termination: load_balancer.",
            )
        if cluster is not None and not cluster.passthrough and profile is None:
            vs.problem(
                "client_ssl_profile",
                f"is required because cluster {_show(cluster.name)} uses ssl_termination: "
                "load_balancer; expected the full path of the client-SSL profile that holds "
                "the service certificate, e.g. /Common/ws1-clientssl.",
            )
        snat = vs.text("snat", "automap, or the full path of a SNAT pool", required=False)
        if snat is not None and snat != "automap" and not _F5_PATH.fullmatch(snat):
            vs.problem(
                "snat",
                f"{vs.show(snat)} is neither automap nor the full path of a SNAT pool (expected "
                "automap, or e.g. /Common/ws1-snat).",
            )
            snat = None
        return VirtualServer(destination or "", port, profile, snat)

    # -- shared field kinds

    def dns_name(self, obj: _Object, key: str, expected: str, example: str) -> str:
        value = obj.text(key, f"{expected}, e.g. {example}")
        return "" if value is None else self.dns_value(obj, obj.at(key), value, example)

    def dns_value(self, obj: _Object, path: str, value: str, example: str) -> str:
        problem = _dns_problem(value)
        if problem is not None:
            self.report.add(path, f"{obj.show(value)} {problem} (expected e.g. {example}).")
            return ""
        return value.lower().rstrip(".")

    def address(self, obj: _Object, key: str, expected: str, *, required: bool = False) -> str:
        value = obj.text(key, f"{expected}, e.g. 10.0.0.21", required=required)
        if value is None:
            return ""
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        host = value.lower().rstrip(".")
        labels = host.split(".")
        # A name whose last label is all digits ("10.1", "3232235777") is no DNS name; the
        # system resolver reads it as an abbreviated IPv4 address of some other host.
        if (
            len(host) > 253
            or not all(_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()
        ):
            obj.problem(
                key,
                f"{obj.show(value)} is neither an IP address nor a valid host name "
                "(expected e.g. 10.0.0.21 or ws1-a.corp.example).",
            )
            return ""
        return host

    def file_path(
        self, obj: _Object, key: str, expected: str, *, required: bool = True
    ) -> Path | None:
        value = obj.text(key, f"{expected}, ending in .pem or .crt", required=required)
        if value is None:
            return None
        path = Path(value).expanduser()
        if path.suffix.lower() not in (".pem", ".crt"):
            obj.problem(
                key,
                f"{obj.show(value)} does not end in .pem or .crt (expected {expected}).",
            )
            return None
        if not path.is_absolute() and self.project_dir is not None:
            path = self.project_dir / path
        return path

    def password_key(
        self,
        obj: _Object,
        key: str,
        default: str,
        what: str,
        variable: str,
        *,
        needed: bool,
    ) -> str:
        """The name of the secret config key holding a password; the value is never shown.

        Someone may type the password itself where its key's name belongs, so a value that is
        not a valid key name is never echoed. A non-default key that the stack does not set is
        refused when the password is needed: only the default key falls back to `variable`.
        """
        value = obj.get(key)
        name = default
        if value is not None:
            expected = f"the name of the secret config key that holds the {what}, e.g. {default}"
            text = obj.text(key, expected)
            if text is None:
                return default
            if ":" in text or not _CONFIG_KEY.fullmatch(text):
                obj.problem(
                    key,
                    f"is not a config key name of this project (expected {expected}, without "
                    "a namespace; the password itself goes into that key with "
                    "`pulumi config set --secret <key>`).",
                )
                return default
            name = text
        if needed and name != default and name not in self.raw:
            # Not echoed: what was typed here may be the password itself.
            obj.problem(
                key,
                "names a config key that this stack does not set (the name is not repeated "
                "here, in case a password was typed where its key's name belongs); set that "
                f"key with `pulumi config set --secret <key>`, or remove {key} to use the "
                f"default key ({default}) or the {variable} environment variable.",
            )
        self.password_keys.append(name)
        if name in self.raw and f"{PROJECT}:{name}" not in self.secret_keys:
            self.report.add(
                name,
                f"holds the {what} in plain text; make it a secret with "
                f"`pulumi config set --secret {name} <password>`.",
            )
        return name


# ---------------------------------------------------------------------------- wording


def _dns_problem(value: str) -> str | None:
    name = value.rstrip(".") if value.endswith(".") and not value.endswith("..") else value
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "is an IP address, not a DNS name"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a valid DNS name"
    if len(labels) < 2:
        return "is not a fully qualified DNS name"
    return None


def _pem_problem(error: pki.CertificateError, expected: str) -> str:
    """pki's judgement of pasted PEM text, worded for a stack config value."""
    if isinstance(error, pki.PrivateKeyNotCertificateError):
        return (
            "contains a private key; remove it from the stack configuration and keep only "
            "the certificate (and rotate that key, since it has been exposed)."
        )
    if isinstance(error, pki.EmptyInputError) or (
        isinstance(error, pki.NotPemError) and "no -----BEGIN CERTIFICATE-----" in str(error)
    ):
        return (
            f"does not contain a PEM certificate (expected {expected}, "
            "from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----)."
        )
    if isinstance(error, pki.CorruptPemError) and "damaged base64" in str(error):
        reason = (
            "the text between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- "
            "is not base64 (is it still the example placeholder?)"
        )
    elif isinstance(error, pki.CorruptPemError) and "not a valid X.509" in str(error):
        reason = "the base64 text is not an X.509 certificate (was it cut short when pasted?)"
    else:
        return f"{error} Expected {expected}, as PEM text."
    return f"is not a valid PEM certificate: {reason}; expected {expected}, as PEM text."


def _unknown_key(key: str, known: Sequence[str], *, top_level: bool = False) -> str:
    if "password" in key.lower() and not key.lower().endswith("_key") and not top_level:
        return (
            "unknown key; a password must never be written here: store it with "
            "`pulumi config set --secret <key> <password>` and name that key in "
            f"{'password_key' if 'password_key' in known else 'admin_password_key'}."
        )
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key; did you mean {_show(close[0])}?"
    if top_level:
        return (
            "unknown key; this program reads clusters, load_balancers, expiry_warning_days and "
            "the password keys named by admin_password_key and password_key."
        )
    return f"unknown key (expected one of: {', '.join(known)})."


def _previous_name(obj: _Object) -> str | None:
    previous = obj.get("previous_name")
    return previous if isinstance(previous, str) and _NAME.fullmatch(previous) else None


def _text_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
