"""What the engine does that a simpler model would miss, for this program's own resources.

Every test here runs the program through the lifecycle harness, whose dynamic provider calls go
through the SDK's real provider host (tests/harness/host.py), against the emulated cluster.
"""

from __future__ import annotations

import datetime
from unittest import mock

from components import pki
from emulators.appliance import ApplianceCluster
from tests.program import scenarios
from tests.program.scenarios import CERTIFICATE_TYPE, SERVICE, expect_ok, node_fqdn


def test_refresh_right_after_a_regenerating_up_reports_no_change(tmp_path):
    """RefreshStep diffs the refreshed outputs against the STORED inputs (step.go); the stored
    inputs carry the observation made before the regeneration, which must not read as drift,
    or `pulumi refresh --expect-no-changes` fails after every certificate change."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        w.emulator.node(node_fqdn(2)).regenerate(SERVICE, [SERVICE])  # loses the node SANs
        regenerating = expect_ok(w.run("up", w.stack.up))
        certificate = regenerating.result.of_type(CERTIFICATE_TYPE)[0]
        assert regenerating.result.steps[certificate.urn] == "update"
        assert regenerating.writes == 1

        refreshed = expect_ok(w.run("refresh", w.stack.refresh))
        assert refreshed.result.changed() == {}, refreshed.result.changed()

        again = expect_ok(w.run("up after refresh", w.stack.up))
        assert again.result.changed() == {}
        assert (again.writes, again.logins) == (0, 0)


def test_a_certificate_reverted_to_the_one_replaced_is_fixed_again(tmp_path):
    """The other side of the same rule: when the program's fresh observation and the stored
    outputs disagree about what a node serves, the live answer settles it, so a node put
    back on the very certificate the last up replaced is regenerated again."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        node = w.emulator.node(node_fqdn(2))
        node.regenerate(SERVICE, [SERVICE])
        bad = node.leaf_pem
        restored = (node._root, node._leaf)  # the emulator's own state: as a backup restore would
        expect_ok(w.run("up", w.stack.up))
        assert node.leaf_pem != bad
        node._install(*restored)

        fixed = expect_ok(w.run("up", w.stack.up))
        certificate = fixed.result.of_type(CERTIFICATE_TYPE)[0]
        assert fixed.result.steps[certificate.urn] == "update"
        assert fixed.writes == 1
        w.check_every_node_verifies()


def test_outputs_of_a_preview_hold_a_day_later(tmp_path):
    """`pulumi up --plan plan.json` compares every registered and stack output with the saved
    plan (reference/pulumi.md, "Engine semantics"): nothing the program registers may depend
    on the clock, or a plan reviewed yesterday fails half-way through today's apply."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        today = expect_ok(w.run("preview today", w.stack.preview)).result

        real_utc = pki._utc

        def tomorrow(now: datetime.datetime | None) -> datetime.datetime:
            return real_utc(now) + datetime.timedelta(days=1)

        with mock.patch.object(pki, "_utc", tomorrow):
            later = expect_ok(w.run("preview a day later", w.stack.preview)).result

        assert later.outputs == today.outputs
        for urn, resource in today.resources.items():
            assert later.resources[urn].outputs == resource.outputs, urn
            assert later.resources[urn].inputs == resource.inputs, urn
        # The clock still speaks, where it belongs: in the warnings, not the plan.
        assert "root_ca_days_to_expiry" not in str(today.outputs)


def test_a_refusal_in_the_second_cluster_registers_nothing(tmp_path, monkeypatch):
    """An exception after the first registration does not take it back (the SDK waits for
    outstanding registrations), so every load balancer is asked before anything is declared."""
    from components.trust_stores import pem_file

    second = ApplianceCluster(["ws1-b1.local.test"], "ws1-b.local.test", scenarios.PASSWORD)
    with scenarios.world(tmp_path) as w, second:
        (tmp_path / "lb" / "proxy-b2").mkdir(parents=True)
        w.stack.config["clusters"].append(
            {
                "name": "second",
                "service_fqdn": "ws1-b.local.test",
                "ssl_termination": "passthrough",
                "certificate_method": "configurator",
                "root_ca_sha256": [second.root_ca_sha256],
                "nodes": [
                    {
                        "fqdn": node.fqdn,
                        "address": node.address,
                        "service_port": node.port,
                        "configurator_port": node.configurator_port,
                    }
                    for node in second.nodes
                ],
            }
        )
        w.stack.config["load_balancers"].append(
            {
                "name": "proxy-b2",
                "kind": "pem_file",
                "cluster": "second",
                "path": str(tmp_path / "lb" / "proxy-b2" / "trust.pem"),
            }
        )

        def refuse_the_second(lb, cluster):
            return [f"load balancer {lb.name}: refused on purpose"] if lb.name == "proxy-b2" else []

        monkeypatch.setattr(pem_file, "check", refuse_the_second)
        refused = w.run("up", w.stack.up)

        assert refused.result.error == (
            "cluster second: load balancer proxy-b2: refused on purpose"
        ), refused.result.error
        assert refused.result.resources == {}
        assert refused.result.steps == {}
        assert w.stack.state == {}
        assert not w.bundle_path("proxy-a").exists()


def scenarios_root_pem() -> str:
    """A CA certificate nobody in the scenario uses."""
    return ApplianceCluster(["stranger.local.test"], "stranger.local.test", "x").root_ca_pem


def _creates_and_deletes(result) -> dict[str, str]:
    return {urn: step for urn, step in result.steps.items() if step in ("create", "delete")}


def test_a_renamed_load_balancer_entry_keeps_its_bundle_file(tmp_path):
    """Renamed without `previous_name`, the new entry's create and the old entry's delete aim at
    the same file, and the delete, which runs last, removes the trust bundle the proxy reads."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        entry = w.stack.config["load_balancers"][0]
        entry.update(name="proxy-east", previous_name="proxy-a")

        planned = expect_ok(w.run("preview", w.stack.preview)).result
        assert _creates_and_deletes(planned) == {}, _creates_and_deletes(planned)
        before = w.bundle_path("proxy-a").read_text()
        renamed = expect_ok(w.run("up", w.stack.up)).result
        assert _creates_and_deletes(renamed) == {}
        # The label is an input of the bundle (its messages name it): an update, same content.
        assert set(renamed.changed().values()) == {"update"}, renamed.changed()
        assert w.bundle_path("proxy-a").read_text() == before
        assert [r.name for r in renamed.of_type("PemTrustBundle")] == [
            "proxy-east-trust-bundle",
            "proxy-b-trust-bundle",
        ]
        assert w.bundle_path("proxy-a").exists()  # the file keeps its path: nothing to move

        # Once done, previous_name may stay or go: nothing refers to the old URN any more.
        del entry["previous_name"]
        assert expect_ok(w.run("up", w.stack.up)).result.changed() == {}


def test_without_previous_name_a_rename_is_a_create_and_delete_of_one_file(tmp_path):
    """Why previous_name exists: this is the colliding plan it prevents."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        w.stack.config["load_balancers"][0]["name"] = "proxy-east"
        planned = expect_ok(w.run("preview", w.stack.preview)).result
        steps = sorted(_creates_and_deletes(planned).values())
        assert steps == ["create", "delete"], planned.steps


def test_a_renamed_cluster_keeps_every_resource(tmp_path):
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        w.stack.config["clusters"][0].update(name="east", previous_name="local")
        for entry in w.stack.config["load_balancers"]:
            entry["cluster"] = "east"

        planned = expect_ok(w.run("preview", w.stack.preview)).result
        assert _creates_and_deletes(planned) == {}, _creates_and_deletes(planned)
        renamed = expect_ok(w.run("up", w.stack.up))
        assert _creates_and_deletes(renamed.result) == {}
        assert (renamed.writes, renamed.logins) == (0, 0)
        assert sorted(renamed.result.outputs) == ["east"]
        w.check_every_node_verifies()


def test_an_edited_bundle_file_shows_in_preview_without_refresh_and_says_what_changes(tmp_path):
    """The Python host returns no detailed diff, so `preview --diff` would show a bare
    `~ update`; the warning names what the file holds and what it will hold."""
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        stranger = pki.to_pem(pki.load_certificate(scenarios_root_pem(), "a stranger"))
        w.bundle_path("proxy-a").write_text(stranger)

        planned = expect_ok(w.run("preview", w.stack.preview)).result
        bundle = planned.by_name("proxy-a-trust-bundle")
        assert planned.steps[bundle.urn] == "update"
        assert planned.steps[planned.by_name("proxy-b-trust-bundle").urn] == "same"
        stranger_sha256 = pki.sha256_fingerprint(pki.load_certificate(stranger, "stranger"))
        [warning] = [line for line in planned.warnings if "trust bundle" in line]
        assert warning == (
            f"{bundle.urn}: load balancer proxy-a: the trust bundle {w.bundle_path('proxy-a')} "
            f"holds {stranger_sha256}; this stack makes it trust {w.emulator.root_ca_sha256}."
        )

        expect_ok(w.run("up", w.stack.up))
        w.check_every_node_verifies()
        assert expect_ok(w.run("refresh", w.stack.refresh)).result.changed() == {}
        again = expect_ok(w.run("preview", w.stack.preview)).result
        assert again.changed() == {}
        assert not [line for line in again.warnings if "trust bundle" in line]


def test_a_node_missing_a_san_is_named_in_preview_with_what_it_serves(tmp_path):
    with scenarios.world(tmp_path) as w:
        expect_ok(w.run("first up", w.stack.up))
        node = w.emulator.node(node_fqdn(2))
        node.regenerate(SERVICE, [SERVICE])
        served = pki.sha256_fingerprint(pki.load_certificate(node.leaf_pem, "node 2"))

        planned = expect_ok(w.run("preview", w.stack.preview)).result
        [warning] = [line for line in planned.warnings if "gets a new certificate" in line]
        assert f"node {node_fqdn(2)} gets a new certificate in this run: it serves {served}" in (
            warning
        )
        assert f"SANs: {SERVICE})" in warning
        names = ", ".join([SERVICE, node_fqdn(1), node_fqdn(2), node_fqdn(3)])
        assert warning.endswith(f"the new one: CN {SERVICE}, SANs {names}."), warning
