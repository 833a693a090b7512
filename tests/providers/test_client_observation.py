"""The unverified observation step of the appliance client, against small real TLS servers.

The emulator issues node certificates straight from the appliance root; these servers cover
what it does not: a chain with an intermediate, a certificate from another CA than the one
published, and a port that does not speak TLS.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from components.appliance.client import ApplianceError, NodeAddress, observe_node
from components.appliance.observation import TrustDecisionError, decide_trust, observe_cluster

FQDN = "ws1-a.corp.test"


@contextmanager
def serve(published_root_pem: bytes, server_certificate: trustme.LeafCert) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(published_root_pem)))
            self.end_headers()
            self.wfile.write(published_root_pem)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_certificate.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def root() -> trustme.CA:
    return trustme.CA()


def node_at(port: int) -> NodeAddress:
    return NodeAddress(FQDN, "127.0.0.1", port, 9, "")


def test_a_chain_with_an_intermediate_verifies_against_the_published_root(root):
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert(FQDN)
    with serve(root.cert_pem.bytes(), leaf) as port:
        served = observe_node(node_at(port))
        assert served.problem is None
        assert served.issued_by_root is True
        assert len(served.intermediates) == 1


def test_a_certificate_the_published_root_did_not_issue_is_refused(root):
    other = trustme.CA()
    with serve(root.cert_pem.bytes(), other.issue_cert(FQDN)) as port:
        served = observe_node(node_at(port))
        assert served.issued_by_root is False and served.problem is not None
        observation = observe_cluster("ws1", [node_at(port)])
    with pytest.raises(TrustDecisionError) as refused:
        decide_trust(observation, [], trust_on_first_use=True)
    assert str(refused.value).startswith(
        f"cluster ws1: node {FQDN} serves a certificate that the root CA it publishes ("
    )
    assert "A custom certificate from another CA?" in str(refused.value)


def test_a_port_that_does_not_speak_tls_is_a_failed_handshake_not_an_untrusted_certificate():
    plain = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = threading.Thread(target=plain.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ApplianceError) as failed:
            observe_node(node_at(plain.server_address[1]))
    finally:
        plain.shutdown()
        plain.server_close()
    message = str(failed.value)
    assert "the TLS handshake failed" in message and "is this port a TLS port?" in message
    assert "not trusted" not in message
