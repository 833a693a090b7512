"""The trust audit against emulated clusters and an emulated BIG-IP, through its command line.

Each test builds the world, writes stack files, runs `python -m components.audit`'s main, and
reads the verdict of every row from its JSON and its exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from components.audit.__main__ import main
from emulators.appliance import ApplianceCluster
from emulators.bigip import EmulatedBigip
from tests.audit import world
from tests.conftest import ADMIN_PASSWORD


@pytest.fixture
def bigip(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedBigip]:
    monkeypatch.setenv("BIGIP_PASSWORD", world.BIGIP_PASSWORD)
    with EmulatedBigip(world.BIGIP_USER, world.BIGIP_PASSWORD) as device:
        yield device


def audit(capsys: pytest.CaptureFixture[str], *stack_files: Path) -> tuple[int, dict[str, Any]]:
    code = main([*map(str, stack_files), "--json"])
    captured = capsys.readouterr()
    assert captured.out.startswith("{"), captured.err
    return code, json.loads(captured.out)


def verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(row["node"], row["load_balancer"]): row["verdict"] for row in report["rows"]}


def healthy_stack(
    tmp_path: Path, appliance: ApplianceCluster, bigip: EmulatedBigip, **cluster: Any
) -> Path:
    bundle = tmp_path / "roots.pem"
    bundle.write_text(appliance.root_ca_pem)
    world.bigip_trusting(bigip, appliance.service_fqdn, appliance.root_ca_pem)
    return world.write_stack(
        tmp_path / "Pulumi.test.yaml",
        [world.cluster_config("ws1", appliance, pins=[appliance.root_ca_sha256], **cluster)],
        [
            world.pem_file_lb("proxy", "ws1", bundle),
            world.f5_lb("bigip", "ws1", bigip, tmp_path / "bigip-ca.pem"),
        ],
    )


def test_a_healthy_cluster_is_ok_for_every_load_balancer_and_node(
    tmp_path, appliance, bigip, capsys
):
    stack = healthy_stack(tmp_path, appliance, bigip)
    bigip.reset_counters()
    code, report = audit(capsys, stack)
    assert code == 0, report
    rows = verdicts(report)
    assert len(rows) == 6, rows
    assert set(rows.values()) == {"OK"}, report["rows"]
    # Read-only: the BIG-IP saw GETs (and the token login/logout), never a change.
    assert bigip.writes() == 0, bigip.requests()
    assert report["verdict"] == "OK"


def test_a_node_with_a_certificate_from_another_ca_fails_and_the_others_pass(
    tmp_path, appliance, bigip, capsys
):
    stack = healthy_stack(tmp_path, appliance, bigip)
    odd = appliance.nodes[1]
    odd.serve_foreign_root()
    code, report = audit(capsys, stack)
    assert code == 2
    for (node, lb), verdict in verdicts(report).items():
        assert verdict == ("FAIL" if node == odd.fqdn else "OK"), (node, lb, report["rows"])
    reasons = " ".join(
        r for row in report["rows"] if row["node"] == odd.fqdn for r in row["reasons"]
    )
    assert "does not verify" in reasons and "does not pin" in reasons, reasons


def test_a_bundle_file_missing_the_new_root_during_a_rotation_fails_the_moved_node(
    tmp_path, appliance, capsys
):
    new_root = appliance.prepare_next_root()
    appliance.regeneration_makes_new_root = True
    moved = appliance.nodes[0]
    moved.regenerate(appliance.service_fqdn, [appliance.service_fqdn, *appliance_fqdns(appliance)])
    bundle = tmp_path / "roots.pem"
    bundle.write_text(appliance.root_ca_pem)  # the old root only: the rotation's step 1 missed
    pins = [appliance.root_ca_sha256, moved.root_ca_sha256]
    cluster = world.cluster_config("ws1", appliance, pins=pins, incoming_root_ca=new_root)
    stack = world.write_stack(
        tmp_path / "Pulumi.rotation.yaml",
        [cluster],
        [world.pem_file_lb("proxy", "ws1", bundle)],
    )
    code, report = audit(capsys, stack)
    assert code == 2
    rows = verdicts(report)
    assert rows[(moved.fqdn, "proxy")] == "FAIL", report["rows"]
    assert [v for (node, _), v in rows.items() if node != moved.fqdn] == ["OK", "OK"], rows
    # With old + new in the bundle (what `up` writes in step 1), every node passes.
    bundle.write_text(appliance.root_ca_pem + new_root)
    code, report = audit(capsys, stack)
    assert code == 0, report["rows"]


def appliance_fqdns(appliance: ApplianceCluster) -> list[str]:
    return [node.fqdn for node in appliance.nodes]


def test_an_f5_profile_without_the_name_check_fails(tmp_path, appliance, bigip, capsys):
    stack = healthy_stack(tmp_path, appliance, bigip)
    profile = f"/Common/ws1-{appliance.service_fqdn}-serverssl"
    bigip.server_ssl_profiles[profile]["authenticateName"] = "none"
    code, report = audit(capsys, stack)
    assert code == 2
    rows = verdicts(report)
    assert {v for (_, lb), v in rows.items() if lb == "bigip"} == {"FAIL"}, rows
    assert {v for (_, lb), v in rows.items() if lb == "proxy"} == {"OK"}, rows
    reasons = [
        r for row in report["rows"] if row["load_balancer"] == "bigip" for r in row["reasons"]
    ]
    assert any("checks no name (authenticateName none)" in reason for reason in reasons), reasons


def test_a_node_certificate_expiring_within_the_horizon_warns(tmp_path, appliance, bigip, capsys):
    stack = healthy_stack(tmp_path, appliance, bigip)
    soon = appliance.nodes[2]
    soon.serve_certificate_expiring_in(10)
    code, report = audit(capsys, stack)
    assert code == 1
    for (node, _), verdict in verdicts(report).items():
        assert verdict == ("WARN" if node == soon.fqdn else "OK"), report["rows"]
    reasons = [r for row in report["rows"] if row["node"] == soon.fqdn for r in row["reasons"]]
    assert any("expires in 10 days" in reason for reason in reasons), reasons


def test_an_unreachable_node_cannot_be_checked_and_the_rest_are(tmp_path, appliance, capsys):
    bundle = tmp_path / "roots.pem"
    bundle.write_text(appliance.root_ca_pem)
    gone = {
        "fqdn": "ws1-gone.corp.test",
        "address": "127.0.0.1",
        "service_port": world.closed_port(),
    }
    # Behind a terminating load balancer the certificates need not name the other nodes, so
    # the new node's absence from their SANs is no failure of theirs.
    cluster = world.cluster_config(
        "ws1", appliance, extra_nodes=[gone], ssl_termination="load_balancer"
    )
    stack = world.write_stack(
        tmp_path / "Pulumi.test.yaml", [cluster], [world.pem_file_lb("proxy", "ws1", bundle)]
    )
    code, report = audit(capsys, stack)
    assert code == 3, report["rows"]
    rows = verdicts(report)
    assert rows.pop(("ws1-gone.corp.test", "proxy")) == "UNKNOWN"
    assert set(rows.values()) == {"OK"}, report["rows"]
    gone_row = next(row for row in report["rows"] if row["node"] == "ws1-gone.corp.test")
    assert "could not read the root CA" in gone_row["reasons"][0], gone_row


def test_two_stacks_at_once_observe_each_node_once(tmp_path, appliance, capsys):
    second = ApplianceCluster(
        ["ws1-x.other.test", "ws1-y.other.test"], "ws1.other.test", ADMIN_PASSWORD
    )
    with second:
        stacks = []
        for name, cluster in (("one", appliance), ("two", second)):
            lbs = []
            for index in (1, 2, 3):
                bundle = tmp_path / f"{name}-{index}.pem"
                bundle.write_text(cluster.root_ca_pem)
                lbs.append(world.pem_file_lb(f"{name}-proxy-{index}", name, bundle))
            stacks.append(
                world.write_stack(
                    tmp_path / f"Pulumi.{name}.yaml",
                    [world.cluster_config(name, cluster, pins=[cluster.root_ca_sha256])],
                    lbs,
                )
            )
        for cluster in (appliance, second):
            cluster.reset_counters()
        code, report = audit(capsys, *stacks)
        assert code == 0, report["rows"]
        assert {row["stack"] for row in report["rows"]} == {"one", "two"}
        assert len(report["rows"]) == 3 * 3 + 3 * 2
        for node in [*appliance.nodes, *second.nodes]:
            # Three load balancers check it; it was observed once: one root CA read, one
            # handshake.
            assert node.count(path="/horizon_workspace_rootca.pem") == 1, node.counters
            assert sum(node.sni_names.values()) == 1, node.sni_names


def test_a_bad_stack_file_is_a_clear_could_not_check(tmp_path, capsys):
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  ws1-access-lb-trust:clusters: [\n")
    assert main([str(broken)]) == 3
    assert "is not valid YAML at line" in capsys.readouterr().err
    wrong = world.write_stack(tmp_path / "Pulumi.wrong.yaml", [{"name": "ws1"}], [])
    assert main([str(wrong)]) == 3
    err = capsys.readouterr().err
    assert "ws1-access-lb-trust:clusters[0].service_fqdn: is required" in err, err
    assert "Traceback" not in err


def test_an_unreachable_bigip_is_a_row_that_could_not_be_checked(
    tmp_path, appliance, bigip, capsys
):
    stack = healthy_stack(tmp_path, appliance, bigip)
    bigip.stop()
    code, report = audit(capsys, stack)
    assert code == 3, report["rows"]
    rows = verdicts(report)
    assert {v for (_, lb), v in rows.items() if lb == "bigip"} == {"UNKNOWN"}
    assert {v for (_, lb), v in rows.items() if lb == "proxy"} == {"OK"}
    reasons = [
        r for row in report["rows"] if row["load_balancer"] == "bigip" for r in row["reasons"]
    ]
    assert all("did not answer" in reason for reason in reasons), reasons


def test_a_wrong_bigip_password_is_said_and_never_shown(
    tmp_path, appliance, bigip, capsys, monkeypatch
):
    stack = healthy_stack(tmp_path, appliance, bigip)
    monkeypatch.setenv("BIGIP_PASSWORD", "not-the-Pa55word")
    code = main([str(stack)])
    captured = capsys.readouterr()
    assert code == 3
    assert "refused with HTTP 401" in " ".join(captured.out.split()), captured.out
    assert "not-the-Pa55word" not in captured.out + captured.err


def test_a_bigip_ca_bundle_cannot_be_checked_over_rest(tmp_path, appliance, bigip, capsys):
    stack = healthy_stack(tmp_path, appliance, bigip)
    ca_path = f"/Common/ws1-{appliance.service_fqdn}-rootca"
    other = ApplianceCluster(["ws1-z.corp.test"], "ws1.z.test", ADMIN_PASSWORD)
    bigip.add_certificate(ca_path, appliance.root_ca_pem + other.root_ca_pem)
    code, report = audit(capsys, stack)
    assert code == 3
    bigip_rows = [row for row in report["rows"] if row["load_balancer"] == "bigip"]
    assert {row["verdict"] for row in bigip_rows} == {"UNKNOWN"}
    assert "is a bundle of several certificates" in bigip_rows[0]["reasons"][0]


def test_a_bigip_that_accepts_expired_certificates_fails(tmp_path, appliance, bigip, capsys):
    stack = healthy_stack(tmp_path, appliance, bigip)
    profile = f"/Common/ws1-{appliance.service_fqdn}-serverssl"
    bigip.server_ssl_profiles[profile]["expireCertResponseControl"] = "ignore"
    code, report = audit(capsys, stack)
    assert code == 2
    reasons = [
        r for row in report["rows"] if row["load_balancer"] == "bigip" for r in row["reasons"]
    ]
    assert any("accepts expired certificates" in reason for reason in reasons), reasons


def test_with_appliance_it_checks_that_every_node_trusts_the_load_balancer_root_ca(
    tmp_path, appliance, capsys, monkeypatch, lb_ca_pem, other_ca_pem
):
    bundle = tmp_path / "roots.pem"
    bundle.write_text(appliance.root_ca_pem)
    cluster = world.cluster_config(
        "ws1",
        appliance,
        pins=[appliance.root_ca_sha256],
        ssl_termination="load_balancer",
        load_balancer_root_ca=lb_ca_pem,
    )
    stack = world.write_stack(
        tmp_path / "Pulumi.test.yaml", [cluster], [world.pem_file_lb("proxy", "ws1", bundle)]
    )
    first, second, third = appliance.nodes
    first._set_lb_root_ca(lb_ca_pem)
    second._set_lb_root_ca(other_ca_pem + lb_ca_pem)
    third._set_lb_root_ca(other_ca_pem)
    # Without --appliance nothing logs in, and nothing about it is said.
    code, report = audit(capsys, stack)
    assert code == 0 and appliance.logins() == 0, report["rows"]
    monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", ADMIN_PASSWORD)
    code = main([str(stack), "--json", "--appliance"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert code == 2
    assert [row["verdict"] for row in rows] == ["OK", "OK", "FAIL"], rows
    assert "does not trust the load balancer root CA" in rows[2]["reasons"][0]
    # Read-only: one login per node, never a write.
    assert appliance.logins() == 3 and appliance.writes() == 0


def test_a_bundle_path_that_is_a_symbolic_link_is_not_followed(tmp_path, appliance, capsys):
    real = tmp_path / "real.pem"
    real.write_text(appliance.root_ca_pem)
    link = tmp_path / "roots.pem"
    link.symlink_to(real)
    stack = world.write_stack(
        tmp_path / "Pulumi.test.yaml",
        [world.cluster_config("ws1", appliance, pins=[appliance.root_ca_sha256])],
        [world.pem_file_lb("proxy", "ws1", link)],
    )
    code, report = audit(capsys, stack)
    assert code == 3
    assert all("is a symbolic link" in row["reasons"][0] for row in report["rows"]), report


def test_stack_files_are_read_with_the_programs_own_rules(tmp_path, appliance):
    from components.audit.stack_files import StackFileError, read_stack_file

    bundle = tmp_path / "roots.pem"
    cluster = world.cluster_config("ws1", appliance)
    lbs = [world.pem_file_lb("proxy", "ws1", bundle)]
    # A secret is never decrypted, only known to be set; other namespaces are not ours.
    stack = world.write_stack(
        tmp_path / "Pulumi.prod.yaml",
        [cluster],
        lbs,
        applianceAdminPassword={"secure": "v1:c2VjcmV0"},
    )
    text = stack.read_text() + "  pulumi:tags:\n    team: identity\n"
    stack.write_text(text)
    read = read_stack_file(stack)
    assert read.name == "prod"
    assert read.settings.clusters[0].admin_password_in_config
    # A password in plain text is refused exactly as the program refuses it.
    plain = world.write_stack(
        tmp_path / "Pulumi.plain.yaml", [cluster], lbs, applianceAdminPassword="hunter2-Pa55"
    )
    with pytest.raises(StackFileError) as refused:
        read_stack_file(plain)
    assert "holds the appliance admin password in plain text" in str(refused.value)
    assert "hunter2-Pa55" not in str(refused.value)


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_a_stack_whose_route_files_live_elsewhere_is_still_audited(tmp_path, stack):
    """The audit writes no certificate, so a route's files (the issuing CA, the Lifecycle
    management CA) are not needed: a monitoring host need not have them."""
    from components.audit.stack_files import read_stack_file

    shipped = Path(__file__).resolve().parents[2] / "stacks" / f"Pulumi.{stack}.yaml"
    copy = tmp_path / f"Pulumi.{stack}.yaml"  # no Pulumi.yaml, no certs/ or .state/ beside it
    text = shipped.read_text()
    # The shipped prod example names a BIG-IP management CA file only an operator has.
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "bigip-management-ca.pem").write_text(
        trustme.CA().cert_pem.bytes().decode()
    )
    copy.write_text(text)
    read = read_stack_file(copy)
    assert read.settings.clusters, read
    assert all(cluster.certificate_method == "none" for cluster in read.settings.clusters)
