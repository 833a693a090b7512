"""Regeneration never takes the cluster off trust: the lifecycle scenarios where the appliance
makes a new root CA (pinned, trust on first use, a fault on the second node), an expired node
certificate fixed by the program, and TLS key logging refused for a run that logs in."""

from __future__ import annotations

import pytest

from emulators.appliance import ApplianceCluster
from tests.harness import Stack
from tests.program import scenarios
from tests.program.scenarios import Step, node_fqdn
from tests.program.stacks import PROGRAM, pointed_at, stack_config, with_configurator_route


def run(name: str, tmp_path) -> tuple[scenarios.World, dict[str, Step]]:
    scenario, options = scenarios.SCENARIOS[name]
    with scenarios.world(tmp_path, **options) as world:
        steps = scenario(world)
        return world, {step.name: step for step in steps}


def worst_off_trust(steps: dict[str, Step]) -> int:
    return max(len(step.off_trust or ()) for step in steps.values())


@pytest.mark.parametrize("name", ["new-root-on-regeneration", "new-root-on-regeneration-tofu"])
def test_new_root_on_regeneration_stops_at_the_canary_and_converges_after_announcing(
    name, tmp_path
):
    world, steps = run(name, tmp_path)
    stopped = steps["up"]
    # Only the canary (first node of the stack) was touched; it is the one named.
    assert stopped.off_trust == [node_fqdn(1)]
    assert stopped.writes == 1, "regenerated more than the canary"
    assert stopped.load_balancer_writes == 0
    # After following the instruction: every node moved, every node verifies everywhere.
    assert steps["announced: up"].off_trust == []
    new_root = world.emulator.node(node_fqdn(1)).root_ca_sha256
    assert {node.root_ca_sha256 for node in world.emulator.nodes} == {new_root}
    assert steps["settle: up"].result.error is None
    assert world.trusted("proxy-a") == world.trusted("proxy-b") == [new_root]
    assert worst_off_trust(steps) == 1


def test_a_fault_on_the_second_node_leaves_it_trusted_and_a_rerun_converges(tmp_path):
    world, steps = run("new-root-on-regeneration-fault", tmp_path)
    failed = steps["announced, node 2 failing: up"]
    assert failed.off_trust == []  # node 2 still serves from the old, still trusted, root CA
    assert node_fqdn(2) in (failed.result.error or "")
    assert steps["fault cleared: up"].off_trust == []
    assert worst_off_trust(steps) == 1


def test_an_expired_node_certificate_is_replaced(tmp_path):
    world, steps = run("expired-node-certificate", tmp_path)
    up = steps["up"]
    # Two logins: the read-only probe while planning, then the write.
    assert up.writes == 1 and up.logins == 2
    assert up.off_trust == []


@pytest.fixture
def stack_needing_a_login(tmp_path, monkeypatch):
    nodes = ("ws1-node1.local.test", "ws1-node2.local.test", "ws1-node3.local.test")
    with ApplianceCluster(nodes, "ws1.local.test", "key-log-password") as emulator:
        (tmp_path / ".state" / "local-proxy").mkdir(parents=True)
        monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", "key-log-password")
        config = pointed_at(stack_config("local"), {"local": emulator})
        with_configurator_route(config)
        config["clusters"][0]["extra_sans"] = ["ws1-dr.local.test"]  # every node needs one
        yield emulator, Stack(PROGRAM, stack="local", config=config, cwd=str(tmp_path))


def test_tls_key_logging_refuses_a_run_that_would_log_in(
    stack_needing_a_login, monkeypatch, tmp_path
):
    emulator, stack = stack_needing_a_login
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    result = stack.up()
    assert result.error and "SSLKEYLOGFILE" in result.error, result.error
    assert "WS1_ACCESS_ALLOW_SSLKEYLOGFILE" in result.error
    assert result.resources == {} and emulator.logins() == 0


def test_tls_key_logging_explicitly_allowed_logs_in(stack_needing_a_login, monkeypatch, tmp_path):
    emulator, stack = stack_needing_a_login
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    monkeypatch.setenv("WS1_ACCESS_ALLOW_SSLKEYLOGFILE", "true")
    result = stack.up()
    assert result.error is None, result.error
    assert emulator.logins() == 6  # per node: the planning probe, then the write


def test_an_expired_certificate_is_said_to_have_expired(tmp_path):
    with scenarios.world(tmp_path) as world:
        world.cluster_config["manage_certificate"] = False
        assert world.stack.up().error is None
        world.emulator.node(node_fqdn(2)).serve_expired_certificate()
        result = world.stack.preview()
    expired = [w for w in result.warnings if node_fqdn(2) in w and "expired" in w]
    assert any(" ago, on " in w for w in expired), result.warnings
    assert not any("expires in -" in w for w in result.warnings), result.warnings


def test_a_root_ca_that_changed_between_planning_and_applying_is_said_to_have_changed(tmp_path):
    from components.appliance.root_ca import ApplianceRootCAProvider

    with scenarios.world(tmp_path) as world:
        up = world.stack.up()
        assert up.error is None
        root = next(r for r in up.resources.values() if r.type.endswith("ApplianceRootCA"))
        planned = dict(root.outputs)  # what this run planned: the pinned, old root CA
        scenarios.regenerate_every_node_from_a_new_root_ca(world)  # meanwhile, on the nodes
        new_root = world.emulator.node(node_fqdn(1)).root_ca_sha256
        with pytest.raises(RuntimeError) as error:
            ApplianceRootCAProvider().update("local", planned, planned)
    message = str(error.value)
    assert "changed after this run was planned" in message, message
    assert new_root in message and "Nothing was trusted" in message
