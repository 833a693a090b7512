"""certificate_method: lifecycle_manager. Aria Suite Lifecycle (formerly vRealize Suite
Lifecycle Manager) replaces the cluster's product certificate with one from the operator's CA.

Evidence, all public:
- VMware's Postman collection "vRealize Life Cycle Manager Public API 8.4.0"
  (vmware/vrealize-suite-lifecycle-manager-sdk, samples/postman/apis/VMware vRealize Life
  Cycle Manager Public API 8.4.0 .postman_collection.json, folders "Locker Certificates" and
  "Product Certificate"): the paths, the locker import body `{alias, privateKey,
  certificateChain, passphrase}`, pre-validate and PUT. It holds request bodies only.
- VMware's PowerValidatedSolutions module (vmware/power-validated-solutions-for-cloud-
  foundation, PowerValidatedSolutions.psm1: Get-vRSLCMLockerCertificate, Add-vRSLCMLocker
  Certificate, Watch-vRSLCMRequest): the locker list read as `certificates[]` with `alias`
  and `vmid` (it builds "locker:certificate:<vmid>:<alias>" from them), operations answering
  `{requestId}`, a request `{vmid, state}` whose state leaves INPROGRESS for COMPLETED (or
  another final state), and vIDM as environment `globalenvironment`, product `vidm`.
- VMware's API reference (developer.broadcom.com/xapis/vrealize-suite-lifecycle-manager/
  latest): "List All Certificates V2" (GET /lcm/locker/api/v2/certificates, query aliasQuery,
  from, size) answers CertificatePageDTO `{certificates: [{alias, vmid, sha1, subject, issuer,
  ...}], page, total}`; "Get Certificate Details By Vmid V2" (GET .../certificates/{vmid})
  answers CertificateResponseDTO `{alias, certChain, leafCert, key, certInfo, validity,
  vmid}`, its example certChain being the PEM chain, leaf first, with escaped line breaks.

Lifecycle changes every node in one request, so the rolling guard cannot stop between nodes:
instead, before anything is sent, the certificate must verify against what the load
balancers trust (the planned bundle, pins included) for every name it carries; afterwards
every node is verified again, one by one, by ApplianceCertificate.

Create or reuse. A locker certificate is reused, with no import, when it fits: a node of the
cluster serves it now (read from its TLS handshake, real X.509) with the Common Name and
exactly the SANs the program requires (the seed's rule), issued directly by the CA this route
issues from, valid for more than the stack's expiry_warning_days, trusted for every name;
and the locker lists it under the alias this program gives what it imports
(`ws1-<service FQDN>-<first 16 hex of its SHA-256>`). A certificate only the locker holds is
not looked for: the detail answer that would show it also carries the entry's private key
(`key`), so it is read only for a certificate the program already knows. Read from a detail
answer: `certChain`, nothing else (not `certInfo` or `validity`, whose text formats the
reference does not pin down; the X.509 itself says the same).

The root CA, found through the route: for the certificate about to be installed (reused or
just imported), the chain the locker holds must start with it, end at a root CA the load
balancers trust (pins) and verify for every name, before pre-validate. While planning
(preview never calls Lifecycle) the root CA the load balancers are given ahead of the change
is the operator's issuing CA (lifecycle_manager.issuing_ca).

Progress. Each Lifecycle request is polled with its id, state and elapsed time logged through
`pulumi.log.info` when its state changes and every PROGRESS_EVERY_SECONDS otherwise. In the
provider plugin the SDK has no engine to log to (pulumi/dynamic/__main__.py configures Settings
without an engine address, so pulumi/log.py prints "info: ..." to stderr), and the CLI shows a
dynamic provider plugin's stderr lines to the operator (pulumi/pulumi, sdk/go/common/resource/
plugin/plugin.go, newPlugin's runtrace: `ctx.Diag.Infoerrf` for pulumi-resource-pulumi-python,
which sdk/python/dist/pulumi-resource-pulumi-python starts with `python3 -u`).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import quote

import pulumi
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
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
# A request's state is logged when it changes, and at most this often while it does not.
PROGRESS_EVERY_SECONDS = 15.0


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
        self._served: Sequence[ServedNode] = ()

    def observed(self, nodes: Sequence[ServedNode]) -> None:
        self._served = nodes

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
            node,
            certificate,
            ca_pem,
            float(self._route.get("restart_timeout_seconds", 60)),
            "lifecycle_manager.restart_timeout_seconds, after Lifecycle's request completed",
        )

    def _replace(self, common_name: str, sans: Sequence[str]) -> tuple[Any, str]:
        ca, ca_key = self._issuing_ca()
        trusted = pki.load_bundle(self._trusted_pem, "the planned trusted root CA bundle")
        ca_pem = pki.bundle_pem([ca])
        # Decided before the first request: nothing is sent unless the certificate Lifecycle
        # would install is one the load balancers accept for every name.
        candidates = self._fitting_served_certificates(ca, common_name, sans, trusted)
        issued = None if candidates else self._issue(ca, ca_key, common_name, sans, trusted)
        with self._session() as api:
            locker = _Locker(api, common_name, sans, trusted)
            found = locker.reusable(candidates)
            if found is None:
                issued = issued or self._issue(ca, ca_key, common_name, sans, trusted)
                found = locker.add(*issued, ca_pem)
            certificate, vmid = found
            product = (
                f"/lcm/lcops/api/v2/environments/{self._route['environment_id']}/products/"
                f"{self._route['product_id']}/certificates/{vmid}"
            )
            api.wait(api.call("POST", f"{product}/pre-validate", "pre-validate"), "pre-validate")
            api.wait(api.call("PUT", product, "replace the product certificate"), "replace")
        return certificate, ca_pem

    def _issue(
        self, ca: Any, ca_key: Any, common_name: str, sans: Sequence[str], trusted: Any
    ) -> tuple[x509.Certificate, str]:
        certificate, key_pem = issue_node_certificate(ca, ca_key, common_name, sans)
        _check_trusted([certificate], trusted, sans)
        return certificate, key_pem

    def _fitting_served_certificates(
        self,
        ca: x509.Certificate,
        common_name: str,
        sans: Sequence[str],
        trusted: list[x509.Certificate],
    ) -> list[x509.Certificate]:
        """The certificates nodes of the cluster serve now that Lifecycle may install again
        (module docstring, "Create or reuse"): the seed's names exactly, issued by the CA
        this route issues from, valid past the stack's warning window, trusted for every
        name. Only the locker can say whether it still holds one of them with its key."""
        wanted = {name.lower() for name in sans}
        minimum_days = int(self._route.get("reuse_min_days", 30))
        fitting: dict[str, x509.Certificate] = {}
        for node in self._served:
            certificate = node.served_certificate
            common_names = {
                str(attribute.value).lower()
                for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            }
            try:
                names = certificate.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                continue
            if (
                node.served_sha256 in fitting
                or common_names != {common_name.lower()}
                or {name.lower() for name in names} != wanted
                or pki.days_until_expiry(certificate) <= minimum_days
            ):
                continue
            try:
                certificate.verify_directly_issued_by(ca)
                _check_trusted([certificate, *node.intermediates], trusted, sans)
            except (ValueError, TypeError, InvalidSignature, pki.CertificateError):
                continue
            fitting[node.served_sha256] = certificate
        return list(fitting.values())

    def _session(self) -> _Lifecycle:
        return _Lifecycle(self._route, self._secret("password_key") or "")


class _Locker:
    """The locker's certificates, as VMware's API reference documents them (module docstring):
    the list by alias, each certificate's chain from its detail answer."""

    def __init__(
        self,
        api: _Lifecycle,
        common_name: str,
        sans: Sequence[str],
        trusted: list[x509.Certificate],
    ) -> None:
        self._api = api
        self._common_name = common_name
        self._sans = sans
        self._trusted = trusted
        self._where = api.where

    def reusable(
        self, candidates: Sequence[x509.Certificate]
    ) -> tuple[x509.Certificate, str] | None:
        """A candidate the locker holds under this program's alias, with the chain it would
        install verified, and its vmid; None when the locker holds none of them."""
        for certificate in candidates:
            alias = _alias(self._common_name, certificate)
            vmid = self._vmid(alias)
            if vmid is None:
                pulumi.log.info(
                    f"{self._where}: the nodes serve a fitting certificate, but the locker does "
                    f"not list {alias}."
                )
                continue
            self._verify_chain(vmid, alias, certificate)
            pulumi.log.info(f"{self._where}: reusing the locker certificate {alias}.")
            return certificate, vmid
        return None

    def add(
        self, certificate: x509.Certificate, key_pem: str, ca_pem: str
    ) -> tuple[x509.Certificate, str]:
        """Import a certificate with its key and CA; its vmid once the chain the locker
        holds for it is verified."""
        alias = _alias(self._common_name, certificate)
        pulumi.log.info(f"{self._where}: importing the certificate {alias} into the locker.")
        self._api.call(
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
        try:
            vmid = self._vmid(alias)
            if vmid is None:
                raise ApplianceError(
                    f"{self._where}: the locker does not list the certificate {alias} just "
                    "imported; nothing was replaced."
                )
            self._verify_chain(vmid, alias, certificate)
        except ApplianceError as problem:
            # The entry stays in the locker, with its private key: say which one it is.
            raise ApplianceError(
                f"{problem} The locker keeps the entry {alias} just imported (with its "
                "private key): delete it in the Lifecycle UI (Locker > Certificates) if it is "
                "not wanted; the next run imports a new certificate."
            ) from None
        return certificate, vmid

    def _vmid(self, alias: str) -> str | None:
        """The vmid the locker lists for `alias`. aliasQuery narrows the list (the API
        reference names it, not how it matches), so the alias is compared here, exactly."""
        listed = self._api.call(
            "GET", f"{LOCKER}?aliasQuery={quote(alias)}", "list the locker certificates"
        )
        entries = listed.get("certificates")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise ApplianceError(
                f"{self._where}: the locker list answered `certificates` as "
                f"{type(entries).__name__}, not a list (CertificatePageDTO in VMware's API "
                "reference); nothing was replaced."
            )
        for entry in entries:
            if isinstance(entry, dict) and entry.get("alias") == alias and entry.get("vmid"):
                return str(entry["vmid"])
        return None

    def _verify_chain(self, vmid: str, alias: str, certificate: x509.Certificate) -> None:
        """The root CA found through the route: the chain the locker holds for `vmid` must
        start with `certificate` and verify against the planned trust (pins included) for
        every name, before anything is replaced. Only certChain is read from the answer."""
        detail = self._api.call("GET", f"{LOCKER}/{quote(vmid)}", f"read the certificate {alias}")
        # The API reference's example shows the PEM with its line breaks escaped as `\n`;
        # pki.load_bundle reads both forms.
        text = str(detail.get("certChain") or "")
        stop = f"{self._where}: the locker certificate {alias}"
        try:
            chain = pki.load_bundle(text, "its certChain")
        except pki.CertificateError as unreadable:
            raise ApplianceError(f"{stop}: {unreadable} Nothing was replaced.") from None
        found = pki.sha256_fingerprint(chain[0])
        if found != pki.sha256_fingerprint(certificate):
            raise ApplianceError(
                f"{stop} holds certificate {found} first in its chain, not "
                f"{pki.sha256_fingerprint(certificate)} as its alias says; nothing was "
                "replaced. Check that entry in the Lifecycle locker."
            )
        planned = [pki.sha256_fingerprint(root) for root in self._trusted]
        root = pki.sha256_fingerprint(chain[-1])
        problem = "" if root in planned else "which is not a root CA the load balancers trust"
        try:
            _check_trusted(chain, self._trusted, self._sans)
        except pki.CertificateError as error:
            problem = f"and it does not verify: {error}"
        if problem:
            raise ApplianceError(
                f"{stop}: the chain Lifecycle holds for it ends at {root}, {problem} (they "
                f"trust {', '.join(planned)}). Nothing was replaced."
            )


def _alias(common_name: str, certificate: x509.Certificate) -> str:
    """The locker alias this program gives a certificate: it names its fingerprint."""
    return f"ws1-{common_name}-{pki.sha256_fingerprint(certificate).replace(':', '')[:16]}"


def _check_trusted(
    chain: Sequence[x509.Certificate], trusted: list[x509.Certificate], names: Sequence[str]
) -> None:
    """Every node changes at once: nothing is sent unless the load balancers would accept the
    certificate for every name they may check."""
    for name in names:
        pki.verify_served_chain(
            list(chain), trusted, name, f"the certificate for {name} Lifecycle would install"
        )


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
        self.where = f"Aria Suite Lifecycle ({route['address']})"
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
        where = self.where
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
        where = self.where
        if not isinstance(request_id, str) or not request_id:
            raise ApplianceError(f"{where}: {step} answered without a requestId.")
        seconds = float(self._route["request_timeout_seconds"])
        started = time.monotonic()
        deadline = started + seconds
        pause, state, shown, shown_at = 0.1, "?", "", 0.0
        while time.monotonic() < deadline:
            request = self.call("GET", f"{REQUESTS}/{request_id}", f"read request {request_id}")
            state = str(request.get("state", "?"))
            now = time.monotonic()
            if state != shown or now - shown_at >= PROGRESS_EVERY_SECONDS:
                # Only the id, the step, the state and the time: nothing the request carried.
                pulumi.log.info(
                    f"{where}: request {request_id} ({step}) {state} after {now - started:.0f} s"
                )
                shown, shown_at = state, now
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
