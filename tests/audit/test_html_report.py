"""The HTML report: one self-contained page whose picture has one element per node and load
balancer, and which renders in headless Chromium (when it is installed: `make browser`)."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from components.audit.__main__ import main
from components.audit.html_report import VERDICT_COLOURS
from components.audit.verification import Verdict
from tests.audit import demo, png, world


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def with_class(self, css: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if css in (attrs.get("class") or "").split()]


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    monkeypatch.setenv("BIGIP_PASSWORD", world.BIGIP_PASSWORD)
    page = tmp_path / "audit.html"
    with demo.demo_stack(tmp_path) as stack:
        assert main([str(stack), "--html", str(page)]) == 2
    capsys.readouterr()
    return page


def test_the_page_is_self_contained_and_draws_every_node_and_load_balancer(report):
    text = report.read_text()
    page = _Page()
    page.feed(text)
    page.close()
    assert [tag for tag, _ in page.tags].count("svg") == 1
    nodes = {attrs["data-fqdn"] for attrs in page.with_class("node")}
    assert nodes == {
        "ws1-a.corp.example",
        "ws1-b.corp.example",
        "ws1-c.corp.example",
        "ws2-a.corp.example",
        "ws2-b.corp.example",
        "ws2-c.corp.example",
    }
    assert len(page.with_class("node")) == 6
    assert sorted(attrs["data-name"] for attrs in page.with_class("load-balancer")) == [
        "bigip-a",
        "haproxy-b",
        "nginx-a",
    ]
    # One edge per load balancer and node, in its verdict's colour.
    edges = page.with_class("verdict")
    assert len(edges) == 3 + 3 + 3
    assert {attrs["class"].split()[-1] for attrs in edges} == {  # type: ignore[union-attr]
        "verdict-OK",
        "verdict-WARN",
        "verdict-FAIL",
        "verdict-UNKNOWN",
    }
    # Nothing is fetched: no script, style sheet, image or frame, no URL but the SVG namespace.
    assert not {"script", "link", "img", "iframe", "object", "embed"} & {t for t, _ in page.tags}
    assert text.count("http") == text.count('xmlns="http://www.w3.org/2000/svg"') == 1
    assert "url(" not in text and "@import" not in text
    # The table says the same: one row per check.
    assert [tag for tag, _ in page.tags].count("tr") == 1 + 9


def test_the_picture_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (`make browser` installs Debian's package)")
    screenshot = tmp_path / "audit.png"
    demo.screenshot(chromium, report, screenshot, tmp_path)
    data = screenshot.read_bytes()
    # The picture sits between the summary line and the table (about 100..600 px): the
    # verdict edges must be drawn there in their colours.
    for verdict in (Verdict.OK, Verdict.FAIL, Verdict.WARN):
        drawn = png.count_near(data, VERDICT_COLOURS[verdict], 95, 600)
        assert drawn > 100, (verdict, drawn)
    # ... and a colour the page never uses is not found (the count can tell them apart).
    assert png.count_near(data, "#9467bd", 95, 600) == 0
