"""The stack's own CA, below the program: its provider's methods, and the trust decision that
approves it by fingerprint (never by name). No network: nodes are ServedNode values."""

from __future__ import annotations

import hashlib

import pytest
from pulumi.output import Unknown

from components import pki
from components.appliance.client import ServedNode
from components.appliance.observation import ClusterObservation, TrustDecisionError, decide_trust
from components.appliance.root_ca import ApplianceRootCAProvider
from components.appliance.stack_ca import (
    StackIssuingCAProvider,
    named_like_a_stack_ca,
    stack_ca_subject,
)
from emulators._certs import CertificateAuthority

SERVICE = "ws1.corp.example"
NODES = ["ws1-a.corp.example", "ws1-b.corp.example"]


def created() -> dict:
    result = StackIssuingCAProvider().create({"cluster": "ws1", "service_fqdn": SERVICE})
    assert result.id == "ws1"
    return dict(result.outs)


def served(fqdn: str, root: CertificateAuthority) -> ServedNode:
    leaf = root.issue(SERVICE, [SERVICE, *NODES])
    return ServedNode(fqdn, root.certificate, pki.load_certificate(leaf.pem, fqdn))


def observation(*nodes: ServedNode) -> ClusterObservation:
    roots = {node.root_ca_sha256: node.root_ca for node in nodes}
    return ClusterObservation("ws1", tuple(nodes), tuple(roots.values()))


def stack_ca_as_authority(outs: dict) -> CertificateAuthority:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(outs["private_key_pem"].encode(), None)
    return CertificateAuthority(pki.load_certificate(outs["certificate_pem"], "ca"), key)  # type: ignore[arg-type]


def test_create_makes_a_root_ca_whose_key_matches_and_whose_outputs_hold_no_clock() -> None:
    outs = created()
    assert set(outs) == {"cluster", "service_fqdn", "certificate_pem", "sha256", "private_key_pem"}
    certificate = pki.load_certificate(outs["certificate_pem"], "ca")
    assert certificate.subject == stack_ca_subject(SERVICE)
    assert outs["sha256"] == pki.sha256_fingerprint(certificate)
    authority = stack_ca_as_authority(outs)
    leaf = authority.issue(SERVICE, [SERVICE])
    pki.load_certificate(leaf.pem, "leaf").verify_directly_issued_by(certificate)
    # Two creates, two different CAs: nothing is derived from the inputs alone.
    assert created()["sha256"] != outs["sha256"]


def test_diff_replaces_only_for_a_new_service_fqdn_and_read_update_delete_keep_it() -> None:
    provider = StackIssuingCAProvider()
    outs = created()
    renamed = provider.diff("ws1", outs, {"cluster": "ws1-renamed", "service_fqdn": SERVICE})
    assert not renamed.changes and renamed.replaces == []
    moved = provider.diff("ws1", outs, {"cluster": "ws1", "service_fqdn": "ws2.corp.example"})
    assert moved.changes and moved.replaces == ["service_fqdn"]
    unknown = provider.diff("ws1", outs, {"cluster": "ws1", "service_fqdn": Unknown()})
    assert unknown.changes
    assert provider.read("ws1", dict(outs)).outs == outs
    assert provider.update("ws1", outs, {"cluster": "x", "service_fqdn": SERVICE}).outs == outs
    assert provider.delete("ws1", outs) is None


def test_a_long_service_fqdn_still_makes_a_common_name_within_64_characters() -> None:
    fqdn = "a" * 60 + ".corp.example"
    [cn] = [a for a in stack_ca_subject(fqdn) if a.oid._name == "commonName"]
    assert len(str(cn.value)) <= 64 and "ws1-access-lb-trust" in str(cn.value)
    result = StackIssuingCAProvider().create({"cluster": "x", "service_fqdn": fqdn})
    assert pki.load_certificate(result.outs["certificate_pem"], "ca").subject == stack_ca_subject(
        fqdn
    )


def test_long_service_fqdns_with_the_same_prefix_get_their_own_subjects() -> None:
    prefix = "ws1-access-" + "b" * 40
    first, second = f"{prefix}.one.corp.example", f"{prefix}.two.corp.example"
    subjects = {stack_ca_subject(fqdn) for fqdn in (first, second)}
    assert len(subjects) == 2
    for fqdn in (first, second):
        [cn] = [a for a in stack_ca_subject(fqdn) if a.oid._name == "commonName"]
        digest = hashlib.sha256(fqdn.encode()).hexdigest()[:8]
        assert len(str(cn.value)) <= 64 and digest in str(cn.value)
        assert named_like_a_stack_ca(stack_ca_subject(fqdn))
    # A short FQDN keeps its readable name, without a hash.
    [short] = [a for a in stack_ca_subject(SERVICE) if a.oid._name == "commonName"]
    assert short.value == f"{SERVICE} ws1-access-lb-trust CA"
    assert not named_like_a_stack_ca(CertificateAuthority.create().certificate.subject)


def test_the_stack_ca_is_trusted_without_a_pin_and_only_by_its_fingerprint() -> None:
    appliance = CertificateAuthority.create()
    stack_ca = stack_ca_as_authority(created())
    impostor = CertificateAuthority.create(subject=stack_ca_subject(SERVICE))
    pins = [appliance.sha256]
    mid_move = observation(served(NODES[0], stack_ca), served(NODES[1], appliance))

    # Where only the subject is known (the program): the stack CA's node is left out.
    planned = decide_trust(mid_move, pins, False, stack_ca_subject=stack_ca_subject(SERVICE))
    assert [pki.sha256_fingerprint(r) for r in planned] == [appliance.sha256]

    # Where the certificate is known (the providers): trusted, always, without a pin.
    exact = decide_trust(mid_move, pins, False, stack_ca=stack_ca.certificate)
    assert {pki.sha256_fingerprint(r) for r in exact} == {appliance.sha256, stack_ca.sha256}
    before_move = observation(served(NODES[0], appliance), served(NODES[1], appliance))
    exact = decide_trust(before_move, pins, False, stack_ca=stack_ca.certificate)
    assert {pki.sha256_fingerprint(r) for r in exact} == {appliance.sha256, stack_ca.sha256}

    # Same subject, another certificate: refused, with or without trust on first use.
    claimed = observation(served(NODES[0], impostor), served(NODES[1], appliance))
    for pinned, first_use in ((pins, False), ([], True)):
        with pytest.raises(TrustDecisionError) as refused:
            decide_trust(claimed, pinned, first_use, stack_ca=stack_ca.certificate)
        assert f"node {NODES[0]} publishes root CA {impostor.sha256}" in str(refused.value)
        assert stack_ca.sha256 in str(refused.value)
    # ... unless the operator pins it (a lost state's CA, say): then the usual rules apply.
    roots = decide_trust(claimed, [*pins, impostor.sha256], False, stack_ca=stack_ca.certificate)
    assert {pki.sha256_fingerprint(r) for r in roots} == {
        appliance.sha256,
        impostor.sha256,
        stack_ca.sha256,
    }


def test_root_ca_check_refuses_a_claim_in_preview_known_or_not() -> None:
    stack_ca = created()
    provider = ApplianceRootCAProvider()
    news = {
        "cluster": "ws1",
        "nodes": [{"fqdn": NODES[0]}],
        "pins": [],
        "root_ca_bundle_pem": Unknown(),
        "stack_ca_pem": stack_ca["certificate_pem"],
        "stack_ca_claims": {NODES[0]: stack_ca["sha256"]},
    }
    assert provider.check({}, news).failures == []
    news["stack_ca_claims"] = {NODES[0]: "AA:" * 31 + "AA"}
    [failure] = provider.check({}, news).failures
    assert failure.property == "stack_ca_claims" and stack_ca["sha256"] in failure.reason
    # While preview creates the CA, no node can publish it yet.
    news["stack_ca_pem"] = Unknown()
    news["stack_ca_claims"] = {NODES[0]: stack_ca["sha256"]}
    [failure] = provider.check({}, news).failures
    assert "not generated yet" in failure.reason


def test_check_refuses_to_create_a_ca_that_nodes_already_claim_but_never_an_existing_one() -> None:
    provider = StackIssuingCAProvider()
    news = {"cluster": "ws1", "service_fqdn": SERVICE, "published_claims": {NODES[0]: "AB:CD"}}
    [failure] = provider.check({}, news).failures
    assert failure.property == "published_claims"
    assert f"node {NODES[0]} publishes root CA AB:CD" in failure.reason
    assert "not generated yet" in failure.reason
    # The CA exists (prior inputs): its claims are for ApplianceRootCA to settle by fingerprint.
    assert provider.check({"cluster": "ws1", "service_fqdn": SERVICE}, news).failures == []
    assert provider.check({}, {**news, "published_claims": {}}).failures == []


def test_decide_trust_takes_the_stack_ca_or_its_subject_never_both() -> None:
    stack_ca = stack_ca_as_authority(created())
    nodes = observation(served(NODES[0], stack_ca))
    with pytest.raises(ValueError, match="not both"):
        decide_trust(
            nodes,
            [],
            True,
            stack_ca=stack_ca.certificate,
            stack_ca_subject=stack_ca_subject(SERVICE),
        )
