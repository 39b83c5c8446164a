"""`tfe-runbook demo`: the whole runbook against a freshly seeded rehearsal sandbox."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="rehearse the whole runbook against a seeded sandbox (apply mode)")
    parser.add_argument("--environments", type=int, default=8, help="legacy environments to seed (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="environments in parallel (default 2)")
    parser.add_argument("--out", default="runs", help="folder for the sandbox data and the audit trail")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from runbook_lib.demo import main_exit_code, run_demo

    return main_exit_code(run_demo(out=args.out, environments=args.environments, jobs=args.jobs))
