"""Verified HTTPS with one node: its load balancer heartbeat, and the configurator session.

Apart from the observation (client.py, plain sockets) so that a program that only observes
never imports requests and urllib3 (about 85 ms of every `pulumi preview`; issue "Fast on
slow links"). Every session here verifies the node's chain against the root CAs the caller
trusts and pins the exact certificate observed a moment before (see _NodeAdapter); the
configurator's paths are client.CONFIGURATOR_PATHS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import requests
from cryptography import x509
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.util.retry import Retry

from components import pki
from components.appliance.client import (
    ADMIN_PASSWORD_VARIABLE,
    HEARTBEAT_PATH,
    KEY_LOG_VARIABLE,
    PATHS_OVERRIDE_VARIABLE,
    READ_ATTEMPTS,
    ApplianceError,
    ApplianceUnavailable,
    NodeAddress,
    ServedNode,
    configurator_paths,
    describe_network_problem,
    key_log_refusal,
    observe_configurator_certificate,
    request_timeout,
    signed_by,
)

__all__ = [
    "ConfiguratorSession",
    "PresentedAnotherCertificate",
    "heartbeat_ok",
    "open_configurator",
]

_VK_TOKEN = re.compile(r"""ec_wiz\.vk\s*=\s*['"]([^'"]+)['"]""")


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
        total=READ_ATTEMPTS - 1,
        connect=READ_ATTEMPTS - 1,
        read=0,
        status=READ_ATTEMPTS - 1,
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
    return any(signed_by([certificate], root) for root in roots)


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
            reason = _describe_request_problem(problem)
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


def _describe_request_problem(problem: BaseException) -> str:
    """describe_network_problem, knowing requests' own exception classes too."""
    text = type(problem).__name__
    if isinstance(problem, requests.exceptions.SSLError):
        return f"TLS verification failed ({text}); the node's certificate is not trusted"
    if isinstance(problem, requests.exceptions.Timeout):
        return f"no answer in time ({text})"
    if isinstance(problem, requests.exceptions.ConnectionError):
        return f"connection failed ({text})"
    return describe_network_problem(problem)
