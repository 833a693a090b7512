"""Lifecycle scenarios: a stack driven through the harness against an emulated cluster.

Each scenario is one function that performs the operator's steps and checks, at every step,
that every node's served certificate verifies against every load balancer's trust. The tests
(tests/program/test_lifecycle.py) assert on the steps it returns; `make bench` prints the
emulator's call counts for the same steps. One implementation, two readers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import pki
from emulators.appliance import ApplianceCluster
from tests.harness import RunResult, Stack
from tests.program.stacks import PROGRAM

PASSWORD = "scenario-emulator-password"
SERVICE = "ws1.local.test"
BUNDLE_TYPE = "pulumi-python:dynamic/trust_stores:PemTrustBundle"
CERTIFICATE_TYPE = "pulumi-python:dynamic/ws1:ApplianceCertificate"
ROOT_CA_TYPE = "pulumi-python:dynamic/ws1:ApplianceRootCA"


def node_fqdn(index: int) -> str:
    return f"ws1-node{index}.local.test"


@dataclass
class Step:
    """One operation and what the emulated appliance saw during it."""

    name: str
    result: RunResult
    writes: int
    reads: int
    logins: int
    per_node: dict[str, int]
    setup: bool = False
    applied: bool = True  # False for preview and refresh: nothing is written to a trust store
    # Configured nodes that some load balancer would refuse after this step (None: no trust
    # store written yet, so there is nothing to be off).
    off_trust: list[str] | None = None

    @property
    def load_balancer_writes(self) -> int:
        """Trust-store files created or rewritten by this step."""
        if not self.applied:
            return 0
        return sum(
            1
            for urn, step in self.result.steps.items()
            if "PemTrustBundle" in urn and step in ("create", "update", "replace")
        )


@dataclass
class World:
    """An emulated cluster, a stack for it, and two PEM-file load balancers."""

    emulator: ApplianceCluster
    stack: Stack
    directory: Path
    steps: list[Step] = field(default_factory=list)

    @property
    def cluster_config(self) -> dict[str, Any]:
        return self.stack.config["clusters"][0]  # type: ignore[no-any-return]

    def bundle_path(self, load_balancer: str) -> Path:
        return self.directory / "lb" / load_balancer / "trust.pem"

    def load_balancers(self) -> list[str]:
        return [lb["name"] for lb in self.stack.config["load_balancers"]]

    def run(self, name: str, operation: Callable[[], RunResult], *, setup: bool = False) -> Step:
        self.emulator.reset_counters()
        result = operation()
        step = Step(
            name=name,
            result=result,
            writes=self.emulator.writes(),
            reads=self.emulator.reads(),
            logins=self.emulator.logins(),
            per_node={node.fqdn: node.count() for node in self.emulator.nodes},
            setup=setup,
            applied=operation.__name__ in ("up", "destroy"),
            off_trust=self.nodes_off_trust(),
        )
        self.steps.append(step)
        return step

    def nodes_off_trust(self) -> list[str] | None:
        """Configured nodes whose served certificate some load balancer's bundle refuses."""
        paths = [self.bundle_path(lb) for lb in self.load_balancers()]
        if not all(path.is_file() for path in paths):
            return None
        configured = {node["fqdn"] for node in self.cluster_config["nodes"]}
        off: list[str] = []
        for node in self.emulator.nodes:
            if node.fqdn not in configured:
                continue
            leaf = pki.load_certificate(node.leaf_pem, node.fqdn)
            for lb, path in zip(self.load_balancers(), paths, strict=True):
                roots = pki.load_bundle(path.read_text(), lb)
                try:
                    pki.verify_served_chain([leaf], roots, node.fqdn, f"node {node.fqdn}")
                except pki.CertificateError:
                    off.append(node.fqdn)
                    break
        return off

    def trusted(self, load_balancer: str) -> list[str]:
        text = self.bundle_path(load_balancer).read_text()
        return [pki.sha256_fingerprint(c) for c in pki.load_bundle(text, load_balancer)]

    def check_every_node_verifies(self, configured_only: bool = True) -> None:
        """Every node's served certificate verifies against every load balancer's bundle."""
        configured = {node["fqdn"] for node in self.cluster_config["nodes"]}
        for load_balancer in self.load_balancers():
            roots = pki.load_bundle(self.bundle_path(load_balancer).read_text(), load_balancer)
            for node in self.emulator.nodes:
                if configured_only and node.fqdn not in configured:
                    continue
                leaf = pki.load_certificate(node.leaf_pem, node.fqdn)
                pki.verify_served_chain(
                    [leaf], roots, node.fqdn, f"node {node.fqdn} via {load_balancer}"
                )


@contextmanager
def world(
    directory: Path,
    *,
    nodes: int = 3,
    configured_nodes: int | None = None,
    pinned: bool = True,
    root_ca_validity_days: int = 3652,
) -> Iterator[World]:
    """A started emulator of `nodes` nodes; the stack declares the first `configured_nodes`."""
    fqdns = [node_fqdn(i) for i in range(1, nodes + 1)]
    emulator = ApplianceCluster(
        fqdns, SERVICE, PASSWORD, root_ca_validity_days=root_ca_validity_days
    )
    with emulator:
        cluster: dict[str, Any] = {
            "name": "local",
            "service_fqdn": SERVICE,
            "ssl_termination": "passthrough",
            # The route these scenarios exercise (routes have their own tests: test_ssh_route).
            "certificate_method": "configurator",
            "nodes": [
                {
                    "fqdn": node.fqdn,
                    "address": node.address,
                    "service_port": node.port,
                    "configurator_port": node.configurator_port,
                }
                for node in emulator.nodes[: configured_nodes or nodes]
            ],
        }
        if pinned:
            cluster["root_ca_sha256"] = [emulator.root_ca_sha256]
        else:
            cluster["trust_on_first_use"] = True
        load_balancers = []
        for name in ("proxy-a", "proxy-b"):
            (directory / "lb" / name).mkdir(parents=True)
            load_balancers.append(
                {
                    "name": name,
                    "kind": "pem_file",
                    "cluster": "local",
                    "path": str(directory / "lb" / name / "trust.pem"),
                }
            )
        config = {"clusters": [cluster], "load_balancers": load_balancers}
        previous = os.environ.get("WS1_ACCESS_ADMIN_PASSWORD")
        os.environ["WS1_ACCESS_ADMIN_PASSWORD"] = PASSWORD
        try:
            stack = Stack(PROGRAM, stack="local", config=config, cwd=str(directory))
            yield World(emulator, stack, directory)
        finally:
            if previous is None:
                os.environ.pop("WS1_ACCESS_ADMIN_PASSWORD", None)
            else:
                os.environ["WS1_ACCESS_ADMIN_PASSWORD"] = previous


def regenerate_every_node_from_a_new_root_ca(w: World) -> None:
    """Out of band, as an operator clicking Auto Generate on each node would."""
    w.emulator.regeneration_makes_new_root = True
    for node in w.emulator.nodes:
        node.regenerate(node.common_name, node.subject_alt_names)


def expect_ok(step: Step) -> Step:
    assert step.result.error is None, f"{step.name}: {step.result.error}"
    return step


# --- the scenarios ------------------------------------------------------------------------


def first_up(w: World) -> list[Step]:
    expect_ok(w.run("first up", w.stack.up))
    return w.steps


def no_change(w: World) -> list[Step]:
    expect_ok(w.run("first up", w.stack.up, setup=True))
    expect_ok(w.run("second up", w.stack.up))
    return w.steps


def root_ca_regenerated(w: World) -> list[Step]:
    """Someone regenerated every node's certificate from a new root CA since the last up."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    regenerate_every_node_from_a_new_root_ca(w)
    expect_ok(w.run("preview", w.stack.preview))
    expect_ok(w.run("up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def rotation(w: World) -> list[Step]:
    """Move every node to a new root CA, one node at a time, without an outage.

    The same steps as README "Rotating the appliance certificate".
    """
    expect_ok(w.run("first up", w.stack.up, setup=True))
    old_root = w.emulator.root_ca_sha256
    # 1. The new root CA is known before any node uses it: pin it and announce it.
    new_root_pem = w.emulator.prepare_next_root()
    new_root = pki.sha256_fingerprint(pki.load_certificate(new_root_pem, "new root"))
    w.cluster_config["root_ca_sha256"] = [old_root, new_root]
    w.cluster_config["incoming_root_ca"] = new_root_pem
    expect_ok(w.run("announce: preview", w.stack.preview))
    expect_ok(w.run("announce: up", w.stack.up))
    w.check_every_node_verifies()
    # 2. Each node moves to the new root CA (console: Auto Generate Certificate).
    w.emulator.regeneration_makes_new_root = True
    for node in w.emulator.nodes:
        node.regenerate(node.common_name, node.subject_alt_names)
        w.check_every_node_verifies()
        expect_ok(w.run(f"after {node.fqdn}: up", w.stack.up))
        w.check_every_node_verifies()
    # 3. Every node serves from the new root CA: stop trusting and pinning the old one.
    w.cluster_config["root_ca_sha256"] = [new_root]
    del w.cluster_config["incoming_root_ca"]
    expect_ok(w.run("finish: preview", w.stack.preview))
    expect_ok(w.run("finish: up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def node_added_and_removed(w: World) -> list[Step]:
    """A fourth node joins the passthrough cluster, then leaves again."""
    three = [SERVICE, node_fqdn(1), node_fqdn(2), node_fqdn(3)]
    for node in w.emulator.nodes:
        node.regenerate(SERVICE, three)
    expect_ok(w.run("first up", w.stack.up, setup=True))
    fourth = w.emulator.node(node_fqdn(4))
    w.cluster_config["nodes"].append(
        {
            "fqdn": fourth.fqdn,
            "address": fourth.address,
            "service_port": fourth.port,
            "configurator_port": fourth.configurator_port,
        }
    )
    expect_ok(w.run("add: preview", w.stack.preview))
    expect_ok(w.run("add: up", w.stack.up))
    w.check_every_node_verifies()
    w.cluster_config["nodes"].pop()
    expect_ok(w.run("remove: preview", w.stack.preview))
    expect_ok(w.run("remove: up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def load_balancers_change(w: World) -> list[Step]:
    """A third load balancer is added whose directory is missing, then fixed; one is removed."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    w.stack.config["load_balancers"].append(
        {
            "name": "proxy-c",
            "kind": "pem_file",
            "cluster": "local",
            "path": str(w.bundle_path("proxy-c")),
        }
    )
    w.run("add unreachable: up", w.stack.up)  # fails: its directory does not exist
    w.bundle_path("proxy-c").parent.mkdir(parents=True)
    expect_ok(w.run("add fixed: up", w.stack.up))
    w.check_every_node_verifies()
    w.stack.config["load_balancers"] = [
        lb for lb in w.stack.config["load_balancers"] if lb["name"] != "proxy-b"
    ]
    expect_ok(w.run("remove: up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def out_of_band_changes(w: World) -> list[Step]:
    """A node certificate replaced by hand and a trust bundle deleted on the load balancer."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    w.emulator.node(node_fqdn(2)).regenerate(SERVICE, [SERVICE])
    w.bundle_path("proxy-a").unlink()
    expect_ok(w.run("refresh", w.stack.refresh))
    expect_ok(w.run("up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def pin_mismatch(w: World) -> list[Step]:
    """The appliance now serves a root CA the stack has not pinned."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    regenerate_every_node_from_a_new_root_ca(w)
    w.run("preview", w.stack.preview)
    w.run("up", w.stack.up)
    return w.steps


def expiry(w: World) -> list[Step]:
    """A node certificate expires in 10 days (the root CA's own window is set by the world)."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    w.emulator.node(node_fqdn(3)).serve_certificate_expiring_in(10)
    expect_ok(w.run("preview", w.stack.preview))
    return w.steps


def _needs_new_certificates_from_a_new_root(w: World) -> None:
    """The stack asks for one more SAN (every node needs a new certificate), and the
    appliance makes a new root CA when it regenerates (`--regeneration-makes-new-root`)."""
    w.emulator.regeneration_makes_new_root = True
    w.cluster_config["extra_sans"] = ["ws1.dc2.local.test"]


def expect_stopped_at_canary(step: Step, w: World) -> str:
    """The up stopped at the first node, naming it, the new root CA and the runbook step."""
    canary = w.emulator.node(node_fqdn(1))
    error = step.result.error or ""
    assert canary.fqdn in error and canary.root_ca_sha256 in error, error
    assert "Announce the new root CA" in error, error
    assert step.off_trust == [canary.fqdn], step.off_trust
    return canary.root_ca_pem


def announce(w: World, new_root_pem: str) -> None:
    """README "Rotating the appliance certificate", step 1, as the error message says."""
    w.cluster_config["incoming_root_ca"] = new_root_pem
    if "root_ca_sha256" in w.cluster_config:
        new_root = pki.sha256_fingerprint(pki.load_certificate(new_root_pem, "new root"))
        w.cluster_config["root_ca_sha256"].append(new_root)


def new_root_on_regeneration(w: World) -> list[Step]:
    """Regeneration makes a new root CA: stop at the canary, announce, rerun, converged."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    _needs_new_certificates_from_a_new_root(w)
    new_root_pem = expect_stopped_at_canary(w.run("up", w.stack.up), w)
    # A rerun before following the message changes nothing.
    rerun = w.run("rerun without announcing: up", w.stack.up)
    assert rerun.result.error and rerun.off_trust == [node_fqdn(1)], rerun.result.error
    announce(w, new_root_pem)
    expect_ok(w.run("announced: up", w.stack.up))
    w.check_every_node_verifies()
    expect_ok(w.run("settle: up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def new_root_on_regeneration_fault_on_second_node(w: World) -> list[Step]:
    """As above (trust on first use), and the second node's configurator fails mid-way."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    _needs_new_certificates_from_a_new_root(w)
    new_root_pem = expect_stopped_at_canary(w.run("up", w.stack.up), w)
    announce(w, new_root_pem)
    second = w.emulator.node(node_fqdn(2))
    second.fail_next(50, "500", "configurator")
    failed = w.run("announced, node 2 failing: up", w.stack.up)
    assert failed.result.error and second.fqdn in failed.result.error, failed.result.error
    second.clear_faults()
    expect_ok(w.run("fault cleared: up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


def expired_node_certificate(w: World) -> list[Step]:
    """A node serves an expired certificate: the program logs in to it and replaces it."""
    expect_ok(w.run("first up", w.stack.up, setup=True))
    w.emulator.node(node_fqdn(2)).serve_expired_certificate()
    expect_ok(w.run("up", w.stack.up))
    w.check_every_node_verifies()
    return w.steps


SCENARIOS: dict[str, tuple[Callable[[World], list[Step]], dict[str, Any]]] = {
    "first-up": (first_up, {}),
    "no-change": (no_change, {}),
    "root-ca-regenerated": (root_ca_regenerated, {"pinned": False}),
    "rotation": (rotation, {}),
    "node-added-and-removed": (node_added_and_removed, {"nodes": 4, "configured_nodes": 3}),
    "load-balancers-change": (load_balancers_change, {}),
    "out-of-band-changes": (out_of_band_changes, {}),
    "pin-mismatch": (pin_mismatch, {}),
    "expiry": (expiry, {"root_ca_validity_days": 20}),
    "new-root-on-regeneration": (new_root_on_regeneration, {}),
    "new-root-on-regeneration-tofu": (new_root_on_regeneration, {"pinned": False}),
    "new-root-on-regeneration-fault": (
        new_root_on_regeneration_fault_on_second_node,
        {"pinned": False},
    ),
    "expired-node-certificate": (expired_node_certificate, {}),
}
