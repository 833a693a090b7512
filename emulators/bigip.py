"""One F5 BIG-IP unit on loopback speaking iControl REST over real TLS (tests, the local stack).

What it serves is the documented wire protocol the product's REST resources and a later
trust audit use (sources: F5 iControl REST user guide; the go-bigip client vendored in
terraform-provider-bigip v1.26.0, `bigip.go` and `device.go`; shared/reference/f5-bigip.md):

* token login `POST /mgmt/shared/authn/login` {"username","password","loginProviderName"}
  -> {"token": {"token": ...}}; every other request carries `X-F5-Auth-Token`; a missing or
  unknown token is answered 401; `PATCH`/`DELETE /mgmt/shared/authz/tokens/<token>`;
* object paths with "~" for "/" (`/Common/x` -> `~Common~x`), camelCase JSON fields;
* errors as JSON {"code","message","errorStack","apiError"}: 401, 404 for a missing object,
  409 for an object that already exists, 400 for a refused change;
* server-SSL profiles (`/mgmt/tm/ltm/profile/server-ssl`), CA certificate objects (upload
  `/mgmt/shared/file-transfer/uploads/<name>` then `/mgmt/tm/sys/file/ssl-cert`; a GET answers
  the object's metadata as a real unit does, never the PEM content: `fingerprint`
  "SHA256/<colon hex>", `isBundle`, `subject`, `issuer`, `expirationDate` (epoch seconds),
  `expirationString`, of the file's FIRST certificate: shapes from a BIG-IP 14.1 answer
  captured in CiscoTestAutomation/genieparser's bigip parser tests), device
  groups (`/mgmt/tm/cm/device-group`), devices and failover status (`/mgmt/tm/cm/device`,
  `/mgmt/tm/cm/failover-status`), sync status and config-sync (`/mgmt/tm/cm/sync-status`,
  `POST /mgmt/tm/cm` {"command":"run","utilCmdArgs":"config-sync to-group <group>"}).

The wording of error messages is modelled on F5's ("01020036:3: The requested ... was not
found."), but no client may depend on it: clients read `code`. Basic authentication and
everything else of iControl REST is not emulated (a request elsewhere gets a 404).

Fault knobs: `fail_next(count, mode)` ("500" or "reset"), `refuse_authenticate_name` (a
PATCH of authenticateName gets a 400), `ignore_authenticate_name` (it is answered 200 but
not applied). Counters: `requests()` by (method, path), `reads()`, `writes()`, `logins()`.

Run one by hand:  BIGIP_PASSWORD=... python -m emulators.bigip --ca-file /tmp/bigip-ca.pem
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulators._certs import CLOCK_SKEW, CertificateAuthority, new_private_key, to_pem

__all__ = ["BIGIP_PASSWORD_ENV", "EmulatedBigip", "main"]

BIGIP_PASSWORD_ENV = "BIGIP_PASSWORD"  # noqa: S105 (a variable's name)
FAULT_MODES: tuple[str, ...] = ("500", "reset")
UPLOAD_DIRECTORY = "/var/config/rest/downloads"

_PROFILE = "/mgmt/tm/ltm/profile/server-ssl"
_CERTIFICATE = "/mgmt/tm/sys/file/ssl-cert"
_UPLOAD = "/mgmt/shared/file-transfer/uploads/"
_DEVICE_GROUP = "/mgmt/tm/cm/device-group"
_LOGIN = "/mgmt/shared/authn/login"
_TOKENS = "/mgmt/shared/authz/tokens/"
_MAX_BODY = 1 << 20
_TOKEN_SECONDS = 1200
_log = logging.getLogger(__name__)


def _error(code: int, message: str) -> dict[str, Any]:
    """The iControl REST error document (go-bigip's RequestError reads code and message)."""
    return {"code": code, "message": message, "errorStack": [], "apiError": 3}


def _full_path(tilde_path: str) -> str:
    """`~Common~x` -> `/Common/x`; a bare name is in /Common."""
    name = unquote(tilde_path)
    if name.startswith("~"):
        return name.replace("~", "/")
    return f"/Common/{name}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Jetty(9.2.22.v20170606)"  # what iControl REST answers with on 15.x-17.x
    sys_version = ""
    timeout = 30.0
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("bigip %s: " + format, self.server.bigip.hostname, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        bigip = self.server.bigip
        path = urlsplit(self.path).path.rstrip("/") or "/"
        length = self.headers.get("Content-Length", "0")
        body = (
            self.rfile.read(int(length)) if length.isdigit() and int(length) <= _MAX_BODY else b""
        )
        bigip._record(self.command, path)
        fault = bigip._take_fault()
        if fault == "reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            return
        if fault == "500":
            self._send(500, _error(500, "emulated internal server error"))
            return
        if self.command == "POST" and path == _LOGIN:
            self._send(*bigip._login(self._json(body)))
            return
        token = self.headers.get("X-F5-Auth-Token", "")
        if not bigip._token_valid(token):
            self._send(401, _error(401, "X-F5-Auth-Token does not exist."))
            return
        if path.startswith(_UPLOAD) and self.command == "POST":
            self._send(*bigip._upload(path[len(_UPLOAD) :], body))
            return
        self._send(*bigip._handle(self.command, path, self._json(body)))

    def _json(self, body: bytes) -> Any:
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            return None

    def _send(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, bigip: EmulatedBigip, port: int) -> None:
        self.bigip = bigip
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would reverse-resolve the address; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(5.0)
        # The handshake runs on the worker thread (finish_request), never in accept.
        tls = self.bigip._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.do_handshake()
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("bigip: request failed", exc_info=True)


class EmulatedBigip:
    """One BIG-IP unit: its management API on 127.0.0.1, objects, device group and HA state.

    The management certificate is issued by `management_ca_pem` for `hostname` and
    127.0.0.1, so a client verifies it exactly as it would a real unit's.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        hostname: str = "bigip1.local.test",
        port: int = 0,
        failover_state: str = "active",
    ) -> None:
        if not username or not password:
            raise ValueError("the BIG-IP user name and password must not be empty")
        self.username = username
        self.hostname = hostname
        self.requested_port = port
        self.failover_state = failover_state
        self.refuse_authenticate_name = False
        self.ignore_authenticate_name = False
        self.server_ssl_profiles: dict[str, dict[str, Any]] = {}
        self.certificates: dict[str, dict[str, Any]] = {}
        self.device_groups: dict[str, dict[str, Any]] = {}
        # Other units of the trust domain: [{"name", "managementIp", "failoverState"}].
        self.peers: list[dict[str, str]] = []
        self.sync_status = "Standalone"
        self.syncs: list[str] = []  # device groups synced, in order
        self._password = password
        self._tokens: dict[str, float] = {}
        self._uploads: dict[str, bytes] = {}
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._ca = CertificateAuthority.create("ecp256")
        self._context = self._server_context()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> EmulatedBigip:
        if self._server is not None:
            raise RuntimeError("the BIG-IP emulator is already started")
        self._server = _Server(self, self.requested_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> EmulatedBigip:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the BIG-IP emulator is not started")
        return self._server.server_port

    @property
    def management_ca_pem(self) -> str:
        return self._ca.pem

    def describe(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "address": self.address,
            "port": self.port,
            "username": self.username,
            "failover_state": self.failover_state,
            "device_groups": sorted(self.device_groups),
        }

    # -- test set-up, as the pulumi_f5bigip resources or an operator would leave the device --

    def add_server_ssl_profile(self, full_path: str, **fields: Any) -> dict[str, Any]:
        partition, name = full_path.strip("/").split("/", 1)
        profile = {
            "kind": "tm:ltm:profile:server-ssl:server-sslstate",
            "name": name,
            "partition": partition,
            "fullPath": full_path,
            "defaultsFrom": "/Common/serverssl",
            "authenticateName": "none",
            **fields,
        }
        with self._lock:
            self.server_ssl_profiles[full_path] = profile
        return profile

    def add_certificate(self, full_path: str, pem: str) -> dict[str, Any]:
        """A CA certificate object, as the ssl.Certificate resource or an operator leaves it."""
        partition, name = full_path.strip("/").split("/", 1)
        record = _certificate_record(name, partition, pem.encode())
        with self._lock:
            self.certificates[full_path] = record
        return _without_content(record)

    def add_device_group(self, name: str, *, auto_sync: bool, kind: str = "sync-failover") -> None:
        with self._lock:
            self.device_groups[f"/Common/{name}"] = {
                "kind": "tm:cm:device-group:device-groupstate",
                "name": name,
                "partition": "Common",
                "fullPath": f"/Common/{name}",
                "autoSync": "enabled" if auto_sync else "disabled",
                "type": kind,
            }
            self.sync_status = "In Sync"

    def mark_changes_pending(self) -> None:
        """As any configuration change on a unit of a group without auto-sync does."""
        with self._lock:
            if self.device_groups:
                self.sync_status = "Changes Pending"

    def fail_next(self, count: int, mode: str) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {FAULT_MODES}")
        with self._lock:
            self._faults.extend([mode] * count)

    # -- counters ----------------------------------------------------------------------------

    def requests(self) -> collections.Counter[tuple[str, str]]:
        with self._lock:
            return collections.Counter(self._counts)

    def logins(self) -> int:
        return sum(n for (method, path), n in self.requests().items() if path == _LOGIN)

    def reads(self) -> int:
        return sum(n for (method, _), n in self.requests().items() if method == "GET")

    def writes(self) -> int:
        """Requests that change the device (token housekeeping and login excluded)."""
        return sum(
            n
            for (method, path), n in self.requests().items()
            if method != "GET" and path != _LOGIN and not path.startswith(_TOKENS)
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[(method, path)] += 1

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    # -- authentication ------------------------------------------------------------------------

    def _login(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, _error(400, "Bad request: expected a JSON object.")
        username_ok = hmac.compare_digest(str(body.get("username", "")), self.username)
        password_ok = hmac.compare_digest(str(body.get("password", "")), self._password)
        if not (username_ok and password_ok):
            return 401, _error(401, "Authentication failed.")
        token = secrets.token_hex(13).upper()
        with self._lock:
            self._tokens[token] = _TOKEN_SECONDS
        return 200, {
            "username": self.username,
            "loginProviderName": body.get("loginProviderName", "tmos"),
            "token": {"token": token, "name": token, "timeout": _TOKEN_SECONDS},
        }

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            return any(hmac.compare_digest(token, known) for known in self._tokens)

    # -- objects ------------------------------------------------------------------------------

    def _handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if body is None:
            return 400, _error(400, "Bad request: the body is not valid JSON.")
        if path.startswith(_TOKENS):
            return self._token(method, path[len(_TOKENS) :], body)
        if path.startswith(_PROFILE + "/"):
            return self._profile(method, _full_path(path[len(_PROFILE) + 1 :]), body)
        if path == _CERTIFICATE and method == "POST":
            return self._install_certificate(body)
        if path.startswith(_CERTIFICATE + "/") and method == "GET":
            status, found = self._get(self.certificates, _full_path(path[len(_CERTIFICATE) + 1 :]))
            return status, _without_content(found)
        if path.startswith(_DEVICE_GROUP + "/") and method == "GET":
            return self._get(self.device_groups, _full_path(path[len(_DEVICE_GROUP) + 1 :]))
        if path == _DEVICE_GROUP and method == "GET":
            return 200, {"items": list(self.device_groups.values())}
        if path == "/mgmt/tm/cm/device" and method == "GET":
            return 200, {"items": self._devices()}
        if path == "/mgmt/tm/cm/failover-status" and method == "GET":
            return 200, _stats("failover-status", {"status": self.failover_state.upper()})
        if path == "/mgmt/tm/cm/sync-status" and method == "GET":
            return 200, _stats("sync-status", {"status": self.sync_status})
        if path == "/mgmt/tm/cm" and method == "POST":
            return self._run(body)
        return 404, _error(404, f"URI path {path} not registered.  Please try again.")

    def _token(self, method: str, token: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            if token not in self._tokens:
                return 404, _error(404, f"token {token[:4]}... not found")
            if method == "DELETE":
                del self._tokens[token]
                return 200, {}
            if method == "PATCH" and isinstance(body.get("timeout"), int):
                self._tokens[token] = body["timeout"]
                return 200, {"token": token, "timeout": body["timeout"]}
        return 400, _error(400, 'expected PATCH {"timeout": <seconds>} or DELETE')

    def _get(self, objects: dict[str, dict[str, Any]], full_path: str) -> tuple[int, Any]:
        with self._lock:
            found = objects.get(full_path)
        if found is None:
            return 404, _error(
                404, f"01020036:3: The requested object ({full_path}) was not found."
            )
        return 200, dict(found)

    def _profile(self, method: str, full_path: str, body: Any) -> tuple[int, Any]:
        if method == "GET":
            return self._get(self.server_ssl_profiles, full_path)
        if method == "DELETE":
            with self._lock:
                removed = self.server_ssl_profiles.pop(full_path, None)
            if removed is None:
                return self._get(self.server_ssl_profiles, full_path)
            return 200, {}
        if method != "PATCH" or not isinstance(body, dict):
            return 405, _error(405, f"{method} is not supported on a server-SSL profile here.")
        if "authenticateName" in body and self.refuse_authenticate_name:
            return 400, _error(
                400, f"01070734:3: Configuration error: invalid authenticate-name in {full_path}"
            )
        with self._lock:
            profile = self.server_ssl_profiles.get(full_path)
            if profile is None:
                return 404, _error(
                    404, f"01020036:3: The requested profile ({full_path}) was not found."
                )
            changes = dict(body)
            if self.ignore_authenticate_name:
                changes.pop("authenticateName", None)
            profile.update(changes)
            return 200, dict(profile)

    def _upload(self, name: str, body: bytes) -> tuple[int, Any]:
        with self._lock:
            self._uploads[name] = body
        size = len(body)
        return 200, {
            "remainingByteCount": 0,
            "usedChunks": {"0": size},
            "totalByteCount": size,
            "localFilePath": f"{UPLOAD_DIRECTORY}/{name}",
            "temporaryFilePath": "",
        }

    def _install_certificate(self, body: Any) -> tuple[int, Any]:
        name = str(body.get("name", ""))
        partition = str(body.get("partition", "Common"))
        source = str(body.get("sourcePath", ""))
        prefix = f"file://{UPLOAD_DIRECTORY}/"
        with self._lock:
            content = (
                self._uploads.get(source[len(prefix) :]) if source.startswith(prefix) else None
            )
            full_path = f"/{partition}/{name}"
            if full_path in self.certificates:
                return 409, _error(
                    409,
                    f"01020066:3: The requested Certificate File ({full_path}) already "
                    f"exists in partition {partition}.",
                )
            if content is None or b"-----BEGIN CERTIFICATE-----" not in content:
                return 400, _error(
                    400, f"Certificate file {source} not found or not a certificate."
                )
            try:
                self.certificates[full_path] = _certificate_record(name, partition, content)
            except ValueError:
                return 400, _error(400, f"Certificate file {source} is not a valid certificate.")
            return 200, _without_content(self.certificates[full_path])

    def _devices(self) -> list[dict[str, str]]:
        me = {
            "name": self.hostname,
            "managementIp": self.address,
            "failoverState": self.failover_state,
            "selfDevice": "true",
        }
        return [me, *({**peer, "selfDevice": "false"} for peer in self.peers)]

    def _run(self, body: Any) -> tuple[int, Any]:
        words = str(body.get("utilCmdArgs", "")).split()
        if (
            body.get("command") != "run"
            or words[:2] != ["config-sync", "to-group"]
            or len(words) != 3
        ):
            return 400, _error(
                400, 'expected {"command":"run","utilCmdArgs":"config-sync to-group <group>"}'
            )
        group = words[2] if words[2].startswith("/") else f"/Common/{words[2]}"
        with self._lock:
            if group not in self.device_groups:
                return 400, _error(400, f"01071028:3: The device group ({group}) was not found.")
            self.syncs.append(group)
            self.sync_status = "In Sync"
        return 200, {"kind": "tm:cm:runstate", "command": "run", "utilCmdArgs": " ".join(words)}

    # -- TLS -----------------------------------------------------------------------------------

    def _server_context(self) -> ssl.SSLContext:
        key = new_private_key("ecp256")
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.hostname)]))
            .issuer_name(self._ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(self.hostname),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(self._ca.private_key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # ssl loads a chain only from files; they live for the duration of this call.
        with tempfile.TemporaryDirectory(prefix="bigip-emulator-") as directory:
            chain, key_file = Path(directory, "chain.pem"), Path(directory, "key.pem")
            chain.write_text(to_pem(certificate) + self._ca.pem)
            key_file.write_bytes(key_pem)
            context.load_cert_chain(chain, key_file)
        return context


def _certificate_record(name: str, partition: str, content: bytes) -> dict[str, Any]:
    """An ssl-cert object: F5's metadata fields, of the first certificate in the file."""
    certificates = x509.load_pem_x509_certificates(content)
    first = certificates[0]
    not_after = first.not_valid_after_utc
    return {
        "kind": "tm:sys:file:ssl-cert:ssl-certstate",
        "name": name,
        "partition": partition,
        "fullPath": f"/{partition}/{name}",
        "checksum": f"SHA1:{len(content)}:{hashlib.sha1(content).hexdigest()}",  # noqa: S324 (F5's format)
        "fingerprint": "SHA256/" + first.fingerprint(hashes.SHA256()).hex(":").upper(),
        "isBundle": "true" if len(certificates) > 1 else "false",
        "subject": first.subject.rfc4514_string(),
        "issuer": first.issuer.rfc4514_string(),
        "expirationDate": int(not_after.timestamp()),
        "expirationString": not_after.strftime("%b %d %H:%M:%S %Y GMT"),
        "content": content.decode(),  # kept here only; no answer carries it
    }


def _without_content(record: Any) -> Any:
    if not isinstance(record, dict):
        return record
    return {key: value for key, value in record.items() if key != "content"}


def _stats(kind: str, values: dict[str, str]) -> dict[str, Any]:
    """The nested stats shape of /mgmt/tm/cm/failover-status and sync-status."""
    link = f"https://localhost/mgmt/tm/cm/{kind}/0"
    entries = {key: {"description": value} for key, value in values.items()}
    return {
        "kind": f"tm:cm:{kind}:{kind}stats",
        "selfLink": f"https://localhost/mgmt/tm/cm/{kind}?ver=17.1.0",
        "entries": {link: {"nestedStats": {"entries": entries}}},
    }


# -- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.bigip",
        description="Serve an emulated BIG-IP management API (iControl REST) on 127.0.0.1 "
        "until SIGTERM or SIGINT. Prints one JSON line describing it.",
    )
    parser.add_argument("--username", default="admin", help="the user name it accepts")
    parser.add_argument(
        "--password-env",
        default=BIGIP_PASSWORD_ENV,
        help=f"environment variable holding the password (default {BIGIP_PASSWORD_ENV})",
    )
    parser.add_argument("--port", type=int, default=0, help="fixed port (default: any)")
    parser.add_argument("--hostname", default="bigip1.local.test")
    parser.add_argument(
        "--ca-file",
        type=Path,
        required=True,
        help="write the CA of the management certificate here (PEM)",
    )
    parser.add_argument(
        "--server-ssl-profile",
        action="append",
        default=[],
        help="full path of a server-SSL profile that exists (repeatable)",
    )
    parser.add_argument("--device-group", help="a device group of this unit")
    parser.add_argument("--auto-sync", action="store_true", help="the device group auto-syncs")
    parser.add_argument("--standby", action="store_true", help="this unit is the standby")
    args = parser.parse_args(argv)
    password = os.environ.get(args.password_env, "")
    if not password:
        print(
            f"The environment variable {args.password_env} is not set or empty; set it to the "
            "password the emulated BIG-IP should accept.",
            file=sys.stderr,
        )
        return 2
    bigip = EmulatedBigip(
        args.username,
        password,
        hostname=args.hostname,
        port=args.port,
        failover_state="standby" if args.standby else "active",
    )
    for profile in args.server_ssl_profile:
        bigip.add_server_ssl_profile(profile)
    if args.device_group:
        bigip.add_device_group(args.device_group, auto_sync=args.auto_sync)
    args.ca_file.parent.mkdir(parents=True, exist_ok=True)
    args.ca_file.write_text(bigip.management_ca_pem)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with bigip:
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(bigip.describe()), flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
