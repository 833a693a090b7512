"""`make up` finds or installs the Pulumi CLI through scripts/pulumi_cli.py.

The real download cannot happen in a test (nothing beyond loopback): the installer's requests
go to a proxy on a closed loopback port, which fails as an unreachable download site does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.program.stacks import PROJECT_DIR

SCRIPT = PROJECT_DIR / "scripts" / "pulumi_cli.py"


def run(cwd: Path, path: str) -> subprocess.CompletedProcess[str]:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("https_proxy", "http_proxy", "no_proxy", "all_proxy")
    }
    env.update(PATH=path, https_proxy=closed, HTTPS_PROXY=closed, http_proxy=closed)
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_cli_and_without_downloads_it_is_one_sentence_and_no_traceback(tmp_path):
    from pulumi._version import version

    result = run(tmp_path, "/usr/bin:/bin")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"The Pulumi CLI is not on PATH and could not be installed: downloading v{version} "
        "from get.pulumi.com into .state/pulumi/ failed ("
    ), result.stderr
    assert "https://www.pulumi.com/docs/iac/download-install/" in result.stderr


def test_a_cli_on_path_is_used_as_it_is(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)

    result = run(tmp_path, f"{bin_dir}:/usr/bin:/bin")

    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, str(fake), "")
    assert not (tmp_path / ".state").exists()  # nothing downloaded, nothing installed
