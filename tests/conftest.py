"""Shared fixtures: an emulated Workspace ONE Access cluster on loopback, and its settings."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from emulators.appliance import ApplianceCluster  # noqa: E402

ADMIN_PASSWORD = "emulator-admin-Pa55word!"  # a test value the emulator expects
SERVICE_FQDN = "ws1.corp.test"
NODE_FQDNS = ("ws1-a.corp.test", "ws1-b.corp.test", "ws1-c.corp.test")


@pytest.fixture
def appliance() -> Iterator[ApplianceCluster]:
    """A three-node cluster, started; every node serves CN = service FQDN, SANs = all names."""
    with ApplianceCluster(NODE_FQDNS, SERVICE_FQDN, ADMIN_PASSWORD) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _fast_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault tests hang a node on purpose; a short client timeout keeps them quick.
    monkeypatch.setenv("WS1_ACCESS_HTTP_TIMEOUT", "2")
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD", raising=False)


# The SDK's serialize_provider (pulumi/dynamic/dynamic.py) wraps pickle._Pickler._batch_setitems
# in a sorting wrapper on every call and never restores it, so each call adds one stack frame
# to every later dict pickled in the process (pulumi/pulumi#17803 reports the RecursionError).
# The chain is walked only when a provider with instance state is pickled (its __dict__):
# this program's providers carry none (checked: 1,200 of them in one run pickle fine), but
# the harness's test providers (tests/harness/fixtures) do, and this one pytest process
# serializes for every run of every test: after ~1000 wraps pickling one overflows the stack.
# Restored after each test: the SDK's next call wraps the original again, as in a fresh run.
_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _unwrap_the_sdks_pickler() -> Iterator[None]:
    yield
    pickle._Pickler._batch_setitems = _BATCH_SETITEMS  # type: ignore[attr-defined]


def _make_ca_pem(name: str) -> str:
    import trustme

    return trustme.CA(organization_name=name).cert_pem.bytes().decode()


@pytest.fixture(scope="session")
def lb_ca_pem() -> str:
    """A load balancer's private root CA."""
    return _make_ca_pem("Corp LB Root CA")


@pytest.fixture(scope="session")
def other_ca_pem() -> str:
    return _make_ca_pem("Someone Else's CA")
