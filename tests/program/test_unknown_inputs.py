"""A preview in which an input of each dynamic resource is not known yet, through the real host.

Under the engine, the provider host deserializes Check and Diff requests with unknowns kept,
so a provider sees `pulumi.output.Unknown` OBJECTS there, never the `rpc.UNKNOWN` string that
mocks and program code see (sdk/python/lib/pulumi/dynamic/__main__.py). A check that only
knows the string rejects them, and preview fails. The resources are created for real first
(against the emulated cluster), then previewed with one input unknown each, so both Check
(on a new resource) and Diff (on an existing one) get the Unknown object.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pulumi
import pytest
import trustme

from components import pki
from components.appliance.certificate import ApplianceCertificate
from components.appliance.client import NodeAddress
from components.appliance.lb_root import ApplianceLoadBalancerRootCA
from components.appliance.observation import observe_cluster
from components.appliance.root_ca import ApplianceRootCA
from components.trust_stores.pem_file import PemTrustBundle
from emulators.appliance import ApplianceCluster
from tests.harness import UNKNOWN, Stack
from tests.program.scenarios import PASSWORD, SERVICE, node_fqdn

LB_ROOT_CA = trustme.CA().cert_pem.bytes().decode()


def not_known_yet() -> pulumi.Output[Any]:
    """An output whose value preview does not know (as an output of a resource to create)."""
    loop = asyncio.get_event_loop()
    value: asyncio.Future[Any] = loop.create_future()
    value.set_result(None)
    known: asyncio.Future[bool] = loop.create_future()
    known.set_result(False)
    return pulumi.Output(set(), value, known)


def program_for(emulator: ApplianceCluster, bundle_path: Path, unknown: str) -> Any:
    nodes = [
        NodeAddress(node.fqdn, node.address, node.port, node.configurator_port, SERVICE)
        for node in emulator.nodes
    ]
    observation = observe_cluster("local", nodes)
    root = pki.load_certificate(emulator.root_ca_pem, "root")
    bundle = pki.bundle_pem([root])

    def maybe(name: str, value: Any) -> Any:
        return not_known_yet() if unknown == name else value

    def program() -> None:
        ApplianceRootCA(
            "root-ca",
            cluster="local",
            nodes=nodes,
            pins=[emulator.root_ca_sha256],
            trust_on_first_use=False,
            incoming_root_ca_pem=maybe("ApplianceRootCA", ""),
            trusted_root_cas=[root],
        )
        ApplianceCertificate(
            "certificate",
            cluster="local",
            nodes=nodes,
            common_name=SERVICE,
            sans=[SERVICE],
            admin_password_key="applianceAdminPassword",
            trusted_root_ca_bundle_pem=maybe("ApplianceCertificate", bundle),
            observation=observation,
            nodes_needing_certificate=observation.nodes_needing_certificate(SERVICE, [SERVICE]),
        )
        ApplianceLoadBalancerRootCA(
            "load-balancer-root-ca",
            cluster="local",
            nodes=nodes,
            certificate_pem=LB_ROOT_CA,
            admin_password_key="applianceAdminPassword",
            trusted_root_ca_bundle_pem=maybe("ApplianceLoadBalancerRootCA", bundle),
        )
        PemTrustBundle(
            "bundle",
            path=str(bundle_path),
            bundle_pem=maybe("PemTrustBundle", bundle),
            load_balancer="proxy-a",
        )

    return program


@pytest.mark.parametrize(
    "resource",
    [
        "ApplianceRootCA",
        "ApplianceCertificate",
        "ApplianceLoadBalancerRootCA",
        "PemTrustBundle",
    ],
)
def test_preview_with_an_unknown_input_plans_an_update_for_it_alone(tmp_path, resource):
    fqdns = [node_fqdn(i) for i in (1, 2, 3)]
    with ApplianceCluster(fqdns, SERVICE, PASSWORD) as emulator:
        for node in emulator.nodes:  # the CN and SANs this test declares
            node.regenerate(SERVICE, [SERVICE])
        config = {"applianceAdminPassword": PASSWORD}
        secrets = {"ws1-access-lb-trust:applianceAdminPassword"}
        bundle_path = tmp_path / "trust.pem"
        known = Stack(program_for(emulator, bundle_path, ""), config=config, secret_keys=secrets)
        created = known.up()
        assert created.error is None, created.error

        # A new stack sees the unknown in Check; the existing one in Check and Diff.
        fresh_path = tmp_path / "fresh.pem"  # the other stack's file is not this stack's
        fresh = Stack(program_for(emulator, fresh_path, resource), config=config)
        first = fresh.preview()
        assert first.error is None, first.error
        known.program = program_for(emulator, bundle_path, resource)
        planned = known.preview()

        assert planned.error is None, planned.error
        changed = {urn.rsplit(":", 1)[-1]: step for urn, step in planned.changed().items()}
        assert changed == {_name(resource): "update"}, planned.changed()
        target = planned.by_name(_name(resource))
        assert UNKNOWN in _values(target.inputs), target.inputs


def _name(resource: str) -> str:
    return {
        "ApplianceRootCA": "root-ca",
        "ApplianceCertificate": "certificate",
        "ApplianceLoadBalancerRootCA": "load-balancer-root-ca",
        "PemTrustBundle": "bundle",
    }[resource]


def _values(inputs: dict[str, Any]) -> list[Any]:
    return [value for key, value in inputs.items() if key != "__provider"]
