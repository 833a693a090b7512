"""certificate_method and the ssh route's settings: defaults, and the operator line for each
mistake (the config key, what was wrong, what was expected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from components.settings import PROJECT, SettingsError, SshRoute, parse_settings

P = f"- {PROJECT}:clusters[0]"
CA = trustme.CA().cert_pem.bytes().decode()
HOST_KEY = "SHA256:" + "A" * 43
SECRETS = frozenset({f"{PROJECT}:sshPassword", f"{PROJECT}:sshRootPassword"})


def raw(**cluster: Any) -> dict[str, Any]:
    """One cluster; its ssh secret keys are set only when the ssh route reads them."""
    base: dict[str, Any] = {
        "name": "ws1",
        "service_fqdn": "ws1.corp.example",
        "ssl_termination": "passthrough",
        "trust_on_first_use": True,
        "nodes": [{"fqdn": "ws1-a.corp.example", "ssh_host_key": HOST_KEY}],
        "certificate_method": "ssh",
        "ssh": {"user": "sshuser", "issuing_ca": CA},
    }
    base.update(cluster)
    return {
        "clusters": [{k: v for k, v in base.items() if v is not None}],
        "load_balancers": [
            {"name": "lb", "kind": "pem_file", "cluster": "ws1", "path": "/tmp/x.pem"}  # noqa: S108
        ],
        **(
            {"sshPassword": "(set)", "sshRootPassword": "(set)"}
            if base.get("certificate_method") == "ssh"
            else {}
        ),
    }


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(config, SECRETS, project_dir=Path("/srv"))
    return list(caught.value.problems)


def test_without_the_key_the_method_is_none_and_nothing_else_is_asked_for() -> None:
    config = raw(certificate_method=None, ssh=None, nodes=[{"fqdn": "ws1-a.corp.example"}])
    cluster = parse_settings(config, SECRETS).clusters[0]
    assert cluster.certificate_method == "none" and cluster.ssh is None
    assert not cluster.writes_certificates and not cluster.needs_admin_password


def test_an_ssh_route_reads_with_its_defaults() -> None:
    cluster = parse_settings(raw(), SECRETS).clusters[0]
    assert cluster.writes_certificates
    assert cluster.ssh == SshRoute(
        user="sshuser",
        issuing_ca=cluster.ssh.issuing_ca if cluster.ssh else "",
        keys_in_config=("sshPassword", "sshRootPassword"),
    )
    assert cluster.ssh is not None and cluster.ssh.become == "su" and cluster.ssh.port == 22
    assert cluster.ssh.secret_keys == ("sshPassword", "sshRootPassword", "sshIssuingCaKey")
    assert cluster.nodes[0].ssh_host_key == HOST_KEY


def test_lifecycle_manager_needs_its_object_and_unknown_methods_name_the_choices() -> None:
    [line] = problems(
        raw(
            certificate_method="lifecycle_manager", ssh=None, nodes=[{"fqdn": "ws1-a.corp.example"}]
        )
    )
    assert line.startswith(
        f"{P}.lifecycle_manager: is required with certificate_method: lifecycle_manager"
    )
    [line] = problems(
        raw(certificate_method="scp", ssh=None, nodes=[{"fqdn": "ws1-a.corp.example"}])
    )
    assert line == (
        f"{P}.certificate_method: 'scp' is not a certificate method (expected "
        "lifecycle_manager | ssh | configurator | none)."
    )


def test_a_node_without_a_host_key_pin_is_refused_unless_trust_on_first_use_is_said() -> None:
    config = raw(nodes=[{"fqdn": "ws1-a.corp.example"}])
    [line] = problems(config)
    assert line.startswith(f"{P}.nodes[0].ssh_host_key: is required with certificate_method: ssh")
    assert "ssh.trust_host_key_on_first_use: true" in line
    config["clusters"][0]["ssh"]["trust_host_key_on_first_use"] = True
    assert parse_settings(config, SECRETS).clusters[0].ssh is not None


def test_ssh_mistakes_each_name_their_key() -> None:
    config = raw(
        nodes=[{"fqdn": "ws1-a.corp.example", "ssh_host_key": "MD5:aa:bb"}],
        ssh={"user": "sshuser", "become": "doas", "issuing_ca": "not a PEM", "colour": "red"},
    )
    lines = problems(config)
    assert any(
        line.startswith(f"{P}.nodes[0].ssh_host_key: expected the SHA-256") for line in lines
    )
    assert f"{P}.ssh.colour: unknown key" in "\n".join(lines)
    assert any(
        line.startswith(f"{P}.ssh.become: 'doas' is not a way to become root") for line in lines
    )
    assert any(line.startswith(f"{P}.ssh.issuing_ca:") for line in lines)


def test_ssh_settings_on_another_method_are_refused() -> None:
    [line] = problems(
        raw(certificate_method="configurator", nodes=[{"fqdn": "ws1-a.corp.example"}])
    )
    assert line == f"{P}.ssh: applies only with certificate_method: ssh."


def test_a_password_typed_in_plain_text_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw(), frozenset({f"{PROJECT}:sshRootPassword"}))
    assert any(
        "sshPassword: holds the SSH password in plain text" in line
        for line in caught.value.problems
    ), caught.value.problems


def test_a_lifecycle_route_reads_with_its_defaults_and_names_missing_files(tmp_path: Path) -> None:
    config = raw(
        certificate_method="lifecycle_manager",
        ssh=None,
        nodes=[{"fqdn": "ws1-a.corp.example"}],
        lifecycle_manager={
            "address": "lcm.corp.example",
            "management_ca_path": "certs/lcm-ca.pem",
            "issuing_ca": CA,
        },
    )
    config["lifecycleManagerPassword"] = "(set)"
    secrets = frozenset({f"{PROJECT}:lifecycleManagerPassword"})
    with pytest.raises(SettingsError) as caught:
        parse_settings(config, secrets, project_dir=tmp_path)
    assert caught.value.problems == (
        f"{P}.lifecycle_manager.management_ca_path: '{tmp_path / 'certs/lcm-ca.pem'}' does not "
        "exist (expected the PEM file of the CA that signs Aria Suite Lifecycle's HTTPS "
        "certificate).",
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "lcm-ca.pem").write_text(CA)
    cluster = parse_settings(config, secrets, project_dir=tmp_path).clusters[0]
    route = cluster.lifecycle_manager
    assert route is not None and cluster.issuing_ca == route.issuing_ca
    assert (route.username, route.environment_id, route.product_id) == (
        "admin@local",
        "globalenvironment",
        "vidm",
    )
    assert route.secret_keys == ("lifecycleManagerPassword", "lifecycleIssuingCaKey")
    assert (route.request_timeout_seconds, route.restart_timeout_seconds) == (1800, 60)
    assert route.keys_in_config == ("lifecycleManagerPassword",)


def test_issuing_ca_generated_chooses_the_stacks_own_ca_and_needs_no_ca_key() -> None:
    config = raw(ssh={"user": "sshuser", "issuing_ca": "generated"})
    cluster = parse_settings(config, SECRETS).clusters[0]
    assert cluster.ssh is not None and cluster.ssh.generated_ca
    assert cluster.generates_ca and cluster.issuing_ca is None
    # No issuing CA key among the secrets the run will look for.
    assert cluster.ssh.secret_keys == ("sshPassword", "sshRootPassword")


def test_issuing_ca_generated_refuses_a_ca_file_or_a_ca_key_beside_it() -> None:
    lines = problems(
        raw(
            ssh={
                "user": "sshuser",
                "issuing_ca": "generated",
                "issuing_ca_path": "certs/ca.pem",
                "issuing_ca_key_key": "myCaKey",
            }
        )
    )
    assert f"{P}.ssh: issuing_ca: generated and issuing_ca_path are both set" in "\n".join(lines)
    assert any(
        line.startswith(f"{P}.ssh.issuing_ca_key_key: applies only to your own CA")
        and "Remove issuing_ca_key_key" in line
        for line in lines
    ), lines
    assert len(lines) == 2, lines


def test_a_leftover_ca_key_beside_issuing_ca_generated_says_why_it_is_not_read() -> None:
    """Switching from your own CA to generated with sshIssuingCaKey still set."""
    config = raw(ssh={"user": "sshuser", "issuing_ca": "generated"})
    config["sshIssuingCaKey"] = "(set)"
    with pytest.raises(SettingsError) as refused:
        parse_settings(config, SECRETS | {f"{PROJECT}:sshIssuingCaKey"})
    [line] = refused.value.problems
    assert line.startswith(f"- {PROJECT}:sshIssuingCaKey: is set, but cluster(s) ws1 use")
    assert "generated, which needs no key" in line and "Remove it" in line
    assert "unknown key" not in line


def test_issuing_ca_generated_is_for_the_ssh_route_only(tmp_path: Path) -> None:
    (tmp_path / "lcm-ca.pem").write_text(CA)
    config = raw(
        certificate_method="lifecycle_manager",
        ssh=None,
        nodes=[{"fqdn": "ws1-a.corp.example"}],
        lifecycle_manager={
            "address": "lcm.corp.example",
            "management_ca_path": "lcm-ca.pem",
            "issuing_ca": "generated",
        },
    )
    config["lifecycleManagerPassword"] = "(set)"
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            config, frozenset({f"{PROJECT}:lifecycleManagerPassword"}), project_dir=tmp_path
        )
    [line] = caught.value.problems
    assert line.startswith(
        f"{P}.lifecycle_manager.issuing_ca: generated is available only with "
        "certificate_method: ssh"
    )


def test_without_manage_certificate_the_ssh_secrets_are_not_required() -> None:
    """Nothing is written with manage_certificate: false, so a named secret key the stack does
    not set is no problem (it is one as soon as certificates are managed)."""
    config = raw(
        manage_certificate=False,
        ssh={"user": "sshuser", "issuing_ca": CA, "password_key": "mySshPassword"},
    )
    del config["sshPassword"]
    cluster = parse_settings(config, SECRETS).clusters[0]
    assert not cluster.writes_certificates and not cluster.generates_ca
    config["clusters"][0]["manage_certificate"] = True
    [line] = problems(config)
    assert line.startswith(f"{P}.ssh.password_key: names a config key that this stack does not set")


def test_a_generated_ca_stays_in_the_stack_when_certificates_are_left_alone() -> None:
    config = raw(manage_certificate=False, ssh={"user": "sshuser", "issuing_ca": "generated"})
    cluster = parse_settings(config, SECRETS).clusters[0]
    assert cluster.generates_ca and not cluster.writes_certificates
