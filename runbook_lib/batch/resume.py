"""Resuming a batch: what the ledger already holds, read once when a run of the batch starts.

- In apply mode a step whose latest run passed is skipped, so nothing is done twice. A step left "running" by
  a killed batch counts as not passed, and the steps are idempotent (they adopt what the earlier attempt
  created).
- Every passed step must have its executed notebook in the batch. A passed step whose notebook is missing
  (no path recorded, or no file there) is **run again**, not re-linked: a batch killed mid-step leaves a
  partial notebook while its kernel, outliving it for a moment, may still record PASS; only a new run proves
  the step and writes its evidence, and the steps adopt what the first run did.
- Whose state each environment reads (step 0's evidence) is read once here, and again when an environment
  finishes its migrate phase (`state_reads`).
"""

from __future__ import annotations

from pathlib import Path

from runbook_lib.ledger import Ledger, StepRun

SKIP, RUN, RERUN = "skip", "run", "rerun"


class ResumePoint:
    """The ledger as it was when this run of the batch started (one read for every environment).

    Args:
        ledger: the batch's ledger.
        batch_dir: the batch folder (notebook paths in the ledger are relative to it).
        mode: the batch's mode; only apply-mode passes are skipped.
    """

    def __init__(self, ledger: Ledger, batch_dir: Path, mode: str) -> None:
        self.ledger, self.batch_dir, self.mode = ledger, batch_dir, mode
        self._latest = ledger.latest_runs("apply") if mode == "apply" else {}
        from runbook_lib.evidence import StateReaders

        self._reads_step = StateReaders.STEP
        self._step0 = {env: run for (env, step), run in ledger.latest_runs().items() if step == self._reads_step}

    def decide(self, environment: str, step: str) -> str:
        """`SKIP` (passed, with its notebook), `RERUN` (passed, its notebook missing) or `RUN`."""
        run = self._latest.get((environment, step))
        if run is None or run.status != "passed":
            return RUN
        return SKIP if self.has_notebook(run) else RERUN

    def has_notebook(self, run: StepRun) -> bool:
        return bool(run.notebook_path) and (self.batch_dir / str(run.notebook_path)).is_file()

    def state_reads(self, environment: str) -> frozenset[str] | None:
        """Whose state `environment` reads, from its latest step 0 evidence; None when there is none."""
        from runbook_lib.evidence import EvidenceError, StateReaders

        row = self._step0.get(environment)
        if row is None or row.status != "passed":
            return None
        try:
            return frozenset(StateReaders.from_evidence(row.evidence, environment).reads_state_of)
        except EvidenceError:
            return None

    def refresh(self, environment: str) -> None:
        """Read `environment`'s step 0 evidence again (it has just finished its migrate phase)."""
        row = self.ledger.latest(environment, self._reads_step)
        if row is not None:
            self._step0[environment] = row
