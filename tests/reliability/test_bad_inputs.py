"""Every bad input gets a clear error naming the place, no traceback, nothing half-applied.

The cases are in tests/reliability/cases.py (stack config, PEM inputs, appliance answers,
environment); they run once per session against one established stack (plus a world of
their own for the few that change the emulator for good), and each is one test here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import cases
from tests.reliability.cases import CASES, Outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    directory: Path = tmp_path_factory.mktemp("bad-inputs")
    yield {outcome.case.name: outcome for outcome in cases.run_all(directory)}


def test_the_catalogue_has_at_least_80_distinct_cases_in_every_group():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)) >= 80
    groups = {case.group for case in CASES}
    assert groups == {"stack config", "PEM input", "appliance answer", "environment"}
    assert all(case.places for case in CASES), "a case that names no place asserts nothing"


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_bad_input(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert not outcome.traceback, outcome.message
    assert not outcome.half_applied, f"changed before the refusal: {outcome.changed}"
    for place in outcome.case.places:
        assert place in outcome.message, f"{place!r} not named in: {outcome.message}"
    for secret in outcome.case.secrets:
        assert secret not in outcome.message, "a secret was repeated"
    assert outcome.clear
