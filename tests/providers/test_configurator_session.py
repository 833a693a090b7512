"""The configurator session against a small real TLS server on loopback that misbehaves on
purpose: an answer that trickles in, a redirect or an internal error at login, a transient
503, a form echoed back in an error. (The emulator answers correctly; these are the answers
a real appliance version, or a broken one, may give.)"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import trustme

from components.appliance.client import ApplianceError, NodeAddress
from components.appliance.session import open_configurator

FQDN = "ws1-node1.local.test"
PASSWORD = "session-canary-Pa55&word"  # noqa: S105 (a test canary)
LOGIN_PAGE = b"<script>window.ec_wiz.vk = 'token-1';</script>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.gets += 1
        mode = self.server.mode
        if mode == "redirect":
            self._answer(302, b"", {"Location": "https://elsewhere.example/SAAS/auth/login?x=1"})
        elif mode == "error":
            self._answer(500, json.dumps({"error": "boom"}).encode())
        elif mode == "flaky" and self.server.gets == 1:
            self._answer(503, b"{}")
        elif mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                if self.server.stopping.wait(0.2):
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
        else:
            self._answer(200, LOGIN_PAGE)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.server.mode == "echo":
            echoed = f"bad request: {body.decode()}"
            self._answer(400, json.dumps({"error": echoed}).encode())
        else:
            self._answer(200, json.dumps({"status": "ok"}).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.gets = 0
        self.stopping = threading.Event()
        self.socket = context.wrap_socket(self.socket, server_side=True)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def serve(ca: trustme.CA) -> Iterator[Any]:
    servers: list[_Server] = []

    def start(mode: str) -> tuple[_Server, NodeAddress]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(FQDN).configure_cert(context)
        server = _Server(mode, context)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port = server.server_address[1]
        return server, NodeAddress(FQDN, "127.0.0.1", 443, port)

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def login(ca: trustme.CA, node: NodeAddress, timeout: float | None = None) -> None:
    with open_configurator(node, ca.cert_pem.bytes().decode(), PASSWORD, timeout):
        pass


def test_an_answer_that_trickles_in_ends_at_the_overall_deadline(ca, serve):
    _, node = serve("trickle")
    started = time.monotonic()
    with pytest.raises(ApplianceError) as error:
        login(ca, node, timeout=1.0)
    assert time.monotonic() - started < 5, "the deadline did not hold"
    assert FQDN in str(error.value) and "overall deadline" in str(error.value)


def test_a_redirect_at_login_is_reported_as_a_redirect(ca, serve):
    _, node = serve("redirect")
    with pytest.raises(ApplianceError) as error:
        login(ca, node)
    message = str(error.value)
    assert FQDN in message and "HTTP 302" in message and "/SAAS/auth/login" in message
    assert "session token" not in message and "x=1" not in message


def test_an_internal_error_at_login_is_reported_as_one(ca, serve):
    server, node = serve("error")
    with pytest.raises(ApplianceError) as error:
        login(ca, node)
    assert "internal error (HTTP 500)" in str(error.value) and FQDN in str(error.value)
    assert server.gets == 3, "a GET answered 500 is retried twice, with backoff"


def test_a_single_transient_503_on_a_read_is_retried(ca, serve):
    server, node = serve("flaky")
    login(ca, node)
    assert server.gets == 2


def test_an_echoed_form_is_scrubbed_and_no_request_stays_in_the_chain(ca, serve):
    _, node = serve("echo")
    with pytest.raises(ApplianceError) as error:
        login(ca, node)
    message = str(error.value)
    assert "[a submitted value]" in message, message
    assert "Pa55" not in message and "session-canary" not in message
    assert "could not log in to the configurator" in message
    assert error.value.__cause__ is None and error.value.__context__ is None


def test_a_network_failure_keeps_no_request_in_the_chain(ca, serve, monkeypatch):
    _, node = serve("ok")

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise requests.ConnectionError("refused", request=requests.Request("POST", "https://x"))

    with open_configurator(node, ca.cert_pem.bytes().decode(), PASSWORD) as session:
        monkeypatch.setattr(session._session, "request", refuse)
        with pytest.raises(ApplianceError) as error:
            session.generate_certificate("ws1.local.test", ["ws1.local.test"])
    message = str(error.value)
    assert "could not run configurator operation 'generate'" in message
    assert error.value.__cause__ is None and error.value.__context__ is None
