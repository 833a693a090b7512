"""The shipped local stack (certificate_method: ssh) against the emulator with SSH servers,
the way scripts/local-stack.sh runs it: CA made by `emulators.appliance_ssh new-ca`, secrets in
the environment, SSH host keys trusted on first use with a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from components import pki
from emulators.appliance import ApplianceCluster
from emulators.appliance_ssh import NodeSsh
from emulators.appliance_ssh import main as appliance_ssh_main
from tests.harness import Stack
from tests.program.stacks import PROGRAM, PROJECT_DIR, pointed_at, stack_config

NODES = ("ws1-node1.local.test", "ws1-node2.local.test", "ws1-node3.local.test")
SERVICE = "ws1.local.test"
SSH_PASSWORD = "local-ssh-password"  # noqa: S105
ROOT_PASSWORD = "local-root-password"  # noqa: S105


@pytest.fixture
def local(tmp_path, monkeypatch):
    ca_dir = tmp_path / ".state" / "local-ca"
    assert appliance_ssh_main(["new-ca", str(ca_dir)]) == 0
    assert oct((ca_dir / "ws1-issuing-ca.key").stat().st_mode & 0o777) == "0o600"
    (tmp_path / ".state" / "local-proxy").mkdir(parents=True)
    monkeypatch.setenv("WS1_ACCESS_SSH_PASSWORD", SSH_PASSWORD)
    monkeypatch.setenv("WS1_ACCESS_SSH_ROOT_PASSWORD", ROOT_PASSWORD)
    monkeypatch.setenv("WS1_ACCESS_SSH_ISSUING_CA_KEY", (ca_dir / "ws1-issuing-ca.key").read_text())
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD", raising=False)
    with ApplianceCluster(NODES, SERVICE, "unused-admin-password") as emulator:
        servers = NodeSsh.attach(
            emulator, user="sshuser", password=SSH_PASSWORD, root_password=ROOT_PASSWORD
        )
        try:
            config = pointed_at(stack_config("local"), {"local": emulator})
            for node, server in zip(config["clusters"][0]["nodes"], servers, strict=True):
                node["ssh_port"] = server.port
            stack = Stack(PROGRAM, stack="local", config=config, cwd=str(tmp_path))
            yield stack, emulator, servers, (ca_dir / "ws1-issuing-ca.pem").read_text()
        finally:
            for server in servers:
                server.stop()


def test_the_local_stack_uses_the_ssh_route_and_warns_about_host_key_trust_on_first_use(local):
    stack, emulator, servers, ca_pem = local
    preview = stack.preview()
    assert preview.error is None, preview.error
    [tofu] = [line for line in preview.warnings if "SSH HOST KEY TRUST ON FIRST USE" in line]
    assert all(node in tofu for node in NODES)
    # The emulated nodes serve the right names, but from the appliance's own root CA: the
    # ssh route moves each of them to the local CA.
    assert all(
        "not issued by the CA the route issues from" in line
        for line in preview.warnings
        if "gets a new certificate" in line
    )

    first = stack.up()
    assert first.error is None, first.error
    assert [server.count("installs") for server in servers] == [1, 1, 1]
    assert emulator.writes() == 0 and emulator.logins() == 0  # no configurator involved
    ca = pki.load_certificate(ca_pem, "local CA")
    for node in emulator.nodes:
        assert pki.load_certificate(node.leaf_pem, node.fqdn).issuer == ca.subject, node.fqdn

    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]
    up = stack.up()
    assert up.error is None, up.error
    assert [server.count("installs") for server in servers] == [2, 2, 2]
    for node in emulator.nodes:
        assert "ws1-dr.local.test" in node.subject_alt_names
    again = stack.up()
    assert again.error is None and again.changed() == {}, again.changed()
    assert [server.count("installs") for server in servers] == [2, 2, 2]


def test_the_emulator_command_line_serves_ssh_on_the_given_ports():
    env = {
        **os.environ,
        "WS1_ACCESS_ADMIN_PASSWORD": "cli-admin",
        "WS1_ACCESS_SSH_PASSWORD": "cli-ssh",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.appliance", "--nodes", "1", "--ssh-ports", "0"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        described = json.loads(line)
        [node] = described["nodes"]
        assert node["ssh_port"] > 0 and node["ssh_host_key"].startswith("SHA256:")
    finally:
        process.terminate()
        process.wait(timeout=10)
