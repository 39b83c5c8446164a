"""`tfe-runbook status <batch>`: where a batch stands, read from its ledger without writing (a second terminal
may ask while the batch runs).

It shows the batch's runs (the latest one running, ended, or stopped without ending: killed), each
environment's latest status per step, the running steps with how long they have run and their latest
progress line (a run's status while step 5 waits for it), and the count of each status.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib import catalog
from runbook_lib.errors import LedgerError
from runbook_lib.ledger import Ledger, StepRun

#: One letter per status in the matrix.
LETTERS = {"passed": "P", "failed": "F", "refused": "R", "running": "*", "waiting": "W", "skipped": "S"}


@dataclass
class BatchStatus:
    batch_dir: Path
    runs: list[dict[str, Any]]
    steps: list[str]
    latest: dict[str, dict[str, StepRun]]          # environment -> step -> latest run
    progress: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def state(self) -> str:
        """The latest run of the batch: running, completed, interrupted, or stopped without ending."""
        if not self.runs:
            return "no run recorded"
        run = self.runs[-1]
        if run.get("finished_at"):
            return str(run.get("ended") or "ended")
        if run.get("host") == socket.gethostname() and not _alive(int(run.get("pid") or 0)):
            return "stopped without ending (killed?); run the same command again to resume"
        return "running"

    def counts(self) -> dict[str, int]:
        counted = Counter(run.status for steps in self.latest.values() for run in steps.values())
        return dict(sorted(counted.items()))

    def running(self) -> list[StepRun]:
        return [run for steps in self.latest.values() for run in steps.values() if run.status == "running"]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def batch_status(batch_dir: str | Path) -> BatchStatus:
    """Read a batch's state from its ledger, read-only.

    Raises:
        LedgerError: not a batch folder (no ledger), or a ledger this runbook cannot read without changing it.
    """
    batch_dir = Path(batch_dir)
    if not (batch_dir / "ledger.sqlite").is_file():
        raise LedgerError(f"{batch_dir} holds no ledger.sqlite; give a batch folder written by `tfe-runbook run` "
                          f"(runs/<batch>).")
    ledger = Ledger.open_readonly(batch_dir / "ledger.sqlite")
    runs = ledger.batch_runs()
    mode = (runs[-1]["facts"].get("mode") if runs else None) or None
    latest: dict[str, dict[str, StepRun]] = {}
    for (environment, step), run in ledger.latest_runs(mode).items():
        latest.setdefault(environment, {})[step] = run
    steps = list(runs[-1]["facts"].get("steps") or []) if runs else []
    seen = {step for runs_of in latest.values() for step in runs_of}
    steps = [s for s in catalog.STEPS if s in seen or s in steps] + sorted(seen - set(catalog.STEPS) - set(steps))
    return BatchStatus(batch_dir, runs, steps, dict(sorted(latest.items())), ledger.progress())


def render(status: BatchStatus, now: datetime | None = None) -> str:
    """The status as text for a terminal or a log (no control characters)."""
    now = now or datetime.now(timezone.utc)
    lines = []
    if status.runs:
        run = status.runs[-1]
        lines.append(f"batch {status.batch_dir}: run {len(status.runs)} started {run['started_at']} by "
                     f"{run['operator']}@{run['host']} (pid {run['pid']}): {status.state()}")
    else:
        lines.append(f"batch {status.batch_dir}: {status.state()}")
    width = max([len(env) for env in status.latest] + [len("environment")])
    lines.append("environment".ljust(width) + "  " + " ".join(s[:2] for s in status.steps))
    for environment, runs in status.latest.items():
        cells = [LETTERS.get(runs[s].status, "?") if s in runs else "-" for s in status.steps]
        lines.append(environment.ljust(width) + "  " + " ".join(c.ljust(2) for c in cells))
    lines.append("  (" + ", ".join(f"{letter} {name}" for name, letter in LETTERS.items()) + ", - not run)")
    for run in status.running():
        since = (now - datetime.fromisoformat(run.started_at)).total_seconds()
        progress = status.progress.get((run.environment, run.step))
        lines.append(f"running: {run.environment} {run.step} for {since:.0f} s"
                     + (f": {progress[0]}" if progress else ""))
    for environment, runs in status.latest.items():
        for step, run in runs.items():
            if run.status == "waiting":
                instruction = run.evidence.get("instruction") or run.error or "the operator must act"
                lines.append(f"waiting: {environment} {step}: {instruction}")
    counts = status.counts()
    lines.append("steps: " + (", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "none recorded yet"))
    return "\n".join(lines)
