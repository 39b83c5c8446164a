"""Benchmark (not a test): a whole estate near a TFE's own limits, with `--jobs auto` and warm kernels.

One apply batch, notebooks 00-06, over `--environments` seeded environments (default 100), against a
sandbox that behaves like a loaded TFE: every run takes `--run-seconds` (default 20, +-10% jitter) of
queue and plan, at most `--capacity` runs execute at once (default 10, TFE_CAPACITY_CONCURRENCY's
default), and each token may send `--rate-limit` requests a second (default 30, TFE's documented
limit). The sandbox is served from a child process.

Reported: the wall time; the bound `max(N * requests_per_env / rate_limit, ceil(N / capacity) *
run_seconds)` with `requests_per_env` the /api/v2 requests (the ones the limit counts) measured from the
sandbox's request log, all hosts' requests beside it; their ratio (target
<= 1.5x, goal 1.2x); beside it, what that bound leaves out: the runs lists' own 30 requests per
minute (`runs_list_bound_s`, from the measured runs-list reads); the longest streak of consecutive 429 answers (target: never two in a row); the
peak resident memory of the batch process and all its kernels together (sampled every 0.5 s); the CPU
seconds of the batch process, its kernels and its HTML copies' process (`batch_cpu_split_s`) and of the
sandbox; and the jobs `--jobs auto` chose and why.

    .venv/bin/python benchmarks/estate_scale.py [--environments 100] [--run-seconds 20] [--capacity 10]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (OPERATOR_PARAMETERS, confirm_lines, machine, mapping_rows, print_table, rehearsal_sandbox, report_targets, target,
                     wait_for_quiet, write_results)

RATIO_TARGET = 1.5


class Usage:
    """Samples the resident memory of this process and all its descendants (kernels) together, and the CPU
    seconds each process used (its own and its waited-for children's: terraform, git), split between the
    batch and the sandbox, which stands for the TFE host and does the runs' terraform work."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak_mb, self.peak_processes = interval, 0.0, 0
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU seconds at the last sample)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_seconds(self, *roles: str) -> float:
        return sum(seconds for role, seconds in self.cpu.values() if role in roles)

    @staticmethod
    def role(proc: Any, me: Any) -> str:
        """sandbox (the TFE host), kernels, html (the HTML copies' process), batch (the batch process itself)."""
        if proc.pid == me.pid:
            return "batch"
        cmdline = " ".join(proc.cmdline()[:8])
        if "sandbox" in cmdline:
            return "sandbox"
        if "ipykernel" in cmdline:
            return "kernels"
        if "multiprocessing" in cmdline:
            return "html"
        return "other"

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        start = me.cpu_times()
        while not self._stop.wait(self.interval):
            total, count = 0, 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    role = self.role(proc, me)
                    times = proc.cpu_times()
                    if proc.pid == me.pid:  # its own only: its reaped children (kernels, copies) are sampled apart
                        used = times.user + times.system - start.user - start.system
                    else:  # with what it waited for (a kernel's git, the sandbox's terraform)
                        used = times.user + times.system + times.children_user + times.children_system
                    self.cpu[proc.pid] = (role, used)
                    # The sandbox is a child too, but it stands for the TFE host: not the batch's memory.
                    if role == "sandbox":
                        continue
                    total += proc.memory_info().rss
                    count += 1
                except psutil.Error:
                    continue
            if total / 2**20 > self.peak_mb:
                self.peak_mb, self.peak_processes = total / 2**20, count

    def __enter__(self) -> "Usage":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def longest_429_streak(log: list[dict[str, Any]]) -> int:
    """The most consecutive 429 answers one token got (the request log is in arrival order)."""
    streaks: dict[str, int] = {}
    longest = 0
    for row in log:
        key = row.get("token_name") or ""
        streaks[key] = streaks.get(key, 0) + 1 if row["status"] == 429 else 0
        longest = max(longest, streaks[key])
    return longest


def main(argv: list[str] | None = None) -> int:
    from runbook_lib.batch import STEPS, BatchRunner
    from runbook_lib.rehearsal import OperatorAlongside
    from runbook_lib.http import RUNS_LIST_LIMIT_PER_MINUTE
    from runbook_lib.sandbox.faults import RunProfile
    from runbook_lib.rehearsal import batch_parameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=100)
    parser.add_argument("--run-seconds", type=float, default=20.0)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--rate-limit", type=float, default=30.0)
    parser.add_argument("--jobs", default="auto", help="auto (default) or a number")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    jobs: int | str = args.jobs if args.jobs == "auto" else int(args.jobs)
    scratch = Path(tempfile.mkdtemp(prefix="bench-estate-"))
    profile = RunProfile(run_seconds=args.run_seconds, run_jitter=0.1, run_capacity=args.capacity, seed=1)
    load = wait_for_quiet()
    try:
        with rehearsal_sandbox(scratch / "sandbox", args.environments, subprocess=True, rate_limit=args.rate_limit,
                               runs=profile) as sandbox:
            rows = mapping_rows(sandbox, "acme-estate")
            runner = BatchRunner(rows, STEPS, mode="apply", out=scratch / "runs", batch_id="estate", jobs=jobs,
                                 parameters={**batch_parameters(sandbox.env), **OPERATOR_PARAMETERS},
                                 confirm_lines=confirm_lines(rows))
            print(f"{len(rows)} environments seeded in {sandbox.seed_seconds}s; running", flush=True)
            mark = sandbox.log_mark()
            # the operator unlinks every environment in the legacy UI first and deletes each as it is backed up
            with Usage() as usage, OperatorAlongside(sandbox, rows, runner.batch_dir):
                started = time.monotonic()
                result = runner.run()
                wall = time.monotonic() - started
            log = [r for r in sandbox.request_log(since=mark) if not r["path"].startswith("/_sandbox/")]
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    failures = [f"{o.environment} {o.step}: {o.error}" for o in result.outcomes if o.status not in ("passed", "skipped")]
    n = len(rows)
    requests_per_env = len(log) / n
    # Only /api/v2 answers to the token's 30/s (the legacy host and hosted object transfers do not), so only
    # those requests bound the estate; the rest are reported beside them.
    limited_per_env = sum(1 for r in log if r["path"].startswith("/api/v2/")) / n
    rate_bound = n * limited_per_env / args.rate_limit
    run_bound = math.ceil(n / args.capacity) * args.run_seconds
    bound = max(rate_bound, run_bound)
    runs_lists = sum(1 for r in log if r["method"] == "GET" and r["path"].rstrip("/").endswith("/runs")
                     and r["path"].startswith(("/api/v2/workspaces/", "/api/v2/organizations/")))
    figures = {"environments": n, "wall_s": round(wall, 1), "requests": len(log),
               "requests_per_env": round(requests_per_env, 1),
               "rate_limited_requests_per_env": round(limited_per_env, 1), "rate_bound_s": round(rate_bound, 1),
               "run_bound_s": round(run_bound, 1), "bound_s": round(bound, 1), "runs_list_requests": runs_lists,
               "runs_list_bound_s": round(runs_lists / (RUNS_LIST_LIMIT_PER_MINUTE / 60.0), 1), "wall_over_bound": round(wall / bound, 2),
               "answers_429": sum(1 for r in log if r["status"] == 429), "longest_429_streak": longest_429_streak(log),
               "peak_rss_mb": round(usage.peak_mb), "peak_processes": usage.peak_processes,
               "batch_cpu_s": round(usage.cpu_seconds("batch", "kernels", "html", "other"), 1),
               "batch_cpu_split_s": {role: round(usage.cpu_seconds(role), 1)
                                     for role in ("batch", "kernels", "html", "other")},
               "sandbox_cpu_s": round(usage.cpu_seconds("sandbox"), 1),
               "cpu_bound_s": round(usage.cpu_seconds("batch", "kernels", "html", "other", "sandbox")
                                    / (os.cpu_count() or 1), 1),
               "jobs": runner.jobs, "jobs_choice": runner.jobs_choice.describe() if runner.jobs_choice else None,
               "kernels_started": runner.kernel_stats.get("started"), "failures": len(failures)}
    targets = {"estate wall over its bound": target(figures["wall_over_bound"], RATIO_TARGET, unit="x"),
               "longest streak of 429 answers": target(figures["longest_429_streak"], 1)}
    results = {"settings": {**vars(args), "machine": machine(), "load": load}, "figures": figures,
               "targets": targets, "failures": failures[:20]}
    path = write_results(f"estate_scale_{n}", results)
    print()
    print_table([(k, v) for k, v in figures.items()], ("figure", "value"))
    for failure in failures[:5]:
        print(f"   {failure}")
    report_targets(targets, path)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
