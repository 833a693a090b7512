"""A Workspace ONE Access cluster on loopback: real TLS, the root CA endpoint, the configurator
session API, fault and latency knobs, and request counters, for tests and the local stack.

Each emulated node has two TLS listeners on 127.0.0.1: the service ("443") and the appliance
configurator ("8443"). Clients connect to the loopback port but verify the node's FQDN (SNI and
hostname check), exactly as they would against a real node.

The configurator requests behind "Auto Generate Certificate" and the load balancer root CA are
not publicly documented (see shared/reference/workspace-one-access.md); the table below is the
contract between this emulator and the product client, and the one place to change it.

Run a cluster by hand:  WS1_ACCESS_ADMIN_PASSWORD=... python -m emulators.appliance --nodes 3
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import hmac
import html
import json
import logging
import os
import secrets
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators._certs import (
    KEY_TYPES,
    CertificateAuthority,
    ServerCertificate,
    is_dns_name,
    to_pem,
)


class Endpoint(NamedTuple):
    """(method, path): equal to a plain tuple, so it compares with the client's own table."""

    method: str
    path: str


# The configurator wire protocol, shared in spirit with the product client's own table: the
# session pattern (cookie + X-Vk token + form-encoded POST, JSON answers) is public; these
# `/cfg/ssl...` paths and field names are this project's model of the unpublished ones.
CONFIGURATOR_PATHS: dict[str, Endpoint] = {
    "login_page": Endpoint("GET", "/cfg/login"),
    "login": Endpoint("POST", "/cfg/login"),
    "certificate": Endpoint("GET", "/cfg/ssl/certificate"),
    "generate": Endpoint("POST", "/cfg/ssl/generateCertificate"),
    "lb_root_ca_get": Endpoint("GET", "/cfg/ssl/lbRootCa"),
    "lb_root_ca_set": Endpoint("POST", "/cfg/ssl/lbRootCa"),
}

# The form fields each POST reads (all form-encoded; anything else is answered 415).
CONFIGURATOR_FORM_FIELDS: dict[str, tuple[str, ...]] = {
    "login": ("password",),
    "generate": ("commonName", "subjectAltNames"),
    "lb_root_ca_set": ("certificate",),
}

SERVICE_PATHS: dict[str, str] = {
    "root_ca": "/horizon_workspace_rootca.pem",
    "heartbeat": "/SAAS/API/1.0/REST/system/health/heartbeat",
}

SESSION_COOKIE = "JSESSIONID"
TOKEN_HEADER = "X-Vk"
LISTENERS: tuple[str, ...] = ("service", "configurator")
FAULT_MODES: tuple[str, ...] = ("500", "reset", "hang")
# A hung request is always released after this long, and at once when the cluster stops.
MAX_HANG_SECONDS = 30.0
ADMIN_PASSWORD_ENV = "WS1_ACCESS_ADMIN_PASSWORD"

_WRITE_PATHS = frozenset({"generate", "lb_root_ca_set"})
_AUTHENTICATED_PATHS = frozenset({"certificate", "generate", "lb_root_ca_get", "lb_root_ca_set"})
_HANDSHAKE_TIMEOUT = 5.0
_IDLE_TIMEOUT = 30.0
_MAX_SESSIONS = 1000
_MAX_BODY = 1 << 20

_log = logging.getLogger(__name__)

_CONFIGURATOR_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Appliance Configurator - {fqdn}</title>
<script type="text/javascript">
window.ec_wiz = window.ec_wiz || {{}};
window.ec_wiz.vk = '{token}';
</script></head>
<body><form method="post" action="/cfg/login">
<label>admin password <input type="password" name="password"></label>
<button type="submit">Login</button></form></body></html>
"""

# What a misrouted or intercepted request to the PEM endpoint returns: a portal login page.
_SERVICE_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Workspace ONE Access</title></head>
<body><form method="post" action="/SAAS/auth/login">
<input type="text" name="username"><input type="password" name="password">
<button type="submit">Sign in</button></form></body></html>
"""


@dataclass
class _ConfiguratorSession:
    token: str
    authenticated: bool = False


def _split_names(text: str) -> list[str]:
    """The Subject Alternative Names text box: comma-separated, blanks and repeats ignored."""
    names: list[str] = []
    for raw in text.replace("\n", ",").split(","):
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    return names


def _validated_names(common_name: str, subject_alt_names: Sequence[str]) -> tuple[str, list[str]]:
    common_name = common_name.strip()
    if not common_name:
        raise ValueError("commonName must not be empty")
    if len(common_name) > 64 or not is_dns_name(common_name):
        raise ValueError(f"commonName {common_name!r} is not a valid DNS name")
    names = _split_names(",".join(subject_alt_names))
    for name in names:
        if not is_dns_name(name):
            raise ValueError(f"subjectAltNames contains {name!r}, which is not a valid DNS name")
    return common_name, names


def _server_context(
    leaf: ServerCertificate, root: CertificateAuthority, on_sni: Any
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    weak = any(
        isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048
        for key in (leaf.private_key, root.private_key)
    )
    if weak:
        # OpenSSL refuses to even load a 1024-bit chain at the default level; the emulator
        # must still serve it so that the product's own key-size check can be tested.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    key_pem = leaf.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # ssl can only load a chain from files; they live for the duration of this call.
    with tempfile.TemporaryDirectory(prefix="ws1-emulator-") as directory:
        chain_path = Path(directory, "chain.pem")
        key_path = Path(directory, "key.pem")
        chain_path.write_text(leaf.pem + root.pem)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(chain_path, key_path)
    context.sni_callback = on_sni
    return context


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s: " + format, self.server.node.fqdn, self.server.listener, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        node = self.server.node
        listener = self.server.listener
        path = urlsplit(self.path).path
        body = self._read_body()
        path_name = _path_name(listener, self.command, path)
        node._record(listener, self.command, path_name)
        node._wait(node.latency)
        if body is None:
            self._send_json(411, {"error": "send the body with a Content-Length of at most 1 MiB"})
            self.close_connection = True
            return
        fault = node._take_fault(listener)
        if fault == "reset":
            self._reset_connection()
        elif fault == "hang":
            node._wait(min(max(node.hang_seconds, 0.0), MAX_HANG_SECONDS))
            self.close_connection = True
        elif fault == "500":
            self._send_json(500, {"error": "internal server error"})
        elif listener == "service":
            self._serve_service(path)
        else:
            self._serve_configurator(path_name, path, body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no response, like a crashed proxy."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket is really closed (and the RST sent) once its file objects are closed too.
        self.rfile.close()
        self.connection.close()

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, document: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    # -- service listener ("443") -------------------------------------------------------------

    def _serve_service(self, path: str) -> None:
        node = self.server.node
        if self.command == "GET" and path == SERVICE_PATHS["root_ca"]:
            if node.serve_html_instead_of_pem:
                self._send(200, _SERVICE_LOGIN_PAGE.encode(), "text/html; charset=utf-8")
            else:
                self._send(200, node.root_ca_pem.encode(), "application/x-pem-file")
        elif self.command == "GET" and path == SERVICE_PATHS["heartbeat"]:
            if node.heartbeat_failure is None:
                self._send(200, b"ok", "text/plain")
            else:
                status, body, headers = node.heartbeat_failure
                self._send(status, body.encode(), "text/plain", headers)
        else:
            self._send(404, b"Not Found", "text/plain")

    # -- configurator listener ("8443") -------------------------------------------------------

    def _session(self) -> _ConfiguratorSession | None:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load("; ".join(self.headers.get_all("Cookie") or []))
        except CookieError:
            return None
        morsel = cookies.get(SESSION_COOKIE)
        return self.server.node._session(morsel.value) if morsel else None

    def _token_matches(self, session: _ConfiguratorSession) -> bool:
        token = self.headers.get(TOKEN_HEADER, "")
        return hmac.compare_digest(token.encode(), session.token.encode())

    def _form(self, body: bytes) -> dict[str, str] | None:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return None
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return None
        return {name: values[0] for name, values in fields.items()}

    def _serve_configurator(self, path_name: str, path: str, body: bytes) -> None:
        node = self.server.node
        if path_name == "login_page":
            session_id, token = node._new_session()
            page = _CONFIGURATOR_LOGIN_PAGE.format(fqdn=html.escape(node.fqdn), token=token)
            cookie = f"{SESSION_COOKIE}={session_id}; Path=/cfg; Secure; HttpOnly"
            self._send(200, page.encode(), "text/html; charset=utf-8", [("Set-Cookie", cookie)])
            return
        if path_name == "login":
            session = self._session()
            if session is None or not self._token_matches(session):
                self._send_json(403, {"error": "invalid session"})
                return
            form = self._form(body)
            if form is None:
                self._send_json(415, {"error": "expected a form-encoded body"})
            elif node._cluster._password_matches(form.get(_field("login"), "")):
                session.authenticated = True
                self._send_json(200, {"status": "ok"})
            elif node._cluster.echo_form_in_errors:
                # A careless appliance: HTTP 400 with the posted form, raw and decoded, in the
                # error text.
                echoed = f"invalid credentials for {body.decode(errors='replace')} {form}"
                self._send_json(400, {"error": echoed})
            else:
                self._send_json(401, {"error": "invalid credentials"})
            return
        if path_name in _AUTHENTICATED_PATHS:
            session = self._session()
            if session is None or not session.authenticated:
                self._send_json(401, {"error": "login required"})
            elif not self._token_matches(session):
                self._send_json(403, {"error": "invalid session"})
            elif CONFIGURATOR_PATHS[path_name].method == "GET":
                self._serve_read(path_name)
            else:
                form = self._form(body)
                if form is None:
                    self._send_json(415, {"error": "expected a form-encoded body"})
                else:
                    self._serve_write(path_name, form)
            return
        allowed = sorted({e.method for e in CONFIGURATOR_PATHS.values() if e.path == path})
        if allowed:
            self._send_json(405, {"error": "method not allowed"}, [("Allow", ", ".join(allowed))])
        else:
            self._send_json(404, {"error": "not found"})

    def _serve_read(self, path_name: str) -> None:
        node = self.server.node
        if path_name == "certificate":
            self._send_json(200, node._certificate_document())
        else:
            self._send_json(200, {"certificate": node.lb_root_ca_pem})

    def _serve_write(self, path_name: str, form: dict[str, str]) -> None:
        node = self.server.node
        try:
            if path_name == "generate":
                document = node._auto_generate(
                    form.get(_field("generate", 0), ""), [form.get(_field("generate", 1), "")]
                )
            else:
                node._set_lb_root_ca(form.get(_field("lb_root_ca_set"), ""))
                document = {"status": "ok"}
        except ValueError as error:
            self._send_json(400, {"error": str(error)})
            return
        self._send_json(200, document)


def _field(path_name: str, index: int = 0) -> str:
    return CONFIGURATOR_FORM_FIELDS[path_name][index]


def _path_name(listener: str, method: str, path: str) -> str:
    if listener == "configurator":
        for name, endpoint in CONFIGURATOR_PATHS.items():
            if endpoint.method == method and endpoint.path == path:
                return name
    return path


class _TLSServer(ThreadingHTTPServer):
    """One listener of one node: every accepted connection gets the node's current TLS context,
    so a certificate change takes effect on the next handshake."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, node: EmulatedNode, listener: str) -> None:
        self.node = node
        self.listener = listener
        self._connections: set[ssl.SSLSocket] = set()
        self._workers: set[threading.Thread] = set()
        self._guard = threading.Lock()
        self._closing = False
        # Port 0 (ephemeral) unless the local stack asked for fixed ports.
        super().__init__((node.address, node.requested_ports.get(listener, 0)), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would reverse-resolve the address; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[ssl.SSLSocket, Any]:
        sock, address = self.socket.accept()
        # Headers and body go out as separate small writes; with Nagle's algorithm the body
        # would wait for the client's delayed ACK (about 40 ms on Linux) on every response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(_HANDSHAKE_TIMEOUT)
        # The handshake itself runs on the worker thread, so a slow client never stalls accept.
        tls = self.node._tls_context(self.listener).wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return tls, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._guard:
            if self._closing:
                self.shutdown_request(request)
                return
            self._connections.add(request)
            worker = threading.Thread(
                target=self._serve_connection,
                args=(request, client_address),
                name=f"ws1-emulator {self.node.fqdn} {self.listener}",
                daemon=True,
            )
            self._workers.add(worker)
        worker.start()

    def _serve_connection(self, request: ssl.SSLSocket, client_address: Any) -> None:
        try:
            request.do_handshake()
            self.finish_request(request, client_address)
        except Exception as error:  # a client that goes away is not the emulator's problem
            _log.debug("%s %s: connection ended: %r", self.node.fqdn, self.listener, error)
        finally:
            self.shutdown_request(request)
            with self._guard:
                self._connections.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("%s %s: request failed", self.node.fqdn, self.listener, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        with self._guard:
            self._closing = True
            connections = list(self._connections)
            workers = list(self._workers)
        for connection in connections:
            # The plain-socket shutdown wakes a worker blocked in a read or a handshake
            # without touching the TLS object it is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        for worker in workers:
            worker.join(timeout)


class EmulatedNode:
    """One appliance of the cluster: a service listener and a configurator listener."""

    def __init__(self, cluster: ApplianceCluster, fqdn: str, names: Sequence[str]) -> None:
        self._cluster = cluster
        self.fqdn = fqdn
        self.address = "127.0.0.1"
        self.latency = 0.0
        self.hang_seconds = 5.0
        self.serve_html_instead_of_pem = False
        # (status, body, headers) the heartbeat answers instead of 200 "ok"; see fail_heartbeat.
        self.heartbeat_failure: tuple[int, str, tuple[tuple[str, str], ...]] | None = None
        self.requested_ports: dict[str, int] = {}  # listener -> fixed port; set before start()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._counters: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._sni_names: collections.Counter[str | None] = collections.Counter()
        self._faults: list[tuple[str, str]] = []
        self._sessions: collections.OrderedDict[str, _ConfiguratorSession] = (
            collections.OrderedDict()
        )
        self._lb_root_ca_pem = ""
        self._servers: dict[str, _TLSServer] = {}
        self._threads: list[threading.Thread] = []
        self._root = cluster._root
        self._leaf: ServerCertificate
        self._context: ssl.SSLContext
        # The configurator's own certificate, when a knob gave it one (else the service's).
        self._configurator_context: ssl.SSLContext | None = None
        self._install(self._root, self._root.issue(names[0], names, key_type=cluster.key_type))

    def __repr__(self) -> str:
        ports = {name: server.server_address[1] for name, server in self._servers.items()}
        return f"EmulatedNode({self.fqdn!r}, ports={ports})"

    # -- lifecycle ----------------------------------------------------------------------------

    def _start(self) -> None:
        if self._servers:
            raise RuntimeError(f"node {self.fqdn} is already started")
        self._stopping.clear()
        for listener in LISTENERS:
            server = _TLSServer(self, listener)
            self._servers[listener] = server
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"ws1-emulator {self.fqdn} {listener} accept",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _stop(self) -> None:
        self._stopping.set()
        stoppers = [
            threading.Thread(target=s.shutdown, daemon=True) for s in self._servers.values()
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for server in self._servers.values():
            server.server_close()
            server.close_connections(timeout=2.0)
        for thread in self._threads:
            thread.join(2.0)
        self._servers.clear()
        self._threads.clear()

    def _port_of(self, listener: str) -> int:
        server = self._servers.get(listener)
        if server is None:
            raise RuntimeError(f"node {self.fqdn} is not started")
        return int(server.server_address[1])

    @property
    def port(self) -> int:
        """The loopback port of the service listener (443 on a real node)."""
        return self._port_of("service")

    @property
    def configurator_port(self) -> int:
        """The loopback port of the configurator listener (8443 on a real node)."""
        return self._port_of("configurator")

    @property
    def service_url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def configurator_url(self) -> str:
        return f"https://{self.address}:{self.configurator_port}"

    # -- what the node serves -----------------------------------------------------------------

    @property
    def leaf_pem(self) -> str:
        with self._lock:
            return self._leaf.pem

    @property
    def root_ca_pem(self) -> str:
        with self._lock:
            return self._root.pem

    @property
    def root_ca_sha256(self) -> str:
        with self._lock:
            return self._root.sha256

    @property
    def common_name(self) -> str:
        with self._lock:
            return self._leaf.common_name

    @property
    def subject_alt_names(self) -> list[str]:
        with self._lock:
            return self._leaf.dns_names

    @property
    def lb_root_ca_pem(self) -> str:
        with self._lock:
            return self._lb_root_ca_pem

    def _install(self, root: CertificateAuthority, leaf: ServerCertificate) -> None:
        context = _server_context(leaf, root, self._on_sni)
        with self._lock:
            self._root, self._leaf, self._context = root, leaf, context
            self._configurator_context = None

    def _tls_context(self, listener: str = "service") -> ssl.SSLContext:
        with self._lock:
            if listener == "configurator" and self._configurator_context is not None:
                return self._configurator_context
            return self._context

    def _on_sni(self, _sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        with self._lock:
            self._sni_names[server_name] += 1

    def _certificate_document(self) -> dict[str, Any]:
        with self._lock:
            return {
                "certificate": self._leaf.pem,
                "rootCa": self._root.pem,
                "commonName": self._leaf.common_name,
                "subjectAltNames": self._leaf.dns_names,
            }

    def _auto_generate(self, common_name: str, subject_alt_names: Sequence[str]) -> dict[str, Any]:
        common_name, names = _validated_names(common_name, subject_alt_names)
        root = self._cluster._root_for_regeneration(self)
        self._install(root, root.issue(common_name, names, key_type=self._cluster.key_type))
        return self._certificate_document()

    def _set_lb_root_ca(self, pem: str) -> None:
        try:
            certificates = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            raise ValueError("certificate must be one or more PEM certificates") from None
        with self._lock:
            self._lb_root_ca_pem = "".join(to_pem(c) for c in certificates)

    # -- knobs --------------------------------------------------------------------------------

    def regenerate(self, common_name: str, sans: Sequence[str]) -> dict[str, Any]:
        """The operator clicked "Auto Generate Certificate" in the console (not a request).

        Same behaviour as the `generate` endpoint; raises ValueError for bad names."""
        return self._auto_generate(common_name, list(sans))

    def serve_expired_certificate(self) -> None:
        """Serve an expired leaf from the same root, with the same names."""
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            root, common_name, names = self._root, self._leaf.common_name, self._leaf.dns_names
        leaf = root.issue(
            common_name,
            names,
            key_type=self._cluster.key_type,
            not_before=now - datetime.timedelta(days=731),
            not_after=now - datetime.timedelta(days=1),
        )
        self._install(root, leaf)

    def serve_certificate_expiring_in(self, days: int) -> None:
        """Serve a leaf from the same root, with the same names, that expires in `days` days."""
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            root, common_name, names = self._root, self._leaf.common_name, self._leaf.dns_names
        leaf = root.issue(
            common_name,
            names,
            key_type=self._cluster.key_type,
            not_after=now + datetime.timedelta(days=days, hours=12),
        )
        self._install(root, leaf)

    def serve_certificate_for(self, names: Sequence[str]) -> None:
        """Serve a leaf from the same root for other names (CN = names[0], SANs = names)."""
        if not names:
            raise ValueError("serve_certificate_for needs at least one name")
        with self._lock:
            root = self._root
        self._install(root, root.issue(names[0], list(names), key_type=self._cluster.key_type))

    def serve_configurator_certificate_of_its_own(self) -> None:
        """The configurator port presents another leaf (same root CA, same names) than the
        service port, until the next regeneration; no public source says which a real
        appliance does, and the client must work either way."""
        with self._lock:
            root, common_name, names = self._root, self._leaf.common_name, self._leaf.dns_names
        leaf = root.issue(common_name, names, key_type=self._cluster.key_type)
        context = _server_context(leaf, root, self._on_sni)
        with self._lock:
            self._configurator_context = context

    def serve_foreign_root(self) -> None:
        """Give this node a root CA of its own and a leaf (same names) issued by it."""
        root = CertificateAuthority.create(self._cluster.key_type)
        with self._lock:
            common_name, names = self._leaf.common_name, self._leaf.dns_names
        self._install(root, root.issue(common_name, names, key_type=self._cluster.key_type))

    def fail_heartbeat(
        self,
        status: int = 503,
        body: str = "Broken: token store unavailable",
        headers: Sequence[tuple[str, str]] = (("Set-Cookie", "JSESSIONID=0; Path=/; Secure"),),
    ) -> None:
        """Make the heartbeat answer like an unhealthy node until `heartbeat_failure = None`.

        What a real failing node answers is not documented; the default deliberately holds
        "ok" in its headers and body ("Cookie", "token", "Broken") without being healthy,
        which is what a load balancer's health check must not be fooled by.
        """
        self.heartbeat_failure = (status, body, tuple(headers))

    def fail_next(self, count: int, mode: str, listener: str = "any") -> None:
        """Make the next `count` requests on `listener` fail: "500", "reset" or "hang"."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {FAULT_MODES}")
        if listener not in (*LISTENERS, "any"):
            raise ValueError(f"unknown listener {listener!r}; expected service, configurator, any")
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            self._faults.extend([(mode, listener)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, listener: str) -> str | None:
        with self._lock:
            for index, (mode, target) in enumerate(self._faults):
                if target in (listener, "any"):
                    del self._faults[index]
                    return mode
        return None

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- configurator sessions ----------------------------------------------------------------

    def _new_session(self) -> tuple[str, str]:
        session_id = secrets.token_hex(16).upper()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[session_id] = _ConfiguratorSession(token)
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session_id, token

    def _session(self, session_id: str) -> _ConfiguratorSession | None:
        with self._lock:
            return self._sessions.get(session_id)

    # -- counters -----------------------------------------------------------------------------

    def _record(self, listener: str, method: str, path_name: str) -> None:
        with self._lock:
            self._counters[(listener, method, path_name)] += 1

    @property
    def counters(self) -> collections.Counter[tuple[str, str, str]]:
        """A snapshot: (listener, method, path name) -> requests received, faults included."""
        with self._lock:
            return collections.Counter(self._counters)

    @property
    def sni_names(self) -> collections.Counter[str | None]:
        """A snapshot: server name sent by clients in the TLS handshake -> handshakes."""
        with self._lock:
            return collections.Counter(self._sni_names)

    def count(
        self, method: str | None = None, listener: str | None = None, path: str | None = None
    ) -> int:
        """Requests matching every given filter; `path` is a path name or a service path."""
        return sum(
            n
            for (l_, m, p), n in self.counters.items()
            if (method is None or m == method)
            and (listener is None or l_ == listener)
            and (path is None or p == path)
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()
            self._sni_names.clear()


class ApplianceCluster:
    """Nodes that share one appliance root CA, as a cloned Workspace ONE Access cluster does."""

    def __init__(
        self,
        node_fqdns: Sequence[str],
        service_fqdn: str,
        admin_password: str,
        *,
        key_type: str = "rsa2048",
        root_ca_validity_days: int = 3652,
    ) -> None:
        if not node_fqdns:
            raise ValueError("a cluster needs at least one node FQDN")
        for name in (*node_fqdns, service_fqdn):
            if not is_dns_name(name) or name.startswith("*"):
                raise ValueError(f"{name!r} is not a valid host FQDN")
        if len(set(node_fqdns)) != len(node_fqdns):
            raise ValueError("node FQDNs must be unique")
        if not admin_password:
            raise ValueError("the admin password must not be empty")
        if key_type not in KEY_TYPES:
            raise ValueError(f"unknown key type {key_type!r}; expected one of {KEY_TYPES}")
        self.service_fqdn = service_fqdn
        self.key_type = key_type
        self.regeneration_makes_new_root = False
        # True: error answers to a failed login repeat the posted form (secret-scan tests).
        self.echo_form_in_errors = False
        self._admin_password = admin_password
        self._lock = threading.Lock()
        self._started = False
        self._root = CertificateAuthority.create(
            key_type, datetime.timedelta(days=root_ca_validity_days)
        )
        self._next_root: CertificateAuthority | None = None
        names = [service_fqdn, *(n for n in node_fqdns if n != service_fqdn)]
        self.nodes: list[EmulatedNode] = [EmulatedNode(self, fqdn, names) for fqdn in node_fqdns]

    def __repr__(self) -> str:
        return f"ApplianceCluster({[n.fqdn for n in self.nodes]!r}, {self.service_fqdn!r})"

    def node(self, fqdn: str) -> EmulatedNode:
        for node in self.nodes:
            if node.fqdn == fqdn:
                return node
        raise KeyError(fqdn)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ApplianceCluster:
        with self._lock:
            if self._started:
                raise RuntimeError("the cluster is already started")
            self._started = True
        try:
            for node in self.nodes:
                node._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        # Nodes stop in parallel: each listener takes up to one accept-poll interval to notice.
        stoppers = [threading.Thread(target=node._stop, daemon=True) for node in self.nodes]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def __enter__(self) -> ApplianceCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "fqdn": node.fqdn,
                    "address": node.address,
                    "port": node.port,
                    "configurator_port": node.configurator_port,
                }
                for node in self.nodes
            ],
            "root_ca_sha256": self.root_ca_sha256,
        }

    # -- certificates -------------------------------------------------------------------------

    @property
    def root_ca_pem(self) -> str:
        """The root CA the cluster was built with (a node's own may differ after a knob)."""
        return self._root.pem

    @property
    def root_ca_sha256(self) -> str:
        return self._root.sha256

    @property
    def next_root_ca_pem(self) -> str | None:
        """The root CA that regeneration under `regeneration_makes_new_root` issues from."""
        with self._lock:
            return self._next_root.pem if self._next_root else None

    def prepare_next_root(self) -> str:
        """Create (once) the root CA that regeneration under `regeneration_makes_new_root`
        issues from, and return its PEM: the operator holds the new root CA before rolling
        it out (their own CA for custom certificates, or one exported ahead of time)."""
        with self._lock:
            if self._next_root is None:
                self._next_root = CertificateAuthority.create(self.key_type)
            return self._next_root.pem

    def _root_for_regeneration(self, node: EmulatedNode) -> CertificateAuthority:
        if not self.regeneration_makes_new_root:
            # The appliance issues from the root CA on its own disk.
            with node._lock:
                return node._root
        with self._lock:
            if self._next_root is None:
                self._next_root = CertificateAuthority.create(self.key_type)
            return self._next_root

    def _password_matches(self, password: str) -> bool:
        return hmac.compare_digest(password.encode(), self._admin_password.encode())

    # -- counters -----------------------------------------------------------------------------

    def _total(self, predicate: Any) -> int:
        return sum(n for node in self.nodes for key, n in node.counters.items() if predicate(*key))

    def writes(self) -> int:
        """POSTs to generate and lb_root_ca_set over all nodes."""
        return self._total(lambda lst, m, p: lst == "configurator" and p in _WRITE_PATHS)

    def logins(self) -> int:
        """POSTs to the configurator login over all nodes."""
        return self._total(lambda lst, m, p: lst == "configurator" and p == "login")

    def reads(self) -> int:
        """Every other request over all nodes (login pages, GETs, service requests, 404s)."""
        return self._total(lambda *key: True) - self.writes() - self.logins()

    def reset_counters(self) -> None:
        for node in self.nodes:
            node.reset_counters()


# -- command line ---------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.appliance",
        description="Serve an emulated Workspace ONE Access cluster on 127.0.0.1 until "
        "SIGTERM or SIGINT. Prints one JSON line describing the nodes.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument("--domain", default="local.test", help="node FQDNs are ws1-nodeN.DOMAIN")
    parser.add_argument("--service-fqdn", help="the FQDN users type (default ws1.DOMAIN)")
    parser.add_argument(
        "--admin-password-env",
        default=ADMIN_PASSWORD_ENV,
        help=f"environment variable holding the admin password (default {ADMIN_PASSWORD_ENV})",
    )
    parser.add_argument("--state-file", type=Path, help="also write the description here")
    parser.add_argument(
        "--service-ports", help="comma-separated fixed service ports, one per node (default: any)"
    )
    parser.add_argument(
        "--configurator-ports",
        help="comma-separated fixed configurator ports, one per node (default: any)",
    )
    parser.add_argument(
        "--ssh-ports",
        help="comma-separated SSH ports, one per node: also serve the ssh certificate route "
        "(emulators/appliance_ssh.py; user sshuser, passwords from WS1_ACCESS_SSH_PASSWORD and "
        "WS1_ACCESS_SSH_ROOT_PASSWORD)",
    )
    parser.add_argument("--key-type", choices=KEY_TYPES, default="rsa2048")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds every node waits before answering each request (default 0)",
    )
    parser.add_argument(
        "--regeneration-makes-new-root",
        action="store_true",
        help="Auto Generate issues from a new cluster root CA instead of the current one",
    )
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    password = os.environ.get(args.admin_password_env, "")
    if not password:
        print(
            f"The environment variable {args.admin_password_env} is not set or empty; set it "
            "to the admin password that the emulated configurators should accept.",
            file=sys.stderr,
        )
        return 2
    service_fqdn = args.service_fqdn or f"ws1.{args.domain}"
    node_fqdns = [f"ws1-node{i}.{args.domain}" for i in range(1, args.nodes + 1)]
    try:
        cluster = ApplianceCluster(node_fqdns, service_fqdn, password, key_type=args.key_type)
    except ValueError as error:
        print(f"Cannot build the emulated cluster: {error}.", file=sys.stderr)
        return 2
    cluster.regeneration_makes_new_root = args.regeneration_makes_new_root
    for node in cluster.nodes:
        node.latency = args.latency
    for option, listener in (
        (args.service_ports, "service"),
        (args.configurator_ports, "configurator"),
    ):
        if not option:
            continue
        ports = [int(port) for port in option.split(",")]
        if len(ports) != args.nodes:
            print(f"Give exactly {args.nodes} {listener} ports, one per node.", file=sys.stderr)
            return 2
        for node, port in zip(cluster.nodes, ports, strict=True):
            node.requested_ports[listener] = port

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    ssh_servers: list[Any] = []
    with cluster:
        if args.ssh_ports:
            # Imported here: the SSH side builds on this module.
            from emulators.appliance_ssh import NodeSsh

            ports = [int(port) for port in args.ssh_ports.split(",")]
            if len(ports) != args.nodes:
                print(f"Give exactly {args.nodes} SSH ports, one per node.", file=sys.stderr)
                return 2
            for node, port in zip(cluster.nodes, ports, strict=True):
                server = NodeSsh(
                    node,
                    user="sshuser",
                    password=os.environ.get("WS1_ACCESS_SSH_PASSWORD") or None,
                    root_password=os.environ.get("WS1_ACCESS_SSH_ROOT_PASSWORD") or None,
                )
                ssh_servers.append(server.start(port))
        description = cluster.describe()
        for entry, server in zip(description["nodes"], ssh_servers, strict=False):
            entry["ssh_port"], entry["ssh_host_key"] = server.port, server.host_key_sha256
        if args.state_file:
            state = {**description, "root_ca_pem": cluster.root_ca_pem}
            _write_atomically(args.state_file, json.dumps(state, indent=2) + "\n")
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(description), flush=True)
        while not stop.wait(0.2):
            pass
        for server in ssh_servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
