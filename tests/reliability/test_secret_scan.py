"""Canary passwords through a full lifecycle are found nowhere they must not be.

up (a login that regenerates every node), a failed login against an appliance that echoes
the posted form, refresh and destroy, with the admin password as a secret stack config key.
Then every place a secret could leak is searched for the canaries, in the forms an echo or
an encoding may give them: state (inputs and outputs), outputs, the pickled providers (as
stored, base64, and decoded), error texts, the exceptions a provider raises and their whole
chains, log records (every logger, urllib3 included), warnings, and every file written.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.appliance.certificate import ApplianceCertificateProvider
from emulators.appliance import ApplianceCluster
from tests.harness import RunResult, Stack
from tests.program.scenarios import SERVICE, node_fqdn
from tests.program.stacks import PROGRAM

CANARY = "canary-Adm1n&pass/word=%"  # noqa: S105 (a test canary: &, /, = and % get encoded)
WRONG_CANARY = "canary-Wr0ng&guess+secret"  # noqa: S105
PROVIDER_KEY = "__provider"


def forms(secret: str) -> list[str]:
    """The secret as an echo, a form body, JSON or base64 could show it."""
    shown = {
        secret,
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    }
    return sorted(shown)


def leaks(text: str) -> list[str]:
    return [form for canary in (CANARY, WRONG_CANARY) for form in forms(canary) if form in text]


def exception_chain(problem: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while problem is not None and id(problem) not in seen:
        seen.add(id(problem))
        yield problem
        problem = problem.__cause__ or problem.__context__


@pytest.fixture
def emulator() -> Iterator[ApplianceCluster]:
    nodes = [node_fqdn(index) for index in (1, 2, 3)]
    with ApplianceCluster(nodes, SERVICE, CANARY) as cluster:
        yield cluster


def test_canary_passwords_are_found_nowhere(emulator, tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD", raising=False)
    (tmp_path / "lb").mkdir()
    config: dict[str, Any] = {
        "clusters": [
            {
                "name": "local",
                "service_fqdn": SERVICE,
                "ssl_termination": "passthrough",
                "certificate_method": "configurator",
                "trust_on_first_use": True,
                "extra_sans": ["ws1-dr.local.test"],  # every node needs a login
                "nodes": [
                    {
                        "fqdn": node.fqdn,
                        "address": node.address,
                        "service_port": node.port,
                        "configurator_port": node.configurator_port,
                    }
                    for node in emulator.nodes
                ],
            }
        ],
        "load_balancers": [
            {
                "name": "proxy",
                "kind": "pem_file",
                "cluster": "local",
                "path": str(tmp_path / "lb" / "trust.pem"),
            }
        ],
        "applianceAdminPassword": CANARY,
    }
    stack = Stack(
        PROGRAM,
        stack="local",
        config=config,
        secret_keys={"applianceAdminPassword"},
        cwd=str(tmp_path),
    )
    runs: list[RunResult] = []

    def record(result: RunResult) -> RunResult:
        runs.append(result)
        return result

    up = record(stack.up())
    assert up.error is None, up.error
    assert emulator.logins() == 6  # the canary really was used (probe, then write, per node)

    # A failed login against an appliance that echoes the posted form.
    emulator.echo_form_in_errors = True
    stack.config["applianceAdminPassword"] = WRONG_CANARY
    stack.config["clusters"][0]["extra_sans"] = ["ws1-dr2.local.test"]
    failed = record(stack.up())
    assert failed.error and node_fqdn(1) in failed.error, failed.error
    assert "[a submitted value]" in failed.error  # the echo arrived, and was scrubbed

    # The same failure, raised by the provider itself, to see the exception and its chain.
    provider = ApplianceCertificateProvider()
    certificate = next(r for r in up.resources.values() if r.type.endswith("ApplianceCertificate"))
    props = dict(certificate.outputs)
    props["sans"] = [*props["sans"], "ws1-dr2.local.test"]
    monkeypatch.setenv("WS1_ACCESS_ADMIN_PASSWORD", WRONG_CANARY)
    with pytest.raises(Exception) as raised:  # noqa: PT011 any exception is inspected
        provider.update("local", props, props)
    monkeypatch.delenv("WS1_ACCESS_ADMIN_PASSWORD")
    chain = list(exception_chain(raised.value))
    for problem in chain:
        for attribute in ("request", "response"):
            assert getattr(problem, attribute, None) is None, f"{problem!r} keeps its {attribute}"
        text = f"{problem} {problem!r} {problem.args!r} {vars(problem)!r}"
        assert leaks(text) == [], f"{type(problem).__name__} leaks: {text}"
    assert raised.value.__context__ is None and raised.value.__cause__ is None

    stack.config["applianceAdminPassword"] = CANARY
    record(stack.refresh())
    record(stack.destroy())

    haystack: list[tuple[str, str]] = []
    for index, result in enumerate(runs):
        haystack.append((f"run {index} error", result.error or ""))
        haystack.append((f"run {index} warnings", "\n".join(result.warnings)))
        haystack.append((f"run {index} outputs", json.dumps(result.outputs, default=repr)))
        # The state after each run: every resource's inputs, outputs and pickled provider.
        haystack.append((f"run {index} state", repr(result.resources)))
        for resource in result.resources.values():
            provider_blob = str(resource.inputs.get(PROVIDER_KEY, ""))
            haystack.append((f"{resource.urn} provider", provider_blob))
            if provider_blob:
                decoded = base64.b64decode(provider_blob).decode("latin-1")
                haystack.append((f"{resource.urn} provider (decoded)", decoded))
            haystack.append((f"{resource.urn} inputs", repr(resource.inputs)))
            haystack.append((f"{resource.urn} outputs", repr(resource.outputs)))
    haystack.append(("log records", "\n".join(r.getMessage() for r in caplog.records)))
    haystack.append(("captured log text", caplog.text))
    for path in sorted(Path(tmp_path).rglob("*")):
        if path.is_file():
            haystack.append((str(path), path.read_bytes().decode("latin-1")))
    assert len(haystack) > 20
    assert any(where.endswith("provider (decoded)") for where, _ in haystack), "no provider seen"
    found = {where: leaks(text) for where, text in haystack if leaks(text)}
    assert found == {}
