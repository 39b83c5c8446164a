"""`tfe-runbook notebooks DIR`: copy the step notebooks into a working folder for JupyterLab."""

from __future__ import annotations

import argparse
import shlex


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("notebooks", help="copy the step notebooks into a working folder for JupyterLab")
    parser.add_argument("folder", metavar="DIR", help="the working folder (created if missing)")
    parser.add_argument("--force", action="store_true",
                        help="replace notebooks there that differ from this runbook's (edited, or another version)")
    parser.set_defaults(func=_notebooks)


def _notebooks(args: argparse.Namespace) -> int:
    from runbook_lib.installation import copy_notebooks

    copied = copy_notebooks(args.folder, force=args.force)
    folder = shlex.quote(str(copied.folder))
    print(f"{len(copied.written)} notebook(s) copied into {copied.folder}"
          + (f", {len(copied.unchanged)} already there" if copied.unchanged else ""))
    print(f"next: cd {folder} && jupyter lab\n"
          f"      notebook 00 (legacy_env = \"\") writes runs/interactive/mapping.csv in that folder;\n"
          f"      from the same folder: tfe-runbook run --mapping runs/interactive/mapping.csv --mode plan")
    return 0
