"""The appliance dynamic providers, method by method, against the emulator over real TLS."""

from __future__ import annotations

from typing import Any

import dill
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from components import pki
from components.appliance.certificate import ApplianceCertificateProvider
from components.appliance.client import ApplianceError, NodeAddress, observe_node
from components.appliance.lb_root import ApplianceLoadBalancerRootCAProvider
from components.appliance.observation import TrustDecisionError, decide_trust, observe_cluster
from components.appliance.root_ca import ApplianceRootCAProvider
from emulators.appliance import ApplianceCluster
from tests.conftest import ADMIN_PASSWORD, NODE_FQDNS, SERVICE_FQDN

PROJECT = "ws1-access-lb-trust"


def addresses(cluster: ApplianceCluster) -> list[NodeAddress]:
    return [
        NodeAddress(node.fqdn, node.address, node.port, node.configurator_port)
        for node in cluster.nodes
    ]


def configured(provider: Any, password: str | None = ADMIN_PASSWORD) -> Any:
    config = {f"{PROJECT}:applianceAdminPassword": password} if password else {}
    provider.configure(ConfigureRequest(Config(config, PROJECT)))
    return provider


def root_ca_props(cluster: ApplianceCluster, pins: list[str] | None = None) -> dict[str, Any]:
    observation = observe_cluster("ws1", addresses(cluster))
    return {
        "__provider": "serialized",
        "cluster": "ws1",
        "nodes": [node.as_input() for node in addresses(cluster)],
        "pins": pins or [],
        "trust_on_first_use": not pins,
        "root_ca_sha256s": observation.root_ca_sha256s,
        "root_ca_bundle_pem": observation.root_ca_bundle_pem,
    }


def certificate_props(cluster: ApplianceCluster, sans: list[str]) -> dict[str, Any]:
    observation = observe_cluster("ws1", addresses(cluster))
    return {
        "__provider": "serialized",
        "cluster": "ws1",
        "nodes": [node.as_input() for node in addresses(cluster)],
        "common_name": SERVICE_FQDN,
        "sans": sans,
        "admin_password_key": "applianceAdminPassword",
        "trusted_root_ca_bundle_pem": observation.root_ca_bundle_pem,
        "served_sha256s": observation.served_sha256s(),
        "nodes_needing_certificate": observation.nodes_needing_certificate(SERVICE_FQDN, sans),
    }


PASSTHROUGH_SANS = [SERVICE_FQDN, *NODE_FQDNS]


# --- observation and the trust decision ----------------------------------------------------


def test_every_node_serves_a_certificate_that_verifies_against_the_published_root(appliance):
    observation = observe_cluster("ws1", addresses(appliance))
    assert observation.root_ca_sha256s == [appliance.root_ca_sha256]
    assert sorted(observation.served_sha256s()) == sorted(NODE_FQDNS)
    decide_trust(observation, [appliance.root_ca_sha256], trust_on_first_use=False)


def test_pin_mismatch_names_each_node_and_fingerprint(appliance):
    observation = observe_cluster("ws1", addresses(appliance))
    wrong_pin = "AA:" * 31 + "AA"
    with pytest.raises(TrustDecisionError) as refused:
        decide_trust(observation, [wrong_pin], trust_on_first_use=False)
    message = str(refused.value)
    assert message.startswith("cluster ws1: root CA pin mismatch: node ws1-a.corp.test serves ")
    for fqdn in NODE_FQDNS:
        assert f"node {fqdn} serves {appliance.root_ca_sha256}" in message
    assert f"the stack pins {wrong_pin}" in message
    assert "Nothing was changed on any load balancer" in message


def test_nodes_that_disagree_are_refused_without_pins_and_overlap_with_both_pinned(appliance):
    appliance.node("ws1-c.corp.test").serve_foreign_root()
    foreign = appliance.node("ws1-c.corp.test").root_ca_sha256
    observation = observe_cluster("ws1", addresses(appliance))
    assert observation.root_ca_sha256s == [appliance.root_ca_sha256, foreign]
    with pytest.raises(TrustDecisionError) as refused:
        decide_trust(observation, [], trust_on_first_use=True)
    assert f"ws1-c.corp.test serves {foreign}" in str(refused.value)
    assert f"ws1-a.corp.test serves {appliance.root_ca_sha256}" in str(refused.value)
    assert "pin both fingerprints with root_ca_sha256" in str(refused.value)
    decide_trust(observation, [appliance.root_ca_sha256, foreign], trust_on_first_use=False)


def test_neither_pin_nor_trust_on_first_use_is_refused(appliance):
    observation = observe_cluster("ws1", addresses(appliance))
    with pytest.raises(TrustDecisionError, match="no root CA pin and trust_on_first_use"):
        decide_trust(observation, [], trust_on_first_use=False)


def test_html_instead_of_the_root_ca_is_a_clear_error(appliance):
    appliance.node("ws1-b.corp.test").serve_html_instead_of_pem = True
    with pytest.raises(pki.HtmlInsteadOfPemError, match="node ws1-b.corp.test"):
        observe_cluster("ws1", addresses(appliance))


def test_expired_served_certificate_is_observed_as_needing_a_new_one(appliance):
    appliance.node("ws1-a.corp.test").serve_expired_certificate()
    served = observe_node(addresses(appliance)[0])
    assert served.problem is not None
    assert served.problem.startswith("the certificate served by node ws1-a.corp.test")
    assert "expired" in served.problem
    observation = observe_cluster("ws1", addresses(appliance))
    assert observation.nodes_needing_certificate(SERVICE_FQDN, PASSTHROUGH_SANS) == [
        "ws1-a.corp.test"
    ]


def test_certificate_for_the_wrong_names_fails_verification_for_the_node(appliance):
    appliance.node("ws1-a.corp.test").serve_certificate_for(["other.corp.test"])
    served = observe_node(addresses(appliance)[0])
    assert served.problem is not None
    assert "do not cover ws1-a.corp.test" in served.problem


def test_behind_a_terminating_load_balancer_nodes_are_verified_for_the_service_name(appliance):
    for node in appliance.nodes:
        node.regenerate(SERVICE_FQDN, [SERVICE_FQDN])
    by_node_name = observe_node(addresses(appliance)[0])
    assert by_node_name.problem is not None
    as_service = NodeAddress(**{**addresses(appliance)[0].as_input(), "tls_name": SERVICE_FQDN})
    assert observe_node(as_service).problem is None


def test_unreachable_node_is_reported_with_its_address_after_bounded_retries(appliance):
    node = addresses(appliance)[0]
    appliance.node(node.fqdn).fail_next(10, "reset", listener="service")
    with pytest.raises(ApplianceError) as failed:
        observe_node(node)
    assert str(failed.value).startswith(
        f"node {node.fqdn} ({node.address}:{node.service_port}): could not read the root CA "
        "after 3 attempts: connection failed"
    )


# --- ApplianceRootCA -----------------------------------------------------------------------


def test_root_ca_create_records_what_was_planned_and_observed(appliance):
    props = root_ca_props(appliance)
    provider = configured(ApplianceRootCAProvider())
    assert provider.check({}, props).failures == []
    created = provider.create(props)
    assert created.id == "ws1"
    assert created.outs["root_ca_sha256s"] == [appliance.root_ca_sha256]
    assert created.outs["node_root_ca_sha256s"] == {f: appliance.root_ca_sha256 for f in NODE_FQDNS}
    assert "__provider" not in created.outs
    assert appliance.writes() == 0 and appliance.logins() == 0


def test_root_ca_refuses_to_apply_when_the_appliance_changed_after_preview(appliance):
    props = root_ca_props(appliance)
    appliance.regeneration_makes_new_root = True
    for node in appliance.nodes:
        node.regenerate(SERVICE_FQDN, PASSTHROUGH_SANS)
    with pytest.raises(RuntimeError) as refused:
        configured(ApplianceRootCAProvider()).create(props)
    assert "the appliance root CA changed after this run was planned" in str(refused.value)
    assert "run `pulumi preview` again" in str(refused.value)


def test_root_ca_read_reports_a_regenerated_root(appliance):
    provider = configured(ApplianceRootCAProvider())
    outs = provider.create(root_ca_props(appliance)).outs
    appliance.regeneration_makes_new_root = True
    for node in appliance.nodes:
        node.regenerate(SERVICE_FQDN, PASSTHROUGH_SANS)
    new_root = appliance.node(NODE_FQDNS[0]).root_ca_sha256
    assert new_root != appliance.root_ca_sha256
    read = provider.read("ws1", outs)
    assert read.id == "ws1"
    assert read.outs["root_ca_sha256s"] == [new_root]


def test_root_ca_check_reports_a_malformed_pin():
    props = {
        "cluster": "ws1",
        "nodes": [{"fqdn": "a.b"}],
        "pins": ["not-a-fingerprint"],
        "root_ca_bundle_pem": "x",
    }
    failures = ApplianceRootCAProvider().check({}, props).failures
    assert [f.property for f in failures] == ["pins", "root_ca_bundle_pem"]


def test_root_ca_diff_ignores_provider_code_and_updates_on_new_fingerprints(appliance):
    provider = ApplianceRootCAProvider()
    props = root_ca_props(appliance)
    outs = {**props, "root_cas": [], "__provider": "old code"}
    assert provider.diff("ws1", outs, props).changes is False
    changed = dict(props, root_ca_sha256s=["AB:" * 31 + "AB"])
    result = provider.diff("ws1", outs, changed)
    assert result.changes is True and result.replaces == []


# --- ApplianceCertificate ------------------------------------------------------------------


def test_certificate_create_with_right_names_makes_no_login_and_no_write(appliance):
    appliance.reset_counters()
    outs = (
        configured(ApplianceCertificateProvider())
        .create(certificate_props(appliance, PASSTHROUGH_SANS))
        .outs
    )
    assert appliance.logins() == 0 and appliance.writes() == 0
    assert outs["nodes_needing_certificate"] == []
    assert sorted(outs["served"]) == sorted(NODE_FQDNS)


def test_san_change_regenerates_every_node_and_the_new_names_are_served(appliance):
    sans = [*PASSTHROUGH_SANS, "ws1-dr.corp.test"]
    props = certificate_props(appliance, sans)
    assert props["nodes_needing_certificate"] == list(NODE_FQDNS)
    provider = configured(ApplianceCertificateProvider())
    olds = {**certificate_props(appliance, PASSTHROUGH_SANS), "nodes_needing_certificate": []}
    assert provider.diff("ws1", olds, props).changes is True
    appliance.reset_counters()
    outs = provider.update("ws1", olds, props).outs
    assert appliance.writes() == 3 and appliance.logins() == 3
    for fqdn in NODE_FQDNS:
        assert "ws1-dr.corp.test" in outs["served"][fqdn]["sans"]
        assert "ws1-dr.corp.test" in appliance.node(fqdn).subject_alt_names
    assert outs["nodes_needing_certificate"] == []


def test_wrong_admin_password_is_a_clear_error_without_the_password(appliance):
    props = certificate_props(appliance, [*PASSTHROUGH_SANS, "ws1-dr.corp.test"])
    provider = configured(ApplianceCertificateProvider(), password="not-the-password")
    with pytest.raises(ApplianceError) as failed:
        provider.create(props)
    message = str(failed.value)
    assert message.startswith("node ws1-a.corp.test: the configurator rejected the admin password")
    assert "not-the-password" not in message and failed.value.__cause__ is None
    assert appliance.writes() == 0


def test_missing_password_says_where_to_set_it(appliance):
    props = certificate_props(appliance, [*PASSTHROUGH_SANS, "ws1-dr.corp.test"])
    with pytest.raises(RuntimeError) as failed:
        configured(ApplianceCertificateProvider(), password=None).create(props)
    assert "pulumi config set --secret applianceAdminPassword" in str(failed.value)
    assert "WS1_ACCESS_ADMIN_PASSWORD" in str(failed.value)


def test_password_from_the_environment_when_the_config_has_none(appliance, monkeypatch):
    monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", ADMIN_PASSWORD)
    props = certificate_props(appliance, [*PASSTHROUGH_SANS, "ws1-dr.corp.test"])
    configured(ApplianceCertificateProvider(), password=None).create(props)
    assert appliance.writes() == 3


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_configurator_fault_fails_cleanly_and_a_rerun_converges(appliance, fault):
    sans = [*PASSTHROUGH_SANS, "ws1-dr.corp.test"]
    node_b = appliance.node("ws1-b.corp.test")
    node_b.hang_seconds = 3
    node_b.fail_next(1 if fault == "hang" else 5, fault, listener="configurator")
    provider = configured(ApplianceCertificateProvider())
    with pytest.raises(ApplianceError) as failed:
        provider.create(certificate_props(appliance, sans))
    assert str(failed.value).startswith("node ws1-b.corp.test")
    assert ADMIN_PASSWORD not in str(failed.value)
    # The first node was fixed before the fault; the rerun plans only the others.
    rerun = certificate_props(appliance, sans)
    assert rerun["nodes_needing_certificate"] == ["ws1-b.corp.test", "ws1-c.corp.test"]
    node_b.clear_faults()
    appliance.reset_counters()
    outs = provider.create(rerun).outs
    assert appliance.writes() == 2
    assert all("ws1-dr.corp.test" in outs["served"][f]["sans"] for f in NODE_FQDNS)


def test_refresh_sees_a_certificate_regenerated_out_of_band_and_diff_repairs_it(appliance):
    provider = configured(ApplianceCertificateProvider())
    outs = provider.create(certificate_props(appliance, PASSTHROUGH_SANS)).outs
    appliance.node("ws1-c.corp.test").regenerate(SERVICE_FQDN, [SERVICE_FQDN])  # SANs lost
    read = provider.read("ws1", outs).outs
    assert read["nodes_needing_certificate"] == ["ws1-c.corp.test"]
    assert read["served_sha256s"]["ws1-c.corp.test"] != outs["served_sha256s"]["ws1-c.corp.test"]
    planned = certificate_props(appliance, PASSTHROUGH_SANS)
    assert provider.diff("ws1", read, planned).changes is True
    appliance.reset_counters()
    repaired = provider.update("ws1", read, planned).outs
    assert appliance.writes() == 1
    assert repaired["nodes_needing_certificate"] == []


def test_certificate_check_requires_the_common_name_as_a_san():
    failures = (
        ApplianceCertificateProvider()
        .check({}, {"common_name": SERVICE_FQDN, "sans": list(NODE_FQDNS), "nodes": [{}]})
        .failures
    )
    assert [(f.property, f.reason) for f in failures] == [
        (
            "sans",
            f"the service FQDN {SERVICE_FQDN} must also be a Subject Alternative Name "
            "(some browsers require it).",
        )
    ]


# --- ApplianceLoadBalancerRootCA ------------------------------------------------------------


def lb_root_props(cluster: ApplianceCluster, pem: str) -> dict[str, Any]:
    certificate = pki.load_certificate(pem, "test")
    return {
        "__provider": "serialized",
        "cluster": "ws1",
        "nodes": [node.as_input() for node in addresses(cluster)],
        "certificate_pem": pem,
        "sha256": pki.sha256_fingerprint(certificate),
        "admin_password_key": "applianceAdminPassword",
        "trusted_root_ca_bundle_pem": cluster.root_ca_pem,
    }


def test_load_balancer_root_ca_is_installed_once_and_read_back(appliance, lb_ca_pem):
    provider = configured(ApplianceLoadBalancerRootCAProvider())
    props = lb_root_props(appliance, lb_ca_pem)
    assert provider.check({}, props).failures == []
    outs = provider.create(props).outs
    assert appliance.writes() == 3
    assert set(outs["installed_sha256s"].values()) == {props["sha256"]}
    assert all(node.lb_root_ca_pem.strip() == lb_ca_pem.strip() for node in appliance.nodes)
    appliance.reset_counters()
    provider.update("ws1", outs, props)
    assert appliance.writes() == 0
    assert provider.diff("ws1", outs, props).changes is False


def test_load_balancer_root_ca_drift_is_read_and_repaired(appliance, lb_ca_pem, other_ca_pem):
    provider = configured(ApplianceLoadBalancerRootCAProvider())
    props = lb_root_props(appliance, lb_ca_pem)
    outs = provider.create(props).outs
    drifted = lb_root_props(appliance, other_ca_pem)
    provider.create(drifted)  # someone pasted another CA on every node
    read = provider.read("ws1", outs).outs
    assert set(read["installed_sha256s"].values()) == {drifted["sha256"]}
    assert provider.diff("ws1", read, props).changes is True


def test_load_balancer_root_ca_check_refuses_a_leaf_certificate(appliance):
    leaf = appliance.nodes[0].leaf_pem
    failures = ApplianceLoadBalancerRootCAProvider().check({}, {"certificate_pem": leaf}).failures
    assert failures[0].property == "certificate_pem"
    assert "not a CA" in failures[0].reason or "CA" in failures[0].reason


# --- serialization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider_class",
    [ApplianceRootCAProvider, ApplianceCertificateProvider, ApplianceLoadBalancerRootCAProvider],
)
def test_serialized_provider_is_small_and_holds_no_credentials(provider_class):
    serialized = serialize_provider(provider_class())
    assert len(serialized) < 1024
    assert ADMIN_PASSWORD not in str(
        dill.loads(__import__("base64").b64decode(serialized)).__dict__
    )


def test_load_balancer_root_ca_refresh_completes_after_the_root_ca_was_regenerated(
    appliance, lb_ca_pem
):
    provider = configured(ApplianceLoadBalancerRootCAProvider())
    outs = provider.create(lb_root_props(appliance, lb_ca_pem)).outs
    appliance.regeneration_makes_new_root = True
    for node in appliance.nodes:
        node.regenerate(SERVICE_FQDN, PASSTHROUGH_SANS)
    read = provider.read("ws1", outs).outs  # the stored root CA no longer verifies the nodes
    assert set(read["installed_sha256s"].values()) == {"unverifiable"}
    assert provider.diff("ws1", read, lb_root_props(appliance, lb_ca_pem)).changes is True
