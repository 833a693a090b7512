"""One `pulumi preview` of a stack under the harness, in a fresh interpreter: what `make bench`
times against the bare `import pulumi`. Imports nothing else, so that only the program and
the harness are measured.

Usage: python -m tests.preview_once CONFIG.json  (JSON: {"config": {...}, "cwd": "..."})
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.harness import Stack

PROGRAM = Path(__file__).resolve().parent.parent / "__main__.py"


def main(config_file: str) -> int:
    document = json.loads(Path(config_file).read_text())
    stack = Stack(
        PROGRAM,
        stack="bench",
        config=document["config"],
        secret_keys={"ws1-access-lb-trust:bigipPassword"},
        cwd=document["cwd"],
    )
    error = stack.preview().error
    if error:
        print(f"preview failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
