"""`tfe-runbook backend`: show and rewrite backend blocks (seed steps 3.b, 3.d, 5).

Each sub-command is one call of `runbook_lib.hcl`; previews are the default and `--apply` writes.
Refusals are `HclError`s, which `main()` prints as `tfe-runbook: error: ...` with exit status 1.
"""

from __future__ import annotations

import argparse

from runbook_lib import hcl


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backend", help="find and rewrite terraform backend blocks")
    commands = parser.add_subparsers(dest="backend_command", metavar="ACTION", required=True)

    show = commands.add_parser("show", help="list backend/cloud blocks and atlas remote-state sources")
    show.add_argument("path", metavar="PATH", help="repository or root module directory")
    show.set_defaults(func=_show)

    rewrite = commands.add_parser("rewrite", help="point a root's backend at the new workspace (preview unless --apply)")
    rewrite.add_argument("path", metavar="PATH", help="root module directory (or a repository with one matching root)")
    rewrite.add_argument("--from", dest="from_", required=True, metavar="LEGACY_ORG/ENV")
    rewrite.add_argument("--to", required=True, metavar="NEW_ORG/WORKSPACE")
    rewrite.add_argument("--target", choices=hcl.TARGETS, default="atlas",
                         help="atlas: change name only (step 3.d); remote (>= 0.11.13) or cloud (>= 1.1)")
    rewrite.add_argument("--hostname", help="TFE host for remote/cloud (default: the atlas address host)")
    rewrite.add_argument("--remote-state", action="store_true",
                         help="rewrite atlas terraform_remote_state sources reading --from instead of the backend")
    _add_apply_flags(rewrite)
    rewrite.set_defaults(func=_rewrite)

    add = commands.add_parser("add-legacy", help="step 3.b: add the legacy atlas backend where none is configured")
    add.add_argument("path", metavar="PATH", help="root module directory")
    add.add_argument("--from", dest="from_", required=True, metavar="LEGACY_ORG/ENV")
    add.add_argument("--address", help="address of a private legacy TFE installation")
    _add_apply_flags(add)
    add.set_defaults(func=_add_legacy)


def _add_apply_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="write the files (default: preview only)")
    parser.add_argument("--no-backup", dest="backup", action="store_false",
                        help="write no .bak files; requires every touched file clean in git")


def _show(args: argparse.Namespace) -> int:
    backends, refs = hcl.find_all(args.path)
    print("backend blocks:")
    print(backends.to_string(index=False) if len(backends) else "  (none)")
    print("\natlas terraform_remote_state sources:")
    print(refs.to_string(index=False) if len(refs) else "  (none)")
    return 0


def _rewrite(args: argparse.Namespace) -> int:
    if args.remote_state:
        plan = hcl.plan_remote_state_rewrite(args.path, from_=args.from_, to=args.to)
    else:
        plan = hcl.plan_rewrite(args.path, from_=args.from_, to=args.to, target=args.target,
                                hostname=args.hostname)
    return _preview_or_apply(plan, args)


def _add_legacy(args: argparse.Namespace) -> int:
    plan = hcl.plan_add_legacy_backend(args.path, from_=args.from_, address=args.address)
    return _preview_or_apply(plan, args)


def _preview_or_apply(plan: hcl.RewritePlan, args: argparse.Namespace) -> int:
    print(plan.message)
    for note in plan.notes:
        print(f"note: {note}")
    if plan.is_empty:
        return 0
    print(plan.frame().to_string(index=False))
    print()
    print(plan.diff(), end="")
    if not args.apply:
        print("\npreview only: nothing written; rerun with --apply to write.")
        return 0
    result = hcl.apply_rewrite(plan, backup=args.backup)
    print(f"\nwrote {len(result)} file(s): {', '.join(result)}")
    print(f"safety: {result.safety}")
    return 0
