"""The F5 BIG-IP trust store under Pulumi mocks: the exact inputs given to pulumi_f5bigip.

Every assertion is on what the real `pulumi_f5bigip` classes hand to the engine (camelCase keys,
provider booleans as JSON text, secrets wrapped), recorded by a mock monitor.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import pytest
import trustme
from pulumi.runtime.mocks import MockMonitor

from components import pki
from components.settings import F5LoadBalancer, Node, VirtualServer
from components.trust_stores import ClusterTrust, TrustStoreOutputs
from components.trust_stores.f5 import (
    HEARTBEAT_RECEIVE,
    ca_object_name,
    check,
    declare_trust,
    node_object_name,
)

PROJECT = "ws1-access-lb-trust"
PASSWORD = "Bigip-Pa55-do-not-leak-7d1f"  # a marker that must only ever appear as a secret
SECRET_SIG = "4dabf18193072939515e22adb298388d"
MGMT_CA = Path("/etc/ws1/bigip-mgmt-ca.pem")
HEARTBEAT_SEND = (
    "GET /SAAS/API/1.0/REST/system/health/heartbeat HTTP/1.0\r\n"
    "Host: access.corp.example\r\nConnection: close\r\n\r\n"
)
SERVICE = "access.corp.example"
NAME_CHECK_TYPE = "pulumi-python:dynamic/f5:ServerSslNameCheck"
GROUP_CHECK_TYPE = "pulumi-python:dynamic/f5:DeviceGroupCheck"
GROUP_SYNC_TYPE = "pulumi-python:dynamic/f5:DeviceGroupSync"


# ------------------------------------------------------------------------------ harness


@dataclasses.dataclass
class Registration:
    typ: str
    name: str
    inputs: dict[str, Any]
    request: Any  # the RegisterResourceRequest: options such as provider, dependencies


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[args.name] = (args.typ, dict(args.inputs))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


class RecordingMonitor(MockMonitor):
    """Keeps each registration request, for the options the mocks do not see."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.requests: dict[str, Any] = {}
        self.urns: dict[str, str] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self.requests[request.name] = request
        response = super().RegisterResource(request)
        self.urns[request.name] = response.urn
        return response


class Run:
    """What one `declare_trust` declared: registrations by name, warnings, outputs."""

    def __init__(
        self,
        mocks: RecordingMocks,
        monitor: RecordingMonitor,
        warnings: list[str],
        outputs: dict[str, Any],
    ) -> None:
        self.registrations = {
            name: Registration(typ, name, inputs, monitor.requests[name])
            for name, (typ, inputs) in mocks.inputs.items()
        }
        self.warnings = warnings
        self.outputs = outputs
        self.urns = dict(monitor.urns)

    def __getitem__(self, name: str) -> Registration:
        assert name in self.registrations, (
            f"resource {name} was not declared; declared: {sorted(self.registrations)}"
        )
        return self.registrations[name]

    def inputs(self, name: str) -> dict[str, Any]:
        return self[name].inputs

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations.values() if r.typ == typ]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())


def declare(
    lb: F5LoadBalancer, trust: ClusterTrust, *, preview: bool = False, waiter: bool = False
) -> Run:
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"{__name__}.engine")
    logger.propagate = False
    handler = _ListHandler()
    logger.handlers = [handler]
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack="unit", preview=preview, logger=logger, monitor=monitor
    )
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        parent = pulumi.ComponentResource("ws1:test:Parent", "access-trust")
        result: TrustStoreOutputs = declare_trust(lb, trust, parent)
        if waiter:  # as the node certificate waits for every trust store (access_trust.py)
            pulumi.CustomResource(
                "ws1:test:Waiter",
                "waiter",
                {},
                opts=pulumi.ResourceOptions(depends_on=list(result.written)),
            )
        return pulumi.Output.all(result.trusted_sha256s, result.object_names).apply(
            lambda values: outputs.update(trusted_sha256s=values[0], object_names=values[1])
        )

    program()
    return Run(mocks, monitor, handler.warnings, outputs)


def secret_value(value: Any) -> Any:
    """The plain value inside a secret as the mocks receive it; fails if it is not a secret."""
    assert isinstance(value, dict) and SECRET_SIG in value, f"expected a secret, got {value!r}"
    return value["value"]


def plain_occurrences(value: Any, needle: str, where: str) -> list[str]:
    """Places where `needle` appears outside a secret wrapper."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return []
        found: list[str] = []
        for key, item in value.items():
            found += plain_occurrences(item, needle, f"{where}.{key}")
        return found
    if isinstance(value, list | tuple):
        found = []
        for index, item in enumerate(value):
            found += plain_occurrences(item, needle, f"{where}[{index}]")
        return found
    return [where] if isinstance(value, str) and needle in value else []


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def isolated_config() -> Iterator[None]:
    """Each test starts with no stack config and leaves the global config as it found it."""
    config = pulumi.runtime.config.CONFIG.get()
    saved = (dict(config), set(pulumi.runtime.config._SECRET_KEYS.get()))
    pulumi.runtime.set_all_config({}, [])
    yield
    pulumi.runtime.set_all_config(saved[0], sorted(saved[1]))


@pytest.fixture
def password_in_config() -> str:
    key = f"{PROJECT}:bigipPassword"
    pulumi.runtime.set_all_config({key: PASSWORD}, [key])
    return PASSWORD


def _ca(name: str) -> trustme.CA:
    return trustme.CA(organization_name=name)


@pytest.fixture(scope="module")
def roots() -> tuple[str, list[str]]:
    """A real appliance-like root CA bundle (two roots, as during a rotation)."""
    certs = [_ca("ws1 appliance old").cert_pem.bytes(), _ca("ws1 appliance new").cert_pem.bytes()]
    bundle = b"".join(certs).decode()
    return bundle, [pki.sha256_fingerprint(c) for c in pki.load_bundle(bundle, "test roots")]


def make_trust(bundle: str, sha256s: Sequence[str], **changes: Any) -> ClusterTrust:
    values: dict[str, Any] = {
        "cluster": "prod",
        "service_fqdn": "access.corp.example",
        "nodes": (
            Node("ws1-a.corp.example", "10.0.0.21"),
            Node("ws1-b.corp.example", "10.0.0.22"),
        ),
        "root_ca_bundle_pem": bundle,
        "root_ca_sha256s": list(sha256s),
    }
    values.update(changes)
    return ClusterTrust(**values)


def refusals(lb: F5LoadBalancer, trust: ClusterTrust) -> list[str]:
    """What f5.check says before anything is declared, for the cluster `trust` describes."""
    cluster = dataclasses.make_dataclass("Cluster", ["name", "service_fqdn", "nodes"])(
        trust.cluster, trust.service_fqdn, trust.nodes
    )
    return check(lb, cluster)


def make_lb(**changes: Any) -> F5LoadBalancer:
    values: dict[str, Any] = {
        "name": "bigip-dc1",
        "cluster": "prod",
        "address": "bigip-dc1.corp.example",
        "username": "automation",
        "management_ca_path": MGMT_CA,
        "server_ssl_profile": "ws1-prod-serverssl",
    }
    values.update(changes)
    return F5LoadBalancer(**values)


VS = VirtualServer("10.0.0.10", 443, "/Common/ws1-clientssl")


# ------------------------------------------------------------------------------ provider


def test_provider_verifies_the_management_api_and_disables_telemetry(password_in_config, roots):
    run = declare(make_lb(), make_trust(*roots))

    provider = run["bigip-dc1-bigip"]
    assert provider.typ == "pulumi:providers:f5bigip", provider.typ
    inputs = dict(provider.inputs)
    assert secret_value(inputs.pop("password")) == password_in_config, "bigip-dc1-bigip password"
    assert inputs == {
        "address": "bigip-dc1.corp.example",
        "port": "443",
        "username": "automation",
        "teemDisable": "true",
        "validateCertsDisable": "false",
        "trustedCertPath": str(MGMT_CA),
    }, f"bigip-dc1-bigip inputs: {inputs}"
    assert run.warnings == [], f"no warning expected while validation is on: {run.warnings}"


def test_password_appears_nowhere_but_as_a_secret(password_in_config, roots):
    run = declare(make_lb(virtual_server=VS), make_trust(*roots))

    for name, registration in run.registrations.items():
        leaks = plain_occurrences(registration.inputs, password_in_config, name)
        assert leaks == [], f"{name}: password in plain form at {leaks}"
    for warning in run.warnings:
        assert password_in_config not in warning


def test_password_not_in_config_is_left_to_the_environment_variable(roots):
    run = declare(make_lb(), make_trust(*roots))

    inputs = run.inputs("bigip-dc1-bigip")
    assert "password" not in inputs, f"bigip-dc1-bigip: password must be unset, got {inputs}"


def test_opting_out_of_management_certificate_validation_warns(password_in_config, roots):
    lb = make_lb(validate_management_certificate=False, management_ca_path=None)
    run = declare(lb, make_trust(*roots))

    inputs = run.inputs("bigip-dc1-bigip")
    assert inputs["validateCertsDisable"] == "true", f"bigip-dc1-bigip: {inputs}"
    assert "trustedCertPath" not in inputs, f"bigip-dc1-bigip: {inputs}"
    assert len(run.warnings) == 1, run.warnings
    warning = run.warnings[0]
    assert "management API certificate of load balancer bigip-dc1" in warning, warning
    assert "NOT verified" in warning, warning
    assert "validate_management_certificate: true and management_ca_path" in warning, warning


def test_validation_without_a_management_ca_is_refused(roots):
    lb = make_lb(management_ca_path=None)
    assert refusals(lb, make_trust(*roots)) == [
        "load balancer bigip-dc1: validate_management_certificate is true but "
        "management_ca_path is not set; expected the PEM file of the CA that signs the "
        "BIG-IP management API certificate."
    ]


# ------------------------------------------------------------------------------ CA object


def test_root_ca_object_is_content_addressed_with_the_partition_apart(roots):
    bundle, sha256s = roots
    run = declare(make_lb(partition="ws1"), make_trust(bundle, sha256s))

    certificate = run["bigip-dc1-prod-appliance-root-ca"]
    assert certificate.typ == "f5bigip:ssl/certificate:Certificate", certificate.typ
    inputs = dict(certificate.inputs)
    assert secret_value(inputs.pop("content")) == bundle, "certificate content is the bundle"
    expected_name = ca_object_name(SERVICE, sha256s)
    assert re.fullmatch(r"ws1-access\.corp\.example-rootca-[0-9a-f]{16}", expected_name)
    assert inputs == {"name": expected_name, "partition": "ws1"}, (
        f"bigip-dc1-prod-appliance-root-ca inputs: {inputs}"
    )
    assert certificate.request.deleteBeforeReplace is False, "rotation must create first"
    # The provider moves an object to another partition in place, PATCHing a missing path.
    assert list(certificate.request.replaceOnChanges) == ["partition"]


def test_changed_bundle_gives_a_different_object_name(roots):
    bundle, sha256s = roots
    before = declare(make_lb(), make_trust(bundle, sha256s[:1]))
    after = declare(make_lb(), make_trust(bundle, sha256s))

    old = before.inputs("bigip-dc1-prod-appliance-root-ca")["name"]
    new = after.inputs("bigip-dc1-prod-appliance-root-ca")["name"]
    assert old != new, f"bigip-dc1-prod-appliance-root-ca: same name {old} for other roots"
    assert after.inputs("bigip-dc1-prod-server-ssl")["caFile"] == f"/Common/{new}"


def test_object_name_ignores_order_and_notation_of_fingerprints(roots):
    _, sha256s = roots
    plain = [s.replace(":", "").lower() for s in reversed(sha256s)]
    assert ca_object_name(SERVICE, sha256s) == ca_object_name(SERVICE, plain)
    assert ca_object_name(SERVICE, sha256s) != ca_object_name("login.corp.example", sha256s)
    with pytest.raises(ValueError, match="no root CA fingerprint to trust"):
        ca_object_name(SERVICE, [])


def test_device_names_follow_the_service_fqdn_never_the_entry_or_cluster_label(roots):
    trust = make_trust(*roots)
    # The profile's default name (settings) comes from the service FQDN too.
    profile = "ws1-access.corp.example-serverssl"
    first = declare(make_lb(virtual_server=VS, server_ssl_profile=profile), trust)
    renamed = declare(
        make_lb(
            name="bigip-renamed", cluster="renamed", virtual_server=VS, server_ssl_profile=profile
        ),
        dataclasses.replace(trust, cluster="renamed"),
    )

    def device_names(run: Run) -> list[str]:
        return sorted(
            str(r.inputs.get("name"))
            for r in run.registrations.values()
            if r.typ.startswith("f5bigip:") and "name" in r.inputs
        )

    names = device_names(first)
    assert names == device_names(renamed), "renaming the entry must rename nothing on the device"
    for name in names:
        assert "bigip-dc1" not in name and "prod" not in name, name


# ------------------------------------------------------------------------------ profile


def test_server_ssl_profile_verifies_nodes_with_the_root_ca(roots):
    run = declare(make_lb(), make_trust(*roots))

    ca_name = ca_object_name(SERVICE, roots[1])
    profile = run["bigip-dc1-prod-server-ssl"]
    assert profile.typ == "f5bigip:ltm/profileServerSsl:ProfileServerSsl", profile.typ
    assert profile.inputs == {
        "name": "/Common/ws1-prod-serverssl",
        "defaultsFrom": "/Common/serverssl",
        "caFile": f"/Common/{ca_name}",
        "peerCertMode": "require",
        "authenticate": "always",
        "authenticateDepth": 2,
        "untrustedCertResponseControl": "drop",
        "expireCertResponseControl": "drop",
        "serverName": SERVICE,
        "cert": "none",
        "key": "none",
    }, f"bigip-dc1-prod-server-ssl inputs: {profile.inputs}"
    depends = set(profile.request.dependencies)
    assert run.urns["bigip-dc1-prod-appliance-root-ca"] in depends, depends


def test_name_check_is_set_on_the_managed_profile_over_rest(roots):
    run = declare(make_lb(partition="ws1"), make_trust(*roots))

    check = run["bigip-dc1-prod-authenticate-name"]
    assert check.typ == NAME_CHECK_TYPE, check.typ
    inputs = {key: value for key, value in check.inputs.items() if key != "__provider"}
    assert inputs == {
        "address": "bigip-dc1.corp.example",
        "port": 443,
        "username": "automation",
        # The NAME of the config key: the provider reads the password itself.
        "password_key": "bigipPassword",
        "management_ca_path": str(MGMT_CA),
        "profile": "/ws1/ws1-prod-serverssl",
        "authenticate_name": SERVICE,
    }, f"bigip-dc1-prod-authenticate-name inputs: {inputs}"
    assert run.urns["bigip-dc1-prod-server-ssl"] in set(check.request.dependencies)
    assert check.request.provider == "", "a dynamic resource takes no f5bigip provider"
    assert not run.by_type("f5bigip:index/command:Command"), "no tmsh through bash any more"


def test_service_fqdn_that_cannot_be_an_object_name_is_refused(roots):
    trust = make_trust(*roots, service_fqdn="access.corp.example' ; rm -rf /tmp/x '")
    [problem] = refusals(make_lb(), trust)
    assert problem.startswith(
        "load balancer bigip-dc1: the service FQDN \"access.corp.example' ; rm -rf /tmp/x '\" "
        "cannot be used in a BIG-IP object name"
    ), problem


def test_every_device_resource_uses_the_explicit_provider_and_the_parent(roots):
    run = declare(make_lb(virtual_server=VS, device_group="ws1-ha"), make_trust(*roots))

    provider_ref = f"{run.urns['bigip-dc1-bigip']}::bigip-dc1-bigip-id"
    parent_urn = run.urns["access-trust"]
    for name, registration in run.registrations.items():
        if name == "access-trust":
            continue
        assert registration.request.parent == parent_urn, f"{name}: parent"
        if registration.typ.startswith("f5bigip:") and name != "bigip-dc1-bigip":
            assert registration.request.provider == provider_ref, f"{name}: provider"


def test_outputs_show_the_fingerprints_and_where_the_trust_lives(roots):
    _, sha256s = roots
    run = declare(make_lb(), make_trust(*roots), preview=True)

    assert run.outputs["trusted_sha256s"] == sha256s
    assert run.outputs["object_names"] == [
        f"/Common/{ca_object_name(SERVICE, sha256s)}",
        "/Common/ws1-prod-serverssl",
    ]


# ------------------------------------------------------------------------------ virtual server


def test_without_virtual_server_only_the_trust_is_declared(roots):
    run = declare(make_lb(), make_trust(*roots))

    assert sorted(run.registrations) == [
        "access-trust",
        "bigip-dc1-bigip",
        "bigip-dc1-prod-appliance-root-ca",
        "bigip-dc1-prod-authenticate-name",
        "bigip-dc1-prod-server-ssl",
    ]


BASE = "/Common/ws1-access.corp.example"


def test_virtual_server_re_encrypts_to_verified_nodes(roots):
    run = declare(make_lb(virtual_server=VS), make_trust(*roots))

    expected = {
        "bigip-dc1-prod-heartbeat": {
            "name": f"{BASE}-heartbeat",
            "parent": "/Common/https",
            "send": HEARTBEAT_SEND,
            "receive": HEARTBEAT_RECEIVE,
            "sslProfile": "/Common/ws1-prod-serverssl",
        },
        "bigip-dc1-prod-pool": {"name": f"{BASE}-pool", "monitors": [f"{BASE}-heartbeat"]},
        "bigip-dc1-prod-node-10.0.0.21": {
            "name": "/Common/ws1-node-10.0.0.21",
            "address": "10.0.0.21",
            "description": "ws1-a.corp.example",
            "monitor": "none",
        },
        "bigip-dc1-prod-node-10.0.0.22": {
            "name": "/Common/ws1-node-10.0.0.22",
            "address": "10.0.0.22",
            "description": "ws1-b.corp.example",
            "monitor": "none",
        },
        "bigip-dc1-prod-member-10.0.0.21-443": {
            "pool": f"{BASE}-pool",
            "node": "/Common/ws1-node-10.0.0.21:443",
        },
        "bigip-dc1-prod-member-10.0.0.22-443": {
            "pool": f"{BASE}-pool",
            "node": "/Common/ws1-node-10.0.0.22:443",
        },
        "bigip-dc1-prod-cookie": {"name": f"{BASE}-cookie", "defaultsFrom": "/Common/cookie"},
        "bigip-dc1-prod-http": {
            "name": f"{BASE}-http",
            "defaultsFrom": "/Common/http",
            "insertXforwardedFor": "enabled",
        },
        "bigip-dc1-prod-tcp": {
            "name": f"{BASE}-tcp",
            "defaultsFrom": "/Common/tcp",
            "idleTimeout": 3600,
        },
        "bigip-dc1-prod-virtual-server": {
            "name": f"{BASE}-vs",
            "destination": "10.0.0.10",
            "port": 443,
            "pool": f"{BASE}-pool",
            "clientProfiles": ["/Common/ws1-clientssl"],
            "serverProfiles": ["/Common/ws1-prod-serverssl"],
            "persistenceProfiles": [f"{BASE}-cookie"],
            "profiles": [f"{BASE}-http", f"{BASE}-tcp"],
            "sourceAddressTranslation": "none",
        },
    }
    for name, inputs in expected.items():
        assert run.inputs(name) == inputs, f"{name} inputs: {run.inputs(name)}"
    vs = run["bigip-dc1-prod-virtual-server"]
    depends = set(vs.request.dependencies)
    for needed in ("pool", "cookie", "http", "tcp", "server-ssl", "authenticate-name"):
        assert run.urns[f"bigip-dc1-prod-{needed}"] in depends, f"virtual server after {needed}"
    for address in ("10.0.0.21", "10.0.0.22"):
        member = run[f"bigip-dc1-prod-member-{address}-443"]
        assert run.urns[f"bigip-dc1-prod-node-{address}"] in set(member.request.dependencies)
    # Same destination and port cannot exist twice on a BIG-IP: a renamed one goes first.
    assert vs.request.deleteBeforeReplace is True
    for persistence in ("bigip-dc1-prod-cookie",):
        assert list(run[persistence].request.replaceOnChanges) == ["name"], persistence


def test_passthrough_virtual_server_forwards_tcp_and_never_touches_tls_or_http(roots):
    # No client-SSL profile: the cluster uses ssl_termination: passthrough.
    vs = VirtualServer("10.0.0.10", 443, None)
    run = declare(make_lb(virtual_server=vs), make_trust(*roots))

    assert run.inputs("bigip-dc1-prod-virtual-server") == {
        "name": f"{BASE}-vs",
        "destination": "10.0.0.10",
        "port": 443,
        "pool": f"{BASE}-pool",
        "persistenceProfiles": [f"{BASE}-source-address"],
        "profiles": [f"{BASE}-tcp"],
        "sourceAddressTranslation": "none",
    }, f"bigip-dc1-prod-virtual-server inputs: {run.inputs('bigip-dc1-prod-virtual-server')}"
    persistence = run["bigip-dc1-prod-source-address"]
    source_address_type = "f5bigip:ltm/persistenceProfileSrcAddr:PersistenceProfileSrcAddr"
    assert persistence.typ == source_address_type, persistence.typ
    assert persistence.inputs == {
        "name": f"{BASE}-source-address",
        "defaultsFrom": "/Common/source_addr",
    }, f"bigip-dc1-prod-source-address inputs: {persistence.inputs}"
    assert list(persistence.request.replaceOnChanges) == ["name"]
    # The monitor is the BIG-IP's own TLS connection to each node: it still verifies them.
    assert run.inputs("bigip-dc1-prod-heartbeat")["sslProfile"] == "/Common/ws1-prod-serverssl"
    declared = sorted(run.registrations)
    for absent in ("bigip-dc1-prod-cookie", "bigip-dc1-prod-http"):
        assert absent not in declared, f"{absent} must not exist in passthrough: {declared}"
    assert run.by_type("f5bigip:ltm/profileHttp:ProfileHttp") == []


@pytest.mark.parametrize(
    ("snat", "expected"),
    [
        ("automap", {"sourceAddressTranslation": "automap"}),
        ("/Common/ws1-snat", {"sourceAddressTranslation": "snat", "snatpool": "/Common/ws1-snat"}),
    ],
)
def test_snat_is_declared_on_the_virtual_server(roots, snat, expected):
    vs = VirtualServer("10.0.0.10", 443, "/Common/ws1-clientssl", snat)
    run = declare(make_lb(virtual_server=vs), make_trust(*roots))

    inputs = run.inputs("bigip-dc1-prod-virtual-server")
    found = {key: inputs[key] for key in ("sourceAddressTranslation", "snatpool") if key in inputs}
    assert found == expected, f"bigip-dc1-prod-virtual-server: {inputs}"


def test_a_node_is_named_by_its_address_so_a_new_address_is_a_new_node(roots):
    nodes = (Node("ws1-a.corp.example", "10.0.0.31"), Node("ws1-b.corp.example", "10.0.0.22"))
    run = declare(make_lb(virtual_server=VS), make_trust(*roots, nodes=nodes))

    assert "bigip-dc1-prod-node-10.0.0.21" not in run.registrations
    assert run.inputs("bigip-dc1-prod-node-10.0.0.31")["name"] == "/Common/ws1-node-10.0.0.31"
    assert run.inputs("bigip-dc1-prod-member-10.0.0.31-443")["node"] == (
        "/Common/ws1-node-10.0.0.31:443"
    )
    assert node_object_name("Common", "2001:db8::21") == "/Common/ws1-node-2001.db8..21"


def test_nodes_sharing_an_address_are_one_node_with_a_member_per_port(roots):
    nodes = (
        Node("ws1-a.corp.example", "10.0.0.21", service_port=9441),
        Node("ws1-b.corp.example", "10.0.0.21", service_port=9442),
    )
    run = declare(make_lb(virtual_server=VS), make_trust(*roots, nodes=nodes))

    assert [r.name for r in run.by_type("f5bigip:ltm/node:Node")] == [
        "bigip-dc1-prod-node-10.0.0.21"
    ]
    assert run.inputs("bigip-dc1-prod-node-10.0.0.21")["description"] == (
        "ws1-a.corp.example ws1-b.corp.example"
    )
    attachment = "f5bigip:ltm/poolAttachment:PoolAttachment"
    members = {r.name: r.inputs["node"] for r in run.by_type(attachment)}
    assert members == {
        "bigip-dc1-prod-member-10.0.0.21-9441": "/Common/ws1-node-10.0.0.21:9441",
        "bigip-dc1-prod-member-10.0.0.21-9442": "/Common/ws1-node-10.0.0.21:9442",
    }


def test_virtual_server_on_the_configurator_port_is_refused(roots):
    vs = VirtualServer("10.0.0.10", 8443, "/Common/ws1-clientssl")
    assert refusals(make_lb(virtual_server=vs), make_trust(*roots)) == [
        "load balancer bigip-dc1: the virtual server must not use 8443, the appliance "
        "configurator port; expected the service port, e.g. 443."
    ]


def test_pool_member_on_the_configurator_port_is_refused(roots):
    nodes = (Node("ws1-a.corp.example", "10.0.0.21", service_port=8443),)
    assert refusals(make_lb(virtual_server=VS), make_trust(*roots, nodes=nodes)) == [
        "load balancer bigip-dc1: pool member ws1-a.corp.example must not use 8443, the "
        "appliance configurator port; expected the service port, e.g. 443."
    ]


# ------------------------------------------------------------------------------ device group


def test_device_group_is_checked_first_and_synced_last(roots):
    run = declare(make_lb(virtual_server=VS, device_group="ws1-ha"), make_trust(*roots))

    check = run["bigip-dc1-prod-device-group-check"]
    sync = run["bigip-dc1-prod-device-group-sync"]
    assert (check.typ, sync.typ) == (GROUP_CHECK_TYPE, GROUP_SYNC_TYPE)
    for registration in (check, sync):
        assert registration.inputs["device_group"] == "ws1-ha"
        assert re.fullmatch(r"[0-9a-f]{64}", registration.inputs["revision"]), registration.name
    on_device = [
        r
        for r in run.registrations.values()
        if r.name not in ("access-trust", "bigip-dc1-bigip", check.name, sync.name)
    ]
    assert len(on_device) > 10, sorted(r.name for r in on_device)
    for registration in on_device:
        assert run.urns[check.name] in set(registration.request.dependencies), registration.name
        assert run.urns[registration.name] in set(sync.request.dependencies), registration.name


def test_revision_changes_with_any_declared_input_and_only_then(roots):
    def revision(**changes: Any) -> str:
        lb = make_lb(virtual_server=VS, device_group="ws1-ha")
        trust = make_trust(*roots)
        if "lb" in changes:
            lb = dataclasses.replace(lb, **changes["lb"])
        if "trust" in changes:
            trust = dataclasses.replace(trust, **changes["trust"])
        run = declare(lb, trust)
        (check,) = run.by_type(GROUP_CHECK_TYPE)
        return str(check.inputs["revision"])

    same = revision()
    assert revision() == same
    # A renamed entry declares the same objects: nothing to sync.
    assert revision(lb={"name": "bigip-renamed"}) == same
    moved = (Node("ws1-a.corp.example", "10.0.0.31"), Node("ws1-b.corp.example", "10.0.0.22"))
    assert revision(trust={"nodes": moved}) != same
    assert revision(lb={"virtual_server": VirtualServer("10.0.0.10", 443, None)}) != same
    _, sha256s = roots
    assert revision(trust={"root_ca_sha256s": sha256s[:1]}) != same


def test_without_device_group_nothing_is_checked_or_synced(roots):
    run = declare(make_lb(virtual_server=VS), make_trust(*roots))
    assert run.by_type(GROUP_CHECK_TYPE) == [] and run.by_type(GROUP_SYNC_TYPE) == []


@pytest.mark.parametrize("device_group", [None, "ws1-ha"])
def test_what_waits_for_this_trust_store_waits_for_the_name_check_and_the_sync(roots, device_group):
    """The node certificates must not move to a root CA before every unit trusts it and
    checks the name: they wait for the profile, its name check and the group's sync."""
    run = declare(
        make_lb(virtual_server=VS, device_group=device_group), make_trust(*roots), waiter=True
    )
    waited_for = set(run.registrations["waiter"].request.dependencies)
    expected = ["bigip-dc1-prod-server-ssl", "bigip-dc1-prod-authenticate-name"]
    if device_group:
        expected.append("bigip-dc1-prod-device-group-sync")
    for name in expected:
        assert run.urns[name] in waited_for, (name, sorted(waited_for))
