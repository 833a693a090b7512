"""One F5 entry in front of one cluster, through the lifecycle harness, against an emulated BIG-IP.

The program is `declare_trust` itself (a callable for the harness), so a test can change the
entry and the trust between runs (node addresses, service FQDN, partition) without an
appliance behind every address. The pulumi_f5bigip resources are recorded with their exact
inputs; the program's own REST resources run for real over TLS against `bigip`. `REPLACE_ON`
tells the harness which pulumi_f5bigip arguments force a replacement in the provider
(terraform-provider-bigip v1.26.0, shared/reference/f5-bigip.md); `replace_on_changes` set by
the program is honoured on top.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import trustme

from components import pki
from components.settings import F5LoadBalancer, Node, VirtualServer
from components.trust_stores import ClusterTrust
from components.trust_stores.f5 import declare_trust
from emulators.bigip import EmulatedBigip
from tests.harness import Stack

PASSWORD = "f5-world-Pa55"  # noqa: S105 (the emulated BIG-IP's test password)
SERVICE = "access.corp.example"
PROFILE = f"/Common/ws1-{SERVICE}-serverssl"
REPLACE_ON: dict[str, set[str]] = {
    "f5bigip:ssl/certificate:Certificate": {"name"},
    "f5bigip:ltm/node:Node": {"name", "address"},
    "f5bigip:ltm/poolAttachment:PoolAttachment": {"pool", "node"},
    "f5bigip:ltm/monitor:Monitor": {"name", "parent"},
    "f5bigip:ltm/pool:Pool": {"name"},
    "f5bigip:ltm/virtualServer:VirtualServer": {"name"},
    "f5bigip:ltm/profileServerSsl:ProfileServerSsl": {"name"},
}


@dataclasses.dataclass
class F5World:
    bigip: EmulatedBigip
    stack: Stack
    lb: F5LoadBalancer
    trust: ClusterTrust

    def program(self) -> None:
        parent = pulumi.ComponentResource("ws1:test:AccessTrust", "access-trust")
        declare_trust(self.lb, self.trust, parent)

    def change(self, **changes: Any) -> None:
        self.lb = dataclasses.replace(self.lb, **changes)

    def change_trust(self, **changes: Any) -> None:
        self.trust = dataclasses.replace(self.trust, **changes)


@contextlib.contextmanager
def f5_world(directory: Path, *, device_group: str | None = None) -> Iterator[F5World]:
    """A started BIG-IP emulator holding the profile, and a stack with one F5 entry for it."""
    root = trustme.CA(organization_name="ws1 appliance").cert_pem.bytes().decode()
    with EmulatedBigip("automation", PASSWORD) as bigip:
        bigip.add_server_ssl_profile(PROFILE)  # as the recorded ProfileServerSsl would create it
        ca_file = directory / "bigip-ca.pem"
        ca_file.write_text(bigip.management_ca_pem)
        lb = F5LoadBalancer(
            name="bigip-a",
            cluster="ws1",
            address=bigip.address,
            username="automation",
            port=bigip.port,
            management_ca_path=ca_file,
            server_ssl_profile=PROFILE.rsplit("/", 1)[1],
            virtual_server=VirtualServer("10.0.0.10", 443, None),
            device_group=device_group,
        )
        trust = ClusterTrust(
            cluster="ws1",
            service_fqdn=SERVICE,
            nodes=(
                Node("ws1-a.corp.example", "10.0.0.21"),
                Node("ws1-b.corp.example", "10.0.0.22"),
            ),
            root_ca_bundle_pem=root,
            root_ca_sha256s=[pki.sha256_fingerprint(pki.load_certificate(root, "root"))],
        )
        world = F5World(bigip, None, lb, trust)  # type: ignore[arg-type]
        world.stack = Stack(
            world.program,
            config={"bigipPassword": PASSWORD},
            secret_keys={"ws1-access-lb-trust:bigipPassword"},
            replace_on=REPLACE_ON,
            cwd=str(directory),
        )
        yield world


def no_change_requests(directory: Path) -> int:
    """BIG-IP requests of a second `up` with nothing changed (for `make bench`)."""
    with f5_world(directory, device_group="ws1-ha") as world:
        world.bigip.add_device_group("ws1-ha", auto_sync=False)
        first = world.stack.up()
        assert first.error is None, first.error
        world.bigip.reset_counters()
        second = world.stack.up()
        assert second.error is None, second.error
        return sum(world.bigip.requests().values())
