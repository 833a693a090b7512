"""certificate_method: lifecycle_manager. Aria Suite Lifecycle (formerly vRealize Suite
Lifecycle Manager) replaces the cluster's product certificate with one from the operator's CA.

Evidence, all public: VMware's Postman collection "vRealize Life Cycle Manager Public API
8.4.0" (vmware/vrealize-suite-lifecycle-manager-sdk) for the paths and the locker import body
`{alias, privateKey, certificateChain, passphrase}`; VMware's PowerValidatedSolutions module
(Get-vRSLCMLockerCertificate, Watch-vRSLCMRequest, Get-vRSLCMProductNode) for the answers this
route reads: the locker list `{certificates: [{alias, vmid}]}`, operations answering
`{requestId}`, a request `{vmid, state}` whose state leaves INPROGRESS for COMPLETED (or
another final state), and vIDM as environment `globalenvironment`, product `vidm`.

Lifecycle changes every node in one request, so the rolling guard cannot stop between nodes:
instead, before anything is sent, the new certificate must verify against what the load
balancers trust for every name it carries; afterwards every node is verified again, one by
one, by ApplianceCertificate. The certificate is imported (not generated in the locker):
the issuing CA is then the operator's, known while planning, and the load balancers trust it
before the replacement (no public answer says which field of a locker certificate holds
its chain, so the program does not read it).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from components import pki
from components.appliance.client import (
    ApplianceError,
    NodeAddress,
    ServedNode,
    key_log_refusal,
    request_timeout,
)
from components.appliance.routes import CertificateRoute, Credential, route_secret
from components.appliance.routes.issuing import (
    issue_node_certificate,
    load_issuing_ca,
    wait_until_served,
)

__all__ = ["LifecycleRoute"]

LOCKER = "/lcm/locker/api/v2/certificates"
REQUESTS = "/lcm/request/api/v2/requests"
_IN_PROGRESS = ("INPROGRESS", "CREATED", "SUBMITTED")  # anything else is final


class LifecycleRoute(CertificateRoute):
    """Aria Suite Lifecycle replaces the product certificate: one request, every node."""

    changes_every_node = True

    def __init__(
        self, route: Mapping[str, Any], credential: Credential, trusted_roots_pem: str
    ) -> None:
        self._route = route
        self._credential = credential
        self._trusted_pem = trusted_roots_pem
        self._installed: Any = None  # (certificate, CA PEM) once Lifecycle replaced it

    def _secret(self, setting: str) -> str | None:
        default = {
            "password_key": "lifecycleManagerPassword",
            "issuing_ca_key_key": "lifecycleIssuingCaKey",
        }[setting]
        return route_secret(self._credential, self._route, setting, default)

    def missing(self) -> list[str]:
        problems = [
            f"the lifecycle_manager route needs the secret config key {self._route[setting]} "
            f"(lifecycle_manager.{setting}), which is not set"
            for setting in ("password_key", "issuing_ca_key_key")
            if self._secret(setting) is None
        ]
        if not problems:
            try:
                self._issuing_ca()
            except ApplianceError as problem:
                problems.append(str(problem))
        return problems

    def _issuing_ca(self) -> tuple[Any, Any]:
        return load_issuing_ca(
            str(self._route["issuing_ca_pem"]),
            self._secret("issuing_ca_key_key") or "",
            "lifecycle_manager.issuing_ca_key_key",
        )

    def install(
        self, node: NodeAddress, current: ServedNode, common_name: str, sans: Sequence[str]
    ) -> ServedNode:
        if self._installed is None:
            self._installed = self._replace(common_name, sans)
        certificate, ca_pem = self._installed
        # Lifecycle reported the replacement complete; the node is observed all the same.
        return wait_until_served(
            node, certificate, ca_pem, 60.0, "after Lifecycle's request completed"
        )

    def _replace(self, common_name: str, sans: Sequence[str]) -> tuple[Any, str]:
        ca, ca_key = self._issuing_ca()
        certificate, key_pem = issue_node_certificate(ca, ca_key, common_name, sans)
        trusted = pki.load_bundle(self._trusted_pem, "the planned trusted root CA bundle")
        for name in sans:
            # Every node changes at once: nothing is sent unless the load balancers would
            # accept the new certificate for every name they may check.
            pki.verify_served_chain(
                [certificate], trusted, name, f"the certificate for {name} Lifecycle would install"
            )
        ca_pem = pki.bundle_pem([ca])
        alias = f"ws1-{common_name}-{pki.sha256_fingerprint(certificate).replace(':', '')[:16]}"
        with self._session() as api:
            api.call(
                "POST",
                f"{LOCKER}/import",
                "import the certificate into the locker",
                {
                    "alias": alias,
                    "privateKey": key_pem,
                    "certificateChain": pki.bundle_pem([certificate]) + ca_pem,
                    "passphrase": "",
                },
            )
            listed = api.call("GET", LOCKER, "list the locker certificates")
            vmid = next(
                (
                    str(entry.get("vmid"))
                    for entry in listed.get("certificates") or []
                    if isinstance(entry, dict) and entry.get("alias") == alias
                ),
                None,
            )
            if not vmid:
                raise ApplianceError(
                    f"Aria Suite Lifecycle: the locker does not list the certificate {alias} "
                    "just imported; nothing was replaced."
                )
            product = (
                f"/lcm/lcops/api/v2/environments/{self._route['environment_id']}/products/"
                f"{self._route['product_id']}/certificates/{vmid}"
            )
            api.wait(api.call("POST", f"{product}/pre-validate", "pre-validate"), "pre-validate")
            api.wait(api.call("PUT", product, "replace the product certificate"), "replace")
        return certificate, ca_pem

    def _session(self) -> _Lifecycle:
        return _Lifecycle(self._route, self._secret("password_key") or "")


class _CaAdapter(HTTPAdapter):
    """TLS verified against the management CA only (and the host name), never the system's."""

    def __init__(self, ca_pem: str) -> None:
        self._context = ssl.create_default_context(cadata=ca_pem)
        # create_default_context honours SSLKEYLOGFILE; key_log_refusal() decides about that.
        self._context.keylog_filename = None  # type: ignore[assignment]
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


class _Lifecycle:
    """Basic auth over verified TLS; every answer read as JSON; errors without the password."""

    def __init__(self, route: Mapping[str, Any], password: str) -> None:
        refusal = key_log_refusal()
        if refusal:  # the requests carry the Lifecycle password and the node's private key
            raise ApplianceError(f"Aria Suite Lifecycle: not sending any request: {refusal}")
        self._route = route
        self._base = f"https://{route['address']}:{int(route['port'])}"
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.mount("https://", _CaAdapter(str(route["management_ca_pem"])))
        self._session.auth = (str(route["username"]), password)

    def __enter__(self) -> _Lifecycle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._session.close()

    def call(
        self, method: str, path: str, what: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        where = f"Aria Suite Lifecycle ({self._route['address']})"
        reason = ""
        try:
            answer = self._session.request(
                method,
                self._base + path,
                json=body,
                headers={"Accept": "application/json"},
                timeout=request_timeout(),
                allow_redirects=False,
            )
        except requests.exceptions.SSLError:
            reason = (
                "its HTTPS certificate did not verify against lifecycle_manager."
                "management_ca_path for that address (SSLError), so nothing was sent"
            )
            answer = None
        except requests.RequestException as problem:
            reason = type(problem).__name__
            answer = None
        if answer is None:
            # Outside the except: the request (with its body: the private key) stays out of
            # the exception chain.
            raise ApplianceError(f"{where}: could not {what}: {reason}.")
        if answer.status_code == 401:
            raise ApplianceError(
                f"{where}: the user {self._route['username']} was refused (HTTP 401); check the "
                f"secret config key {self._route['password_key']}."
            )
        if not 200 <= answer.status_code < 300:
            raise ApplianceError(
                f"{where}: could not {what}: HTTP {answer.status_code} for {method} {path}."
            )
        parsed: Any = None
        with suppress(ValueError):
            parsed = answer.json()
        if not isinstance(parsed, dict):
            raise ApplianceError(
                f"{where}: could not {what}: the answer to {method} {path} is not a JSON object."
            )
        return parsed

    def wait(self, answer: Mapping[str, Any], step: str) -> None:
        """Poll the request an operation started until it is final, within the deadline."""
        request_id = answer.get("requestId")
        where = f"Aria Suite Lifecycle ({self._route['address']})"
        if not isinstance(request_id, str) or not request_id:
            raise ApplianceError(f"{where}: {step} answered without a requestId.")
        seconds = float(self._route["request_timeout_seconds"])
        deadline = time.monotonic() + seconds
        pause, state = 0.1, "?"
        while time.monotonic() < deadline:
            request = self.call("GET", f"{REQUESTS}/{request_id}", f"read request {request_id}")
            state = str(request.get("state", "?"))
            if state == "COMPLETED":
                return
            if state not in _IN_PROGRESS:
                raise ApplianceError(
                    f"{where}: request {request_id} ({step}) ended {state}; nothing more was "
                    f"sent. Its causes: GET {REQUESTS}/{request_id}/error-causes, or the "
                    "Lifecycle UI (Requests)."
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 5.0)
        raise ApplianceError(
            f"{where}: request {request_id} ({step}) was still {state} after {seconds:g} s "
            "(lifecycle_manager.request_timeout_seconds). It may still finish: check it in the "
            "Lifecycle UI (Requests), then run `pulumi up` again."
        )
