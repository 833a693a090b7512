"""Bad inputs, each driven through the whole program against the emulated cluster.

One catalogue, two readers: tests/reliability/test_bad_inputs.py asserts every case, and
`make bench` prints how many were clear. A case makes one bad input (stack config, PEM text,
an appliance answer, or the environment) on a stack whose first `up` succeeded, runs `up`,
and judges the outcome:

* clear: the run failed with a message that names the place (config key, node, load
  balancer, variable) and repeats no secret;
* traceback: something escaped as a programming error instead (an exception out of the
  program, a traceback in the program's own message, or a bare KeyError/TypeError/... as
  the error). A provider failing at apply time always reaches the CLI framed by the provider
  host's traceback (pulumi/dynamic/__main__.py aborts with traceback.format_exc()); there
  the operator reads, and this judges, the exception that traceback ends with.
* half-applied: a trust store file (or any file in the load balancers' directories) or a
  node's certificate changed before the refusal.
"""

from __future__ import annotations

import copy
import datetime
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.host import exception_text
from tests.program import scenarios
from tests.program.scenarios import World, node_fqdn

P = "ws1-access-lb-trust:"
PASSWORD_TYPED_AS_KEY = "Tr0ub4dor&3-canary"  # noqa: S105 (a canary, not a credential)
PLAUSIBLE_PASSWORD_KEY = "Hunter2Canary"  # a valid key name that may be a password


@dataclass(frozen=True)
class Case:
    name: str
    group: str  # stack config, PEM input, appliance answer, environment
    make: Callable[[World], None]  # makes the bad input
    places: tuple[str, ...]  # every one must appear in the message
    secrets: tuple[str, ...] = ()  # none may appear in the message
    fresh: bool = False  # changes the emulator for good: needs its own world


@dataclass
class Outcome:
    case: Case
    message: str
    clear: bool
    traceback: bool
    half_applied: bool
    changed: list[str] = field(default_factory=list)


_PROGRAMMING_ERRORS = re.compile(
    r"\b(KeyError|TypeError|AttributeError|IndexError|AssertionError|NameError|"
    r"UnboundLocalError|ZeroDivisionError|RecursionError|Traceback \(most recent call last\))"
)


# --------------------------------------------------------------------------- certificates


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def expired_ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now - datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _pem(certificate)


_CA = trustme.CA()
CA_PEM = _CA.cert_pem.bytes().decode()
KEY_PEM = _CA.private_key_pem.bytes().decode()
LEAF_PEM = _CA.issue_cert("leaf.corp.example").cert_chain_pems[0].bytes().decode()
EXPIRED_CA_PEM = expired_ca_pem()
PLACEHOLDER_PEM = (
    "-----BEGIN CERTIFICATE-----\nREPLACE-WITH-YOUR-ROOT-CA\n-----END CERTIFICATE-----\n"
)
TRUNCATED_PEM = "\n".join([*CA_PEM.strip().splitlines()[:3], "-----END CERTIFICATE-----"])
HTML_PAGE = "<!DOCTYPE html><html><body>Login required</body></html>"
OTHER_PIN = ":".join(["AB"] * 32)


# --------------------------------------------------------------------------- helpers


def cluster(w: World, index: int = 0) -> dict[str, Any]:
    return w.stack.config["clusters"][index]  # type: ignore[no-any-return]


def node(w: World, index: int = 0) -> dict[str, Any]:
    return cluster(w)["nodes"][index]  # type: ignore[no-any-return]


def lb(w: World, index: int = 0) -> dict[str, Any]:
    return w.stack.config["load_balancers"][index]  # type: ignore[no-any-return]


def setter(
    target: Callable[[World], dict[str, Any]], key: str, value: Any
) -> Callable[[World], None]:
    def make(w: World) -> None:
        target(w)[key] = value

    return make


def deleter(target: Callable[[World], dict[str, Any]], key: str) -> Callable[[World], None]:
    def make(w: World) -> None:
        del target(w)[key]

    return make


def top(key: str, value: Any) -> Callable[[World], None]:
    def make(w: World) -> None:
        if value is _DELETE:
            del w.stack.config[key]
        else:
            w.stack.config[key] = value

    return make


_DELETE = object()


def second_cluster(w: World, nodes: list[dict[str, Any]]) -> None:
    other = copy.deepcopy(cluster(w))
    other.update(name="second", service_fqdn="ws1-second.local.test", nodes=nodes)
    w.stack.config["clusters"].append(other)


def f5(w: World, **fields: Any) -> None:
    entry: dict[str, Any] = {
        "name": "bigip",
        "kind": "f5",
        "cluster": "local",
        "address": "192.0.2.10",
        "username": "admin",
        "server_ssl_profile": "ws1-serverssl",
        "validate_management_certificate": False,
    }
    entry.update(fields)
    w.stack.config["load_balancers"].append(entry)
    os.environ["BIGIP_PASSWORD"] = "f5-canary-password"  # noqa: S105 (a test canary)


def ca_file(w: World, text: str) -> str:
    path = w.directory / "bigip-ca.pem"
    path.write_text(text)
    return str(path)


def third_lb(w: World, prepare: Callable[[Path], None]) -> None:
    # A directory of its own for each case: what one case leaves there is not another's.
    directory = Path(tempfile.mkdtemp(prefix="proxy-c-", dir=w.directory / "lb"))
    path = directory / "trust.pem"
    prepare(path)
    w.stack.config["load_balancers"].append(
        {"name": "proxy-c", "kind": "pem_file", "cluster": "local", "path": str(path)}
    )


def env(name: str, value: str) -> Callable[[World], None]:
    def make(_w: World) -> None:
        os.environ[name] = value

    return make


def needs_login(w: World) -> None:
    cluster(w)["extra_sans"] = ["ws1-dr.local.test"]  # every node needs a new certificate


def both(*makers: Callable[[World], None]) -> Callable[[World], None]:
    def make(w: World) -> None:
        for maker in makers:
            maker(w)

    return make


def fault(index: int, mode: str, listener: str, count: int = 50) -> Callable[[World], None]:
    def make(w: World) -> None:
        w.emulator.node(node_fqdn(index)).fail_next(count, mode, listener)

    return make


# --------------------------------------------------------------------------- the catalogue

C = f"{P}clusters[0]"
N0 = f"{C}.nodes[0]"
L0 = f"{P}load_balancers[0]"
L2 = f"{P}load_balancers[2]"


def _ssh_generated_ca(w: World, **ssh: Any) -> None:
    """The ssh route with the stack's own CA (issuing_ca: generated) and something beside it."""
    cluster(w)["certificate_method"] = "ssh"
    cluster(w)["ssh"] = {
        "user": "sshuser",
        "issuing_ca": "generated",
        "trust_host_key_on_first_use": True,
        **ssh,
    }


def _config_cases() -> list[Case]:
    g = "stack config"

    def case(name: str, make: Callable[[World], None], *places: str, **kw: Any) -> Case:
        return Case(name, g, make, places, **kw)

    return [
        case("clusters missing", top("clusters", _DELETE), f"{P}clusters"),
        case("clusters not a list", top("clusters", "prod"), f"{P}clusters"),
        case("clusters empty", top("clusters", []), f"{P}clusters"),
        case("cluster not an object", top("clusters", ["local"]), f"{P}clusters[0]"),
        case("cluster name missing", deleter(cluster, "name"), f"{C}.name"),
        case("cluster name upper case", setter(cluster, "name", "Local_1"), f"{C}.name"),
        case(
            "cluster declared twice",
            lambda w: w.stack.config["clusters"].append(copy.deepcopy(cluster(w))),
            f"{P}clusters[1].name",
        ),
        case("service fqdn missing", deleter(cluster, "service_fqdn"), f"{C}.service_fqdn"),
        case(
            "service fqdn an IP", setter(cluster, "service_fqdn", "10.0.0.5"), f"{C}.service_fqdn"
        ),
        case("service fqdn one label", setter(cluster, "service_fqdn", "ws1"), f"{C}.service_fqdn"),
        case(
            "ssl termination unknown",
            setter(cluster, "ssl_termination", "offload"),
            f"{C}.ssl_termination",
        ),
        case("nodes missing", deleter(cluster, "nodes"), f"{C}.nodes"),
        case("nodes empty", setter(cluster, "nodes", []), f"{C}.nodes"),
        case("nodes not a list", setter(cluster, "nodes", "ws1-a"), f"{C}.nodes"),
        case("node not an object", setter(cluster, "nodes", ["ws1-a"]), f"{C}.nodes[0]"),
        case("node fqdn invalid", setter(node, "fqdn", "ws1_a..local"), f"{N0}.fqdn"),
        case(
            "node fqdn twice in a cluster",
            lambda w: node(w, 1).update(fqdn=node(w, 0)["fqdn"]),
            f"{C}.nodes[1].fqdn",
        ),
        case("node address invalid", setter(node, "address", "not an address!"), f"{N0}.address"),
        case("node address all digits", setter(node, "address", "3232235777"), f"{N0}.address"),
        case("node address abbreviated IPv4", setter(node, "address", "127.1"), f"{N0}.address"),
        case("service port 8443", setter(node, "service_port", 8443), f"{N0}.service_port"),
        case("service port 0", setter(node, "service_port", 0), f"{N0}.service_port"),
        case("service port text", setter(node, "service_port", "https"), f"{N0}.service_port"),
        case(
            "service port = configurator port",
            lambda w: node(w).update(service_port=node(w)["configurator_port"]),
            f"{N0}.service_port",
        ),
        case("node key misspelt", setter(node, "fdqn", "x.local.test"), f"{N0}.fdqn", "fqdn"),
        case(
            "pin and trust on first use",
            setter(cluster, "trust_on_first_use", True),
            C,
            "root_ca_sha256",
            "trust_on_first_use",
        ),
        case("no pin, no trust on first use", deleter(cluster, "root_ca_sha256"), C),
        case("pin too short", setter(cluster, "root_ca_sha256", "AB:CD"), f"{C}.root_ca_sha256"),
        case(
            "pin not hex",
            setter(cluster, "root_ca_sha256", "Z" * 64),
            f"{C}.root_ca_sha256",
        ),
        case("pin list empty", setter(cluster, "root_ca_sha256", []), f"{C}.root_ca_sha256"),
        case(
            "pin is a SHA-1 thumbprint",
            setter(cluster, "root_ca_sha256", "A1" * 20),
            f"{C}.root_ca_sha256",
            "SHA-1",
        ),
        case(
            "trust on first use not a boolean",
            both(deleter(cluster, "root_ca_sha256"), setter(cluster, "trust_on_first_use", "yes")),
            f"{C}.trust_on_first_use",
        ),
        case("extra sans not a list", setter(cluster, "extra_sans", "a.b"), f"{C}.extra_sans"),
        case(
            "extra san invalid", setter(cluster, "extra_sans", ["bad name"]), f"{C}.extra_sans[0]"
        ),
        case(
            "load balancer root CA with passthrough",
            setter(cluster, "load_balancer_root_ca", CA_PEM),
            f"{C}.load_balancer_root_ca",
        ),
        case(
            "admin password typed as the key name",
            setter(cluster, "admin_password_key", PASSWORD_TYPED_AS_KEY),
            f"{C}.admin_password_key",
            secrets=(PASSWORD_TYPED_AS_KEY,),
        ),
        case(
            "admin password key that looks like a password, unset",
            both(setter(cluster, "admin_password_key", PLAUSIBLE_PASSWORD_KEY), needs_login),
            f"{C}.admin_password_key",
            secrets=(PLAUSIBLE_PASSWORD_KEY,),
        ),
        case(
            "cluster key misspelt",
            setter(cluster, "servce_fqdn", "x.local.test"),
            f"{C}.servce_fqdn",
            "service_fqdn",
        ),
        case(
            "password written into a cluster",
            setter(cluster, "admin_password", "cluster-canary-password"),
            f"{C}.admin_password",
            secrets=("cluster-canary-password",),
        ),
        case(
            "top-level key misspelt",
            top("load_balancer", []),
            f"{P}load_balancer",
            "load_balancers",
        ),
        case("expiry days 0", top("expiry_warning_days", 0), f"{P}expiry_warning_days"),
        case("expiry days text", top("expiry_warning_days", "many"), f"{P}expiry_warning_days"),
        case("load balancers missing", top("load_balancers", _DELETE), f"{P}load_balancers"),
        case("load balancer kind unknown", setter(lb, "kind", "haproxy"), f"{L0}.kind"),
        case("load balancer cluster undeclared", setter(lb, "cluster", "lab"), f"{L0}.cluster"),
        case(
            "load balancer name twice",
            lambda w: lb(w, 1).update(name=lb(w, 0)["name"]),
            f"{P}load_balancers[1].name",
        ),
        case("pem file path missing", deleter(lb, "path"), f"{L0}.path"),
        case("pem file path not .pem", setter(lb, "path", "/srv/lb/trust.txt"), f"{L0}.path"),
        case(
            "two load balancers, one file",
            lambda w: lb(w, 1).update(path=lb(w, 0)["path"]),
            f"{P}load_balancers[1].path",
        ),
        case(
            "adopt setting not a boolean",
            setter(lb, "adopt_existing_file", "maybe"),
            f"{L0}.adopt_existing_file",
        ),
        case("f5 key on a pem file", setter(lb, "address", "192.0.2.1"), f"{L0}.address"),
        case("f5 address missing", lambda w: f5(w, address=None), f"{L2}.address"),
        case(
            "f5 management CA file missing",
            lambda w: f5(w, management_ca_path="/nonexistent/ca.pem"),
            f"{L2}.management_ca_path",
        ),
        case(
            "f5 virtual server on 8443",
            lambda w: f5(w, virtual_server={"destination": "192.0.2.20", "port": 8443}),
            f"{L2}.virtual_server.port",
        ),
        case(
            "f5 partition a path",
            lambda w: f5(w, partition="/Common/ws1"),
            f"{L2}.partition",
        ),
        case(
            "f5 password key unset",
            lambda w: f5(w, password_key="labBigip"),
            f"{L2}.password_key",
        ),
        case(
            "same node in two clusters",
            lambda w: second_cluster(w, [copy.deepcopy(node(w))]),
            f"{P}clusters[1].nodes[0].fqdn",
            f"{N0}",
        ),
        case(
            "same address and port in two clusters",
            lambda w: second_cluster(
                w, [{**copy.deepcopy(node(w)), "fqdn": "ws1-other.local.test"}]
            ),
            f"{P}clusters[1].nodes[0].address",
            f"{N0}",
        ),
        case(
            "ssh generated CA and a CA file",
            lambda w: _ssh_generated_ca(w, issuing_ca_path="ca.pem"),
            f"{C}.ssh",
            "issuing_ca_path",
        ),
        case(
            "ssh generated CA and a CA key name",
            lambda w: _ssh_generated_ca(w, issuing_ca_key_key="myCaKey"),
            f"{C}.ssh.issuing_ca_key_key",
        ),
        case(
            "pin mismatch",
            setter(cluster, "root_ca_sha256", OTHER_PIN),
            "cluster local",
            "root_ca_sha256",
            node_fqdn(1),
        ),
    ]


def _pem_cases() -> list[Case]:
    g = "PEM input"

    def case(name: str, make: Callable[[World], None], *places: str, **kw: Any) -> Case:
        return Case(name, g, make, places, **kw)

    def lb_root(value: str) -> Callable[[World], None]:
        return both(
            setter(cluster, "ssl_termination", "load_balancer"),
            setter(cluster, "load_balancer_root_ca", value),
        )

    return [
        case("LB root CA placeholder", lb_root(PLACEHOLDER_PEM), f"{C}.load_balancer_root_ca"),
        case(
            "LB root CA with a private key",
            lb_root(CA_PEM + KEY_PEM),
            f"{C}.load_balancer_root_ca",
            secrets=(KEY_PEM.splitlines()[1],),
        ),
        case(
            "LB root CA bare base64",
            lb_root("".join(CA_PEM.strip().splitlines()[1:-1])),
            f"{C}.load_balancer_root_ca",
        ),
        case("LB root CA truncated", lb_root(TRUNCATED_PEM), f"{C}.load_balancer_root_ca"),
        case("LB root CA an HTML page", lb_root(HTML_PAGE), f"{C}.load_balancer_root_ca"),
        case("LB root CA not a CA", lb_root(LEAF_PEM), "load_balancer_root_ca"),
        case("LB root CA expired", lb_root(EXPIRED_CA_PEM), "load_balancer_root_ca"),
        case(
            "incoming root CA garbage",
            setter(cluster, "incoming_root_ca", "not a certificate"),
            f"{C}.incoming_root_ca",
        ),
        case(
            "incoming root CA a private key",
            setter(cluster, "incoming_root_ca", KEY_PEM),
            f"{C}.incoming_root_ca",
            secrets=(KEY_PEM.splitlines()[1],),
        ),
        case(
            "incoming root CA not a CA",
            setter(cluster, "incoming_root_ca", LEAF_PEM),
            "incoming_root_ca",
        ),
        case(
            "incoming root CA expired",
            setter(cluster, "incoming_root_ca", EXPIRED_CA_PEM),
            "incoming_root_ca",
        ),
        case(
            "management CA file a private key",
            lambda w: f5(w, management_ca_path=ca_file(w, KEY_PEM)),
            f"{L2}.management_ca_path",
            secrets=(KEY_PEM.splitlines()[1],),
        ),
        case(
            "management CA file a leaf",
            lambda w: f5(w, management_ca_path=ca_file(w, LEAF_PEM)),
            f"{L2}.management_ca_path",
        ),
        case(
            "management CA file expired",
            lambda w: f5(w, management_ca_path=ca_file(w, EXPIRED_CA_PEM)),
            f"{L2}.management_ca_path",
        ),
        case(
            "management CA file garbage",
            lambda w: f5(w, management_ca_path=ca_file(w, "hello\n")),
            f"{L2}.management_ca_path",
        ),
        case(
            "bundle path holds a foreign file",
            lambda w: third_lb(w, lambda p: p.write_text("# the proxy's own CAs\n")),
            "load balancer proxy-c",
            "adopt_existing_file",
        ),
        case(
            "bundle path is a directory",
            lambda w: third_lb(w, lambda p: p.mkdir()),
            "load balancer proxy-c",
            "is a directory",
        ),
        case(
            "bundle path is a symlink to a key",
            lambda w: third_lb(w, lambda p: _symlink_to_key(w, p)),
            "load balancer proxy-c",
            "symbolic link",
            secrets=("c2VjcmV0LWtleQ",),
        ),
        case(
            "bundle directory missing",
            lambda w: w.stack.config["load_balancers"].append(
                {
                    "name": "proxy-c",
                    "kind": "pem_file",
                    "cluster": "local",
                    "path": str(w.directory / "missing" / "trust.pem"),
                }
            ),
            "load balancer proxy-c",
            "does not exist",
        ),
    ]


def _symlink_to_key(w: World, path: Path) -> None:
    key = path.parent / "server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n")
    path.symlink_to(key)


def _environment_cases() -> list[Case]:
    g = "environment"
    timeout = "WS1_ACCESS_HTTP_TIMEOUT"
    paths = "WS1_ACCESS_CONFIGURATOR_PATHS"

    def case(name: str, make: Callable[[World], None], *places: str, **kw: Any) -> Case:
        return Case(name, g, make, places, **kw)

    return [
        case("timeout 0", env(timeout, "0"), timeout),
        case("timeout negative", env(timeout, "-5"), timeout),
        case("timeout nan", env(timeout, "nan"), timeout),
        case("timeout inf", env(timeout, "inf"), timeout),
        case("timeout text", env(timeout, "fast"), timeout),
        case("paths override not JSON", both(needs_login, env(paths, "{generate")), paths),
        case(
            "paths override unknown operation",
            both(needs_login, env(paths, '{"regenerate": ["POST", "/cfg/x"]}')),
            paths,
        ),
        case(
            "TLS key log directory missing",
            env("SSLKEYLOGFILE", "/nonexistent/dir/keys.log"),
            "SSLKEYLOGFILE",
        ),
        case(
            "TLS key log with a login",
            lambda w: (
                needs_login(w),
                os.environ.__setitem__("SSLKEYLOGFILE", str(w.directory / "k")),
            ),
            "SSLKEYLOGFILE",
            "WS1_ACCESS_ALLOW_SSLKEYLOGFILE",
        ),
        case(
            "admin password missing",
            lambda w: (needs_login(w), os.environ.pop("WS1_ACCESS_ADMIN_PASSWORD", None)),
            "cluster local",
            "WS1_ACCESS_ADMIN_PASSWORD",
        ),
    ]


def _appliance_cases() -> list[Case]:
    g = "appliance answer"

    def case(name: str, make: Callable[[World], None], *places: str, **kw: Any) -> Case:
        return Case(name, g, make, places, **kw)

    first, second = node_fqdn(1), node_fqdn(2)
    return [
        case(
            "login page answers 500",
            both(needs_login, fault(1, "500", "configurator")),
            first,
            "HTTP 500",
        ),
        case(
            "wrong admin password",
            both(needs_login, env("WS1_ACCESS_ADMIN_PASSWORD", "wrong-canary-password")),
            first,
            "HTTP 401",
            secrets=("wrong-canary-password",),
        ),
        case(
            "configurator path answers 404",
            both(
                needs_login,
                env("WS1_ACCESS_CONFIGURATOR_PATHS", '{"generate": ["POST", "/cfg/nowhere"]}'),
            ),
            first,
            "generate",
        ),
        case(
            "configurator port closed",
            both(needs_login, lambda w: node(w).update(configurator_port=_closed_port())),
            first,
        ),
        case("service port closed", lambda w: node(w).update(service_port=_closed_port()), first),
        case("service connection reset", fault(2, "reset", "service"), second),
        case(
            "service hangs",
            both(env("WS1_ACCESS_HTTP_TIMEOUT", "0.5"), fault(2, "hang", "service")),
            second,
        ),
        case(
            "node serves a foreign root CA",
            lambda w: w.emulator.node(second).serve_foreign_root(),
            second,
            fresh=True,
        ),
        case(
            "nodes publish different root CAs, no pin",
            lambda w: (
                cluster(w).pop("root_ca_sha256"),
                cluster(w).__setitem__("trust_on_first_use", True),
                w.emulator.__setattr__("regeneration_makes_new_root", True),
                w.emulator.node(second).regenerate(
                    w.emulator.service_fqdn, w.emulator.node(second).subject_alt_names
                ),
            ),
            first,
            second,
            fresh=True,
        ),
    ]


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CASES: list[Case] = [
    *_config_cases(),
    *_pem_cases(),
    *_environment_cases(),
    *_appliance_cases(),
]


# --------------------------------------------------------------------------- the runner


def _snapshot(w: World) -> dict[str, str]:
    """Every file under the load balancers' directories, and every node's certificates."""
    seen: dict[str, str] = {}
    for path in sorted((w.directory / "lb").rglob("*")):
        if path.is_symlink():
            seen[str(path)] = f"symlink -> {os.readlink(path)}"
        elif path.is_file():
            seen[str(path)] = path.read_text(errors="replace")
    for emulated in w.emulator.nodes:
        seen[f"node {emulated.fqdn}"] = emulated.leaf_pem + emulated.lb_root_ca_pem
    return seen


@contextmanager
def _restored(w: World) -> Iterator[None]:
    config = copy.deepcopy(w.stack.config)
    environment = dict(os.environ)
    try:
        yield
    finally:
        w.stack.config = config
        os.environ.clear()
        os.environ.update(environment)
        for emulated in w.emulator.nodes:
            emulated.clear_faults()
        w.emulator.regeneration_makes_new_root = False


def run_case(case: Case, w: World) -> Outcome:
    """Make the bad input on an established stack, run `up`, and judge the outcome."""
    before = _snapshot(w)
    escaped = False
    message = ""
    with _restored(w):
        try:
            case.make(w)
            before = _snapshot(w)  # what the case itself prepared (a foreign file) counts
            result = w.stack.up()
            message = exception_text(result.error or "")
        except Exception as problem:  # noqa: BLE001 an escape is what this measures
            escaped, message = True, f"{type(problem).__name__}: {problem}"
    after = _snapshot(w)
    changed = sorted(
        key for key in before.keys() | after.keys() if before.get(key) != after.get(key)
    )
    traceback = escaped or bool(_PROGRAMMING_ERRORS.search(message))
    clear = (
        bool(message)
        and not traceback
        and all(place in message for place in case.places)
        and not any(secret in message for secret in case.secrets)
    )
    return Outcome(case, message, clear, traceback, bool(changed), changed)


def run_all(directory: Path, cases: list[Case] | None = None) -> list[Outcome]:
    """Every case; cases that change the emulator for good get a world of their own."""
    outcomes: list[Outcome] = []
    selected = CASES if cases is None else cases
    shared = [case for case in selected if not case.fresh]
    with scenarios.world(directory / "shared") as w:
        assert w.stack.up().error is None, "the established stack must come up"
        outcomes.extend(run_case(case, w) for case in shared)
    for index, case in enumerate(case for case in selected if case.fresh):
        with scenarios.world(directory / f"fresh-{index}") as w:
            assert w.stack.up().error is None, "the established stack must come up"
            outcomes.append(run_case(case, w))
    return outcomes
