"""`tfe-runbook run`: batches of notebooks (their archive and its check: `runbook_lib.cli.evidence`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from runbook_lib import batch, display, mapping


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run the runbook's notebooks per environment (papermill), resumable")
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
    run.add_argument("--confirm-file", default="", help="file of confirmations, one per line, "
                                                        "like 'delete acme-legacy/web-prod'")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="extra notebook parameter for every step (e.g. migration_path=cli); repeatable")
    run.set_defaults(func=_run)


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
    from tqdm import tqdm

    rows = mapping.read_csv(Path(args.mapping))
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

    def progress(outcome: batch.StepOutcome) -> None:
        if outcome.status != "retrying":
            bar.update(1)
        # In plan mode a step that passed only planned: "PLAN OK", never "PASSED".
        label = display.outcome_label(outcome.status, args.mode, outcome.error).upper()
        line = f"{label:8} {outcome.environment} {outcome.step} ({outcome.seconds:.1f}s)"
        if outcome.error and outcome.status in ("failed", "retrying"):
            line += f"\n         {outcome.error}\n         executed notebook: {outcome.notebook}"
        tqdm.write(line, file=sys.stderr)

    runner = batch.BatchRunner(rows, steps, mode=args.mode, out=args.out, batch_id=batch_id, jobs=args.jobs,
                               parameters=_parse_params(args.param),
                               confirm_lines=batch.read_confirm_file(args.confirm_file), on_step=progress,
                               kernels=args.kernels)
    # The runner checked every parameter and name above, before anything was written.
    if runner.auto_jobs:
        tqdm.write(runner.resolve_jobs().describe(), file=sys.stderr)
    bar = tqdm(total=len(rows) * len(steps), unit="step", desc=batch_id, file=sys.stderr)
    result = runner.run()
    bar.close()
    frame = result.frame()
    frame["status"] = [display.outcome_label(s, args.mode) for s in frame["status"]]
    print(frame.pivot(index="environment", columns="step", values="status").fillna("-").to_string())
    print(f"\nbatch {result.batch_dir}: summary {result.batch_dir / 'summary.html'}")
    return 0 if result.ok else 1
