"""Refusals made before anything is declared (components/preflight.py)."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.preflight import check_load_balancers
from components.settings import Cluster, Node, PemFileLoadBalancer, Settings


def cluster(name: str) -> Cluster:
    return Cluster(name, f"{name}.corp.example", "passthrough", (Node(f"n.{name}.example", "n"),))


def test_two_entries_whose_resource_names_would_meet_are_refused():
    # "a" + "b-c" and "a-b" + "c" both give "a-b-c-...": the same URNs.
    settings = Settings(
        clusters=(cluster("b-c"), cluster("c")),
        load_balancers=(
            PemFileLoadBalancer("a", "b-c", Path("/srv/a.pem")),
            PemFileLoadBalancer("a-b", "c", Path("/srv/b.pem")),
        ),
    )
    with pytest.raises(pulumi.RunError) as refused:
        check_load_balancers(settings)
    assert str(refused.value) == (
        "load balancer a-b (cluster c) and load balancer a (cluster b-c) give their resources "
        "the same names (a-b-c-...); rename one of them."
    )


def test_entries_with_distinct_names_pass():
    settings = Settings(
        clusters=(cluster("b-c"), cluster("c")),
        load_balancers=(
            PemFileLoadBalancer("a", "b-c", Path("/srv/a.pem")),
            PemFileLoadBalancer("d", "c", Path("/srv/b.pem")),
        ),
    )
    check_load_balancers(settings)  # raises nothing
