"""certificate_method: lifecycle_manager through the lifecycle harness, against an emulated Aria
Suite Lifecycle over real TLS that changes what the emulated nodes serve."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import re

import pytest
from cryptography.hazmat.primitives import serialization

from components import pki
from emulators._certs import CertificateAuthority
from tests.harness.host import exception_text
from tests.harness.lifecycle import PROVIDER_KEY
from tests.program.lifecycle_world import LCM_PASSWORD, LifecycleWorld, lifecycle_world
from tests.program.scenarios import CERTIFICATE_TYPE, SERVICE, node_fqdn

NODES = [node_fqdn(i) for i in (1, 2, 3)]


def expect_ok(result):
    assert result.error is None, result.error
    return result


def serves_from(world: LifecycleWorld, ca: CertificateAuthority) -> list[str]:
    return [
        node.fqdn
        for node in world.emulator.nodes
        if pki.load_certificate(node.leaf_pem, node.fqdn).issuer == ca.certificate.subject
    ]


def test_first_up_replaces_through_lifecycle_and_a_no_change_up_calls_nothing(tmp_path):
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        assert (w.lcm.counters["import"], w.lcm.counters["pre-validate"]) == (1, 1)
        assert w.lcm.counters["replace"] == 1
        assert serves_from(w, w.issuing_ca) == NODES and w.off_trust() == []
        for node in w.emulator.nodes:
            assert set(node.subject_alt_names) == {SERVICE, *NODES}
        expect_ok(w.up())  # drops the old root CA from the load balancers
        assert w.trusted("proxy-a") == [w.issuing_ca.sha256] and w.lcm.logins() == 0
        again = expect_ok(w.up())
        assert again.changed() == {}
        assert (w.lcm.writes(), w.lcm.logins(), w.emulator.writes()) == (0, 0, 0)


def test_a_node_missing_a_san_gets_the_cluster_certificate_replaced(tmp_path):
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        node = w.emulator.node(node_fqdn(2))
        node._install(node._root, w.issuing_ca.issue(SERVICE, [SERVICE]))
        preview = expect_ok(w.stack.preview())
        [certificate] = preview.of_type(CERTIFICATE_TYPE)
        assert certificate.inputs["nodes_needing_certificate"] == [node_fqdn(2)]
        assert w.lcm.logins() == 0  # preview never calls Lifecycle
        replaced = expect_ok(w.up())
        assert w.lcm.counters["replace"] == 1 and w.off_trust() == []
        assert set(node.subject_alt_names) == {SERVICE, *NODES}
        # The other nodes serve the cluster certificate, which the locker still holds under
        # the alias the first up gave it: it is installed again, nothing is imported.
        assert w.lcm.counters["import"] == 0 and len(w.lcm.locker) == 1
        assert w.lcm.replaced_with == [*w.lcm.locker] * 2
        # Lifecycle replaced every node, so every node was observed (and guarded) afterwards:
        # what is stored is what each node serves, and the next up has nothing to do.
        [certificate] = replaced.of_type(CERTIFICATE_TYPE)
        served = {n.fqdn: n.leaf_pem for n in w.emulator.nodes}
        for fqdn, pem in served.items():
            sha256 = pki.sha256_fingerprint(pki.load_certificate(pem, fqdn))
            assert certificate.outputs["served_sha256s"][fqdn] == sha256, fqdn
        assert expect_ok(w.up()).changed() == {}


def test_a_certificate_the_load_balancers_would_not_trust_is_never_sent(tmp_path):
    """The outage guard for a route that changes every node at once: checked before."""
    other = CertificateAuthority.create()
    with lifecycle_world(tmp_path) as w:
        w.cluster["incoming_root_ca"] = other.pem
        w.cluster["root_ca_sha256"] = [w.emulator.root_ca_sha256, other.sha256]
        failed = w.up()
        assert failed.error is not None and "Lifecycle would install" in failed.error
        assert w.lcm.logins() == 0 and w.lcm.writes() == 0
        assert serves_from(w, w.issuing_ca) == [] and w.off_trust() == []


def test_a_failed_replacement_stops_and_a_rerun_converges(tmp_path):
    with lifecycle_world(tmp_path) as w:
        w.lcm.fail_next["replace"] = 1
        failed = w.up()
        assert failed.error is not None and "ended FAILED" in failed.error
        assert "error-causes" in failed.error
        assert serves_from(w, w.issuing_ca) == [] and w.off_trust() == []
        expect_ok(w.up())
        assert serves_from(w, w.issuing_ca) == NODES and w.off_trust() == []


def test_a_failed_pre_validation_replaces_nothing(tmp_path):
    with lifecycle_world(tmp_path) as w:
        w.lcm.fail_next["pre-validate"] = 1
        failed = w.up()
        assert failed.error is not None and "(pre-validate) ended FAILED" in failed.error
        assert w.lcm.counters["replace"] == 0 and serves_from(w, w.issuing_ca) == []


def test_a_request_that_never_finishes_times_out_with_the_setting_named(tmp_path):
    with lifecycle_world(tmp_path) as w:
        w.cluster["lifecycle_manager"]["request_timeout_seconds"] = 1
        w.lcm.hang_requests = True
        failed = w.up()
        assert failed.error is not None
        assert "was still INPROGRESS after 1 s (lifecycle_manager.request_timeout_seconds)" in (
            failed.error
        )
        assert w.lcm.counters["replace"] == 0


def test_a_wrong_password_is_refused_naming_the_key(tmp_path):
    with lifecycle_world(tmp_path) as w:
        w.stack.config["lifecycleManagerPassword"] = "not-the-password"  # noqa: S105
        failed = w.up()
        assert failed.error is not None and "HTTP 401" in failed.error
        assert "lifecycleManagerPassword" in failed.error and "not-the-password" not in failed.error
        assert w.lcm.writes() == 0


def test_an_unverified_lifecycle_certificate_gets_no_credentials(tmp_path):
    with lifecycle_world(tmp_path) as w:
        (tmp_path / "certs" / "lcm-ca.pem").write_text(CertificateAuthority.create().pem)
        failed = w.up()
        assert failed.error is not None and "SSLError" in failed.error
        assert w.lcm.received_bodies == [] and w.lcm.counters["authenticated"] == 0


def test_with_sslkeylogfile_set_nothing_is_sent_to_lifecycle(tmp_path, monkeypatch):
    """The requests carry the Lifecycle password and the node's private key; TLS keys in
    SSLKEYLOGFILE would decrypt them (ssl.create_default_context honours the variable)."""
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    monkeypatch.delenv("WS1_ACCESS_ALLOW_SSLKEYLOGFILE", raising=False)
    with lifecycle_world(tmp_path) as w:
        refused = w.up()
        assert refused.error is not None
        assert "would send the Aria Suite Lifecycle password" in refused.error
        assert w.lcm.received_bodies == [] and w.lcm.counters["authenticated"] == 0
        assert not (tmp_path / "keys.log").exists()


def test_no_lifecycle_secret_is_found_anywhere_in_the_lifecycle(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with lifecycle_world(tmp_path) as w:
        key_body = "".join(w.stack.config["lifecycleIssuingCaKey"].strip().splitlines()[1:-1])
        runs = [w.up()]
        # The node key went to Lifecycle (that is the route), and nowhere else.
        [imported] = [json.loads(b) for b in w.lcm.received_bodies if "privateKey" in b]
        node_key = "".join(imported["privateKey"].strip().splitlines()[1:-1])
        w.stack.config["lifecycleManagerPassword"] = "canary-wrong-lcm-guess"  # noqa: S105
        w.cluster["extra_sans"] = ["ws1-dr.local.test"]
        runs.append(w.up())
        runs.append(w.stack.refresh())
        canaries = [LCM_PASSWORD, "canary-wrong-lcm-guess", key_body[:40], node_key[:40]]
        captured = capsys.readouterr()  # what the provider printed: the operator sees stderr
        texts = [caplog.text, captured.out, captured.err]
        for run in runs:
            texts += [json.dumps(run.outputs, default=str), run.error or "", *run.warnings]
            for resource in run.resources.values():
                texts += [json.dumps(resource.inputs, default=str)]
                texts += [json.dumps(resource.outputs, default=str)]
                provider = resource.inputs.get(PROVIDER_KEY)
                if isinstance(provider, str):
                    texts.append(base64.b64decode(provider + "==").decode("latin-1"))
        for path in tmp_path.rglob("*"):
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
        assert runs[0].error is None and runs[1].error is not None
        assert [c for c in canaries for text in texts if c in text] == []


def test_a_missing_lifecycle_password_stops_preview_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WS1_ACCESS_LIFECYCLE_PASSWORD", raising=False)
    with lifecycle_world(tmp_path) as w:
        del w.stack.config["lifecycleManagerPassword"]
        w.stack.secret_keys.discard("lifecycleManagerPassword")
        failed = w.stack.preview()
        assert failed.error is not None
        assert "through the lifecycle_manager route, which needs the secret config key " in (
            failed.error
        )
        assert "WS1_ACCESS_LIFECYCLE_PASSWORD" in failed.error and failed.resources == {}
        assert w.lcm.received_bodies == []


def _locker_alias(certificate_pem: str) -> str:
    sha256 = pki.sha256_fingerprint(pki.load_certificate(certificate_pem, "test"))
    return f"ws1-{SERVICE}-{sha256.replace(':', '')[:16]}"


def test_a_new_extra_san_imports_a_new_certificate_and_reuses_nothing_that_does_not_fit(
    tmp_path,
):
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        [first] = w.lcm.locker
        w.cluster["extra_sans"] = ["ws1-dr.local.test"]
        expect_ok(w.up())
        # Every node served the old certificate, which lacks the new name: not reused.
        assert (w.lcm.counters["import"], w.lcm.counters["replace"]) == (1, 1)
        assert len(w.lcm.locker) == 2 and w.lcm.replaced_with[-1] != first
        for node in w.emulator.nodes:
            assert set(node.subject_alt_names) == {SERVICE, *NODES, "ws1-dr.local.test"}
        assert w.off_trust() == [] and expect_ok(w.up()).changed() == {}


def test_a_fitting_certificate_the_locker_no_longer_lists_is_not_reused_a_new_one_is_imported(
    tmp_path,
):
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        w.lcm.locker.clear()  # removed from the locker by hand
        node = w.emulator.node(node_fqdn(2))
        node._install(node._root, w.issuing_ca.issue(SERVICE, [SERVICE]))
        expect_ok(w.up())
        assert (w.lcm.counters["import"], w.lcm.counters["replace"]) == (1, 1)
        assert w.off_trust() == [] and set(node.subject_alt_names) == {SERVICE, *NODES}


@pytest.mark.parametrize(("days_left", "reused"), [(200, True), (20, False)])
def test_a_locker_certificate_is_reused_only_while_it_stays_valid_long_enough(
    tmp_path, days_left, reused
):
    """The stack's expiry_warning_days (30 here) is the margin: a certificate that would
    warn soon after it is installed again is not reused."""
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        now = datetime.datetime.now(datetime.UTC)
        fitting = w.issuing_ca.issue(
            SERVICE, [SERVICE, *NODES], not_after=now + datetime.timedelta(days=days_left)
        )
        key_pem = fitting.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        w.lcm.locker["by-hand"] = {
            "alias": _locker_alias(fitting.pem),
            "privateKey": key_pem,
            "certificateChain": fitting.pem + w.issuing_ca.pem,
        }
        for node in w.emulator.nodes:
            node._install(w.issuing_ca, fitting)
        broken = w.emulator.node(node_fqdn(2))
        broken._install(w.issuing_ca, w.issuing_ca.issue(SERVICE, [SERVICE]))
        expect_ok(w.up())
        assert w.lcm.counters["replace"] == 1 and w.off_trust() == []
        if reused:
            assert w.lcm.counters["import"] == 0 and w.lcm.replaced_with[-1] == "by-hand"
            assert broken.leaf_pem.strip() == fitting.pem.strip()
        else:
            assert w.lcm.counters["import"] == 1 and w.lcm.replaced_with[-1] != "by-hand"
            assert broken.leaf_pem.strip() != fitting.pem.strip()
        assert set(broken.subject_alt_names) == {SERVICE, *NODES}


def test_request_progress_is_shown_with_the_request_id_state_and_time_and_no_secret(
    tmp_path, capsys
):
    """In the provider plugin pulumi.log.info has no engine and prints to stderr, which the
    CLI shows (lifecycle.py docstring): the harness's provider host runs the same SDK code."""
    with lifecycle_world(tmp_path) as w:
        w.lcm.request_seconds = 0.5
        capsys.readouterr()
        expect_ok(w.up())
        shown = capsys.readouterr().err
    lines = [line for line in shown.splitlines() if "Aria Suite Lifecycle" in line]
    progress = re.compile(
        r"info: Aria Suite Lifecycle \(127\.0\.0\.1\): request (\S+) \((pre-validate|replace)\) "
        r"(INPROGRESS|COMPLETED) after \d+ s"
    )
    seen = {(m[1], m[2], m[3]) for line in lines if (m := progress.fullmatch(line))}
    for request_id, request in w.lcm.requests.items():
        kind = request["requestType"]
        assert {(request_id, kind, "INPROGRESS"), (request_id, kind, "COMPLETED")} <= seen
    assert any("importing the certificate ws1-" in line for line in lines), lines
    key_body = "".join(w.stack.config["lifecycleIssuingCaKey"].strip().splitlines()[1:-1])
    assert LCM_PASSWORD not in shown and key_body[:40] not in shown
    assert "PRIVATE KEY" not in shown


def test_the_wait_after_completed_is_the_restart_timeout_setting(tmp_path):
    with lifecycle_world(tmp_path) as w:
        w.cluster["lifecycle_manager"]["restart_timeout_seconds"] = 1
        w.lcm.nodes_left_unchanged = {node_fqdn(1)}
        failed = w.up()
        assert failed.error is not None
        assert (
            "within 1 s (lifecycle_manager.restart_timeout_seconds, after Lifecycle's request "
            "completed)" in failed.error
        ), failed.error
        assert node_fqdn(1) in failed.error


@pytest.mark.parametrize("value", [0, 3601, "sixty"])
def test_a_bad_restart_timeout_is_refused_naming_the_key(tmp_path, value):
    with lifecycle_world(tmp_path) as w:
        w.cluster["lifecycle_manager"]["restart_timeout_seconds"] = value
        failed = w.stack.preview()
        assert failed.error is not None and failed.resources == {}
        assert "clusters[0].lifecycle_manager.restart_timeout_seconds" in failed.error
        assert "a whole number of seconds from 1 to 3600" in failed.error
        assert w.lcm.received_bodies == []


def test_the_chain_the_locker_holds_is_read_and_must_end_at_a_trusted_root(tmp_path):
    """The root CA found through the route: the locker's certChain for what Lifecycle would
    install, checked against the planned trust (pins) before pre-validate and replace."""
    other = CertificateAuthority.create()
    with lifecycle_world(tmp_path) as w:
        w.lcm.answer_ca = other.pem
        failed = w.up()
        assert failed.error is not None
        assert f"the chain Lifecycle holds for it ends at {other.sha256}, which is not a root " in (
            failed.error
        ), failed.error
        assert "Nothing was replaced." in failed.error
        # The entry just imported stays in the locker, private key included: it is named.
        imported = next(iter(w.lcm.locker.values()))["alias"]
        assert f"The locker keeps the entry {imported} just imported" in failed.error
        assert w.lcm.counters["locker-detail"] == 1
        assert (w.lcm.counters["pre-validate"], w.lcm.counters["replace"]) == (0, 0)
        assert serves_from(w, w.issuing_ca) == [] and w.off_trust() == []
        w.lcm.answer_ca = None
        expect_ok(w.up())
        assert serves_from(w, w.issuing_ca) == NODES and w.off_trust() == []


def test_a_locker_entry_whose_chain_is_not_the_certificate_its_alias_names_is_not_installed(
    tmp_path,
):
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        node = w.emulator.node(node_fqdn(2))
        node._install(node._root, w.issuing_ca.issue(SERVICE, [SERVICE]))
        changed = w.issuing_ca.issue(SERVICE, [SERVICE, *NODES])
        w.lcm.answer_leaf = changed.pem  # the entry was changed by hand in the locker
        failed = w.up()
        assert failed.error is not None
        assert f"holds certificate {pki.sha256_fingerprint(changed.certificate)} first" in (
            failed.error
        ), failed.error
        assert (w.lcm.counters["pre-validate"], w.lcm.counters["replace"]) == (0, 0)
        assert w.off_trust() == [node_fqdn(2)]  # only the node this test broke


def test_changing_only_how_long_to_wait_or_the_warning_margin_plans_no_update(tmp_path):
    """Timeouts and the reuse margin say how a run behaves, not what the nodes serve: a
    reviewer reading preview must not see an update of the node certificates for them."""
    with lifecycle_world(tmp_path) as w:
        expect_ok(w.up())
        expect_ok(w.up())
        w.cluster["lifecycle_manager"]["restart_timeout_seconds"] = 120
        w.cluster["lifecycle_manager"]["request_timeout_seconds"] = 600
        w.stack.config["expiry_warning_days"] = 45
        assert expect_ok(w.stack.preview()).changed() == {}
        w.lcm.reset_counters()
        assert expect_ok(w.up()).changed() == {}
        assert (w.lcm.writes(), w.lcm.logins()) == (0, 0)
        # A change of what the nodes must serve is still an update.
        w.cluster["extra_sans"] = ["login.corp.test"]
        assert any(urn.endswith("certificate") for urn in expect_ok(w.stack.preview()).changed())


def test_a_locker_list_that_is_not_a_list_stops_with_a_clear_error(tmp_path, monkeypatch):
    """A locker answer other than CertificatePageDTO's list is named, not a TypeError."""
    from components.appliance.routes import lifecycle

    real_call = lifecycle._Lifecycle.call

    def call(self, method, path, what, body=None):
        if method == "GET" and path.startswith(f"{lifecycle.LOCKER}?"):
            return {"certificates": 5, "page": 0, "total": 1}
        return real_call(self, method, path, what, body)

    monkeypatch.setattr(lifecycle._Lifecycle, "call", call)
    with lifecycle_world(tmp_path) as w:
        failed = w.up()
        assert failed.error is not None
        shown = exception_text(failed.error)
        assert "answered `certificates` as int, not a list" in shown, failed.error
        assert "TypeError" not in failed.error
        assert (w.lcm.counters["pre-validate"], w.lcm.counters["replace"]) == (0, 0)


def test_a_certificate_chain_with_escaped_line_breaks_is_read(tmp_path):
    """VMware's API reference shows certChain with its line breaks escaped ("\\n")."""
    with lifecycle_world(tmp_path) as w:
        detail = w.lcm._detail
        w.lcm._detail = lambda vmid: {  # type: ignore[method-assign]
            **detail(vmid),
            "certChain": detail(vmid)["certChain"].replace("\n", "\\n"),
        }
        expect_ok(w.up())
        assert serves_from(w, w.issuing_ca) == NODES


def test_a_long_request_shows_its_progress_at_a_modest_rate(tmp_path, capsys, monkeypatch):
    """A line when the state changes and one per PROGRESS_EVERY_SECONDS while it does not:
    fewer lines than polls (the polls back off up to 5 s)."""
    from components.appliance.routes import lifecycle

    monkeypatch.setattr(lifecycle, "PROGRESS_EVERY_SECONDS", 1.0)
    with lifecycle_world(tmp_path) as w:
        w.lcm.request_seconds = 2.5
        capsys.readouterr()
        expect_ok(w.up())
        shown = capsys.readouterr().err.splitlines()
        polls = w.lcm.counters["authenticated"] - 5  # import, list, detail, pre-validate, PUT
    waiting = [line for line in shown if "INPROGRESS after" in line]
    finished = [line for line in shown if "COMPLETED after" in line]
    assert len(finished) == 2 and len(waiting) >= 4, shown  # each request: at 0 s and ~1.5 s
    assert len(waiting) + len(finished) < polls, (shown, polls)
    # A line while the request was still running, a second or more in.
    assert any(int(line.rsplit(" ", 2)[1]) >= 1 for line in waiting), waiting
