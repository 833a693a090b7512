"""Truthful previews, drift, zero-downtime rotation, cluster changes, pinning and expiry.

Each test runs one scenario of tests/program/scenarios.py (which also checks, at every step,
that every node verifies against every load balancer) and asserts the plan and fingerprints.
"""

from __future__ import annotations

from components import pki
from tests.harness import UNKNOWN
from tests.program import scenarios
from tests.program.scenarios import BUNDLE_TYPE, CERTIFICATE_TYPE, Step, node_fqdn


def run(name: str, tmp_path) -> tuple[scenarios.World, dict[str, Step]]:
    scenario, options = scenarios.SCENARIOS[name]
    with scenarios.world(tmp_path, **options) as world:
        steps = scenario(world)
        return world, {step.name: step for step in steps}


def planned_trust(step: Step, load_balancer: str) -> list[str]:
    return step.result.outputs["local"]["load_balancers"][load_balancer]["trusted_sha256s"]


def steps_of(step: Step, type_: str) -> list[str]:
    """The changes (not "same") planned or made for resources of this type."""
    changed = step.result.changed()
    return [changed[r.urn] for r in step.result.of_type(type_) if r.urn in changed]


def test_no_change_up_writes_nothing_and_reads_once_per_node(tmp_path):
    _, steps = run("no-change", tmp_path)
    second = steps["second up"]
    assert second.result.changed() == {}
    assert (second.writes, second.logins) == (0, 0)
    assert set(second.per_node.values()) == {1}, second.per_node


def test_regenerated_root_ca_shows_in_preview_without_refresh(tmp_path):
    world, steps = run("root-ca-regenerated", tmp_path)
    new_root = world.emulator.node(node_fqdn(1)).root_ca_sha256
    preview = steps["preview"]
    for load_balancer in ("proxy-a", "proxy-b"):
        planned = planned_trust(preview, load_balancer)
        assert planned is not UNKNOWN and planned == [new_root], load_balancer
    assert sorted(steps_of(preview, BUNDLE_TYPE)) == ["update", "update"]
    assert preview.writes == 0 and preview.load_balancer_writes == 0
    assert [world.trusted(lb) for lb in ("proxy-a", "proxy-b")] == [[new_root], [new_root]]


def test_rotation_trusts_old_and_new_until_every_node_moved_then_drops_the_old(tmp_path):
    world, steps = run("rotation", tmp_path)
    new_root = world.emulator.node(node_fqdn(1)).root_ca_sha256
    old_root = world.emulator.root_ca_sha256
    announce = steps["announce: preview"]
    # Same-second roots tie on age; the order is stable, but not old-then-new here.
    both = sorted([old_root, new_root])
    assert sorted(planned_trust(announce, "proxy-a")) == both
    assert sorted(steps_of(announce, BUNDLE_TYPE)) == ["update", "update"]
    # While nodes move one by one, the trust stays old + new and nothing is rewritten.
    for index in (1, 2):
        step = steps[f"after {node_fqdn(index)}: up"]
        assert planned_trust(step, "proxy-b") == planned_trust(announce, "proxy-b")
        assert sorted(planned_trust(step, "proxy-b")) == both
        assert step.load_balancer_writes == 0 and step.writes == 0
    last = steps[f"after {node_fqdn(3)}: up"]
    assert planned_trust(last, "proxy-a") == [new_root]
    assert last.load_balancer_writes == 2
    finish = steps["finish: preview"]
    assert steps_of(finish, BUNDLE_TYPE) == []  # only the pins change: no trust change
    assert world.trusted("proxy-a") == world.trusted("proxy-b") == [new_root]


def test_node_added_to_passthrough_cluster_gets_its_name_into_every_certificate(tmp_path):
    world, steps = run("node-added-and-removed", tmp_path)
    add = steps["add: preview"]
    certificate = add.result.of_type(CERTIFICATE_TYPE)[0]
    assert add.result.steps[certificate.urn] == "update"
    assert certificate.inputs["nodes_needing_certificate"] == [node_fqdn(i) for i in (1, 2, 3, 4)]
    assert steps["add: up"].writes == 4
    for node in world.emulator.nodes:
        assert node_fqdn(4) in node.subject_alt_names, node.fqdn
    # Removing it changes the declared SANs; the certificates still cover them: no write.
    remove = steps["remove: preview"]
    assert remove.result.of_type(CERTIFICATE_TYPE)[0].inputs["nodes_needing_certificate"] == []
    assert steps["remove: up"].writes == 0


def test_unreachable_load_balancer_is_named_and_a_rerun_converges(tmp_path):
    world, steps = run("load-balancers-change", tmp_path)
    failed = steps["add unreachable: up"].result
    assert failed.error is not None
    assert "proxy-c" in failed.error and str(world.bundle_path("proxy-c")) in failed.error
    fixed = steps["add fixed: up"]
    assert steps_of(fixed, BUNDLE_TYPE).count("create") == 1
    removed = steps["remove: up"]
    assert "delete" in removed.result.steps.values()
    assert not world.bundle_path("proxy-b").exists()
    assert world.bundle_path("proxy-c").exists()


def test_out_of_band_changes_show_in_refresh_and_up_repairs_them(tmp_path):
    world, steps = run("out-of-band-changes", tmp_path)
    refresh = steps["refresh"].result
    certificate = refresh.of_type(CERTIFICATE_TYPE)[0]
    assert refresh.steps[certificate.urn] == "refresh-changed"
    deleted = [urn for urn, step in refresh.steps.items() if step == "refresh-deleted"]
    assert len(deleted) == 1 and deleted[0].endswith("proxy-a-trust-bundle"), deleted
    up = steps["up"]
    assert up.writes == 1  # only the node whose certificate lost its names
    assert steps_of(up, BUNDLE_TYPE).count("create") == 1
    assert world.trusted("proxy-a") == [world.emulator.root_ca_sha256]


def test_pin_mismatch_fails_preview_and_up_and_changes_no_load_balancer(tmp_path):
    world, steps = run("pin-mismatch", tmp_path)
    for name in ("preview", "up"):
        error = steps[name].result.error
        assert error is not None and error.startswith("cluster local: root CA pin mismatch"), name
        assert steps[name].writes == 0 and steps[name].load_balancer_writes == 0
    assert world.trusted("proxy-a") == [world.emulator.root_ca_sha256]


def test_expiry_inside_the_window_is_a_warning_naming_cluster_certificate_and_days(tmp_path):
    world, steps = run("expiry", tmp_path)
    warnings = [w for w in steps["preview"].result.warnings if "expires in" in w]
    root = pki.summarize(pki.load_certificate(world.emulator.root_ca_pem, "root"))
    assert any(
        f"cluster local: root CA {root.subject} ({root.sha256}) expires in 19 days" in w
        for w in warnings
    ), warnings
    assert any(
        f"cluster local: certificate served by node {node_fqdn(3)}" in w
        and "expires in 10 days" in w
        for w in warnings
    ), warnings
