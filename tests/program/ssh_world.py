"""An emulated cluster reached over SSH (certificate_method: ssh), a stack for it, two PEM-file
load balancers; shared by the ssh route's lifecycle tests and `make bench`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from components import pki
from emulators._certs import CertificateAuthority
from emulators.appliance import ApplianceCluster
from emulators.appliance_ssh import NodeSsh
from tests.harness import RunResult, Stack
from tests.program.scenarios import SERVICE, node_fqdn
from tests.program.stacks import PROGRAM

SSH_PASSWORD = "canary-Ssh&pass/word=%"  # noqa: S105 (test canaries, searched for in scans)
ROOT_PASSWORD = "canary-R00t&su+secret"  # noqa: S105
ADMIN_PASSWORD = "ssh-world-admin-password"  # noqa: S105 (the configurator's; never used)
SECRET_KEYS = {"sshPassword", "sshRootPassword", "sshIssuingCaKey"}


@dataclass
class SshWorld:
    emulator: ApplianceCluster
    servers: list[NodeSsh]
    issuing_ca: CertificateAuthority
    stack: Stack
    directory: Path

    @property
    def cluster(self) -> dict[str, Any]:
        return self.stack.config["clusters"][0]  # type: ignore[no-any-return]

    def server(self, index: int) -> NodeSsh:
        return self.servers[index - 1]

    def total(self, what: str) -> int:
        return sum(server.count(what) for server in self.servers)

    def installs(self) -> dict[str, int]:
        return {server.node.fqdn: server.count("installs") for server in self.servers}

    def reset_counters(self) -> None:
        self.emulator.reset_counters()
        for server in self.servers:
            server.reset_counters()

    def stack_ca(self) -> dict[str, Any]:
        """The outputs of the stack's own CA (StackIssuingCA) in the stack state."""
        [ca] = [r for r in self.stack.state.values() if r.type.endswith(":StackIssuingCA")]
        return ca.outputs

    def up(self) -> RunResult:
        self.reset_counters()
        return self.stack.up()

    def trusted(self, load_balancer: str) -> list[str]:
        text = (self.directory / "lb" / load_balancer / "trust.pem").read_text()
        return [pki.sha256_fingerprint(c) for c in pki.load_bundle(text, load_balancer)]

    def off_trust(self) -> list[str]:
        """Nodes whose served certificate some load balancer's bundle would refuse."""
        off = []
        for node in self.emulator.nodes:
            leaf = pki.load_certificate(node.leaf_pem, node.fqdn)
            for lb in ("proxy-a", "proxy-b"):
                text = (self.directory / "lb" / lb / "trust.pem").read_text()
                try:
                    pki.verify_served_chain([leaf], pki.load_bundle(text, lb), node.fqdn, node.fqdn)
                except pki.CertificateError:
                    off.append(node.fqdn)
                    break
        return off


@contextmanager
def ssh_world(
    directory: Path, *, nodes: int = 3, become: str = "su", generated_ca: bool = False
) -> Iterator[SshWorld]:
    """`generated_ca`: `ssh.issuing_ca: generated` (the stack's own CA, no CA key configured;
    only the appliance's own root CA is pinned), instead of the operator's CA `issuing_ca`."""
    fqdns = [node_fqdn(i) for i in range(1, nodes + 1)]
    issuing_ca = CertificateAuthority.create()
    with ApplianceCluster(fqdns, SERVICE, ADMIN_PASSWORD) as emulator:
        servers = NodeSsh.attach(
            emulator,
            user="sshuser",
            password=SSH_PASSWORD,
            root_password=ROOT_PASSWORD,
            sudo=become == "sudo",
            restart_delay=0.2,
        )
        try:
            cluster: dict[str, Any] = {
                "name": "local",
                "service_fqdn": SERVICE,
                "ssl_termination": "passthrough",
                "certificate_method": "ssh",
                # The appliance's own root CA now, the operator's CA the nodes move to.
                "root_ca_sha256": [emulator.root_ca_sha256]
                + ([] if generated_ca else [issuing_ca.sha256]),
                # A name the appliance-issued certificates lack: every node needs one.
                "extra_sans": ["ws1-dr.local.test"],
                "nodes": [
                    {
                        "fqdn": server.node.fqdn,
                        "address": server.node.address,
                        "service_port": server.node.port,
                        "configurator_port": server.node.configurator_port,
                        "ssh_port": server.port,
                        "ssh_host_key": server.host_key_sha256,
                    }
                    for server in servers
                ],
                "ssh": {
                    "user": "sshuser",
                    "become": become,
                    "issuing_ca": "generated" if generated_ca else issuing_ca.pem,
                    "restart_timeout_seconds": 15,
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
                "sshPassword": SSH_PASSWORD,
            }
            if not generated_ca:
                config["sshIssuingCaKey"] = key_pem
            if become == "su":
                config["sshRootPassword"] = ROOT_PASSWORD
            stack = Stack(
                PROGRAM,
                stack="local",
                config=config,
                secret_keys={key for key in SECRET_KEYS if key in config},
                cwd=str(directory),
            )
            yield SshWorld(emulator, servers, issuing_ca, stack, directory)
        finally:
            for server in servers:
                server.stop()
