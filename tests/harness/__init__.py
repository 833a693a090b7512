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
  * ``__provider`` is base64 + dill-deserialized like the host (``_deserialize``), cached per
    serialized string per operation, and ``configure(ConfigureRequest(Config(raw, project)))`` is
    called once per deserialized provider. ``raw`` is the stack config ("project:key" -> string,
    secrets unwrapped). Provider methods run in their own context whose SDK settings mirror the
    host's (project, stack "stack", no engine: provider-side ``pulumi.log`` is not captured) and
    without ``PULUMI_CONFIG`` in the environment (the engine starts the host without the
    program's config environment: a provider must use configure()).
  * The provider receives plain values (``acceptSecrets=false``); props given to check, diff,
    create and update still contain ``__provider``. Everything a provider returns goes through the
    same protobuf round trip as the host (so ints come back as floats, ``None`` values vanish, and
    an unserializable value fails the step).
  * ``up``: ``check(olds=old inputs, news)`` then, for a new resource ``create``; otherwise
    ``diff(id, olds=old outputs, news=checked)``: ``changes=False`` -> same (old outputs kept,
    checked inputs stored); ``changes=None`` -> the harness compares old and new inputs itself,
    ``__provider`` included; changes without ``replaces`` -> ``update(id, old outputs, checked)``
    (the default ``update`` returns empty outs: stored outputs are then just ``__provider``);
    with ``replaces`` -> replace, create-before-delete (the old one is deleted at the end of a
    successful run) or delete-before-create when the diff or ``ResourceOptions`` ask for it.
    A replacement runs check again with empty olds, as the engine does. Stored outputs are the
    returned outs plus ``__provider``. Check failures fail the run with
    ``"<type> resource '<name>': property <p> has a problem: <reason>"``.
    check/diff/create/update use the new ``__provider``; read/delete use the one in state
    (``outputs["__provider"]``, which a "same" step does not change).
  * ``preview``: check + diff only. Created/updated/replaced resources show their checked inputs
    as their state; keys that are not inputs are unknown to dependants (as in a real preview) and
    the id of a created/replaced resource is unknown ("" in ``ResourceState.id``). Unknown input
    values reach check/diff as ``pulumi.runtime.rpc.UNKNOWN``; if the new ``__provider`` is unknown
    the old one is used.
  * ``refresh``: ``read(id, outputs)`` for each dynamic resource in state, with the provider in
    state; an empty id drops it ("refresh-deleted"); ``ReadResult.inputs``, if given, replace the
    stored inputs. The program is not run; stack outputs are those of the last successful up.
  * ``destroy``: deletes everything in reverse registration order (dynamic: ``delete(id,
    outputs)``; others are just dropped).
  * Failure: state keeps every step that completed; the failed resource keeps its old state; after
    the first failure no further steps run and no deletions happen (like the engine). Old
    resources of completed create-before-delete replacements stay "pending delete" (kept
    internally, not in ``state``) and are deleted at the start of the next ``up`` or ``destroy``.

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
  * Parallelism, timeouts, cancellation; a delete-before-replace does not replace dependants.
  * Secrets encryption (state values are plain; ``secrets`` says what would be encrypted).
  * Import, ``get``/``StackReference`` (ReadResource), invokes, ``protect``, ``ignore_changes``,
    ``replace_on_changes`` on dynamic resources, ``retain_on_delete``, ``deleted_with``,
    ``replace_with``, ``replacement_trigger``, aliases, transforms, hooks: a resource using one
    of these options fails the run with a message saying so instead of silently behaving
    differently.
  * Process isolation: providers run in the test process, so modules imported by the program or
    a provider stay imported (and keep their globals) between runs; ``__main__.py`` itself is
    re-executed each run. The root ``pulumi:pulumi:Stack`` resource is not recorded in state.
  * Pending deletes do not appear in ``RunResult.steps``.
"""

from tests.harness.lifecycle import UNKNOWN, ResourceState, RunResult, Stack

__all__ = ["UNKNOWN", "ResourceState", "RunResult", "Stack"]
