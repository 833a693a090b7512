"""Benchmark figures, printed one per line as `name: value unit` (run with `make bench`).

* the serialized size of each dynamic provider (the engine stores it in state with every
  resource; target under 1024 bytes);
* the emulated appliance's request counts for each lifecycle scenario of
  tests/program/scenarios.py, leaving out each scenario's setup steps (target for
  no-change: 0 writes and at most 1 read per node);
* the emulated BIG-IP's requests for a no-change `up` of an F5 entry (f5-no-change);
* for the scenarios where regeneration makes a new root CA, the most nodes that some load
  balancer refused after any step (target: at most 1);
* the bad-input catalogue of tests/reliability/cases.py: how many cases got a clear error
  naming the place, how many escaped as tracebacks, how many changed something first;
* how many provider calls the lifecycle harness made through the SDK's real provider host.
* the trust audit (components.audit): its wall time for 10 load balancers x 10 nodes
  against one single-node observation (target: ratio under 2), and the requests each node
  received, however many load balancers check it (target: 1 root CA read + 1 handshake);
* times, as ratios measured side by side in this one run, so that they do not depend on the
  machine: observing nodes in round trips (RTT = the latency the emulator injects into every
  request; target at most 1.5), a program run against the bare `import pulumi` (target
  under 2 for 100 pem_file load balancers; printed beside the SDK's own floor for the same
  resources, and beside the same preview under the test harness; see tests/preview_once.py),
  and a first up that regenerates every node.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pulumi.dynamic.dynamic import serialize_provider

from components import pki
from components.appliance.certificate import ApplianceCertificateProvider
from components.appliance.client import NodeAddress
from components.appliance.lb_root import ApplianceLoadBalancerRootCAProvider
from components.appliance.observation import cluster_observation, observe_nodes
from components.appliance.root_ca import ApplianceRootCAProvider
from components.appliance.stack_ca import StackIssuingCAProvider
from components.trust_stores.f5_device_group import (
    DeviceGroupCheckProvider,
    DeviceGroupSyncProvider,
)
from components.trust_stores.f5_name_check import ServerSslNameCheckProvider
from components.trust_stores.pem_file import PemTrustBundleProvider
from emulators.appliance import ApplianceCluster
from tests.harness.host import inside_host
from tests.program import f5_world, scenarios
from tests.program.stacks import PROJECT_DIR
from tests.reliability import cases as bad_inputs

RTT = 0.1  # seconds the emulator waits before answering each request
_NODES_PER_EMULATOR = 3  # see emulated_clusters
KEY_TYPE = "ecp256"
PASSWORD = "bench-emulator-password"

PROVIDERS = {
    "ApplianceRootCA": ApplianceRootCAProvider,
    "ApplianceCertificate": ApplianceCertificateProvider,
    "ApplianceLoadBalancerRootCA": ApplianceLoadBalancerRootCAProvider,
    "StackIssuingCA": StackIssuingCAProvider,
    "PemTrustBundle": PemTrustBundleProvider,
    "ServerSslNameCheck": ServerSslNameCheckProvider,
    "DeviceGroupCheck": DeviceGroupCheckProvider,
    "DeviceGroupSync": DeviceGroupSyncProvider,
}


_METHODS = ("check", "diff", "create", "update", "read", "delete")


@contextlib.contextmanager
def counting_provider_calls() -> Iterator[collections.Counter[str]]:
    """Count every call of a provider method, and whether it came through a provider host."""
    counts: collections.Counter[str] = collections.Counter()
    originals = []
    for provider in PROVIDERS.values():
        for method in _METHODS:
            if method not in vars(provider):
                continue
            original = vars(provider)[method]

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                counts["all"] += 1
                counts["through the host"] += inside_host()
                return _original(*args, **kwargs)

            originals.append((provider, method, original))
            setattr(provider, method, counted)
    try:
        yield counts
    finally:
        for provider, method, original in originals:
            setattr(provider, method, original)


def main() -> int:
    for name, provider in PROVIDERS.items():
        print(f"serialized provider bytes {name}: {len(serialize_provider(provider()))} bytes")
    with counting_provider_calls() as calls:
        worst_off_trust = print_scenario_counts()
        # A second `up` of one F5 entry (virtual server, device group without auto-sync) with
        # nothing changed: requests the emulated BIG-IP received (target: only reads, at most
        # one per REST resource).
        with tempfile.TemporaryDirectory() as directory:
            requests = f5_world.no_change_requests(Path(directory))
    print(f"scenario f5-no-change: bigip requests {requests}")
    print_route_counts()
    # Over its pinned, trust-on-first-use and fault-on-the-second-node variants.
    print(f"scenario new-root-on-regeneration: nodes off trust at worst {worst_off_trust}")
    with tempfile.TemporaryDirectory() as directory:
        outcomes = bad_inputs.run_all(Path(directory))
    print(
        f"bad inputs: {len(outcomes)} cases, {sum(o.clear for o in outcomes)} clear, "
        f"{sum(o.traceback for o in outcomes)} tracebacks, "
        f"{sum(o.half_applied for o in outcomes)} half-applied"
    )
    print(
        "harness: provider calls through the SDK provider host: "
        f"{calls['through the host']} of {calls['all']}"
    )
    print_observation_times()
    print_program_run_times()
    print_first_up_with_regeneration()
    print_audit_figures()
    return 0


def print_route_counts() -> None:
    """Per certificate route: a first up where every node needs a certificate, then an up
    with nothing to do. Writes: configurator generate POSTs / install-script runs; logins:
    configurator logins (the planning probe included) / SSH logins / Lifecycle requests."""
    from tests.program.lifecycle_world import lifecycle_world
    from tests.program.ssh_world import ssh_world

    with tempfile.TemporaryDirectory() as directory, scenarios.world(Path(directory)) as world:
        world.cluster_config["extra_sans"] = ["ws1-dr.local.test"]
        for label in ("first-up-configurator", "no-change-configurator"):
            step = world.run(label, world.stack.up)
            assert step.result.error is None, step.result.error
            print(f"scenario {label}: writes {step.writes}, logins {step.logins}")
    with tempfile.TemporaryDirectory() as directory, lifecycle_world(Path(directory)) as lcm:
        for label in ("first-up-lifecycle_manager", "settle", "no-change-lifecycle_manager"):
            result = lcm.up()
            assert result.error is None, result.error
            if label != "settle":  # the second up only drops the old root CA
                # Logins: requests carrying credentials (basic auth has no session).
                print(f"scenario {label}: writes {lcm.lcm.writes()}, logins {lcm.lcm.logins()}")
        # One node loses its certificate: the one the others serve is in the locker, reused.
        node = lcm.emulator.nodes[1]
        node._install(node._root, lcm.issuing_ca.issue(node.fqdn, [node.fqdn]))
        result = lcm.up()
        assert result.error is None, result.error
        print(
            "scenario reuse-lifecycle_manager (a node missing a SAN): "
            f"imports {lcm.lcm.counters['import']}, writes {lcm.lcm.writes()}, "
            f"logins {lcm.lcm.logins()}"
        )
    with tempfile.TemporaryDirectory() as directory, ssh_world(Path(directory)) as ssh:
        for label in ("first-up-ssh", "settle-ssh", "no-change-ssh"):
            result = ssh.up()
            assert result.error is None, result.error
            if label != "settle-ssh":  # the second up only drops the old root CA
                print(
                    f"scenario {label}: writes {ssh.total('installs')}, "
                    f"logins {ssh.total('logins')}"
                )
    # The same with the stack's own CA (ssh.issuing_ca: generated).
    with (
        tempfile.TemporaryDirectory() as directory,
        ssh_world(Path(directory), generated_ca=True) as ssh,
    ):
        for label in (
            "first-up-ssh-generated-ca",
            "settle-ssh-generated-ca",
            "no-change-ssh-generated-ca",
        ):
            result = ssh.up()
            assert result.error is None, result.error
            line = f"scenario {label}: writes {ssh.total('installs')}, logins {ssh.total('logins')}"
            if label.startswith("settle"):
                # The second up drops the appliance's old root CA from every bundle: its
                # trust-store writes (PemTrustBundle updates), shown rather than hidden.
                bundles = [urn for urn in result.changed() if ":PemTrustBundle::" in urn]
                line += f", trust-store writes {len(bundles)}"
            print(line)


def print_scenario_counts() -> int:
    """Print each lifecycle scenario's call counts; return the most nodes ever off trust."""
    worst_off_trust = 0
    for name, (scenario, options) in scenarios.SCENARIOS.items():
        with (
            tempfile.TemporaryDirectory() as directory,
            scenarios.world(Path(directory), **options) as world,
        ):
            all_steps = scenario(world)
            steps = [step for step in all_steps if not step.setup]
        if name.startswith("new-root-on-regeneration"):
            worst_off_trust = max(
                [worst_off_trust, *(len(step.off_trust or ()) for step in all_steps)]
            )
        writes = sum(step.writes for step in steps)
        reads = sum(step.reads for step in steps)
        logins = sum(step.logins for step in steps)
        per_node: dict[str, int] = {}
        for step in steps:
            for fqdn, count in step.per_node.items():
                per_node[fqdn] = per_node.get(fqdn, 0) + count
        lb_writes = sum(step.load_balancer_writes for step in steps)
        print(
            f"scenario {name}: writes {writes}, reads {reads}, logins {logins}, "
            f"load balancer writes {lb_writes}, steps {len(steps)}"
        )
        print(
            f"scenario {name} requests per node: "
            + ", ".join(f"{fqdn} {count}" for fqdn, count in sorted(per_node.items()))
        )
    return worst_off_trust


# --- observation --------------------------------------------------------------------------


@contextmanager
def emulated_clusters(
    clusters: int, nodes: int, latency: float, nodes_per_process: int = _NODES_PER_EMULATOR
) -> Iterator[tuple[list[list[NodeAddress]], list[int]]]:
    """Emulated clusters in their own processes, as real appliances are other machines: the
    emulator's own work must not compete with the observation for this process's GIL.

    At most `nodes_per_process` nodes share a process: in one Python process the emulated
    nodes' TLS handshakes would run one at a time (one GIL), so a 30-node cluster would
    time that process, not the observation. The nodes of one process share a root CA; a
    cluster split over several processes has one root CA per process, which the timed
    judging step handles like a root CA rotation (slightly more work, not less)."""
    processes = []
    parts: list[int] = []  # the cluster index of each process
    try:
        for index in range(clusters):
            for first in range(0, nodes, nodes_per_process):
                count = min(nodes_per_process, nodes - first)
                parts.append(index)
                processes.append(
                    subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
                        [
                            sys.executable,
                            "-m",
                            "emulators.appliance",
                            "--nodes",
                            str(count),
                            "--domain",
                            # One process per cluster keeps the cluster's own names.
                            f"c{index}.bench.test"
                            if nodes <= nodes_per_process
                            else f"p{first}.c{index}.bench.test",
                            "--latency",
                            str(latency),
                            "--key-type",
                            KEY_TYPE,
                        ],
                        cwd=PROJECT_DIR,
                        env={**os.environ, "WS1_ACCESS_ADMIN_PASSWORD": PASSWORD},
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
        groups: list[list[NodeAddress]] = [[] for _ in range(clusters)]
        for index, process in zip(parts, processes, strict=True):
            assert process.stdout is not None
            description = json.loads(process.stdout.readline())
            groups[index].extend(
                NodeAddress(node["fqdn"], node["address"], node["port"], node["configurator_port"])
                for node in description["nodes"]
            )
        yield groups, [process.pid for process in processes]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def print_observation_times() -> None:
    """What the program does before declaring anything: observe every node of every cluster,
    then judge each cluster."""
    for clusters, nodes, label in (
        (1, 3, "3 nodes"),
        (1, 10, "10 nodes"),
        (1, 30, "30 nodes"),
        (5, 3, "5 clusters x 3 nodes"),
    ):
        with emulated_clusters(clusters, nodes, RTT) as (groups, emulator_pids):
            by_cluster = {f"c{i}": group for i, group in enumerate(groups)}
            client_before, emulators_before = time.process_time(), cpu_seconds(emulator_pids)
            seconds = statistics.median(timed(observe_and_judge, by_cluster) for _ in range(5))
            observations = 5 * clusters * nodes
            client = (time.process_time() - client_before) / observations
            emulators = (cpu_seconds(emulator_pids) - emulators_before) / observations
        # The emulated nodes run in other processes, but on the same cores as the client.
        print(
            f"observe {label} at {RTT * 1000:.0f} ms: {seconds / RTT:.2f} RTT "
            f"(CPU per node: client {client * 1000:.1f} ms, emulator {emulators * 1000:.1f} ms)"
        )


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def observe_and_judge(by_cluster: dict[str, list[NodeAddress]]) -> None:
    results = observe_nodes([node for group in by_cluster.values() for node in group])
    for name, group in by_cluster.items():
        cluster_observation(name, group, results)


def timed(action: Callable[..., Any], *arguments: Any, **keywords: Any) -> float:
    start = time.perf_counter()
    action(*arguments, **keywords)
    return time.perf_counter() - start


# --- program run against the bare SDK import ------------------------------------------------


def print_program_run_times() -> None:
    fqdns = [f"ws1-node{n}.c0.bench.test" for n in (1, 2, 3)]
    with (
        ApplianceCluster(fqdns, "ws1.c0.bench.test", PASSWORD) as emulator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        directory = Path(tmp)
        cluster = {
            "name": "c0",
            "service_fqdn": "ws1.c0.bench.test",
            "ssl_termination": "load_balancer",
            "root_ca_sha256": emulator.root_ca_sha256,
            "nodes": [
                {
                    "fqdn": node.fqdn,
                    "address": node.address,
                    "service_port": node.port,
                    "configurator_port": node.configurator_port,
                }
                for node in emulator.nodes
            ],
        }
        pem_files = []
        for index in range(100):
            (directory / f"lb{index}").mkdir()
            pem_files.append(
                {
                    "name": f"proxy-{index}",
                    "kind": "pem_file",
                    "cluster": "c0",
                    "path": str(directory / f"lb{index}" / "trust.pem"),
                }
            )
        management_ca = directory / "bigip-management-ca.pem"
        management_ca.write_text(emulator.root_ca_pem)
        big_ips = [
            {
                "name": f"bigip-{index}",
                "kind": "f5",
                "cluster": "c0",
                "address": f"bigip-{index}.bench.test",
                "username": "pulumi-automation",
                "management_ca_path": str(management_ca),
                "virtual_server": {
                    "destination": f"10.20.40.{index + 10}",
                    "port": 443,
                    "client_ssl_profile": "/Common/ws1-clientssl",
                },
            }
            for index in range(10)
        ]
        runs = {
            "100 pem_file load balancers": {"clusters": [cluster], "load_balancers": pem_files},
            "10 F5 entries with virtual servers": {
                "clusters": [cluster],
                "load_balancers": big_ips,
                "bigipPassword": "bench-bigip-password",
            },
        }
        # Byte-compiled once (into the usual, git-ignored __pycache__ folders), as any Python
        # program is on its first run: this machine sets PYTHONDONTWRITEBYTECODE, and the
        # SDK's modules were compiled when pip installed them, so without this the comparison
        # would charge the compilation of our modules only.
        python("-m", "compileall", "-q", "components", "tests", "emulators", "__main__.py")
        for label, config in runs.items():
            path = directory / "config.json"
            path.write_text(json.dumps({"config": config, "cwd": tmp}))
            times: dict[str, list[float]] = collections.defaultdict(list)
            for _ in range(5):  # side by side, so that all see the same machine load
                times["bare"].append(timed(python, "-c", "import pulumi"))
                for monitor in ("sdk-mocks", "floor", "harness"):
                    times[monitor].append(
                        timed(python, "-m", "tests.preview_once", str(path), monitor)
                    )
            bare = statistics.median(times["bare"])
            ratio = {name: statistics.median(values) / bare for name, values in times.items()}
            floor = (
                f"; the SDK's own cost for its {len(pem_files)} bundle resources, declared by a "
                f"program that does nothing else: {ratio['floor']:.2f} x"
                if label.startswith("100 pem_file")
                else ""
            )
            print(
                f"program run, {label}: {ratio['sdk-mocks']:.2f} x the bare SDK import "
                f"(under the SDK's mocks{floor}; under the test harness, with every "
                f"provider's Check and Diff in the same process: {ratio['harness']:.2f} x)"
            )


def python(*arguments: str, **variables: str) -> None:
    environment = {**os.environ, "WS1_ACCESS_ADMIN_PASSWORD": PASSWORD, **variables}
    subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, *arguments], check=True, cwd=PROJECT_DIR, env=environment
    )


# --- first up that regenerates every node ---------------------------------------------------


def print_first_up_with_regeneration() -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        scenarios.world(Path(directory)) as world,
    ):
        for node in world.emulator.nodes:
            # Only the service FQDN: passthrough needs every node FQDN too, so all 3 change.
            node.regenerate(scenarios.SERVICE, [scenarios.SERVICE])
            node.latency = RTT
        start = time.perf_counter()
        step = world.run("first up", world.stack.up)  # resets the counters first
        seconds = time.perf_counter() - start
        scenarios.expect_ok(step)
        nodes = world.emulator.nodes
        requests = [node.count() for node in nodes]
        handshakes = [sum(node.sni_names.values()) for node in nodes]
        changed = sum(node.count(path="generate") for node in nodes)
    print(
        f"first up, {changed} nodes regenerated at {RTT * 1000:.0f} ms: "
        f"{seconds / RTT / len(nodes):.2f} RTT per node "
        f"(requests per node {per_node(requests)}, handshakes per node {per_node(handshakes)})"
    )


# --- trust audit ------------------------------------------------------------------------------


def audit_stack(directory: Path, nodes: list[NodeAddress], root_ca_pem: str) -> Path:
    """A stack file: one cluster of `nodes` behind 10 PEM-file load balancers trusting it."""
    load_balancers = []
    for index in range(10):
        bundle = directory / f"lb{index}.pem"
        bundle.write_text(root_ca_pem)
        load_balancers.append(
            {"name": f"proxy-{index}", "kind": "pem_file", "cluster": "c0", "path": str(bundle)}
        )
    cluster = {
        "name": "c0",
        "service_fqdn": "ws1.c0.bench.test",
        "ssl_termination": "passthrough",
        "trust_on_first_use": True,
        "manage_certificate": False,
        "nodes": [
            {
                "fqdn": node.fqdn,
                "address": node.address,
                "service_port": node.service_port,
                "configurator_port": node.configurator_port,
            }
            for node in nodes
        ],
    }
    path = directory / "Pulumi.bench.yaml"
    path.write_text(
        json.dumps(
            {
                "config": {
                    "ws1-access-lb-trust:clusters": [cluster],
                    "ws1-access-lb-trust:load_balancers": load_balancers,
                }
            }
        )
    )
    return path


def print_audit_figures() -> None:
    from components.audit.stack_files import read_stack_file
    from components.audit.verification import Verdict, run_audit

    with (
        # One process: the audit judges one cluster (one service FQDN, one root CA).
        emulated_clusters(1, 10, RTT, nodes_per_process=10) as (groups, _pids),
        tempfile.TemporaryDirectory() as directory,
    ):
        nodes = groups[0]
        first = observe_nodes(nodes[:1])[nodes[0]]
        assert not isinstance(first, Exception), first
        stack = read_stack_file(audit_stack(Path(directory), nodes, pki.to_pem(first.root_ca)))
        single, wall = [], []
        for _ in range(5):  # side by side, so that both see the same machine load
            single.append(timed(observe_nodes, nodes[:1]))
            start = time.perf_counter()
            audit = run_audit([stack])
            wall.append(time.perf_counter() - start)
            assert audit.verdict is Verdict.OK, [r.reasons for r in audit.rows]
            assert len(audit.rows) == 100
    x, y = statistics.median(wall), statistics.median(single)
    print(
        f"audit 10 load balancers x 10 nodes at {RTT * 1000:.0f} ms latency: wall {x:.2f} s, "
        f"single node observation {y:.2f} s, ratio {x / y:.2f}"
    )
    # Requests, counted by emulated nodes in this process (no latency needed to count).
    fqdns = [f"ws1-node{n}.c0.bench.test" for n in range(1, 11)]
    with (
        ApplianceCluster(fqdns, "ws1.c0.bench.test", PASSWORD, key_type=KEY_TYPE) as emulator,
        tempfile.TemporaryDirectory() as directory,
    ):
        nodes = [
            NodeAddress(n.fqdn, n.address, n.port, n.configurator_port) for n in emulator.nodes
        ]
        stack = read_stack_file(audit_stack(Path(directory), nodes, emulator.root_ca_pem))
        emulator.reset_counters()
        audit = run_audit([stack])
        assert audit.verdict is Verdict.OK, [r.reasons for r in audit.rows]
        reads = {n.count(path="/horizon_workspace_rootca.pem") for n in emulator.nodes}
        handshakes = {sum(n.sni_names.values()) for n in emulator.nodes}
        others = {n.count() - n.count(path="/horizon_workspace_rootca.pem") for n in emulator.nodes}
    print(
        f"audit requests per node: {per_node(sorted(reads))} root CA read + "
        f"{per_node(sorted(handshakes))} handshake (10 load balancers, 10 nodes; "
        f"other requests {per_node(sorted(others))})"
    )


def per_node(counts: Sequence[int]) -> str:
    return "/".join(str(count) for count in counts)


if __name__ == "__main__":
    sys.exit(main())
