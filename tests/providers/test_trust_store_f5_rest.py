"""The F5 REST resources (name check, device group), method by method, against the emulated BIG-IP.

Everything goes over real TLS on loopback, with the management certificate verified against
the emulator's CA, exactly as against a real unit's management API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from components.trust_stores.bigip_rest import BigipError, Management
from components.trust_stores.f5_device_group import (
    DeviceGroupCheckProvider,
    DeviceGroupSyncProvider,
)
from components.trust_stores.f5_name_check import ServerSslNameCheckProvider
from emulators.bigip import EmulatedBigip

PROJECT = "ws1-access-lb-trust"
PASSWORD = "Bigip-emulated-Pa55-3c9e"  # noqa: S105 (the emulator's test password)
PROFILE = "/Common/ws1-access.corp.example-serverssl"
SERVICE = "access.corp.example"
LOGIN = ("POST", "/mgmt/shared/authn/login")


@pytest.fixture
def bigip(tmp_path: Path) -> Iterator[EmulatedBigip]:
    with EmulatedBigip("automation", PASSWORD) as unit:
        unit.add_server_ssl_profile(PROFILE)
        (tmp_path / "bigip-ca.pem").write_text(unit.management_ca_pem)
        yield unit


def management(unit: EmulatedBigip, tmp_path: Path) -> Management:
    return Management(
        unit.address, unit.port, "automation", "bigipPassword", str(tmp_path / "bigip-ca.pem")
    )


def configured(provider: Any, password: str | None = PASSWORD) -> Any:
    config = {f"{PROJECT}:bigipPassword": password} if password else {}
    provider.configure(ConfigureRequest(Config(config, PROJECT)))
    return provider


def name_check_props(unit: EmulatedBigip, tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {
        "__provider": "serialized",
        **management(unit, tmp_path).as_props(),
        "profile": PROFILE,
        "authenticate_name": SERVICE,
        **changes,
    }


def group_props(unit: EmulatedBigip, tmp_path: Path, revision: str = "r1") -> dict[str, Any]:
    return {
        "__provider": "serialized",
        **management(unit, tmp_path).as_props(),
        "device_group": "ws1-ha",
        "revision": revision,
    }


# --- authenticate-name ----------------------------------------------------------------------


def test_create_sets_the_name_check_and_verifies_it(bigip, tmp_path):
    provider = configured(ServerSslNameCheckProvider())
    result = provider.create(name_check_props(bigip, tmp_path))

    assert bigip.server_ssl_profiles[PROFILE]["authenticateName"] == SERVICE
    assert result.id == PROFILE
    assert result.outs["found_authenticate_name"] == SERVICE
    calls = bigip.requests()
    path = "/mgmt/tm/ltm/profile/server-ssl/~Common~ws1-access.corp.example-serverssl"
    assert calls[("PATCH", path)] == 1 and calls[("GET", path)] == 1, calls


def test_the_password_is_never_an_input_an_output_or_in_the_serialized_provider(bigip, tmp_path):
    props = name_check_props(bigip, tmp_path)
    provider = configured(ServerSslNameCheckProvider())
    outs = provider.create(props).outs
    assert PASSWORD not in repr(props) and PASSWORD not in repr(outs)
    assert props["password_key"] == "bigipPassword"
    serialized = serialize_provider(ServerSslNameCheckProvider())
    assert PASSWORD not in serialized and len(serialized) < 1024, len(serialized)


def test_refresh_sees_the_name_check_changed_on_the_device_and_up_repairs_it(bigip, tmp_path):
    provider = configured(ServerSslNameCheckProvider())
    props = name_check_props(bigip, tmp_path)
    outs = provider.create(props).outs
    bigip.server_ssl_profiles[PROFILE]["authenticateName"] = "none"  # by hand, on the device

    refreshed = provider.read(PROFILE, outs).outs
    assert refreshed["found_authenticate_name"] == ""
    diff = provider.diff(PROFILE, refreshed, props)
    assert diff.changes is True and not diff.replaces, diff
    repaired = provider.update(PROFILE, refreshed, props).outs
    assert repaired["found_authenticate_name"] == SERVICE
    assert bigip.server_ssl_profiles[PROFILE]["authenticateName"] == SERVICE
    assert provider.diff(PROFILE, repaired, props).changes is False


def test_no_change_makes_no_request(bigip, tmp_path):
    provider = configured(ServerSslNameCheckProvider())
    props = name_check_props(bigip, tmp_path)
    outs = provider.create(props).outs
    bigip.reset_counters()
    provider.check(props, props)
    assert provider.diff(PROFILE, outs, props).changes is False
    assert sum(bigip.requests().values()) == 0


def test_another_profile_is_a_replacement(bigip, tmp_path):
    provider = configured(ServerSslNameCheckProvider())
    outs = provider.create(name_check_props(bigip, tmp_path)).outs
    diff = provider.diff(PROFILE, outs, name_check_props(bigip, tmp_path, profile="/Common/x"))
    assert diff.replaces == ["profile"], diff


def test_a_device_that_refuses_the_name_check_fails_the_step(bigip, tmp_path):
    bigip.refuse_authenticate_name = True
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider()).create(name_check_props(bigip, tmp_path))
    assert "was refused with HTTP 400" in str(error.value), error.value
    assert PASSWORD not in str(error.value)


def test_a_device_that_ignores_the_name_check_fails_the_step(bigip, tmp_path):
    bigip.ignore_authenticate_name = True
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider()).create(name_check_props(bigip, tmp_path))
    assert str(error.value) == (
        f"BIG-IP 127.0.0.1:{bigip.port}: server-SSL profile {PROFILE} was sent authenticateName "
        f"{SERVICE} but holds none; the name check is NOT in place. Check the profile on the "
        f"device (tmsh list ltm profile server-ssl {PROFILE} authenticate-name)."
    )


def test_a_missing_profile_is_reported_by_refresh_and_refused_by_up(bigip, tmp_path):
    provider = configured(ServerSslNameCheckProvider())
    props = name_check_props(bigip, tmp_path)
    outs = provider.create(props).outs
    del bigip.server_ssl_profiles[PROFILE]
    refreshed = provider.read(PROFILE, outs).outs
    assert refreshed["found_authenticate_name"] == ""
    with pytest.raises(BigipError, match="refused with HTTP 404"):
        provider.update(PROFILE, refreshed, props)


def test_the_password_is_not_sent_to_a_management_api_the_ca_does_not_verify(bigip, tmp_path):
    (tmp_path / "bigip-ca.pem").write_text(trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider()).create(name_check_props(bigip, tmp_path))
    assert "the management certificate is not verified by management_ca_path" in str(error.value)
    assert bigip.requests()[LOGIN] == 0, "the login (with the password) must never be sent"


def test_a_wrong_password_is_a_clear_error_without_the_password(bigip, tmp_path):
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider(), "wrong-password").create(
            name_check_props(bigip, tmp_path)
        )
    assert "POST /mgmt/shared/authn/login was refused with HTTP 401" in str(error.value)
    assert "wrong-password" not in str(error.value)


def test_no_password_configured_says_where_to_put_it(bigip, tmp_path, monkeypatch):
    monkeypatch.delenv("BIGIP_PASSWORD", raising=False)
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider(), None).create(name_check_props(bigip, tmp_path))
    assert "pulumi config set --secret bigipPassword" in str(error.value)
    assert sum(bigip.requests().values()) == 0


def test_check_refuses_a_bare_profile_name(bigip, tmp_path):
    result = ServerSslNameCheckProvider().check({}, name_check_props(bigip, tmp_path, profile="x"))
    assert [(f.property, f.reason) for f in result.failures] == [
        ("profile", "'x' is not a full BIG-IP path, e.g. /Common/x.")
    ]


# --- device groups -------------------------------------------------------------------------


@pytest.mark.parametrize("auto_sync", [True, False])
def test_the_group_is_checked_while_planning_and_synced_only_without_auto_sync(
    bigip, tmp_path, auto_sync
):
    bigip.add_device_group("ws1-ha", auto_sync=auto_sync)
    check, sync = configured(DeviceGroupCheckProvider()), configured(DeviceGroupSyncProvider())
    props = group_props(bigip, tmp_path)

    assert check.check({}, props).failures == []
    created = check.create(props).outs
    assert (created["auto_sync"], created["failover_state"]) == (auto_sync, "ACTIVE")
    bigip.mark_changes_pending()  # the entry's changes, applied between check and sync
    synced = sync.create(props).outs
    assert synced["auto_sync"] is auto_sync
    assert bigip.syncs == ([] if auto_sync else ["/Common/ws1-ha"])
    writes = bigip.requests()[("POST", "/mgmt/tm/cm")]
    assert writes == (0 if auto_sync else 1)


def test_the_check_reads_nothing_when_the_declared_configuration_did_not_change(bigip, tmp_path):
    bigip.add_device_group("ws1-ha", auto_sync=False)
    check = configured(DeviceGroupCheckProvider())
    outs = check.create(group_props(bigip, tmp_path)).outs
    bigip.reset_counters()
    assert check.check(outs, group_props(bigip, tmp_path)).failures == []
    assert sum(bigip.requests().values()) == 0
    changed = group_props(bigip, tmp_path, "r2")
    assert check.check(outs, changed).failures == []
    assert bigip.requests()[LOGIN] == 1, bigip.requests()
    assert bigip.writes() == 0, "planning only reads"
    assert check.diff("ws1-ha", outs, changed).replaces == ["revision"]


def test_a_standby_unit_is_refused_while_planning_naming_the_active_unit(bigip, tmp_path):
    bigip.add_device_group("ws1-ha", auto_sync=False)
    bigip.failover_state = "standby"
    bigip.peers = [
        {"name": "bigip2.local.test", "managementIp": "10.1.1.2", "failoverState": "active"}
    ]
    result = configured(DeviceGroupCheckProvider()).check({}, group_props(bigip, tmp_path))
    assert [(f.property, f.reason) for f in result.failures] == [
        (
            "device_group",
            f"BIG-IP 127.0.0.1:{bigip.port} is STANDBY, not the active unit of device group "
            "ws1-ha; changes must go to the active unit (10.1.1.2): set address to its "
            "management address, then run again.",
        )
    ]
    assert bigip.writes() == 0


def test_a_missing_group_is_refused_while_planning(bigip, tmp_path):
    result = configured(DeviceGroupCheckProvider()).check({}, group_props(bigip, tmp_path))
    assert [(f.property, f.reason) for f in result.failures] == [
        (
            "device_group",
            f"BIG-IP 127.0.0.1:{bigip.port}: device group ws1-ha does not exist; expected the "
            "config-sync group this unit belongs to (tmsh list cm device-group), or remove "
            "device_group for a standalone BIG-IP.",
        )
    ]


def test_deleting_the_check_syncs_the_deletions_to_the_group(bigip, tmp_path):
    bigip.add_device_group("ws1-ha", auto_sync=False)
    check = configured(DeviceGroupCheckProvider())
    outs = check.create(group_props(bigip, tmp_path)).outs
    check.delete("ws1-ha", outs)
    assert bigip.syncs == ["/Common/ws1-ha"]


def test_refresh_finds_changes_pending_and_up_syncs_them(bigip, tmp_path):
    bigip.add_device_group("ws1-ha", auto_sync=False)
    sync = configured(DeviceGroupSyncProvider())
    props = group_props(bigip, tmp_path)
    outs = sync.create(props).outs
    bigip.mark_changes_pending()
    refreshed = sync.read("ws1-ha", outs).outs
    assert refreshed["sync_status"] == "Changes Pending"
    assert sync.diff("ws1-ha", refreshed, props).changes is True
    sync.update("ws1-ha", refreshed, props)
    assert bigip.syncs == ["/Common/ws1-ha", "/Common/ws1-ha"]
    assert bigip.sync_status == "In Sync"


@pytest.mark.parametrize(
    "provider", [ServerSslNameCheckProvider, DeviceGroupCheckProvider, DeviceGroupSyncProvider]
)
def test_serialized_providers_stay_small(provider):
    assert len(serialize_provider(provider())) < 1024


def test_with_sslkeylogfile_set_nothing_is_sent(bigip, tmp_path, monkeypatch):
    """The login carries the BIG-IP password; TLS keys written to SSLKEYLOGFILE would let
    whoever holds that file read it (urllib3 honours the variable in its own contexts)."""
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    monkeypatch.delenv("WS1_ACCESS_ALLOW_SSLKEYLOGFILE", raising=False)
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider()).create(name_check_props(bigip, tmp_path))
    assert "not logging in to the management API" in str(error.value)
    assert "WS1_ACCESS_ALLOW_SSLKEYLOGFILE=true" in str(error.value)
    assert sum(bigip.requests().values()) == 0
    assert not (tmp_path / "keys.log").exists()


def test_a_failed_request_keeps_no_request_in_its_exception_chain(bigip, tmp_path):
    """The requests exception holds the request, whose body may be the login with the
    password: neither __cause__ nor __context__ may keep it."""
    props = name_check_props(bigip, tmp_path)
    bigip.stop()
    with pytest.raises(BigipError) as error:
        configured(ServerSslNameCheckProvider()).create(props)
    assert "did not answer POST /mgmt/shared/authn/login" in str(error.value)
    assert error.value.__cause__ is None and error.value.__context__ is None
