"""The SDK's real dynamic provider host, in process, spoken to with the engine's requests.

`pulumi/dynamic/__main__.py` is the program the engine starts as the `pulumi-python`
resource plugin. Its module ends with an unconditional `main()` that starts a gRPC server
and blocks; `_load_host_module` executes the module's real code and stops it exactly there
(at `grpc.server`), keeping `DynamicResourceProviderServicer`, `get_provider` and the
per-process provider cache as they are. One host is loaded per operation, as the engine
starts one plugin process per deployment, so the cache and the Configure'd config do not
leak from one `up` to the next.

Requests are built as the engine builds them (pkg/resource/deploy/step.go and
sdk/go/common/resource/plugin/provider_plugin.go, pulumi/pulumi):

* the host answers Configure with acceptSecrets=false, so every property bag it is sent is
  plain (secrets stripped); the stack config reaches it through Configure with namespaced
  keys (pkg/resource/deploy/target.go, GetPackageConfig: "the full configuration" for dynamic
  providers), secret values marked secret;
* unknowns travel as the `rpc.UNKNOWN` string value and the host turns them into
  `pulumi.output.Unknown` objects for Check and Diff;
* the plugin process gets PULUMI_PROJECT and a PULUMI_CONFIG holding only the `pulumi-python`
  namespace (pkg/host/host.go, Provider: `{}` for this program), never the program's config.

An error inside a provider method comes back as the host sends it: `context.abort` with the
Python traceback as the status details; `HostError` carries that text.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import json
import os
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any
from unittest import mock

import grpc
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.proto import provider_pb2

__all__ = ["DiffAnswer", "HostError", "ProviderHost", "exception_text", "inside_host"]

_PROGRAM_ENV = ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS", "PULUMI_PROJECT")


_REQUEST = threading.local()


def inside_host() -> bool:
    """True while this thread is serving a request to a provider host (for counting)."""
    return bool(getattr(_REQUEST, "active", False))


def exception_text(details: str) -> str:
    """What an operator reads in a provider failure: the exception the host's last traceback
    ends with ("<module>.<Type>: <message>"), without the frames above it, after whatever
    preceded the traceback (the harness puts the URN there); `details` as it is when it holds
    no traceback."""
    marker = "Traceback (most recent call last):"
    lines = details.splitlines()
    starts = [i for i, line in enumerate(lines) if marker in line]
    if not starts:
        return details
    prefix = lines[starts[0]].split(marker, 1)[0]
    rest = lines[starts[-1] + 1 :]
    while rest and (rest[0].startswith(" ") or not rest[0]):
        rest = rest[1:]
    return prefix + "\n".join(rest)


class HostError(Exception):
    """A provider method failed; str() is what the host sent (its traceback included)."""


class _Stop(BaseException):
    """Raised at `grpc.server` so that loading the host module does not start a server."""


def _load_host_module() -> ModuleType:
    spec = importlib.util.find_spec("pulumi.dynamic.__main__")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.object(grpc, "server", side_effect=_Stop), suppress(_Stop):
        spec.loader.exec_module(module)
    return module


class _Context:
    """The part of grpc.ServicerContext the host uses: abort ends the call with details."""

    def abort(self, _code: Any, details: str) -> None:
        raise HostError(details)

    def set_code(self, _code: Any) -> None:
        return None

    def set_details(self, _details: str) -> None:
        return None


class DiffAnswer:
    """The host's DiffResponse in plain terms: changes is True, False or None (unknown)."""

    def __init__(self, response: Any) -> None:
        kind = response.changes
        self.changes: bool | None = (
            True
            if kind == provider_pb2.DiffResponse.DIFF_SOME
            else False
            if kind == provider_pb2.DiffResponse.DIFF_NONE
            else None
        )
        self.replaces: list[str] = list(response.replaces)
        self.delete_before_replace = bool(response.deleteBeforeReplace)


class ProviderHost:
    """One `pulumi-python` provider plugin for one operation; every call is a real request."""

    def __init__(
        self, project: str, config: Mapping[str, str], secret_keys: Collection[str]
    ) -> None:
        self._project = project
        self._module = _load_host_module()
        self._servicer = self._module.DynamicResourceProviderServicer()
        self._loop = asyncio.new_event_loop()
        # The plugin process's own SDK context: no engine, no program settings.
        self._context = contextvars.Context()
        self._context.run(
            lambda: _settings.configure(
                _settings.Settings(project=project, stack="stack", organization="organization")
            )
        )
        self.calls = 0
        args = {
            key: rpc.wrap_rpc_secret(value) if key in secret_keys else value
            for key, value in config.items()
        }
        answer = self._send(
            "Configure",
            provider_pb2.ConfigureRequest(
                args=self._struct(args), variables=dict(config), acceptSecrets=True
            ),
        )
        assert not answer.acceptSecrets, "the host must ask for plain values"

    def close(self) -> None:
        self._loop.close()

    # -- the engine's requests ----------------------------------------------------------------

    def check(
        self, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        answer = self._send(
            "Check",
            provider_pb2.CheckRequest(urn=urn, olds=self._struct(olds), news=self._struct(news)),
        )
        failures = [(failure.property, failure.reason) for failure in answer.failures]
        return self._plain(answer.inputs), failures

    def diff(
        self,
        urn: str,
        id_: str,
        old_outputs: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any],
    ) -> DiffAnswer:
        answer = self._send(
            "Diff",
            provider_pb2.DiffRequest(
                id=id_,
                urn=urn,
                olds=self._struct(old_outputs),
                news=self._struct(news),
                old_inputs=self._struct(old_inputs),
            ),
        )
        return DiffAnswer(answer)

    def create(self, urn: str, news: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        answer = self._send(
            "Create", provider_pb2.CreateRequest(urn=urn, properties=self._struct(news))
        )
        return answer.id, self._plain(answer.properties)

    def update(
        self,
        urn: str,
        id_: str,
        old_outputs: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any],
    ) -> dict[str, Any]:
        answer = self._send(
            "Update",
            provider_pb2.UpdateRequest(
                id=id_,
                urn=urn,
                olds=self._struct(old_outputs),
                news=self._struct(news),
                old_inputs=self._struct(old_inputs),
            ),
        )
        return self._plain(answer.properties)

    def read(
        self, urn: str, id_: str, outputs: Mapping[str, Any], inputs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        answer = self._send(
            "Read",
            provider_pb2.ReadRequest(
                id=id_, urn=urn, properties=self._struct(outputs), inputs=self._struct(inputs)
            ),
        )
        inputs_read = self._plain(answer.inputs) if answer.HasField("inputs") else None
        return answer.id, self._plain(answer.properties), inputs_read

    def delete(
        self, urn: str, id_: str, outputs: Mapping[str, Any], inputs: Mapping[str, Any]
    ) -> None:
        self._send(
            "Delete",
            provider_pb2.DeleteRequest(
                id=id_, urn=urn, properties=self._struct(outputs), old_inputs=self._struct(inputs)
            ),
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, method: str, request: Any) -> Any:
        self.calls += 1
        _REQUEST.active = True
        try:
            with _plugin_environment(self._project):
                servicer_method = getattr(self._servicer, method)
                return self._context.copy().run(servicer_method, request, _Context())
        finally:
            _REQUEST.active = False

    def _struct(self, props: Mapping[str, Any]) -> struct_pb2.Struct:
        struct: struct_pb2.Struct = self._loop.run_until_complete(
            rpc.serialize_properties(dict(props), {})
        )
        return struct

    @staticmethod
    def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
        # What the engine stores: plain values, unknowns as the wire's UNKNOWN string.
        result: dict[str, Any] = json.loads(
            json.dumps(rpc.deserialize_properties(struct, keep_unknowns=True), default=_unknown)
        )
        return result


def _unknown(value: Any) -> str:
    from pulumi.output import Unknown

    if isinstance(value, Unknown):
        return rpc.UNKNOWN
    raise TypeError(f"{type(value).__name__} is not a plain property value")


@contextmanager
def _plugin_environment(project: str) -> Iterator[None]:
    """The plugin process's environment: the project name, and none of the program's config."""
    saved = {key: os.environ.get(key) for key in _PROGRAM_ENV}
    os.environ.pop("PULUMI_CONFIG_SECRET_KEYS", None)
    os.environ["PULUMI_PROJECT"] = project
    os.environ["PULUMI_CONFIG"] = "{}"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
