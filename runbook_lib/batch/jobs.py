"""`--jobs auto`: how many environments a batch keeps in flight, from the TFE host's rate limit and the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from runbook_lib.errors import RunbookError
from runbook_lib.schedule import CUT_OVER, MIGRATE

#: `--jobs auto`: environments migrating or being deleted per request/s of the host's rate limit. Those
#: phases ask most of an environment's requests; at ~3 requests/s each, the budget (90% of the limit)
#: keeps ~10 of them going at 30/s without every kernel queueing on the bucket.
AUTO_REQUESTS_PER_ENV_S = 2.7
#: `--jobs auto`: cut-overs in flight besides them. A cut-over mostly waits for its run on the host: it costs a
#: kernel and few requests (steps 4 and 5 ask ~22 in ~30 s, polls included: `AUTO_REQUESTS_PER_CUT_OVER_S`;
#: they are given at most half the request budget).
#: A TFE executes 10 runs at once by default (TFE_CAPACITY_CONCURRENCY), and a cut-over holds its slot about
#: 1.6x as long as its run holds one of the host's (step 4, discarding what was queued before the push, the
#: push and finding its run, reading the plan and the legacy side back after it: 32 s around a 20 s plan,
#: measured at 100 environments), so 16 in flight keep the host's 10 run slots busy (14 kept 8.3 of them
#: busy on average); the few runs beyond its capacity wait in its queue. Without slots of their own,
#: cut-overs waiting for runs fill every slot and the migrations behind them wait.
AUTO_CUT_OVERS = 16
AUTO_REQUESTS_PER_CUT_OVER_S = 0.8
#: A warm kernel with pandas and the step modules: resident memory budgeted per environment in flight.
AUTO_KERNEL_MB = 250
#: Kernels per core: they wait on the network far more than they compute (waiting holds no CPU). An
#: environment costs ~2.8 CPU-seconds in ~50 s of steps (batch process, kernel, HTML copy: measured at 100
#: environments), so 13 in flight on a core keep it well under full; 26 on two cores let 10 migrate while
#: 16 cut over.
AUTO_KERNELS_PER_CORE = 13


@dataclass
class JobsChoice:
    """What `--jobs auto` chose, and each bound it weighed (for the operator's progress line and the manifest)."""

    jobs: int
    environments: int
    rate_limit: float
    rate_source: str  # "host" (X-RateLimit-Limit) or "default" (unreachable or silent host)
    by_rate: int
    by_memory: int
    by_cpu: int
    cut_overs: int = 0  # of `jobs`, at most this many cutting over (0: no cap of their own)
    migrating: int = 0  # of `jobs`, at most this many migrating (0: no cap of their own)

    def caps(self) -> dict[int, int]:
        """The schedule's per-phase caps (a phase with 0 has no cap of its own)."""
        return {phase: cap for phase, cap in ((MIGRATE, self.migrating), (CUT_OVER, self.cut_overs)) if cap > 0}

    def describe(self) -> str:
        return (f"--jobs auto: {self.jobs} environments in flight (of {self.environments}), at most "
                f"{self.migrating} of them migrating and {self.cut_overs} cutting over (waiting for runs); rate "
                f"limit {self.rate_limit:g}/s from "
                f"the {self.rate_source} allows {self.by_rate} migrating, memory {self.by_memory}, CPU {self.by_cpu}")


def choose_jobs(environments: int, rate_limit: float | None, *, cores: int | None = None,
                available_mb: float | None = None) -> JobsChoice:
    """The batch's concurrency for `--jobs auto`: as many environments in flight as the host and machine allow.

    Args:
        environments: environments in the batch (never more jobs than that).
        rate_limit: the host's `X-RateLimit-Limit` (None: TFE's documented 30/s).
        cores, available_mb: the machine (default: this one's CPUs and MemAvailable).
    """
    from runbook_lib.http import DEFAULT_RATE_LIMIT, RATE_LIMIT_FRACTION

    rate = rate_limit or DEFAULT_RATE_LIMIT
    cores = cores or os.cpu_count() or 1
    available_mb = available_mb if available_mb is not None else _available_mb()
    by_rate = max(1, int(rate * RATE_LIMIT_FRACTION / AUTO_REQUESTS_PER_ENV_S))
    by_memory = max(1, int(available_mb / 2 / AUTO_KERNEL_MB))  # half the free memory for the kernels
    by_cpu = max(1, cores * AUTO_KERNELS_PER_CORE)
    # Their steps ask requests too, from the budget the migrations use: all of them together at most half of
    # it (the shared bucket makes the steps wait, never 429, when migrations and cut-overs ask at once).
    cut_overs = max(1, min(AUTO_CUT_OVERS, int(rate * RATE_LIMIT_FRACTION / 2 / AUTO_REQUESTS_PER_CUT_OVER_S)))
    jobs = max(1, min(environments, by_rate + cut_overs, by_memory, by_cpu))
    return JobsChoice(jobs, environments, rate, "host" if rate_limit else "default", by_rate, by_memory, by_cpu,
                      cut_overs=min(jobs, cut_overs), migrating=min(jobs, by_rate))


def _available_mb() -> float:
    """MemAvailable from /proc/meminfo in MB (4 GB assumed where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4096.0


def host_rate_limit(parameters: Mapping[str, Any]) -> float | None:
    """The TFE host's `X-RateLimit-Limit`, from one ping with the batch's settings; None if it cannot say."""
    from runbook_lib.settings import Settings
    from runbook_lib.tfe import TfeClient

    try:
        settings = Settings.from_env(tfe_token_var=parameters.get("tfe_token_var") or "",
                                     tfe_address=parameters.get("tfe_address") or "",
                                     ca_bundle=parameters.get("ca_bundle") or "")
        client = TfeClient(settings, read_only=True)
        try:
            return client.ping().get("rate_limit")
        finally:
            client.session.close()
    except RunbookError:
        return None  # the steps themselves report an unreachable host with the fix; here the default serves
