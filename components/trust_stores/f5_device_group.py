"""Dynamic resources: a BIG-IP device group checked before anything changes and synced after.

The per-object pulumi_f5bigip resources talk to one management address, and a management
address belongs to one unit; nothing in them syncs a device group (shared/reference/
f5-bigip.md, "HA pairs and device groups"). For an F5 entry with `device_group`:

* `DeviceGroupCheck` comes first (every device resource of the entry depends on it). While
  planning (`check`, whenever the declared configuration changed) and again before applying,
  it reads, and only reads: the group (`GET /mgmt/tm/cm/device-group/~Common~<group>`: must
  exist; `autoSync`), and whether the addressed unit is the active one
  (`GET /mgmt/tm/cm/failover-status`, `entries.<...>/0.nestedStats.entries.status.description`;
  the shape is documented by F5's REST reference and read the same way by F5's own
  f5-cloud-libs). A standby unit is refused, naming the active unit from
  `GET /mgmt/tm/cm/device` (`failoverState`, `managementIp`, go-bigip `device.go`).
  Its input `revision` is a digest of everything the entry declares on the device, and it is
  replaced when that changes, so that its deletion comes after every other deletion of the
  run: that is when it syncs again, so removed objects leave the peers too.
* `DeviceGroupSync` comes last (it depends on every device resource). When the declared
  configuration changed and the group does not sync automatically, it runs
  `POST /mgmt/tm/cm {"command": "run", "utilCmdArgs": "config-sync to-group <group>"}` (the
  request F5's Ansible module bigip_configsync_action sends). Refresh reads
  `GET /mgmt/tm/cm/sync-status`; "Changes Pending" makes the next `up` sync again.

A sync pushes the active unit's whole configuration to the group, including changes someone
else left pending: that is what config-sync does, and why the group is read before anything.
Nothing here is read or written when the declared configuration did not change.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, UpdateResult

from components.dynamic import is_unknown
from components.trust_stores.bigip_rest import (
    BigipError,
    BigipProvider,
    BigipSession,
    Management,
    tilde_path,
)

__all__ = [
    "DeviceGroupCheck",
    "DeviceGroupCheckProvider",
    "DeviceGroupSync",
    "DeviceGroupSyncProvider",
]

_INPUT_KEYS = (
    "address",
    "port",
    "username",
    "password_key",
    "management_ca_path",
    "device_group",
    "revision",
)
_IN_SYNC = "In Sync"


class DeviceGroupCheckProvider(BigipProvider):
    replace_keys = ("address", "port", "device_group", "revision")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        # Read-only, and only when something is about to change on the device.
        revision = news.get("revision")
        if not is_unknown(revision) and olds.get("revision") == revision:
            return CheckResult(news, [])
        try:
            _inspect(self, news)
        except BigipError as problem:
            return CheckResult(news, [CheckFailure("device_group", str(problem))])
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(
            id_=str(props["device_group"]), outs=_outputs(props, _inspect(self, props))
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_outputs(news, _inspect(self, news)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # Refresh records a failover without refusing it: the next change is refused instead.
        return ReadResult(id_=id_, outs=_outputs(props, _inspect(self, props, refuse=False)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Deleted last of the entry's resources (see the module docstring): sync deletions.
        with self.session(props) as bigip:
            if not _auto_sync(bigip, props):
                _sync(bigip, props)


class DeviceGroupSyncProvider(BigipProvider):
    replace_keys = ("address", "port", "device_group")

    def needs_repair(self, olds: dict[str, Any], _news: dict[str, Any]) -> bool:
        return olds.get("auto_sync") is False and olds.get("sync_status") not in (None, _IN_SYNC)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["device_group"]), outs=self._sync(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._sync(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with self.session(props) as bigip:
            status = _sync_status(bigip)
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs["auto_sync"] = props.get("auto_sync")
        outs["sync_status"] = status
        return ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the check resource, deleted after everything else, syncs deletions

    def _sync(self, props: dict[str, Any]) -> dict[str, Any]:
        with self.session(props) as bigip:
            auto_sync = _auto_sync(bigip, props)
            if not auto_sync:
                _sync(bigip, props)
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs["auto_sync"] = auto_sync
        outs["sync_status"] = _IN_SYNC if not auto_sync else None
        return outs


def _inspect(
    provider: BigipProvider, props: dict[str, Any], *, refuse: bool = True
) -> dict[str, Any]:
    """Read the group and the unit's failover state; raise when changes must not go here."""
    management = Management.from_props(props)
    group = str(props["device_group"])
    with provider.session(props) as bigip:
        auto_sync = _auto_sync(bigip, props)
        status = _nested_status(bigip.get("/mgmt/tm/cm/failover-status"))
        if status != "ACTIVE" and refuse:
            active = [
                str(device.get("managementIp") or device.get("name"))
                for device in bigip.get("/mgmt/tm/cm/device").get("items", [])
                if str(device.get("failoverState", "")).lower() == "active"
            ]
            raise BigipError(
                f"{management.where} is {status or 'in an unknown failover state'}, not the "
                f"active unit of device group {group}; changes must go to the active unit "
                f"({', '.join(active) or 'none is active now'}): set address to its "
                "management address, then run again."
            )
    return {"auto_sync": auto_sync, "failover_state": status}


def _auto_sync(bigip: BigipSession, props: dict[str, Any]) -> bool:
    group = str(props["device_group"])
    try:
        found = bigip.get(f"/mgmt/tm/cm/device-group/{tilde_path('/Common/' + group)}")
    except BigipError as error:
        if error.status != 404:
            raise
        raise BigipError(
            f"{Management.from_props(props).where}: device group {group} does not exist; "
            "expected the config-sync group this unit belongs to (tmsh list cm device-group), "
            "or remove device_group for a standalone BIG-IP.",
            404,
        ) from None
    return str(found.get("autoSync", "")).lower() == "enabled"


def _sync(bigip: BigipSession, props: dict[str, Any]) -> None:
    command = f"config-sync to-group {props['device_group']}"
    bigip.post("/mgmt/tm/cm", {"command": "run", "utilCmdArgs": command})


def _sync_status(bigip: BigipSession) -> str:
    return _nested_status(bigip.get("/mgmt/tm/cm/sync-status"), upper=False)


def _nested_status(document: dict[str, Any], *, upper: bool = True) -> str:
    """`entries.<self link>/0.nestedStats.entries.status.description` of a stats document."""
    for entry in (document.get("entries") or {}).values():
        stats = (entry.get("nestedStats") or {}).get("entries") or {}
        value = str((stats.get("status") or {}).get("description") or "")
        return value.upper() if upper else value
    return ""


def _outputs(props: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    outs = {key: props[key] for key in _INPUT_KEYS if key in props}
    outs.update(found)
    return outs


class DeviceGroupCheck(pulumi.dynamic.Resource, module="f5", name="DeviceGroupCheck"):
    """The device group exists and the addressed unit is active (read before any change)."""

    auto_sync: pulumi.Output[bool]
    failover_state: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        management: Management,
        device_group: str,
        revision: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **management.as_props(),
            "device_group": device_group,
            "revision": revision,
            "auto_sync": None,
            "failover_state": None,
        }
        super().__init__(DeviceGroupCheckProvider(), name, props, opts)


class DeviceGroupSync(pulumi.dynamic.Resource, module="f5", name="DeviceGroupSync"):
    """Config-sync of the device group after the entry's changes, unless it auto-syncs."""

    auto_sync: pulumi.Output[bool]
    sync_status: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        management: Management,
        device_group: str,
        revision: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **management.as_props(),
            "device_group": device_group,
            "revision": revision,
            "auto_sync": None,
            "sync_status": None,
        }
        super().__init__(DeviceGroupSyncProvider(), name, props, opts)
