"""Running a batch: each environment's phases in the order `schedule` allows, resumed from the ledger.

For each environment of the mapping, the step notebooks run in order, each only after its predecessor
passed; environments run in parallel (`jobs`), in three phases (see PHASE_ENDS): 0-3, 4-5, 6. An
environment is cut over (4-5) once every environment whose state it reads is migrated (0-3), and deleted
(6) once every environment that reads its state is cut over (`runbook_lib.schedule`).

Resuming: the ledger (`runs/<batch>/ledger.sqlite`) says which steps already passed in apply mode;
running the same command again skips them and retries the rest, so nothing is done twice. A step left
"running" by a killed batch counts as not passed, and the steps themselves are idempotent (they adopt
what the earlier attempt created).

Execution (`kernels`): "warm" (the default) runs each worker's notebooks one after another in one kept
kernel (`runbook_lib.kernels`); "fresh" starts a kernel per notebook (`batch.execution`). `run` returns
(and writes the manifest that `archive` needs) only once every HTML copy is written.

Exclusion: the environments' locks (`batch.locks`) are released only once no step of the batch runs any
more, even after a second Ctrl-C.

Evidence is private: the batch folder and each environment's folder are created 0700 and every file the
batch writes is readable by its owner only (the executed notebooks show state details).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from runbook_lib import audit, catalog, kernels
from runbook_lib.batch.confirmations import confirmation_for
from runbook_lib.batch.execution import (KERNEL_MODES, TRANSIENT_ERRORS, HtmlCopies, Interrupted, error_text,
                                         error_type, keep_earlier_attempt, private_kernel_manager)
from runbook_lib.batch.jobs import JobsChoice, choose_jobs, host_rate_limit
from runbook_lib.batch.locks import acquire_locks
from runbook_lib.batch.parameters import check_batch_name, check_parameters, declared_parameter_types
from runbook_lib.batch.report import BatchResult, StepOutcome, write_evidence
from runbook_lib.errors import RunbookError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow
from runbook_lib.schedule import Schedule

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
STEPS = catalog.STEPS
# Steps run in phases (PHASE_ENDS), ordered across environments by `schedule.Schedule`: the workspaces whose
# state a configuration reads get it (0-3) before that configuration is cut over (4-5), so the cut-over can
# repoint its `terraform_remote_state` sources to them; and no legacy environment is deleted (6) before every
# environment of the batch that reads its state is cut over. Where step 0 has not said who reads what, every
# environment finishes a phase before any starts the next.
PHASE_ENDS = (3, 5, 6)  # by step number: 00-03, 04-05, 06


def _stop_workers(pool: ThreadPoolExecutor, futures: Sequence[Any]) -> None:
    """Cancel steps not yet started and wait until the running ones have stopped.

    A Ctrl-C does not reach the kernels (jupyter_client starts each in a session of its own), so steps
    already running go on to their end; further Ctrl-Cs while waiting are answered with a line, not
    obeyed: the environment locks must outlive the work.
    """
    import sys
    from concurrent.futures import wait

    for future in futures:
        future.cancel()
    while True:
        try:
            wait(futures)
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            print("tfe-runbook: still stopping: waiting for the running steps to end before the environment locks "
                  "are released", file=sys.stderr, flush=True)


def phase_of(step: str) -> int:
    """The phase of a step notebook, from its number prefix (`03_migrate_state` -> 0)."""
    number = int(step.split("_", 1)[0]) if step[:2].isdigit() else 0
    return next((i for i, end in enumerate(PHASE_ENDS) if number <= end), len(PHASE_ENDS) - 1)


class BatchRunner:
    """Runs steps for environments into `out/<batch_id>`.

    Args:
        rows: the environments (mapping rows) to migrate.
        steps: step notebook names, in order (see `select_steps`).
        mode: "plan" or "apply".
        out: the runs folder; the batch writes to `out/<batch_id>`.
        batch_id: the batch's name; the same name resumes the same batch.
        jobs: environments run in parallel, or "auto": as many as the host's rate limit and this machine
            allow (`choose_jobs`; the choice is in `jobs_choice` and the manifest).
        parameters: extra notebook parameters for every step (token variable NAMES, migration path, ...).
        confirm_lines: confirmations from the confirm file.
        notebooks_dir: where the step notebooks are.
        execution_timeout: seconds a single cell may run.
        on_step: called with each StepOutcome as it finishes (progress display), and with a
            "retrying" outcome before a transient failure is run again.
        transient_retries: how often a step that failed on a transient API error or a kernel fault
            (TRANSIENT_ERRORS) is run again at once; its earlier attempt's notebook is kept.
        kernels: "warm" (one kept kernel per worker, see `runbook_lib.kernels`) or "fresh" (a kernel
            per notebook).
    """

    def __init__(self, rows: Sequence[MappingRow], steps: Sequence[str], *, mode: str, out: str | Path,
                 batch_id: str, jobs: int | str = 1, parameters: Mapping[str, Any] | None = None,
                 confirm_lines: Sequence[str] = (), notebooks_dir: str | Path = NOTEBOOKS_DIR,
                 execution_timeout: int = 1800, on_step: Callable[[StepOutcome], None] | None = None,
                 transient_retries: int = 2, kernels: str = "warm") -> None:
        if mode not in ("plan", "apply"):
            raise RunbookError(f"--mode must be plan or apply, not {mode!r}.")
        if kernels not in KERNEL_MODES:
            raise RunbookError(f"--kernels must be warm or fresh, not {kernels!r}.")
        self.kernels = kernels
        self._pool: Any = None  # the warm kernels of a run
        self._html: HtmlCopies | None = None
        self.kernel_stats: dict[str, int] = {}  # warm kernels started and thrown away by the last run
        self.rows, self.steps, self.mode = list(rows), list(steps), mode
        self.out = Path(out)
        self.batch_dir = self.out / batch_id
        self.batch_id = batch_id
        if jobs != "auto" and not (isinstance(jobs, int) or str(jobs).isdigit()):
            raise RunbookError(f"--jobs must be a number or auto, not {jobs!r}.")
        self.auto_jobs = jobs == "auto"
        self.jobs = 1 if self.auto_jobs else max(1, int(jobs))
        self.jobs_choice: JobsChoice | None = None
        self.parameters = dict(parameters or {})
        self.confirm_lines = list(confirm_lines)
        self.notebooks_dir = Path(notebooks_dir)
        self.execution_timeout = execution_timeout
        self.on_step = on_step
        self.transient_retries = max(0, int(transient_retries))
        self._lock = threading.Lock()
        missing = [s for s in self.steps if not (self.notebooks_dir / f"{s}.ipynb").is_file()]
        if missing:
            raise RunbookError(f"notebooks not found in {self.notebooks_dir}: {', '.join(missing)}.")
        check_batch_name(batch_id)
        self.declared = {step: declared_parameter_types(self.notebooks_dir / f"{step}.ipynb") for step in self.steps}
        self.parameters = self._checked_parameters(self.parameters)
        self._used: set[str] = set()  # parameters handed to a notebook that ran (for the manifest)
        self._stopping = threading.Event()  # set on Ctrl-C: workers start no further step

    def _checked_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The extra parameters, checked and typed against the selected steps (`parameters.check_parameters`)."""
        return check_parameters(given, self.declared)

    def resolve_jobs(self) -> JobsChoice:
        """For `jobs="auto"`: ask the TFE host its rate limit once and choose (`choose_jobs`)."""
        self.jobs_choice = choose_jobs(len(self.rows), host_rate_limit(self.parameters))
        self.jobs = self.jobs_choice.jobs
        return self.jobs_choice

    @property
    def ledger_path(self) -> Path:
        return self.batch_dir / "ledger.sqlite"

    @property
    def rate_budget_dir(self) -> Path:
        """Where the batch's kernels share one rate budget per host (`http.FileTokenBucket`); outside the
        batch folder, so it is no part of the evidence."""
        return self.out / ".rate" / self.batch_id

    def _kernel_env(self) -> dict[str, str]:
        from runbook_lib.http import RATE_BUDGET_DIR_VAR

        return {RATE_BUDGET_DIR_VAR: str(self.rate_budget_dir.resolve())}

    def run(self) -> BatchResult:
        """Run the batch; returns every step's outcome. Writes manifest.json and summary.html at the end.

        Raises:
            LedgerError: another batch (any output folder) holds one of the environments.
            AuditError: the output folder cannot be written (read-only, full); nothing half-written is left.
            KeyboardInterrupt: after the running steps have stopped; the locks are released only then.
        """
        if self.auto_jobs and self.jobs_choice is None:
            self.resolve_jobs()
        locks = self._acquire_locks()
        old_umask = os.umask(0o077)  # notebooks, HTML, ledger, summary: readable by their owner only
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        futures: list[Any] = []
        try:
            audit.private_dir(self.batch_dir)
            for row in self.rows:
                audit.private_dir(self.batch_dir / audit.env_dirname(row.legacy_slug))
            audit.check_writable(self.batch_dir)
            ledger = Ledger(self.ledger_path, batch_id=self.batch_id)
            result = BatchResult(self.batch_dir, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self.rate_budget_dir.mkdir(parents=True, exist_ok=True)
            self._pool = kernels.KernelPool(extra_env=self._kernel_env()) if self.kernels == "warm" else None
            # Room for every slot's next seven notebooks: the niced copies lag while the steps keep the CPU busy.
            self._html = HtmlCopies(max_pending=7 * self.jobs + 2)
            outcomes_by_env = self._run_phases(pool, futures, ledger)
            for row in self.rows:
                result.outcomes.extend(outcomes_by_env[row.legacy_slug])
            self._close_execution()  # every HTML copy written before the manifest lists the files
            result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._write_evidence(result, ledger)
            audit.restrict_tree(self.batch_dir)  # files an earlier version or a by-hand run left readable
        except OSError as exc:
            self._stopping.set()
            if not audit.is_folder_problem(exc):
                raise
            raise audit.folder_error(exc, self.batch_dir) from exc
        except BaseException:
            self._stopping.set()  # Ctrl-C: steps running now go on to their end; no further step starts
            raise
        finally:
            _stop_workers(pool, futures)  # also after a second Ctrl-C: nothing is released while work runs
            try:
                self._close_execution()
            finally:
                os.umask(old_umask)
                for lock in locks:
                    lock.release()
        return result

    def _run_phases(self, pool: ThreadPoolExecutor, futures: list[Any], ledger: Ledger
                    ) -> dict[str, list[StepOutcome]]:
        """Run every environment's phases as `schedule.Schedule` allows, at most `jobs` at once; returns
        each environment's outcomes in step order. `futures` collects what was submitted (for a stop)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        rows = {row.legacy_slug: row for row in self.rows}
        steps_of = {phase: [s for s in self.steps if phase_of(s) == phase] for phase in range(len(PHASE_ENDS))}
        plan = Schedule(rows, [p for p, steps in steps_of.items() if steps], reads=self._state_reads(ledger),
                        caps=self.jobs_choice.caps() if self.jobs_choice else None)
        stopped: set[str] = set()  # environments with a step that did not pass: later phases are blocked
        outcomes_by_env: dict[str, list[StepOutcome]] = {slug: [] for slug in rows}
        pending: dict[Future, tuple[str, int]] = {}
        while not plan.done():
            for slug, phase in plan.ready(limit=self.jobs - len(pending)):
                plan.start(slug, phase)
                future = pool.submit(self._run_environment, rows[slug], ledger, steps_of[phase], slug in stopped)
                pending[future] = (slug, phase)
                futures.append(future)
            if not pending:
                raise RunbookError("the batch's schedule cannot go on (no phase may start and none runs); "
                                   "this is a bug: run the batch again with --jobs 1 and report it")
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                slug, phase = pending.pop(future)
                outcomes = future.result()
                outcomes_by_env[slug].extend(outcomes)
                if any(o.status not in ("passed", "skipped") for o in outcomes):
                    stopped.add(slug)
                plan.finish(slug, phase)
        return outcomes_by_env

    @staticmethod
    def _state_reads(ledger: Ledger) -> Callable[[str], frozenset[str] | None]:
        """Whose state an environment reads, from its latest step 0 evidence; None when there is none."""
        from runbook_lib.evidence import EvidenceError, StateReaders

        def reads(environment: str) -> frozenset[str] | None:
            row = ledger.latest(environment, StateReaders.STEP)
            if row is None or row.status != "passed":
                return None
            try:
                return frozenset(StateReaders.from_evidence(row.evidence, environment).reads_state_of)
            except EvidenceError:
                return None
        return reads

    def _close_execution(self) -> None:
        """Stop the kept kernels and wait for the HTML copies still being written (idempotent)."""
        pool, self._pool = self._pool, None
        html, self._html = self._html, None
        try:
            if pool is not None:
                pool.close()
                self.kernel_stats = {"started": pool.started, "discarded": pool.discarded}
        finally:
            if html is not None:
                html.drain()

    def _acquire_locks(self) -> list[Any]:
        """Take every environment's lock before anything is written (`locks.acquire_locks`)."""
        return acquire_locks(row.legacy_slug for row in self.rows)

    def _run_environment(self, row: MappingRow, ledger: Ledger, steps: Sequence[str],
                         blocked: bool) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        for step in steps:
            if self._stopping.is_set():
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
            elif blocked:
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error="an earlier step did not pass")
            elif self.mode == "apply" and ledger.passed(row.legacy_slug, step, "apply"):
                outcome = StepOutcome(row.legacy_slug, step, "skipped")
            else:
                outcome = self._run_step(row, step, ledger)
                for _ in range(self.transient_retries):
                    if outcome.status == "passed" or outcome.error_type not in TRANSIENT_ERRORS:
                        break
                    if self.on_step:
                        with self._lock:
                            self.on_step(StepOutcome(row.legacy_slug, step, "retrying", outcome.seconds,
                                                     outcome.notebook, outcome.error, outcome.error_type))
                    outcome = self._run_step(row, step, ledger)
                blocked = outcome.status != "passed"
            outcomes.append(outcome)
            if self.on_step:
                with self._lock:
                    self.on_step(outcome)
        return outcomes

    def _parameters(self, row: MappingRow, step: str) -> dict[str, Any]:
        # Each notebook gets only the parameters it declares (papermill would warn about the others).
        extra = {k: v for k, v in self.parameters.items() if k in self.declared[step]}
        with self._lock:
            self._used.update(extra)
        return {
            **extra,
            "legacy_org": row.legacy_org, "legacy_env": row.legacy_env,
            "new_org": row.new_org, "workspace": row.workspace,
            "mode": self.mode, "audit_root": str(self.batch_dir.resolve()),
            "ledger_path": str(self.ledger_path.resolve()), "batch_id": self.batch_id,
            "interactive": False, "confirm": confirmation_for(step, row, self.confirm_lines),
        }

    def _run_step(self, row: MappingRow, step: str, ledger: Ledger) -> StepOutcome:
        from papermill.exceptions import PapermillExecutionError

        env_dir = self.batch_dir / audit.env_dirname(row.legacy_slug)
        env_dir.mkdir(parents=True, exist_ok=True)
        target = env_dir / f"{step}.ipynb"
        if self._html is not None:
            self._html.settle(target)  # the earlier attempt's copy is written before it is moved aside
        keep_earlier_attempt(target)
        before = ledger.latest(row.legacy_slug, step, self.mode)
        started = time.monotonic()
        error = kind = None
        try:
            self._execute(step, target, self._parameters(row, step))
        except Interrupted:  # Ctrl-C while this step waited for a kernel: it never started
            return StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
        except (PapermillExecutionError, RuntimeError, OSError) as exc:  # RuntimeError/OSError: the kernel died
            error, kind = error_text(exc), error_type(exc)
        seconds = time.monotonic() - started
        notebook = target if target.exists() else None
        sha = audit.sha256_file(notebook) if notebook else None
        if notebook:
            if self._html is not None:
                self._html.submit(notebook)
            else:
                audit.notebook_to_html(notebook)
        row_after = ledger.latest(row.legacy_slug, step, self.mode)
        fresh = row_after if row_after and (before is None or row_after.id != before.id) else None
        if fresh and fresh.status == "running":
            # The notebook failed before its final cell: close its ledger row with papermill's error.
            ledger.finish(fresh.id, "failed", error=error or "the notebook stopped before its verdict")
            fresh = ledger.get(fresh.id)
        if fresh and notebook:
            ledger.attach_notebook(fresh.id, str(notebook.relative_to(self.batch_dir)), sha)
        if fresh is None and error is None:
            error = "the notebook recorded no outcome in the ledger"
        if fresh is None:
            ledger.record(row.legacy_slug, step, self.mode, "failed", error=error,
                          notebook_path=str(notebook.relative_to(self.batch_dir)) if notebook else None,
                          notebook_sha256=sha)
        status = "passed" if fresh is not None and fresh.status == "passed" and error is None else "failed"
        return StepOutcome(row.legacy_slug, step, status, round(seconds, 2),
                           str(notebook) if notebook else None, error if status == "failed" else None,
                           kind if status == "failed" else None)

    def _execute(self, step: str, target: Path, parameters: dict[str, Any]) -> None:
        """Run one step notebook into `target` through papermill, in a warm kernel or a fresh one.

        Raises:
            PapermillExecutionError: a cell raised (the kernel is fine and is kept).
            RuntimeError, OSError: the kernel died, hung or a cell timed out (a warm kernel is replaced).
        """
        import papermill
        from papermill.exceptions import PapermillExecutionError

        common = dict(parameters=parameters, progress_bar=False, kernel_name="python3",
                      execution_timeout=self.execution_timeout)
        source = str(self.notebooks_dir / f"{step}.ipynb")
        if self._pool is None:
            socket_dir = tempfile.mkdtemp(prefix="tfe-runbook-kernel-")  # short path: unix sockets allow ~100 chars
            try:
                papermill.execute_notebook(source, str(target), **common,
                                           kernel_manager_class=private_kernel_manager(socket_dir, self._kernel_env()),
                                           extra_arguments=list(kernels.KERNEL_ARGUMENTS))
            finally:
                shutil.rmtree(socket_dir, ignore_errors=True)
            return
        kernels.register_engine()
        kernel = self._pool.take()  # may wait for a start slot (kernels start one per core at a time)
        if self._stopping.is_set():
            self._pool.give_back(kernel, healthy=True)
            raise Interrupted()
        healthy = False
        try:
            papermill.execute_notebook(source, str(target), **common, engine_name=kernels.WARM_ENGINE,
                                       warm_kernel=kernel)
            healthy = True
        except PapermillExecutionError:
            healthy = True  # the notebook failed, not the kernel
            raise
        finally:
            self._pool.give_back(kernel, healthy=healthy)

    def _write_evidence(self, result: BatchResult, ledger: Ledger) -> None:
        # Only the parameters some notebook of this run was given: one for a step that was skipped or blocked
        # throughout did nothing, and the manifest must not suggest otherwise.
        used = {k: v for k, v in self.parameters.items() if k in self._used}
        parameters = {**used, "mode": self.mode, "steps": self.steps,
                      "environments": [r.legacy_slug for r in self.rows], "jobs": self.jobs,
                      "jobs_auto": self.jobs_choice.__dict__ if self.jobs_choice else None,
                      "kernels": self.kernels}
        write_evidence(self.batch_dir, ledger, mode=self.mode,
                       workspaces={r.legacy_slug: r.workspace_slug for r in self.rows},
                       parameters=parameters, started_at=result.started_at, finished_at=result.finished_at)
