"""Settings of an F5 entry added for device groups, SNAT and the provider's address limits."""

from __future__ import annotations

from typing import Any

from components.settings import F5LoadBalancer, VirtualServer, parse_settings
from tests.unit.test_settings import (  # noqa: F401 (the fixture creates the management CA file)
    PROJECT_DIR,
    SECRETS,
    P,
    _management_ca_file,
    f5,
    problems_after,
    valid_raw,
)


def parsed_f5(raw: dict[str, Any]) -> F5LoadBalancer:
    lb = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR).load_balancers[1]
    assert isinstance(lb, F5LoadBalancer)
    return lb


def test_device_group_and_snat_are_read() -> None:
    raw = valid_raw()
    f5(raw)["device_group"] = "ws1-ha"
    f5(raw)["virtual_server"]["snat"] = "automap"
    lb = parsed_f5(raw)
    assert lb.device_group == "ws1-ha"
    assert lb.virtual_server == VirtualServer("10.0.0.10", 443, "/Common/ws1-clientssl", "automap")


def test_without_them_the_unit_is_standalone_and_nothing_is_translated() -> None:
    lb = parsed_f5(valid_raw())
    assert lb.device_group is None
    assert lb.virtual_server is not None and lb.virtual_server.snat is None


def test_snat_may_name_a_snat_pool_by_full_path() -> None:
    raw = valid_raw()
    f5(raw)["virtual_server"]["snat"] = "/Common/ws1-snat"
    lb = parsed_f5(raw)
    assert lb.virtual_server is not None and lb.virtual_server.snat == "/Common/ws1-snat"


def test_snat_that_is_neither_automap_nor_a_pool_path_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["virtual_server"]["snat"] = "auto"

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server.snat: 'auto' is neither automap nor the full "
        "path of a SNAT pool (expected automap, or e.g. /Common/ws1-snat)."
    ]


def test_a_device_group_with_a_folder_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["device_group"] = "/Common/ws1-ha"

    assert problems_after(change) == [
        f"{P}load_balancers[1].device_group: '/Common/ws1-ha' contains '/'; expected a name "
        "without a folder or partition (the partition comes from partition)."
    ]


def test_an_ipv6_management_address_is_refused_with_the_reason() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["address"] = "2001:db8::10"

    assert problems_after(change) == [
        f"{P}load_balancers[1].address: '2001:db8::10' is an IPv6 address, which the F5 "
        "provider cannot use (it builds its URL as https://<address>:<port>, without "
        "brackets); expected a host name that resolves to it, or an IPv4 address."
    ]
