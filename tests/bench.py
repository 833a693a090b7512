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

Figures, not timings: counts do not depend on the machine.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pulumi.dynamic.dynamic import serialize_provider

from components.appliance.certificate import ApplianceCertificateProvider
from components.appliance.lb_root import ApplianceLoadBalancerRootCAProvider
from components.appliance.root_ca import ApplianceRootCAProvider
from components.trust_stores.f5_device_group import (
    DeviceGroupCheckProvider,
    DeviceGroupSyncProvider,
)
from components.trust_stores.f5_name_check import ServerSslNameCheckProvider
from components.trust_stores.pem_file import PemTrustBundleProvider
from tests.harness.host import inside_host
from tests.program import f5_world, scenarios
from tests.reliability import cases as bad_inputs

PROVIDERS = {
    "ApplianceRootCA": ApplianceRootCAProvider,
    "ApplianceCertificate": ApplianceCertificateProvider,
    "ApplianceLoadBalancerRootCA": ApplianceLoadBalancerRootCAProvider,
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
        worst_off_trust = run_scenarios()
        # A second `up` of one F5 entry (virtual server, device group without auto-sync) with
        # nothing changed: requests the emulated BIG-IP received (target: only reads, at most
        # one per REST resource).
        with tempfile.TemporaryDirectory() as directory:
            requests = f5_world.no_change_requests(Path(directory))
    print(f"scenario f5-no-change: bigip requests {requests}")
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
    return 0


def run_scenarios() -> int:
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


if __name__ == "__main__":
    sys.exit(main())
