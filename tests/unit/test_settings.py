"""Stack config -> settings: a full round trip, and the exact operator line for every mistake."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi.runtime
import pytest
import trustme
import yaml
from pulumi.runtime import config as runtime_config

from components.settings import (
    PROJECT,
    Cluster,
    F5LoadBalancer,
    Node,
    PemFileLoadBalancer,
    Settings,
    SettingsError,
    VirtualServer,
    load_settings,
    parse_settings,
)

PIN_HEX = hashlib.sha256(b"appliance root CA").hexdigest()  # lower case, no colons
PIN = ":".join(PIN_HEX[i : i + 2] for i in range(0, 64, 2)).upper()
NEXT_PIN_HEX = hashlib.sha256(b"next appliance root CA").hexdigest().upper()
NEXT_PIN = ":".join(NEXT_PIN_HEX[i : i + 2] for i in range(0, 64, 2))
LB_ROOT_CA = trustme.CA().cert_pem.bytes().decode()
PROJECT_DIR = Path("/srv/ws1-access-lb-trust")
# Settings checks that the management CA file exists; the fixture below creates it.
MANAGEMENT_CA = Path(tempfile.gettempdir()) / "ws1-settings-tests" / "bigip-ca.crt"


@pytest.fixture(autouse=True, scope="module")
def _management_ca_file() -> Iterator[None]:
    MANAGEMENT_CA.parent.mkdir(exist_ok=True)
    MANAGEMENT_CA.write_text(LB_ROOT_CA)  # checked like every CA input: a real CA
    yield
    shutil.rmtree(MANAGEMENT_CA.parent)


SECRETS = frozenset(
    f"{PROJECT}:{key}" for key in ("applianceAdminPassword", "labAdminPassword", "bigipPassword")
)
P = f"- {PROJECT}:"


def valid_raw() -> dict[str, Any]:
    return {
        "clusters": [
            {
                "name": "ws1-prod",
                "service_fqdn": "WS1.Corp.Example",
                "ssl_termination": "passthrough",
                "nodes": [
                    {"fqdn": "ws1-a.corp.example"},
                    {
                        "fqdn": "WS1-B.Corp.Example",
                        "address": "127.0.0.1",
                        "service_port": 44301,
                        "configurator_port": 48443,
                    },
                    {"fqdn": "ws1-c.corp.example", "address": "ws1-c.mgmt.corp.example"},
                ],
                "root_ca_sha256": PIN_HEX,
                "extra_sans": ["WS1.DC2.corp.example", "ws1.dc2.corp.example"],
                "certificate_method": "configurator",
            },
            {
                "name": "ws1-lab",
                "service_fqdn": "lab.corp.example",
                "ssl_termination": "load_balancer",
                "nodes": [{"fqdn": "lab-a.corp.example", "service_port": "443"}],
                "root_ca_sha256": [PIN.lower(), NEXT_PIN_HEX],
                "manage_certificate": False,
                "certificate_method": "configurator",
                "admin_password_key": "labAdminPassword",
                "load_balancer_root_ca": LB_ROOT_CA,
            },
        ],
        "load_balancers": [
            {
                "name": "ws1-prod-nginx",
                "kind": "pem_file",
                "cluster": "ws1-prod",
                "path": "out/ws1-prod.pem",
            },
            {
                "name": "ws1-lab-f5",
                "kind": "f5",
                "cluster": "ws1-lab",
                "address": "BIGIP.corp.example",
                "username": "admin",
                "management_ca_path": str(MANAGEMENT_CA),
                "virtual_server": {
                    "destination": "10.0.0.10",
                    "client_ssl_profile": "/Common/ws1-clientssl",
                },
            },
        ],
        "applianceAdminPassword": "(set)",
        "labAdminPassword": "(set)",
        "bigipPassword": "(set)",
    }


def problems_after(
    change: Callable[[dict[str, Any]], None], secret_keys: frozenset[str] = SECRETS
) -> list[str]:
    raw = valid_raw()
    change(raw)
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, secret_keys, project_dir=PROJECT_DIR)
    return list(caught.value.problems)


def prod(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["clusters"][0]  # type: ignore[no-any-return]


def lab(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["clusters"][1]  # type: ignore[no-any-return]


def nginx(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["load_balancers"][0]  # type: ignore[no-any-return]


def f5(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["load_balancers"][1]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- valid input


def test_a_full_valid_configuration_round_trips_with_defaults_lower_casing_and_pins() -> None:
    settings = parse_settings(valid_raw(), SECRETS, project_dir=PROJECT_DIR)

    assert settings == Settings(
        clusters=(
            Cluster(
                name="ws1-prod",
                service_fqdn="ws1.corp.example",
                ssl_termination="passthrough",
                nodes=(
                    Node("ws1-a.corp.example", "ws1-a.corp.example", 443, 8443),
                    Node("ws1-b.corp.example", "127.0.0.1", 44301, 48443),
                    Node("ws1-c.corp.example", "ws1-c.mgmt.corp.example", 443, 8443),
                ),
                root_ca_sha256=(PIN,),
                trust_on_first_use=False,
                extra_sans=("ws1.dc2.corp.example",),
                manage_certificate=True,
                admin_password_key="applianceAdminPassword",
                admin_password_in_config=True,
                load_balancer_root_ca=None,
                certificate_method="configurator",
            ),
            Cluster(
                name="ws1-lab",
                service_fqdn="lab.corp.example",
                ssl_termination="load_balancer",
                nodes=(Node("lab-a.corp.example", "lab-a.corp.example", 443, 8443),),
                root_ca_sha256=(PIN, NEXT_PIN),
                trust_on_first_use=False,
                extra_sans=(),
                manage_certificate=False,
                admin_password_key="labAdminPassword",
                admin_password_in_config=True,
                load_balancer_root_ca=LB_ROOT_CA.strip() + "\n",
                certificate_method="configurator",
            ),
        ),
        load_balancers=(
            PemFileLoadBalancer("ws1-prod-nginx", "ws1-prod", PROJECT_DIR / "out/ws1-prod.pem"),
            F5LoadBalancer(
                name="ws1-lab-f5",
                cluster="ws1-lab",
                address="bigip.corp.example",
                username="admin",
                port=443,
                password_key="bigipPassword",
                password_in_config=True,
                partition="Common",
                management_ca_path=MANAGEMENT_CA,
                validate_management_certificate=True,
                server_ssl_profile="ws1-lab.corp.example-serverssl",
                virtual_server=VirtualServer("10.0.0.10", 443, "/Common/ws1-clientssl"),
            ),
        ),
        expiry_warning_days=30,
    )


def test_pins_are_upper_case_and_colon_separated() -> None:
    settings = parse_settings(valid_raw(), SECRETS, project_dir=PROJECT_DIR)
    pins = (*settings.clusters[0].root_ca_sha256, *settings.clusters[1].root_ca_sha256)
    assert len(pins) == 3
    for pin in pins:
        assert re.fullmatch(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}", pin), pin


def test_helpers_answer_in_the_operators_terms() -> None:
    settings = parse_settings(valid_raw(), SECRETS, project_dir=PROJECT_DIR)

    prod_cluster = settings.cluster("ws1-prod")
    assert prod_cluster.passthrough is True
    assert settings.cluster("ws1-lab").passthrough is False
    assert prod_cluster.node_fqdns == (
        "ws1-a.corp.example",
        "ws1-b.corp.example",
        "ws1-c.corp.example",
    )
    assert [lb.name for lb in settings.load_balancers_for("ws1-lab")] == ["ws1-lab-f5"]
    assert [lb.kind for lb in settings.load_balancers_for("ws1-prod")] == ["pem_file"]
    assert settings.load_balancers_for("nobody") == ()
    lab_f5 = settings.load_balancers[1]
    assert isinstance(lab_f5, F5LoadBalancer)
    # Named after the service FQDN, like every object on the device.
    assert lab_f5.server_ssl_profile_path == "/Common/ws1-lab.corp.example-serverssl"
    with pytest.raises(KeyError, match=r"No cluster named 'ws1-dev' is declared"):
        settings.cluster("ws1-dev")


def test_optional_values_given_as_text_are_accepted() -> None:
    # `pulumi config set --path` without --type stores numbers and booleans as text.
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["manage_certificate"] = "False"
        prod(raw)["nodes"][0]["configurator_port"] = "9443"
        raw["expiry_warning_days"] = "14"

    raw = valid_raw()
    change(raw)
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
    assert settings.expiry_warning_days == 14
    assert settings.clusters[0].manage_certificate is False
    assert settings.clusters[0].nodes[0].configurator_port == 9443


def test_trust_on_first_use_without_a_pin_is_accepted() -> None:
    raw = valid_raw()
    del prod(raw)["root_ca_sha256"]
    prod(raw)["trust_on_first_use"] = True
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
    assert settings.clusters[0].trust_on_first_use is True
    assert settings.clusters[0].root_ca_sha256 == ()


def test_an_unset_password_is_recorded_for_the_environment_fallback_not_an_error() -> None:
    raw = valid_raw()
    del raw["applianceAdminPassword"]
    del raw["bigipPassword"]
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)

    assert settings.clusters[0].admin_password_in_config is False
    assert settings.clusters[0].needs_admin_password is True
    assert settings.password_keys_not_set() == ("applianceAdminPassword", "bigipPassword")


def test_a_password_that_nothing_needs_is_not_asked_for() -> None:
    raw = valid_raw()
    del raw["labAdminPassword"]
    lab(raw)["load_balancer_root_ca"] = None  # and manage_certificate is false
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
    assert settings.clusters[1].needs_admin_password is False
    assert settings.password_keys_not_set() == ()


def test_management_certificate_validation_can_be_turned_off_explicitly() -> None:
    raw = valid_raw()
    del f5(raw)["management_ca_path"]
    f5(raw)["validate_management_certificate"] = False
    lb = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR).load_balancers[1]
    assert isinstance(lb, F5LoadBalancer)
    assert lb.validate_management_certificate is False
    assert lb.management_ca_path is None


# ---------------------------------------------------------------------------- the message


def test_all_problems_are_reported_together_under_one_header() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["servce_fqdn"] = prod(raw).pop("service_fqdn")
        prod(raw)["nodes"][2]["fqdn"] = "ws1_c.corp"
        nginx(raw)["cluster"] = "ws1-prd"
        raw["expiry_warning_days"] = 0

    raw = valid_raw()
    change(raw)
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)

    assert str(caught.value) == "\n".join(
        [
            "The stack configuration has 5 problems:",
            f"{P}clusters[0].servce_fqdn: unknown key; did you mean 'service_fqdn'?",
            f"{P}clusters[0].service_fqdn: is required; expected the FQDN users type to reach "
            "the service, e.g. ws1.corp.example.",
            f"{P}clusters[0].nodes[2].fqdn: 'ws1_c.corp' is not a valid DNS name "
            "(expected e.g. ws1-c.corp.example).",
            f"{P}load_balancers[0].cluster: 'ws1-prd' is not a declared cluster "
            "(declared: 'ws1-prod', 'ws1-lab'); did you mean 'ws1-prod'?",
            f"{P}expiry_warning_days: expected a whole number of days from 1 to 365, got 0.",
        ]
    )
    assert isinstance(caught.value, ValueError)


def test_a_single_problem_says_problem() -> None:
    raw = valid_raw()
    raw["expiry_warning_days"] = 400
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, SECRETS)
    assert str(caught.value).splitlines()[0] == "The stack configuration has 1 problem:"


def test_no_secret_value_appears_in_any_message() -> None:
    # Plain-text passwords are the worst case: the key is reported, never its value.
    raw = valid_raw()
    raw["applianceAdminPassword"] = "Hunter2-appliance"
    raw["bigipPassword"] = "Hunter2-bigip"
    raw["bigipPasword"] = "Hunter2-typo"
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, frozenset())
    message = str(caught.value)
    assert "Hunter2" not in message
    assert "Hunter2" not in repr(caught.value)
    assert caught.value.problems == (
        f"{P}applianceAdminPassword: holds the appliance admin password in plain text; "
        "make it a secret with `pulumi config set --secret applianceAdminPassword <password>`.",
        f"{P}labAdminPassword: holds the appliance admin password in plain text; "
        "make it a secret with `pulumi config set --secret labAdminPassword <password>`.",
        f"{P}bigipPassword: holds the BIG-IP password in plain text; "
        "make it a secret with `pulumi config set --secret bigipPassword <password>`.",
        f"{P}bigipPasword: unknown key; did you mean 'bigipPassword'?",
    )


def test_values_of_a_secret_structural_key_are_not_echoed() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][0]["fqdn"] = "private_name.corp"

    secret = SECRETS | {f"{PROJECT}:clusters"}
    assert problems_after(change, secret) == [
        f"{P}clusters[0].nodes[0].fqdn: the given value is not a valid DNS name "
        "(expected e.g. ws1-a.corp.example)."
    ]


# ---------------------------------------------------------------------------- top level


def test_missing_clusters_says_how_to_set_them() -> None:
    def change(raw: dict[str, Any]) -> None:
        del raw["clusters"]
        del raw["load_balancers"]

    assert problems_after(change) == [
        f"{P}clusters: is not set; declare at least one cluster with "
        "`pulumi config set --path 'clusters[0].name' ws1-prod` and its other fields, "
        "or by editing stacks/Pulumi.<stack>.yaml.",
        f"{P}load_balancers: is not set; declare at least one load balancer with "
        "`pulumi config set --path 'load_balancers[0].name' ws1-prod-nginx` and its other "
        "fields, or by editing stacks/Pulumi.<stack>.yaml.",
    ]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("ws1-prod", "clusters: expected a list of objects, got a string."),
        ({"name": "ws1-prod"}, "clusters: expected a list of objects, got an object."),
        ([], "clusters: expected at least one cluster, got an empty list."),
        (["ws1-prod"], "clusters[0]: expected an object, got a string."),
    ],
)
def test_clusters_of_the_wrong_shape(value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["clusters"] = value
        raw["load_balancers"] = []

    assert problems_after(change) == [
        P + line,
        f"{P}load_balancers: expected at least one load balancer, got an empty list.",
    ]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("oops", "clusters: expected a list of objects, got a string."),
        (["oops"], "clusters[0]: expected an object, got a string."),
    ],
)
def test_unusable_clusters_do_not_make_every_cluster_reference_a_problem(
    value: Any, line: str
) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["clusters"] = value
        nginx(raw)["cluster"] = "local"

    assert problems_after(change) == [P + line]


def test_unknown_top_level_key_suggests_the_closest_one() -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["expiry_warning_day"] = "10"
        raw["colour"] = "blue"

    assert problems_after(change) == [
        f"{P}expiry_warning_day: unknown key; did you mean 'expiry_warning_days'?",
        f"{P}colour: unknown key; this program reads clusters, load_balancers, "
        "expiry_warning_days and the password keys named by admin_password_key and "
        "password_key.",
    ]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (0, "expected a whole number of days from 1 to 365, got 0."),
        ("soon", "expected a whole number of days from 1 to 365, got 'soon'."),
        (7.5, "expected a whole number of days from 1 to 365, got 7.5."),
        (True, "expected a whole number of days from 1 to 365, got true."),
    ],
)
def test_expiry_warning_days_must_be_a_number_of_days(value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["expiry_warning_days"] = value

    assert problems_after(change) == [f"{P}expiry_warning_days: {line}"]


# ---------------------------------------------------------------------------- clusters


def test_unknown_cluster_key_suggests_the_closest_one() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["extra_san"] = ["ws1.dc2.corp.example"]
        prod(raw)["colour"] = "blue"

    assert problems_after(change) == [
        f"{P}clusters[0].extra_san: unknown key; did you mean 'extra_sans'?",
        f"{P}clusters[0].colour: unknown key (expected one of: name, previous_name, "
        "service_fqdn, ssl_termination, nodes, root_ca_sha256, trust_on_first_use, extra_sans, "
        "manage_certificate, admin_password_key, load_balancer_root_ca, incoming_root_ca, "
        "certificate_method, ssh, lifecycle_manager).",
    ]


def test_a_password_written_into_the_cluster_is_refused_without_echoing_it() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["admin_password"] = "Hunter2"

    assert problems_after(change) == [
        f"{P}clusters[0].admin_password: unknown key; a password must never be written here: "
        "store it with `pulumi config set --secret <key> <password>` and name that key in "
        "admin_password_key."
    ]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "WS1_Lab",
            "'WS1_Lab' is not a valid name (expected a name of 1-40 lower-case letters, "
            "digits and hyphens, starting and ending with a letter or digit, e.g. ws1-prod).",
        ),
        (
            "-lab",
            "'-lab' is not a valid name (expected a name of 1-40 lower-case letters, "
            "digits and hyphens, starting and ending with a letter or digit, e.g. ws1-prod).",
        ),
        (
            "a" * 41,
            f"'{'a' * 41}' is not a valid name (expected a name of 1-40 lower-case letters, "
            "digits and hyphens, starting and ending with a letter or digit, e.g. ws1-prod).",
        ),
        (
            42,
            "expected a name of 1-40 lower-case letters, digits and hyphens, starting and "
            "ending with a letter or digit, e.g. ws1-prod, got a number.",
        ),
    ],
)
def test_cluster_names(value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["load_balancers"] = [nginx(raw)]  # nothing refers to the lab cluster
        lab(raw)["name"] = value

    assert problems_after(change) == [f"{P}clusters[1].name: {line}"]


def test_a_name_of_40_characters_is_accepted() -> None:
    raw = valid_raw()
    raw["load_balancers"] = [nginx(raw)]
    lab(raw)["name"] = "a" * 40
    assert parse_settings(raw, SECRETS).clusters[1].name == "a" * 40


def test_duplicate_cluster_name() -> None:
    def change(raw: dict[str, Any]) -> None:
        lab(raw)["name"] = "ws1-prod"
        f5(raw)["cluster"] = "ws1-prod"
        f5(raw).pop("virtual_server")

    assert problems_after(change) == [
        f"{P}clusters[1].name: 'ws1-prod' is already the name of clusters[0]; names must be unique."
    ]


def test_missing_required_cluster_fields() -> None:
    def change(raw: dict[str, Any]) -> None:
        for key in ("name", "service_fqdn", "ssl_termination", "nodes"):
            del prod(raw)[key]

    assert problems_after(change) == [
        f"{P}clusters[0].name: is required; expected a name of 1-40 lower-case letters, "
        "digits and hyphens, starting and ending with a letter or digit, e.g. ws1-prod.",
        f"{P}clusters[0].service_fqdn: is required; expected the FQDN users type to reach "
        "the service, e.g. ws1.corp.example.",
        f"{P}clusters[0].ssl_termination: is required; expected load_balancer or passthrough.",
        f"{P}clusters[0].nodes: is required; expected a list of node objects, each with an fqdn.",
        f"{P}load_balancers[0].cluster: 'ws1-prod' is not a declared cluster "
        "(declared: 'ws1-lab').",
    ]


def test_unknown_ssl_termination() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["ssl_termination"] = "offload"

    assert problems_after(change) == [
        f"{P}clusters[0].ssl_termination: 'offload' is not a kind of SSL termination "
        "(expected load_balancer or passthrough)."
    ]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("ws1_c.corp", "'ws1_c.corp' is not a valid DNS name (expected e.g. ws1-c.corp.example)."),
        ("ws1-c", "'ws1-c' is not a fully qualified DNS name (expected e.g. ws1-c.corp.example)."),
        ("-ws1.corp", "'-ws1.corp' is not a valid DNS name (expected e.g. ws1-c.corp.example)."),
        (
            "ws1." + "a" * 64 + ".example",
            f"'ws1.{'a' * 64}.example' is not a valid DNS name (expected e.g. ws1-c.corp.example).",
        ),
        (
            "10.0.0.3",
            "'10.0.0.3' is an IP address, not a DNS name (expected e.g. ws1-c.corp.example).",
        ),
        (
            ["ws1-c.corp.example"],
            "expected the node's FQDN, e.g. ws1-c.corp.example, got a list.",
        ),
    ],
)
def test_node_fqdn_must_be_a_dns_name(value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][2]["fqdn"] = value

    assert problems_after(change) == [f"{P}clusters[0].nodes[2].fqdn: {line}"]


def test_a_name_longer_than_253_characters_is_not_a_dns_name() -> None:
    long_name = ".".join(["a" * 63] * 4) + ".example"

    def change(raw: dict[str, Any]) -> None:
        prod(raw)["service_fqdn"] = long_name

    assert problems_after(change) == [
        f"{P}clusters[0].service_fqdn: '{long_name[:76]}... is not a valid DNS name "
        "(expected e.g. ws1.corp.example)."
    ]


def test_a_trailing_dot_is_dropped() -> None:
    raw = valid_raw()
    prod(raw)["service_fqdn"] = "ws1.corp.example."
    assert parse_settings(raw, SECRETS).clusters[0].service_fqdn == "ws1.corp.example"


def test_extra_sans_must_be_dns_names() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["extra_sans"] = ["ws1.dc2.corp.example", "*.corp.example", 7]

    assert problems_after(change) == [
        f"{P}clusters[0].extra_sans[1]: '*.corp.example' is not a valid DNS name "
        "(expected e.g. ws1.dc2.corp.example).",
        f"{P}clusters[0].extra_sans[2]: expected an FQDN, got a number.",
    ]


def test_extra_sans_must_be_a_list() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["extra_sans"] = "ws1.dc2.corp.example"

    assert problems_after(change) == [
        f"{P}clusters[0].extra_sans: expected a list of FQDNs, got a string."
    ]


# ---------------------------------------------------------------------------- nodes


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ({}, "expected a list of objects, got an object."),
        ([], "expected at least one node, got an empty list."),
    ],
)
def test_nodes_of_the_wrong_shape(value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"] = value

    assert problems_after(change) == [f"{P}clusters[0].nodes: {line}"]


def test_a_node_that_is_not_an_object() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][1] = "ws1-b.corp.example"

    assert problems_after(change) == [f"{P}clusters[0].nodes[1]: expected an object, got a string."]


def test_node_fqdns_are_unique_within_a_cluster_whatever_their_case() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][2]["fqdn"] = "WS1-A.corp.example"

    assert problems_after(change) == [
        f"{P}clusters[0].nodes[2].fqdn: 'ws1-a.corp.example' is already the fqdn of "
        "clusters[0].nodes[0]; each node of a cluster has its own FQDN."
    ]


def test_unknown_node_key() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][0]["adress"] = "10.0.0.1"

    assert problems_after(change) == [
        f"{P}clusters[0].nodes[0].adress: unknown key; did you mean 'address'?"
    ]


def test_node_address_must_be_an_ip_or_host_name() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][0]["address"] = "10.0.0.1:443"

    assert problems_after(change) == [
        f"{P}clusters[0].nodes[0].address: '10.0.0.1:443' is neither an IP address nor a "
        "valid host name (expected e.g. 10.0.0.21 or ws1-a.corp.example)."
    ]


def test_node_address_may_be_a_single_label_host_or_ipv6() -> None:
    raw = valid_raw()
    prod(raw)["nodes"][0]["address"] = "LOCALHOST"
    prod(raw)["nodes"][1]["address"] = "::1"
    nodes = parse_settings(raw, SECRETS).clusters[0].nodes
    assert (nodes[0].address, nodes[1].address) == ("localhost", "::1")


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        ("service_port", 0, "expected a port number from 1 to 65535, got 0."),
        ("service_port", 65536, "expected a port number from 1 to 65535, got 65536."),
        ("configurator_port", "https", "expected a port number from 1 to 65535, got 'https'."),
        ("configurator_port", [8443], "expected a port number from 1 to 65535, got a list."),
    ],
)
def test_node_ports(key: str, value: Any, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][0][key] = value

    assert problems_after(change) == [f"{P}clusters[0].nodes[0].{key}: {line}"]


@pytest.mark.parametrize("configurator_port", [None, 9443])
def test_a_service_port_of_8443_is_refused(configurator_port: int | None) -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][0]["service_port"] = 8443
        if configurator_port is not None:
            prod(raw)["nodes"][0]["configurator_port"] = configurator_port

    assert problems_after(change) == [
        f"{P}clusters[0].nodes[0].service_port: 8443 is the appliance configurator port; the "
        "service is on 443 (expected the port the node serves Workspace ONE Access on, "
        "e.g. 443)."
    ]


def test_the_service_and_the_configurator_need_different_ports() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["nodes"][1]["service_port"] = 48443

    assert problems_after(change) == [
        f"{P}clusters[0].nodes[1].service_port: 48443 is also the configurator_port; the "
        "service and the appliance configurator need different ports."
    ]


# ---------------------------------------------------------------------------- root CA trust


@pytest.mark.parametrize(
    ("value", "path", "line"),
    [
        (
            "AB:CD",
            "root_ca_sha256",
            "this value has 4 hex digits; a SHA-256 fingerprint is 32 bytes written as 64 hex "
            "digits, optionally separated by colons or spaces, e.g. AB:12:...:EF (printed by "
            "`openssl x509 -noout -fingerprint -sha256`, or shown on the appliance console).",
        ),
        (
            [PIN, PIN_HEX[:-1] + "g"],
            "root_ca_sha256[1]",
            f"this value is '{PIN_HEX[:-1]}g', which contains characters that are not hex "
            "digits; a SHA-256 fingerprint is 32 bytes written as 64 hex digits, optionally "
            "separated by colons or spaces, e.g. AB:12:...:EF (printed by "
            "`openssl x509 -noout -fingerprint -sha256`, or shown on the appliance console).",
        ),
        ([PIN, 7], "root_ca_sha256[1]", "expected a SHA-256 fingerprint, got a number."),
        (
            {"sha256": PIN},
            "root_ca_sha256",
            "expected a SHA-256 fingerprint, or a list of them during a root CA rotation, "
            "got an object.",
        ),
        (
            [],
            "root_ca_sha256",
            "expected a SHA-256 fingerprint, or a list of them during a root CA rotation, "
            "got an empty list.",
        ),
    ],
)
def test_pins_must_be_sha256_fingerprints(value: Any, path: str, line: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["root_ca_sha256"] = value
        prod(raw)["trust_on_first_use"] = value == []

    assert problems_after(change) == [f"{P}clusters[0].{path}: {line}"]


def test_a_pin_in_any_grouping_pki_accepts_is_accepted_and_normalized() -> None:
    # One set of rules: whatever components/pki.py reads as a fingerprint, settings accept.
    for written in (
        ":".join(PIN_HEX[i : i + 4] for i in range(0, 64, 4)),
        " ".join(PIN_HEX[i : i + 2] for i in range(0, 64, 2)),
        f"sha256 Fingerprint={PIN}",
    ):
        raw = valid_raw()
        prod(raw)["root_ca_sha256"] = written
        settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
        assert settings.clusters[0].root_ca_sha256 == (PIN,), written


def test_a_pin_and_trust_on_first_use_together_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["trust_on_first_use"] = True

    assert problems_after(change) == [
        f"{P}clusters[0]: both root_ca_sha256 and trust_on_first_use: true are set; choose "
        "one: keep the pin (recommended) and remove trust_on_first_use, or remove "
        "root_ca_sha256 to trust whatever root CA the appliance presents."
    ]


@pytest.mark.parametrize("trust_on_first_use", [None, False, "false"])
def test_neither_a_pin_nor_trust_on_first_use_is_refused(trust_on_first_use: Any) -> None:
    def change(raw: dict[str, Any]) -> None:
        del prod(raw)["root_ca_sha256"]
        if trust_on_first_use is not None:
            prod(raw)["trust_on_first_use"] = trust_on_first_use

    assert problems_after(change) == [
        f"{P}clusters[0]: neither root_ca_sha256 nor trust_on_first_use: true is set; choose "
        "one: pin the appliance root CA with root_ca_sha256: <its SHA-256 fingerprint> "
        "(recommended), or set trust_on_first_use: true to trust the root CA the appliance "
        "presents (its fingerprint is shown as a warning)."
    ]


def test_booleans_must_be_true_or_false() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["manage_certificate"] = "yes"
        lab(raw)["trust_on_first_use"] = 1

    assert problems_after(change) == [
        f"{P}clusters[0].manage_certificate: expected true or false, got 'yes'.",
        f"{P}clusters[1].trust_on_first_use: expected true or false, got a number.",
    ]


# ---------------------------------------------------------------------------- passwords


def test_admin_password_key_must_name_a_key_of_this_project() -> None:
    def change(raw: dict[str, Any]) -> None:
        lab(raw)["admin_password_key"] = "other-project:adminPassword"
        del raw["labAdminPassword"]

    problems = problems_after(change)
    assert problems == [
        f"{P}clusters[1].admin_password_key: is not a config key name of this project "
        "(expected the name of the secret config key that holds the appliance admin "
        "password, e.g. applianceAdminPassword, without a namespace; the password itself "
        "goes into that key with `pulumi config set --secret <key>`)."
    ]
    assert "other-project" not in "\n".join(problems)


@pytest.mark.parametrize("typed", ["Hunter2: appliance!", "S3cret#pass word", "pa:ss"])
def test_a_password_typed_where_its_key_name_belongs_is_never_echoed(typed: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        lab(raw)["admin_password_key"] = typed
        f5(raw)["password_key"] = typed
        del raw["labAdminPassword"]  # no longer named by any entry

    problems = problems_after(change)
    assert problems == [
        f"{P}clusters[1].admin_password_key: is not a config key name of this project "
        "(expected the name of the secret config key that holds the appliance admin "
        "password, e.g. applianceAdminPassword, without a namespace; the password itself "
        "goes into that key with `pulumi config set --secret <key>`).",
        f"{P}load_balancers[1].password_key: is not a config key name of this project "
        "(expected the name of the secret config key that holds the BIG-IP password, e.g. "
        "bigipPassword, without a namespace; the password itself goes into that key with "
        "`pulumi config set --secret <key>`).",
    ]
    assert typed not in "\n".join(problems)


UNSET_KEY = (
    "names a config key that this stack does not set (the name is not repeated here, in case "
    "a password was typed where its key's name belongs); set that key with "
    "`pulumi config set --secret <key>`"
)


def test_a_custom_admin_password_key_that_the_stack_does_not_set_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        del raw["labAdminPassword"]  # lab installs load_balancer_root_ca: it must log in

    assert problems_after(change) == [
        f"{P}clusters[1].admin_password_key: {UNSET_KEY}, or remove admin_password_key to use "
        "the default key (applianceAdminPassword) or the WS1_ACCESS_ADMIN_PASSWORD "
        "environment variable."
    ]


def test_a_custom_bigip_password_key_that_the_stack_does_not_set_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["password_key"] = "labBigipPassword"

    assert problems_after(change) == [
        f"{P}load_balancers[1].password_key: {UNSET_KEY}, or remove password_key to use the "
        "default key (bigipPassword) or the BIGIP_PASSWORD environment variable."
    ]


def test_an_unset_custom_key_inside_secret_clusters_is_refused_without_its_name() -> None:
    def change(raw: dict[str, Any]) -> None:
        del raw["labAdminPassword"]

    secret = SECRETS | {f"{PROJECT}:clusters"}
    assert problems_after(change, secret) == [
        f"{P}clusters[1].admin_password_key: {UNSET_KEY}, or remove admin_password_key to use "
        "the default key (applianceAdminPassword) or the WS1_ACCESS_ADMIN_PASSWORD "
        "environment variable."
    ]


def test_default_password_keys_named_explicitly_keep_the_environment_fallback() -> None:
    raw = valid_raw()
    prod(raw)["admin_password_key"] = "applianceAdminPassword"
    f5(raw)["password_key"] = "bigipPassword"
    del raw["applianceAdminPassword"]
    del raw["bigipPassword"]
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
    assert settings.password_keys_not_set() == ("applianceAdminPassword", "bigipPassword")


def test_a_plain_text_password_named_by_a_custom_key_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["password_key"] = "labBigipPassword"
        raw["labBigipPassword"] = "(set)"

    assert problems_after(change) == [
        f"{P}labBigipPassword: holds the BIG-IP password in plain text; make it a secret "
        "with `pulumi config set --secret labBigipPassword <password>`."
    ]


# ---------------------------------------------------------------------------- LB root CA


def test_load_balancer_root_ca_is_refused_with_passthrough() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["load_balancer_root_ca"] = LB_ROOT_CA

    assert problems_after(change) == [
        f"{P}clusters[0].load_balancer_root_ca: is set, but ssl_termination is passthrough: "
        "the appliance only needs the load balancer's root CA when the load balancer "
        "terminates SSL; remove it, or set ssl_termination: load_balancer."
    ]


PLACEHOLDER_CA = (
    "-----BEGIN CERTIFICATE-----\nREPLACE-WITH-YOUR-LOAD-BALANCER-ROOT-CA\n"
    "-----END CERTIFICATE-----\n"
)


def test_a_placeholder_between_pem_markers_is_not_a_certificate() -> None:
    def change(raw: dict[str, Any]) -> None:
        lab(raw)["load_balancer_root_ca"] = PLACEHOLDER_CA
        prod(raw)["incoming_root_ca"] = PLACEHOLDER_CA

    assert problems_after(change) == [
        f"{P}clusters[0].incoming_root_ca: is not a valid PEM certificate: the text between "
        "-----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- is not base64 (is it "
        "still the example placeholder?); expected the root CA the nodes will move to, as "
        "PEM text.",
        f"{P}clusters[1].load_balancer_root_ca: is not a valid PEM certificate: the text "
        "between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- is not base64 (is "
        "it still the example placeholder?); expected the load balancer's root CA, as PEM "
        "text.",
    ]


def test_a_truncated_certificate_is_not_a_certificate() -> None:
    lines = LB_ROOT_CA.strip().splitlines()
    truncated = "\n".join([*lines[:3], lines[-1]]) + "\n"  # base64, but cut short

    def change(raw: dict[str, Any]) -> None:
        lab(raw)["load_balancer_root_ca"] = truncated

    assert problems_after(change) == [
        f"{P}clusters[1].load_balancer_root_ca: is not a valid PEM certificate: the base64 "
        "text is not an X.509 certificate (was it cut short when pasted?); expected the load "
        "balancer's root CA, as PEM text."
    ]


def test_load_balancer_root_ca_must_hold_a_pem_certificate() -> None:
    def change(raw: dict[str, Any]) -> None:
        lab(raw)["load_balancer_root_ca"] = "MIIByTCCAW+g"

    assert problems_after(change) == [
        f"{P}clusters[1].load_balancer_root_ca: does not contain a PEM certificate (expected "
        "the load balancer's root CA, from -----BEGIN CERTIFICATE----- to "
        "-----END CERTIFICATE-----)."
    ]


def test_a_private_key_in_load_balancer_root_ca_is_refused_without_echoing_it() -> None:
    key_pem = trustme.CA().private_key_pem.bytes().decode()

    def change(raw: dict[str, Any]) -> None:
        lab(raw)["load_balancer_root_ca"] = LB_ROOT_CA + key_pem

    problems = problems_after(change)
    assert problems == [
        f"{P}clusters[1].load_balancer_root_ca: contains a private key; remove it from the "
        "stack configuration and keep only the certificate (and rotate that key, since it "
        "has been exposed)."
    ]
    assert key_pem.splitlines()[1] not in "\n".join(problems)


# ---------------------------------------------------------------------------- load balancers


def test_load_balancer_kind() -> None:
    def change(raw: dict[str, Any]) -> None:
        nginx(raw)["kind"] = "nginx"
        del f5(raw)["kind"]

    assert problems_after(change) == [
        f"{P}load_balancers[0].kind: 'nginx' is not a supported kind of load balancer "
        "(expected f5 or pem_file).",
        f"{P}load_balancers[1].kind: is required; expected f5 or pem_file.",
    ]


def test_load_balancer_names_are_unique() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["name"] = "ws1-prod-nginx"

    assert problems_after(change) == [
        f"{P}load_balancers[1].name: 'ws1-prod-nginx' is already the name of "
        "load_balancers[0]; names must be unique."
    ]


def test_a_key_of_the_other_kind_is_named_as_such() -> None:
    def change(raw: dict[str, Any]) -> None:
        nginx(raw)["address"] = "nginx.corp.example"
        f5(raw)["usrname"] = "admin"

    assert problems_after(change) == [
        f"{P}load_balancers[0].address: does not apply to kind pem_file (its keys are: "
        "name, previous_name, kind, cluster, path, adopt_existing_file).",
        f"{P}load_balancers[1].usrname: unknown key; did you mean 'username'?",
    ]


def test_load_balancer_must_name_a_declared_cluster() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["cluster"] = "staging"
        del nginx(raw)["cluster"]

    assert problems_after(change) == [
        f"{P}load_balancers[0].cluster: is required; expected the name of a cluster declared "
        "in clusters.",
        f"{P}load_balancers[1].cluster: 'staging' is not a declared cluster "
        "(declared: 'ws1-prod', 'ws1-lab').",
    ]


def test_pem_file_path() -> None:
    def change(raw: dict[str, Any]) -> None:
        nginx(raw)["path"] = "/etc/nginx/ws1-ca.txt"

    assert problems_after(change) == [
        f"{P}load_balancers[0].path: '/etc/nginx/ws1-ca.txt' does not end in .pem or .crt "
        "(expected the PEM bundle file the load balancer reads)."
    ]


def test_pem_file_path_is_required() -> None:
    def change(raw: dict[str, Any]) -> None:
        del nginx(raw)["path"]

    assert problems_after(change) == [
        f"{P}load_balancers[0].path: is required; expected the PEM bundle file the load "
        "balancer reads, ending in .pem or .crt."
    ]


def test_two_pem_file_load_balancers_cannot_share_a_file() -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["load_balancers"].append(
            {
                "name": "ws1-prod-haproxy",
                "kind": "pem_file",
                "cluster": "ws1-prod",
                "path": str(PROJECT_DIR / "out/ws1-prod.pem"),
            }
        )

    assert problems_after(change) == [
        f"{P}load_balancers[2].path: '{PROJECT_DIR}/out/ws1-prod.pem' is also the path of "
        "load_balancers[0]; each pem_file load balancer needs its own file."
    ]


def test_f5_required_fields() -> None:
    def change(raw: dict[str, Any]) -> None:
        del f5(raw)["address"]
        del f5(raw)["username"]
        del f5(raw)["management_ca_path"]

    assert problems_after(change) == [
        f"{P}load_balancers[1].address: is required; expected the host name or IP address "
        "of the BIG-IP management API, e.g. 10.0.0.21.",
        f"{P}load_balancers[1].username: is required; expected the BIG-IP user name.",
        f"{P}load_balancers[1].management_ca_path: is required while "
        "validate_management_certificate is true; give the PEM file of the CA that signs the "
        "BIG-IP management certificate, or set validate_management_certificate: false (not "
        "recommended: the password is then sent to whoever answers at the address).",
    ]


def test_f5_partition_and_profile_are_names_not_paths() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["partition"] = "/Common"
        f5(raw)["server_ssl_profile"] = "ws1 serverssl"

    assert problems_after(change) == [
        f"{P}load_balancers[1].partition: '/Common' contains '/'; expected a name without a "
        "folder or partition (the partition comes from partition).",
        f"{P}load_balancers[1].server_ssl_profile: 'ws1 serverssl' is not a valid BIG-IP "
        "name (expected letters, digits, '.', '_' and '-', starting with a letter or '_').",
    ]


def test_f5_settings_given_explicitly() -> None:
    raw = valid_raw()
    f5(raw).update(
        port=8443,
        partition="WS1",
        server_ssl_profile="ws1-lab-serverssl",
        management_ca_path=MANAGEMENT_CA.name,  # relative: resolved in the project directory
    )
    f5(raw)["virtual_server"]["port"] = "4443"
    project_dir = MANAGEMENT_CA.parent
    lb = parse_settings(raw, SECRETS, project_dir=project_dir).load_balancers[1]
    assert isinstance(lb, F5LoadBalancer)
    assert (lb.port, lb.server_ssl_profile_path) == (8443, "/WS1/ws1-lab-serverssl")
    assert lb.management_ca_path == MANAGEMENT_CA
    assert lb.virtual_server == VirtualServer("10.0.0.10", 4443, "/Common/ws1-clientssl")


def test_two_f5_entries_for_one_cluster_on_one_device_and_partition_are_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        twin = copy.deepcopy(f5(raw))
        twin["name"] = "ws1-lab-f5-twin"
        twin["address"] = "bigip.CORP.example"
        twin["server_ssl_profile"] = "another-profile"
        twin["virtual_server"]["destination"] = "10.0.0.11"
        raw["load_balancers"].append(twin)

    assert problems_after(change) == [
        f"{P}load_balancers[2].partition: load_balancers[1] already declares cluster 'ws1-lab' "
        "on bigip.corp.example:443 in partition Common; two entries there would declare the "
        "same objects (their names come from the cluster's service FQDN) and destroying one "
        "would delete the other's. Declare the cluster once per BIG-IP and partition, or give "
        "this entry another partition."
    ]


def test_the_same_cluster_in_another_partition_of_one_device_is_accepted() -> None:
    raw = valid_raw()
    twin = copy.deepcopy(f5(raw))
    twin.update(name="ws1-lab-f5-twin", partition="Other")
    twin["virtual_server"]["destination"] = "10.0.0.11"
    raw["load_balancers"].append(twin)
    lbs = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR).load_balancers
    assert [lb.partition for lb in lbs if isinstance(lb, F5LoadBalancer)] == ["Common", "Other"]


def test_two_f5_entries_cannot_manage_the_same_profile_on_one_device() -> None:
    def change(raw: dict[str, Any]) -> None:
        twin = copy.deepcopy(f5(raw))
        twin.update(name="ws1-prod-f5", cluster="ws1-prod", address="bigip.CORP.example")
        twin["server_ssl_profile"] = "ws1-lab.corp.example-serverssl"
        twin["virtual_server"] = {"destination": "10.0.0.11"}  # ws1-prod is passthrough
        raw["load_balancers"].append(twin)

    assert problems_after(change) == [
        f"{P}load_balancers[2].server_ssl_profile: '/Common/ws1-lab.corp.example-serverssl' "
        "on 'bigip.corp.example' is also managed by load_balancers[1]; give each a different "
        "server_ssl_profile."
    ]


def _second_big_ip(raw: dict[str, Any], **virtual_server: Any) -> None:
    twin = copy.deepcopy(f5(raw))
    twin.update(name="ws1-lab-f5-b", address="bigip-b.corp.example")
    twin["virtual_server"].update(virtual_server)
    raw["load_balancers"].append(twin)


def test_two_f5_entries_with_the_same_virtual_server_are_refused_as_one_device_group() -> None:
    # E.g. both units of an HA pair, each declared by its own management address.
    assert problems_after(_second_big_ip) == [
        f"{P}load_balancers[2].virtual_server.destination: 10.0.0.10 port 443 is also the "
        "virtual server of load_balancers[1]; two entries with the same virtual server are "
        "one device group (e.g. the two units of an HA pair): this program names the objects "
        'per cluster, so config sync would make them collide (409 "already exists"), and '
        "destroying one entry would delete the other's objects. Declare one entry per device "
        "group, at the management address of its active unit, with device_group set."
    ]


def test_the_same_virtual_server_is_not_echoed_when_load_balancers_are_secret() -> None:
    secret = SECRETS | {f"{PROJECT}:load_balancers"}
    problems = problems_after(_second_big_ip, secret)
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f"{P}load_balancers[2].virtual_server.destination: the given value is also the "
        "virtual server of load_balancers[1]; "
    ), problems[0]
    assert "10.0.0.10" not in problems[0]


@pytest.mark.parametrize("other", [{"destination": "10.1.0.10"}, {"port": 4443}])
def test_two_independent_big_ips_with_their_own_virtual_servers_are_accepted(
    other: dict[str, Any],
) -> None:
    raw = valid_raw()
    _second_big_ip(raw, **other)
    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)
    assert [lb.name for lb in settings.load_balancers] == [
        "ws1-prod-nginx",
        "ws1-lab-f5",
        "ws1-lab-f5-b",
    ]


def test_virtual_server_must_not_use_the_configurator_port() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["virtual_server"]["port"] = 8443

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server.port: 8443 is the appliance configurator port; "
        "the load balancer must not use it for the service (expected e.g. 443)."
    ]


def test_virtual_server_fields() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["virtual_server"] = {
            "destination": "ws1.corp.example",
            "client_ssl_profile": "ws1-clientssl",
            "pool": "/Common/ws1",
        }

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server.pool: unknown key (expected one of: "
        "destination, port, client_ssl_profile, snat).",
        f"{P}load_balancers[1].virtual_server.destination: 'ws1.corp.example' is not an IP "
        "address (expected the virtual server's address, e.g. 10.0.0.10).",
        f"{P}load_balancers[1].virtual_server.client_ssl_profile: 'ws1-clientssl' is not a "
        "full BIG-IP path (expected e.g. /Common/ws1-clientssl).",
    ]


def test_client_ssl_profile_is_required_when_the_load_balancer_terminates_ssl() -> None:
    def change(raw: dict[str, Any]) -> None:
        del f5(raw)["virtual_server"]["client_ssl_profile"]

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server.client_ssl_profile: is required because cluster "
        "'ws1-lab' uses ssl_termination: load_balancer; expected the full path of the "
        "client-SSL profile that holds the service certificate, e.g. /Common/ws1-clientssl."
    ]


def test_client_ssl_profile_is_refused_with_passthrough() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["cluster"] = "ws1-prod"

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server.client_ssl_profile: is set, but cluster "
        "'ws1-prod' uses ssl_termination: passthrough, so the load balancer does not "
        "terminate SSL; remove it, or set the cluster's ssl_termination: load_balancer."
    ]


def test_virtual_server_must_be_an_object() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["virtual_server"] = "10.0.0.10:443"

    assert problems_after(change) == [
        f"{P}load_balancers[1].virtual_server: expected an object, got a string."
    ]


def test_values_of_the_wrong_type_say_what_was_expected() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["service_fqdn"] = "  "
        lab(raw)["load_balancer_root_ca"] = ["-----BEGIN CERTIFICATE-----"]
        f5(raw)["address"] = "bigip_1.corp"
        f5(raw)["management_ca_path"] = "/etc/ssl/bigip-ca.der"
        del f5(raw)["virtual_server"]["destination"]

    assert problems_after(change) == [
        f"{P}clusters[0].service_fqdn: expected the FQDN users type to reach the service, "
        "e.g. ws1.corp.example, got an empty string.",
        f"{P}clusters[1].load_balancer_root_ca: expected PEM text (the load balancer's root "
        "CA), got a list.",
        f"{P}load_balancers[1].address: 'bigip_1.corp' is neither an IP address nor a valid "
        "host name (expected e.g. 10.0.0.21 or ws1-a.corp.example).",
        f"{P}load_balancers[1].management_ca_path: '/etc/ssl/bigip-ca.der' does not end in "
        ".pem or .crt (expected the PEM file of the CA that signs the BIG-IP management "
        "certificate).",
        f"{P}load_balancers[1].virtual_server.destination: is required; expected the IP "
        "address users connect to, e.g. 10.0.0.10.",
    ]


def test_an_f5_load_balancer_built_in_code_gets_the_default_profile_name() -> None:
    lb = F5LoadBalancer("ws1-prod-f5", "ws1-prod", "bigip.corp.example", "admin")
    assert lb.server_ssl_profile_path == "/Common/ws1-ws1-prod-serverssl"
    assert lb.kind == "f5"


# ---------------------------------------------------------------------------- load_settings


@pytest.fixture
def runtime_config_restored() -> Iterator[None]:
    saved_config = dict(runtime_config.CONFIG.get())
    saved_secret_keys = list(runtime_config._SECRET_KEYS.get())
    yield
    pulumi.runtime.set_all_config(saved_config, saved_secret_keys)


def _stack_config_env(monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any]) -> None:
    # The engine hands every value over as text; objects are JSON text.
    values = {
        f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in raw.items()
    }
    values["aws:region"] = "eu-west-1"  # other namespaces are not this program's business
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(values))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(sorted(SECRETS)))


@pytest.mark.usefixtures("runtime_config_restored")
def test_load_settings_reads_the_stack_config_like_the_language_host_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = valid_raw()
    nginx(raw)["path"] = str(tmp_path / "ws1-prod.pem")
    raw["expiry_warning_days"] = "21"
    raw["applianceAdminPassword"] = "Hunter2-appliance"
    _stack_config_env(monkeypatch, raw)
    # What the Python language host does at start-up.
    pulumi.runtime.set_all_config(
        pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env()
    )

    settings = load_settings()

    expected = parse_settings(valid_raw() | {"expiry_warning_days": 21}, SECRETS)
    assert settings.clusters == expected.clusters
    assert settings.expiry_warning_days == 21
    assert settings.load_balancers[0] == PemFileLoadBalancer(
        "ws1-prod-nginx", "ws1-prod", tmp_path / "ws1-prod.pem"
    )
    assert "Hunter2" not in repr(settings)


@pytest.mark.usefixtures("runtime_config_restored")
def test_load_settings_reports_plain_passwords_and_text_that_is_not_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = valid_raw()
    raw["load_balancers"] = "ws1-prod-nginx"  # set without --path: plain text, not JSON
    _stack_config_env(monkeypatch, raw)
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([f"{PROJECT}:bigipPassword"]))
    pulumi.runtime.set_all_config({}, [])  # only the environment knows the config now

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert caught.value.problems == (
        f"{P}load_balancers: expected a list of objects, got a string.",
        f"{P}applianceAdminPassword: holds the appliance admin password in plain text; "
        "make it a secret with `pulumi config set --secret applianceAdminPassword <password>`.",
        f"{P}labAdminPassword: holds the appliance admin password in plain text; "
        "make it a secret with `pulumi config set --secret labAdminPassword <password>`.",
    )


def test_incoming_root_ca_must_be_a_certificate_without_a_key() -> None:
    def change(raw: dict[str, Any]) -> None:
        prod(raw)["incoming_root_ca"] = "not a certificate"

    assert problems_after(change) == [
        f"{P}clusters[0].incoming_root_ca: does not contain a PEM certificate (expected the "
        "root CA the nodes will move to, from -----BEGIN CERTIFICATE----- to "
        "-----END CERTIFICATE-----)."
    ]


def test_a_management_ca_file_that_does_not_exist_is_refused() -> None:
    def change(raw: dict[str, Any]) -> None:
        f5(raw)["management_ca_path"] = "/nonexistent/bigip-ca.pem"

    assert problems_after(change) == [
        f"{P}load_balancers[1].management_ca_path: '/nonexistent/bigip-ca.pem' does not exist "
        "(expected the PEM file of the CA that signs the BIG-IP management certificate)."
    ]


# ---------------------------------------------------------------------------- shipped stacks


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_shipped_example_stacks_need_only_the_management_ca_file(
    stack: str, tmp_path: Path
) -> None:
    document = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    )
    raw = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    ca = tmp_path / "certs" / "bigip-management-ca.pem"

    # prod shows the ssh certificate route, whose CA file an operator supplies too; staging
    # the lifecycle_manager route, which also needs the CA of Lifecycle's HTTPS certificate.
    issuing = tmp_path / "certs" / "ws1-issuing-ca.pem"
    lcm_ca = tmp_path / "certs" / "lcm-management-ca.pem"
    route = "ssh" if stack == "prod" else "lifecycle_manager"
    expected_issuing = (
        ()
        if stack == "prod"
        else (
            f"{P}clusters[0].lifecycle_manager.management_ca_path: '{lcm_ca}' does not exist "
            "(expected the PEM file of the CA that signs Aria Suite Lifecycle's HTTPS "
            "certificate).",
        )
    ) + (
        f"{P}clusters[0].{route}.issuing_ca_path: '{issuing}' does not exist (expected the PEM "
        "file of the CA that issues the node certificates).",
    )

    with pytest.raises(SettingsError) as caught:
        parse_settings(raw, frozenset(), project_dir=tmp_path)
    assert caught.value.problems == expected_issuing + tuple(
        f"{P}load_balancers[{index}].management_ca_path: '{ca}' does not exist (expected the "
        "PEM file of the CA that signs the BIG-IP management certificate)."
        for index in (0, 1)
    )

    ca.parent.mkdir()
    ca.write_text(LB_ROOT_CA)
    issuing.write_text(trustme.CA().cert_pem.bytes().decode())
    if stack == "staging":
        lcm_ca.write_text(trustme.CA().cert_pem.bytes().decode())
    settings = parse_settings(raw, frozenset(), project_dir=tmp_path)
    if stack == "staging":
        route = settings.clusters[0].lifecycle_manager
        assert route is not None and route.restart_timeout_seconds == 60
    virtual_servers = [
        lb.virtual_server for lb in settings.load_balancers if isinstance(lb, F5LoadBalancer)
    ]
    assert len(virtual_servers) == 2 and len(set(virtual_servers)) == 2, virtual_servers
