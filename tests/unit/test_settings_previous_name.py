"""`previous_name`: renaming a cluster or load balancer entry without recreating its resources."""

from __future__ import annotations

import pytest

from components.settings import PROJECT, parse_settings
from tests.unit.test_settings import (
    LB_ROOT_CA,
    MANAGEMENT_CA,
    PROJECT_DIR,
    SECRETS,
    lab,
    nginx,
    problems_after,
    prod,
    valid_raw,
)


@pytest.fixture(autouse=True)
def _management_ca_file():
    MANAGEMENT_CA.parent.mkdir(exist_ok=True)
    MANAGEMENT_CA.write_text(LB_ROOT_CA)


def test_previous_names_reach_the_settings():
    raw = valid_raw()
    prod(raw).update(name="ws1-east", previous_name="ws1-prod")
    nginx(raw).update(cluster="ws1-east", name="ws1-east-nginx", previous_name="ws1-prod-nginx")
    raw["load_balancers"][1]["previous_name"] = "old-f5"

    settings = parse_settings(raw, SECRETS, project_dir=PROJECT_DIR)

    assert settings.clusters[0].previous_name == "ws1-prod"
    assert settings.clusters[1].previous_name is None
    assert [lb.previous_name for lb in settings.load_balancers] == ["ws1-prod-nginx", "old-f5"]


def test_previous_name_of_another_entry_is_refused():
    def change(raw):
        prod(raw)["previous_name"] = "ws1-lab"

    assert problems_after(change) == [
        f"- {PROJECT}:clusters[0].previous_name: 'ws1-lab' is the name of "
        "clusters[1] now; an entry's previous_name must not be another entry's "
        "name (its resources would be taken over)."
    ]


def test_one_previous_name_for_two_entries_is_refused():
    def change(raw):
        prod(raw)["previous_name"] = "ws1-old"
        lab(raw)["previous_name"] = "ws1-old"

    assert problems_after(change) == [
        f"- {PROJECT}:clusters[1].previous_name: 'ws1-old' is also the previous_name of "
        "clusters[0]; one old entry can become only one new entry."
    ]


def test_an_invalid_previous_name_is_refused_with_what_is_expected():
    def change(raw):
        nginx(raw)["previous_name"] = "Old_Name"

    assert problems_after(change) == [
        f"- {PROJECT}:load_balancers[0].previous_name: 'Old_Name' is not a valid name (expected "
        "the entry's name before the rename: 1-40 lower-case letters, digits and hyphens)."
    ]
