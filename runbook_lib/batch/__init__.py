"""Batch runs: the runbook's notebooks through papermill, per environment, resumable.

Every executed notebook lands in the audit trail (`runs/<batch>/<org>__<env>/NN_<step>.ipynb` plus an
HTML copy). The package is split by concern; each module's docstring says the rest:

- `parameters`: the batch's inputs, checked before anything is written (steps, `--param`, batch name);
- `confirmations`: the confirm file of gated actions, checked against the mapping;
- `jobs`: `--jobs auto`, from the TFE host's rate limit and the machine;
- `locks`: one lock per legacy environment, whatever the batch's output folder;
- `execution`: one step notebook in a warm or fresh kernel, its HTML copy, its earlier attempts;
- `runner`: `BatchRunner`, the phases in `schedule`'s order;
- `resume`: what a resumed batch skips, runs, or runs again (a pass without its notebook);
- `interrupt`: Ctrl-C, answered by the batch alone (first: stop starting steps; second: abandon them);
- `report`: each step's outcome, the exit status, and the manifest and summary written at the end;
- `status`: `tfe-runbook status`, the ledger read without writing.

The names below are the package's public interface (``from runbook_lib.batch import BatchRunner``).
"""

from __future__ import annotations

from runbook_lib.batch.confirmations import GATED_ACTIONS, confirmation_for, read_confirm_file
from runbook_lib.batch.execution import HTML_NICENESS, KERNEL_MODES, TRANSIENT_ERRORS, HtmlCopies
from runbook_lib.batch.interrupt import BatchInterrupted
from runbook_lib.batch.jobs import (AUTO_CUT_OVERS, AUTO_KERNEL_MB, AUTO_KERNELS_PER_CORE,
                                    AUTO_REQUESTS_PER_CUT_OVER_S, AUTO_REQUESTS_PER_ENV_S, JobsChoice, choose_jobs,
                                    host_rate_limit)
from runbook_lib.batch.locks import EnvironmentLocks, acquire_locks, host_identity, lock_root, normalized_address
from runbook_lib.batch.parameters import (BATCH_SET_PARAMETERS, check_batch_name, check_parameters, coerce_parameter,
                                          declared_parameter_types, declared_parameters, names_a_variable,
                                          select_steps)
from runbook_lib.batch.report import BatchResult, StepOutcome, write_evidence
from runbook_lib.batch.runner import NOTEBOOKS_DIR, PHASE_ENDS, STEPS, BatchRunner, phase_of
from runbook_lib.schedule import CUT_OVER, DELETE, MIGRATE

__all__ = [
    "AUTO_CUT_OVERS", "AUTO_KERNEL_MB", "AUTO_KERNELS_PER_CORE", "AUTO_REQUESTS_PER_CUT_OVER_S",
    "AUTO_REQUESTS_PER_ENV_S", "BATCH_SET_PARAMETERS", "CUT_OVER", "DELETE", "GATED_ACTIONS", "HTML_NICENESS",
    "KERNEL_MODES", "MIGRATE", "NOTEBOOKS_DIR", "PHASE_ENDS", "STEPS", "TRANSIENT_ERRORS", "BatchInterrupted", "BatchResult",
    "BatchRunner", "EnvironmentLocks", "HtmlCopies", "JobsChoice", "StepOutcome", "acquire_locks", "check_batch_name",
    "check_parameters", "choose_jobs", "coerce_parameter", "confirmation_for", "declared_parameter_types",
    "declared_parameters", "host_identity", "host_rate_limit", "lock_root", "names_a_variable", "normalized_address", "phase_of",
    "read_confirm_file", "select_steps", "write_evidence",
]
