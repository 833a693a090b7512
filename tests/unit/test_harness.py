"""Tests of the lifecycle harness (tests/harness), with a toy dynamic provider working on files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_f5bigip as f5
import pytest
from pulumi.output import Unknown
from pulumi.runtime import settings as sdk_settings

from tests.harness import UNKNOWN, Stack
from tests.harness.fixtures import counter_provider as cp
from tests.harness.fixtures.counter_provider import (
    Counter,
    CounterProvider,
    DefaultDiffProvider,
    NoUpdateProvider,
    TaggedProvider,
    journal,
)

COUNTER = "pulumi-python:dynamic/harness:Counter"
PROJECT = "ws1-access-lb-trust"
PROGRAM_DIR = Path(__file__).resolve().parents[1] / "harness" / "fixtures" / "program"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def urn(name: str, type_: str = COUNTER) -> str:
    return f"urn:pulumi:test::{PROJECT}::{type_}::{name}"


@pytest.fixture(autouse=True)
def _clean_records():
    cp.CONFIGURE_CALLS.clear()
    cp.CHECKS.clear()
    yield
    cp.CONFIGURE_CALLS.clear()
    cp.CHECKS.clear()


def two_counters(directory: Path, provider: Callable[[], CounterProvider] = CounterProvider):
    """a (value from config "value") and b (value from a's output-only serial)."""

    def program() -> None:
        cfg = pulumi.Config()
        a = Counter(
            "a",
            dir=str(directory),
            key=cfg.get("key") or "a",
            value=cfg.get("value") or "one",
            dbr=cfg.get_bool("dbr") or False,
            provider=provider(),
        )
        b = Counter("b", dir=str(directory), key="b", value=a.serial.apply(lambda s: f"s{s}"))
        pulumi.export("a_serial", a.serial)
        pulumi.export("a_value", a.value)
        pulumi.export("b_value", b.value)

    return program


def test_create_then_unchanged_up_is_all_same_without_provider_writes(tmp_path):
    stack = Stack(two_counters(tmp_path))

    first = stack.up()
    assert first.error is None
    assert first.steps == {urn("a"): "create", urn("b"): "create"}
    assert journal(str(tmp_path)) == ["create a serial=1", "create b serial=2"]
    a = first.by_name("a")
    assert a.id == "a-1"
    assert a.outputs["serial"] == 1.0  # a float after the protobuf round trip, as in the engine
    assert isinstance(a.outputs["serial"], float)
    assert a.outputs["__provider"] == a.inputs["__provider"]
    assert "__provider" in a.secrets
    assert first.outputs == {"a_serial": 1.0, "a_value": "one", "b_value": "s1"}

    second = stack.up()
    assert second.error is None
    assert set(second.steps.values()) == {"same"}
    assert second.changed() == {}
    assert journal(str(tmp_path)) == ["create a serial=1", "create b serial=2"]
    assert second.outputs == first.outputs
    assert list(stack.state) == [urn("a"), urn("b")]


def test_input_change_is_an_update_with_the_outputs_update_returned(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()
    stack.config["value"] = "two"

    result = stack.up()

    assert result.error is None
    assert result.changed() == {urn("a"): "update"}
    a = stack.state[urn("a")]
    assert a.id == "a-1"
    assert a.outputs["value"] == "two"
    assert a.outputs["updates"] == 1  # computed by update(), not an input
    assert a.inputs["value"] == "two"
    assert result.outputs["a_value"] == "two"
    assert journal(str(tmp_path))[-1] == "update a serial=1"
    assert (tmp_path / "a.txt").read_text() == "two"


def test_replace_creates_the_new_one_before_deleting_the_old_one(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()
    stack.config["key"] = "a2"

    result = stack.up()

    assert result.error is None
    assert result.steps[urn("a")] == "replace"
    assert result.steps[urn("b")] == "update"  # its input came from the new a's serial
    assert journal(str(tmp_path))[2:] == [
        "create a2 serial=3",
        "update b serial=2",
        "delete a serial=1",
    ]
    assert stack.state[urn("a")].id == "a2-3"
    assert not (tmp_path / "a.txt").exists()
    a_checks = [(olds, news) for olds, news in cp.CHECKS if news.get("key") == "a2"]
    olds_seen = [sorted(olds) for olds, _news in a_checks]
    assert olds_seen == [["__provider", "dir", "key", "value"], []]  # re-check, no olds


def test_delete_before_replace_when_the_diff_asks_for_it(tmp_path):
    stack = Stack(two_counters(tmp_path), config={"dbr": True})
    stack.up()
    stack.config["key"] = "a2"

    result = stack.up()

    assert result.error is None
    assert result.steps[urn("a")] == "replace"
    assert journal(str(tmp_path))[2:4] == ["delete a serial=1", "create a2 serial=3"]


def test_default_update_returns_empty_outputs_and_that_is_what_is_stored(tmp_path):
    stack = Stack(two_counters(tmp_path, NoUpdateProvider))
    created = stack.up()
    assert created.outputs["a_serial"] == 1
    stack.config["value"] = "two"

    updated = stack.up()

    assert updated.error is None
    assert updated.steps[urn("a")] == "update"
    a = stack.state[urn("a")]
    assert set(a.outputs) == {"__provider"}  # the trap reference/pulumi.md warns about
    assert a.id == "a-1"
    assert updated.outputs.get("a_serial") is None  # output-only key lost
    assert updated.outputs["a_value"] == "two"  # the SDK falls back to the program's input
    # The next diff compares the new inputs with those empty outputs: a needless replace.
    assert stack.preview().steps[urn("a")] == "replace"


def test_changes_unknown_compares_inputs_including_the_provider(tmp_path):
    def program() -> None:
        salt = pulumi.Config().get("salt") or ""
        Counter("a", dir=str(tmp_path), key="a", value="one", provider=DefaultDiffProvider(salt))

    stack = Stack(program)
    stack.up()
    assert stack.up().steps == {urn("a"): "same"}

    stack.config["salt"] = "pepper"  # only the serialized provider changes
    result = stack.up()

    assert result.steps == {urn("a"): "update"}
    assert stack.up().steps == {urn("a"): "same"}


def test_read_and_delete_use_the_provider_in_state(tmp_path):
    def tagged(directory: Path) -> Callable[[], None]:
        def program() -> None:
            cfg = pulumi.Config()
            provider = TaggedProvider(cfg.get("tag") or "old")
            value = cfg.get("value") or "one"
            Counter("a", dir=str(directory), key="a", value=value, provider=provider)

        return program

    (tmp_path / "same").mkdir()
    stack = Stack(tagged(tmp_path / "same"))
    stack.up()
    stack.config["tag"] = "new"
    assert stack.up().steps == {urn("a"): "same"}  # diff ignores __provider: state keeps old
    assert stack.destroy().error is None
    assert journal(str(tmp_path / "same"))[-1] == "deleted by old"

    (tmp_path / "updated").mkdir()
    stack = Stack(tagged(tmp_path / "updated"))
    stack.up()
    stack.config.update(tag="new", value="two")
    assert stack.up().steps == {urn("a"): "update"}  # update stores the new __provider
    assert stack.destroy().error is None
    assert journal(str(tmp_path / "updated"))[-1] == "deleted by new"


def test_preview_runs_check_and_diff_only_and_shows_unknowns_to_dependants(tmp_path):
    stack = Stack(two_counters(tmp_path))

    planned = stack.preview()

    assert planned.error is None
    assert planned.steps == {urn("a"): "create", urn("b"): "create"}
    assert journal(str(tmp_path)) == []
    assert stack.state == {}
    a = planned.by_name("a")
    assert a.inputs["value"] == "one"
    assert a.outputs["value"] == "one"  # the inputs are shown as the state
    assert "serial" not in a.outputs  # output-only: unknown
    assert a.id == ""
    assert planned.outputs["a_serial"] is UNKNOWN
    assert planned.outputs["a_value"] == "one"
    assert planned.outputs["b_value"] is UNKNOWN
    assert planned.by_name("b").inputs["value"] is UNKNOWN
    b_check = [news for _olds, news in cp.CHECKS if news["key"] == "b"]
    # The real host deserializes with unknowns kept: an Unknown object, not the string.
    assert b_check and isinstance(b_check[0]["value"], Unknown)

    applied = stack.up()
    assert applied.outputs["a_serial"] == 1
    assert applied.outputs["b_value"] == "s1"

    stack.config["value"] = "two"
    planned = stack.preview()
    assert planned.changed() == {urn("a"): "update", urn("b"): "update"}
    assert planned.by_name("a").id == "a-1"
    assert planned.outputs["a_serial"] is UNKNOWN  # update recomputes it
    assert planned.outputs["a_value"] == "two"
    assert journal(str(tmp_path)) == ["create a serial=1", "create b serial=2"]
    assert stack.state[urn("a")].outputs["value"] == "one"


def test_preview_of_an_unchanged_stack_shows_known_outputs(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()

    planned = stack.preview()

    assert set(planned.steps.values()) == {"same"}
    assert planned.outputs == {"a_serial": 1.0, "a_value": "one", "b_value": "s1"}


def test_refresh_finds_drift_and_deletion_and_the_next_up_repairs_them(tmp_path):
    def program() -> None:
        Counter("a", dir=str(tmp_path), key="a", value="one")
        Counter("b", dir=str(tmp_path), key="b", value="two")

    stack = Stack(program)
    stack.up()
    (tmp_path / "a.txt").write_text("drifted")
    (tmp_path / "b.txt").unlink()

    refreshed = stack.refresh()

    assert refreshed.error is None
    assert refreshed.steps == {urn("a"): "refresh-changed", urn("b"): "refresh-deleted"}
    assert list(stack.state) == [urn("a")]
    assert stack.state[urn("a")].outputs["value"] == "drifted"
    assert stack.state[urn("a")].inputs["value"] == "drifted"  # ReadResult.inputs
    assert "__provider" in stack.state[urn("a")].inputs
    assert stack.refresh().steps == {urn("a"): "refresh-same"}

    repaired = stack.up()

    assert repaired.steps == {urn("a"): "update", urn("b"): "create"}
    assert (tmp_path / "a.txt").read_text() == "one"
    assert (tmp_path / "b.txt").read_text() == "two"


def test_destroy_deletes_in_reverse_order(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()

    result = stack.destroy()

    assert result.error is None
    assert list(result.steps.items()) == [(urn("b"), "delete"), (urn("a"), "delete")]
    assert journal(str(tmp_path))[-2:] == ["delete b serial=2", "delete a serial=1"]
    assert stack.state == {}
    assert stack.destroy().steps == {}


def test_resources_removed_from_the_program_are_deleted_at_the_end_of_up(tmp_path):
    def program() -> None:
        Counter("a", dir=str(tmp_path), key="a", value="one")
        if pulumi.Config().get_bool("with_b"):
            Counter("b", dir=str(tmp_path), key="b", value="two")
        Counter("c", dir=str(tmp_path), key="c", value="three")

    stack = Stack(program, config={"with_b": True})
    stack.up()
    stack.config["with_b"] = False

    assert stack.preview().steps[urn("b")] == "delete"
    result = stack.up()

    assert result.changed() == {urn("b"): "delete"}
    assert list(stack.state) == [urn("a"), urn("c")]
    assert journal(str(tmp_path))[-1] == "delete b serial=2"


def test_failing_create_keeps_state_consistent_and_a_rerun_converges(tmp_path):
    def program() -> None:
        a = Counter("a", dir=str(tmp_path), key="a", value="one")
        b = Counter("b", dir=str(tmp_path), key="b", value=a.value)
        Counter("c", dir=str(tmp_path), key="c", value=b.value)

    stack = Stack(program)
    (tmp_path / "fail-b").touch()

    failed = stack.up()

    # As the host sends it: the URN, then the provider's traceback ending with the error.
    assert failed.error.startswith(f"{urn('b')}: Traceback (most recent call last):")
    assert failed.error.rstrip().endswith("writing b failed on purpose")
    assert failed.steps == {urn("a"): "create"}
    assert list(stack.state) == [urn("a")]
    assert journal(str(tmp_path)) == ["create a serial=1"]

    (tmp_path / "fail-b").unlink()
    rerun = stack.up()

    assert rerun.error is None
    assert rerun.steps == {urn("a"): "same", urn("b"): "create", urn("c"): "create"}
    assert stack.up().changed() == {}


def test_failing_update_keeps_the_old_state(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()
    stack.config["value"] = "two"
    (tmp_path / "fail-a").touch()

    failed = stack.up()

    assert failed.error.startswith(f"{urn('a')}: Traceback (most recent call last):")
    assert failed.error.rstrip().endswith("writing a failed on purpose")
    assert stack.state[urn("a")].outputs["value"] == "one"
    assert stack.state[urn("a")].inputs["value"] == "one"
    assert urn("b") in stack.state

    (tmp_path / "fail-a").unlink()
    assert stack.up().changed() == {urn("a"): "update"}


def test_failing_replacement_create_keeps_the_old_resource(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()
    stack.config["key"] = "a2"
    (tmp_path / "fail-a2").touch()

    failed = stack.up()

    assert failed.error is not None
    assert stack.state[urn("a")].id == "a-1"
    assert (tmp_path / "a.txt").exists()

    (tmp_path / "fail-a2").unlink()
    rerun = stack.up()
    assert rerun.error is None
    assert rerun.steps[urn("a")] == "replace"
    assert journal(str(tmp_path))[-1] == "delete a serial=1"


def test_failing_delete_keeps_the_resource_until_a_refresh_finds_it_gone(tmp_path):
    stack = Stack(two_counters(tmp_path))
    stack.up()
    (tmp_path / "a.txt").unlink()  # deleted behind Pulumi's back: the toy delete then fails

    failed = stack.destroy()

    assert failed.error is not None
    assert failed.error.startswith(f"{urn('a')}: Traceback (most recent call last):")
    assert "\nFileNotFoundError: " in failed.error
    assert failed.steps == {urn("b"): "delete"}
    assert list(stack.state) == [urn("a")]

    assert stack.refresh().steps == {urn("a"): "refresh-deleted"}
    assert stack.destroy().error is None
    assert stack.state == {}


def test_check_failure_fails_the_run_naming_the_property(tmp_path):
    stack = Stack(two_counters(tmp_path), config={"value": "bad"})

    for result in (stack.preview(), stack.up()):
        assert result.error == (
            f"{COUNTER} resource 'a': property value has a problem: must not be 'bad'"
        )
    assert stack.state == {}
    assert journal(str(tmp_path)) == []


def test_configure_gets_the_stack_config_with_secrets_unwrapped_once_per_provider(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_SECRET_KEYS", raising=False)

    def program() -> None:
        cfg = pulumi.Config()
        Counter("a", dir=str(tmp_path), key="a", value="one")
        Counter("b", dir=str(tmp_path), key="b", value="two")
        pulumi.export("token", cfg.require_secret("token"))
        pulumi.export("clusters", cfg.require_object("clusters"))
        pulumi.export("region", pulumi.Config("aws").require("region"))

    stack = Stack(
        program,
        config={"token": "s3cret", "clusters": [{"name": "c1"}], "aws:region": "eu-west-1"},
        secret_keys={"token"},
    )

    result = stack.up()

    assert result.error is None
    assert cp.CONFIGURE_CALLS == [
        {
            "provider": "CounterProvider",
            "token": "s3cret",
            "clusters": '[{"name": "c1"}]',
            "aws:region": "eu-west-1",
        }
    ]
    assert result.outputs == {
        "token": "s3cret",
        "clusters": [{"name": "c1"}],
        "region": "eu-west-1",
    }
    assert "PULUMI_CONFIG" not in os.environ
    assert "PULUMI_CONFIG_SECRET_KEYS" not in os.environ
    stack.refresh()
    assert len(cp.CONFIGURE_CALLS) == 2  # a fresh provider host per operation


def test_exports_and_warnings_are_captured(tmp_path):
    def program() -> None:
        a = Counter("a", dir=str(tmp_path), key="a", value="one")
        pulumi.log.warn("trust on first use: fingerprint AB:CD", resource=a)
        pulumi.log.warn("plain warning")
        pulumi.log.error("an error message")
        pulumi.log.info("not captured")
        pulumi.export("nested", {"list": [1, "x"], "value": a.value})

    result = Stack(program).up()

    assert result.error is None
    assert sorted(result.warnings) == sorted(
        [
            f"{urn('a')}: trust on first use: fingerprint AB:CD",
            "plain warning",
            "error: an error message",
        ]
    )
    assert result.outputs == {"nested": {"list": [1, "x"], "value": "one"}}


def test_program_errors_are_reported_without_traceback(tmp_path):
    class ConfigError(pulumi.RunError):
        pass

    def failing(exc: Exception) -> Callable[[], None]:
        def program() -> None:
            Counter("a", dir=str(tmp_path), key="a", value="one")
            raise exc

        return program

    clean = Stack(failing(ConfigError("config key 'clusters': expected a list")))
    result = clean.up()
    assert result.error == "config key 'clusters': expected a list"
    assert list(clean.state) == [urn("a")]  # what was registered before the error completed

    raw = Stack(failing(ValueError("boom"))).preview()
    assert raw.error == "Program failed with an unhandled exception: ValueError: boom"


def test_options_the_harness_does_not_model_fail_loudly(tmp_path):
    def program() -> None:
        opts = pulumi.ResourceOptions(protect=True)
        Counter("a", dir=str(tmp_path), key="a", value="one", opts=opts)

    result = Stack(program).up()

    assert result.error is not None
    assert "does not model ResourceOptions protect" in result.error


def f5_program() -> None:
    cfg = pulumi.Config()
    bigip = f5.Provider(
        "bigip",
        address="https://lb.example.test",
        username="admin",
        password=cfg.require_secret("bigip_password"),
    )
    if cfg.get_bool("with_cert") is not False:
        f5.ssl.Certificate(
            "ws1-root-ca",
            name=cfg.get("cert_name") or "ws1-root-ca.crt",
            content=cfg.get("pem") or PEM,
            partition="Common",
            opts=pulumi.ResourceOptions(provider=bigip),
        )


def test_non_dynamic_resources_are_recorded_with_their_exact_inputs(tmp_path):
    cert_type = "f5bigip:ssl/certificate:Certificate"
    stack = Stack(
        f5_program,
        config={"bigip_password": "pw"},
        secret_keys={"bigip_password"},
        replace_on={cert_type: ["name"]},
    )

    created = stack.up()

    assert created.error is None
    provider = created.by_name("bigip")
    assert provider.urn == urn("bigip", "pulumi:providers:f5bigip")
    assert provider.inputs == {
        "address": "https://lb.example.test",
        "username": "admin",
        "password": "pw",
    }
    assert provider.secrets == {"password"}
    (cert,) = created.of_type(":Certificate")
    assert cert.type == cert_type
    assert cert.inputs == {"name": "ws1-root-ca.crt", "content": PEM, "partition": "Common"}
    assert cert.provider == provider.urn
    assert cert.parent == f"urn:pulumi:test::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-test"
    assert cert.secrets == {"content"}
    assert cert.outputs["id"] == cert.id
    assert created.steps == {provider.urn: "create", cert.urn: "create"}
    assert stack.up().changed() == {}

    stack.config["pem"] = PEM.replace("test", "next")
    updated = stack.up()
    assert updated.changed() == {cert.urn: "update"}
    assert stack.state[cert.urn].id == cert.id

    stack.config["cert_name"] = "ws1-root-ca-2.crt"
    assert stack.preview().changed() == {cert.urn: "replace"}
    replaced = stack.up()
    assert replaced.changed() == {cert.urn: "replace"}
    assert stack.state[cert.urn].id != cert.id

    stack.config["with_cert"] = False
    removed = stack.up()
    assert removed.changed() == {cert.urn: "delete"}
    assert list(stack.state) == [provider.urn]


def test_non_dynamic_change_outside_replace_on_is_an_update():
    stack = Stack(f5_program, config={"bigip_password": "pw"})
    first = stack.up()
    stack.config["cert_name"] = "other.crt"

    result = stack.up()

    cert = first.by_name("ws1-root-ca")
    assert result.changed() == {cert.urn: "update"}
    assert result.by_name("ws1-root-ca").id == cert.id


def test_program_by_path_runs_main_in_its_directory(tmp_path):
    stack = Stack(
        PROGRAM_DIR / "__main__.py",
        config={"dir": str(tmp_path), "settings": {"region": "eu"}},
    )
    cwd, path = os.getcwd(), list(sys.path)

    planned = stack.preview()
    applied = stack.up()

    assert planned.error is None
    assert planned.outputs["second_value"] is UNKNOWN
    assert applied.error is None
    assert applied.outputs == {
        "first_serial": 1.0,
        "second_value": "1",
        "cwd": str(PROGRAM_DIR),
        "region": {"region": "eu"},
    }
    assert stack.up().changed() == {}
    assert (os.getcwd(), sys.path) == (cwd, path)


def test_runs_leave_no_sdk_state_behind(tmp_path):
    before = (
        sdk_settings.SETTINGS.monitor,
        sdk_settings.SETTINGS.engine,
        sdk_settings.is_dry_run(),
        sdk_settings.get_project(),
        sdk_settings.get_root_resource(),
        os.environ.get("PULUMI_CONFIG"),
    )
    stack = Stack(two_counters(tmp_path), config={"value": "x"})
    other = Stack(two_counters(tmp_path / "other"), stack="other")
    (tmp_path / "other").mkdir()

    stack.preview()
    stack.up()
    other.up()

    after = (
        sdk_settings.SETTINGS.monitor,
        sdk_settings.SETTINGS.engine,
        sdk_settings.is_dry_run(),
        sdk_settings.get_project(),
        sdk_settings.get_root_resource(),
        os.environ.get("PULUMI_CONFIG"),
    )
    assert after == before
    assert list(other.state)[0].startswith("urn:pulumi:other::")
    assert len(stack.state) == len(other.state) == 2


def test_by_name_lists_the_names_when_missing(tmp_path):
    result = Stack(two_counters(tmp_path)).preview()

    with pytest.raises(AssertionError, match=r"no resource named 'c'.*\['a', 'b'\]"):
        result.by_name("c")
