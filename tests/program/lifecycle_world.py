"""An emulated cluster managed by an emulated Aria Suite Lifecycle (certificate_method:
lifecycle_manager), a stack for it, two PEM-file load balancers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from emulators._certs import CertificateAuthority
from emulators.appliance import ApplianceCluster
from emulators.lifecycle import LifecycleManager
from tests.harness import RunResult, Stack
from tests.program.scenarios import SERVICE, node_fqdn
from tests.program.ssh_world import SshWorld
from tests.program.stacks import PROGRAM

LCM_PASSWORD = "canary-Lcm&pass/word=%"  # noqa: S105 (a test canary)


@dataclass
class LifecycleWorld:
    emulator: ApplianceCluster
    lcm: LifecycleManager
    issuing_ca: CertificateAuthority
    stack: Stack
    directory: Path

    @property
    def cluster(self) -> dict[str, Any]:
        return self.stack.config["clusters"][0]  # type: ignore[no-any-return]

    def up(self) -> RunResult:
        self.emulator.reset_counters()
        self.lcm.reset_counters()
        return self.stack.up()

    def off_trust(self) -> list[str]:
        return SshWorld.off_trust(self)  # type: ignore[arg-type]

    def trusted(self, load_balancer: str) -> list[str]:
        return SshWorld.trusted(self, load_balancer)  # type: ignore[arg-type]


@contextmanager
def lifecycle_world(directory: Path, *, nodes: int = 3) -> Iterator[LifecycleWorld]:
    fqdns = [node_fqdn(i) for i in range(1, nodes + 1)]
    issuing_ca = CertificateAuthority.create()
    with (
        ApplianceCluster(fqdns, SERVICE, "lifecycle-world-admin") as emulator,
        LifecycleManager(emulator, LCM_PASSWORD, request_seconds=0.2) as lcm,
    ):
        (directory / "certs").mkdir(parents=True, exist_ok=True)
        (directory / "certs" / "lcm-ca.pem").write_text(lcm.management_ca_pem)
        cluster: dict[str, Any] = {
            "name": "local",
            "service_fqdn": SERVICE,
            "ssl_termination": "passthrough",
            "certificate_method": "lifecycle_manager",
            "root_ca_sha256": [emulator.root_ca_sha256, issuing_ca.sha256],
            "nodes": [
                {
                    "fqdn": node.fqdn,
                    "address": node.address,
                    "service_port": node.port,
                    "configurator_port": node.configurator_port,
                }
                for node in emulator.nodes
            ],
            "lifecycle_manager": {
                "address": "127.0.0.1",
                "port": lcm.port,
                "management_ca_path": "certs/lcm-ca.pem",
                "issuing_ca": issuing_ca.pem,
                "request_timeout_seconds": 10,
            },
        }
        load_balancers = []
        for name in ("proxy-a", "proxy-b"):
            (directory / "lb" / name).mkdir(parents=True)
            load_balancers.append(
                {
                    "name": name,
                    "kind": "pem_file",
                    "cluster": "local",
                    "path": str(directory / "lb" / name / "trust.pem"),
                }
            )
        key_pem = issuing_ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        config = {
            "clusters": [cluster],
            "load_balancers": load_balancers,
            "lifecycleManagerPassword": LCM_PASSWORD,
            "lifecycleIssuingCaKey": key_pem,
        }
        stack = Stack(
            PROGRAM,
            stack="local",
            config=config,
            secret_keys={"lifecycleManagerPassword", "lifecycleIssuingCaKey"},
            cwd=str(directory),
        )
        yield LifecycleWorld(emulator, lcm, issuing_ca, stack, directory)
