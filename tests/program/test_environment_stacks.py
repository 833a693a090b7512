"""The staging and prod stack files, through the harness, with emulators standing in for nodes."""

from __future__ import annotations

import pytest

from emulators._certs import CertificateAuthority
from emulators.appliance import ApplianceCluster
from tests.harness import Stack
from tests.program.bigips import bigips_for
from tests.program.stacks import PROGRAM, pointed_at, stack_config

PASSWORD = "environment-emulator-password"
BIGIP_PASSWORD = "bigip-password-for-tests"  # noqa: S105 (the emulated units accept it)
BIGIP_CERTIFICATE = "f5bigip:ssl/certificate:Certificate"
SERVER_SSL = "f5bigip:ltm/profileServerSsl:ProfileServerSsl"
BIGIP_PROVIDER = "pulumi:providers:f5bigip"


@pytest.fixture(params=["staging", "prod"])
def environment(request, tmp_path, monkeypatch, lb_ca_pem):
    config = stack_config(request.param)
    cluster = config["clusters"][0]
    nodes = [node["fqdn"] for node in cluster["nodes"]]
    with (
        ApplianceCluster(nodes, cluster["service_fqdn"], PASSWORD) as emulator,
        bigips_for(config, tmp_path, BIGIP_PASSWORD),
    ):
        config = pointed_at(config, {cluster["name"]: emulator})
        config["clusters"][0]["root_ca_sha256"] = emulator.root_ca_sha256
        config["clusters"][0]["load_balancer_root_ca"] = lb_ca_pem
        if config["clusters"][0]["certificate_method"] in ("ssh", "lifecycle_manager"):
            # The route's CA files, as the operator puts them next to the stack. These tests
            # are about the load balancer side: node certificates stay as they are here (the
            # routes have their own lifecycle tests: test_ssh_route, test_lifecycle_route).
            (tmp_path / "certs").mkdir(exist_ok=True)
            for name in ("ws1-issuing-ca.pem", "lcm-management-ca.pem"):
                (tmp_path / "certs" / name).write_text(CertificateAuthority.create().pem)
            config["clusters"][0]["manage_certificate"] = False
        monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", PASSWORD)
        config["bigipPassword"] = BIGIP_PASSWORD
        stack = Stack(
            PROGRAM,
            stack=request.param,
            config=config,
            secret_keys={"ws1-access-lb-trust:bigipPassword"},
            cwd=str(tmp_path),
        )
        yield request.param, stack, emulator


def test_each_big_ip_trusts_the_pinned_root_ca_and_verifies_nodes_by_name(environment):
    name, stack, emulator = environment
    result = stack.up()
    assert result.error is None, f"{name}: {result.error}"
    certificates = result.of_type(BIGIP_CERTIFICATE)
    profiles = result.of_type(SERVER_SSL)
    assert len(certificates) == 2 and len(profiles) == 2, f"{name}: {sorted(result.resources)}"
    for certificate in certificates:
        assert emulator.root_ca_pem.strip() in certificate.inputs["content"], certificate.urn
        assert "/" not in certificate.inputs["name"], certificate.urn
    for profile in profiles:
        object_names = {f"/Common/{c.inputs['name']}" for c in certificates}
        assert profile.inputs["caFile"] in object_names, profile.urn
        assert profile.inputs["peerCertMode"] == "require", profile.urn
        assert profile.inputs["untrustedCertResponseControl"] == "drop", profile.urn
        assert profile.inputs["expireCertResponseControl"] == "drop", profile.urn
    for provider in result.of_type(BIGIP_PROVIDER):
        assert provider.inputs["teemDisable"] == "true", provider.urn
        assert provider.inputs["validateCertsDisable"] == "false", provider.urn
    exported = result.outputs["ws1"]["load_balancers"]
    assert sorted(exported) == ["bigip-a", "bigip-b"]
    assert all(v["trusted_sha256s"] == [emulator.root_ca_sha256] for v in exported.values())
    if stack.config["clusters"][0]["certificate_method"] == "configurator":
        # The reverse direction: the load balancer's CA is now on every node.
        assert all(node.lb_root_ca_pem.strip() for node in emulator.nodes)
    else:
        # No public source shows that route over ssh: said in preview, nothing guessed.
        assert not any(node.lb_root_ca_pem.strip() for node in emulator.nodes)
        assert any(
            "load_balancer_root_ca is declared, but no public source" in line
            for line in result.warnings
        ), result.warnings


def test_a_second_up_is_a_no_op_for_the_appliance(environment):
    _, stack, emulator = environment
    assert stack.up().error is None
    emulator.reset_counters()
    result = stack.up()
    assert result.error is None, result.error
    assert result.changed() == {}
    assert emulator.writes() == 0 and emulator.logins() == 0


def test_removing_a_node_removes_it_from_every_pool_and_nothing_else_moves(environment):
    name, stack, _ = environment
    assert stack.up().error is None
    removed = stack.config["clusters"][0]["nodes"].pop()
    result = stack.up()
    assert result.error is None, f"{name}: {result.error}"
    deleted = sorted(urn.rsplit("::", 1)[1] for urn, s in result.steps.items() if s == "delete")
    # Emulated nodes share 127.0.0.1: the node stays (others use it), its pool member goes.
    member = f"member-{removed['address']}-{removed['service_port']}"
    assert deleted == [f"bigip-a-ws1-{member}", f"bigip-b-ws1-{member}"], deleted
    changed_types = {urn.rsplit("::", 1)[0].rsplit("$", 1)[-1] for urn in result.changed()}
    assert "f5bigip:ssl/certificate:Certificate" not in changed_types, result.changed()


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_example_stacks_as_shipped_stop_with_a_clear_error_before_any_network_call(name, tmp_path):
    # The examples name a management CA file that only an operator can supply.
    result = Stack(PROGRAM, stack=name, config=stack_config(name), cwd=str(tmp_path)).preview()
    assert result.error is not None
    # prod also names the ssh route's CA file (certs/ws1-issuing-ca.pem); staging the
    # lifecycle_manager route's two (Lifecycle's HTTPS CA and the node-certificate CA).
    count = {"staging": 4, "prod": 3}[name]
    assert result.error.startswith(f"The stack configuration has {count} problems:"), result.error
    if name == "prod":
        assert "clusters[0].ssh.issuing_ca_path" in result.error
    else:
        assert "clusters[0].lifecycle_manager.management_ca_path" in result.error
        assert "clusters[0].lifecycle_manager.issuing_ca_path" in result.error
    assert "load_balancers[0].management_ca_path" in result.error
    assert "load_balancers[1].management_ca_path" in result.error
    assert result.resources == {}


def test_a_big_ip_without_a_password_anywhere_stops_preview(environment, monkeypatch):
    name, stack, _ = environment
    del stack.config["bigipPassword"]
    monkeypatch.delenv("BIGIP_PASSWORD", raising=False)
    result = stack.preview()
    assert result.error is not None, name
    assert result.error.splitlines() == [
        f"load balancer {lb}: neither the secret config key bigipPassword nor the environment "
        "variable BIGIP_PASSWORD is set; set it with `pulumi config set --secret bigipPassword`."
        for lb in ("bigip-a", "bigip-b")
    ]
    assert result.resources == {}


def test_the_big_ip_password_reaches_only_the_provider_and_as_a_secret(environment):
    _, stack, _ = environment
    result = stack.up()
    assert result.error is None, result.error
    for resource in result.resources.values():
        shown = repr(resource.inputs) + repr(resource.outputs)
        if resource.type == BIGIP_PROVIDER:
            assert "password" in resource.secrets, resource.urn
        else:
            assert "bigip-password-for-tests" not in shown, resource.urn
    assert "bigip-password-for-tests" not in repr(result.outputs)


def test_sslkeylogfile_refuses_a_stack_with_big_ips_before_anything_is_declared(
    environment, monkeypatch, tmp_path
):
    name, stack, _ = environment
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    monkeypatch.delenv("WS1_ACCESS_ALLOW_SSLKEYLOGFILE", raising=False)
    result = stack.preview()
    assert result.error is not None, name
    assert (
        "load balancer(s) bigip-a, bigip-b: this run may log in to the BIG-IP management API"
    ) in result.error
    assert result.resources == {}
