"""The one place that knows appliance URLs, and the observation of one node over plain TLS.

Two surfaces are used:

* the service port (443): the root CA PEM and the certificate served in the TLS handshake
  (observed here, with sockets and http.client only);
* the appliance configurator (8443, "VA Configuration"): a cookie session with an X-Vk
  token read from the login page, then form-encoded POSTs, as VMware's own PowerShell
  module does for first-boot setup. The session itself, like every request verified
  against trusted root CAs, is in session.py, so that observing imports no HTTP library.

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
import http.client
import json
import math
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components import pki

__all__ = [
    "ADMIN_PASSWORD_VARIABLE",
    "ALLOW_KEY_LOG_VARIABLE",
    "configurator_paths",
    "key_log_refusal",
    "CONFIGURATOR_PATHS",
    "ApplianceError",
    "ApplianceUnavailable",
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


READ_ATTEMPTS = 3  # idempotent reads only; writes are never retried blindly


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
    for attempt in range(READ_ATTEMPTS):
        try:
            chain, status, body = _fetch_root_ca_unverified(node, seconds)
            break
        except (OSError, http.client.HTTPException) as problem:
            last_problem = _describe_handshake_problem(problem)
            time.sleep(0.2 * (2**attempt))
    else:
        raise ApplianceError(
            f"node {node.fqdn} ({node.address}:{node.service_port}): could not read the root CA "
            f"after {READ_ATTEMPTS} attempts: {last_problem}."
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
        verification_problem is None or signed_by(chain, root_ca),
    )


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


def signed_by(chain: Sequence[x509.Certificate], root_ca: x509.Certificate) -> bool:
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


def _describe_handshake_problem(problem: BaseException) -> str:
    """For the unverified observation: nothing is verified there, so a TLS error is a
    failed handshake, not an untrusted certificate."""
    if isinstance(problem, ssl.SSLError):
        return f"the TLS handshake failed ({type(problem).__name__}); is this port a TLS port?"
    return describe_network_problem(problem)


def describe_network_problem(problem: BaseException) -> str:
    """A short reason without URLs' query strings, bodies or other request data."""
    text = type(problem).__name__
    if isinstance(problem, ssl.SSLError):
        return f"TLS verification failed ({text}); the node's certificate is not trusted"
    if isinstance(problem, TimeoutError):
        return f"no answer in time ({text})"
    if isinstance(problem, ConnectionError):
        return f"connection failed ({text})"
    return text
