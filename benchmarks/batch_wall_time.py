"""Benchmark (not a test): wall time of an apply batch, notebooks 00-06, for 20 seeded environments.

Targets, measured side by side in one run:

- fresh kernels (a kernel per notebook, `--kernels fresh`): papermill overhead at most 2 s per notebook
  (median), a notebook's time in the batch minus the same step's time when its code runs in-process;
  `--jobs 2` at least 1.6x faster than `--jobs 1`;
- warm kernels (`--kernels warm`, the default: one kept kernel per worker): with `--jobs 1`, the batch's
  wall time at most 1.5x the in-process floor (goal 1.25x) and the median overhead at most 0.3 s per notebook.

Runs (`--runs`): `jobs1`, `jobs2` (fresh kernels), `warm1`, `warm2` (warm kernels) and `floor`, each on its own freshly seeded sandbox of `--environments` environments (blockers cleared
and sensitive values given as `runbook_lib.demo` does), each into its own new organization, the
sandbox served from a child process (a real TFE host does not share this process's CPU time):

- `jobsN` / `warmN`: `runbook_lib.batch.BatchRunner` in apply mode with the confirm lines, as
  `tfe-runbook run --jobs N --kernels fresh|warm` does (wall time around `run()`, which includes HTML copies and evidence);
- `floor`: the same notebooks' code cells executed in this one process, environment after environment,
  with the very parameters the batch would pass (`BatchRunner._parameters`): the same plan/apply/verify
  calls, the gates passed by the confirm phrases, step 5's wait for the sandbox run. What remains
  between a notebook's batch time and its floor time is what papermill costs: a kernel per notebook,
  its imports, the notebook's reading and writing.

The overhead is broken down from the executed notebooks' papermill metadata: the time outside cells
(kernel start and shutdown, papermill), the first code cell (imports and the context), the other cells.

    .venv/bin/python benchmarks/batch_wall_time.py [--environments 20] [--runs jobs1,jobs2,warm1,floor]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (OPERATOR_PARAMETERS, confirm_lines, machine, mapping_rows, median, print_table, rehearsal_sandbox, report_targets,
                     target, wait_for_quiet, write_results)

OVERHEAD_TARGET_S = 2.0
SPEEDUP_TARGET = 1.6
WARM_OVERHEAD_TARGET_S = 0.3
WARM_FLOOR_RATIO_TARGET = 1.5
# label -> (jobs, kernels); None is the in-process floor.
RUNS: dict[str, tuple[int, str] | None] = {"jobs1": (1, "fresh"), "jobs2": (2, "fresh"), "warm1": (1, "warm"),
                                           "warm2": (2, "warm"), "floor": None}


def notebook_code(step: str) -> tuple[str, list[str]]:
    """The parameters cell and the other code cells of a step notebook, as source text."""
    from runbook_lib.batch import NOTEBOOKS_DIR

    nb = json.loads((NOTEBOOKS_DIR / f"{step}.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    return "".join(params["source"]), ["".join(c["source"]) for c in cells if c is not params]


def run_floor(runner: Any, rows: list[Any]) -> tuple[float, dict[tuple[str, str], float], list[str]]:
    """Execute every step notebook's code in this process, as the batch would, environment by environment.

    Returns:
        (wall seconds, {(environment, step): seconds}, failures).
    """
    code = {step: notebook_code(step) for step in runner.steps}
    compiled = {step: (compile(p, f"<{step} parameters>", "exec"),
                       [compile(c, f"<{step} cell {i}>", "exec") for i, c in enumerate(cells)])
                for step, (p, cells) in code.items()}
    times: dict[tuple[str, str], float] = {}
    failures: list[str] = []
    runner.batch_dir.mkdir(parents=True, exist_ok=True)
    runner._write_mapping()  # the steps read the operator's facts from the batch's mapping, as in a batch
    started = time.monotonic()
    for row in rows:
        for step in runner.steps:
            params_code, cells = compiled[step]
            namespace: dict[str, Any] = {"__name__": "__floor__"}
            t0 = time.monotonic()
            try:
                # The steps print their progress (a notebook's output); here it is not the point.
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(params_code, namespace)  # noqa: S102 - our own notebooks' code
                    namespace.update(runner._parameters(row, step))
                    for cell in cells:
                        exec(cell, namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - reported, and the environment's later steps skipped
                failures.append(f"{row.legacy_slug} {step}: {type(exc).__name__}: {exc}")
                times[(row.legacy_slug, step)] = time.monotonic() - t0
                break
            times[(row.legacy_slug, step)] = time.monotonic() - t0
    return time.monotonic() - started, times, failures


def papermill_breakdown(outcomes: list[Any]) -> dict[str, float]:
    """Medians over the executed notebooks: time outside cells, the first code cell, the other cells."""
    outside, first, rest = [], [], []
    for outcome in outcomes:
        if not outcome.notebook:
            continue
        nb = json.loads(Path(outcome.notebook).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        durations = [c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0 for c in code]
        cells = sum(durations)
        outside.append(outcome.seconds - cells)
        # The first cell that is neither the parameters cell nor papermill's injected one: imports, context.
        body = [d for c, d in zip(code, durations)
                if not {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", []))]
        first.append(body[0] if body else 0.0)
        rest.append(cells - first[-1])
    return {"outside_cells_s": round(median(outside), 2), "imports_and_context_cell_s": round(median(first), 2),
            "other_cells_s": round(median(rest), 2)}


def _cpu_seconds(who: int | None = None) -> float:
    """User + system CPU seconds so far of this process and its reaped children (or only `who`)."""
    parts = [who] if who is not None else [resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN]
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, parts))


def run_batch(label: str, how: tuple[int, str] | None, environments: int, scratch: Path) -> dict[str, Any]:
    """One run on its own freshly seeded sandbox; `how` is (jobs, kernels), None for the in-process floor."""
    from runbook_lib.batch import STEPS, BatchRunner
    from runbook_lib.rehearsal import OperatorAlongside, batch_parameters

    load = wait_for_quiet()
    with rehearsal_sandbox(scratch / f"sandbox-{label}", environments, subprocess=True) as sandbox:
        rows = mapping_rows(sandbox, f"acme-{label}")  # each run into its own new organization
        jobs, kernels = how or (1, "fresh")
        runner = BatchRunner(rows, STEPS, mode="apply", out=scratch / "runs", batch_id=label, jobs=jobs,
                             parameters={**batch_parameters(sandbox.env), **OPERATOR_PARAMETERS},
                             confirm_lines=confirm_lines(rows), kernels=kernels)
        operator = OperatorAlongside(sandbox, rows, runner.batch_dir).__enter__()  # the operator's part, in the UI
        print(f"{label}: {len(rows)} environments seeded in {sandbox.seed_seconds}s; running", flush=True)
        mark = sandbox.log_mark()
        cpu_before, own_before = _cpu_seconds(), _cpu_seconds(resource.RUSAGE_SELF)
        if how is None:
            wall, times, failures = run_floor(runner, rows)
            result = {"wall_s": round(wall, 1), "failures": failures,
                      "step_seconds": {f"{e} {s}": round(t, 2) for (e, s), t in times.items()}}
        else:
            started = time.monotonic()
            batch = runner.run()
            wall = time.monotonic() - started
            failures = [f"{o.environment} {o.step}: {o.error}" for o in batch.outcomes if o.status != "passed"]
            result = {"wall_s": round(wall, 1), "failures": failures,
                      "step_seconds": {f"{o.environment} {o.step}": o.seconds for o in batch.outcomes},
                      "papermill_breakdown": papermill_breakdown(batch.outcomes)}
        # Every 429 costs its Retry-After (1 s here): the shared per-token limit shows up in the wall time.
        log = sandbox.request_log(since=mark)
        result["requests"] = sum(1 for r in log if not r["path"].startswith("/_sandbox/"))
        result["answers_429"] = sum(1 for r in log if r["status"] == 429)
        operator.__exit__(None, None, None)
    # CPU seconds of this process and of the reaped children (kernels, git, and the sandbox with its
    # terraform runs, reaped when it stopped) over the wall time: how many of the 2 cores the run kept busy.
    cpu = _cpu_seconds() - cpu_before
    # This process alone: papermill's clients and the HTML copies (batch), or the steps themselves (floor).
    result["runner_process_cpu_s"] = round(_cpu_seconds(resource.RUSAGE_SELF) - own_before, 1)
    result.update(environments=len(rows), load=load, seed_s=sandbox.seed_seconds, cpu_s=round(cpu, 1),
                  cores_busy=round(cpu / result["wall_s"], 2))
    print(f"{label}: {result['wall_s']} s, {len(failures)} failure(s)", flush=True)
    for failure in failures[:5]:
        print(f"   {failure}")
    return result


def per_step_medians(step_seconds: dict[str, float]) -> dict[str, float]:
    by_step: dict[str, list[float]] = {}
    for key, seconds in step_seconds.items():
        by_step.setdefault(key.rsplit(" ", 1)[1], []).append(seconds)
    return {step: round(median(v), 2) for step, v in sorted(by_step.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--runs", default="jobs1,jobs2,warm1,floor",
                        help=f"which runs, comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (sandboxes, executed notebooks)")
    args = parser.parse_args(argv)
    chosen = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(RUNS))
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    runs: dict[str, Any] = {}
    try:
        for label in chosen:
            runs[label] = run_batch(label, RUNS[label], args.environments, scratch)
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    figures: dict[str, Any] = {f"{label}_wall_s": r["wall_s"] for label, r in runs.items()}
    figures.update({f"{label}_cores_busy": r["cores_busy"] for label, r in runs.items()})
    figures.update({f"{label}_429_answers": r["answers_429"] for label, r in runs.items()})
    targets: dict[str, Any] = {}
    if "jobs1" in runs and "jobs2" in runs:
        figures["speedup_jobs2"] = round(runs["jobs1"]["wall_s"] / runs["jobs2"]["wall_s"], 2)
        targets["--jobs 2 speedup over --jobs 1"] = target(figures["speedup_jobs2"], SPEEDUP_TARGET, at_most=False,
                                                          unit="x")
    if "floor" in runs:
        for label in ("jobs1", "jobs2", "warm1", "warm2"):
            if label not in runs:
                continue
            floor = runs["floor"]["step_seconds"]
            overheads = [s - floor[k] for k, s in runs[label]["step_seconds"].items() if k in floor]
            figures[f"median_notebook_overhead_{label}_s"] = round(median(overheads), 2)
            figures[f"notebooks_compared_{label}"] = len(overheads)
        key = "median_notebook_overhead_jobs1_s" if "jobs1" in runs else "median_notebook_overhead_jobs2_s"
        if key in figures:
            targets["papermill overhead per notebook (median)"] = target(figures[key], OVERHEAD_TARGET_S, unit=" s")
        if "warm1" in runs:
            figures["warm1_over_floor"] = round(runs["warm1"]["wall_s"] / runs["floor"]["wall_s"], 2)
            targets["warm --jobs 1 wall over the in-process floor"] = target(
                figures["warm1_over_floor"], WARM_FLOOR_RATIO_TARGET, unit="x")
            targets["warm overhead per notebook (median)"] = target(
                figures["median_notebook_overhead_warm1_s"], WARM_OVERHEAD_TARGET_S, unit=" s")
    per_step = {label: per_step_medians(r["step_seconds"]) for label, r in runs.items()}
    results = {"settings": {"environments": args.environments, "runs": chosen, "sandbox": "subprocess, rate limit 30/s",
                            "machine": machine()},
               "figures": figures, "targets": targets, "per_step_median_s": per_step,
               "papermill_breakdown": {k: r.get("papermill_breakdown") for k, r in runs.items() if "papermill_breakdown" in r},
               "runs": runs}
    # A run of other than the default three (e.g. --runs warm1,floor) keeps its own file beside the default's.
    default = chosen == parser.get_default("runs").split(",") and args.environments == 20
    path = write_results("batch_wall_time" if default else f"batch_wall_time_{'_'.join(chosen)}_{args.environments}",
                         results)
    print()
    print_table([(step, *(per_step[label].get(step, "-") for label in runs)) for step in sorted(next(iter(per_step.values())))],
                ("step (median s)", *runs))
    print()
    print_table([(k, v) for k, v in figures.items()], ("figure", "value"))
    report_targets(targets, path)
    return 0 if all(not r["failures"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
