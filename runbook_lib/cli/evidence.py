"""`tfe-runbook archive` and `verify`: a batch's evidence packed for auditors, and checked by them."""

from __future__ import annotations

import argparse
from pathlib import Path

from runbook_lib import archive_reader, archive_writer, signing
from runbook_lib.errors import AuditError


def register(subparsers: argparse._SubParsersAction) -> None:
    arc = subparsers.add_parser("archive", help="scan a batch for secrets, then pack it as <batch>.tar.gz + sha256")
    arc.add_argument("batch_dir")
    arc.add_argument("--include-state", action="store_true", help="also pack the legacy state backups")
    arc.add_argument("--sign", default="", metavar="KEY",
                     help="sign the archive's .sha256 with this SSH private key (ssh-keygen -Y sign)")
    arc.add_argument("--accept-edits", action="store_true",
                     help="keep files changed after the run (refused by default); manifest.json, INDEX.md and "
                          "summary.html then say which and what changed")
    arc.set_defaults(func=_archive)

    ver = subparsers.add_parser("verify", help="check an archive: its checksum, name, signature and every file")
    ver.add_argument("archive")
    ver.add_argument("--no-sidecar", action="store_true",
                     help="verify without <archive>.sha256 (then the archive's own checksum is not checked)")
    ver.add_argument("--allowed-signers", default="", metavar="FILE",
                     help="require a signature by a key in this ssh-keygen allowed_signers file")
    ver.set_defaults(func=_verify)


def _archive(args: argparse.Namespace) -> int:
    result = archive_writer.archive(args.batch_dir, include_state=args.include_state, accept_edits=args.accept_edits)
    if result.removed_partial:
        print(f"removed a half-written archive an earlier, interrupted `archive` left beside {result.path.name}")
    if result.refreshed:
        print(f"the manifest was older than the batch ({result.refreshed}); it was rewritten from the ledger "
              f"first (recorded in its \"refreshed\" field)")
    for edit in result.accepted_edits:
        print(f"kept an edit made after the run (--accept-edits): {edit.sentence()}; recorded in manifest.json "
              f"(edited_after_run), INDEX.md and summary.html")
    print(f"archive {result.path} ({result.files} files, sha256 {result.sha256}); verified")
    if result.excluded_state_backups:
        print(f"left out {result.excluded_state_backups} state backup(s); --include-state packs them")
    if args.sign:
        print(f"signed: {signing.sign_archive(result.path, args.sign)} (namespace {signing.NAMESPACE})")
    return 0


def _signature(archive_path: str, allowed_signers: str) -> bool:
    """Say whether the archive is signed and by whom; False when a required signature fails."""
    check = signing.check_signature(archive_path, allowed_signers or None)
    print(f"{archive_path}: {check.detail}")
    return check.ok or (not allowed_signers and check.status in ("unsigned", "unchecked"))


def _verify(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    if not archive.is_file():
        raise AuditError(f"{archive} does not exist; give the .tar.gz that `tfe-runbook archive` wrote.")
    sidecar = archive.with_name(archive.name + ".sha256")
    problems = archive_reader.verify_archive(archive, require_sidecar=not args.no_sidecar)
    if problems == [archive_reader.VerifyProblem(sidecar.name, "no sidecar")]:
        raise AuditError(f"{sidecar} is missing, so the archive itself cannot be checked: put the .sha256 that "
                         f"`tfe-runbook archive` wrote beside it, or run verify --no-sidecar to check only the "
                         f"files against the manifest inside.")
    allowed = getattr(args, "allowed_signers", "")
    signed = _signature(args.archive, allowed)
    if not problems:
        print(f"{archive}: every checksum matches its manifest"
              + ("" if sidecar.is_file() else
                 f"; NOT checked: the archive's own checksum ({sidecar.name} missing), so a whole archive replaced "
                 f"by another with a consistent manifest would pass"))
        if not signed:
            raise AuditError(f"{args.archive} is not signed by a key in {allowed}; nothing in it can be "
                             f"attributed to its operator.")
        return 0
    for problem in problems:
        print(f"{problem.problem:16} {problem.path}" + (f": {problem.detail}" if problem.detail else ""))
    raise AuditError(f"{archive} does not match its manifest: {len(problems)} problem(s) listed above.")
