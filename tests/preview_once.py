"""One preview of a stack, in a fresh interpreter: what `make bench` times against the bare
`import pulumi`. Imports nothing else, so that only what is named is measured.

Usage: python -m tests.preview_once CONFIG.json MONITOR
  CONFIG.json: {"config": {...}, "cwd": "..."} (config keys without the project prefix)
  MONITOR:
    sdk-mocks  the program under the SDK's own `pulumi.runtime.set_mocks` monitor, which
               answers every registration with its inputs: the program's own cost, as
               under the real engine, where the engine and the providers run in other
               processes;
    floor      the same monitor, and a program that only declares the PemTrustBundle of
               every pem_file entry of CONFIG (same names and inputs) and does nothing
               else: what the SDK itself costs for that many resources;
    harness    `tests.harness.Stack.preview`: the program plus the engine model and every
               dynamic provider's Check and Diff through the SDK's provider host, all in
               this one process (under the real engine that work runs in the engine's
               and the provider plugin's processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROJECT = "ws1-access-lb-trust"
PROGRAM = Path(__file__).resolve().parent.parent / "__main__.py"


def main(config_file: str, monitor: str) -> int:
    document = json.loads(Path(config_file).read_text())
    config, cwd = document["config"], document["cwd"]
    if monitor == "harness":
        from tests.harness import Stack

        stack = Stack(
            PROGRAM,
            stack="bench",
            config=config,
            secret_keys={f"{PROJECT}:bigipPassword"},
            cwd=cwd,
        )
        error = stack.preview().error
    elif monitor == "sdk-mocks":
        sys.path.insert(0, str(PROGRAM.parent))
        error = _under_sdk_mocks(_run_program, config, cwd)
    elif monitor == "floor":
        sys.path.insert(0, str(PROGRAM.parent))
        error = _under_sdk_mocks(lambda: _declare_bundles_only(config), config, cwd)
    else:
        error = f"unknown monitor {monitor!r}; expected sdk-mocks, floor or harness"
    if error:
        print(f"preview failed: {error}", file=sys.stderr)
        return 1
    return 0


def _run_program() -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")


def _declare_bundles_only(config: Mapping[str, Any]) -> None:
    from components.trust_stores.pem_file import PemTrustBundle

    for entry in config["load_balancers"]:
        if entry["kind"] == "pem_file":
            PemTrustBundle(
                f"{entry['name']}-trust-bundle",
                path=os.path.abspath(entry["path"]),
                bundle_pem="-----BEGIN CERTIFICATE-----\n",
                load_balancer=entry["name"],
            )


def _under_sdk_mocks(program: Callable[[], Any], config: Mapping[str, Any], cwd: str) -> str | None:
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.stack import run_in_stack

    class _Inputs(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
            return {}

    os.chdir(cwd)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = _Inputs()
    # set_mocks makes a root stack when there is none; run_in_stack makes it instead, as the
    # SDK's language host does (the same steps as tests/harness/lifecycle.py).
    settings.ROOT.set(mocks)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="bench", preview=True)
    settings.ROOT.set(None)
    set_all_config(
        {
            f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
            for key, value in config.items()
        },
        [f"{PROJECT}:bigipPassword"],
    )
    try:
        loop.run_until_complete(run_in_stack(program))
    except Exception as problem:  # noqa: BLE001 reported, the benchmark stops
        return str(problem)
    finally:
        # Closed here, not by the garbage collector at exit, which sometimes found its
        # self-pipe already closed and printed "Exception ignored in BaseEventLoop.__del__".
        loop.close()
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
