"""Dynamic resource: the name a BIG-IP server-SSL profile checks in every node certificate.

BIG-IP checks the name (CN and SAN) of a server certificate only when the server-SSL profile
has Authenticate Name set (REST field `authenticateName`, tmsh `authenticate-name`). The
pulumi_f5bigip ProfileServerSsl resource cannot set it (terraform-provider-bigip issue 1168),
and its go-bigip struct has no such field, so the provider's own PATCH never sends it: a value
set here survives the provider's updates (shared/reference/f5-bigip.md, reviewed against
v1.26.0). So this resource sets it on the managed profile itself over iControl REST:

* create/update: `PATCH /mgmt/tm/ltm/profile/server-ssl/~P~name {"authenticateName": ...}`,
  then `GET` to verify that the device really holds it (a PATCH answered 200 proves nothing);
* refresh: `GET`, recording what the device holds in `found_authenticate_name`; a value
  that differs makes the next `up` set it again;
* delete: nothing. The profile carrying the check is deleted by its own resource right after;
  clearing the check first would only open a window in which any certificate name passes.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, UpdateResult

from components.dynamic import is_unknown
from components.trust_stores.bigip_rest import BigipError, BigipProvider, Management, tilde_path

__all__ = ["ServerSslNameCheck", "ServerSslNameCheckProvider"]

_PROFILES = "/mgmt/tm/ltm/profile/server-ssl/"
_FULL_PATH = re.compile(r"/[A-Za-z0-9_.][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)
_INPUT_KEYS = (
    "address",
    "port",
    "username",
    "password_key",
    "management_ca_path",
    "profile",
    "authenticate_name",
)


class ServerSslNameCheckProvider(BigipProvider):
    # Another device or another profile is another object: set it there, leave the old alone.
    replace_keys = ("address", "port", "profile")

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        profile, name = news.get("profile"), news.get("authenticate_name")
        if not is_unknown(profile) and not _FULL_PATH.fullmatch(str(profile or "")):
            failures.append(
                CheckFailure("profile", f"{profile!r} is not a full BIG-IP path, e.g. /Common/x.")
            )
        if not is_unknown(name) and not _HOST_NAME.fullmatch(str(name or "")):
            failures.append(
                CheckFailure(
                    "authenticate_name",
                    f"{name!r} is not a lower-case host name, e.g. access.corp.example.",
                )
            )
        return CheckResult(news, failures)

    def needs_repair(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        found = olds.get("found_authenticate_name")
        return found is not None and found != news.get("authenticate_name")

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["profile"]), outs=self._set(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._set(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        try:
            with self.session(props) as bigip:
                found = bigip.get(_PROFILES + tilde_path(str(props["profile"])))
        except BigipError as error:
            if error.status != 404:
                raise
            found = {}  # the profile is gone: its own resource reports that; record the loss
        outs["found_authenticate_name"] = _authenticate_name(found)
        return ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None

    def _set(self, props: dict[str, Any]) -> dict[str, Any]:
        profile, wanted = str(props["profile"]), str(props["authenticate_name"])
        path = _PROFILES + tilde_path(profile)
        with self.session(props) as bigip:
            bigip.patch(path, {"authenticateName": wanted})
            found = _authenticate_name(bigip.get(path))
        if found != wanted:
            raise BigipError(
                f"{Management.from_props(props).where}: server-SSL profile {profile} was sent "
                f"authenticateName {wanted} but holds {found or 'none'}; the name check is NOT "
                "in place. Check the profile on the device (tmsh list ltm profile server-ssl "
                f"{profile} authenticate-name)."
            )
        outs = {key: props[key] for key in _INPUT_KEYS if key in props}
        outs["found_authenticate_name"] = found
        return outs


def _authenticate_name(profile: dict[str, Any]) -> str:
    value = str(profile.get("authenticateName") or "")
    return "" if value == "none" else value


class ServerSslNameCheck(pulumi.dynamic.Resource, module="f5", name="ServerSslNameCheck"):
    """Authenticate Name on a server-SSL profile, set and verified over iControl REST."""

    found_authenticate_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        management: Management,
        profile: str,
        authenticate_name: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **management.as_props(),
            "profile": profile,
            "authenticate_name": authenticate_name,
            "found_authenticate_name": None,
        }
        super().__init__(ServerSslNameCheckProvider(), name, props, opts)
