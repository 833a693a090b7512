"""iControl REST for this program's own BIG-IP resources: one management session, opened and closed
inside one provider method.

The wire protocol is the one the F5 provider itself speaks (terraform-provider-bigip v1.26.0,
vendored go-bigip `bigip.go`): `POST /mgmt/shared/authn/login` with {"username", "password",
"loginProviderName": "tmos"}, then the header `X-F5-Auth-Token` on every request; object
paths with "~" for "/"; errors as JSON {"code", "message", ...} with an HTTP status >= 400.
The token is deleted when the session ends (`DELETE /mgmt/shared/authz/tokens/<token>`).

TLS: with `management_ca_path` the management certificate must chain to that CA file and
match the address, and the handshake is verified before the login (and its password) is
sent. The F5 provider ADDS that file to the system roots; this client trusts the file only.
A stack that turned verification off (validate_management_certificate: false) is warned
about in every preview; this client then follows the same choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from components.appliance.client import key_log_refusal
from components.dynamic import TrustProvider
from components.settings import BIGIP_PASSWORD_VARIABLE

__all__ = [
    "BIGIP_PASSWORD_VARIABLE",
    "BigipError",
    "BigipProvider",
    "BigipSession",
    "Management",
    "open_session",
    "tilde_path",
]

_TIMEOUT = 15.0


class BigipError(RuntimeError):
    """A BIG-IP answered with an error, or could not be reached; `status` 0 for the latter."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Management:
    """Where a BIG-IP's management API is and who logs in; never the password."""

    address: str
    port: int
    username: str
    password_key: str  # the secret config key holding the password
    ca_path: str  # the management CA file; "" when the stack turned verification off

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> Management:
        return cls(
            address=str(props["address"]),
            port=int(props["port"]),
            username=str(props["username"]),
            password_key=str(props["password_key"]),
            ca_path=str(props.get("management_ca_path") or ""),
        )

    def as_props(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "username": self.username,
            "password_key": self.password_key,
            "management_ca_path": self.ca_path,
        }

    @property
    def where(self) -> str:
        return f"BIG-IP {self.address}:{self.port}"


def tilde_path(full_path: str) -> str:
    """`/Common/x` -> `~Common~x`, the form iControl REST takes in a URL."""
    return full_path.replace("/", "~")


class BigipSession:
    """An authenticated session: GET, PATCH and POST of JSON documents."""

    def __init__(self, management: Management, http: requests.Session) -> None:
        self._management = management
        self._http = http

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def patch(self, path: str, document: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("PATCH", path, document)

    def post(self, path: str, document: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, document)

    def _request(
        self, method: str, path: str, document: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        url = f"https://{self._management.address}:{self._management.port}{path}"
        failure = ""
        try:
            response = self._http.request(method, url, json=document, timeout=_TIMEOUT)
        except requests.exceptions.SSLError as error:
            failure = _tls_problem(self._management, error)
        except requests.exceptions.RequestException as error:
            failure = (
                f"{self._management.where}: the management API did not answer {method} {path} "
                f"({type(error).__name__})."
            )
        if failure:
            # Raised here, outside the `except`: the requests exception holds the request,
            # whose body may be the login with the password; __context__ must not keep it.
            raise BigipError(failure)
        if response.status_code >= 400:
            raise BigipError(
                f"{self._management.where}: {method} {path} was refused with HTTP "
                f"{response.status_code}: {_message(response)}",
                response.status_code,
            )
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise BigipError(
                f"{self._management.where}: {method} {path} answered something that is not "
                "a JSON object; expected an iControl REST document."
            )
        return answer


@contextmanager
def open_session(management: Management, password: str) -> Iterator[BigipSession]:
    """Log in with a token; the token is deleted again when the block ends."""
    refusal = key_log_refusal()
    if refusal:  # the login carries the BIG-IP password (see preflight)
        raise BigipError(f"{management.where}: not logging in to the management API: {refusal}")
    http = requests.Session()
    # The file alone, not the system roots: the management CA is the only one that counts.
    http.verify = management.ca_path or False
    http.trust_env = False  # no proxy from the environment sees the password
    try:
        session = BigipSession(management, http)
        login = session.post(
            "/mgmt/shared/authn/login",
            {"username": management.username, "password": password, "loginProviderName": "tmos"},
        )
        token = str((login.get("token") or {}).get("token") or "")
        if not token:
            raise BigipError(f"{management.where}: the login answer carries no token.")
        http.headers["X-F5-Auth-Token"] = token
        try:
            yield session
        finally:
            # A token left behind expires by itself (1200 s): nothing to repair.
            with contextlib.suppress(requests.exceptions.RequestException):
                http.delete(
                    f"https://{management.address}:{management.port}"
                    f"/mgmt/shared/authz/tokens/{token}",
                    timeout=_TIMEOUT,
                )
    finally:
        http.close()


class BigipProvider(TrustProvider):
    """Base of the BIG-IP REST resources: the password by config key name, a session per call."""

    @contextmanager
    def session(self, props: Mapping[str, Any]) -> Iterator[BigipSession]:
        management = Management.from_props(props)
        password = self.credential(management.password_key, BIGIP_PASSWORD_VARIABLE)
        if password is None:
            raise BigipError(
                f"{management.where}: no BIG-IP password is configured; set it with `pulumi "
                f"config set --secret {management.password_key}` or the "
                f"{BIGIP_PASSWORD_VARIABLE} environment variable."
            )
        with open_session(management, password) as session:
            yield session


def _message(response: requests.Response) -> str:
    """The `message` of an iControl REST error document, cut short; never the request."""
    try:
        document = response.json()
    except ValueError:
        return "(no JSON error document)"
    message = str(document.get("message", "")) if isinstance(document, dict) else ""
    return (message[:300] or "(no message)").rstrip(".") + "."


def _tls_problem(management: Management, error: Exception) -> str:
    if management.ca_path:
        return (
            f"{management.where}: the management certificate is not verified by "
            f"management_ca_path ({management.ca_path}) for {management.address}; nothing "
            "was sent. Expected the CA that signs the BIG-IP management certificate."
        )
    return f"{management.where}: TLS failed ({type(error).__name__}); nothing was sent."
