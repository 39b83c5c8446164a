"""`tfe-runbook run` and `status`: batches of notebooks (their archive and its check: `runbook_lib.cli.evidence`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from runbook_lib import batch, display, mapping


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
    show = Progress(args.progress or ("bar" if sys.stderr.isatty() else "plain"), len(rows) * len(steps), batch_id,
                    args.mode)
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
    _final_lines(result, args.mode)
    return result.exit_code


def _final_lines(result: batch.BatchResult, mode: str) -> None:
    frame = result.frame()
    if len(frame):
        # In plan mode a step that passed only planned: "plan ok", never "passed".
        frame["status"] = [display.outcome_label(s, mode, e) for s, e in zip(frame["status"], frame["error"])]
        print(frame.pivot(index="environment", columns="step", values="status").fillna("-").to_string())
    counts = result.counts()
    print("\n" + ", ".join(f"{n} {display.outcome_label(s, mode)}" for s, n in counts.items())
          if counts else "\nno step ran")
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

    def __init__(self, mode: str, total: int, name: str, run_mode: str = "apply") -> None:
        self.mode, self.total, self.name, self.run_mode = mode, total, name, run_mode
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
        label = display.outcome_label(outcome.status, self.run_mode, outcome.error).upper()
        line = f"{label:8} {outcome.environment} {outcome.step} ({outcome.seconds:.1f}s){count}"
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
