"""The Workspace ONE Access emulator, exercised over real TLS the way the product will use it."""

from __future__ import annotations

import datetime
import json
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError
from requests.adapters import HTTPAdapter

from emulators.appliance import CONFIGURATOR_PATHS, SERVICE_PATHS, ApplianceCluster, EmulatedNode

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "emu.test"
SERVICE_FQDN = f"ws1.{DOMAIN}"
NODE_FQDNS = [f"ws1-node{i}.{DOMAIN}" for i in (1, 2, 3)]
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r"window\.ec_wiz\.vk = '([^']+)';")


@pytest.fixture
def cluster():
    with ApplianceCluster(NODE_FQDNS, SERVICE_FQDN, PASSWORD) as running:
        yield running


@pytest.fixture
def ca_file(cluster, tmp_path):
    path = tmp_path / "appliance-root.pem"
    path.write_text(cluster.root_ca_pem)
    return path


class _FqdnAdapter(HTTPAdapter):
    """Connect to the loopback address, but send SNI and check the certificate for `fqdn`."""

    def __init__(self, fqdn: str) -> None:
        self._fqdn = fqdn
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs.update(server_hostname=self._fqdn, assert_hostname=self._fqdn)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


class NodeClient:
    """requests against one node, always verifying against a given root CA file."""

    def __init__(self, node: EmulatedNode, ca_file: Path, fqdn: str | None = None) -> None:
        self.node = node
        self.ca_file = str(ca_file)
        self.http = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would otherwise replace the pinned root.
        self.http.trust_env = False
        self.http.mount("https://", _FqdnAdapter(fqdn or node.fqdn))

    def url(self, listener: str, path: str) -> str:
        port = self.node.port if listener == "service" else self.node.configurator_port
        return f"https://127.0.0.1:{port}{path}"

    def get(self, listener: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url(listener, path), verify=self.ca_file, **kwargs)

    def post(self, listener: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.post(self.url(listener, path), verify=self.ca_file, **kwargs)

    def cfg(self, name: str, **kwargs) -> requests.Response:
        endpoint = CONFIGURATOR_PATHS[name]
        send = self.get if endpoint.method == "GET" else self.post
        return send("configurator", endpoint.path, **kwargs)

    def login(self, password: str = PASSWORD) -> str:
        page = self.cfg("login_page")
        token = TOKEN.search(page.text).group(1)
        answer = self.cfg(
            "login",
            data={"password": password},
            headers={"X-Vk": token, "Accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        return token

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def clients(cluster, ca_file):
    made: list[NodeClient] = []

    def make(node: EmulatedNode, fqdn: str | None = None) -> NodeClient:
        made.append(NodeClient(node, ca_file, fqdn))
        return made[-1]

    yield make
    for client in made:
        client.close()


def served_leaf(
    node: EmulatedNode,
    listener: str = "service",
    *,
    cadata: str | None = None,
    server_hostname: str | None = None,
) -> x509.Certificate:
    """The leaf from a fresh handshake with SNI; verified by ssl when `cadata` is given."""
    if cadata is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=cadata)
    port = node.port if listener == "service" else node.configurator_port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname or node.fqdn) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def verify_for(leaf: x509.Certificate, root_pem: str, name: str) -> None:
    store = Store(x509.load_pem_x509_certificates(root_pem.encode()))
    PolicyBuilder().store(store).build_server_verifier(DNSName(name)).verify(leaf, [])


def dns_names(certificate: x509.Certificate) -> list[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return extension.value.get_values_for_type(x509.DNSName)


def pem_of(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM).decode()


# -- certificates and the root CA endpoint -------------------------------------------------------


def test_downloaded_root_ca_validates_what_every_node_serves_for_its_fqdn(cluster, clients):
    for node in cluster.nodes:
        response = clients(node).get("service", SERVICE_PATHS["root_ca"])
        assert response.status_code == 200, node.fqdn
        assert response.headers["Content-Type"] == "application/x-pem-file", node.fqdn
        root_pem = response.text
        assert root_pem == cluster.root_ca_pem == node.root_ca_pem, node.fqdn
        for listener in ("service", "configurator"):
            leaf = served_leaf(node, listener, cadata=root_pem)  # ssl checks chain + hostname
            verify_for(leaf, root_pem, node.fqdn)
            verify_for(leaf, root_pem, SERVICE_FQDN)
            assert pem_of(leaf) == node.leaf_pem, (node.fqdn, listener)
    assert cluster.nodes[0].sni_names[cluster.nodes[0].fqdn] >= 3


def test_root_ca_is_an_appliance_style_ca(cluster):
    root = x509.load_pem_x509_certificate(cluster.root_ca_pem.encode())
    assert root.subject == root.issuer
    common_name = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name.startswith("vmware Identity Manager Root CA ")
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(root.signature_hash_algorithm, hashes.SHA256)
    public_key = root.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert datetime.timedelta(days=3600) < lifetime < datetime.timedelta(days=3700)
    expected = root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert cluster.root_ca_sha256 == expected


def test_initial_leaf_names_the_service_and_every_node(cluster):
    root = x509.load_pem_x509_certificate(cluster.root_ca_pem.encode())
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    for node in cluster.nodes:
        leaf = x509.load_pem_x509_certificate(node.leaf_pem.encode())
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERVICE_FQDN
        assert dns_names(leaf) == [SERVICE_FQDN, *NODE_FQDNS], node.fqdn
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.key_encipherment
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == root_ski.digest
        leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert datetime.timedelta(days=700) < lifetime < datetime.timedelta(days=760)
    assert len({node.leaf_pem for node in cluster.nodes}) == len(cluster.nodes)


def test_a_client_expecting_another_name_is_refused(cluster, clients):
    client = clients(cluster.nodes[0], fqdn=f"elsewhere.{DOMAIN}")
    with pytest.raises(requests.exceptions.SSLError):
        client.get("service", SERVICE_PATHS["heartbeat"])


def test_heartbeat_and_unknown_paths(cluster, clients):
    client = clients(cluster.nodes[1])
    heartbeat = client.get("service", SERVICE_PATHS["heartbeat"])
    assert (heartbeat.status_code, heartbeat.text) == (200, "ok")
    assert heartbeat.headers["Content-Type"].startswith("text/plain")
    assert client.get("service", "/SAAS/nothing-here").status_code == 404
    assert client.post("service", SERVICE_PATHS["root_ca"]).status_code == 404
    missing = client.get("configurator", "/cfg/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    wrong_method = client.get("configurator", CONFIGURATOR_PATHS["generate"].path)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"


# -- the configurator session ----------------------------------------------------------------


def test_login_session_flow(cluster, clients):
    client = clients(cluster.nodes[0])
    cert_path = CONFIGURATOR_PATHS["certificate"].path

    page = client.cfg("login_page")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    token = TOKEN.search(page.text).group(1)
    cookie = page.headers["Set-Cookie"]
    assert re.fullmatch(r"JSESSIONID=[0-9A-F]+; Path=/cfg; Secure; HttpOnly", cookie), cookie

    before = client.get("configurator", cert_path, headers={"X-Vk": token})
    assert (before.status_code, before.json()) == (401, {"error": "login required"})

    form = {"password": PASSWORD}
    missing_token = client.cfg("login", data=form)
    assert (missing_token.status_code, missing_token.json()) == (403, {"error": "invalid session"})
    wrong_token = client.cfg("login", data=form, headers={"X-Vk": token + "x"})
    assert wrong_token.status_code == 403
    no_cookie = clients(cluster.nodes[0]).cfg("login", data=form, headers={"X-Vk": token})
    assert (no_cookie.status_code, no_cookie.json()) == (403, {"error": "invalid session"})

    wrong = client.cfg("login", data={"password": "guess"}, headers={"X-Vk": token})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid credentials"})
    as_json = client.cfg("login", json=form, headers={"X-Vk": token})
    assert as_json.status_code == 415

    good = client.cfg("login", data=form, headers={"X-Vk": token, "Accept": "application/json"})
    assert (good.status_code, good.json()) == (200, {"status": "ok"})

    document = client.get("configurator", cert_path, headers={"X-Vk": token}).json()
    assert document == {
        "certificate": cluster.nodes[0].leaf_pem,
        "rootCa": cluster.root_ca_pem,
        "commonName": SERVICE_FQDN,
        "subjectAltNames": [SERVICE_FQDN, *NODE_FQDNS],
    }
    without_token = client.get("configurator", cert_path)
    assert (without_token.status_code, without_token.json()) == (403, {"error": "invalid session"})


def test_sessions_belong_to_one_node(cluster, clients):
    first, second = cluster.nodes[0], cluster.nodes[1]
    logged_in = clients(first)
    token = logged_in.login()
    cookie = logged_in.http.cookies.get("JSESSIONID")
    other = clients(second)
    answer = other.get(
        "configurator",
        CONFIGURATOR_PATHS["certificate"].path,
        headers={"X-Vk": token, "Cookie": f"JSESSIONID={cookie}"},
    )
    assert (answer.status_code, answer.json()) == (401, {"error": "login required"})


# -- certificate generation ------------------------------------------------------------------


def test_generate_serves_the_new_names_on_the_next_handshake(cluster, clients):
    node = cluster.nodes[0]
    client = clients(node)
    token = client.login()
    sans = [SERVICE_FQDN, *NODE_FQDNS, f"ws1-dr.{DOMAIN}"]
    answer = client.cfg(
        "generate",
        data={"commonName": SERVICE_FQDN, "subjectAltNames": ", ".join(sans)},
        headers={"X-Vk": token, "Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["commonName"] == SERVICE_FQDN
    assert document["subjectAltNames"] == sans
    assert document["rootCa"] == cluster.root_ca_pem

    leaf = served_leaf(node, cadata=cluster.root_ca_pem, server_hostname=f"ws1-dr.{DOMAIN}")
    assert pem_of(leaf) == document["certificate"] == node.leaf_pem
    assert dns_names(leaf) == sans
    assert pem_of(served_leaf(node, "configurator")) == document["certificate"]
    for other in cluster.nodes[1:]:
        assert f"ws1-dr.{DOMAIN}" not in dns_names(served_leaf(other)), other.fqdn


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"commonName": " ", "subjectAltNames": SERVICE_FQDN}, "commonName must not be empty"),
        ({"commonName": "bad_name!", "subjectAltNames": SERVICE_FQDN}, "not a valid DNS name"),
        ({"commonName": SERVICE_FQDN, "subjectAltNames": "ok.test, -bad-.test"}, "-bad-.test"),
    ],
)
def test_generate_rejects_bad_names(cluster, clients, form, message):
    node = cluster.nodes[0]
    before = node.leaf_pem
    client = clients(node)
    token = client.login()
    answer = client.cfg("generate", data=form, headers={"X-Vk": token})
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert node.leaf_pem == before


def test_regeneration_keeps_the_root_by_default_and_is_not_a_request(cluster):
    node = cluster.nodes[2]
    document = node.regenerate(SERVICE_FQDN, [SERVICE_FQDN, node.fqdn])
    assert document["subjectAltNames"] == [SERVICE_FQDN, node.fqdn]
    assert node.root_ca_pem == cluster.root_ca_pem
    verify_for(served_leaf(node), cluster.root_ca_pem, node.fqdn)
    assert node.count() == 0
    with pytest.raises(ValueError, match="commonName"):
        node.regenerate("", [SERVICE_FQDN])


def test_regeneration_makes_new_root_moves_only_the_regenerated_nodes(cluster, clients, tmp_path):
    cluster.regeneration_makes_new_root = True
    first, second, third = cluster.nodes
    client = clients(first)
    token = client.login()
    answer = client.cfg(
        "generate",
        data={"commonName": SERVICE_FQDN, "subjectAltNames": ",".join([SERVICE_FQDN, *NODE_FQDNS])},
        headers={"X-Vk": token},
    )
    assert answer.status_code == 200
    new_root = cluster.next_root_ca_pem
    assert new_root and new_root != cluster.root_ca_pem
    assert answer.json()["rootCa"] == new_root

    second.regenerate(SERVICE_FQDN, [SERVICE_FQDN, *NODE_FQDNS])  # shares the same next root
    new_ca = tmp_path / "next-root.pem"
    new_ca.write_text(new_root)
    for node in (first, second):
        with pytest.raises(requests.exceptions.SSLError):
            clients(node).get("service", SERVICE_PATHS["root_ca"])  # pinned to the old root
        assert NodeClient(node, new_ca).get("service", SERVICE_PATHS["root_ca"]).text == new_root
        verify_for(served_leaf(node), new_root, node.fqdn)
        with pytest.raises(VerificationError):
            verify_for(served_leaf(node), cluster.root_ca_pem, node.fqdn)
    assert clients(third).get("service", SERVICE_PATHS["root_ca"]).text == cluster.root_ca_pem
    verify_for(served_leaf(third), cluster.root_ca_pem, third.fqdn)


# -- the load balancer root CA ---------------------------------------------------------------


def test_lb_root_ca_round_trip(cluster, clients):
    node = cluster.nodes[1]
    client = clients(node)
    token = client.login()
    headers = {"X-Vk": token}
    empty = client.cfg("lb_root_ca_get", headers=headers)
    assert (empty.status_code, empty.json()) == (200, {"certificate": ""})

    lb_root = trustme.CA().cert_pem.bytes().decode()
    stored = client.cfg("lb_root_ca_set", data={"certificate": lb_root}, headers=headers)
    assert (stored.status_code, stored.json()) == (200, {"status": "ok"})
    assert client.cfg("lb_root_ca_get", headers=headers).json() == {"certificate": lb_root}
    assert node.lb_root_ca_pem == lb_root
    assert cluster.nodes[0].lb_root_ca_pem == ""

    junk = client.cfg("lb_root_ca_set", data={"certificate": "not a pem"}, headers=headers)
    assert junk.status_code == 400 and "PEM" in junk.json()["error"]
    assert node.lb_root_ca_pem == lb_root

    anonymous = clients(node).cfg("lb_root_ca_set", data={"certificate": lb_root})
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "login required"})


# -- fault knobs -----------------------------------------------------------------------------


def test_fail_next_500_then_recovers(cluster, clients):
    node = cluster.nodes[0]
    client = clients(node)
    node.fail_next(2, "500")
    for _ in range(2):
        failed = client.get("service", SERVICE_PATHS["root_ca"])
        assert failed.status_code == 500 and "error" in failed.json()
    assert client.get("service", SERVICE_PATHS["root_ca"]).status_code == 200


def test_fail_next_reset_drops_the_connection(cluster, clients):
    node = cluster.nodes[0]
    client = clients(node)
    node.fail_next(1, "reset", listener="configurator")
    assert client.get("service", SERVICE_PATHS["heartbeat"]).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        client.cfg("login_page")
    assert client.cfg("login_page").status_code == 200


def test_fail_next_hang_times_the_client_out_and_never_blocks_stop(tmp_path):
    with ApplianceCluster(["n1.hang.test"], "ws1.hang.test", PASSWORD, key_type="ecp256") as c:
        node = c.nodes[0]
        ca = tmp_path / "hang-root.pem"
        ca.write_text(c.root_ca_pem)
        client = NodeClient(node, ca)
        node.hang_seconds = 0.5
        node.fail_next(1, "hang")
        with pytest.raises(requests.exceptions.Timeout):
            client.get("service", SERVICE_PATHS["heartbeat"], timeout=0.2)
        assert client.get("service", SERVICE_PATHS["heartbeat"]).status_code == 200

        node.hang_seconds = 20
        node.fail_next(1, "hang")
        with pytest.raises(requests.exceptions.Timeout):
            client.get("service", SERVICE_PATHS["heartbeat"], timeout=0.2)
        started = time.monotonic()
        c.stop()
        assert time.monotonic() - started < 3
        client.close()


def test_latency_is_added_to_every_request(cluster, clients):
    node = cluster.nodes[2]
    client = clients(node)
    client.get("service", SERVICE_PATHS["heartbeat"])  # handshake outside the measurement
    node.latency = 0.3
    started = time.monotonic()
    assert client.get("service", SERVICE_PATHS["heartbeat"]).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_serve_html_instead_of_pem(cluster, clients):
    node = cluster.nodes[0]
    node.serve_html_instead_of_pem = True
    answer = clients(node).get("service", SERVICE_PATHS["root_ca"])
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "BEGIN CERTIFICATE" not in answer.text and "<html" in answer.text


def test_serve_expired_certificate(cluster):
    node = cluster.nodes[0]
    names = node.subject_alt_names
    node.serve_expired_certificate()
    leaf = served_leaf(node)
    assert leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    assert dns_names(leaf) == names
    with pytest.raises(VerificationError):
        verify_for(leaf, cluster.root_ca_pem, node.fqdn)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        served_leaf(node, cadata=cluster.root_ca_pem)


def test_serve_certificate_expiring_in(cluster):
    node = cluster.nodes[0]
    names = node.subject_alt_names
    node.serve_certificate_expiring_in(10)
    leaf = served_leaf(node)
    left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=10) < left < datetime.timedelta(days=11)
    assert dns_names(leaf) == names
    verify_for(leaf, cluster.root_ca_pem, node.fqdn)


def test_prepare_next_root_is_the_root_that_regeneration_then_uses(cluster):
    next_root = cluster.prepare_next_root()
    assert cluster.prepare_next_root() == next_root
    assert next_root != cluster.root_ca_pem
    cluster.regeneration_makes_new_root = True
    node = cluster.nodes[0]
    node.regenerate(node.common_name, node.subject_alt_names)
    assert node.root_ca_pem == next_root
    verify_for(served_leaf(node), next_root, node.fqdn)


def test_root_ca_validity_is_configurable():
    short = ApplianceCluster([f"ws1-a.{DOMAIN}"], f"ws1.{DOMAIN}", "pw", root_ca_validity_days=20)
    root = x509.load_pem_x509_certificate(short.root_ca_pem.encode())
    left = root.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=19) < left <= datetime.timedelta(days=20)


def test_serve_certificate_for_wrong_names(cluster):
    node = cluster.nodes[1]
    node.serve_certificate_for([f"somebody-else.{DOMAIN}"])
    leaf = served_leaf(node)
    assert dns_names(leaf) == [f"somebody-else.{DOMAIN}"]
    verify_for(leaf, cluster.root_ca_pem, f"somebody-else.{DOMAIN}")  # same root, other name
    with pytest.raises(VerificationError):
        verify_for(leaf, cluster.root_ca_pem, node.fqdn)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        served_leaf(node, cadata=cluster.root_ca_pem)


def test_serve_foreign_root(cluster, clients, tmp_path):
    odd, normal = cluster.nodes[2], cluster.nodes[0]
    odd.serve_foreign_root()
    assert odd.root_ca_pem != cluster.root_ca_pem
    foreign_ca = tmp_path / "foreign.pem"
    foreign_ca.write_text(odd.root_ca_pem)
    served_root = NodeClient(odd, foreign_ca).get("service", SERVICE_PATHS["root_ca"]).text
    assert served_root == odd.root_ca_pem
    verify_for(served_leaf(odd), served_root, odd.fqdn)
    with pytest.raises(VerificationError):
        verify_for(served_leaf(odd), cluster.root_ca_pem, odd.fqdn)
    with pytest.raises(requests.exceptions.SSLError):
        clients(odd).get("service", SERVICE_PATHS["root_ca"])  # pinned to the cluster root
    assert clients(normal).get("service", SERVICE_PATHS["root_ca"]).text == cluster.root_ca_pem


def test_fault_knobs_validate_their_arguments(cluster):
    node = cluster.nodes[0]
    with pytest.raises(ValueError, match="fault mode"):
        node.fail_next(1, "explode")
    with pytest.raises(ValueError, match="listener"):
        node.fail_next(1, "500", listener="ssh")
    with pytest.raises(ValueError):
        node.serve_certificate_for([])


# -- counters and description ----------------------------------------------------------------


def test_counters_after_a_known_sequence(cluster, clients):
    first, second = cluster.nodes[0], cluster.nodes[1]
    cluster.nodes[2].regenerate(SERVICE_FQDN, [SERVICE_FQDN])  # out of band: not counted
    client = clients(first)
    client.get("service", SERVICE_PATHS["root_ca"])
    client.get("service", SERVICE_PATHS["heartbeat"])
    client.get("service", "/unknown")
    token = client.login()
    client.cfg("login", data={"password": "nope"}, headers={"X-Vk": token})
    client.cfg("certificate", headers={"X-Vk": token})
    client.cfg("lb_root_ca_get", headers={"X-Vk": token})
    client.cfg("lb_root_ca_set", data={"certificate": cluster.root_ca_pem}, headers={"X-Vk": token})
    form = {"commonName": SERVICE_FQDN, "subjectAltNames": SERVICE_FQDN}
    client.cfg("generate", data=form, headers={"X-Vk": token})
    first.fail_next(1, "500")
    client.cfg("generate", data=form, headers={"X-Vk": token})  # injected failures count too
    clients(second).get("service", SERVICE_PATHS["root_ca"])

    assert first.counters == Counter(
        {
            ("service", "GET", "/horizon_workspace_rootca.pem"): 1,
            ("service", "GET", "/SAAS/API/1.0/REST/system/health/heartbeat"): 1,
            ("service", "GET", "/unknown"): 1,
            ("configurator", "GET", "login_page"): 1,
            ("configurator", "POST", "login"): 2,
            ("configurator", "GET", "certificate"): 1,
            ("configurator", "GET", "lb_root_ca_get"): 1,
            ("configurator", "POST", "lb_root_ca_set"): 1,
            ("configurator", "POST", "generate"): 2,
        }
    )
    assert first.count(method="POST") == 5
    assert first.count(listener="service") == 3
    assert first.count(path="generate") == 2
    assert second.count() == 1 and cluster.nodes[2].count() == 0
    assert (cluster.writes(), cluster.logins(), cluster.reads()) == (3, 2, 7)

    cluster.reset_counters()
    assert (cluster.writes(), cluster.logins(), cluster.reads()) == (0, 0, 0)
    assert not first.counters


def test_describe(cluster):
    description = cluster.describe()
    assert description["root_ca_sha256"] == cluster.root_ca_sha256
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", description["root_ca_sha256"])
    assert description["nodes"] == [
        {
            "fqdn": node.fqdn,
            "address": "127.0.0.1",
            "port": node.port,
            "configurator_port": node.configurator_port,
        }
        for node in cluster.nodes
    ]
    assert (
        len(
            {n["port"] for n in description["nodes"]}
            | {n["configurator_port"] for n in description["nodes"]}
        )
        == 6
    )
    json.dumps(description)
    assert PASSWORD not in repr(cluster) + repr(cluster.nodes)


@pytest.mark.parametrize(
    ("nodes", "service", "password", "message"),
    [
        ([], SERVICE_FQDN, PASSWORD, "at least one node"),
        (["bad name.test"], SERVICE_FQDN, PASSWORD, "not a valid host FQDN"),
        (NODE_FQDNS[:1] * 2, SERVICE_FQDN, PASSWORD, "unique"),
        (NODE_FQDNS, SERVICE_FQDN, "", "password"),
    ],
)
def test_cluster_rejects_bad_construction(nodes, service, password, message):
    with pytest.raises(ValueError, match=message):
        ApplianceCluster(nodes, service, password)


def test_other_key_types_are_served():
    with ApplianceCluster(["n1.ec.test"], "ws1.ec.test", PASSWORD, key_type="ecp256") as c:
        leaf = served_leaf(c.nodes[0], cadata=c.root_ca_pem)
        assert leaf.public_key().curve.name == "secp256r1"
    with ApplianceCluster(["n1.weak.test"], "ws1.weak.test", PASSWORD, key_type="rsa1024") as c:
        root = x509.load_pem_x509_certificate(c.root_ca_pem.encode())
        assert root.public_key().key_size == 1024
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        node = c.nodes[0]
        with (
            socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=node.fqdn) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(der).public_key().key_size == 1024


# -- command line ----------------------------------------------------------------------------


def _read_line(stream, timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line on stdout within {timeout} s")
    return stream.readline()


def test_cli_serves_a_cluster_until_sigterm(tmp_path):
    state_file = tmp_path / "state" / "appliance.json"
    env = {**os.environ, "WS1_ACCESS_ADMIN_PASSWORD": PASSWORD}
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.appliance", "--nodes", "3", "--state-file", state_file],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        description = json.loads(_read_line(process.stdout, 30))
        assert [n["fqdn"] for n in description["nodes"]] == [
            "ws1-node1.local.test",
            "ws1-node2.local.test",
            "ws1-node3.local.test",
        ]
        state = json.loads(state_file.read_text())
        root_pem = state.pop("root_ca_pem")
        assert state == description
        root = x509.load_pem_x509_certificate(root_pem.encode())
        assert root.fingerprint(hashes.SHA256()).hex(":").upper() == description["root_ca_sha256"]
        for entry in description["nodes"]:
            context = ssl.create_default_context(cadata=root_pem)
            for port in (entry["port"], entry["configurator_port"]):
                with (
                    socket.create_connection((entry["address"], port), timeout=5) as raw,
                    context.wrap_socket(raw, server_hostname=entry["fqdn"]) as tls,
                ):
                    leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
                verify_for(leaf, root_pem, entry["fqdn"])
                assert "ws1.local.test" in dns_names(leaf)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert stdout == ""  # exactly one line, already read
    assert PASSWORD not in stdout + stderr


def test_cli_refuses_to_start_without_the_password():
    env = {k: v for k, v in os.environ.items() if k != "WS1_ACCESS_ADMIN_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "emulators.appliance", "--nodes", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "WS1_ACCESS_ADMIN_PASSWORD is not set" in result.stderr
    assert result.stdout == ""
