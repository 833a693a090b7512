"""In-process lifecycle harness for Pulumi Python programs (test support, never a product path).

The Pulumi CLI and its plugins cannot be installed here, so this harness stands in for the
engine: it runs a program (a ``__main__.py`` path or a callable) under
``pulumi.runtime.set_mocks`` and executes DYNAMIC resources for real, the way the engine and the
dynamic provider host (``pulumi/dynamic/__main__.py``, SDK 3.272) would. State is kept on the
:class:`Stack` between runs, so a test can do up -> change -> preview -> up -> drift -> refresh ->
up -> destroy. Follows ``/work/shared/reference/pulumi.md``.

What it models
==============

Running the program
  * Each operation runs in a fresh thread with an empty ``contextvars`` context, a fresh event
    loop and fresh SDK settings (``reset_options`` + ``set_mocks``; the root ``Stack`` is created
    by ``pulumi.runtime.run_in_stack`` as the real language host does, and ``run_in_stack`` waits
    for every outstanding RPC and output, so every resource is registered and every export
    resolved). Module-level defaults that the SDK's ``ContextProperty`` mutates on first use are
    restored afterwards, and so are ``os.environ``, the working directory and ``sys.path``.
  * Config: ``PULUMI_CONFIG`` ("project:key" -> string; non-strings JSON-encoded) and
    ``PULUMI_CONFIG_SECRET_KEYS`` are set for the run and the SDK config cache is reset from them
    (``set_all_config``), as ``pulumi-language-python-exec`` does.
  * Registration order respects dependencies because the SDK awaits a resource's inputs before
    it sends ``RegisterResource``. The harness handles registrations one at a time, in arrival
    order (the engine runs independent steps in parallel; the harness does not).
  * URNs follow the engine's rule (no ``pulumi:pulumi:Stack$`` prefix for top-level resources;
    children get the parent's full qualified type), not the simplified mock rule.
  * ``pulumi.export`` values are captured into ``RunResult.outputs``; outputs a component
    registers with ``register_outputs`` become its recorded outputs. Unknowns appear as
    :data:`UNKNOWN`. Secret values are shown unwrapped.
  * ``pulumi.log.warn`` / ``pulumi.log.error`` are captured into ``RunResult.warnings`` as
    ``"<urn>: <message>"`` (or just the message without a resource); errors get an ``"error: "``
    prefix. Logging an error does not fail the run.
  * A failing run never raises: ``RunResult.error`` holds the operator-visible message without a
    traceback. ``pulumi.RunError`` (and subclasses) yield just the message; any other program
    exception yields ``"Program failed with an unhandled exception: <Type>: <message>"``; a failed
    provider call yields ``"<urn>: <message>"`` (``<Type>: <message>`` unless it is a RunError).

Dynamic resources (type ``pulumi-python:dynamic...``)
  * Every provider call is a request to the SDK's REAL provider host
    (``DynamicResourceProviderServicer`` of ``pulumi/dynamic/__main__.py``, loaded in process
    by ``tests/harness/host.py``, one fresh host per operation like the engine's one plugin
    process per deployment): Configure (the stack config with namespaced keys, secrets marked;
    the host answers ``acceptSecrets=false``), Check, Diff, Create, Update, Read, Delete, each a
    protobuf request built as the engine builds it. The host deserializes ``__provider`` with
    dill, caches it and calls ``configure()`` itself; it runs with ``PULUMI_PROJECT`` set and
    ``PULUMI_CONFIG={}`` (the engine passes only the ``pulumi-python`` namespace), never the
    program's config environment: a provider must use configure().
  * The host receives plain values (secrets stripped); unknown values reach check and diff as
    ``pulumi.output.Unknown`` objects, as under the engine. Everything a provider returns goes
    through the host's own serialization (so ints come back as floats, ``None`` values vanish,
    and an unserializable value fails the step).
  * A failing provider call comes back as the host sends it: its Python traceback, ending with
    the exception; ``RunResult.error`` is ``"<urn>: <that text>"``.
  * ``up``: Check(olds=old inputs, news) then, for a new resource, Create; otherwise
    Diff(id, olds=old outputs, news=checked, old_inputs): DIFF_NONE -> same (old outputs kept,
    checked inputs stored); DIFF_UNKNOWN -> the harness compares old and new inputs itself,
    ``__provider`` included; DIFF_SOME without ``replaces`` -> Update (the default ``update``
    returns empty outs: stored outputs are then just ``__provider``); with ``replaces`` ->
    replace, create-before-delete (the old one is deleted at the end of a successful run) or
    delete-before-create when the diff or ``ResourceOptions`` ask for it. A replacement runs
    Check again with empty olds, as the engine does. Check failures fail the run with
    ``"<type> resource '<name>': property <p> has a problem: <reason>"``.
  * ``preview``: Check + Diff only. Created/updated/replaced resources show their checked
    inputs as their state; keys that are not inputs are unknown to dependants (as in a real
    preview) and the id of a created/replaced resource is unknown ("" in
    ``ResourceState.id``).
  * ``refresh``: Read(id, outputs, inputs) for each dynamic resource in state; an empty id
    drops it ("refresh-deleted"); ``ReadResult.inputs``, if given, replace the stored inputs.
    Then, as the engine's RefreshStep does, Diff with the REFRESHED outputs as olds and the
    STORED inputs as news: "refresh-changed" when it reports changes (DIFF_UNKNOWN: when the
    refreshed inputs differ from the stored ones), else "refresh-same". The program is not
    run; stack outputs are those of the last successful up.
  * ``destroy``: deletes everything in reverse registration order (dynamic: Delete(id,
    outputs)).
  * Aliases (``ResourceOptions(aliases=[pulumi.Alias(name=...)])`` or alias URNs): a new URN
    whose alias names a resource in state takes that resource over (same/update/replace, never
    create + delete); a spec's empty fields default to the resource's own name, type and
    parent, as the engine resolves them.
  * Failure: state keeps every step that completed; the failed resource keeps its old state;
    after the first failure no further steps run and no deletions happen (like the engine).
    Old resources of completed create-before-delete replacements stay "pending delete" (kept
    internally, not in ``state``) and are deleted at the start of the next ``up`` or
    ``destroy``.
  * ``Stack.host_calls`` counts the requests sent to the real host over all operations.

Other resources
  * Custom resources of real packages (e.g. ``pulumi_f5bigip``) and their explicit providers
    (``pulumi:providers:*``) are recorded with their exact inputs; nothing is executed. Step:
    create / same / update (inputs differ) / replace (a changed top-level key is listed in
    ``replace_on[type]`` or in the resource's ``replace_on_changes`` option). Outputs =
    inputs + ``id`` (a fresh ``"<name>-<n>"`` on create/replace).
    ``ResourceState.provider`` is the explicit provider's URN.
  * Component resources are recorded (``custom=False``, id ``""``); nothing is executed.
  * ``ResourceState.secrets`` lists the top-level keys the engine would keep as secrets (secret
    inputs, ``additional_secret_outputs``, and outputs named like a secret input).

What it does NOT model
======================
  * Real provider plugins for non-dynamic resources: no Check/Diff/Read of ``pulumi_f5bigip``,
    no output-only properties, no default providers, no provider replacement cascading to the
    resources that use it, no refresh of non-dynamic resources (they are left as they are and
    get no refresh step).
  * Parallelism, timeouts, cancellation; a delete-before-replace does not replace dependants,
    and ``delete_before_replace`` on a non-dynamic resource is not honoured (recorded
    replacements are always create-before-delete).
  * Secrets encryption (state values are plain; ``secrets`` says what would be encrypted).
  * Import, ``get``/``StackReference`` (ReadResource), invokes, ``protect``, ``ignore_changes``,
    ``replace_on_changes`` on dynamic resources, ``retain_on_delete``, ``deleted_with``,
    ``replace_with``, ``replacement_trigger``, transforms, hooks: a resource using one
    of these options fails the run with a message saying so instead of silently behaving
    differently.
  * Process isolation: the program and the provider host run in the test process (the host in
    its own ``contextvars`` context and environment), so modules imported by the program or a
    provider stay imported (and keep their globals) between runs; ``__main__.py`` itself is
    re-executed each run, and the host module is loaded anew for each operation.
  * The engine's display: ``preview --diff`` property lines, and how the CLI frames a provider
    error around the host's text. The root ``pulumi:pulumi:Stack`` resource is not recorded in
    state.
  * Pending deletes do not appear in ``RunResult.steps``.
"""

from tests.harness.lifecycle import UNKNOWN, ResourceState, RunResult, Stack

__all__ = ["UNKNOWN", "ResourceState", "RunResult", "Stack"]
