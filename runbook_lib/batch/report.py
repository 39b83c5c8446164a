"""What a batch reports: each step's outcome in this run, the exit status, and the evidence written at its end.

Outcomes (`StepOutcome.status`): ``passed``; ``skipped`` (passed in an earlier run, with its notebook);
``failed`` (a failure, a refusal, a step abandoned by a second Ctrl-C); ``waiting`` (the step needs the
operator to act, in the legacy UI: its instruction is in `error`; not a failure); ``blocked`` (not run: an
earlier step of the environment did not pass, waits, or the batch was interrupted).

The exit status of `tfe-runbook run` (`BatchResult.exit_code`): 0 when every step passed or was skipped; 1
when a step failed; 3 when nothing failed but a step waits for the operator (act as its instruction says,
then run the same command again); 130 when the batch was interrupted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from runbook_lib import catalog, summary
from runbook_lib.ledger import Ledger

EXIT_OK, EXIT_FAILED, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 3, 130
#: The order final counts are given in.
STATUS_ORDER = ("passed", "skipped", "failed", "waiting", "blocked")


@dataclass
class StepOutcome:
    """What happened to one step of one environment in this batch run (statuses: see the module)."""

    environment: str
    step: str
    status: str
    seconds: float = 0.0
    notebook: str | None = None
    error: str | None = None
    error_type: str | None = None


@dataclass
class BatchResult:
    batch_dir: Path
    outcomes: list[StepOutcome] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return all(o.status in ("passed", "skipped") for o in self.outcomes)

    @property
    def waiting(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status == "waiting"]

    def counts(self) -> dict[str, int]:
        counted = Counter(o.status for o in self.outcomes)
        return {status: counted[status] for status in (*STATUS_ORDER, *sorted(set(counted) - set(STATUS_ORDER)))
                if counted[status]}

    @property
    def exit_code(self) -> int:
        """See the module: interrupted 130, a failure 1, waiting for the operator 3, else 0."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if any(o.status == "failed" for o in self.outcomes):
            return EXIT_FAILED
        if self.waiting:
            return EXIT_WAITING
        return EXIT_OK if self.ok else EXIT_FAILED

    def frame(self):
        import pandas as pd

        return pd.DataFrame([o.__dict__ for o in self.outcomes],
                            columns=["environment", "step", "status", "seconds", "notebook", "error"])

    def matrix(self) -> dict[str, dict[str, str]]:
        table: dict[str, dict[str, str]] = {}
        for o in self.outcomes:
            table.setdefault(o.environment, {})[o.step] = o.status
        return table


def parameters_of_every_run(runs: Sequence[Mapping[str, Any]], current: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's parameters: those of every run of the batch (a later run's value of a name wins; each
    run's own are in the manifest's ``runs``), then the current run's."""
    merged: dict[str, Any] = {}
    for run in runs:
        merged.update(run.get("parameters") or {})
    merged.update(current)
    return merged


def write_evidence(batch_dir: Path, ledger: Ledger, *, mode: str, workspaces: Mapping[str, str],
                   parameters: Mapping[str, Any], started_at: str, finished_at: str,
                   steps: Sequence[str] = catalog.STEPS) -> None:
    """The batch's manifest and summary, from the whole ledger (every run of the batch, resumed ones too).

    Args:
        workspaces: each environment's workspace (`<org>/<workspace>`).
        parameters: what the manifest records as the batch's parameters.
        started_at: when the batch's first run started.
    """
    matrix: dict[str, dict[str, str]] = {}
    for run in ledger.history():
        if run.action != catalog.RUN:  # confirmations and recoveries are not a step's outcome
            continue
        matrix.setdefault(run.environment, {})[run.step] = run.status
    summary.write_batch_evidence(batch_dir, ledger_path=ledger.path, steps=steps, mode=mode, workspaces=workspaces,
                                 parameters=parameters, outcomes=matrix, started_at=started_at,
                                 finished_at=finished_at)
