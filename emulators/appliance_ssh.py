"""The SSH side of an emulated Workspace ONE Access node: a real SSH server on loopback
(paramiko's server side) that understands the few commands the ssh route sends, and the
appliance's installExternalCertificate.hzn, which changes what the emulated node serves.

What is modelled, and from where: the script's name, its `--ca --cert --key` arguments and its
"yes" on stdin are VMware's (Install-WorkspaceOneCertificate in
vmware/power-validated-solutions-for-cloud-foundation); that it restarts the service is said
in the same module's notes (one node at a time). That the node then publishes the `--ca`
certificate at /horizon_workspace_rootca.pem is this emulator's assumption (no public source
says what that file holds after a custom certificate): the product does not rely on it
beyond its ordinary observation.

Start beside a cluster:  NodeSsh.attach(cluster, user="sshuser", password=..., root_password=...)
"""

from __future__ import annotations

import collections
import fnmatch
import hmac
import logging
import posixpath
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulators._certs import CertificateAuthority, ServerCertificate
from emulators.appliance import ApplianceCluster, EmulatedNode

__all__ = ["INSTALL_SCRIPT", "NodeSsh", "fingerprint"]

INSTALL_SCRIPT = "/usr/local/horizon/scripts/installExternalCertificate.hzn"
# The server transports' own log: a client hanging up is normal here, not an error to print.
_TRANSPORT_LOG = "emulators.appliance_ssh.transport"
logging.getLogger(_TRANSPORT_LOG).addHandler(logging.NullHandler())
logging.getLogger(_TRANSPORT_LOG).propagate = False


def fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _Server(paramiko.ServerInterface):
    def __init__(self, ssh: NodeSsh) -> None:
        self.ssh = ssh
        self.user = ""

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        self.ssh._count("password attempts")
        self.ssh.received_passwords.append(password)
        ok = username == self.ssh.user and self.ssh.password is not None
        if ok and hmac.compare_digest(password.encode(), str(self.ssh.password).encode()):
            self.user = username
            self.ssh._count("logins")
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.ssh._count("key attempts")
        authorized = self.ssh.authorized_key
        if username == self.ssh.user and authorized is not None and key == authorized:
            self.user = username
            self.ssh._count("logins")
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode(errors="replace")
        worker = threading.Thread(
            target=self.ssh._execute, args=(channel, text, self.user), daemon=True
        )
        worker.start()
        return True


class NodeSsh:
    """One node's SSH server: host key, users, files, the install script, knobs, counters."""

    def __init__(
        self,
        node: EmulatedNode,
        *,
        user: str,
        password: str | None = None,
        authorized_key: paramiko.PKey | None = None,
        root_password: str | None = None,
        sudo: bool = False,
        restart_delay: float = 0.3,
    ) -> None:
        self.node = node
        self.user = user
        self.password = password
        self.authorized_key = authorized_key
        self.root_password = root_password
        self.sudo = sudo  # whether `user` may sudo (with its own password)
        self.restart_delay = restart_delay
        self.host_key: paramiko.PKey = paramiko.ECDSAKey.generate()
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        self.received_passwords: list[str] = []
        # Fault knobs: the next install exits 1 (after reading its files), or installs but
        # the node keeps serving its old certificate (a restart that did not take).
        self.fail_next_install = 0
        self.install_does_not_take = False
        self._counters: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def attach(cls, cluster: ApplianceCluster, **options: Any) -> list[NodeSsh]:
        """An SSH server for every node of `cluster`, started."""
        servers = [cls(node, **options) for node in cluster.nodes]
        for server in servers:
            server.start()
        return servers

    @property
    def port(self) -> int:
        assert self._socket is not None, "not started"
        return int(self._socket.getsockname()[1])

    @property
    def host_key_sha256(self) -> str:
        return fingerprint(self.host_key)

    def start(self, port: int = 0) -> NodeSsh:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        sock.settimeout(0.2)
        self._socket = sock
        self._stopping.clear()
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._socket is not None:
            self._socket.close()

    # -- counters ----------------------------------------------------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self._counters[what] += 1

    def count(self, what: str) -> int:
        """ "connections", "password attempts", "key attempts", "logins", "installs"."""
        with self._lock:
            return self._counters[what]

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()
            self.commands.clear()
            self.received_passwords.clear()

    # -- serving -----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._count("connections")
            transport = paramiko.Transport(client)
            transport.set_log_channel(_TRANSPORT_LOG)
            transport.add_server_key(self.host_key)
            try:
                transport.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()
                continue
            threading.Thread(target=self._hold, args=(transport,), daemon=True).start()

    def _hold(self, transport: paramiko.Transport) -> None:
        # Channels are served through the callbacks; they are held here because paramiko
        # closes a Channel that is garbage collected.
        channels = []
        while transport.is_active() and not self._stopping.is_set():
            channel = transport.accept(timeout=0.2)
            if channel is not None:
                channels.append(channel)
        transport.close()

    def _execute(self, channel: paramiko.Channel, command: str, user: str) -> None:
        # paramiko sends the exec request's success reply only after the callback returns; a
        # command that answered and closed the channel before that would look to the client
        # like a channel closed before the command started. A moment's wait avoids that race.
        time.sleep(0.01)
        with self._lock:
            self.commands.append(command)
        try:
            status, output = self._run(channel, command, user)
        except Exception as problem:  # the emulator answers like a shell, never crashes
            status, output = 1, f"emulator: {problem}\n"
        try:
            if output:
                channel.sendall(output.encode())
            channel.send_exit_status(status)
        except OSError:
            pass
        finally:
            channel.close()

    def _read_stdin(self, channel: paramiko.Channel) -> str:
        data = b""
        channel.settimeout(10)
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                return data.decode()
            data += chunk

    def _read_line(self, channel: paramiko.Channel) -> str:
        data = b""
        channel.settimeout(10)
        while not data.endswith(b"\n"):
            chunk = channel.recv(1)
            if not chunk:
                break
            data += chunk
        return data.decode().rstrip("\r\n")

    def _run(self, channel: paramiko.Channel, command: str, user: str) -> tuple[int, str]:
        words = shlex.split(command)
        if words[:2] == ["mktemp", "-d"] and len(words) == 3 and words[2].endswith("XXXXXX"):
            path = words[2][:-6] + f"{time.monotonic_ns() % 10**6:06d}"
            return 0, path + "\n"
        if len(words) == 3 and words[:2] == ["cat", ">"]:
            self.files[words[2]] = self._read_stdin(channel)
            return 0, ""
        if len(words) == 3 and words[:2] == ["rm", "-rf"]:
            # As sh would: a glob (`?`, `*`) matches directories that exist; a path is itself.
            pattern = words[2].rstrip("/")
            for path in list(self.files):
                if fnmatch.fnmatchcase(posixpath.dirname(path), pattern) or path.startswith(
                    pattern + "/"
                ):
                    del self.files[path]
            return 0, ""
        if words[:2] == ["su", "root"] and len(words) == 4 and words[2] == "-c":
            channel.sendall(b"Password: ")
            answer = self._read_line(channel)
            if self.root_password is None or not hmac.compare_digest(
                answer.encode(), self.root_password.encode()
            ):
                time.sleep(0.1)
                return 1, "\nsu: Authentication failure\n"
            return self._as_root(words[3])
        if words[:4] == ["sudo", "-S", "-p", "Password:"] and words[4:6] == ["sh", "-c"]:
            channel.sendall(b"Password:")
            answer = self._read_line(channel)
            if not self.sudo or not hmac.compare_digest(
                answer.encode(), str(self.password).encode()
            ):
                return 1, "sudo: 1 incorrect password attempt\n"
            return self._as_root(words[6])
        if words[:2] == ["sh", "-c"] and len(words) == 3:
            if user != "root":
                return 1, f"{INSTALL_SCRIPT}: must be run as root\n"
            return self._as_root(words[2])
        return 127, f"sh: {words[0] if words else ''}: command not found\n"

    def _as_root(self, script: str) -> tuple[int, str]:
        """`echo yes | installExternalCertificate.hzn --ca A --cert B --key C` (VMware's form)."""
        left, bar, right = script.partition("|")
        words = shlex.split(right) if bar else shlex.split(script)
        if not words or words[0] != INSTALL_SCRIPT:
            return 127, f"sh: {words[0] if words else ''}: command not found\n"
        if shlex.split(left) != ["echo", "yes"] or not bar:
            # Without "yes" on stdin the script's question is never answered.
            return 1, "Do you want to continue? (yes/no): aborted\n"
        arguments = dict(zip(words[1::2], words[2::2], strict=False))
        if sorted(arguments) != ["--ca", "--cert", "--key"] or len(words) != 7:
            return 2, f"usage: {INSTALL_SCRIPT} --ca <root ca> --cert <cert> --key <key>\n"
        missing = [path for path in arguments.values() if path not in self.files]
        if missing:
            return 1, f"file not found: {missing[0]}\n"
        self._count("installs")
        if self.fail_next_install > 0:
            self.fail_next_install -= 1
            return 1, "Error: failed to import the certificate into the keystore\n"
        try:
            ca = x509.load_pem_x509_certificate(self.files[arguments["--ca"]].encode())
            certificate = x509.load_pem_x509_certificate(self.files[arguments["--cert"]].encode())
            key = serialization.load_pem_private_key(
                self.files[arguments["--key"]].encode(), password=None
            )
        except ValueError:
            return 1, "Error: the files are not PEM certificates and key\n"
        if key.public_key() != certificate.public_key():  # type: ignore[comparison-overlap]
            return 1, "Error: the key does not match the certificate\n"
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception):
            return 1, "Error: the certificate is not issued by the CA\n"
        self._restart_with(ca, certificate, key)
        return 0, "Certificate installed; restarting the service.\n"

    def _restart_with(self, ca: x509.Certificate, certificate: x509.Certificate, key: Any) -> None:
        node = self.node
        node.fail_heartbeat(503, "restarting", ())
        # The node never holds the key of an external CA; the emulator's CertificateAuthority
        # wants one for key-size checks only, so the leaf's key stands in.
        root = CertificateAuthority(ca, key)
        leaf = ServerCertificate(certificate, key)
        take = not self.install_does_not_take

        def finish() -> None:
            if take:
                node._install(root, leaf)
            node.heartbeat_failure = None

        timer = threading.Timer(self.restart_delay, finish)
        timer.daemon = True
        timer.start()


def host_keys(servers: Sequence[NodeSsh]) -> dict[str, str]:
    """fqdn -> host key fingerprint, as a stack pins them."""
    return {server.node.fqdn: server.host_key_sha256 for server in servers}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulators.appliance_ssh new-ca DIR`: the local stack's operator CA (its
    certificate and, readable by the owner only, its key), made once by scripts/local-stack.sh."""
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=["new-ca"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create()
    key = ca.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path = args.directory / "ws1-issuing-ca.key"
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    (args.directory / "ws1-issuing-ca.pem").write_text(ca.pem)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
