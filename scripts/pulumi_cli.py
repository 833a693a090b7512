"""Print the path of the Pulumi CLI that `make up` and `make preview` use, installing it if needed.

The CLI on PATH when there is one; otherwise the version that matches the pinned SDK
(requirements.txt), installed under .state/pulumi/ with the Automation API's official
installer, `pulumi.automation.PulumiCommand.install` (it downloads get.pulumi.com/install.sh,
which downloads the CLI release). Where that cannot be downloaded, one sentence on stderr
and exit status 1, no traceback.

    venv/bin/python scripts/pulumi_cli.py     # prints e.g. .state/pulumi/bin/pulumi
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

INSTALL_ROOT = Path(".state") / "pulumi"
DOWNLOAD_TIMEOUT_SECONDS = 120  # a blackholed network fails instead of hanging `make up`


def main() -> int:
    on_path = shutil.which("pulumi")
    if on_path:
        print(on_path)
        return 0
    # Imported here: the SDK is only in venv/, and `pulumi` on PATH needs none of it.
    from pulumi._version import version
    from pulumi.automation import PulumiCommand

    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        command = PulumiCommand.install(root=str(INSTALL_ROOT), version=version)
    except Exception as problem:  # noqa: BLE001 (any failure is the same sentence)
        print(
            f"The Pulumi CLI is not on PATH and could not be installed: downloading v{version} "
            f"from get.pulumi.com into {INSTALL_ROOT}/ failed ({type(problem).__name__}); "
            "install it by hand (https://www.pulumi.com/docs/iac/download-install/), put "
            "`pulumi` on PATH and run `make up` again.",
            file=sys.stderr,
        )
        return 1
    print(command.command)  # <root>/bin/pulumi
    return 0


if __name__ == "__main__":
    sys.exit(main())
