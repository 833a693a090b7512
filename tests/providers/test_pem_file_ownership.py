"""The PEM bundle file: the program owns only the files it wrote, never follows a symlink,
stores no text but certificates, cleans up after itself, and says what state a failed
write left behind. The provider is called directly on real files."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from pulumi.dynamic.dynamic import PROVIDER_KEY

from components.trust_stores import pem_file
from components.trust_stores.pem_file import PemTrustBundleProvider

LB = "nginx-dc1"


@pytest.fixture(scope="module")
def bundle() -> str:
    return trustme.CA(organization_name="ws1 appliance").cert_pem.bytes().decode()


@pytest.fixture
def provider() -> PemTrustBundleProvider:
    return PemTrustBundleProvider()


def props(path: Path, bundle: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": str(path),
        "bundle_pem": bundle,
        "load_balancer": LB,
        PROVIDER_KEY: "serialized-provider-v1",
        **extra,
    }


def failure_text(result: Any) -> str:
    return " ".join(failure.reason for failure in result.failures)


def test_check_refuses_a_file_this_stack_did_not_write(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    target.write_text("the proxy's own CA file\n")
    result = provider.check({}, props(target, bundle))
    assert f"load balancer {LB}" in failure_text(result)
    assert str(target) in failure_text(result)
    assert "adopt_existing_file" in failure_text(result)
    with pytest.raises(ValueError, match="did not write"):
        provider.create(props(target, bundle))
    assert target.read_text() == "the proxy's own CA file\n", "refused, yet changed"


def test_check_accepts_its_own_file_and_an_adopted_one(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    target.write_text("someone else's\n")
    assert provider.check(props(target, bundle), props(target, bundle)).failures == []
    adopted = props(target, bundle, adopt_existing_file=True)
    assert provider.check({}, adopted).failures == []


def test_a_file_with_exactly_the_planned_bundle_is_taken_over_silently(provider, tmp_path, bundle):
    # What a write that failed after its rename leaves behind: the rerun converges.
    target = tmp_path / "ca.pem"
    target.write_text(bundle)
    assert provider.check({}, props(target, bundle)).failures == []


def test_adopting_keeps_the_file_mode(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    target.write_text("someone else's\n")
    os.chmod(target, 0o640)
    provider.create(props(target, bundle, adopt_existing_file=True))
    assert target.read_text() == bundle
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_is_world_readable(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    provider.create(props(target, bundle))
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_symlink_at_the_path_is_refused_while_planning_and_at_apply(provider, tmp_path, bundle):
    secret = tmp_path / "server.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    target = tmp_path / "ca.pem"
    target.symlink_to(secret)
    for olds in ({}, props(target, bundle)):
        text = failure_text(provider.check(olds, props(target, bundle, adopt_existing_file=True)))
        assert "symbolic link" in text and str(target) in text
    with pytest.raises(ValueError, match="symbolic link"):
        provider.update(str(target), props(target, bundle), props(target, bundle))
    assert "PRIVATE KEY" in secret.read_text() and target.is_symlink()


def test_refresh_never_stores_the_text_behind_a_symlink(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    created = provider.create(props(target, bundle))
    secret = tmp_path / "server.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    target.unlink()
    target.symlink_to(secret)
    result = provider.read(str(target), created.outs)
    assert result.outs is not None
    assert "c2VjcmV0" not in repr(result.outs)
    assert (result.outs["bundle_pem"], result.outs["sha256s"]) == ("", [])


def test_refresh_never_stores_a_private_key_written_into_the_file(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    created = provider.create(props(target, bundle))
    target.write_text(bundle + "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    result = provider.read(str(target), created.outs)
    assert result.outs is not None and "c2VjcmV0" not in repr(result.outs)


def test_delete_leaves_a_symlink_alone(provider, tmp_path, bundle):
    other = tmp_path / "other.pem"
    other.write_text(bundle)
    target = tmp_path / "ca.pem"
    target.symlink_to(other)
    provider.delete(str(target), props(target, bundle))
    assert target.is_symlink() and other.read_text() == bundle


def test_a_directory_at_the_path_is_caught_while_planning(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    target.mkdir()
    text = failure_text(provider.check({}, props(target, bundle)))
    assert "is a directory" in text and str(target) in text and LB in text


def test_stale_temporary_files_of_an_interrupted_write_are_removed(provider, tmp_path, bundle):
    target = tmp_path / "ca.pem"
    stale = tmp_path / ".ca.pem.abc123.tmp"
    fresh = tmp_path / ".ca.pem.def456.tmp"  # maybe a write in progress right now: kept
    foreign = tmp_path / ".other.pem.abc123.tmp"
    for path in (stale, fresh, foreign):
        path.write_text("partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    provider.create(props(target, bundle))
    assert not stale.exists()
    assert fresh.exists() and foreign.exists()


def test_a_failed_directory_sync_says_the_file_is_in_place(provider, tmp_path, bundle, monkeypatch):
    target = tmp_path / "ca.pem"
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr(pem_file.os, "fsync", fsync)
    with pytest.raises(OSError) as error:
        provider.create(props(target, bundle))
    message = str(error.value)
    assert f"load balancer {LB}" in message and str(target) in message
    assert "in place" in message and "Input/output error" in message
    assert error.value.__cause__ is None and error.value.__context__ is None
    assert target.read_text() == bundle
    monkeypatch.setattr(pem_file.os, "fsync", real_fsync)
    # The rerun finds exactly the planned bundle there and records it.
    assert provider.check({}, props(target, bundle)).failures == []
    provider.create(props(target, bundle))


def test_the_stack_setting_adopts_a_foreign_file_through_the_whole_program(tmp_path):
    from tests.program import scenarios

    with scenarios.world(tmp_path) as world:
        assert world.stack.up().error is None
        directory = tmp_path / "lb" / "proxy-c"
        directory.mkdir()
        existing = directory / "ca.pem"
        existing.write_text("# the proxy's own CA file\n")
        os.chmod(existing, 0o600)
        entry = {"name": "proxy-c", "kind": "pem_file", "cluster": "local", "path": str(existing)}
        world.stack.config["load_balancers"].append(entry)
        refused = world.stack.up()
        assert refused.error and "adopt_existing_file" in refused.error
        assert existing.read_text() == "# the proxy's own CA file\n"
        entry["adopt_existing_file"] = True
        adopted = world.stack.up()
        assert adopted.error is None, adopted.error
        assert "BEGIN CERTIFICATE" in existing.read_text()
        assert stat.S_IMODE(existing.stat().st_mode) == 0o600
