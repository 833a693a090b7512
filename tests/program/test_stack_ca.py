"""`ssh.issuing_ca: generated`: the stack's own CA, through the lifecycle harness.

The real program (__main__.py) and the real provider host run against emulated nodes whose
SSH servers run the emulated installExternalCertificate.hzn. The CA is a resource output
(StackIssuingCA), never a plain value while the program runs: these tests check that the
load balancers trust it before any node moves, that every node then serves a certificate
from it, that its key stays a secret of the state, and that a root CA which only carries
its name is refused.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from components import pki
from components.appliance.stack_ca import stack_ca_subject
from components.audit.__main__ import main as audit_main
from emulators._certs import CertificateAuthority
from tests.harness.lifecycle import PROVIDER_KEY, UNKNOWN
from tests.program.scenarios import CERTIFICATE_TYPE, SERVICE, node_fqdn
from tests.program.ssh_world import SshWorld, ssh_world

NODES = [node_fqdn(i) for i in (1, 2, 3)]
STACK_CA_TYPE = ":StackIssuingCA"
ROOT_CA_TYPE = ":ApplianceRootCA"


def expect_ok(result):
    assert result.error is None, result.error
    return result


def issued_by(world: SshWorld, ca_pem: str) -> list[str]:
    """The nodes whose served certificate the given CA signed (signature, not name)."""
    ca = pki.load_certificate(ca_pem, "the stack CA")
    names = []
    for node in world.emulator.nodes:
        leaf = pki.load_certificate(node.leaf_pem, node.fqdn)
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception):  # noqa: BLE001 InvalidSignature included
            continue
        names.append(node.fqdn)
    return names


def key_pieces(key_pem: str) -> list[str]:
    """Pieces of the key's base64 body and of its DER, as an echo or a dump could show them."""
    body = "".join(key_pem.strip().splitlines()[1:-1])
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    numbers = key.private_numbers()  # type: ignore[union-attr]
    return [body[:48], body[len(body) // 2 : len(body) // 2 + 48], body[-48:], str(numbers.p)]


def texts_of(run: Any) -> list[tuple[str, str]]:
    """Everything a run shows or keeps, except the state values the engine encrypts."""
    found = [
        ("outputs", json.dumps(run.outputs, default=str)),
        ("warnings", "\n".join(run.warnings)),
        ("error", run.error or ""),
    ]
    for resource in run.resources.values():
        for where, values in (("inputs", resource.inputs), ("outputs", resource.outputs)):
            for key, value in values.items():
                if key in resource.secrets:
                    continue  # encrypted in the state by the engine
                found.append((f"{resource.urn} {where}.{key}", json.dumps(value, default=str)))
                if key == PROVIDER_KEY and isinstance(value, str):
                    decoded = base64.b64decode(value + "==", validate=False).decode("latin-1")
                    found.append((f"{resource.urn} provider (decoded)", decoded))
    return found


def test_first_up_trusts_the_stack_ca_first_then_moves_every_node_to_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with ssh_world(tmp_path, generated_ca=True) as w:
        # Preview on a new stack says what it cannot know instead of guessing.
        preview = expect_ok(w.stack.preview())
        assert w.total("connections") == 0
        [ca_planned] = preview.of_type(STACK_CA_TYPE)
        assert preview.steps[ca_planned.urn] == "create"
        assert ca_planned.outputs.get("certificate_pem", UNKNOWN) is UNKNOWN
        [root_planned] = preview.of_type(ROOT_CA_TYPE)
        assert root_planned.inputs["root_ca_bundle_pem"] is UNKNOWN
        [said] = [line for line in preview.warnings if "this stack's own CA" in line]
        assert "cannot show its fingerprint" in said
        assert "FIRST" in said and "one node at a time" in said
        assert all(node in said for node in NODES)
        assert not any("gets a new certificate" in line for line in preview.warnings)

        # What each load balancer's bundle file holds at the moment each node installs
        # (recorded by the node's SSH server as it runs the install script).
        at_install: list[tuple[str, dict[str, list[str]]]] = []
        for server in w.servers:
            restart = server._restart_with

            def recording(*args: Any, _restart: Any = restart, _fqdn: str = server.node.fqdn):
                at_install.append((_fqdn, {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")}))
                return _restart(*args)

            server._restart_with = recording  # type: ignore[method-assign]

        first = expect_ok(w.up())
        ca = w.stack_ca()
        # Every load balancer trusted the stack CA before the first node installed (and so
        # before any node served from it), next to the appliance's root CA that the nodes
        # not yet moved still serve from.
        assert [fqdn for fqdn, _ in at_install] == NODES
        for _fqdn, bundles in at_install:
            for held in bundles.values():
                assert set(held) == {w.emulator.root_ca_sha256, ca["sha256"]}, bundles
        # The order the resources were registered in: the CA, then the planned trust, then
        # the nodes (which also wait on every trust store: depends_on).
        registered = list(first.resources)
        ca_urn = next(u for u in registered if u.endswith("issuing-ca"))
        root_urn = next(u for u in registered if u.endswith("root-ca"))
        certificate_urn = next(u for u in registered if u.endswith("certificate"))
        assert registered.index(ca_urn) < registered.index(root_urn)
        assert registered.index(root_urn) < registered.index(certificate_urn)
        bundles = [u for u in registered if ":PemTrustBundle::" in u]
        assert len(bundles) == 2, registered
        assert all(registered.index(u) < registered.index(certificate_urn) for u in bundles)

        # The CA as asked: self-signed root, RSA 3072, pathlen 0, keyCertSign + cRLSign.
        certificate = pki.load_certificate(ca["certificate_pem"], "the stack CA")
        assert ca["sha256"] == pki.sha256_fingerprint(certificate)
        assert certificate.subject == stack_ca_subject(SERVICE) == certificate.issuer
        [cn] = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert SERVICE in str(cn.value) and "ws1-access-lb-trust" in str(cn.value)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        assert constraints.value.path_length == 0
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
        assert certificate.public_key().key_size == 3072  # type: ignore[union-attr]
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        assert 3650 <= lifetime.days <= 3653
        pki.check_ca(certificate, "the stack CA")

        # Trusted by both load balancers next to the appliance's own root CA, and every node
        # now serves a certificate from it with the names the cluster needs.
        assert set(w.trusted("proxy-a")) == {w.emulator.root_ca_sha256, ca["sha256"]}
        assert w.trusted("proxy-b") == w.trusted("proxy-a")
        assert w.installs() == dict.fromkeys(NODES, 1)
        assert issued_by(w, ca["certificate_pem"]) == NODES
        assert w.off_trust() == []
        for node in w.emulator.nodes:
            assert node.common_name == SERVICE
            assert set(node.subject_alt_names) == {SERVICE, *NODES, "ws1-dr.local.test"}
        [cert_state] = first.of_type(CERTIFICATE_TYPE)
        assert cert_state.outputs["nodes_needing_certificate"] == []

        # The key: a secret output of the CA and a secret input of the certificate, nowhere
        # else; the certificate's outputs never carry it.
        [ca_state] = first.of_type(STACK_CA_TYPE)
        assert "private_key_pem" in ca_state.secrets
        assert "issuing_ca_key_pem" in cert_state.secrets
        assert cert_state.inputs["issuing_ca_key_pem"] == ca["private_key_pem"]
        assert "issuing_ca_key_pem" not in cert_state.outputs
        assert cert_state.inputs["route"]["issuing_ca"] == "generated"
        assert "issuing_ca_key_key" not in cert_state.inputs["route"]

        # Second up: the nodes all publish the stack CA now (no pin needed), so the appliance's
        # old root CA leaves the bundles; nothing is written to any node, no SSH login.
        settle = expect_ok(w.up())
        assert w.trusted("proxy-a") == w.trusted("proxy-b") == [ca["sha256"]]
        assert (w.total("connections"), w.total("installs"), w.emulator.writes()) == (0, 0, 0)
        assert w.stack_ca() == ca  # the same CA: never regenerated
        assert set(settle.changed()) <= {root_urn, certificate_urn} | {
            u for u in settle.resources if ":PemTrustBundle" in u or "proxy-" in u
        }

        again = expect_ok(w.up())
        assert again.changed() == {}, again.changed()
        assert (w.total("connections"), w.total("installs"), w.emulator.writes()) == (0, 0, 0)
        assert again.outputs["local"]["root_ca_sha256s"] == [ca["sha256"]]

        refreshed = expect_ok(w.stack.refresh())
        assert set(refreshed.steps.values()) == {"refresh-same"}, refreshed.steps
        assert w.stack_ca() == ca
        [ca_after] = [r for r in w.stack.state.values() if r.type.endswith(STACK_CA_TYPE)]
        assert "private_key_pem" in ca_after.secrets

        runs = [preview, first, settle, again, refreshed]
        pieces = key_pieces(ca["private_key_pem"])
        texts = [text for run in runs for text in texts_of(run)]
        texts.append(("log records", caplog.text))
        for path in tmp_path.rglob("*"):
            if path.is_file():
                texts.append((str(path), path.read_text(errors="replace")))
        leaked = sorted({where for where, text in texts for piece in pieces if piece in text})
        assert leaked == []

        gone = expect_ok(w.stack.destroy())
        assert set(gone.steps.values()) == {"delete"} and w.stack.state == {}
        # Destroy touches no node: the nodes keep serving the stack CA's certificates.
        assert w.total("connections") == 0


def test_a_node_publishing_another_root_ca_with_the_stack_cas_name_is_refused(tmp_path):
    with ssh_world(tmp_path, generated_ca=True) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        ca = w.stack_ca()
        before = {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")}
        # Node 2 now publishes (and serves from) a CA that copies the stack CA's subject.
        impostor = CertificateAuthority.create(subject=stack_ca_subject(SERVICE))
        assert (
            impostor.certificate.subject == pki.load_certificate(ca["certificate_pem"], "").subject
        )
        node = w.emulator.node(node_fqdn(2))
        node._install(impostor, impostor.issue(SERVICE, [SERVICE, *NODES, "ws1-dr.local.test"]))

        w.reset_counters()
        preview = w.stack.preview()
        assert preview.error is not None
        assert f"node {node_fqdn(2)} publishes root CA {impostor.sha256}" in preview.error
        assert "carries the subject of this stack's own CA but is not it" in preview.error
        assert ca["sha256"] in preview.error and "root_ca_sha256" in preview.error

        failed = w.up()
        assert failed.error is not None and impostor.sha256 in failed.error
        assert {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")} == before
        assert w.total("connections") == 0 and w.total("installs") == 0


def test_a_root_ca_with_another_name_follows_the_pins_while_planning(tmp_path):
    """A root CA that cannot be the stack's own (another subject) is judged by today's rules
    while the program runs: unpinned, it stops preview before any resource is declared."""
    with ssh_world(tmp_path, generated_ca=True) as w:
        expect_ok(w.up())
        other = CertificateAuthority.create()
        node = w.emulator.node(node_fqdn(3))
        node._install(other, other.issue(SERVICE, [SERVICE, *NODES, "ws1-dr.local.test"]))
        failed = w.stack.preview()
        assert failed.error is not None and "root CA pin mismatch" in failed.error
        assert f"node {node_fqdn(3)} serves {other.sha256}" in failed.error
        assert failed.resources == {}


def test_a_missing_ssh_password_stops_preview_and_no_ca_key_is_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("WS1_ACCESS_SSH_PASSWORD", raising=False)
    monkeypatch.delenv("WS1_ACCESS_SSH_ISSUING_CA_KEY", raising=False)
    with ssh_world(tmp_path, generated_ca=True) as w:
        del w.stack.config["sshPassword"]
        w.stack.secret_keys.discard("sshPassword")
        failed = w.stack.preview()
        assert failed.error is not None and "sshPassword" in failed.error
        assert "IssuingCaKey" not in failed.error and "ISSUING_CA_KEY" not in failed.error
        assert failed.resources == {} and w.total("connections") == 0


def audit_rows(w: SshWorld, capsys: Any, config: dict[str, Any] | None = None) -> list[dict]:
    """`python -m components.audit` over the stack file as an operator keeps it (secrets as
    `secure:` values, never decrypted by the audit)."""
    config = config if config is not None else w.stack.config
    entries: dict[str, Any] = {}
    for key, value in config.items():
        entries[f"ws1-access-lb-trust:{key}"] = (
            {"secure": "v1:AAAA"} if key in w.stack.secret_keys else value
        )
    stack_file = w.directory / "Pulumi.local.yaml"
    stack_file.write_text(yaml.safe_dump({"config": entries}))
    capsys.readouterr()
    code = audit_main([str(stack_file), "--json"])
    rows: list[dict] = json.loads(capsys.readouterr().out)["rows"]
    assert code == max((VERDICT_CODES[row["verdict"]] for row in rows), default=3)
    return rows


VERDICT_CODES = {"OK": 0, "WARN": 1, "FAIL": 2, "UNKNOWN": 3}


def test_the_audit_of_a_generated_ca_cluster_is_unknown_until_the_stack_ca_is_pinned(
    tmp_path, capsys
):
    with ssh_world(tmp_path, generated_ca=True) as w:
        expect_ok(w.up())
        expect_ok(w.up())  # settle: the appliance's old root CA leaves the bundles
        ca = w.stack_ca()
        assert w.trusted("proxy-a") == [ca["sha256"]]

        # The audit knows the stack file only: the stack CA is named like the stack's own,
        # so it is neither failed nor passed, and the operator is told how to settle it.
        rows = audit_rows(w, capsys)
        assert len(rows) == 6  # 2 load balancers x 3 nodes
        assert {row["verdict"] for row in rows} == {"UNKNOWN"}, rows
        for row in rows:
            node_line = f"node {row['node']} publishes root CA {ca['sha256']}"
            assert any(
                reason.startswith(node_line)
                and "root_ca_sha256s" in reason
                and "pin it in root_ca_sha256" in reason
                for reason in row["reasons"]
            ), row["reasons"]
            assert any(
                f"load balancer {row['load_balancer']} also trusts {ca['sha256']}" in reason
                for reason in row["reasons"]
            ), row["reasons"]
            assert not any("does not pin" in reason for reason in row["reasons"])

        # The same root CA on a cluster that does not generate its CA: a plain unpinned root.
        operator = json.loads(json.dumps(w.stack.config))
        operator["clusters"][0]["certificate_method"] = "none"
        rows = audit_rows(w, capsys, operator)
        assert {row["verdict"] for row in rows} == {"FAIL"}, rows
        assert all(
            any("which the stack does not pin" in reason for reason in row["reasons"])
            for row in rows
        )

        # Pinned (from the stack output), the program accepts it and the audit passes.
        w.cluster["root_ca_sha256"] = [*w.cluster["root_ca_sha256"], ca["sha256"]]
        pinned = expect_ok(w.up())
        assert pinned.outputs["local"]["root_ca_sha256s"] == [ca["sha256"]]
        assert (w.total("connections"), w.emulator.writes()) == (0, 0)
        assert w.trusted("proxy-a") == w.trusted("proxy-b") == [ca["sha256"]]
        rows = audit_rows(w, capsys)
        assert {row["verdict"] for row in rows} == {"OK"}, rows

        # Once the stack CA is pinned, another root CA with its (predictable) subject is
        # provably not it: a load balancer trusting one fails, it is not "unknown".
        impostor = CertificateAuthority.create(subject=stack_ca_subject(SERVICE))
        bundle = w.directory / "lb" / "proxy-a" / "trust.pem"
        bundle.write_text(bundle.read_text() + impostor.pem)
        rows = audit_rows(w, capsys)
        assert {row["verdict"] for row in rows if row["load_balancer"] == "proxy-a"} != {"OK"}, rows
        assert all(
            any(
                f"load balancer proxy-a also trusts {impostor.sha256}, which the stack does "
                "not pin" in reason
                for reason in row["reasons"]
            )
            for row in rows
            if row["load_balancer"] == "proxy-a"
        ), rows
        assert not any(row["verdict"] == "UNKNOWN" for row in rows), rows


def test_with_manage_certificate_false_the_stack_ca_is_trusted_only_where_a_node_uses_it(tmp_path):
    with ssh_world(tmp_path, generated_ca=True) as w:
        # A fresh stack that writes no certificate: the CA is made (so turning
        # manage_certificate on later moves the nodes without a new CA), but no load
        # balancer trusts it: no node uses it, and its key is in the state.
        w.cluster["manage_certificate"] = False
        fresh = expect_ok(w.up())
        [ca_state] = fresh.of_type(STACK_CA_TYPE)
        assert ca_state.outputs["sha256"]
        assert w.trusted("proxy-a") == w.trusted("proxy-b") == [w.emulator.root_ca_sha256]
        assert fresh.outputs["local"]["root_ca_sha256s"] == [w.emulator.root_ca_sha256]
        [root_state] = fresh.of_type(ROOT_CA_TYPE)
        assert "stack_ca_pem" not in root_state.inputs
        assert (w.total("connections"), w.total("installs")) == (0, 0)

        # Turned on: the same CA, trusted first, then every node moves to it.
        w.cluster["manage_certificate"] = True
        expect_ok(w.up())
        expect_ok(w.up())  # settle
        ca = w.stack_ca()
        assert ca["sha256"] == ca_state.outputs["sha256"]
        assert issued_by(w, ca["certificate_pem"]) == NODES
        assert w.trusted("proxy-a") == [ca["sha256"]]

        # Off again with every node on the stack CA: still trusted, the trust unchanged.
        w.cluster["manage_certificate"] = False
        off = expect_ok(w.up())
        assert w.trusted("proxy-a") == w.trusted("proxy-b") == [ca["sha256"]]
        assert w.stack_ca() == ca
        root_urn = next(urn for urn in off.resources if urn.endswith("root-ca"))
        assert root_urn not in off.changed()
        assert not any(":PemTrustBundle" in urn or "proxy-" in urn for urn in off.changed())
        assert (w.total("connections"), w.total("installs"), w.emulator.writes()) == (0, 0, 0)
        assert off.outputs["local"]["root_ca_sha256s"] == [ca["sha256"]]


def test_a_new_service_fqdn_names_the_previous_stack_ca_and_moves_once_it_is_pinned(tmp_path):
    with ssh_world(tmp_path, generated_ca=True) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        old = w.stack_ca()
        before = {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")}

        renamed = "ws1-renamed.local.test"
        w.cluster["service_fqdn"] = renamed
        w.reset_counters()
        failed = w.stack.preview()
        assert failed.error is not None
        for node in NODES:
            assert f"node {node} publishes root CA {old['sha256']}" in failed.error
        assert "PREVIOUS CA" in failed.error and "earlier service_fqdn" in failed.error
        assert "pin it in root_ca_sha256" in failed.error
        assert "regenerated on purpose" not in failed.error
        assert failed.resources == {}

        # Pinned as told: the new CA is trusted first, every node moves to it.
        w.cluster["root_ca_sha256"] = [*w.cluster["root_ca_sha256"], old["sha256"]]
        expect_ok(w.up())
        new = w.stack_ca()
        assert new["sha256"] != old["sha256"] and new["service_fqdn"] == renamed
        assert issued_by(w, new["certificate_pem"]) == NODES
        assert w.off_trust() == []
        assert w.installs() == dict.fromkeys(NODES, 1)
        assert {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")} != before


def test_after_a_lost_state_the_refused_up_creates_no_ca(tmp_path):
    with ssh_world(tmp_path, generated_ca=True) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        old = w.stack_ca()
        before = {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")}
        w.stack.state.clear()  # the state is lost; the nodes still serve from the old CA

        failed = w.up()
        assert failed.error is not None
        assert f"publishes root CA {old['sha256']}" in failed.error
        assert "not generated yet" in failed.error and "root_ca_sha256" in failed.error
        # Refused while checking the CA, before it was made: nothing in the state, nothing
        # written anywhere.
        assert not any(r.type.endswith(STACK_CA_TYPE) for r in w.stack.state.values())
        assert {lb: w.trusted(lb) for lb in ("proxy-a", "proxy-b")} == before
        assert (w.total("connections"), w.total("installs")) == (0, 0)

        # Pinned, as the refusal says (and the bundle files, which the lost state wrote,
        # adopted): a new CA, and every node moves to it.
        w.cluster["root_ca_sha256"] = [*w.cluster["root_ca_sha256"], old["sha256"]]
        for lb in w.stack.config["load_balancers"]:
            lb["adopt_existing_file"] = True
        expect_ok(w.up())
        new = w.stack_ca()
        assert new["sha256"] != old["sha256"]
        assert issued_by(w, new["certificate_pem"]) == NODES
        assert w.off_trust() == []
