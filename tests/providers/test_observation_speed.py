"""How nodes are observed: all at once, with cheap TLS, each at most once before and once after
a change, and never longer than one deadline. Structural checks only: times are figures that
`make bench` prints, not test assertions."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest
import trustme

from components.appliance import client, observation, session
from components.appliance.certificate import ApplianceCertificateProvider
from components.appliance.client import ApplianceError, NodeAddress, ServedNode, observe_node
from components.appliance.observation import cluster_observation, observe_nodes
from emulators.appliance import ApplianceCluster
from tests.conftest import ADMIN_PASSWORD, NODE_FQDNS, SERVICE_FQDN
from tests.providers.test_appliance_providers import (
    PASSTHROUGH_SANS,
    addresses,
    certificate_props,
    configured,
)

ROOT_CA_PATH = "/horizon_workspace_rootca.pem"


def test_every_node_of_every_cluster_is_in_flight_at_the_same_time(appliance, monkeypatch):
    other_fqdns = ("ws2-a.corp.test", "ws2-b.corp.test", "ws2-c.corp.test")
    with ApplianceCluster(other_fqdns, "ws2.corp.test", ADMIN_PASSWORD) as other:
        nodes = [*addresses(appliance), *addresses(other)]
        # Every observation waits here until all six are running: a pool per cluster, a
        # bound under six, or clusters one after another would break the barrier.
        together = threading.Barrier(len(nodes), timeout=10)

        def observe_together(node: NodeAddress, timeout: float | None = None) -> ServedNode:
            together.wait()
            return observe_node(node, timeout)

        monkeypatch.setattr(observation, "observe_node", observe_together)
        results = observe_nodes(nodes)
    assert all(isinstance(result, ServedNode) for result in results.values()), results
    first = cluster_observation("ws1", addresses(appliance), results)
    assert first.root_ca_sha256s == [appliance.root_ca_sha256]


def test_a_node_that_cannot_be_observed_fails_its_own_cluster_only(appliance, monkeypatch):
    monkeypatch.setattr(client.time, "sleep", lambda _seconds: None)  # no retry backoff here
    other_fqdns = ("ws2-a.corp.test",)
    with ApplianceCluster(other_fqdns, "ws2.corp.test", ADMIN_PASSWORD) as other:
        broken = addresses(appliance)[1]
        appliance.node(broken.fqdn).fail_next(10, "reset", listener="service")
        results = observe_nodes([*addresses(appliance), *addresses(other)])
        healthy = cluster_observation("ws2", addresses(other), results)
    assert healthy.root_ca_sha256s == [other.root_ca_sha256]
    assert isinstance(results[broken], ApplianceError)
    with pytest.raises(ApplianceError) as failed:
        cluster_observation("ws1", addresses(appliance), results)
    assert str(failed.value).startswith(f"node {broken.fqdn} ")


def test_the_unverified_observation_uses_one_cheap_context_without_any_trust_store(
    appliance, monkeypatch
):
    monkeypatch.setenv("SSLKEYLOGFILE", "/nonexistent/keys.log")

    def no_default_context(*_: Any, **__: Any) -> ssl.SSLContext:
        raise AssertionError("the observation must not build a default context (system store)")

    monkeypatch.setattr(ssl, "create_default_context", no_default_context)
    for node in addresses(appliance):
        observe_node(node)
        client.observe_configurator_certificate(node)
    context = client._observation_context()
    assert context is client._observation_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE and context.check_hostname is False
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.keylog_filename is None  # plain SSLContext ignores SSLKEYLOGFILE


def test_verified_contexts_are_built_once_per_set_of_roots_and_trust_only_those(appliance):
    other_fqdns = ("ws2-a.corp.test",)
    with ApplianceCluster(other_fqdns, "ws2.corp.test", ADMIN_PASSWORD) as other:
        one = appliance.root_ca_pem
        both = appliance.root_ca_pem + other.root_ca_pem
    assert session._verified_context(one, None) is session._verified_context(one, None)
    assert session._verified_context(both, None) is not session._verified_context(one, None)
    assert session._verified_context(one, None).cert_store_stats()["x509_ca"] == 1
    assert session._verified_context(both, None).cert_store_stats()["x509_ca"] == 2
    assert session._verified_context(one, None).verify_mode == ssl.CERT_REQUIRED


def test_an_answer_that_trickles_in_ends_at_the_deadline_not_per_read(monkeypatch):
    # A TLS server that sends a status line and then one byte every 0.1 s, forever: each
    # read gets data well within the timeout, so only an overall deadline ends it.
    authority = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("ws1-a.corp.test").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(raw,), daemon=True).start()

    def trickle(raw: socket.socket) -> None:
        try:
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(4096)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not stop.wait(0.1):
                    tls.sendall(b"x")
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    node = NodeAddress("ws1-a.corp.test", "127.0.0.1", listener.getsockname()[1], 9)
    monkeypatch.setattr(client.time, "sleep", lambda _seconds: None)  # no backoff wait here
    try:
        with pytest.raises(ApplianceError) as failed:
            observe_node(node, timeout=0.3)
    finally:
        stop.set()
        listener.close()
    assert "could not read the root CA after 3 attempts: no answer in time" in str(failed.value)


def test_a_change_observes_each_node_once_before_and_each_changed_node_once_after(appliance):
    sans = [*PASSTHROUGH_SANS, "ws1-dr.corp.test"]
    props = certificate_props(appliance, sans)
    appliance.node("ws1-c.corp.test").regenerate(SERVICE_FQDN, sans)  # already right
    appliance.reset_counters()
    configured(ApplianceCertificateProvider()).update("ws1", props, props)
    reads = {
        fqdn: appliance.node(fqdn).count(listener="service", path=ROOT_CA_PATH)
        for fqdn in NODE_FQDNS
    }
    assert reads == {"ws1-a.corp.test": 2, "ws1-b.corp.test": 2, "ws1-c.corp.test": 1}
    assert appliance.writes() == 2


def test_a_node_that_cannot_be_observed_stops_a_change_before_any_node_is_touched(
    appliance, monkeypatch
):
    monkeypatch.setattr(client.time, "sleep", lambda _seconds: None)  # no retry backoff here
    props = certificate_props(appliance, [*PASSTHROUGH_SANS, "ws1-dr.corp.test"])
    appliance.node("ws1-c.corp.test").fail_next(10, "reset", listener="service")
    appliance.reset_counters()
    with pytest.raises(ApplianceError) as failed:
        configured(ApplianceCertificateProvider()).update("ws1", props, props)
    assert str(failed.value).startswith("node ws1-c.corp.test ")
    assert appliance.writes() == 0 and appliance.logins() == 0


def test_emulator_connections_send_small_writes_at_once(appliance):
    node = appliance.nodes[0]
    server = node._servers["service"]
    with socket.create_connection((node.address, node.port), timeout=5):
        for _ in range(100):
            accepted = list(server._connections)
            if accepted:
                break
            threading.Event().wait(0.02)
        assert accepted, "the emulator did not accept the connection"
        assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_the_configurator_session_reuses_the_observed_certificate_instead_of_a_handshake(
    appliance,
):
    sans = [*PASSTHROUGH_SANS, "ws1-dr.corp.test"]
    props = certificate_props(appliance, sans)
    appliance.reset_counters()
    configured(ApplianceCertificateProvider()).update("ws1", props, props)
    # Per node: the service port before, one configurator session (keep-alive), the service
    # port after. Observing the configurator port first would make it four.
    handshakes = {node.fqdn: sum(node.sni_names.values()) for node in appliance.nodes}
    assert handshakes == dict.fromkeys(NODE_FQDNS, 3)
    assert appliance.writes() == 3 and appliance.logins() == 3


def test_a_configurator_with_a_certificate_of_its_own_is_observed_and_then_used(appliance):
    sans = [*PASSTHROUGH_SANS, "ws1-dr.corp.test"]
    props = certificate_props(appliance, sans)
    node_b = appliance.node("ws1-b.corp.test")
    node_b.serve_configurator_certificate_of_its_own()
    appliance.reset_counters()
    outs = configured(ApplianceCertificateProvider()).update("ws1", props, props).outs
    assert appliance.writes() == 3 and appliance.logins() == 3
    assert "ws1-dr.corp.test" in outs["served"]["ws1-b.corp.test"]["sans"]
    # The refused pin, the observation of the configurator port, and the session.
    assert sum(node_b.sni_names.values()) == 3 + 2
    assert node_b.count(listener="configurator", path="login") == 1


def test_a_configurator_certificate_that_changes_after_its_observation_is_a_clear_error(
    appliance, monkeypatch
):
    node = addresses(appliance)[0]
    observed = client.observe_configurator_certificate(node)
    appliance.node(node.fqdn).serve_configurator_certificate_of_its_own()
    monkeypatch.setattr(session, "observe_configurator_certificate", lambda *_: observed)
    with (
        pytest.raises(session.PresentedAnotherCertificate) as failed,
        session.open_configurator(node, appliance.root_ca_pem, ADMIN_PASSWORD),
    ):
        pass
    assert str(failed.value).startswith(
        f"node {node.fqdn} ({node.address}:{node.configurator_port}): the configurator "
        "presented the certificate "
    )
    assert ADMIN_PASSWORD not in str(failed.value)
    assert appliance.logins() == 0
