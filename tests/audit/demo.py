"""A small world with every verdict in it, for the HTML report test and the README screenshot.

Two clusters in one stack: `ws1` behind a PEM-file proxy and a BIG-IP, where one node serves
a certificate from another CA (FAIL) and one expires in 10 days (WARN); `ws2` behind a
proxy, with a node that does not answer (UNKNOWN).

    .venv/bin/python -m tests.audit.demo docs/audit-report.png   # needs chromium (make browser)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulators.appliance import ApplianceCluster
from emulators.bigip import EmulatedBigip
from tests.audit import world

PASSWORD = "demo-admin-Pa55word!"  # noqa: S105 (the emulated appliance's test password)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@contextlib.contextmanager
def demo_stack(directory: Path) -> Iterator[Path]:
    """The stack file of the demo world, its emulators running; BIGIP_PASSWORD must be set to
    world.BIGIP_PASSWORD by the caller (it is read from the environment)."""
    ws1 = ApplianceCluster(
        ["ws1-a.corp.example", "ws1-b.corp.example", "ws1-c.corp.example"],
        "access.corp.example",
        PASSWORD,
        key_type="ecp256",
    )
    ws2 = ApplianceCluster(
        ["ws2-a.corp.example", "ws2-b.corp.example"],
        "access2.corp.example",
        PASSWORD,
        key_type="ecp256",
    )
    with (
        ws1,
        ws2,
        EmulatedBigip(world.BIGIP_USER, world.BIGIP_PASSWORD, hostname="bigip-a") as bigip,
    ):
        ws1.nodes[1].serve_foreign_root()
        ws1.nodes[2].serve_certificate_expiring_in(10)
        world.bigip_trusting(bigip, ws1.service_fqdn, ws1.root_ca_pem)
        bundles = {}
        for name, cluster in (("ws1", ws1), ("ws2", ws2)):
            bundles[name] = directory / f"{name}-roots.pem"
            bundles[name].write_text(cluster.root_ca_pem)
        gone: dict[str, Any] = {
            "fqdn": "ws2-c.corp.example",
            "address": "127.0.0.1",
            "service_port": world.closed_port(),
        }
        yield world.write_stack(
            directory / "Pulumi.demo.yaml",
            [
                world.cluster_config("ws1", ws1, pins=[ws1.root_ca_sha256]),
                world.cluster_config(
                    "ws2",
                    ws2,
                    pins=[ws2.root_ca_sha256],
                    extra_nodes=[gone],
                    ssl_termination="load_balancer",
                ),
            ],
            [
                world.pem_file_lb("nginx-a", "ws1", bundles["ws1"]),
                world.f5_lb("bigip-a", "ws1", bigip, directory / "bigip-ca.pem"),
                world.pem_file_lb("haproxy-b", "ws2", bundles["ws2"]),
            ],
        )


def screenshot(chromium: str, page: Path, png: Path, directory: Path) -> None:
    """Render `page` in headless Chromium (no network: the flags keep it from reaching out)."""
    subprocess.run(  # noqa: S603 (a fixed browser, fixed flags, our own files)
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={directory / 'chromium-profile'}",
            "--window-size=1200,760",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main(argv: list[str]) -> int:
    from components.audit.__main__ import main as audit

    target = Path(argv[0] if argv else "docs/audit-report.png").resolve()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed; `make browser` installs it.", file=sys.stderr)
        return 2
    os.environ["BIGIP_PASSWORD"] = world.BIGIP_PASSWORD
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        page = directory / "audit.html"
        with demo_stack(directory) as stack:
            audit([str(stack), "--html", str(page)])
        screenshot(chromium, page, target, directory)
    print(f"screenshot written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
