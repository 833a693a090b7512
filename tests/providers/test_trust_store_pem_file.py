"""The PEM bundle trust store: its dynamic provider called directly on real files and certificates,
and `declare_trust` under mocks for what preview shows."""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import pulumi
import pulumi.runtime
import pytest
import trustme
from pulumi.dynamic.dynamic import PROVIDER_KEY, serialize_provider
from pulumi.runtime.rpc import UNKNOWN

from components import pki
from components.settings import PemFileLoadBalancer
from components.trust_stores import ClusterTrust, pem_file
from components.trust_stores.pem_file import PemTrustBundleProvider

LB = "nginx-dc1"


def _ca(name: str) -> trustme.CA:
    return trustme.CA(organization_name=name)


@pytest.fixture(scope="module")
def cas() -> tuple[trustme.CA, trustme.CA]:
    return _ca("ws1 appliance old"), _ca("ws1 appliance new")


@pytest.fixture(scope="module")
def old_bundle(cas: tuple[trustme.CA, trustme.CA]) -> str:
    return cas[0].cert_pem.bytes().decode()


@pytest.fixture(scope="module")
def overlap_bundle(cas: tuple[trustme.CA, trustme.CA]) -> str:
    """Old and new root together, as during a rotation."""
    return "".join(ca.cert_pem.bytes().decode() for ca in cas)


def fingerprints(bundle: str) -> list[str]:
    return [pki.sha256_fingerprint(c) for c in pki.load_bundle(bundle, "expected bundle")]


def props(path: Path, bundle: str) -> dict[str, Any]:
    # As the engine hands them to check/create/update: inputs plus the serialized provider.
    return {
        "path": str(path),
        "bundle_pem": bundle,
        "load_balancer": LB,
        PROVIDER_KEY: "serialized-provider-v1",
    }


@pytest.fixture
def provider() -> PemTrustBundleProvider:
    return PemTrustBundleProvider()


# ------------------------------------------------------------------------------ create


def test_create_writes_the_exact_bundle_readable_by_the_proxy(provider, tmp_path, overlap_bundle):
    target = tmp_path / "ws1-trust.pem"
    previous_umask = os.umask(0o077)  # a strict umask must not make the file unreadable
    try:
        result = provider.create(props(target, overlap_bundle))
    finally:
        os.umask(previous_umask)

    assert result.id == str(target)
    assert target.read_bytes() == overlap_bundle.encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert result.outs == {
        "path": str(target),
        "bundle_pem": overlap_bundle,
        "load_balancer": LB,
        "sha256s": fingerprints(overlap_bundle),
    }
    assert PROVIDER_KEY not in result.outs, "the engine adds __provider back itself"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws1-trust.pem"], "temp file left"


def test_create_replaces_an_adopted_file_by_rename(provider, tmp_path, old_bundle):
    target = tmp_path / "ws1-trust.pem"
    target.write_text("stale content\n")
    inode_before = target.stat().st_ino
    reader = target.open("rb")  # a proxy that has the old file open keeps reading the old one

    provider.create({**props(target, old_bundle), "adopt_existing_file": True})

    assert target.read_text() == old_bundle
    assert target.stat().st_ino != inode_before, "written in place instead of renamed over"
    assert reader.read() == b"stale content\n"
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws1-trust.pem"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(
    provider, tmp_path, old_bundle, overlap_bundle, monkeypatch
):
    target = tmp_path / "ws1-trust.pem"
    provider.create(props(target, old_bundle))

    def disk_error(_descriptor: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pem_file.os, "fsync", disk_error)
    with pytest.raises(OSError) as error:
        provider.update(str(target), {}, props(target, overlap_bundle))
    monkeypatch.undo()

    assert str(error.value) == (
        f"load balancer {LB}: cannot write the trust bundle {target}: Input/output error; the "
        "file there, if any, is unchanged (expected a path this user can write)."
    )
    assert target.read_text() == old_bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws1-trust.pem"]


def test_missing_directory_is_an_error_naming_the_load_balancer_and_path(
    provider, tmp_path, old_bundle
):
    # check() refuses this while planning; the write says it again should the directory
    # disappear between preview and apply.
    target = tmp_path / "no-such-dir" / "ws1-trust.pem"
    with pytest.raises(FileNotFoundError) as error:
        provider.create(props(target, old_bundle))
    assert str(error.value) == (
        f"load balancer {LB}: cannot write the trust bundle {target}: the directory "
        f"{target.parent} does not exist; expected an existing directory (this program does "
        "not create it)."
    )
    assert not target.parent.exists(), "the directory must not be created"


# ------------------------------------------------------------------------------ update, diff


def test_update_rewrites_the_file(provider, tmp_path, old_bundle, overlap_bundle):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, old_bundle))

    result = provider.update(str(target), created.outs, props(target, overlap_bundle))

    assert target.read_text() == overlap_bundle
    assert result.outs is not None and result.outs["sha256s"] == fingerprints(overlap_bundle)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_diff_ignores_the_serialized_provider(provider, tmp_path, old_bundle):
    target = tmp_path / "ws1-trust.pem"
    olds = {**provider.create(props(target, old_bundle)).outs, PROVIDER_KEY: "older-code"}

    result = provider.diff(str(target), olds, props(target, old_bundle))

    assert result.changes is False, "a code change alone must not look like a trust change"


def test_diff_updates_on_new_bundle_and_replaces_on_new_path(
    provider, tmp_path, old_bundle, overlap_bundle
):
    target = tmp_path / "ws1-trust.pem"
    olds = provider.create(props(target, old_bundle)).outs

    rotated = provider.diff(str(target), olds, props(target, overlap_bundle))
    assert (rotated.changes, rotated.replaces) == (True, [])

    moved = provider.diff(str(target), olds, props(tmp_path / "other.pem", old_bundle))
    assert (moved.changes, moved.replaces) == (True, ["path"])
    assert moved.delete_before_replace is False, "the new file must exist before the old goes"


# ------------------------------------------------------------------------------ read, delete


def test_read_reports_the_file_as_written(provider, tmp_path, old_bundle):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, old_bundle))

    result = provider.read(str(target), created.outs)

    assert result.id == str(target)
    assert result.outs == created.outs


def test_read_reports_an_edited_file_as_drift(provider, tmp_path, old_bundle, overlap_bundle):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, overlap_bundle))
    target.write_text(old_bundle)  # someone removed the new root by hand

    result = provider.read(str(target), created.outs)

    assert result.outs is not None
    assert result.outs["bundle_pem"] == old_bundle
    assert result.outs["sha256s"] == fingerprints(old_bundle)
    after_refresh = provider.diff(str(target), result.outs, props(target, overlap_bundle))
    assert after_refresh.changes is True, "the next up must rewrite the file"


def test_read_of_a_damaged_file_reports_no_fingerprints_and_stores_none_of_its_text(
    provider, tmp_path, old_bundle
):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, old_bundle))
    target.write_text("not a certificate\n")

    result = provider.read(str(target), created.outs)

    assert result.outs is not None
    assert (result.outs["bundle_pem"], result.outs["sha256s"]) == ("", [])


def test_read_of_a_deleted_file_reports_it_gone(provider, tmp_path, old_bundle):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, old_bundle))
    target.unlink()

    result = provider.read(str(target), created.outs)

    assert (result.id, result.outs) == ("", {})


def test_delete_removes_the_file_and_tolerates_it_missing(provider, tmp_path, old_bundle):
    target = tmp_path / "ws1-trust.pem"
    created = provider.create(props(target, old_bundle))

    provider.delete(str(target), created.outs)
    assert not target.exists()
    provider.delete(str(target), created.outs)  # already gone: no error


# ------------------------------------------------------------------------------ check


def test_check_accepts_a_bundle_and_keeps_the_inputs(provider, tmp_path, overlap_bundle):
    news = props(tmp_path / "ws1-trust.pem", overlap_bundle)
    result = provider.check({}, news)
    assert result.failures == []
    assert result.inputs == news


def _failures(result: Any) -> list[tuple[str, str]]:
    return [(failure.property, failure.reason) for failure in result.failures]


def test_check_refuses_an_empty_or_relative_path(provider, old_bundle):
    assert _failures(provider.check({}, {**props(Path("x"), old_bundle), "path": ""})) == [
        (
            "path",
            f"load balancer {LB}: the PEM bundle path is empty; expected an absolute file path.",
        )
    ]
    relative = props(Path("trust/ws1.pem"), old_bundle)
    assert _failures(provider.check({}, relative)) == [
        (
            "path",
            f"load balancer {LB}: the PEM bundle path 'trust/ws1.pem' is relative; "
            "expected an absolute file path.",
        )
    ]


def test_check_refuses_a_path_whose_directory_does_not_exist(provider, tmp_path, old_bundle):
    # Refused while planning, so `pulumi preview` reports it and `up` applies nothing.
    target = tmp_path / "no-such-dir" / "ws1-trust.pem"
    assert _failures(provider.check({}, props(target, old_bundle))) == [
        (
            "path",
            f"load balancer {LB}: the directory {target.parent} of the PEM bundle path "
            f"{target} does not exist; expected an existing directory (this program does not "
            "create it).",
        )
    ]
    assert not target.parent.exists(), "the directory must not be created"


def test_check_refuses_a_missing_directory_also_when_the_bundle_is_unknown(provider, tmp_path):
    target = tmp_path / "no-such-dir" / "ws1-trust.pem"
    news = {**props(target, ""), "bundle_pem": UNKNOWN}
    assert [prop for prop, _ in _failures(provider.check({}, news))] == ["path"]


def test_check_refuses_a_private_key_in_the_bundle(provider, tmp_path, cas, old_bundle):
    with_key = old_bundle + cas[0].private_key_pem.bytes().decode()
    failures = _failures(provider.check({}, props(tmp_path / "t.pem", with_key)))
    assert len(failures) == 1, failures
    prop, reason = failures[0]
    assert prop == "bundle_pem"
    assert reason.startswith(f"the trust bundle of load balancer {LB} contains a private key"), (
        reason
    )
    assert "PRIVATE KEY-----\nMI" not in reason, "the key itself must not be echoed"


def test_check_refuses_text_that_is_not_pem_certificates(provider, tmp_path):
    failures = _failures(provider.check({}, props(tmp_path / "t.pem", "hello\n")))
    assert failures == [
        (
            "bundle_pem",
            f"the trust bundle of load balancer {LB} is not a PEM certificate: "
            "no -----BEGIN CERTIFICATE----- line was found.",
        )
    ]


def test_check_waits_for_a_bundle_unknown_in_preview(provider, tmp_path):
    news = props(tmp_path / "t.pem", "")
    news["bundle_pem"] = UNKNOWN
    assert provider.check({}, news).failures == []


# ------------------------------------------------------------------------------ serialization


def test_serialized_provider_is_small_and_round_trips():
    serialized = serialize_provider(PemTrustBundleProvider())

    assert len(serialized) < 1024, f"{len(serialized)} bytes: the class was pickled by value"
    restored = dill.loads(base64.b64decode(serialized))
    assert type(restored) is PemTrustBundleProvider
    assert restored.replace_keys == ("path",)


# ------------------------------------------------------------------------------ preview


class _PreviewMocks(pulumi.runtime.Mocks):
    """Answers like the engine in preview: inputs known, output-only properties unknown."""

    def __init__(self) -> None:
        self.inputs: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[args.name] = dict(args.inputs)
        state = dict(args.inputs)
        if args.typ.endswith(":PemTrustBundle"):
            state["sha256s"] = UNKNOWN
        return "", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


@pytest.fixture
def in_project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_preview_shows_the_fingerprints_before_the_file_is_written(
    in_project_dir, overlap_bundle, monkeypatch
):
    sha256s = fingerprints(overlap_bundle)
    trust = ClusterTrust("prod", "access.corp.example", (), overlap_bundle, sha256s)
    lb = PemFileLoadBalancer(name=LB, cluster="prod", path=Path("trust/ws1.pem"))
    mocks = _PreviewMocks()
    pulumi.runtime.set_mocks(mocks, project="ws1-access-lb-trust", stack="unit", preview=True)
    declared: list[pem_file.PemTrustBundle] = []

    class Recording(pem_file.PemTrustBundle, module="trust_stores", name="PemTrustBundle"):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            declared.append(self)

    monkeypatch.setattr(pem_file, "PemTrustBundle", Recording)
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        parent = pulumi.ComponentResource("ws1:test:Parent", "access-trust")
        result = pem_file.declare_trust(lb, trust, parent)
        # Control: the resource's own fingerprints are unknown in this preview.
        declared[0].sha256s.apply(lambda value: seen.update(resource_sha256s=value))
        return pulumi.Output.all(result.trusted_sha256s, result.object_names).apply(
            lambda values: seen.update(trusted=values[0], objects=values[1])
        )

    program()

    absolute = str(in_project_dir / "trust" / "ws1.pem")
    assert "resource_sha256s" not in seen, "control failed: sha256s was known in preview"
    assert seen.get("trusted") == sha256s, f"trusted_sha256s in preview: {seen}"
    assert seen.get("objects") == [absolute]
    inputs = mocks.inputs[f"{LB}-trust-bundle"]
    assert {k: inputs[k] for k in ("path", "bundle_pem", "load_balancer")} == {
        "path": absolute,
        "bundle_pem": overlap_bundle,
        "load_balancer": LB,
    }
    assert "sha256s" not in inputs, "an output-only key must not be sent as an input"
