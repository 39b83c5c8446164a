"""Running a batch: each environment's phases in the order `schedule` allows, resumed from the ledger.

For each environment of the mapping, the step notebooks run in order, each only after its predecessor
passed; environments run in parallel (`jobs`), in three phases (see PHASE_ENDS): 0-3, 4-5, 6. An
environment is cut over (4-5) once every environment whose state it reads is migrated (0-3), and deleted
(6) once every environment that reads its state is cut over (`runbook_lib.schedule`).

Resuming (`batch.resume`): the ledger (`runs/<batch>/ledger.sqlite`) says which steps already passed in
apply mode; running the same command again skips them and runs the rest, so nothing is done twice. A
passed step whose executed notebook is missing from the batch runs again. Each run of the batch is
recorded in the ledger (when, parameters, accounts, confirm file), so the manifest covers every run.

Before anything is written: the parameters and their values (`batch.parameters`), the confirm file against
the mapping (`batch.confirmations`), and, when the batch runs the runbook's own steps, one request to each
host (`runbook_lib.accounts`), so a wrong token is one sentence rather than one failed step per environment.

Ctrl-C (`batch.interrupt`): the first stops further steps and says which running ones it waits for, the
second abandons them. A step waiting for the operator (``waiting``) blocks its environment's later steps
without failing (`batch.report`).

Execution (`kernels`): "warm" (the default) runs each worker's notebooks one after another in one kept
kernel (`runbook_lib.kernels`); "fresh" starts a kernel per notebook (`batch.execution`). `run` returns
(and writes the manifest that `archive` needs) only once every HTML copy is written.

Exclusion: the environments' locks (`batch.locks`) are released only once no step of the batch runs any
more, even after a second Ctrl-C.

Progress: each running step's live status line (a run's status while step 5 waits for it) reaches
`on_progress` as it changes, and the ledger keeps the latest one for `tfe-runbook status`.

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

from runbook_lib import audit, catalog, kernels, mapping
from runbook_lib.batch.confirmations import ConfirmFile, check_confirmations, confirmation_for, load_confirm_file
from runbook_lib.batch.execution import (KERNEL_MODES, TRANSIENT_ERRORS, HtmlCopies, Interrupted, error_text,
                                         error_type, keep_earlier_attempt, private_kernel_manager)
from runbook_lib.batch.interrupt import ABANDONED, BatchInterrupted, Interruption
from runbook_lib.batch.jobs import JobsChoice, choose_jobs, host_rate_limit
from runbook_lib.batch.locks import EnvironmentLocks, acquire_locks
from runbook_lib.batch.parameters import check_batch_name, check_parameters, declared_parameter_types
from runbook_lib.batch.report import BatchResult, StepOutcome, parameters_of_every_run, write_evidence
from runbook_lib.batch.resume import RERUN, SKIP, ResumePoint
from runbook_lib.errors import LedgerError, RunbookError
from runbook_lib.installation import NOTEBOOKS_DIR
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow
from runbook_lib.schedule import MIGRATE, Schedule

STEPS = catalog.STEPS
# Steps run in phases (PHASE_ENDS), ordered across environments by `schedule.Schedule`: the workspaces whose
# state a configuration reads get it (0-3) before that configuration is cut over (4-5), so the cut-over can
# repoint its `terraform_remote_state` sources to them; and no legacy environment is deleted (6) before every
# environment of the batch that reads its state is cut over. Where step 0 has not said who reads what, every
# environment finishes a phase before any starts the next.
PHASE_ENDS = (3, 5, 6)  # by step number: 00-03, 04-05, 06


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
        confirm_lines: confirmations (a confirm file's lines), or
        confirm_file: the confirm file itself: checked against `mapping_rows`, copied into the trail.
        mapping_rows: every row of the mapping (`rows` may be only those chosen with --env); the confirm
            file may name any of them.
        notebooks_dir: where the step notebooks are.
        execution_timeout: seconds a single cell may run.
        on_step: called with each StepOutcome as it finishes (progress display), and with a
            "retrying" outcome before a transient failure is run again.
        transient_retries: how often a step that failed on a transient API error or a kernel fault
            (TRANSIENT_ERRORS) is run again at once; its earlier attempt's notebook is kept.
        kernels: "warm" (one kept kernel per worker, see `runbook_lib.kernels`) or "fresh" (a kernel
            per notebook).
        on_progress: called with (environment, step, line) for each live status line of a running step.
        on_notice: where Ctrl-C's answers go (stderr by default).
        check_hosts: ask each host whose token it has before anything runs (`runbook_lib.accounts`); by
            default when a selected step is one of the runbook's own (they all talk to both hosts).
    """

    def __init__(self, rows: Sequence[MappingRow], steps: Sequence[str], *, mode: str, out: str | Path,
                 batch_id: str, jobs: int | str = 1, parameters: Mapping[str, Any] | None = None,
                 confirm_lines: Sequence[str] = (), notebooks_dir: str | Path = NOTEBOOKS_DIR,
                 execution_timeout: int = 1800, on_step: Callable[[StepOutcome], None] | None = None,
                 transient_retries: int = 2, kernels: str = "warm", confirm_file: str | Path | None = None,
                 mapping_rows: Sequence[MappingRow] | None = None,
                 on_progress: Callable[[str, str, str], None] | None = None,
                 on_notice: Callable[[str], None] | None = None, check_hosts: bool | None = None) -> None:
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
        self.mapping_rows = list(mapping_rows) if mapping_rows is not None else self.rows
        self.confirm: ConfirmFile | None = None
        if confirm_file:
            self.confirm = load_confirm_file(confirm_file)
            check_confirmations(self.confirm, mapping_rows if mapping_rows is not None else self.rows)
            self.confirm_lines = self.confirm.lines
        self.on_progress = on_progress
        self.check_hosts_first = (any(step in catalog.STEPS for step in self.steps) if check_hosts is None
                                  else bool(check_hosts))
        self.accounts: list[Any] | None = None  # the hosts' answers (`check_hosts`), once asked
        self._used: set[str] = set()  # parameters handed to a notebook that ran (for the manifest)
        self._running: dict[str, tuple[str, float]] = {}  # environment -> (step, started) while it runs
        self._confirm_copy: str | None = None  # the confirm file's copy in the batch folder, this run
        self._interruption = Interruption(self._running_now, on_notice)
        self._stopping = self._interruption.stopping  # set on Ctrl-C: workers start no further step

    def _checked_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The extra parameters, checked and typed against the selected steps (`parameters.check_parameters`)."""
        return check_parameters(given, self.declared)

    def check_hosts(self) -> list[Any]:
        """Ask each host whose token it has, once (`accounts.check_hosts`); [] when the batch's steps need no host.

        Raises:
            HostCheckError: a host refused its token or did not answer, in one sentence naming the setting.
        """
        if self.accounts is None:
            from runbook_lib import accounts

            self.accounts = [] if not self.check_hosts_first or self._nothing_to_run() else accounts.check_hosts(
                accounts.settings_for(self.parameters), legacy_name=self.rows[0].legacy_org if self.rows else "")
        return self.accounts

    def _nothing_to_run(self) -> bool:
        """Whether a resumed apply batch would only skip (every step passed, with its notebook): then no host is
        asked anything. Read without writing; an unreadable or older ledger means there is work."""
        if self.mode != "apply" or not self.ledger_path.is_file():
            return False
        try:
            resume = ResumePoint(Ledger.open_readonly(self.ledger_path), self.batch_dir, self.mode)
        except LedgerError:
            return False
        return all(resume.decide(row.legacy_slug, step) == SKIP for row in self.rows for step in self.steps)

    def resolve_jobs(self) -> JobsChoice:
        """For `jobs="auto"`: the TFE host's rate limit (from the host check, else one ping) and this machine
        decide (`choose_jobs`)."""
        limit = next((a.rate_limit for a in self.accounts or [] if a.which == "tfe" and a.rate_limit), None)
        self.jobs_choice = choose_jobs(len(self.rows), limit or host_rate_limit(self.parameters))
        self.jobs = self.jobs_choice.jobs
        return self.jobs_choice

    def _running_now(self) -> list[tuple[str, str, float]]:
        return [(env, step, since) for env, (step, since) in dict(self._running).items()]

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
            HostCheckError: a host refused its token or did not answer (nothing written).
            LedgerError: another batch (any output folder) holds one of the environments.
            AuditError: the output folder cannot be written (read-only, full); nothing half-written is left.
            BatchInterrupted: (a KeyboardInterrupt) after Ctrl-C, once the running steps have stopped and the
                evidence is written; the locks are released only then. Its `result` says what happened.
        """
        self.check_hosts()
        if self.auto_jobs and self.jobs_choice is None:
            self.resolve_jobs()
        with self._interruption.installed():
            result = self._run_locked()
        if result.interrupted:
            raise BatchInterrupted(result)
        return result

    def _write_mapping(self) -> None:
        """The batch's mapping, facts included, as `<batch>/mapping.csv`: the steps read an environment's facts
        from it, and it is evidence of what the operator said. A different earlier one is kept beside it."""
        from runbook_lib.context import MAPPING_FILE

        target = self.batch_dir / MAPPING_FILE
        text = mapping.write_csv(self.mapping_rows)
        if target.is_file() and target.read_text(encoding="utf-8") != text:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            os.replace(target, target.with_name(f"mapping.{stamp}.csv"))
        target.write_text(text, encoding="utf-8")

    def _run_locked(self) -> BatchResult:
        locks = self._acquire_locks()
        old_umask = os.umask(0o077)  # notebooks, HTML, ledger, summary: readable by their owner only
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        futures: list[Any] = []
        try:
            audit.private_dir(self.batch_dir)
            for row in self.rows:
                audit.private_dir(self.batch_dir / audit.env_dirname(row.legacy_slug))
            audit.check_writable(self.batch_dir)
            self._write_mapping()
            ledger = Ledger(self.ledger_path, batch_id=self.batch_id)
            result = BatchResult(self.batch_dir, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            resume = ResumePoint(ledger, self.batch_dir, self.mode)
            run_id = ledger.begin_batch_run(self._run_facts(ledger))
            self.rate_budget_dir.mkdir(parents=True, exist_ok=True)
            self._pool = kernels.KernelPool(extra_env=self._kernel_env()) if self.kernels == "warm" else None
            # Room for every slot's next seven notebooks: the niced copies lag while the steps keep the CPU busy.
            self._html = HtmlCopies(max_pending=7 * self.jobs + 2)
            try:
                outcomes_by_env = self._run_phases(pool, futures, ledger, resume)
            except KeyboardInterrupt:  # Ctrl-C outside the main thread's handler: the same as a first Ctrl-C
                self._interruption.stop()
                self._stop_workers(pool, futures)
                outcomes_by_env = self._never_started(self._outcomes_of(futures))
            for row in self.rows:
                result.outcomes.extend(outcomes_by_env.get(row.legacy_slug, []))
            result.interrupted = self._stopping.is_set()
            self._close_execution()  # every HTML copy written before the manifest lists the files
            result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            ledger.end_batch_run(run_id, "interrupted" if result.interrupted else "completed",
                                 self._run_facts(ledger, used_only=True))
            self._write_evidence(result, ledger)
            audit.restrict_tree(self.batch_dir)  # files an earlier version or a by-hand run left readable
        except OSError as exc:
            self._stopping.set()
            if not audit.is_folder_problem(exc):
                raise
            raise audit.folder_error(exc, self.batch_dir) from exc
        except BaseException:
            self._stopping.set()  # steps running now go on to their end; no further step starts
            raise
        finally:
            self._stop_workers(pool, futures)  # also after a second Ctrl-C: nothing is released while work runs
            try:
                self._close_execution()
            finally:
                os.umask(old_umask)
                locks.release()
        return result

    def _stop_workers(self, pool: ThreadPoolExecutor, futures: Sequence[Any]) -> None:
        """Cancel steps not yet started and wait until the running ones have stopped (a second Ctrl-C stops
        their kernels: see `batch.interrupt`); the environment locks must outlive the work."""
        from concurrent.futures import wait

        for future in futures:
            future.cancel()
        while True:
            try:
                while wait(futures, timeout=0.2).not_done:
                    self._interruption.poll()
                pool.shutdown(wait=True, cancel_futures=True)
                return
            except KeyboardInterrupt:  # outside the main thread's handler: a second Ctrl-C abandons
                if self._interruption.abandoned.is_set():
                    self._interruption.notice("tfe-runbook: still stopping: waiting for the running steps to end "
                                              "before the environment locks are released")
                else:
                    self._interruption.abandon()

    @staticmethod
    def _outcomes_of(futures: Sequence[Any]) -> dict[str, list[StepOutcome]]:
        found: dict[str, list[StepOutcome]] = {}
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                for outcome in future.result():
                    found.setdefault(outcome.environment, []).append(outcome)
        return found

    def _run_facts(self, ledger: Ledger, *, used_only: bool = False) -> dict[str, Any]:
        """What the ledger records of this run of the batch (see `ledger.batch_run_facts`); the confirm file is
        copied into the batch folder, once per run, with its sha256."""
        parameters = ({k: v for k, v in self.parameters.items() if k in self._used} if used_only
                      else dict(self.parameters))
        facts: dict[str, Any] = {
            "mode": self.mode, "steps": self.steps, "environments": len(self.rows), "jobs": self.jobs,
            "kernels": self.kernels, "parameters": parameters,
            "accounts": [account.facts() for account in self.accounts or []]}
        if self.confirm is not None:
            if self._confirm_copy is None:
                self._confirm_copy = f"confirm.run-{len(ledger.batch_runs()) + 1}.txt"
                (self.batch_dir / self._confirm_copy).write_bytes(self.confirm.data)
            facts["confirm_file"] = {"source": str(self.confirm.path.resolve()), "copy": self._confirm_copy,
                                     "sha256": self.confirm.sha256, "lines": len(self.confirm.numbered)}
        return facts

    def _run_phases(self, pool: ThreadPoolExecutor, futures: list[Any], ledger: Ledger, resume: ResumePoint
                    ) -> dict[str, list[StepOutcome]]:
        """Run every environment's phases as `schedule.Schedule` allows, at most `jobs` at once; returns
        each environment's outcomes in step order. `futures` collects what was submitted (for a stop)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        rows = {row.legacy_slug: row for row in self.rows}
        steps_of = {phase: [s for s in self.steps if phase_of(s) == phase] for phase in range(len(PHASE_ENDS))}
        plan = Schedule(rows, [p for p, steps in steps_of.items() if steps], reads=resume.state_reads,
                        caps=self.jobs_choice.caps() if self.jobs_choice else None)
        stopped: set[str] = set()  # environments with a step that did not pass: later phases are blocked
        outcomes_by_env: dict[str, list[StepOutcome]] = {slug: [] for slug in rows}
        pending: dict[Future, tuple[str, int]] = {}
        while not plan.done():
            if self._stopping.is_set() and not pending:
                break  # interrupted: what never started is reported as blocked below
            room = 0 if self._stopping.is_set() else self.jobs - len(pending)
            for slug, phase in plan.ready(limit=room):
                plan.start(slug, phase)
                future = pool.submit(self._run_environment, rows[slug], ledger, steps_of[phase], slug in stopped,
                                     resume)
                pending[future] = (slug, phase)
                futures.append(future)
            if not pending:
                raise RunbookError("the batch's schedule cannot go on (no phase may start and none runs); "
                                   "this is a bug: run the batch again with --jobs 1 and report it")
            finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            self._interruption.poll()
            for future in finished:
                slug, phase = pending.pop(future)
                outcomes = future.result()
                outcomes_by_env[slug].extend(outcomes)
                if any(o.status not in ("passed", "skipped") for o in outcomes):
                    stopped.add(slug)
                if phase == MIGRATE:
                    resume.refresh(slug)  # step 0 has just said whose state it reads
                plan.finish(slug, phase)
        return self._never_started(outcomes_by_env)

    def _never_started(self, outcomes_by_env: dict[str, list[StepOutcome]]) -> dict[str, list[StepOutcome]]:
        """Add the steps an interrupted batch never started, as blocked."""
        for row in self.rows:
            done = {o.step for o in outcomes_by_env.setdefault(row.legacy_slug, [])}
            outcomes_by_env[row.legacy_slug].extend(
                StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
                for step in self.steps if step not in done)
        return outcomes_by_env

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

    def _acquire_locks(self) -> EnvironmentLocks:
        """Take every environment's lock before anything is written (`locks.acquire_locks`)."""
        return acquire_locks(row.legacy_slug for row in self.rows)

    def _run_environment(self, row: MappingRow, ledger: Ledger, steps: Sequence[str], blocked: bool,
                         resume: ResumePoint | None = None) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        why_blocked = "an earlier step did not pass"
        for step in steps:
            decision = resume.decide(row.legacy_slug, step) if resume is not None and self.mode == "apply" else None
            if self._stopping.is_set():
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
            elif blocked:
                outcome = StepOutcome(row.legacy_slug, step, "blocked", error=why_blocked)
            elif decision == SKIP or (resume is None and self.mode == "apply"
                                      and ledger.passed(row.legacy_slug, step, "apply")):
                outcome = StepOutcome(row.legacy_slug, step, "skipped")
            else:
                if decision == RERUN:
                    self._notify(StepOutcome(row.legacy_slug, step, "rerun", error=(
                        "passed in an earlier run, but its executed notebook is missing from the batch: it runs "
                        "again for the evidence (the step adopts what the first run did)")))
                outcome = self._run_step(row, step, ledger)
                for _ in range(self.transient_retries):
                    if (outcome.status in ("passed", "waiting") or outcome.error_type not in TRANSIENT_ERRORS
                            or self._stopping.is_set()):
                        break
                    self._notify(StepOutcome(row.legacy_slug, step, "retrying", outcome.seconds, outcome.notebook,
                                             outcome.error, outcome.error_type))
                    outcome = self._run_step(row, step, ledger)
                blocked = outcome.status != "passed"
                if outcome.status == "waiting":
                    why_blocked = f"step {step} waits for the operator"
            outcomes.append(outcome)
            self._notify(outcome)
        return outcomes

    def _notify(self, outcome: StepOutcome) -> None:
        if self.on_step:
            with self._lock:
                self.on_step(outcome)

    def _relay(self, ledger: Ledger, environment: str, step: str) -> Callable[[str], None]:
        """The progress callback of one running step: the ledger keeps the line, `on_progress` shows it."""
        def relay(line: str) -> None:
            try:
                ledger.set_progress(environment, step, line)
            except LedgerError:
                pass  # a progress line is a convenience; the step's own record is what counts
            if self.on_progress:
                with self._lock:
                    self.on_progress(environment, step, line)
        return relay

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
        self._running[row.legacy_slug] = (step, started)
        try:
            self._execute(step, target, self._parameters(row, step), self._relay(ledger, row.legacy_slug, step))
        except Interrupted:  # Ctrl-C while this step waited for a kernel: it never started
            return StepOutcome(row.legacy_slug, step, "blocked", error="the batch was interrupted")
        except (PapermillExecutionError, RuntimeError, OSError) as exc:  # RuntimeError/OSError: the kernel died
            error, kind = error_text(exc), error_type(exc)
            if self._interruption.abandoned.is_set():
                error, kind = ABANDONED, "Abandoned"
        finally:
            self._running.pop(row.legacy_slug, None)
        seconds = time.monotonic() - started
        notebook = target if target.exists() else None
        sha = audit.sha256_file(notebook) if notebook else None
        relative = str(notebook.relative_to(self.batch_dir)) if notebook else None
        row_after = ledger.latest(row.legacy_slug, step, self.mode)
        fresh = row_after if row_after and (before is None or row_after.id != before.id) else None
        if fresh and fresh.status == "running":
            # The notebook failed before its final cell: close its ledger row with papermill's error.
            ledger.finish(fresh.id, "failed", error=error or "the notebook stopped before its verdict")
            fresh = ledger.get(fresh.id)
        if fresh and notebook:  # linked before the HTML copy: its evidence is recorded whatever follows
            ledger.attach_notebook(fresh.id, relative, sha)
        if fresh is None and error is None:
            error = "the notebook recorded no outcome in the ledger"
        if fresh is not None and fresh.status == "passed" and notebook is None:
            # Every passed step has its executed notebook in the trail; without it the pass is not taken.
            error = "the step recorded PASS but its executed notebook was not written; run the batch again"
            fresh = None
        if fresh is None:
            ledger.record(row.legacy_slug, step, self.mode, "failed", error=error, notebook_path=relative,
                          notebook_sha256=sha)
        if notebook:
            if self._html is not None:
                self._html.submit(notebook)
            else:
                audit.notebook_to_html(notebook)
        if fresh is not None and fresh.status == "waiting" and error is None:
            instruction = fresh.evidence.get("instruction") or fresh.error or f"step {step} waits for the operator"
            return StepOutcome(row.legacy_slug, step, "waiting", round(seconds, 2), str(notebook) if notebook else None,
                               str(instruction))
        status = "passed" if fresh is not None and fresh.status == "passed" and error is None else "failed"
        return StepOutcome(row.legacy_slug, step, status, round(seconds, 2),
                           str(notebook) if notebook else None, error if status == "failed" else None,
                           kind if status == "failed" else None)

    def _execute(self, step: str, target: Path, parameters: dict[str, Any],
                 progress: Callable[[str], None] | None = None) -> None:
        """Run one step notebook into `target` through papermill, in a warm kernel or a fresh one.

        Raises:
            PapermillExecutionError: a cell raised (the kernel is fine and is kept).
            RuntimeError, OSError: the kernel died, hung or a cell timed out (a warm kernel is replaced).
        """
        import papermill
        from papermill.exceptions import PapermillExecutionError

        common = dict(parameters=parameters, progress_bar=False, kernel_name="python3",
                      execution_timeout=self.execution_timeout, progress=progress)
        source = str(self.notebooks_dir / f"{step}.ipynb")
        kernels.register_engine()
        if self._pool is None:
            socket_dir = tempfile.mkdtemp(prefix="tfe-runbook-kernel-")  # short path: unix sockets allow ~100 chars
            try:
                papermill.execute_notebook(source, str(target), **common, engine_name=kernels.FRESH_ENGINE,
                                           kernel_manager_class=private_kernel_manager(socket_dir, self._kernel_env()),
                                           extra_arguments=list(kernels.KERNEL_ARGUMENTS))
            finally:
                shutil.rmtree(socket_dir, ignore_errors=True)
            return
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
        # Parameters of earlier runs of the batch stay (each run's own are in the manifest's "runs").
        runs = ledger.batch_runs()
        used = parameters_of_every_run([run["facts"] for run in runs],
                                       {k: v for k, v in self.parameters.items() if k in self._used})
        parameters = {**used, "mode": self.mode, "steps": self.steps,
                      "environments": [r.legacy_slug for r in self.rows], "jobs": self.jobs,
                      "jobs_auto": self.jobs_choice.__dict__ if self.jobs_choice else None,
                      "kernels": self.kernels}
        first = min((run["started_at"] for run in runs), default=result.started_at)
        started = datetime.fromisoformat(first).isoformat(timespec="seconds") if first else result.started_at
        write_evidence(self.batch_dir, ledger, mode=self.mode,
                       workspaces={r.legacy_slug: r.workspace_slug for r in self.rows},
                       parameters=parameters, started_at=started, finished_at=result.finished_at)
