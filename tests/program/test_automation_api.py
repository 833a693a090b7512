"""`pulumi up`, `preview` and `destroy` on the local stack through the real CLI (Automation API).

Runs only where the Pulumi CLI is on PATH; the build machines of this project cannot install
it, so there it is skipped, and says why. It works on a copy of the project (so the stack
file's encryption salt and the state never touch the checkout), uses the test virtualenv,
and starts the emulator on the local stack's fixed ports.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from emulators.appliance import ApplianceCluster
from tests.program.stacks import PROJECT_DIR

pytestmark = pytest.mark.skipif(
    shutil.which("pulumi") is None,
    reason="the Pulumi CLI is not on PATH (it cannot be installed on this build machine); "
    "this test runs `pulumi preview/up/destroy` on the local stack wherever it is installed",
)

PASSWORD = "automation-api-emulator-password"
NODES = ("ws1-node1.local.test", "ws1-node2.local.test", "ws1-node3.local.test")


def test_local_stack_under_the_real_cli(tmp_path):
    from pulumi import automation as auto

    project = tmp_path / "project"
    shutil.copytree(
        PROJECT_DIR,
        project,
        ignore=shutil.ignore_patterns(".git", ".venv", "venv", ".state", "__pycache__", "*_cache"),
    )
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(Path(sys.prefix))
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    (project / ".state" / "local-proxy").mkdir(parents=True)
    (tmp_path / "backend").mkdir()

    emulator = ApplianceCluster(NODES, "ws1.local.test", PASSWORD)
    for node, (service, configurator) in zip(
        emulator.nodes, ((19441, 19451), (19442, 19452), (19443, 19453)), strict=True
    ):
        node.requested_ports.update(service=service, configurator=configurator)
    with emulator:
        stack = auto.create_or_select_stack(
            stack_name="local",
            work_dir=str(project),
            opts=auto.LocalWorkspaceOptions(
                env_vars={
                    "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
                    "PULUMI_CONFIG_PASSPHRASE": "automation-api-test",
                    "WS1_ACCESS_ADMIN_PASSWORD": PASSWORD,
                }
            ),
        )
        preview = stack.preview(diff=True)
        assert preview.change_summary.get("create", 0) >= 4
        up = stack.up()
        trust = up.outputs["local"].value
        assert trust["root_ca_sha256s"] == [emulator.root_ca_sha256]
        bundle = project / ".state" / "local-proxy" / "ws1-appliance-roots.pem"
        assert emulator.root_ca_pem.strip() in bundle.read_text()
        again = stack.up()
        assert set(again.summary.resource_changes or {}) <= {"same"}
        assert emulator.writes() == 0
        stack.destroy()
        assert not bundle.exists()
