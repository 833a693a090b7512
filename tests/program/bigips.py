"""Emulated BIG-IPs for stack files in the harness: one unit per F5 entry, the entry pointed at it.

The pulumi_f5bigip resources are only recorded by the harness (their plugin cannot run here),
so each unit starts with the server-SSL profile that the provider's create would have made;
the program's own REST resources then work on it for real, over TLS on loopback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulators.bigip import EmulatedBigip

USERNAME_DEFAULT = "admin"


def profile_path(entry: dict[str, Any], cluster: dict[str, Any]) -> str:
    """The server-SSL profile an F5 entry manages, with the settings' default name."""
    partition = entry.get("partition", "Common")
    name = entry.get("server_ssl_profile") or f"ws1-{cluster['service_fqdn']}-serverssl"
    return f"/{partition}/{name}"


@contextlib.contextmanager
def bigips_for(
    config: dict[str, Any], directory: Path, password: str
) -> Iterator[dict[str, EmulatedBigip]]:
    """Start one unit per F5 entry of `config` and point the entry (in place) at it."""
    clusters = {cluster["name"]: cluster for cluster in config["clusters"]}
    with contextlib.ExitStack() as stack:
        units: dict[str, EmulatedBigip] = {}
        for entry in config["load_balancers"]:
            if entry.get("kind") != "f5":
                continue
            unit = EmulatedBigip(
                entry.get("username", USERNAME_DEFAULT), password, hostname=entry["address"]
            )
            stack.enter_context(unit)
            unit.add_server_ssl_profile(profile_path(entry, clusters[entry["cluster"]]))
            ca_file = directory / "certs" / f"{entry['name']}-management-ca.pem"
            ca_file.parent.mkdir(parents=True, exist_ok=True)
            ca_file.write_text(unit.management_ca_pem)
            entry.update(address=unit.address, port=unit.port, management_ca_path=str(ca_file))
            units[entry["name"]] = unit
        yield units
