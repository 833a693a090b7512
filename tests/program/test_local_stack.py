"""The program with the local stack, through the lifecycle harness, against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import pki
from emulators.appliance import ApplianceCluster
from tests.harness import UNKNOWN, Stack
from tests.program.stacks import PROGRAM, pointed_at, stack_config, with_configurator_route

PASSWORD = "local-emulator-password"
NODES = ("ws1-node1.local.test", "ws1-node2.local.test", "ws1-node3.local.test")
SERVICE = "ws1.local.test"
ROOT_CA = "pulumi-python:dynamic/ws1:ApplianceRootCA"
CERTIFICATE = "pulumi-python:dynamic/ws1:ApplianceCertificate"
BUNDLE = "pulumi-python:dynamic/trust_stores:PemTrustBundle"


@pytest.fixture
def emulator():
    with ApplianceCluster(NODES, SERVICE, PASSWORD) as cluster:
        yield cluster


@pytest.fixture
def stack(emulator, tmp_path, monkeypatch):
    (tmp_path / ".state" / "local-proxy").mkdir(parents=True)
    monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", PASSWORD)
    config = pointed_at(stack_config("local"), {"local": emulator})
    with_configurator_route(config)
    return Stack(PROGRAM, stack="local", config=config, cwd=str(tmp_path))


def bundle_file(stack: Stack) -> Path:
    return Path(stack.cwd) / ".state" / "local-proxy" / "ws1-appliance-roots.pem"


def trusted(stack: Stack) -> list[str]:
    return [pki.sha256_fingerprint(c) for c in pki.load_bundle(bundle_file(stack).read_text(), "t")]


def test_first_up_trusts_the_appliance_root_ca_and_warns_about_trust_on_first_use(stack, emulator):
    result = stack.up()
    assert result.error is None, result.error
    assert sorted(result.changed().values()) == ["create"] * len(result.changed())
    assert trusted(stack) == [emulator.root_ca_sha256]
    exported = result.outputs["local"]
    assert exported["root_ca_sha256s"] == [emulator.root_ca_sha256]
    assert exported["load_balancers"]["local-proxy"]["trusted_sha256s"] == [emulator.root_ca_sha256]
    assert exported["load_balancers"]["local-proxy"]["object_names"] == [str(bundle_file(stack))]
    assert sorted(exported["node_certificates"]) == sorted(NODES)
    tofu = [w for w in result.warnings if "TRUST ON FIRST USE" in w]
    assert len(tofu) == 1 and emulator.root_ca_sha256 in tofu[0]
    # The emulator's first certificates already carry every name: nothing to log in for.
    assert emulator.writes() == 0 and emulator.logins() == 0


def test_second_up_without_change_makes_no_write_no_login_and_one_read_per_node(stack, emulator):
    assert stack.up().error is None
    emulator.reset_counters()
    result = stack.up()
    assert result.error is None, result.error
    assert result.changed() == {}
    assert emulator.writes() == 0 and emulator.logins() == 0
    for node in emulator.nodes:
        assert node.count() == 1, f"{node.fqdn}: {node.counters}"


def test_preview_shows_a_regenerated_root_ca_without_refresh_and_changes_nothing(stack, emulator):
    assert stack.up().error is None
    old_root = emulator.root_ca_sha256
    emulator.regeneration_makes_new_root = True
    for fqdn in NODES:
        emulator.node(fqdn).regenerate(SERVICE, [SERVICE, *NODES])
    new_root = emulator.node(NODES[0]).root_ca_sha256

    preview = stack.preview()
    assert preview.error is None, preview.error
    assert preview.of_type(ROOT_CA)[0].urn in preview.changed()
    assert preview.changed()[preview.of_type(BUNDLE)[0].urn] == "update"
    planned = preview.outputs["local"]["load_balancers"]["local-proxy"]["trusted_sha256s"]
    assert planned == [new_root] and planned is not UNKNOWN
    assert trusted(stack) == [old_root]  # preview wrote nothing

    result = stack.up()
    assert result.error is None, result.error
    assert trusted(stack) == [new_root]
    for node in emulator.nodes:  # every node verifies against what the load balancer trusts
        pki.verify_served_chain(
            [pki.load_certificate(node.leaf_pem, node.fqdn)],
            pki.load_bundle(bundle_file(stack).read_text(), "bundle"),
            node.fqdn,
            node.fqdn,
        )


def test_a_new_san_regenerates_every_node_certificate(stack, emulator):
    assert stack.up().error is None
    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]
    preview = stack.preview()
    assert preview.error is None, preview.error
    certificate = preview.of_type(CERTIFICATE)[0]
    assert preview.changed() == {certificate.urn: "update"}
    assert certificate.inputs["nodes_needing_certificate"] == list(NODES)
    emulator.reset_counters()
    result = stack.up()
    assert result.error is None, result.error
    assert emulator.writes() == 3
    for node in emulator.nodes:
        assert "ws1-dr.local.test" in node.subject_alt_names


def test_refresh_sees_a_certificate_replaced_by_hand_and_up_repairs_it(stack, emulator):
    assert stack.up().error is None
    emulator.node(NODES[1]).regenerate(SERVICE, [SERVICE])
    refreshed = stack.refresh()
    assert refreshed.error is None, refreshed.error
    certificate = refreshed.of_type(CERTIFICATE)[0]
    assert refreshed.steps[certificate.urn] == "refresh-changed"
    assert stack.state[certificate.urn].outputs["nodes_needing_certificate"] == [NODES[1]]
    emulator.reset_counters()
    assert stack.up().error is None
    assert emulator.writes() == 1
    assert NODES[0] in emulator.node(NODES[1]).subject_alt_names


def test_pin_mismatch_fails_preview_and_changes_nothing(stack, emulator):
    assert stack.up().error is None
    before = bundle_file(stack).read_text()
    stack.config["clusters"][0]["trust_on_first_use"] = False
    stack.config["clusters"][0]["root_ca_sha256"] = "AB:" * 31 + "AB"
    preview = stack.preview()
    assert preview.error is not None
    assert preview.error.startswith(
        "cluster local: root CA pin mismatch: node ws1-node1.local.test"
    )
    assert stack.up().error == preview.error
    assert bundle_file(stack).read_text() == before


def test_bad_config_is_one_clear_error_and_nothing_is_declared(stack):
    stack.config["clusters"][0]["nodes"][2]["fqdn"] = "ws1_node3"
    result = stack.up()
    assert result.error is not None
    assert "ws1-access-lb-trust:clusters[0].nodes[2].fqdn" in result.error
    assert "Traceback" not in result.error
    assert result.resources == {} or all(
        not r.type.startswith("pulumi-python") for r in result.resources.values()
    )
    assert stack.state == {}


def test_destroy_removes_the_trust_bundle(stack):
    assert stack.up().error is None
    assert bundle_file(stack).exists()
    assert stack.destroy().error is None
    assert not bundle_file(stack).exists()


def test_up_change_sans_up_drift_refresh_up_converges_with_counted_calls(stack, emulator):
    """The appliance-resources issue, end to end: every step's appliance calls are counted."""
    assert stack.up().error is None
    assert (emulator.writes(), emulator.logins()) == (0, 0)

    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]
    emulator.reset_counters()
    assert stack.up().error is None
    # One generation per node, and one read-only probe login per node while planning.
    assert (emulator.writes(), emulator.logins()) == (3, 6)

    emulator.node(NODES[2]).regenerate(SERVICE, [SERVICE])  # by hand, names lost
    emulator.reset_counters()
    refreshed = stack.refresh()
    assert refreshed.error is None
    assert refreshed.steps[refreshed.of_type(CERTIFICATE)[0].urn] == "refresh-changed"
    assert (emulator.writes(), emulator.logins()) == (0, 0)  # refresh only reads

    emulator.reset_counters()
    assert stack.up().error is None
    assert (emulator.writes(), emulator.logins()) == (1, 2)  # only the drifted node
    assert "ws1-dr.local.test" in emulator.node(NODES[2]).subject_alt_names

    emulator.reset_counters()
    converged = stack.up()
    assert converged.error is None and converged.changed() == {}
    assert (emulator.writes(), emulator.logins()) == (0, 0)


def test_a_needed_password_that_is_missing_stops_preview_before_anything(stack, monkeypatch):
    assert stack.up().error is None
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD")
    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]
    preview = stack.preview()
    assert preview.error == (
        "cluster local: node(s) ws1-node1.local.test, ws1-node2.local.test, ws1-node3.local.test "
        "need a new certificate, which needs the appliance admin password, but neither the "
        "secret config key applianceAdminPassword nor the environment variable "
        "WS1_ACCESS_ADMIN_PASSWORD is set; set it with "
        "`pulumi config set --secret applianceAdminPassword`."
    )
    assert preview.resources == {}


def test_without_a_needed_login_no_password_is_asked_for(stack, monkeypatch):
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD")
    assert stack.up().error is None  # the certificates already carry every name


def test_tls_key_logging_is_warned_about(stack, monkeypatch, tmp_path):
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    result = stack.preview()
    assert any(w.startswith("SSLKEYLOGFILE is set") for w in result.warnings), result.warnings


def test_a_regeneration_that_made_a_new_root_ca_stops_at_the_first_node(stack, emulator):
    assert stack.up().error is None
    emulator.regeneration_makes_new_root = True
    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]
    result = stack.up()
    new_root = emulator.node(NODES[0]).root_ca_sha256
    assert result.error and NODES[0] in result.error and new_root in result.error, result.error
    assert "Announce the new root CA" in result.error
    assert trusted(stack) == [emulator.root_ca_sha256]  # not trusted behind the reviewer's back
    # Only the first node moved; the others still serve from the trusted root CA.
    assert [emulator.node(fqdn).root_ca_sha256 for fqdn in NODES[1:]] == [
        emulator.root_ca_sha256
    ] * (len(NODES) - 1)
