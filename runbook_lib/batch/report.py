"""What a batch reports: each step's outcome in this run, and the evidence written at its end (manifest, summary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from runbook_lib import catalog, summary
from runbook_lib.ledger import Ledger


@dataclass
class StepOutcome:
    """What happened to one step of one environment in this batch run."""

    environment: str
    step: str
    status: str  # passed, failed, skipped (already verified), blocked (predecessor failed)
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

    @property
    def ok(self) -> bool:
        return all(o.status in ("passed", "skipped") for o in self.outcomes)

    def frame(self):
        import pandas as pd

        return pd.DataFrame([o.__dict__ for o in self.outcomes],
                            columns=["environment", "step", "status", "seconds", "notebook", "error"])

    def matrix(self) -> dict[str, dict[str, str]]:
        table: dict[str, dict[str, str]] = {}
        for o in self.outcomes:
            table.setdefault(o.environment, {})[o.step] = o.status
        return table



def write_evidence(batch_dir: Path, ledger: Ledger, *, mode: str, workspaces: Mapping[str, str],
                   parameters: Mapping[str, Any], started_at: str, finished_at: str,
                   steps: Sequence[str] = catalog.STEPS) -> None:
    """The batch's manifest and summary, from the whole ledger (every run of the batch, resumed ones too).

    Args:
        workspaces: each environment's workspace (`<org>/<workspace>`).
        parameters: what the manifest records as the batch's parameters.
    """
    matrix: dict[str, dict[str, str]] = {}
    for run in ledger.history():
        if run.action != catalog.RUN:  # confirmations and recoveries are not a step's outcome
            continue
        matrix.setdefault(run.environment, {})[run.step] = run.status
    summary.write_batch_evidence(batch_dir, ledger_path=ledger.path, steps=steps, mode=mode, workspaces=workspaces,
                                 parameters=parameters, outcomes=matrix, started_at=started_at,
                                 finished_at=finished_at)
