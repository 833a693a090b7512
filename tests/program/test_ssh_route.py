"""certificate_method: ssh through the lifecycle harness, against SSH servers on loopback.

Every test runs the real program (__main__.py) and the real provider host against emulated
nodes whose SSH servers run the emulated installExternalCertificate.hzn, which changes what
the node serves over real TLS.
"""

from __future__ import annotations

import base64
import json
import logging

import paramiko
import pytest

from components import pki
from components.appliance.certificate import ApplianceCertificateProvider
from emulators._certs import CertificateAuthority
from emulators.appliance_ssh import fingerprint
from tests.harness.lifecycle import PROVIDER_KEY
from tests.program.scenarios import CERTIFICATE_TYPE, SERVICE, node_fqdn
from tests.program.ssh_world import ROOT_PASSWORD, SSH_PASSWORD, SshWorld, ssh_world

NODES = [node_fqdn(i) for i in (1, 2, 3)]


def expect_ok(result):
    assert result.error is None, result.error
    return result


def serves_from(world: SshWorld, ca: CertificateAuthority) -> list[str]:
    """The nodes whose served certificate the given CA issued."""
    names = []
    for node in world.emulator.nodes:
        leaf = pki.load_certificate(node.leaf_pem, node.fqdn)
        if leaf.issuer == ca.certificate.subject:
            names.append(node.fqdn)
    return names


def test_first_up_installs_every_node_and_a_no_change_up_writes_nothing(tmp_path):
    with ssh_world(tmp_path) as w:
        first = expect_ok(w.up())
        assert w.installs() == dict.fromkeys(NODES, 1)
        assert serves_from(w, w.issuing_ca) == NODES
        assert w.off_trust() == []
        # The overlap (old + new) stays until the next run sees every node moved.
        assert w.issuing_ca.sha256 in w.trusted("proxy-a")
        [certificate] = first.of_type(CERTIFICATE_TYPE)
        assert certificate.outputs["nodes_needing_certificate"] == []
        for node in w.emulator.nodes:
            assert set(node.subject_alt_names) == {SERVICE, *NODES, "ws1-dr.local.test"}
            assert node.common_name == SERVICE

        settle = expect_ok(w.up())  # drops the old root CA from the load balancers
        assert w.trusted("proxy-a") == w.trusted("proxy-b") == [w.issuing_ca.sha256]
        assert w.total("connections") == 0 and w.off_trust() == []

        again = expect_ok(w.up())
        assert again.changed() == {}, again.changed()
        assert (w.total("connections"), w.total("installs"), w.emulator.writes()) == (0, 0, 0)
        assert settle.error is None


def test_a_node_missing_a_san_gets_a_new_certificate_and_only_that_node(tmp_path):
    with ssh_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        node = w.emulator.node(node_fqdn(2))
        # Out of band: node 2 now serves a certificate (same CA) without the node names.
        leaf = w.issuing_ca.issue(SERVICE, [SERVICE])
        node._install(node._root, leaf)

        w.reset_counters()
        preview = expect_ok(w.stack.preview())
        [certificate] = preview.of_type(CERTIFICATE_TYPE)
        assert preview.steps[certificate.urn] == "update"
        assert certificate.inputs["nodes_needing_certificate"] == [node_fqdn(2)]
        assert any(
            f"node {node_fqdn(2)} gets a new certificate" in line for line in preview.warnings
        )
        assert w.total("connections") == 0  # preview never logs in over SSH

        expect_ok(w.up())
        assert w.installs() == {NODES[0]: 0, NODES[1]: 1, NODES[2]: 0}
        assert w.off_trust() == []


def test_changing_only_the_restart_timeout_plans_no_update(tmp_path):
    """How long to wait for a node is how a run behaves, not what the nodes serve."""
    with ssh_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())  # settle
        w.cluster["ssh"]["restart_timeout_seconds"] = 90
        assert expect_ok(w.stack.preview()).changed() == {}
        assert expect_ok(w.up()).changed() == {}
        assert (w.total("connections"), w.emulator.writes()) == (0, 0)


def test_a_new_root_ca_on_issue_stops_at_the_first_node(tmp_path):
    """The outage guard holds for this route: the load balancers are told to expect another
    CA (incoming_root_ca) than the one the route issues from, so the first node's new
    certificate is not trusted: the run stops there and no other node is touched."""
    other = CertificateAuthority.create()
    with ssh_world(tmp_path) as w:
        w.cluster["incoming_root_ca"] = other.pem
        w.cluster["root_ca_sha256"] = [w.emulator.root_ca_sha256, other.sha256]
        failed = w.up()
        assert failed.error is not None
        assert f"node {node_fqdn(1)} " in failed.error and "NEW root CA" in failed.error
        assert w.issuing_ca.sha256 in failed.error
        assert w.installs() == {NODES[0]: 1, NODES[1]: 0, NODES[2]: 0}
        assert w.off_trust() == [node_fqdn(1)]  # exactly one node off trust, the one named


def test_a_fault_in_the_middle_stops_there_and_a_rerun_converges(tmp_path):
    with ssh_world(tmp_path) as w:
        w.server(2).fail_next_install = 1
        failed = w.up()
        assert failed.error is not None and f"node {node_fqdn(2)}" in failed.error
        assert "exited 1" in failed.error
        assert w.installs() == {NODES[0]: 1, NODES[1]: 1, NODES[2]: 0}
        assert serves_from(w, w.issuing_ca) == [node_fqdn(1)]
        assert w.off_trust() == []  # old and new root CA both trusted meanwhile
        # The temporary files were removed even though the install failed.
        assert w.server(2).files == {}

        expect_ok(w.up())
        assert w.installs() == {NODES[0]: 0, NODES[1]: 1, NODES[2]: 1}
        assert serves_from(w, w.issuing_ca) == NODES
        assert w.off_trust() == []


def test_a_directory_left_by_a_killed_run_is_removed_by_the_next_install(tmp_path):
    """A run killed between `mktemp -d` and `rm -rf` leaves a node private key in /tmp on the
    node: the next install on that node removes every such directory, and nothing else."""
    with ssh_world(tmp_path) as w:
        leftover = "/tmp/ws1-cert.424242/key.pem"  # noqa: S108 (a path on the emulated node)
        unrelated = "/tmp/ws1-cert-notes/keep.txt"  # noqa: S108
        w.server(1).files.update({leftover: "KEY", unrelated: "notes"})
        expect_ok(w.up())
        assert w.installs()[NODES[0]] == 1
        assert w.server(1).files == {unrelated: "notes"}


def test_a_restart_that_does_not_take_is_waited_for_then_reported(tmp_path):
    with ssh_world(tmp_path) as w:
        w.cluster["ssh"]["restart_timeout_seconds"] = 2
        w.server(1).install_does_not_take = True
        failed = w.up()
        assert failed.error is not None
        assert f"node {node_fqdn(1)}: the certificate" in failed.error
        assert "within 2 s (ssh.restart_timeout_seconds)" in failed.error
        assert w.installs() == {NODES[0]: 1, NODES[1]: 0, NODES[2]: 0}


def test_a_wrong_password_is_refused_without_touching_any_node(tmp_path):
    with ssh_world(tmp_path) as w:
        w.stack.config["sshPassword"] = "not-the-password"  # noqa: S105
        failed = w.up()
        assert failed.error is not None
        assert f"node {node_fqdn(1)}" in failed.error
        assert "SSH login as sshuser refused; check the secret config key sshPassword" in (
            failed.error
        )
        assert "not-the-password" not in failed.error
        assert w.total("installs") == 0 and w.total("logins") == 0


def test_a_wrong_root_password_is_refused_and_scrubbed(tmp_path):
    with ssh_world(tmp_path) as w:
        w.stack.config["sshRootPassword"] = "wrong-root-secret"  # noqa: S105
        failed = w.up()
        assert failed.error is not None and "su: Authentication failure" in failed.error
        assert "wrong-root-secret" not in failed.error
        assert w.total("installs") == 0


def test_a_host_key_mismatch_is_refused_before_any_password_is_sent(tmp_path):
    with ssh_world(tmp_path) as w:
        w.cluster["nodes"][0]["ssh_host_key"] = fingerprint(paramiko.ECDSAKey.generate())
        failed = w.up()
        assert failed.error is not None
        assert f"node {node_fqdn(1)}" in failed.error and "SSH host key mismatch" in failed.error
        assert w.server(1).host_key_sha256 in failed.error
        assert w.server(1).count("connections") == 1
        assert w.total("password attempts") == 0 and w.server(1).received_passwords == []
        assert w.total("installs") == 0


def test_sudo_and_private_key_logins_work_too(tmp_path):
    with ssh_world(tmp_path, become="sudo") as w:
        expect_ok(w.up())
        assert w.installs() == dict.fromkeys(NODES, 1)
    key = paramiko.ECDSAKey.generate()
    with ssh_world(tmp_path / "key") as w:
        for server in w.servers:
            server.password, server.authorized_key = None, key
        import io

        text = io.StringIO()
        key.write_private_key(text)
        del w.stack.config["sshPassword"]
        w.stack.config["sshPrivateKey"] = text.getvalue()
        w.stack.secret_keys = {"sshPrivateKey", "sshRootPassword", "sshIssuingCaKey"}
        w.cluster["ssh"]["authentication"] = "private_key"
        expect_ok(w.up())
        assert w.installs() == dict.fromkeys(NODES, 1)
        assert w.total("password attempts") == 0


def test_a_missing_secret_stops_preview_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WS1_ACCESS_SSH_ISSUING_CA_KEY", raising=False)
    with ssh_world(tmp_path) as w:
        del w.stack.config["sshIssuingCaKey"]
        w.stack.secret_keys.discard("sshIssuingCaKey")
        failed = w.stack.preview()
        assert failed.error is not None and "sshIssuingCaKey" in failed.error
        assert "WS1_ACCESS_SSH_ISSUING_CA_KEY" in failed.error
        assert w.total("connections") == 0


@pytest.mark.parametrize("become", ["su"])
def test_no_ssh_secret_is_found_anywhere_in_the_lifecycle(tmp_path, become, caplog):
    """Secret scan over this route: state, outputs, pickled providers, warnings, errors, log
    records (every logger, paramiko's included), and every file written."""
    caplog.set_level(logging.DEBUG)
    with ssh_world(tmp_path, become=become) as w:
        key_pem = w.stack.config["sshIssuingCaKey"]
        key_body = "".join(key_pem.strip().splitlines()[1:-1])
        canaries = [SSH_PASSWORD, ROOT_PASSWORD, key_body[:40], key_body[-40:]]
        runs = [w.up()]
        w.stack.config["sshPassword"] = "canary-wrong-Ssh-guess"  # noqa: S105
        w.cluster["extra_sans"] = ["ws1-dr2.local.test"]
        runs.append(w.up())
        canaries.append("canary-wrong-Ssh-guess")
        runs.append(w.stack.refresh())
        texts = []
        for run in runs:
            texts.append(json.dumps(run.outputs, default=str))
            texts.extend(run.warnings)
            texts.append(run.error or "")
            for resource in run.resources.values():
                texts.append(json.dumps(resource.inputs, default=str))
                texts.append(json.dumps(resource.outputs, default=str))
                provider = resource.inputs.get(PROVIDER_KEY)
                if isinstance(provider, str):
                    texts.append(provider)
                    texts.append(
                        base64.b64decode(provider + "==", validate=False).decode("latin-1")
                    )
        texts.append(caplog.text)
        assert "paramiko" in caplog.text  # the SSH library's own log was captured too
        for path in tmp_path.rglob("*"):
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
        assert runs[0].error is None and runs[1].error is not None
        found = [c for c in canaries for text in texts if c in text]
        assert found == [], found
        # The provider itself holds nothing secret when pickled.
        assert ApplianceCertificateProvider().__dict__ == {}


def test_an_issuing_ca_the_stack_does_not_pin_is_refused_while_planning(tmp_path):
    with ssh_world(tmp_path) as w:
        w.cluster["root_ca_sha256"] = [w.emulator.root_ca_sha256]
        failed = w.stack.preview()
        assert failed.error is not None
        assert (
            f"the incoming root CA {w.issuing_ca.sha256} (config key ssh.issuing_ca) is not "
            in (failed.error)
        )
        assert w.total("connections") == 0 and failed.resources == {}


def test_a_cleanup_that_fails_after_a_failed_install_keeps_the_install_error(tmp_path, monkeypatch):
    """The install's own error is what the operator must read; a failing `rm -rf` of the
    directory with the private key (a broken connection, say) must not replace it."""
    from components.appliance.routes import ssh

    real_run = ssh.SshInstallRoute._run

    def run(self, transport, node, command, **kwargs):
        if command.startswith("rm -rf "):
            raise ssh.ApplianceError(f"node {node.fqdn}: the SSH connection broke")
        return real_run(self, transport, node, command, **kwargs)

    monkeypatch.setattr(ssh.SshInstallRoute, "_run", run)
    with ssh_world(tmp_path) as w:
        w.server(1).fail_next_install = 1
        failed = w.up()
        assert failed.error is not None and "exited 1" in failed.error, failed.error
        assert "connection broke" not in failed.error
