"""certificate_method none (the default) and configurator (experimental): what preview says,
and the configurator's read-only probe stopping a plan before any write."""

from __future__ import annotations

import json

from tests.program import scenarios
from tests.program.scenarios import node_fqdn

NODES = [node_fqdn(i) for i in (1, 2, 3)]


def test_without_certificate_method_nothing_is_written_and_preview_names_nodes_and_methods(
    tmp_path,
):
    with scenarios.world(tmp_path) as w:
        del w.cluster_config["certificate_method"]  # a stack declared before routes existed
        w.cluster_config["extra_sans"] = ["ws1-dr.local.test"]  # every node needs one
        preview = w.run("preview", w.stack.preview).result
        assert preview.error is None, preview.error
        [warning] = [line for line in preview.warnings if "certificate_method is none" in line]
        assert f"node(s) {', '.join(NODES)} need a new certificate" in warning
        assert "ssh (the appliance's own installExternalCertificate.hzn" in warning
        assert "configurator (experimental" in warning
        up = w.run("up", w.stack.up)
        assert up.result.error is None, up.result.error
        assert (up.writes, up.logins) == (0, 0)
        assert not up.result.of_type(scenarios.CERTIFICATE_TYPE)
        w.check_every_node_verifies()  # the trust side is still managed


def test_the_configurator_probe_stops_the_plan_when_a_node_answers_otherwise(tmp_path, monkeypatch):
    with scenarios.world(tmp_path) as w:
        assert w.run("first up", w.stack.up).result.error is None
        w.cluster_config["extra_sans"] = ["ws1-dr.local.test"]
        # This appliance version would read the certificate elsewhere: the table's path 404s.
        monkeypatch.setenv(
            "WS1_ACCESS_CONFIGURATOR_PATHS",
            json.dumps({"certificate": ["GET", "/cfg/ssl/certificateOfAnotherVersion"]}),
        )
        step = w.run("preview", w.stack.preview)
        error = step.result.error or ""
        assert f"node {node_fqdn(1)}: the configurator does not answer as this program " in error
        assert "HTTP 404" in error and "HAR" in error and "certificate_method: ssh" in error
        assert step.writes == 0
        up = w.run("up", w.stack.up)
        assert up.result.error and up.writes == 0  # stopped while planning, nothing applied
        assert up.load_balancer_writes == 0


def test_the_configurator_route_warns_that_it_is_experimental_only_when_it_will_write(tmp_path):
    with scenarios.world(tmp_path) as w:
        first = w.run("first up", w.stack.up).result
        assert not [line for line in first.warnings if "EXPERIMENTAL" in line]
        w.cluster_config["extra_sans"] = ["ws1-dr.local.test"]
        up = w.run("up", w.stack.up)
        assert up.result.error is None, up.result.error
        assert [line for line in up.result.warnings if "EXPERIMENTAL" in line]
        assert up.writes == 3 and up.logins == 6  # per node: the probe, then the write
