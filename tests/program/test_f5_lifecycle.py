"""An F5 entry through the lifecycle harness: what each change does to the plan and the device."""

from __future__ import annotations

import pytest

from components.settings import Node
from tests.program.f5_world import PROFILE, SERVICE, f5_world, no_change_requests

NAME_CHECK = "bigip-a-ws1-authenticate-name"


@pytest.fixture
def world(tmp_path):
    with f5_world(tmp_path) as world:
        yield world


def steps_by_name(result) -> dict[str, str]:
    return {urn.rsplit("::", 1)[1]: step for urn, step in result.steps.items()}


def test_first_up_sets_the_name_check_on_the_device(world):
    result = world.stack.up()
    assert result.error is None, result.error
    assert world.bigip.server_ssl_profiles[PROFILE]["authenticateName"] == SERVICE
    assert result.by_name(NAME_CHECK).outputs["found_authenticate_name"] == SERVICE


def test_a_second_up_changes_nothing_and_sends_nothing(world):
    assert world.stack.up().error is None
    world.bigip.reset_counters()
    result = world.stack.up()
    assert result.error is None, result.error
    assert result.changed() == {}
    assert sum(world.bigip.requests().values()) == 0, world.bigip.requests()


def test_a_new_node_address_is_a_new_node_and_member_and_the_old_ones_go_after(world):
    assert world.stack.up().error is None
    world.change_trust(
        nodes=(Node("ws1-a.corp.example", "10.0.0.31"), Node("ws1-b.corp.example", "10.0.0.22"))
    )
    preview = world.stack.preview()
    assert preview.error is None, preview.error
    result = world.stack.up()
    assert result.error is None, result.error
    steps = steps_by_name(result)
    changed = {name: step for name, step in steps.items() if step != "same"}
    assert changed == {
        "bigip-a-ws1-node-10.0.0.31": "create",
        "bigip-a-ws1-member-10.0.0.31-443": "create",
        "bigip-a-ws1-member-10.0.0.21-443": "delete",
        "bigip-a-ws1-node-10.0.0.21": "delete",
    }, changed
    order = list(steps)
    # The new member exists before the old one goes; the old member goes before its node.
    assert order.index("bigip-a-ws1-member-10.0.0.31-443") < order.index(
        "bigip-a-ws1-member-10.0.0.21-443"
    )
    assert order.index("bigip-a-ws1-member-10.0.0.21-443") < order.index(
        "bigip-a-ws1-node-10.0.0.21"
    )
    node = result.by_name("bigip-a-ws1-node-10.0.0.31")
    assert (node.inputs["name"], node.inputs["address"]) == (
        "/Common/ws1-node-10.0.0.31",
        "10.0.0.31",
    )


def test_a_renamed_node_fqdn_changes_only_its_description(world):
    assert world.stack.up().error is None
    world.change_trust(
        nodes=(Node("ws1-x.corp.example", "10.0.0.21"), Node("ws1-b.corp.example", "10.0.0.22"))
    )
    result = world.stack.up()
    assert result.error is None, result.error
    changed = {name: step for name, step in steps_by_name(result).items() if step != "same"}
    assert changed == {"bigip-a-ws1-node-10.0.0.21": "update"}, changed


def test_a_new_service_fqdn_replaces_the_persistence_profile_instead_of_renaming_it(world):
    assert world.stack.up().error is None
    world.change_trust(service_fqdn="login.corp.example")
    result = world.stack.preview()
    assert result.error is None, result.error
    steps = steps_by_name(result)
    assert steps["bigip-a-ws1-source-address"] == "replace", steps
    assert steps["bigip-a-ws1-virtual-server"] == "replace", steps
    assert steps[NAME_CHECK] == "update", steps  # the same profile checks another name


def test_moving_the_ca_object_to_another_partition_replaces_it(world):
    assert world.stack.up().error is None
    world.change(partition="ws1", server_ssl_profile="ws1-access.corp.example-serverssl")
    world.bigip.add_server_ssl_profile("/ws1/ws1-access.corp.example-serverssl")
    result = world.stack.up()
    assert result.error is None, result.error
    steps = steps_by_name(result)
    assert steps["bigip-a-ws1-appliance-root-ca"] == "replace", steps
    assert steps[NAME_CHECK] == "replace", steps
    assert (
        world.bigip.server_ssl_profiles["/ws1/ws1-access.corp.example-serverssl"][
            "authenticateName"
        ]
        == SERVICE
    )


def test_refresh_finds_the_name_check_removed_on_the_device_and_up_puts_it_back(world):
    assert world.stack.up().error is None
    world.bigip.server_ssl_profiles[PROFILE]["authenticateName"] = "none"
    refreshed = world.stack.refresh()
    assert refreshed.error is None, refreshed.error
    assert refreshed.by_name(NAME_CHECK).outputs["found_authenticate_name"] == ""
    result = world.stack.up()
    assert result.error is None, result.error
    assert steps_by_name(result)[NAME_CHECK] == "update"
    assert world.bigip.server_ssl_profiles[PROFILE]["authenticateName"] == SERVICE


def test_a_device_that_refuses_the_name_check_fails_up_before_the_virtual_server(world):
    world.bigip.refuse_authenticate_name = True
    result = world.stack.up()
    assert result.error is not None and "refused with HTTP 400" in result.error, result.error
    assert "bigip-a-ws1-virtual-server" not in {r.name for r in result.resources.values()}


# --- device groups -------------------------------------------------------------------------


@pytest.mark.parametrize("auto_sync", [True, False])
def test_a_device_group_is_synced_after_changes_only_without_auto_sync(tmp_path, auto_sync):
    with f5_world(tmp_path, device_group="ws1-ha") as world:
        world.bigip.add_device_group("ws1-ha", auto_sync=auto_sync)
        assert world.stack.up().error is None
        assert world.bigip.syncs == ([] if auto_sync else ["/Common/ws1-ha"])
        world.bigip.reset_counters()
        assert world.stack.up().error is None
        assert sum(world.bigip.requests().values()) == 0, "no change: nothing read or synced"
        world.change_trust(
            nodes=(Node("ws1-a.corp.example", "10.0.0.31"), Node("ws1-b.corp.example", "10.0.0.22"))
        )
        result = world.stack.up()
        assert result.error is None, result.error
        # Once after the creates and updates, once more after the deletions (the replaced
        # check is deleted last).
        assert world.bigip.syncs == ([] if auto_sync else ["/Common/ws1-ha"] * 3)


def test_a_standby_unit_stops_preview_naming_the_active_unit(tmp_path):
    with f5_world(tmp_path, device_group="ws1-ha") as world:
        world.bigip.add_device_group("ws1-ha", auto_sync=False)
        world.bigip.failover_state = "standby"
        world.bigip.peers = [
            {"name": "bigip-b", "managementIp": "10.1.1.2", "failoverState": "active"}
        ]
        result = world.stack.preview()
        assert result.error is not None
        assert "is STANDBY, not the active unit of device group ws1-ha" in result.error
        assert "(10.1.1.2)" in result.error, result.error
        up = world.stack.up()
        assert up.error is not None
        assert world.bigip.writes() == 0 and world.bigip.syncs == []
        assert world.bigip.server_ssl_profiles[PROFILE]["authenticateName"] == "none"


def test_a_missing_device_group_stops_preview(tmp_path):
    with f5_world(tmp_path, device_group="ws1-ha") as world:
        result = world.stack.preview()
        assert result.error is not None
        assert "device group ws1-ha does not exist" in result.error, result.error
        assert world.bigip.writes() == 0


def test_no_change_bench_figure_is_zero_requests(tmp_path):
    assert no_change_requests(tmp_path) == 0


def _creates_and_deletes(result) -> dict[str, str]:
    return {
        urn.rsplit("::", 1)[1]: step
        for urn, step in result.steps.items()
        if step in ("create", "delete")
    }


@pytest.mark.parametrize("device_group", [None, "ws1-ha"])
def test_a_renamed_big_ip_entry_plans_no_create_or_delete(tmp_path, device_group):
    """Without previous_name, 17 creates and 17 deletes of the same device objects (the
    delete of the old profile, last, would remove what the new entry uses)."""
    with f5_world(tmp_path, device_group=device_group) as world:
        if device_group:
            world.bigip.add_device_group(device_group, auto_sync=True)
        assert world.stack.up().error is None
        world.change(name="bigip-east", previous_name="bigip-a")
        world.bigip.reset_counters()

        planned = world.stack.preview()
        assert planned.error is None, planned.error
        assert _creates_and_deletes(planned) == {}
        applied = world.stack.up()
        assert applied.error is None, applied.error
        assert _creates_and_deletes(applied) == {}
        assert set(applied.changed().values()) <= {"update"}, applied.changed()
        assert world.bigip.writes() == 0, world.bigip.requests()
        assert "bigip-east-ws1-server-ssl" in steps_by_name(applied)


def test_a_renamed_cluster_plans_no_create_or_delete_on_the_big_ip(world):
    assert world.stack.up().error is None
    world.change(cluster="east")
    world.change_trust(cluster="east", previous_cluster="ws1")

    planned = world.stack.preview()
    assert planned.error is None, planned.error
    assert _creates_and_deletes(planned) == {}
    assert planned.changed() == {}  # device names come from the service FQDN, not the label


def test_without_previous_name_a_renamed_entry_collides_with_itself(world):
    """What previous_name prevents: the same device objects created and deleted."""
    assert world.stack.up().error is None
    world.change(name="bigip-east")
    planned = world.stack.preview()
    steps = _creates_and_deletes(planned)
    assert "bigip-east-ws1-server-ssl" in steps and "bigip-a-ws1-server-ssl" in steps, steps
