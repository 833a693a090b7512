"""certificate_method: ssh. Each node installs a certificate from the operator's CA with the
appliance's own script, as root, one node at a time.

Evidence: VMware's power-validated-solutions-for-cloud-foundation, Install-WorkspaceOneCertificate
(PowerValidatedSolutions.psm1) copies the root CA, the certificate and the key to the node and
runs, as root, `echo "yes" | /usr/local/horizon/scripts/installExternalCertificate.hzn --ca <root>
--cert <cert> --key <key>`. VMware copies with vCenter guest operations; here the files go over
the same SSH session (`cat > file` into a private `mktemp -d` directory, removed afterwards).
How root is reached is the stack's choice (`become`: root, su with the root password, or
sudo with the user's password); VMware's appliances are normally reached as sshuser + su.

Nothing secret is sent before the node's SSH host key matched the stack's pin (or, only when
the stack says so, trust on first use). The node's new private key is made here, sent once,
and never kept; the CA's key is read from its secret config key, or, for the stack's own CA
(`issuing_ca: generated`), from the resource's secret input `issuing_ca_key_pem`
(components/appliance/stack_ca.py), and never leaves this process.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shlex
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import paramiko
from cryptography import x509

from components import pki
from components.appliance.client import (
    ApplianceError,
    NodeAddress,
    ServedNode,
    request_timeout,
)
from components.appliance.routes import CertificateRoute, Credential, route_secret
from components.appliance.routes.issuing import (
    issue_node_certificate,
    load_issuing_ca,
    wait_until_served,
)

__all__ = ["INSTALL_SCRIPT", "SshInstallRoute", "host_key_fingerprint"]

INSTALL_SCRIPT = "/usr/local/horizon/scripts/installExternalCertificate.hzn"
# A private CA may issue for longer, but browsers cap public ones at 398 days; staying under
# that keeps the node certificate acceptable wherever it is looked at.
_NODE_CERTIFICATE_DAYS = 397
_REMOTE_TEMPLATE = "/tmp/ws1-cert.XXXXXX"  # noqa: S108 (a path on the node, made by mktemp -d)


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:<base64>` exactly as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SshInstallRoute(CertificateRoute):
    def __init__(
        self,
        route: Mapping[str, Any],
        credential: Credential,
        trusted_roots_pem: str,
        stack_ca_key_pem: str | None = None,
    ) -> None:
        self._route = route
        self._credential = credential
        self._trusted_pem = trusted_roots_pem
        self._stack_ca_key_pem = stack_ca_key_pem

    @property
    def _stack_ca(self) -> bool:
        """True when the stack's own CA issues (route input `issuing_ca: generated`, set by
        access_trust.route_input); its key is then the resource's secret input."""
        return self._route.get("issuing_ca") == "generated"

    def _secret(self, setting: str) -> str | None:
        default = {
            "password_key": "sshPassword",
            "private_key_key": "sshPrivateKey",
            "root_password_key": "sshRootPassword",
            "issuing_ca_key_key": "sshIssuingCaKey",
        }[setting]
        return route_secret(self._credential, self._route, setting, default)

    def _needed(self) -> list[str]:
        login = "password_key" if self._route["authentication"] == "password" else "private_key_key"
        needed = [login] if self._stack_ca else [login, "issuing_ca_key_key"]
        if self._route["become"] == "su":
            needed.append("root_password_key")
        return needed

    def missing(self) -> list[str]:
        problems = []
        for setting in self._needed():
            if self._secret(setting) is None:
                key = self._route[setting]
                problems.append(
                    f"the ssh route needs the secret config key {key} (ssh.{setting}), which is "
                    f"not set; set it with `pulumi config set --secret {key}`"
                )
        if self._stack_ca and not self._stack_ca_key_pem:
            problems.append(
                "the stack's own CA (ssh.issuing_ca: generated) reached the ssh route without "
                "its key (the secret input issuing_ca_key_pem); run `pulumi up` again, and "
                "report it if it persists"
            )
        if not problems:
            try:
                self._issuing_ca()
            except ApplianceError as problem:
                problems.append(str(problem))
        return problems

    def _issuing_ca(self) -> tuple[x509.Certificate, Any]:
        if self._stack_ca:
            return load_issuing_ca(
                str(self._route["issuing_ca_pem"]),
                self._stack_ca_key_pem or "",
                "",
                "the stack's own CA key (ssh.issuing_ca: generated, kept in the stack state)",
            )
        return load_issuing_ca(
            str(self._route["issuing_ca_pem"]),
            self._secret("issuing_ca_key_key") or "",
            f"ssh.issuing_ca_key_key ({self._route['issuing_ca_key_key']})",
        )

    def install(
        self, node: NodeAddress, current: ServedNode, common_name: str, sans: Sequence[str]
    ) -> ServedNode:
        ca, ca_key = self._issuing_ca()
        certificate, key_pem = issue_node_certificate(ca, ca_key, common_name, sans)
        ca_pem = pki.bundle_pem([ca])
        with self._connected(node) as transport:
            # A run killed between mktemp and rm left its directory, with a node private key
            # in it, readable by this user only: remove it now. Only directories of this
            # name and this user can go (/tmp is sticky); one run per node at a time is
            # Pulumi's stack lock, and an operator running two stacks on one cluster at once
            # is not supported (README, "ssh route"). Best effort: a directory another user
            # made makes rm exit 1, and that must not stop this node's certificate.
            with suppress(ApplianceError):
                self._run(transport, node, f"rm -rf {_REMOTE_TEMPLATE[:-6]}{'?' * 6}")
            # On the node, not here: mktemp -d makes a new directory only its user can read.
            directory = self._run(transport, node, f"mktemp -d {_REMOTE_TEMPLATE}").strip()
            if not directory.startswith(_REMOTE_TEMPLATE[:-6]):
                raise ApplianceError(
                    f"node {node.fqdn}: `mktemp -d` over SSH answered {directory[:80]!r}; "
                    "expected a new directory under /tmp."
                )
            files = {name: f"{directory}/{name}" for name in ("ca.pem", "cert.pem", "key.pem")}
            failed = True
            try:
                for name, text in (
                    ("ca.pem", ca_pem),
                    ("cert.pem", pki.bundle_pem([certificate])),
                    ("key.pem", key_pem),
                ):
                    self._run(transport, node, f"cat > {shlex.quote(files[name])}", stdin=text)
                script = (
                    f"echo yes | {INSTALL_SCRIPT} --ca {shlex.quote(files['ca.pem'])} "
                    f"--cert {shlex.quote(files['cert.pem'])} --key {shlex.quote(files['key.pem'])}"
                )
                self._run_as_root(transport, node, script)
                failed = False
            finally:
                self._remove(transport, node, directory, masks_nothing=failed)
        return wait_until_served(
            node,
            certificate,
            ca_pem,
            float(self._route["restart_timeout_seconds"]),
            "ssh.restart_timeout_seconds",
        )

    def _remove(
        self, transport: Any, node: NodeAddress, directory: str, *, masks_nothing: bool
    ) -> None:
        """Remove the directory that holds the node's private key. When the install itself
        failed, its error is the one that counts: a failed removal must not replace it."""
        try:
            self._run(transport, node, f"rm -rf {shlex.quote(directory)}")
        except (ApplianceError, OSError, paramiko.SSHException):
            if masks_nothing:
                return  # the install's own error is on its way; the README says what is left
            raise ApplianceError(
                f"node {node.fqdn}: the certificate was installed, but {directory} (it holds "
                "the node's private key) could not be removed over SSH; remove it by hand."
            ) from None

    # -- SSH -----------------------------------------------------------------------------

    @contextmanager
    def _connected(self, node: NodeAddress) -> Iterator[paramiko.Transport]:
        endpoint = self._route["endpoints"][node.fqdn]
        port, pinned = int(endpoint["port"]), endpoint.get("host_key")
        where = f"node {node.fqdn} ({node.address}:{port})"
        try:
            sock = socket.create_connection((node.address, port), timeout=request_timeout())
        except OSError as problem:
            raise ApplianceError(f"{where}: could not connect over SSH: {problem}.") from None
        transport = paramiko.Transport(sock)
        try:
            try:
                transport.start_client(timeout=request_timeout())
            except (paramiko.SSHException, OSError) as problem:
                raise ApplianceError(f"{where}: the SSH handshake failed: {problem}.") from None
            presented = host_key_fingerprint(transport.get_remote_server_key())
            if pinned and presented != pinned:
                raise ApplianceError(
                    f"{where}: SSH host key mismatch: the node presents {presented}, the stack "
                    f"pins {pinned} (nodes[].ssh_host_key). Nothing was sent: no password, no "
                    "key. If the node was rebuilt, check its key on its console "
                    "(`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`) and update the pin."
                )
            self._log_in(transport, where)
            yield transport
        finally:
            transport.close()

    def _log_in(self, transport: paramiko.Transport, where: str) -> None:
        user = str(self._route["user"])
        try:
            if self._route["authentication"] == "password":
                transport.auth_password(user, self._secret("password_key") or "")
            else:
                transport.auth_publickey(user, _private_key(self._secret("private_key_key") or ""))
        except paramiko.AuthenticationException:
            key = self._route[
                "password_key" if self._route["authentication"] == "password" else "private_key_key"
            ]
            raise ApplianceError(
                f"{where}: SSH login as {user} refused; check the secret config key {key}."
            ) from None
        except paramiko.SSHException as problem:
            raise ApplianceError(f"{where}: SSH login failed: {problem}.") from None

    def _run_as_root(self, transport: paramiko.Transport, node: NodeAddress, script: str) -> None:
        become = self._route["become"]
        if become == "root":
            self._run(transport, node, f"sh -c {shlex.quote(script)}")
        elif become == "su":
            # su reads the password from a terminal only, hence the pty.
            password = self._secret("root_password_key") or ""
            self._run(transport, node, f"su root -c {shlex.quote(script)}", answer=password)
        else:
            password = self._secret("password_key") or ""
            command = f"sudo -S -p 'Password:' sh -c {shlex.quote(script)}"
            self._run(transport, node, command, answer=password)

    def _run(
        self,
        transport: paramiko.Transport,
        node: NodeAddress,
        command: str,
        *,
        stdin: str = "",
        answer: str | None = None,
    ) -> str:
        """Run one command; its output, or ApplianceError (secrets scrubbed) when it fails."""
        timeout = float(self._route["restart_timeout_seconds"])
        deadline = time.monotonic() + timeout
        channel = transport.open_session(timeout=request_timeout())
        try:
            channel.settimeout(timeout)
            channel.set_combine_stderr(True)
            if answer is not None and self._route["become"] == "su":
                channel.get_pty()
            channel.exec_command(command)
            output = b""
            if answer is not None:
                while b"assword" not in output and time.monotonic() < deadline:
                    data = channel.recv(4096)
                    if not data:
                        break
                    output += data
                # Only to a prompt: with no prompt (sudo with cached credentials, NOPASSWD)
                # the answer would be typed into the command's own input.
                if b"assword" in output:
                    channel.sendall((answer + "\n").encode())
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            while time.monotonic() < deadline:
                data = channel.recv(65536)
                if not data:
                    break
                output += data
            # The exit status within what is left of the deadline, never an unbounded wait.
            if not channel.status_event.wait(max(deadline - time.monotonic(), 0.0)):
                raise TimeoutError(f"no exit status within {timeout:g} s")
            status = channel.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, OSError) as problem:
            raise ApplianceError(
                f"node {node.fqdn}: `{_shown(command)}` over SSH did not finish: {problem}."
            ) from None
        finally:
            channel.close()
        text = output.decode(errors="replace")
        if answer:
            text = text.replace(answer, "***")
        if status != 0:
            raise ApplianceError(
                f"node {node.fqdn}: `{_shown(command)}` over SSH exited {status}: "
                f"{text.strip()[-400:] or '(no output)'}"
            )
        return text


def _shown(command: str) -> str:
    return command if len(command) < 160 else command[:157] + "..."


def _private_key(text: str) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ApplianceError(
        "the SSH private key (ssh.private_key_key) is not an unencrypted Ed25519, ECDSA or RSA "
        "private key in OpenSSH or PEM form."
    )
