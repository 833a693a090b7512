"""HTTPS client for one Workspace ONE Access node: the one place that knows appliance URLs.

Two surfaces are used:

* the service port (443): the root CA PEM and the certificate served in the TLS handshake;
* the appliance configurator (8443, "VA Configuration"): a cookie session with an X-Vk
  token read from the login page, then form-encoded POSTs, as VMware's own PowerShell
  module does for first-boot setup.

The configurator requests behind "Auto Generate Certificate" and the load balancer root CA
page are NOT publicly documented. Their paths and form fields live in `CONFIGURATOR_PATHS`
below and nowhere else; an operator whose appliance version differs overrides them with the
environment variable `WS1_ACCESS_CONFIGURATOR_PATHS` (README, "Checking the configurator
paths against your appliance").

Clients connect to the node's address but verify the node's FQDN (SNI + hostname check),
so a stack works before DNS is in place. Nothing here is kept between calls: a session is
opened, used and closed inside one provider method.
"""

from __future__ import annotations

import _ssl
import hashlib
import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.util.retry import Retry

from components import pki

__all__ = [
    "ADMIN_PASSWORD_VARIABLE",
    "ALLOW_KEY_LOG_VARIABLE",
    "configurator_paths",
    "key_log_refusal",
    "CONFIGURATOR_PATHS",
    "heartbeat_ok",
    "ApplianceError",
    "ApplianceUnavailable",
    "ConfiguratorSession",
    "PresentedAnotherCertificate",
    "open_configurator",
    "NodeAddress",
    "ServedNode",
    "observe_configurator_certificate",
    "observe_node",
]

ROOT_CA_PATH = "/horizon_workspace_rootca.pem"
HEARTBEAT_PATH = "/SAAS/API/1.0/REST/system/health/heartbeat"

# (method, path) of each configurator operation. Unverified against a real appliance: see
# the module docstring. Emulators/appliance.py implements exactly this table.
CONFIGURATOR_PATHS: Mapping[str, tuple[str, str]] = {
    "login_page": ("GET", "/cfg/login"),
    "login": ("POST", "/cfg/login"),
    "certificate": ("GET", "/cfg/ssl/certificate"),
    "generate": ("POST", "/cfg/ssl/generateCertificate"),
    "lb_root_ca_get": ("GET", "/cfg/ssl/lbRootCa"),
    "lb_root_ca_set": ("POST", "/cfg/ssl/lbRootCa"),
}
PATHS_OVERRIDE_VARIABLE = "WS1_ACCESS_CONFIGURATOR_PATHS"
# Where the admin password comes from when the stack config has no secret for it.
ADMIN_PASSWORD_VARIABLE = "WS1_ACCESS_ADMIN_PASSWORD"  # noqa: S105 (a variable's name)

TIMEOUT_VARIABLE = "WS1_ACCESS_HTTP_TIMEOUT"
KEY_LOG_VARIABLE = "SSLKEYLOGFILE"
ALLOW_KEY_LOG_VARIABLE = "WS1_ACCESS_ALLOW_SSLKEYLOGFILE"


def key_log_refusal() -> str | None:
    """Why a configurator login must not happen now, or None.

    With SSLKEYLOGFILE set, Python's TLS (urllib3 reads it) writes the session keys to that
    file, and whoever holds it can decrypt the login that carries the admin password. A
    warning is not enough for that: the operator must say yes explicitly.
    """
    if not os.environ.get(KEY_LOG_VARIABLE):
        return None
    if os.environ.get(ALLOW_KEY_LOG_VARIABLE, "").strip().lower() in ("1", "true", "yes"):
        return None
    return (
        f"environment variable {KEY_LOG_VARIABLE} is set, so the TLS keys of the configurator "
        "login, which carries the appliance admin password, would be written to that file; "
        f"unset {KEY_LOG_VARIABLE}, or, only while debugging TLS on a test appliance, set "
        f"{ALLOW_KEY_LOG_VARIABLE}=true."
    )


def request_timeout() -> float:
    """Seconds per request: 15, or WS1_ACCESS_HTTP_TIMEOUT for slow links (and tests).

    For a configurator request this is an overall deadline (connection, retries and the
    whole answer), not a per-read timeout: an answer that trickles in still ends in time.
    """
    text = os.environ.get(TIMEOUT_VARIABLE, "15")
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ApplianceError(
            f"environment variable {TIMEOUT_VARIABLE} must be a positive, finite number of "
            "seconds (e.g. 15 or 2.5); unset it for the default of 15."
        )
    return seconds


_VK_TOKEN = re.compile(r"""ec_wiz\.vk\s*=\s*['"]([^'"]+)['"]""")
_ATTEMPTS = 3  # idempotent reads only; writes are never retried blindly


class ApplianceError(RuntimeError):
    """A node could not be reached or answered unexpectedly; str() is an operator sentence."""


class ApplianceUnavailable(ApplianceError):
    """The configurator could not answer now (network, deadline, HTTP 5xx): says nothing about
    whether it speaks the protocol this program expects."""


@dataclass(frozen=True)
class NodeAddress:
    """How to reach one node: connect to `address`, send `fqdn` as SNI, verify `tls_name`.

    `tls_name` is the name the node's certificate must carry for whoever connects to it:
    the node's own FQDN when SSL passes through the load balancer (nodes call each other
    by it), the service FQDN when the load balancer terminates SSL and re-encrypts (the
    load balancer checks that name). Empty means the node's FQDN.
    """

    fqdn: str
    address: str
    service_port: int = 443
    configurator_port: int = 8443
    tls_name: str = ""

    @property
    def verified_name(self) -> str:
        return self.tls_name or self.fqdn

    @classmethod
    def from_input(cls, value: Mapping[str, Any]) -> NodeAddress:
        return cls(
            fqdn=str(value["fqdn"]),
            address=str(value["address"]),
            service_port=int(value["service_port"]),
            configurator_port=int(value["configurator_port"]),
            tls_name=str(value.get("tls_name") or ""),
        )

    def as_input(self) -> dict[str, Any]:
        return {
            "fqdn": self.fqdn,
            "address": self.address,
            "service_port": self.service_port,
            "configurator_port": self.configurator_port,
            "tls_name": self.tls_name,
        }


@dataclass(frozen=True)
class ServedNode:
    """What one node serves right now: its published root CA and its handshake certificate.

    `problem` is None when the served certificate verifies against the node's own published
    root CA for the node's TLS name; otherwise it says why not (expired, wrong names, other
    issuer), and a new certificate is what fixes it. Whether the root CA deserves trust
    (pin or trust on first use) is the caller's decision, not this class's.
    """

    fqdn: str
    root_ca: x509.Certificate
    served_certificate: x509.Certificate
    problem: str | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    # False when the published root CA did not sign the served chain at all (a custom
    # certificate from another CA, or a node answering for someone else): not ours to fix.
    issued_by_root: bool = True

    @property
    def root_ca_sha256(self) -> str:
        return pki.sha256_fingerprint(self.root_ca)

    @property
    def served_sha256(self) -> str:
        return pki.sha256_fingerprint(self.served_certificate)


def configurator_paths() -> Mapping[str, tuple[str, str]]:
    """The path table, with the operator's override applied when one is set."""
    override = os.environ.get(PATHS_OVERRIDE_VARIABLE)
    if not override:
        return CONFIGURATOR_PATHS
    try:
        extra = json.loads(override)
        merged = dict(CONFIGURATOR_PATHS)
        for name, (method, path) in extra.items():
            if name not in CONFIGURATOR_PATHS:
                raise KeyError(name)
            merged[name] = (str(method).upper(), str(path))
        return merged
    except (ValueError, KeyError, TypeError) as problem:
        raise ApplianceError(
            f"environment variable {PATHS_OVERRIDE_VARIABLE} is not valid ({problem}); expected "
            'JSON like {"generate": ["POST", "/cfg/ssl/generateCertificate"]} with names from: '
            f"{', '.join(CONFIGURATOR_PATHS)}."
        ) from None


def observe_node(node: NodeAddress, timeout: float | None = None) -> ServedNode:
    """Read the node's root CA and served certificate over ONE connection, then verify them.

    This is the trust-on-first-use observation step, and the only unverified handshake in
    the program: before we hold the appliance root CA there is nothing to verify the first
    connection with. Nothing read here is trusted until the caller has checked the root CA
    against the pin (or warned loudly) and `pki.verify_served_chain` has checked that the
    served certificate chains to it for the node's TLS name (see ServedNode.problem).

    Each attempt (connect, handshake, request, whole answer) must finish within `timeout`
    seconds in total, not per read: a node that trickles its answer cannot stall a run.
    """
    seconds = timeout or request_timeout()
    last_problem = ""
    for attempt in range(_ATTEMPTS):
        try:
            chain, status, body = _fetch_root_ca_unverified(node, seconds)
            break
        except (OSError, http.client.HTTPException) as problem:
            last_problem = _describe_handshake_problem(problem)
            time.sleep(0.2 * (2**attempt))
    else:
        raise ApplianceError(
            f"node {node.fqdn} ({node.address}:{node.service_port}): could not read the root CA "
            f"after {_ATTEMPTS} attempts: {last_problem}."
        )
    source = f"the root CA served by node {node.fqdn} at {ROOT_CA_PATH}"
    if status != 200:
        raise ApplianceError(
            f"node {node.fqdn}: {ROOT_CA_PATH} answered HTTP {status}; expected 200 with the "
            "appliance root CA in PEM form."
        )
    root_ca = pki.load_certificate(body, source)
    served_certificate, *intermediates = chain
    try:
        pki.verify_served_chain(
            chain,
            [root_ca],
            node.verified_name,
            f"the certificate served by node {node.fqdn}",
        )
        verification_problem = None
    except pki.ChainVerificationError as failure:
        verification_problem = str(failure)
    return ServedNode(
        node.fqdn,
        root_ca,
        served_certificate,
        verification_problem,
        tuple(intermediates),
        # A chain that verified was issued by the root CA: the signatures need no second look.
        verification_problem is None or _signed_by(chain, root_ca),
    )


def heartbeat_ok(
    node: NodeAddress, trusted_roots_pem: str, served_sha256: str, timeout: float | None = None
) -> bool:
    """True when the node's load balancer heartbeat answers 200 "ok" over TLS that presents
    exactly `served_sha256`, verified against `trusted_roots_pem` (VMware docs, "Configure
    Load Balancer Settings": the health monitor URL)."""
    seconds = timeout or request_timeout()
    url = f"https://{node.address}:{node.service_port}{HEARTBEAT_PATH}"
    with _verified_session(node, trusted_roots_pem, served_sha256) as (session, _adapter):
        try:
            answer = session.get(
                url, headers={"Host": node.fqdn}, timeout=seconds, allow_redirects=False
            )
        except requests.RequestException:
            return False
    return answer.status_code == 200 and answer.text.strip() == "ok"


def observe_configurator_certificate(node: NodeAddress, timeout: float | None = None) -> str:
    """SHA-256 of the certificate the node's configurator port presents (an observation:
    the session that uses it verifies the chain; see _NodeAdapter)."""
    seconds = timeout or request_timeout()
    try:
        deadline = time.monotonic() + seconds
        address = (node.address, node.configurator_port)
        with (
            socket.create_connection(address, timeout=seconds) as raw,
            _observation_socket(raw, node.fqdn, deadline) as tls,
        ):
            chain = _presented_chain(tls)
    except OSError as problem:
        raise ApplianceError(
            f"node {node.fqdn} ({node.address}:{node.configurator_port}): could not reach the "
            f"configurator: {_describe_handshake_problem(problem)}."
        ) from None
    except ValueError:  # a certificate that is not DER
        chain = []
    if not chain:
        raise ApplianceError(
            f"node {node.fqdn} ({node.address}:{node.configurator_port}): the configurator "
            "presented no readable certificate in the TLS handshake."
        )
    return pki.sha256_fingerprint(chain[0])


def _signed_by(chain: Sequence[x509.Certificate], root_ca: x509.Certificate) -> bool:
    """True when each certificate of the chain is signed by the next, and the last by the root
    CA (signatures only: dates and names are judged by pki.verify_served_chain)."""
    try:
        for certificate, issuer in zip(chain, [*chain[1:], root_ca], strict=True):
            if certificate == issuer:  # a node may send the root itself at the end
                continue
            certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class _DeadlineSocket(ssl.SSLSocket):
    """A TLS socket whose reads all end by one deadline (time.monotonic()), not per read:
    http.client reads through the socket, so this bounds the whole answer."""

    deadline: float | None = None

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete answer within the deadline")
            self.settimeout(remaining)
        return super().recv_into(buffer, nbytes or 0, flags)


@lru_cache(maxsize=1)
def _observation_context() -> ssl.SSLContext:
    """The one client context of this process for the deliberate unverified observation
    (see observe_node): certificate checks are done afterwards with cryptography, on exactly
    the bytes the connection saw. Built once: no trust store is loaded, because none is used
    (ssl.create_default_context would load the whole system store for nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.sslsocket_class = _DeadlineSocket
    return context


def _observation_socket(raw: socket.socket, fqdn: str, deadline: float) -> _DeadlineSocket:
    # The handshake is bounded by the socket timeout as a whole (CPython's ssl module keeps
    # one deadline for do_handshake); every later read by `deadline`.
    raw.settimeout(max(deadline - time.monotonic(), 0.001))
    tls = _observation_context().wrap_socket(raw, server_hostname=fqdn)
    assert isinstance(tls, _DeadlineSocket)
    tls.deadline = deadline
    return tls


def _presented_chain(tls: ssl.SSLSocket) -> list[x509.Certificate]:
    """The certificates the peer sent, leaf first, as it sent them (unverified)."""
    # Public from Python 3.13; 3.11 and 3.12 have it on the private SSL object.
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is None:
        leaf = tls.getpeercert(binary_form=True)
        return [x509.load_der_x509_certificate(leaf)] if leaf else []
    return [
        x509.load_der_x509_certificate(
            item if isinstance(item, bytes) else item.public_bytes(_ssl.ENCODING_DER)
        )
        for item in getter() or []
    ]


def _fetch_root_ca_unverified(
    node: NodeAddress, timeout: float
) -> tuple[list[x509.Certificate], int, bytes]:
    connection = _SniConnection(
        node.address,
        node.service_port,
        node.fqdn,
        time.monotonic() + timeout,
        timeout=timeout,
    )
    try:
        connection.connect()
        assert isinstance(connection.sock, ssl.SSLSocket)
        chain = _presented_chain(connection.sock)
        if not chain:
            raise ApplianceError(f"node {node.fqdn} presented no certificate in the TLS handshake.")
        connection.request("GET", ROOT_CA_PATH, headers={"Host": node.fqdn})
        response = connection.getresponse()
        return chain, response.status, response.read(1024 * 1024)
    finally:
        connection.close()


class _SniConnection(http.client.HTTPConnection):
    """An HTTPS connection to an address that sends the node's FQDN as SNI, and that must
    have its whole answer by `deadline` (see _DeadlineSocket). TLS is added in connect()
    with the shared observation context (HTTPSConnection would build a default one)."""

    def __init__(self, address: str, port: int, fqdn: str, deadline: float, **kwargs: Any) -> None:
        super().__init__(address, port, **kwargs)
        self._fqdn = fqdn
        self._deadline = deadline

    def connect(self) -> None:
        # http.client's own connect sets TCP_NODELAY: the request goes out at once.
        super().connect()
        self.sock = _observation_socket(self.sock, self._fqdn, self._deadline)


@lru_cache(maxsize=16)
def _verified_context(
    trusted_roots_pem: str, key_log_file: str | None, check_dates: bool = True
) -> ssl.SSLContext:
    """A client context that verifies chains against exactly these root CAs (never the
    system store), built once per set of roots and shared by every session that trusts them.
    `key_log_file` (SSLKEYLOGFILE) is honoured as urllib3 would; it is part of the cache key.

    `check_dates` False is the one relaxation (see open_configurator): the caller verified
    the pinned certificate's signatures itself, and OpenSSL checks nothing here. It is part
    of the cache key because urllib3 sets `verify_mode` on the context it is given
    (urllib3/connection.py, _ssl_wrap_socket_and_match_hostname): one context object must
    only ever be given one value, or sessions running at the same time would mix them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # replaced by the exact-certificate pin: see _NodeAdapter
    context.verify_mode = ssl.CERT_REQUIRED if check_dates else ssl.CERT_NONE
    context.load_verify_locations(cadata=trusted_roots_pem)
    if key_log_file:
        context.keylog_filename = key_log_file
    return context


class _NodeAdapter(HTTPAdapter):
    """requests adapter for one node: connect to its address, send its FQDN as SNI, and
    accept exactly one certificate, the one observed a moment ago.

    The chain is still verified against the trusted root CAs (`_verified_context`); the
    exact-certificate pin replaces the hostname check because a node whose certificate has
    the wrong names is precisely the node whose configurator we must log in to, to give it a
    new one. With `check_dates` False (see open_configurator) the chain was verified by the
    caller, and only the pin is checked here.

    It also keeps the sockets it opened, so that `abort` can end a request whose overall
    deadline passed (requests and urllib3 only bound each single read).
    """

    def __init__(
        self,
        node: NodeAddress,
        served_sha256: str,
        retries: Retry,
        trusted_roots_pem: str,
        check_dates: bool = True,
    ) -> None:
        self._node = node
        self._served_sha256 = served_sha256
        self._trusted_roots_pem = trusted_roots_pem
        self._check_dates = check_dates
        self._connections: list[Any] = []
        self._aborted = False
        super().__init__(max_retries=retries)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._node.fqdn
        kwargs["assert_hostname"] = False
        kwargs["assert_fingerprint"] = self._served_sha256
        kwargs["ssl_context"] = _verified_context(
            self._trusted_roots_pem, os.environ.get(KEY_LOG_VARIABLE), self._check_dates
        )
        super().init_poolmanager(*args, **kwargs)
        connections = self._connections

        adapter = self

        class _TrackedConnection(_PinnedConnection):
            def connect(self) -> None:
                connections.append(self)
                # A retry after the deadline passed (abort() ran during urllib3's backoff)
                # must not open a socket that abort() can no longer reach.
                if adapter._aborted:
                    raise TimeoutError("the overall deadline passed")
                super().connect()

        class _TrackedPool(HTTPSConnectionPool):
            ConnectionCls = _TrackedConnection

        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "https": _TrackedPool,
        }

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The trusted roots live in the context above; requests would otherwise add a CA
        # bundle file (its own, for verify=True) to that shared context on every connection.
        conn.cert_reqs = "CERT_REQUIRED" if self._check_dates else "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None

    def abort(self) -> None:
        """Shut down every socket this adapter opened: the blocked read returns at once, and
        no new connection is opened after this."""
        self._aborted = True
        for connection in list(self._connections):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class PresentedAnotherCertificate(ApplianceError):
    """The configurator presented another certificate than the one the session pins."""


class _PinnedConnection(HTTPSConnection):
    """Checks the exact-certificate pin itself, right after the handshake and before anything
    is sent: a different certificate is then one clear error, raised once (urllib3's own
    check raises an SSLError that its retries would repeat)."""

    def connect(self) -> None:
        pin, self.assert_fingerprint = self.assert_fingerprint, None
        try:
            super().connect()
        finally:
            self.assert_fingerprint = pin
        assert isinstance(self.sock, ssl.SSLSocket)
        presented = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
        if not pin or presented != pin.replace(":", "").lower():
            self.close()
            raise PresentedAnotherCertificate(
                f"node {self.server_hostname} ({self.host}:{self.port}): the configurator "
                f"presented the certificate {presented}, not the one observed a moment before; "
                "if its certificate was just changed, run again"
            )


@contextmanager
def _verified_session(
    node: NodeAddress, trusted_roots_pem: str, served_sha256: str, *, check_dates: bool = True
) -> Iterator[tuple[requests.Session, _NodeAdapter]]:
    session = requests.Session()
    session.verify = True  # against the trusted roots only: see _NodeAdapter.cert_verify
    session.trust_env = False  # no proxy from the environment between us and the node
    # Retries (urllib3's, with backoff): connection errors for every method, and HTTP
    # 500/502/503/504 for idempotent reads only; a POST is never sent twice.
    retries = Retry(
        total=_ATTEMPTS - 1,
        connect=_ATTEMPTS - 1,
        read=0,
        status=_ATTEMPTS - 1,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        backoff_factor=0.2,
        raise_on_status=False,
    )
    adapter = _NodeAdapter(node, served_sha256, retries, trusted_roots_pem, check_dates)
    session.mount("https://", adapter)
    try:
        yield session, adapter
    finally:
        session.close()


@contextmanager
def open_configurator(
    node: NodeAddress,
    trusted_roots_pem: str,
    password: str,
    timeout: float | None = None,
    *,
    current: ServedNode | None = None,
) -> Iterator[ConfiguratorSession]:
    """Log in to the node's configurator over TLS verified against `trusted_roots_pem`.

    The session accepts exactly one certificate, with its chain verified against the trusted
    root CAs (see _NodeAdapter). `current` is what the node's service port served a moment
    ago (observe_node): that certificate is tried first, which saves a handshake. No public
    source says that the configurator port presents the same certificate as the service
    port, hence the fallback: when it presents another one (refused right after the
    handshake, before anything is sent), the certificate the configurator port presents now
    is observed and pinned instead. The password is used for the login request only: it is
    never stored, logged, or included in an error.

    When the pinned certificate is `current` and it is outside its validity period (expired,
    or not yet valid: exactly a node this program must give a new certificate), OpenSSL would
    refuse the dates; the chain's signatures are then checked here against the trusted root
    CAs, and only the dates of that one pinned certificate are let through. Nothing else is
    relaxed: another certificate, another issuer or a bad signature still fails.
    """
    refusal = key_log_refusal()
    if refusal:
        raise ApplianceError(f"node {node.fqdn}: not logging in to the configurator: {refusal}")
    with ExitStack() as opened:
        try:
            pin = (
                current.served_sha256
                if current
                else observe_configurator_certificate(node, timeout)
            )
            session = _logged_in(opened, node, trusted_roots_pem, password, timeout, pin, current)
        except PresentedAnotherCertificate:
            if current is None:
                raise
            opened.close()
            pin = observe_configurator_certificate(node, timeout)
            session = _logged_in(opened, node, trusted_roots_pem, password, timeout, pin, current)
        yield session


def _logged_in(
    opened: ExitStack,
    node: NodeAddress,
    trusted_roots_pem: str,
    password: str,
    timeout: float | None,
    pin: str,
    current: ServedNode | None,
) -> ConfiguratorSession:
    check_dates = True
    if current is not None and current.served_sha256 == pin:
        check_dates = not _outside_validity_but_trusted(current, trusted_roots_pem)
    http_session, adapter = opened.enter_context(
        _verified_session(node, trusted_roots_pem, pin, check_dates=check_dates)
    )
    session = ConfiguratorSession(node, http_session, timeout or request_timeout(), adapter)
    session._login(password)
    return session


def _outside_validity_but_trusted(current: ServedNode, trusted_roots_pem: str) -> bool:
    certificate = current.served_certificate
    now = datetime.now(UTC)
    if certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return False
    try:
        roots = pki.load_bundle(trusted_roots_pem, "the trusted root CA bundle")
    except pki.CertificateError:
        return False
    # Only a leaf issued straight by a trusted root CA (as the appliance issues its own): with
    # an intermediate in between, OpenSSL's other checks on it (CA flag, key usage, its own
    # dates) would be skipped too, and those are not ours to relax.
    if any(extra not in roots for extra in current.intermediates):
        return False
    return any(_signed_by([certificate], root) for root in roots)


class ConfiguratorSession:
    """A logged-in appliance configurator session on one node (see `open_configurator`)."""

    def __init__(
        self,
        node: NodeAddress,
        http_session: requests.Session,
        timeout: float,
        adapter: _NodeAdapter | None = None,
    ) -> None:
        self._node = node
        self._session = http_session
        self._timeout = timeout
        self._adapter = adapter
        self._paths = configurator_paths()
        self._vk = ""

    # Operations -------------------------------------------------------------------------

    def current_certificate(self) -> x509.Certificate:
        """The server certificate the configurator reports for this node."""
        answer = self._call("certificate")
        return pki.load_certificate(
            str(answer.get("certificate", "")),
            f"the server certificate reported by the configurator of node {self._node.fqdn}",
        )

    def generate_certificate(self, common_name: str, sans: Sequence[str]) -> x509.Certificate:
        """'Auto Generate Certificate (self-signed)' with this CN and these SANs."""
        answer = self._call(
            "generate", {"commonName": common_name, "subjectAltNames": ",".join(sans)}
        )
        return pki.load_certificate(
            str(answer.get("certificate", "")),
            f"the certificate generated by the configurator of node {self._node.fqdn}",
        )

    def load_balancer_root_ca(self) -> str:
        """The load balancer root CA installed on this node, or '' when none is."""
        return str(self._call("lb_root_ca_get").get("certificate", ""))

    def install_load_balancer_root_ca(self, pem: str) -> None:
        self._call("lb_root_ca_set", {"certificate": pem})

    # Plumbing ---------------------------------------------------------------------------

    def _url(self, name: str) -> tuple[str, str]:
        method, path = self._paths[name]
        return method, f"https://{self._node.address}:{self._node.configurator_port}{path}"

    def _login(self, password: str) -> None:
        method, url = self._url("login_page")
        what = f"open the configurator login page ({method} {self._paths['login_page'][1]})"
        page = self._send(method, url, what)
        self._expect_ok(page, what)
        match = _VK_TOKEN.search(page.text)
        if not match:
            raise ApplianceError(
                f"node {self._node.fqdn}: the configurator login page has no session token "
                "(window.ec_wiz.vk); this appliance version may use other configurator "
                f"paths (see {PATHS_OVERRIDE_VARIABLE} in the README)."
            )
        self._vk = match.group(1)
        method, url = self._url("login")
        what = "log in to the configurator"
        form = {"password": password}
        answer = self._send(method, url, what, form)
        if answer.status_code == 401:
            raise ApplianceError(
                f"node {self._node.fqdn}: the configurator rejected the admin password "
                "(HTTP 401); check the secret named by admin_password_key in the stack "
                f"config, or {ADMIN_PASSWORD_VARIABLE}."
            )
        self._expect_ok(answer, what, form)

    def _call(self, name: str, form: Mapping[str, str] | None = None) -> dict[str, Any]:
        method, url = self._url(name)
        what = f"run configurator operation '{name}' ({method} {self._paths[name][1]})"
        answer = self._send(method, url, what, form)
        self._expect_ok(answer, what, form)
        body: Any = None
        with suppress(ValueError):
            body = answer.json()
        # Raised outside any `except`: the decoder's error holds the whole answer, which may
        # echo the submitted form; nothing of it may ride along in __context__.
        if body is None:
            raise ApplianceError(
                f"node {self._node.fqdn}: could not {what}: the answer is not JSON; this "
                "appliance version may use other configurator paths (see "
                f"{PATHS_OVERRIDE_VARIABLE} in the README)."
            )
        if not isinstance(body, dict):
            raise ApplianceError(
                f"node {self._node.fqdn}: could not {what}: the answer is JSON but not an "
                "object; expected a JSON object."
            )
        return body

    def _send(
        self, method: str, url: str, what: str, form: Mapping[str, str] | None = None
    ) -> requests.Response:
        headers = {"Accept": "application/json", "Host": self._node.fqdn}
        if self._vk:
            headers["X-Vk"] = self._vk
        # One overall deadline for the request, its retries and the whole answer: at the
        # deadline the adapter shuts the socket, and the blocked read returns.
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            if self._adapter is not None:
                self._adapter.abort()

        timer = threading.Timer(self._timeout, expire)
        timer.daemon = True
        reason = ""
        timer.start()
        try:
            # No redirects: a redirect could carry the login form elsewhere, even to http://.
            answer = self._session.request(
                method,
                url,
                data=form,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
            if not timed_out.is_set():
                return answer
        except requests.RequestException as problem:
            reason = _describe_network_problem(problem)
        finally:
            timer.cancel()
        if timed_out.is_set():
            reason = f"no complete answer within {self._timeout:g} s (the overall deadline)"
        # Raised here, outside the `except`: the requests exception holds the request, whose
        # body may hold the password; neither __cause__ nor __context__ may keep it.
        raise ApplianceUnavailable(
            f"node {self._node.fqdn} ({self._node.address}:{self._node.configurator_port}): "
            f"could not {what}: {reason}."
        )

    def _expect_ok(
        self, answer: requests.Response, what: str, form: Mapping[str, str] | None = None
    ) -> None:
        status = answer.status_code
        if status == 200:
            return
        if 300 <= status < 400:
            target = urllib.parse.urlsplit(answer.headers.get("Location", "")).path or "?"
            meaning = (
                f"the configurator answered HTTP {status}, a redirect to {_scrub(target, form)}, "
                "which is not followed; a form login that redirects means this appliance "
                f"version uses other configurator paths (see {PATHS_OVERRIDE_VARIABLE} in the "
                "README)"
            )
        elif status >= 500:
            meaning = (
                f"the configurator reported an internal error (HTTP {status})"
                f"{_error_detail(answer, form)}; try again later, or check the appliance"
            )
        else:
            meaning = f"the configurator answered HTTP {status}{_error_detail(answer, form)}"
        kind = ApplianceUnavailable if status >= 500 else ApplianceError
        raise kind(f"node {self._node.fqdn}: could not {what}: {meaning}; expected 200.")


def _error_detail(answer: requests.Response, form: Mapping[str, str] | None = None) -> str:
    body: Any = None
    with suppress(ValueError):
        body = answer.json()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = _scrub(body["error"], form)[:200]
        return f" ({detail})" if detail else ""
    return ""


def _scrub(text: str, form: Mapping[str, str] | None) -> str:
    """`text` without any submitted form value, in the forms an echo may take it in.

    A value too short to replace safely removes the whole text instead.
    """
    for value in (form or {}).values():
        if not value:
            continue
        forms = {value, urllib.parse.quote_plus(value), urllib.parse.quote(value, safe="")}
        forms.add(json.dumps(value)[1:-1])
        for shown in sorted(forms, key=len, reverse=True):
            if shown in text:
                if len(shown) < 4:
                    return ""
                text = text.replace(shown, "[a submitted value]")
    return text


def _describe_handshake_problem(problem: BaseException) -> str:
    """For the unverified observation: nothing is verified there, so a TLS error is a
    failed handshake, not an untrusted certificate."""
    if isinstance(problem, ssl.SSLError):
        return f"the TLS handshake failed ({type(problem).__name__}); is this port a TLS port?"
    return _describe_network_problem(problem)


def _describe_network_problem(problem: BaseException) -> str:
    """A short reason without URLs' query strings, bodies or other request data."""
    text = type(problem).__name__
    if isinstance(problem, requests.exceptions.SSLError | ssl.SSLError):
        return f"TLS verification failed ({text}); the node's certificate is not trusted"
    if isinstance(problem, requests.exceptions.Timeout | TimeoutError):
        return f"no answer in time ({text})"
    if isinstance(problem, requests.exceptions.ConnectionError | ConnectionError):
        return f"connection failed ({text})"
    return text
