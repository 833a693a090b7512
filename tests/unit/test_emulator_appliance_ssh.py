"""The SSH emulator answers like the appliance would to the few commands the ssh route sends."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paramiko
import pytest

from emulators.appliance import ApplianceCluster
from emulators.appliance_ssh import INSTALL_SCRIPT, NodeSsh


@pytest.fixture
def server() -> Iterator[NodeSsh]:
    with ApplianceCluster(["a.ssh.test"], "s.ssh.test", "admin") as cluster:
        [ssh] = NodeSsh.attach(cluster, user="sshuser", password="pw", root_password="root")
        yield ssh
        ssh.stop()


def run(ssh: NodeSsh, command: str, stdin: str = "", user: str = "sshuser") -> tuple[int, str]:
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", ssh.port)))
    try:
        transport.start_client(timeout=5)
        transport.auth_password(user, "pw")
        channel = transport.open_session()
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        output = b""
        while chunk := channel.recv(4096):
            output += chunk
        return channel.recv_exit_status(), output.decode()
    finally:
        transport.close()


def test_the_install_script_wants_root_yes_and_its_three_files(server: NodeSsh) -> None:
    script = f"echo yes | {INSTALL_SCRIPT} --ca /d/ca --cert /d/c --key /d/k"
    status, output = run(server, f"sh -c '{script}'")
    assert (status, output) == (1, f"{INSTALL_SCRIPT}: must be run as root\n")  # sshuser
    root = NodeSsh(server.node, user="root", password="pw").start()
    try:
        without_yes = f"sh -c '{INSTALL_SCRIPT} --ca /d/ca --cert /d/c --key /d/k'"
        assert run(root, without_yes, user="root") == (
            1,
            "Do you want to continue? (yes/no): aborted\n",
        )
        assert run(root, f"sh -c '{script}'", user="root") == (1, "file not found: /d/ca\n")
        status, output = run(root, f"sh -c 'echo yes | {INSTALL_SCRIPT} --ca /d/ca'", user="root")
        assert status == 2 and output.startswith("usage:")
    finally:
        root.stop()
    assert run(server, "frobnicate") == (127, "sh: frobnicate: command not found\n")
    assert server.count("installs") == 0 and server.count("logins") == 2


def test_files_are_kept_per_node_until_removed(server: NodeSsh) -> None:
    status, directory = run(server, "mktemp -d /tmp/ws1-cert.XXXXXX")
    directory = directory.strip()
    assert status == 0 and directory.startswith("/tmp/ws1-cert.")
    assert run(server, f"cat > {directory}/ca.pem", stdin="PEM")[0] == 0
    assert server.files == {f"{directory}/ca.pem": "PEM"}
    assert run(server, f"rm -rf {directory}")[0] == 0
    assert server.files == {}


def test_a_wrong_password_is_counted_and_refused(server: NodeSsh) -> None:
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port)))
    try:
        transport.start_client(timeout=5)
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password("sshuser", "wrong")
    finally:
        transport.close()
    assert server.count("password attempts") == 1 and server.count("logins") == 0
