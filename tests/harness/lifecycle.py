"""Implementation of the lifecycle harness; see the package docstring for what it models."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import os
import runpy
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
from google.protobuf import empty_pb2
from pulumi._utils import ContextProperty
from pulumi.output import Unknown as _SdkUnknown
from pulumi.runtime import rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.config import get_config_env, get_config_secret_keys_env, set_all_config
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks, set_mocks
from pulumi.runtime.proto import engine_pb2
from pulumi.runtime.stack import run_in_stack

from tests.harness.host import HostError, ProviderHost

__all__ = ["UNKNOWN", "ResourceState", "RunResult", "Stack"]

PROVIDER_KEY = "__provider"
_DYNAMIC_PREFIX = "pulumi-python:dynamic"
_STACK_TYPE = "pulumi:pulumi:Stack"
_CONFIG_ENV = ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")
_UNHANDLED = "Program failed with an unhandled exception: "

# One operation at a time in the whole process: runs touch process-wide state (os.environ,
# the working directory, sys.path, SDK module defaults).
_RUN_LOCK = threading.RLock()


class _Unknown:
    """The marker for a value that is not known (preview). Compare with ``is UNKNOWN``."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __copy__(self) -> _Unknown:
        return self

    def __deepcopy__(self, memo: Any) -> _Unknown:
        return self


UNKNOWN = _Unknown()


@dataclass
class ResourceState:
    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    custom: bool
    parent: str | None
    provider: str | None
    secrets: set[str] = field(default_factory=set)
    """Top-level input/output keys the engine would store as secrets (encrypted)."""

    @property
    def dynamic(self) -> bool:
        return self.type.startswith(_DYNAMIC_PREFIX)


_SAME_STEPS = ("same", "refresh-same")


@dataclass
class RunResult:
    steps: dict[str, str]
    resources: dict[str, ResourceState]
    outputs: dict[str, Any]
    warnings: list[str]
    error: str | None

    def by_name(self, name: str) -> ResourceState:
        found = [r for r in self.resources.values() if r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.resources.values())
            what = "no resource" if not found else f"{len(found)} resources"
            raise AssertionError(f"{what} named {name!r} in this run; names: {names}")
        return found[0]

    def of_type(self, type_suffix: str) -> list[ResourceState]:
        return [r for r in self.resources.values() if r.type.endswith(type_suffix)]

    def changed(self) -> dict[str, str]:
        """Steps other than "same" (and "refresh-same")."""
        return {urn: step for urn, step in self.steps.items() if step not in _SAME_STEPS}


class _StepFailed(Exception):
    """A step failed; the message is what the operator sees."""


class _Aborted(_StepFailed):
    """A registration arrived after an earlier step failed; the engine would not run it."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pulumi.RunError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _plain(value: Any) -> Any:
    """Wire value -> what a provider sees: secrets unwrapped, SDK unknowns as rpc.UNKNOWN."""
    if rpc.is_rpc_secret(value):
        return _plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, _SdkUnknown):
        return rpc.UNKNOWN
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _shown(value: Any) -> Any:
    """Plain value -> what a test sees: unknowns as the UNKNOWN marker."""
    if rpc.is_rpc_secret(value):
        return _shown(rpc.unwrap_rpc_secret(value))
    if isinstance(value, _SdkUnknown) or (isinstance(value, str) and value == rpc.UNKNOWN):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _settings_defaults() -> list[tuple[ContextProperty, Any]]:
    props = [v for v in vars(_settings.Settings).values() if isinstance(v, ContextProperty)]
    return [(p, p._ContextProperty__default) for p in props]  # type: ignore[attr-defined]


class _Run:
    """Everything that belongs to one operation (up, preview, refresh or destroy)."""

    def __init__(self, stack: Stack, op: str) -> None:
        self.stack = stack
        self.op = op
        self.dry_run = op == "preview"
        self.old_state: dict[str, ResourceState] = dict(stack.state)
        self.old_index = {urn: i for i, urn in enumerate(self.old_state)}
        self.steps: dict[str, str] = {}
        self.resources: dict[str, ResourceState] = {}
        self.registered: list[str] = []
        self.registered_set: set[str] = set()
        self.aliased: dict[str, str] = {}  # old URN -> the URN that claimed it through an alias
        self.replaced: list[ResourceState] = []
        self.outputs: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.failure: str | None = None
        self._host: ProviderHost | None = None
        self.lock = threading.RLock()
        self.stack_urn = stack._urn("", _STACK_TYPE, f"{stack.project}-{stack.stack_name}")

    # -- provider host ------------------------------------------------------------------------

    @property
    def host(self) -> ProviderHost:
        """The real `pulumi-python` provider host of this operation, started on first use."""
        if self._host is None:
            stack = self.stack
            self._host = ProviderHost(
                stack.project,
                stack._raw_config(),
                {stack._full_key(key) for key in stack.secret_keys},
            )
        return self._host

    def close(self) -> None:
        if self._host is not None:
            self.stack.host_calls += self._host.calls
            self._host.close()

    def call(self, urn: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Send one request to the host; a failure is the step's error, as the CLI shows it."""
        try:
            return fn(*args)
        except HostError as exc:
            raise _StepFailed(f"{urn}: {exc}") from exc

    def delete(self, res: ResourceState) -> None:
        if res.dynamic:
            self.call(
                res.urn, self.host.delete, res.urn, res.id, copy.deepcopy(res.outputs), res.inputs
            )

    # -- registration (runs on the monitor's worker thread) ----------------------------------

    def fail(self, message: str) -> _StepFailed:
        if self.failure is None:
            self.failure = message
        return _StepFailed(message)

    def register(self, args: MockResourceArgs, req: Any) -> tuple[str, dict[str, Any]]:
        with self.lock:
            if self.failure is not None:
                raise _Aborted(f"{req.type} {req.name!r} not processed: an earlier step failed")
            urn = self.stack._urn(req.parent, req.type, req.name)
            try:
                return self._register(urn, args, req)
            except _StepFailed as exc:
                raise self.fail(str(exc)) from exc

    def _register(self, urn: str, args: MockResourceArgs, req: Any) -> tuple[str, dict[str, Any]]:
        if urn in self.registered_set:
            raise _StepFailed(f"Duplicate resource URN '{urn}'; try giving it a unique name")
        unsupported = _unsupported_options(req)
        if not req.type.startswith("pulumi-python:dynamic"):
            # Modelled for recorded resources: see _recorded.
            unsupported = [option for option in unsupported if option != "replace_on_changes"]
        if unsupported:
            raise _StepFailed(
                f"{urn}: the lifecycle harness does not model ResourceOptions "
                f"{', '.join(unsupported)}"
            )
        self.registered.append(urn)
        self.registered_set.add(urn)
        secret_inputs = {k for k, v in args.inputs.items() if rpc.is_rpc_secret(v)}
        inputs = _plain(args.inputs)
        new = ResourceState(
            urn=urn,
            type=req.type,
            name=req.name,
            id="",
            inputs=inputs,
            outputs={},
            custom=bool(req.custom),
            parent=req.parent or None,
            provider=req.provider.rsplit("::", 1)[0] if req.provider else None,
        )
        old = self.old_state.get(urn) or self._aliased_old(urn, req)
        if new.dynamic:
            step, new, shown = self._dynamic(new, old, secret_inputs, req)
        else:
            step, new, shown = self._recorded(new, old, secret_inputs, req)
        self.steps[urn] = step
        self.resources[urn] = new
        if not self.dry_run:
            self.stack.state[urn] = new
        # What the program sees: secret keys wrapped, unknowns (rpc.UNKNOWN) left to the SDK.
        return shown[0], {
            k: rpc.wrap_rpc_secret(v) if k in new.secrets else v for k, v in shown[1].items()
        }

    def _aliased_old(self, urn: str, req: Any) -> ResourceState | None:
        """The old resource an alias names, as the engine resolves alias specs: a spec's empty
        fields default to the resource's own name, type and parent (resource.proto, Alias)."""
        if urn in self.old_state:
            return None
        candidates = list(req.aliasURNs)
        for alias in req.aliases:
            if alias.urn:
                candidates.append(alias.urn)
                continue
            spec = alias.spec
            parent = "" if spec.noParent else (spec.parentUrn or req.parent)
            candidates.append(self.stack._urn(parent, spec.type or req.type, spec.name or req.name))
        for candidate in candidates:
            if candidate in self.old_state and candidate not in self.registered_set:
                if candidate in self.aliased:
                    raise _StepFailed(f"{urn}: alias {candidate} is claimed by two resources")
                self.aliased[candidate] = urn
                return self.old_state[candidate]
        return None

    def _secrets(
        self,
        secret_inputs: set[str],
        req: Any,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
    ) -> set[str]:
        marked = secret_inputs | set(req.additionalSecretOutputs)
        return {k for k in (*inputs, *outputs) if k in marked}

    def _dynamic(
        self, new: ResourceState, old: ResourceState | None, secret_inputs: set[str], req: Any
    ) -> tuple[str, ResourceState, tuple[str, dict[str, Any]]]:
        """One dynamic resource's step, every provider call a request to the real host."""
        urn = new.urn
        host = self.host
        news = copy.deepcopy(new.inputs)
        olds_in = copy.deepcopy(old.inputs) if old else {}

        def check(olds: dict[str, Any]) -> dict[str, Any]:
            checked, failures = self.call(urn, host.check, urn, olds, news)
            if failures:
                raise _StepFailed("\n".join(_check_failure(new, *f) for f in failures))
            return checked  # type: ignore[no-any-return]

        checked = check(olds_in)
        delete_first = False
        new.inputs = checked

        if old is None:
            step = "create"
        else:
            diff = self.call(urn, host.diff, urn, old.id, old.outputs, checked, old.inputs)
            changes = diff.changes
            if changes is None:
                # DIFF_UNKNOWN: the engine compares old and new inputs itself (step_generator.go,
                # diffResource), `__provider` included.
                changes = old.inputs != checked
            if not changes:
                step = "same"
            elif diff.replaces:
                step = "replace"
            else:
                step = "update"
            delete_first = diff.delete_before_replace or bool(req.deleteBeforeReplace)
            if step == "replace":
                # The engine checks again without olds: nothing is carried over from the old one.
                checked = check({})
                new.inputs = checked

        if self.dry_run:
            if step == "same":
                assert old is not None
                new.id, new.outputs = old.id, old.outputs
            else:
                new.id = old.id if (old is not None and step == "update") else ""
                new.outputs = copy.deepcopy(checked)
            new.secrets = self._secrets(secret_inputs, req, new.inputs, new.outputs)
            planned = replace(new, inputs=_shown(new.inputs), outputs=_shown(new.outputs))
            return step, planned, (new.id, copy.deepcopy(new.outputs))

        if step == "same":
            assert old is not None
            new.id, new.outputs = old.id, copy.deepcopy(old.outputs)
        elif step == "update":
            assert old is not None
            new.id = old.id
            new.outputs = self.call(urn, host.update, urn, old.id, old.outputs, checked, old.inputs)
        else:
            if step == "replace":
                assert old is not None
                if delete_first:
                    self.delete(old)
                    self.stack.state.pop(old.urn, None)
                else:
                    self.replaced.append(old)
            try:
                new.id, new.outputs = self.call(urn, host.create, urn, checked)
                if not new.id:
                    # The engine refuses an empty id from Create (provider_plugin.go).
                    raise _StepFailed(f"{urn}: provider returned an empty ID from Create")
            except _StepFailed:
                if step == "replace" and not delete_first:
                    assert old is not None
                    self.replaced.remove(old)  # the old one stays; nothing to delete later
                raise
        new.secrets = self._secrets(secret_inputs, req, new.inputs, new.outputs)
        return step, new, (new.id, copy.deepcopy(new.outputs))

    def _recorded(
        self, new: ResourceState, old: ResourceState | None, secret_inputs: set[str], req: Any
    ) -> tuple[str, ResourceState, tuple[str, dict[str, Any]]]:
        """Non-dynamic custom resources, providers and components: record, execute nothing."""
        if old is None:
            step = "create"
        elif old.inputs == new.inputs:
            step = "same"
        else:
            keys = set(old.inputs) | set(new.inputs)
            missing = object()
            changed = {k for k in keys if old.inputs.get(k, missing) != new.inputs.get(k, missing)}
            replace_keys = self.stack.replace_on.get(new.type, set()) | set(req.replaceOnChanges)
            step = "replace" if new.custom and changed & replace_keys else "update"

        if not new.custom:
            new.id = ""
            new.outputs = dict(old.outputs) if old is not None else {}
        elif step == "same":
            assert old is not None
            new.id, new.outputs = old.id, copy.deepcopy(old.outputs)
        elif self.dry_run:
            new.id = old.id if (old is not None and step == "update") else ""
            new.outputs = copy.deepcopy(new.inputs)
        else:
            if step == "update":
                assert old is not None
                new.id = old.id
            else:
                new.id = self.stack._new_id(new.name)
                if step == "replace":
                    assert old is not None
                    self.replaced.append(old)
            new.outputs = {**copy.deepcopy(new.inputs), "id": new.id}
        new.secrets = self._secrets(secret_inputs, req, new.inputs, new.outputs)
        shown = (new.id, copy.deepcopy(new.outputs))
        if self.dry_run:
            new = replace(new, inputs=_shown(new.inputs), outputs=_shown(new.outputs))
        return step, new, shown

    def register_outputs(self, urn: str, outputs: dict[str, Any]) -> None:
        with self.lock:
            shown = _shown(outputs)
            if urn == self.stack_urn:
                self.outputs = shown
                return
            res = self.resources.get(urn)
            if res is not None:  # in up, the same object as in the stack's state
                res.outputs = shown

    def log(self, request: Any) -> None:
        if request.severity not in (engine_pb2.WARNING, engine_pb2.ERROR):
            return
        text = f"{request.urn}: {request.message}" if request.urn else request.message
        if request.severity == engine_pb2.ERROR:
            text = f"error: {text}"
        self.warnings.append(text)


def _check_failure(res: ResourceState, property_: str, reason: str) -> str:
    if property_:
        return f"{res.type} resource '{res.name}': property {property_} has a problem: {reason}"
    return f"{res.type} resource '{res.name}' has a problem: {reason}"


def _unsupported_options(req: Any) -> list[str]:
    found = []
    if req.HasField("protect") and req.protect:
        found.append("protect")
    if req.ignoreChanges:
        found.append("ignore_changes")
    if req.replaceOnChanges:
        found.append("replace_on_changes")
    if req.HasField("retainOnDelete") and req.retainOnDelete:
        found.append("retain_on_delete")
    if req.deletedWith:
        found.append("deleted_with")
    if req.replace_with:
        found.append("replace_with")
    if req.HasField("replacement_trigger"):
        found.append("replacement_trigger")
    if req.importId:
        found.append("import_")
    if req.transforms:
        found.append("transforms")
    if req.HasField("hooks") and req.hooks.ListFields():
        found.append("hooks")
    return found


class _Mocks(Mocks):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.monitor: _Monitor | None = None

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        assert self.monitor is not None
        req = getattr(self.monitor.tls, "request", None)
        if req is None:
            raise self.run.fail(
                f"{args.typ} {args.name!r}: reading an existing resource (get, StackReference) "
                "is not modelled by the lifecycle harness"
            )
        return self.run.register(args, req)

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise self.run.fail(f"invoke {args.token} is not modelled by the lifecycle harness")


class _Monitor(MockMonitor):
    """MockMonitor that hands the full request to the mocks and records outputs."""

    def __init__(self, mocks: _Mocks, run: _Run) -> None:
        super().__init__(mocks)
        mocks.monitor = self
        self.run = run
        self.tls = threading.local()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return self.run.stack._urn(parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self.tls.request = request
        try:
            return super().RegisterResource(request)  # type: ignore[no-untyped-call]
        finally:
            self.tls.request = None

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        self.run.register_outputs(request.urn, outputs)
        return empty_pb2.Empty()


class _Engine:
    def __init__(self, run: _Run) -> None:
        self.run = run

    def Log(self, request: Any) -> None:  # noqa: N802
        self.run.log(request)


class Stack:
    """One stack of a program, with its state kept between operations."""

    def __init__(
        self,
        program: str | os.PathLike[str] | Callable[[], None],
        *,
        project: str = "ws1-access-lb-trust",
        stack: str = "test",
        config: Mapping[str, Any] | None = None,
        secret_keys: Collection[str] = (),
        replace_on: Mapping[str, Collection[str]] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.program = program
        self.project = project
        self.stack_name = stack
        self.config: dict[str, Any] = dict(config or {})
        self.secret_keys: set[str] = set(secret_keys)
        self.replace_on: dict[str, set[str]] = {k: set(v) for k, v in (replace_on or {}).items()}
        if cwd is None and not callable(program):
            cwd = os.path.dirname(os.path.abspath(os.fspath(program)))
        self.cwd = cwd
        self.state: dict[str, ResourceState] = {}
        self._pending_deletes: list[ResourceState] = []
        self._last_outputs: dict[str, Any] = {}
        self._ids = 0
        self.host_calls = 0  # requests sent to the real provider host, over every operation

    # -- public operations --------------------------------------------------------------------

    def up(self) -> RunResult:
        return self._operate("up")

    def preview(self) -> RunResult:
        return self._operate("preview")

    def refresh(self) -> RunResult:
        """Read every dynamic resource; non-dynamic resources are left as they are."""
        return self._operate("refresh")

    def destroy(self) -> RunResult:
        return self._operate("destroy")

    # -- helpers ------------------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        return key if ":" in key else f"{self.project}:{key}"

    def _raw_config(self) -> dict[str, str]:
        return {
            self._full_key(k): v if isinstance(v, str) else json.dumps(v)
            for k, v in self.config.items()
        }

    def _urn(self, parent: str, type_: str, name: str) -> str:
        if parent:
            qualified = parent.split("::")[2]
            if qualified != _STACK_TYPE:
                type_ = f"{qualified}${type_}"
        return f"urn:pulumi:{self.stack_name}::{self.project}::{type_}::{name}"

    def _new_id(self, name: str) -> str:
        self._ids += 1
        return f"{name}-{self._ids}"

    def _operate(self, op: str) -> RunResult:
        with _RUN_LOCK:
            defaults = _settings_defaults()
            env = {k: os.environ.get(k) for k in _CONFIG_ENV}
            box: dict[str, Any] = {}

            def target() -> None:
                try:
                    box["result"] = contextvars.Context().run(self._in_thread, op)
                except BaseException as exc:  # noqa: BLE001 re-raised in the caller
                    box["error"] = exc

            try:
                thread = threading.Thread(target=target, name=f"harness-{op}", daemon=True)
                thread.start()
                thread.join()
            finally:
                for prop, default in defaults:
                    prop._ContextProperty__default = default  # type: ignore[attr-defined]
                for k, v in env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            if "error" in box:
                raise box["error"]  # a bug in the harness itself
            result: RunResult = box["result"]
            return result

    def _in_thread(self, op: str) -> RunResult:
        run = _Run(self, op)
        try:
            return self._operate_with(run, op)
        finally:
            run.close()

    def _operate_with(self, run: _Run, op: str) -> RunResult:
        if op in ("up", "destroy"):
            self._delete_pending(run)
        if run.failure is None:
            if op in ("up", "preview"):
                self._run_program(run)
            elif op == "refresh":
                self._refresh(run)
            else:
                self._destroy(run)

        if op == "up":
            if run.failure is None:
                self._delete_removed(run)
            else:
                self._pending_deletes.extend(run.replaced)
            for old_urn, new_urn in run.aliased.items():
                if new_urn in self.state:
                    self.state.pop(old_urn, None)
            self._reorder(run)
            if run.failure is None:
                self._last_outputs = copy.deepcopy(run.outputs)
            resources = {u: copy.deepcopy(self.state[u]) for u in run.registered if u in self.state}
        elif op == "preview":
            if run.failure is None:
                for urn in self.state:
                    if urn not in run.resources and urn not in run.aliased:
                        run.steps[urn] = "delete"
            resources = run.resources
        elif op == "refresh":
            run.outputs = copy.deepcopy(self._last_outputs)
            resources = copy.deepcopy(self.state)
        else:
            if run.failure is None:
                self._last_outputs = {}
            resources = {}
        return RunResult(
            steps=run.steps,
            resources=resources,
            outputs=run.outputs,
            warnings=run.warnings,
            error=run.failure,
        )

    def _run_program(self, run: _Run) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(lambda _loop, _context: None)
        worker_loops: list[asyncio.AbstractEventLoop] = []

        def init_worker() -> None:
            worker_loop = asyncio.new_event_loop()
            asyncio.set_event_loop(worker_loop)
            worker_loops.append(worker_loop)

        # One worker: registrations are handled one at a time, in arrival order.
        executor = ThreadPoolExecutor(
            1, thread_name_prefix="harness-monitor", initializer=init_worker
        )
        loop.set_default_executor(executor)
        saved_cwd = os.getcwd()
        added_path: str | None = None
        os.environ["PULUMI_CONFIG"] = json.dumps(self._raw_config())
        os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(
            sorted(self._full_key(k) for k in self.secret_keys)
        )
        try:
            if self.cwd is not None:
                os.chdir(self.cwd)
            if callable(self.program):
                program: Callable[[], Any] = self.program
            else:
                path = os.path.abspath(os.fspath(self.program))
                project_dir = os.path.dirname(path)
                if project_dir not in sys.path:
                    sys.path.insert(0, project_dir)
                    added_path = project_dir

                def program() -> Any:
                    return runpy.run_path(path, run_name="__main__")

            _settings.reset_options(
                project=self.project,
                stack=self.stack_name,
                root_directory=self.cwd,
                preview=run.dry_run,
                organization="organization",
            )
            mocks = _Mocks(run)
            # set_mocks creates a root stack when there is none; run_in_stack creates it instead.
            _settings.ROOT.set(mocks)  # type: ignore[arg-type]
            set_mocks(
                mocks,
                project=self.project,
                stack=self.stack_name,
                preview=run.dry_run,
                monitor=_Monitor(mocks, run),
                organization="organization",
            )
            _settings.ROOT.set(None)
            _settings.SETTINGS.engine = _Engine(run)
            set_all_config(get_config_env(), get_config_secret_keys_env())
            try:
                loop.run_until_complete(run_in_stack(program))
            except BaseException as exc:  # noqa: BLE001 reported in RunResult.error
                if run.failure is None:
                    if isinstance(exc, (_StepFailed, pulumi.RunError)):
                        run.failure = str(exc)
                    else:
                        run.failure = _UNHANDLED + _describe(exc)
        finally:
            self._close_loop(loop)
            for worker_loop in worker_loops:
                worker_loop.close()
            os.chdir(saved_cwd)
            if added_path is not None and added_path in sys.path:
                sys.path.remove(added_path)

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        # Let fire-and-forget tasks (log messages tied to a resource) finish, then cancel the rest.
        for _ in range(50):
            if all(task.done() for task in asyncio.all_tasks(loop)):
                break
            loop.run_until_complete(asyncio.sleep(0))
        for task in asyncio.all_tasks(loop):
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)

    def _delete_pending(self, run: _Run) -> None:
        while self._pending_deletes:
            res = self._pending_deletes[-1]
            try:
                run.delete(res)
            except _StepFailed as exc:
                run.fail(str(exc))
                return
            self._pending_deletes.pop()

    def _delete_removed(self, run: _Run) -> None:
        """After a successful up: delete what the program no longer declares, and the old
        resources of create-before-delete replacements, in reverse order."""
        removed = [
            r
            for u, r in run.old_state.items()
            if u not in run.registered_set and u not in run.aliased
        ]
        doomed = sorted(removed + run.replaced, key=lambda r: run.old_index[r.urn], reverse=True)

        def is_replaced(res: ResourceState) -> bool:
            return any(res is r for r in run.replaced)

        for i, res in enumerate(doomed):
            try:
                run.delete(res)
            except _StepFailed as exc:
                run.fail(str(exc))
                self._pending_deletes.extend(r for r in doomed[i:] if is_replaced(r))
                return
            if not is_replaced(res):
                self.state.pop(res.urn, None)
                run.steps[res.urn] = "delete"
        run.replaced = []

    def _reorder(self, run: _Run) -> None:
        ordered = {u: self.state[u] for u in run.registered if u in self.state}
        ordered.update((u, r) for u, r in self.state.items() if u not in ordered)
        self.state.clear()
        self.state.update(ordered)

    def _refresh(self, run: _Run) -> None:
        """Read, then decide as the engine does (pkg/resource/deploy/step.go, RefreshStep):
        Diff with the refreshed outputs as olds and the stored inputs as news; "changed" when
        that diff reports changes (DIFF_UNKNOWN: the refreshed inputs differ from the stored)."""
        for urn, res in list(self.state.items()):
            if not res.dynamic:
                continue
            try:
                new_id, outs, read_inputs = run.call(
                    urn, run.host.read, urn, res.id, res.outputs, res.inputs
                )
                if not new_id:
                    del self.state[urn]
                    run.steps[urn] = "refresh-deleted"
                    continue
                inputs = read_inputs if read_inputs is not None else res.inputs
                diff = run.call(urn, run.host.diff, urn, new_id, outs, res.inputs, inputs)
            except _StepFailed as exc:
                run.fail(str(exc))
                return
            changed = diff.changes if diff.changes is not None else inputs != res.inputs
            self.state[urn] = replace(res, id=new_id, outputs=outs, inputs=inputs)
            run.steps[urn] = "refresh-changed" if changed else "refresh-same"

    def _destroy(self, run: _Run) -> None:
        for urn in reversed(list(self.state)):
            try:
                run.delete(self.state[urn])
            except _StepFailed as exc:
                run.fail(str(exc))
                return
            del self.state[urn]
            run.steps[urn] = "delete"
