"""What every dynamic provider here shares: one diff rule, one place credentials come from."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from pulumi.dynamic import ConfigureRequest, DiffResult, ResourceProvider
from pulumi.dynamic.dynamic import PROVIDER_KEY
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

__all__ = ["PROVIDER_KEY", "TrustProvider", "diff_inputs", "is_unknown"]


def is_unknown(value: Any) -> bool:
    """True for a value preview has not computed yet, or a container holding one.

    Two forms exist: the real provider host deserializes with unknowns kept, so a provider
    running under the engine sees `pulumi.output.Unknown` objects
    (sdk/python/lib/pulumi/dynamic/__main__.py, Check and Diff); mocks and program code see
    the `rpc.UNKNOWN` string. Both mean the same.
    """
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


def diff_inputs(
    olds: Mapping[str, Any], news: Mapping[str, Any], replace_keys: Collection[str] = ()
) -> DiffResult:
    """Compare checked inputs with the stored outputs, key by key.

    `__provider` is ignored on purpose: it is the provider pickled by reference, so it changes
    when a provider's module or class name changes (or the pickle format does), and such a
    code change alone must never look like a trust change in preview. Keys that exist only in
    the outputs (observations such as fingerprints) are not inputs and are not compared.
    """
    changed = sorted(
        key
        for key in news
        if key != PROVIDER_KEY and (is_unknown(news[key]) or olds.get(key) != news[key])
    )
    replaces = [key for key in changed if key in replace_keys]
    return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)


class TrustProvider(ResourceProvider):
    """Base for this program's dynamic providers.

    Credentials are looked up by config key name at call time, from the stack config the
    engine hands to `configure()` or from the environment. They are never resource inputs,
    so they never reach state, and never attributes set before pickling, so they never
    reach the serialized provider.
    """

    replace_keys: tuple[str, ...] = ()

    def configure(self, req: ConfigureRequest) -> None:
        self._stack_config = req.config

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = diff_inputs(olds, news, self.replace_keys)
        if not result.changes and self.needs_repair(olds, news):
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        return result

    def needs_repair(self, _olds: dict[str, Any], _news: dict[str, Any]) -> bool:
        """True when the stored outputs show drift that the inputs alone do not.

        `refresh` records what the appliance really has in the outputs; when the inputs are
        unchanged, this is what makes the next `up` put it right.
        """
        return False

    def credential(self, config_key: str, environment_variable: str) -> str | None:
        """The secret named by `config_key` in the stack config, else the environment variable."""
        stack_config = getattr(self, "_stack_config", None)
        value = stack_config.get(config_key) if stack_config is not None else None
        if value:
            return str(value)
        return os.environ.get(environment_variable) or None
