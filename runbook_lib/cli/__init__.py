"""`tfe-runbook`: a thin command layer over runbook_lib.

Each sub-command lives in a module of this package exposing `register(subparsers)`; the module turns
flags into one call of the library and an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from runbook_lib import __version__
from runbook_lib.errors import RunbookError

# Sub-command modules, in the order `--help` lists them.
COMMAND_MODULES = [
    "runbook_lib.cli.demo",
    "runbook_lib.cli.info",
    "runbook_lib.cli.notebooks",
    "runbook_lib.cli.batch",
    "runbook_lib.cli.evidence",
    "runbook_lib.cli.backend",
    "runbook_lib.cli.sandbox",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfe-runbook",
        description="Migrate legacy Terraform Enterprise environments to new TFE workspaces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RunbookError as exc:
        print(f"tfe-runbook: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tfe-runbook: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
