"""Shared plumbing of the benchmark scripts (not a benchmark itself).

- machine facts and the load average, so a figure can be judged against how busy the machine was;
- `wait_for_quiet`: other engineers run tests on this 2-core machine; a benchmark waits (a bounded
  time) for the 1-minute load to drop before it measures, and records what it saw either way;
- `write_results` / `print_table`: every script writes `benchmarks/results/<name>.json` and prints a
  short table;
- `rehearsal_sandbox`: a freshly seeded sandbox made ready for an apply batch exactly as
  `runbook_lib.demo` does it (blockers cleared, sensitive values in `$TFE_RUNBOOK_VAR_<KEY>`, the
  rehearsal's VCS settings), optionally served from a child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


#: Source of `status(field)` for a benchmark's child program (spliced into its `-c` code): a field of
#: /proc/self/status in bytes. Not ru_maxrss: Linux carries it over from the parent across fork/exec, so it
#: would start at the parent's peak and hide the child's own.
PROC_STATUS = r'''
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no {field} in /proc/self/status")
'''
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Facts that bound the figures: cores, Python, platform, load average now, date."""
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": load(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def wait_for_quiet(max_load: float = 1.5, max_wait: float = 180.0) -> dict[str, Any]:
    """Wait until the 1-minute load is below `max_load`, at most `max_wait` seconds.

    Returns:
        {"load_before", "waited_s", "quiet"}: `quiet` is False when the machine stayed busy (the run goes
        ahead anyway, and the JSON says so).
    """
    started = time.monotonic()
    first = load()
    while os.getloadavg()[0] >= max_load and time.monotonic() - started < max_wait:
        time.sleep(5)
    quiet = os.getloadavg()[0] < max_load
    waited = round(time.monotonic() - started, 1)
    if waited > 1:
        print(f"waited {waited:.0f}s for the load to drop below {max_load} ({first[0]} -> {load()[0]})", flush=True)
    return {"load_before": first, "load_at_start": load(), "waited_s": waited, "quiet": quiet}


def target(measured: float, limit: float, *, at_most: bool = True, unit: str = "") -> dict[str, Any]:
    """One target's record: measured value, the limit, and whether it is met."""
    passed = measured <= limit if at_most else measured >= limit
    return {"measured": measured, "target": f"{'<=' if at_most else '>='} {limit:g}{unit}", "pass": passed}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` (machine facts and the load at the end added)."""
    results = {"benchmark": name, **results, "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def targets_table(targets: dict[str, dict[str, Any]]) -> None:
    print_table([(name, t["measured"], t["target"], "PASS" if t["pass"] else "MISS") for name, t in targets.items()],
                ("target", "measured", "limit", "result"))


def report_targets(targets: dict[str, dict[str, Any]], path: Path) -> None:
    """The closing lines every script prints: the targets table and where its JSON went."""
    print()
    targets_table(targets)
    print(f"\nresults: {path}")


@contextlib.contextmanager
def rehearsal_sandbox(data_dir: Path, environments: int, *, subprocess: bool = False,
                      rate_limit: float | None = 30.0, runs: Any = None) -> Iterator[Any]:
    """A sandbox seeded with `environments` legacy environments, ready for an apply batch.

    Seeding and the blocker clearing need the store, so they happen in-process; with `subprocess=True`
    the same data directory (same port, so the git hooks' webhook address stays right) is then served
    by `tfe-runbook sandbox serve` in a child process, like a real TFE host that does not share the
    batch's CPU time slices with its Python threads.

    Yields:
        The started `Sandbox`; `os.environ` holds the rehearsal's variables (tokens, VCS token,
        sensitive values) while it runs.
    """
    from runbook_lib.sandbox import Sandbox
    from runbook_lib.sandbox.control import free_port
    from runbook_lib.rehearsal import batch_environ, clear_blockers, sensitive_values

    port = free_port()
    saved = dict(os.environ)
    started = time.monotonic()
    with Sandbox(data_dir, port=port, seed=environments, rate_limit=rate_limit, runs=runs) as sandbox:
        os.environ.update(batch_environ(sandbox.env))
        # What runbook_lib.demo does after the inventory: the operator's part (the legacy UI; sensitive values).
        rows = mapping_rows(sandbox, "any")
        clear_blockers(sandbox, rows)
        os.environ.update(sensitive_values(sandbox, rows))
    seeded_s = time.monotonic() - started
    try:
        served = Sandbox(data_dir, port=port, seed=environments, rate_limit=rate_limit, subprocess=subprocess,
                         runs=runs)
        with served:
            os.environ.update(batch_environ(served.env))
            served.seed_seconds = round(seeded_s, 1)
            yield served
    finally:
        os.environ.clear()
        os.environ.update(saved)


def mapping_rows(sandbox: Any, new_org: str) -> list[Any]:
    """The mapping rows for every seeded environment into `new_org` (the naming rule, as the survey proposes).

    Ordered readers first, read-from last (`app-prod` reads `network-prod` through an atlas
    `terraform_remote_state`). Before 258b57b step 6 deleted a legacy environment its readers still
    needed and the reader's step-5 plan failed; the batch now runs in phases and step 6 refuses, but
    the in-process floor of `batch_wall_time.py` runs environment after environment, so the readers
    go first for every run alike.
    """
    from runbook_lib import mapping

    from runbook_lib.rehearsal import operator_rows

    specs = sandbox.seeded_environments()
    read = {s.reads for s in specs if s.reads}
    ordered = sorted(specs, key=lambda s: 0 if s.reads else 2 if s.name in read else 1)
    # with the facts the operator writes into the mapping (the legacy API does not show them)
    return operator_rows(sandbox, mapping.propose(sandbox.legacy_org, [s.name for s in ordered], new_org))


#: Step 6 waits this long for the operator's deletion (`rehearsal.OperatorAlongside` deletes in the legacy UI as
#: soon as the final backup is taken), so one batch run goes through.
OPERATOR_PARAMETERS = {"wait_for_deletion": 300}


def confirm_lines(rows: Sequence[Any]) -> list[str]:
    """The confirm-file lines for every gated action of every row: the operator unlinks every environment in the
    legacy UI before the batch and deletes each one as the batch backs it up (`rehearsal.OperatorAlongside`)."""
    from runbook_lib.batch import GATED_ACTIONS

    return [f"{action} {row.legacy_slug}" for row in rows for action in GATED_ACTIONS.values()]
