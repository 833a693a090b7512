"""A stack loads a load balancer vendor's SDK only when it declares that kind of load balancer,
and an HTTP library (requests, urllib3) only when something it declares talks HTTP (issue "Fast
on slow links": together they are a good part of every preview's start-up).

Runs in a fresh interpreter: the test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.program.stacks import PROJECT_DIR

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from pathlib import Path

    from emulators.appliance import ApplianceCluster
    from tests.harness import Stack
    from tests.program.stacks import PROGRAM

    os.environ["WS1_ACCESS_ADMIN_PASSWORD"] = "imports-emulator-password"
    fqdns = ["ws1-a.corp.test", "ws1-b.corp.test"]
    seen = {}
    with (
        ApplianceCluster(fqdns, "ws1.corp.test", "imports-emulator-password") as emulator,
        tempfile.TemporaryDirectory() as directory,
    ):
        cluster = {
            "name": "ws1",
            "service_fqdn": "ws1.corp.test",
            "ssl_termination": "load_balancer",
            "root_ca_sha256": emulator.root_ca_sha256,
            "nodes": [
                {"fqdn": n.fqdn, "address": n.address, "service_port": n.port,
                 "configurator_port": n.configurator_port}
                for n in emulator.nodes
            ],
        }
        pem_file = {"name": "proxy", "kind": "pem_file", "cluster": "ws1",
                    "path": str(Path(directory) / "trust.pem")}
        ca_path = Path(directory) / "management-ca.pem"
        ca_path.write_text(emulator.root_ca_pem)
        big_ip = {"name": "bigip", "kind": "f5", "cluster": "ws1", "address": "bigip.corp.test",
                  "username": "automation", "management_ca_path": str(ca_path)}
        runs = {
            "pem_file": {"clusters": [cluster], "load_balancers": [pem_file]},
            "f5": {"clusters": [cluster], "load_balancers": [pem_file, big_ip],
                   "bigipPassword": "imports-bigip-password"},
        }
        for name, config in runs.items():
            stack = Stack(PROGRAM, stack="imports", config=config, cwd=directory,
                          secret_keys={"ws1-access-lb-trust:bigipPassword"})
            error = stack.preview().error
            seen[name] = {"error": error, "f5_sdk": "pulumi_f5bigip" in sys.modules,
                          "http_library": "requests" in sys.modules or "urllib3" in sys.modules}
    print(json.dumps(seen))
    """
)


def test_a_stack_without_f5_never_imports_the_f5_sdk_nor_an_http_library_and_one_with_f5_does():
    finished = subprocess.run(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    seen = json.loads(finished.stdout.strip().splitlines()[-1])
    assert seen["pem_file"] == {"error": None, "f5_sdk": False, "http_library": False}, seen
    # The control: the same check sees the SDK once a stack declares an F5 entry.
    assert seen["f5"] == {"error": None, "f5_sdk": True, "http_library": True}, seen
