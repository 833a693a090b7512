"""Aria Suite Lifecycle on loopback: the few REST calls the lifecycle_manager route makes,
over real TLS with HTTP basic auth, with asynchronous requests that change what the emulated
Workspace ONE Access nodes serve.

The paths and request bodies are those of VMware's Postman collection "vRealize Life Cycle
Manager Public API 8.4.0" (vmware/vrealize-suite-lifecycle-manager-sdk); the answers are shaped
as VMware's PowerValidatedSolutions module reads them (`certificates[].alias/vmid`,
`requestId`, a request's `vmid` and `state`: INPROGRESS, then COMPLETED or FAILED) and as
VMware's API reference documents the locker (developer.broadcom.com/xapis/vrealize-suite-
lifecycle-manager: the list as CertificatePageDTO, GET .../certificates/{vmid} as
CertificateResponseDTO with certChain, leafCert, key, certInfo, validity). Everything else
about the real product is left out.
"""

from __future__ import annotations

import base64
import collections
import datetime
import hmac
import ipaddress
import json
import re
import ssl
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulators._certs import CertificateAuthority, ServerCertificate
from emulators.appliance import ApplianceCluster

__all__ = ["LifecycleManager"]

_PRODUCT = re.compile(
    r"/lcm/lcops/api/v2/environments/(?P<env>[^/]+)/products/(?P<product>[^/]+)/certificates/"
    r"(?P<vmid>[^/?]+)(?P<pre>/pre-validate)?"
)


class LifecycleManager:
    """One Lifecycle appliance managing one cluster (environment/product as configured)."""

    def __init__(
        self,
        cluster: ApplianceCluster,
        password: str,
        *,
        username: str = "admin@local",
        environment_id: str = "globalenvironment",
        product_id: str = "vidm",
        request_seconds: float = 0.3,
    ) -> None:
        self.cluster = cluster
        self.username = username
        self.password = password
        self.environment_id = environment_id
        self.product_id = product_id
        self.request_seconds = request_seconds
        self.management_ca = CertificateAuthority.create()
        self.locker: dict[str, dict[str, str]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.received_bodies: list[str] = []
        # Fault knobs: the next requests of a kind end FAILED, or never leave INPROGRESS.
        self.fail_next: collections.Counter[str] = (
            collections.Counter()
        )  # "pre-validate", "replace"
        self.hang_requests = False
        # Nodes a completed replacement leaves as they were (a node slow to restart).
        self.nodes_left_unchanged: set[str] = set()
        # Fault knobs for the chain a certificate's detail answers: another leaf first (an
        # entry changed by hand), or the leaf with another CA after it.
        self.answer_leaf: str | None = None
        self.answer_ca: str | None = None
        # The locker vmid each completed replacement installed, in order.
        self.replaced_with: list[str] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def management_ca_pem(self) -> str:
        return self.management_ca.pem

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def writes(self) -> int:
        return sum(self.counters[k] for k in ("import", "pre-validate", "replace"))

    def logins(self) -> int:
        """Requests that carried valid credentials (basic auth has no session)."""
        return self.counters["authenticated"]

    def reset_counters(self) -> None:
        self.counters.clear()
        self.received_bodies.clear()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LifecycleManager:
        handler = type("Handler", (_Handler,), {"lcm": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.socket = self._context().wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> LifecycleManager:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _context(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lcm.local.test")]))
            .issuer_name(self.management_ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("lcm.local.test"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(self.management_ca.private_key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="ws1-lcm-") as directory:
            chain, key_file = Path(directory, "chain.pem"), Path(directory, "key.pem")
            chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(chain, key_file)
        return context

    # -- behaviour ------------------------------------------------------------------------

    def _new_request(self, kind: str, on_success: Any = None) -> str:
        request_id = str(uuid.uuid4())
        fail = self.fail_next[kind] > 0
        if fail:
            self.fail_next[kind] -= 1
        self.requests[request_id] = {"vmid": request_id, "state": "INPROGRESS", "requestType": kind}

        def finish() -> None:
            if self.hang_requests:
                return
            if not fail and on_success is not None:
                on_success()
            self.requests[request_id]["state"] = "FAILED" if fail else "COMPLETED"

        timer = threading.Timer(self.request_seconds, finish)
        timer.daemon = True
        timer.start()
        return request_id

    def _summary(self, vmid: str) -> dict[str, Any]:
        """A locker list entry (CertificatePageDTO.certificates[] in VMware's API reference)."""
        leaf = x509.load_pem_x509_certificates(self.locker[vmid]["certificateChain"].encode())[0]
        return {
            "alias": self.locker[vmid]["alias"],
            "vmid": vmid,
            "sha1": leaf.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 (the documented field)
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "healthy": True,
            "referenced": False,
        }

    def _detail(self, vmid: str) -> dict[str, Any]:
        """A certificate's detail (CertificateResponseDTO): its chain, and its key too."""
        entry = self.locker[vmid]
        certificates = x509.load_pem_x509_certificates(entry["certificateChain"].encode())
        if self.answer_leaf is not None:
            certificates[0] = x509.load_pem_x509_certificate(self.answer_leaf.encode())
        if self.answer_ca is not None:
            certificates[1:] = [x509.load_pem_x509_certificate(self.answer_ca.encode())]
        leaf = certificates[0]
        chain = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {
            "alias": entry["alias"],
            "vmid": vmid,
            "certChain": chain,
            "leafCert": leaf.public_bytes(serialization.Encoding.PEM).decode(),
            "key": entry["privateKey"],
            "certInfo": {
                "sha256": leaf.fingerprint(hashes.SHA256()).hex(),
                "san": ", ".join(f"DNS: {n}" for n in names.get_values_for_type(x509.DNSName)),
                "subject": leaf.subject.rfc4514_string(),
                "issuer": leaf.issuer.rfc4514_string(),
            },
            "validity": {
                "issuedOn": leaf.not_valid_before_utc.isoformat(),
                "expiresOn": leaf.not_valid_after_utc.isoformat(),
                "healthy": True,
            },
        }

    def _replace_on_every_node(self, vmid: str) -> None:
        entry = self.locker[vmid]
        certificates = x509.load_pem_x509_certificates(entry["certificateChain"].encode())
        key = serialization.load_pem_private_key(entry["privateKey"].encode(), password=None)
        leaf, root = certificates[0], certificates[-1]
        self.replaced_with.append(vmid)
        for node in self.cluster.nodes:
            if node.fqdn in self.nodes_left_unchanged:
                continue
            # The node never holds the CA's key; the emulator wants one for key-size checks.
            node._install(CertificateAuthority(root, key), ServerCertificate(leaf, key))  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lcm: LifecycleManager

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        lcm = self.lcm
        return user == lcm.username and hmac.compare_digest(
            password.encode(), lcm.password.encode()
        )

    def _dispatch(self) -> None:
        lcm = self.lcm
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with lcm._lock:
            lcm.received_bodies.append(raw.decode(errors="replace"))
            if not self._authorized():
                lcm.counters["refused"] += 1
                self._send(401, {"message": "Unauthorized"})
                return
            lcm.counters["authenticated"] += 1
            path = self.path.split("?", 1)[0]
            body: Any = json.loads(raw) if raw else None
            if self.command == "GET" and path == "/lcm/locker/api/v2/certificates":
                # How the product matches aliasQuery is not documented: substring here.
                wanted = parse_qs(urlsplit(self.path).query).get("aliasQuery", [])
                listed = [
                    lcm._summary(vmid)
                    for vmid, entry in lcm.locker.items()
                    if not wanted or any(w in entry["alias"] for w in wanted)
                ]
                self._send(200, {"certificates": listed, "page": 0, "total": len(listed)})
            elif self.command == "GET" and (
                match := re.fullmatch(r"/lcm/locker/api/v2/certificates/([^/]+)", path)
            ):
                lcm.counters["locker-detail"] += 1
                if match[1] in lcm.locker:
                    self._send(200, lcm._detail(match[1]))
                else:
                    self._send(404, {"message": "no such certificate"})
            elif self.command == "POST" and path == "/lcm/locker/api/v2/certificates/import":
                if not isinstance(body, dict) or not {
                    "alias",
                    "privateKey",
                    "certificateChain",
                } <= set(body):
                    self._send(
                        400, {"message": "alias, privateKey and certificateChain are required"}
                    )
                    return
                lcm.counters["import"] += 1
                vmid = str(uuid.uuid4())
                lcm.locker[vmid] = {
                    k: str(body[k]) for k in ("alias", "privateKey", "certificateChain")
                }
                self._send(200, {"certInfo": {"alias": body["alias"], "vmid": vmid}})
            elif self.command == "GET" and path.startswith("/lcm/request/api/v2/requests/"):
                request = lcm.requests.get(path.rsplit("/", 1)[1])
                self._send(200, dict(request)) if request else self._send(
                    404, {"message": "no such request"}
                )
            elif (match := _PRODUCT.fullmatch(path)) and self.command in ("POST", "PUT"):
                known = (match["env"], match["product"]) == (lcm.environment_id, lcm.product_id)
                if not known or match["vmid"] not in lcm.locker:
                    self._send(404, {"message": "unknown environment, product or certificate"})
                elif self.command == "POST" and match["pre"]:
                    lcm.counters["pre-validate"] += 1
                    self._send(200, {"requestId": lcm._new_request("pre-validate")})
                elif self.command == "PUT" and not match["pre"]:
                    lcm.counters["replace"] += 1
                    vmid = match["vmid"]
                    request_id = lcm._new_request(
                        "replace", lambda: lcm._replace_on_every_node(vmid)
                    )
                    self._send(200, {"requestId": request_id})
                else:
                    self._send(405, {"message": "method not allowed"})
            else:
                self._send(404, {"message": "not found"})
