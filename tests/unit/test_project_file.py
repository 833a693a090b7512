"""Pulumi.yaml's typed config, held against every stack file as the CLI validates it.

The rule is the CLI's own (sdk/go/common/workspace/project.go, ValidateConfigValue, pulumi/pulumi
>= 3.187): `object` is a mapping, `array` a list whose items each pass the item type, `integer`
also an integral float or a string of digits. Without the CLI here, this test applies that rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())


def valid(declaration: dict[str, Any], value: Any) -> bool:
    kind = declaration["type"]
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, list) and all(valid(declaration["items"], item) for item in value)


def test_lists_of_objects_are_declared_as_such():
    for key in ("clusters", "load_balancers"):
        assert PROJECT["config"][key]["type"] == "array", key
        assert PROJECT["config"][key]["items"] == {"type": "object"}, key


@pytest.mark.parametrize("stack", sorted(p.name for p in (PROJECT_DIR / "stacks").glob("*.yaml")))
def test_every_stack_file_passes_the_declared_types(stack):
    config = yaml.safe_load((PROJECT_DIR / "stacks" / stack).read_text())["config"]
    name = PROJECT["name"]
    for key, declaration in PROJECT["config"].items():
        value = config.get(f"{name}:{key}", declaration.get("default"))
        assert value is not None, f"{stack}: {name}:{key} is declared without a default"
        assert valid(declaration, value), f"{stack}: {name}:{key} is not a {declaration}"


def test_the_rule_refuses_what_the_cli_refuses():
    clusters = PROJECT["config"]["clusters"]
    assert not valid(clusters, {"name": "one cluster, not a list"})
    assert not valid(clusters, ["a string where an object belongs"])
    assert valid(clusters, [{"name": "ws1"}])
