"""`python -m components.audit [stack files...] [--json] [--html FILE]`: see components.audit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from components.appliance.client import ApplianceError, request_timeout
from components.audit.html_report import as_html
from components.audit.report import as_json, as_table
from components.audit.stack_files import StackFileError, read_stack_file
from components.audit.verification import Verdict, run_audit

_DEFAULT_STACK = Path("stacks/Pulumi.local.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.audit",
        description="Read-only trust audit: for every stack, whether each load balancer "
        "accepts each node. Exit code 0 OK, 1 WARN, 2 FAIL, 3 could not check.",
    )
    parser.add_argument(
        "stacks", nargs="*", type=Path, help=f"stack files (default {_DEFAULT_STACK})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    parser.add_argument(
        "--appliance",
        action="store_true",
        help="also check that each node trusts the declared load_balancer_root_ca (logs in to "
        "the configurator with WS1_ACCESS_ADMIN_PASSWORD; reads only)",
    )
    args = parser.parse_args(argv)
    try:
        request_timeout()  # a bad WS1_ACCESS_HTTP_TIMEOUT is said once, before anything runs
        stacks = [read_stack_file(path) for path in args.stacks or [_DEFAULT_STACK]]
    except (StackFileError, ApplianceError) as problem:
        print(f"Could not check: {problem}", file=sys.stderr)
        return Verdict.UNKNOWN.exit_code
    audit = run_audit(
        stacks,
        appliance=args.appliance,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(as_json(audit) if args.json else as_table(audit))
    if args.html:
        try:
            args.html.write_text(as_html(audit), encoding="utf-8")
        except OSError as error:
            print(f"Could not write {args.html}: {error.strerror}.", file=sys.stderr)
            return Verdict.UNKNOWN.exit_code
        print(f"HTML report written to {args.html}", file=sys.stderr)
    return audit.verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
