"""`tfe-runbook run`, `status`, `archive` and `verify`: batches of notebooks and their evidence."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from runbook_lib import audit, batch, mapping
from runbook_lib.errors import AuditError


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="run the runbook's notebooks per environment (papermill), resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 every step passed (or had passed); 1 a step failed; 3 nothing failed but a step waits "
               "for you\n(do what its line says, then run the same command again); 130 interrupted (Ctrl-C).\n"
               "Ctrl-C once: no further step starts, the running ones end; twice: the running ones are abandoned.")
    run.add_argument("--mapping", required=True, help="mapping CSV (legacy_org,legacy_env,new_org,workspace)")
    run.add_argument("--env", action="append", default=[], metavar="NAME",
                     help="only this legacy environment (name or org/name); repeatable")
    run.add_argument("--steps", default="0-6", help="steps to run, like 0-6, 3 or 0,1,2 (default 0-6)")
    run.add_argument("--mode", choices=("plan", "apply"), default="plan",
                     help="plan reads only (default); apply changes the servers")
    run.add_argument("--jobs", type=_jobs, default="auto",
                     help="environments in flight at once, or auto (default): as many as the TFE host's rate limit "
                          "(X-RateLimit-Limit) and this machine's memory allow; a step waiting for a run holds no CPU")
    run.add_argument("--kernels", choices=batch.KERNEL_MODES, default="warm",
                     help="warm (default): each worker runs its notebooks one after another in one kept kernel, "
                          "reset before each notebook; fresh: a new kernel per notebook")
    run.add_argument("--out", default="runs", help="folder for batches (default runs/)")
    run.add_argument("--batch", default="", help="batch name (default: the mapping file's name and the mode); "
                                                 "the same name resumes the same batch")
    run.add_argument("--confirm-file", default="", help="file of confirmations, one per line, like 'delete "
                                                        "acme-legacy/web.prod' (checked against the mapping first)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="extra notebook parameter for every step (e.g. migration_path=cli); repeatable")
    run.add_argument("--progress", choices=("bar", "plain"), default=None,
                     help="bar: a progress bar with lines above it (default on a terminal); plain: one line per "
                          "event, no carriage returns (default otherwise, e.g. CI logs)")
    run.set_defaults(func=_run)

    status = subparsers.add_parser("status", help="where a batch stands (read-only; works while it runs)")
    status.add_argument("batch_dir", metavar="BATCH", help="the batch folder, like runs/mapping-apply")
    status.set_defaults(func=_status)

    arc = subparsers.add_parser("archive", help="scan a batch for secrets, then pack it as <batch>.tar.gz + sha256")
    arc.add_argument("batch_dir")
    arc.add_argument("--include-state", action="store_true", help="also pack the legacy state backups")
    arc.add_argument("--sign", default="", metavar="KEY",
                     help="sign the archive's .sha256 with this SSH private key (ssh-keygen -Y sign)")
    arc.set_defaults(func=_archive)

    ver = subparsers.add_parser("verify", help="recompute every checksum of an archive against its manifest")
    ver.add_argument("archive")
    ver.add_argument("--no-sidecar", action="store_true",
                     help="verify without <archive>.sha256 (then the archive's own checksum is not checked)")
    ver.add_argument("--allowed-signers", default="", metavar="FILE",
                     help="require a signature by a key in this ssh-keygen allowed_signers file")
    ver.set_defaults(func=_verify)


def _jobs(value: str) -> int | str:
    if value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r} is not a positive number or auto")


def _parse_params(items: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs as strings; the batch types and checks them against the notebooks (see
    `batch.BatchRunner`). A malformed item is not echoed: it may be a pasted token."""
    from runbook_lib.secrets import credential_shape

    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            shown = f" {name!r}" if name.isidentifier() and not credential_shape(name) else ""
            raise SystemExit(f"tfe-runbook: error: --param{shown} must look like name=value "
                             f"(the value of a token never goes here: pass the NAME of its variable)")
        if name in params:
            raise SystemExit(f"tfe-runbook: error: --param {name} is given twice; keep one")
        params[name] = value
    return params


def _default_batch_name(mapping_path: str, mode: str) -> str:
    """The mapping file's name and the mode, made into a valid batch name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(mapping_path).stem).lstrip(".-") or "mapping"
    return f"{stem}-{mode}".replace("..", ".")


def _run(args: argparse.Namespace) -> int:
    from runbook_lib.batch.interrupt import BatchInterrupted

    every_row = mapping.read_csv(Path(args.mapping))
    rows = every_row
    if args.env:
        wanted = set(args.env)
        rows = [r for r in rows if r.legacy_env in wanted or r.legacy_slug in wanted]
        unknown = wanted - {r.legacy_env for r in rows} - {r.legacy_slug for r in rows}
        if unknown:
            print(f"tfe-runbook: error: not in the mapping: {', '.join(sorted(unknown))}; "
                  f"check the name or add a row to {args.mapping}", file=sys.stderr)
            return 2
    steps = batch.select_steps(args.steps)
    batch_id = batch.check_batch_name(args.batch) if args.batch else _default_batch_name(args.mapping, args.mode)
    show = Progress(args.progress or ("bar" if sys.stderr.isatty() else "plain"), len(rows) * len(steps), batch_id)
    runner = batch.BatchRunner(rows, steps, mode=args.mode, out=args.out, batch_id=batch_id, jobs=args.jobs,
                               parameters=_parse_params(args.param), confirm_file=args.confirm_file or None,
                               mapping_rows=every_row, on_step=show.step, on_progress=show.progress,
                               on_notice=show.line, kernels=args.kernels)
    # The runner checked every parameter, name and confirmation above, before anything was written; now each
    # host, once, before any kernel starts.
    for account in runner.check_hosts():
        show.line(f"{'TFE' if account.which == 'tfe' else 'legacy'} host {account.address} {account.detail}")
    if runner.auto_jobs:
        show.line(runner.resolve_jobs().describe())
    show.start()
    try:
        result = runner.run()
    except BatchInterrupted as stopped:
        result = stopped.result
    finally:
        show.close()
    _final_lines(result)
    return result.exit_code


def _final_lines(result: batch.BatchResult) -> None:
    frame = result.frame()
    if len(frame):
        print(frame.pivot(index="environment", columns="step", values="status").fillna("-").to_string())
    counts = result.counts()
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "\nno step ran")
    for outcome in result.waiting:
        print(f"WAITING  {outcome.environment} {outcome.step}: {outcome.error}")
    if result.waiting and result.exit_code == 3:
        print("nothing failed; the steps above wait for you: do what each says, then run the same command again "
              "(exit status 3)")
    if result.interrupted:
        print("interrupted: the steps that never started run when you run the same command again (exit status 130)")
    print(f"batch {result.batch_dir}: summary {result.batch_dir / 'summary.html'}")


class Progress:
    """What `run` shows while it works: a tqdm bar with lines above it, or plain lines (no carriage returns)."""

    def __init__(self, mode: str, total: int, name: str) -> None:
        self.mode, self.total, self.name = mode, total, name
        self.done = 0
        self.bar: Any = None

    def start(self) -> None:
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="step", desc=self.name, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def step(self, outcome: batch.StepOutcome) -> None:
        if outcome.status not in ("retrying", "rerun"):
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
        count = "" if self.bar is not None else f" [{self.done}/{self.total}]"
        line = f"{outcome.status.upper():8} {outcome.environment} {outcome.step} ({outcome.seconds:.1f}s){count}"
        if outcome.error and outcome.status in ("failed", "retrying", "waiting", "rerun"):
            line += f"\n         {outcome.error}"
            if outcome.status != "rerun" and outcome.notebook:
                line += f"\n         executed notebook: {outcome.notebook}"
        self.line(line)

    def progress(self, environment: str, step: str, text: str) -> None:
        self.line(f"         {environment} {step[:2]}: {text}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{environment} {step[:2]}: {text}"[-60:], refresh=True)


def _status(args: argparse.Namespace) -> int:
    from runbook_lib.batch.status import batch_status, render

    print(render(batch_status(args.batch_dir)))
    return 0


def _archive(args: argparse.Namespace) -> int:
    result = audit.archive(args.batch_dir, include_state=args.include_state)
    if result.refreshed:
        print(f"the manifest was older than the batch ({result.refreshed}); it was rewritten from the ledger "
              f"first (recorded in its \"refreshed\" field)")
    print(f"archive {result.path} ({result.files} files, sha256 {result.sha256}); verified")
    if result.excluded_state_backups:
        print(f"left out {result.excluded_state_backups} state backup(s); --include-state packs them")
    _sign(result.path, args.sign)
    return 0


def _sign(archive_path: Path, key: str) -> None:
    """`archive --sign KEY`: sign the archive's .sha256 (see runbook_lib.signing)."""
    if key:
        from runbook_lib import signing

        print(f"signed: {signing.sign_archive(archive_path, key)} (namespace {signing.NAMESPACE})")


def _signature(archive_path: str, allowed_signers: str) -> bool:
    """`verify`: say whether the archive is signed and by whom; False when a required signature fails."""
    from runbook_lib import signing

    check = signing.check_signature(archive_path, allowed_signers or None)
    print(f"{archive_path}: {check.detail}")
    return check.ok or (not allowed_signers and check.status in ("unsigned", "unchecked"))


def _verify(args: argparse.Namespace) -> int:
    archive = Path(args.archive)
    if not archive.is_file():
        raise AuditError(f"{archive} does not exist; give the .tar.gz that `tfe-runbook archive` wrote.")
    sidecar = archive.with_name(archive.name + ".sha256")
    problems = audit.verify_archive(archive, require_sidecar=not args.no_sidecar)
    if problems == [audit.VerifyProblem(sidecar.name, "no sidecar")]:
        raise AuditError(f"{sidecar} is missing, so the archive itself cannot be checked: put the .sha256 that "
                         f"`tfe-runbook archive` wrote beside it, or run verify --no-sidecar to check only the "
                         f"files against the manifest inside.")
    signed = _signature(args.archive, args.allowed_signers)
    if not problems:
        print(f"{archive}: every checksum matches its manifest"
              + ("" if sidecar.is_file() else
                 f"; NOT checked: the archive's own checksum ({sidecar.name} missing), so a whole archive replaced "
                 f"by another with a consistent manifest would pass"))
        if not signed:
            raise AuditError(f"{args.archive} is not signed by a key in {args.allowed_signers}; nothing in it can be "
                             f"attributed to its operator.")
        return 0
    for problem in problems:
        print(f"{problem.problem:16} {problem.path}")
    raise AuditError(f"{archive} does not match its manifest: {len(problems)} problem(s) listed above.")
