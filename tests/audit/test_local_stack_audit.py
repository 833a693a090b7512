"""The audit of the local stack, before and after the program's `up` (through the lifecycle
harness, which runs the real providers: it writes the real bundle file), as `make audit`
shows it on a fresh machine and after `make up`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.audit.__main__ import main
from emulators.appliance import ApplianceCluster
from tests.harness import Stack
from tests.program.stacks import PROGRAM, pointed_at, stack_config

PASSWORD = "local-emulator-password"
NODES = ("ws1-node1.local.test", "ws1-node2.local.test", "ws1-node3.local.test")
SERVICE = "ws1.local.test"


@pytest.fixture
def emulator():
    with ApplianceCluster(NODES, SERVICE, PASSWORD) as cluster:
        yield cluster


def audit(stack_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict]]:
    code = main([str(stack_file), "--json"])
    return code, json.loads(capsys.readouterr().out)["rows"]


def test_the_local_stack_fails_until_up_has_written_the_bundle_then_passes(
    emulator, tmp_path, monkeypatch, capsys
):
    (tmp_path / ".state" / "local-proxy").mkdir(parents=True)
    monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", PASSWORD)
    config = pointed_at(stack_config("local"), {"local": emulator})
    # The audit is read-only whatever the route; this emulator serves no SSH, so the
    # program's `up` below writes the trust only (its nodes already carry the right names).
    config["clusters"][0]["certificate_method"] = "none"
    del config["clusters"][0]["ssh"]
    for node in config["clusters"][0]["nodes"]:
        del node["ssh_port"]
    # The stack file as the audit reads it; its relative bundle path resolves in tmp_path,
    # where the harness runs the program.
    stack_file = tmp_path / "Pulumi.local.yaml"
    stack_file.write_text(
        yaml.safe_dump({"config": {f"ws1-access-lb-trust:{k}": v for k, v in config.items()}})
    )

    code, rows = audit(stack_file, capsys)
    assert code == 2
    assert all(row["verdict"] == "FAIL" for row in rows) and len(rows) == 3
    assert all("trusts nothing yet" in row["reasons"][0] for row in rows), rows

    stack = Stack(PROGRAM, stack="local", config=config, cwd=str(tmp_path))
    assert stack.up().error is None
    code, rows = audit(stack_file, capsys)
    assert code == 0, rows
    assert [row["verdict"] for row in rows] == ["OK"] * 3

    # Someone regenerates node 2 from a new root CA: the audit sees it before any `up`.
    emulator.regeneration_makes_new_root = True
    emulator.node(NODES[1]).regenerate(SERVICE, [SERVICE, *NODES])
    code, rows = audit(stack_file, capsys)
    assert code == 2
    assert [row["verdict"] for row in rows] == ["OK", "FAIL", "OK"], rows
