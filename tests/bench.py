"""Benchmark figures, printed one per line as `name: value unit` (run with `make bench`).

* the serialized size of each dynamic provider (the engine stores it in state with every
  resource; target under 1024 bytes);
* the emulated appliance's request counts for each lifecycle scenario of
  tests/program/scenarios.py, leaving out each scenario's setup steps (target for
  no-change: 0 writes and at most 1 read per node);
* the emulated BIG-IP's requests for a no-change `up` of an F5 entry (f5-no-change).

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
        run_scenarios()
        # A second `up` of one F5 entry (virtual server, device group without auto-sync) with
        # nothing changed: requests the emulated BIG-IP received (target: only reads, at most
        # one per REST resource).
        with tempfile.TemporaryDirectory() as directory:
            requests = f5_world.no_change_requests(Path(directory))
    print(f"scenario f5-no-change: bigip requests {requests}")
    print(
        "harness: provider calls through the SDK provider host: "
        f"{calls['through the host']} of {calls['all']}"
    )
    return 0


def run_scenarios() -> None:
    for name, (scenario, options) in scenarios.SCENARIOS.items():
        with (
            tempfile.TemporaryDirectory() as directory,
            scenarios.world(Path(directory), **options) as world,
        ):
            steps = [step for step in scenario(world) if not step.setup]
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


if __name__ == "__main__":
    sys.exit(main())
