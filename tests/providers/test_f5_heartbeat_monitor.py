"""The BIG-IP heartbeat monitor's exact send and receive strings against emulated nodes.

The monitor sends HEARTBEAT_SEND over TLS and searches the whole answer (status line,
headers, body) for the receive string, a POSIX extended regular expression (F5 K5917). The
answers here are read off the wire from the appliance emulator; the expression is evaluated
by GNU grep's ERE engine with the whole answer as one record (-z), the closest stand-in for
the monitor's matcher available here (the monitor itself cannot run here).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest

from components.trust_stores.f5 import HEARTBEAT_RECEIVE, HEARTBEAT_SEND
from emulators.appliance import ApplianceCluster
from tests.conftest import SERVICE_FQDN

GREP = shutil.which("grep")
pytestmark = pytest.mark.skipif(GREP is None, reason="GNU grep (the ERE engine used) is missing")


def heartbeat_answer(appliance: ApplianceCluster) -> bytes:
    """What the monitor receives from the first node: the raw answer to the exact send string."""
    node = appliance.nodes[0]
    context = ssl.create_default_context(cadata=appliance.root_ca_pem)
    with (
        socket.create_connection((node.address, node.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=node.fqdn) as tls,
    ):
        tls.sendall(HEARTBEAT_SEND.format(host=SERVICE_FQDN).encode())
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return answer


def matches(receive: str, answer: bytes) -> bool:
    assert GREP is not None
    found = subprocess.run(
        [GREP, "-Ezq", "--", receive],
        input=answer,
        env={"LC_ALL": "C"},
        check=False,
    )
    assert found.returncode in (0, 1), found
    return found.returncode == 0


def test_a_healthy_node_matches(appliance):
    answer = heartbeat_answer(appliance)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok"), answer
    assert matches(HEARTBEAT_RECEIVE, answer)


def test_a_failing_node_does_not_match_though_its_answer_holds_ok(appliance):
    appliance.nodes[0].fail_heartbeat()
    answer = heartbeat_answer(appliance)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert matches("ok", answer), "the unanchored string would have marked this node up"
    assert not matches(HEARTBEAT_RECEIVE, answer)


@pytest.mark.parametrize("body", ["Broken", "not ok", "ok, but degraded", ""])
def test_a_200_with_another_body_does_not_match(appliance, body):
    appliance.nodes[0].fail_heartbeat(200, body, (("X-Token", "ok"),))
    assert not matches(HEARTBEAT_RECEIVE, heartbeat_answer(appliance))


def test_the_send_string_asks_for_an_unchunked_answer_and_closes():
    send = HEARTBEAT_SEND.format(host=SERVICE_FQDN)
    assert send == (
        "GET /SAAS/API/1.0/REST/system/health/heartbeat HTTP/1.0\r\n"
        f"Host: {SERVICE_FQDN}\r\nConnection: close\r\n\r\n"
    )
