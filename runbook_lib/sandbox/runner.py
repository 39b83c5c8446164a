"""The sandbox's run worker: real `terraform plan` (and, when confirmed, `apply`) for queued runs.

A small pool: one dispatcher thread decides which queued run may start, `workers` threads (default 2)
execute them, so the API stays responsive while terraform works. Which runs are executed is recorded in
the store's `run_jobs` table: every run announced as `pending` by the store (pushes, `POST /api/v2/runs`,
the legacy `POST .../plan`) gets a job row. Seeded history (the `applied` runs, and `app-staging`'s run
"in progress") has none, so it is never touched.

Scheduling rules (as TFE):
- a run in a locked workspace (or legacy environment) stays `pending` until it is unlocked; the
  dispatcher polls every 0.25 s, so an unlock wakes the queue without any hook in the unlock handlers;
- a workspace runs one run at a time, oldest first: a later run waits while another is `planning`,
  `planned` (awaiting confirmation), `confirmed` or `applying`;
- `auto-apply` off: a plan with changes waits in `planned` until `actions/apply` (then `confirmed` ->
  `applying` -> `applied`, a new state version) or `actions/discard`; plan-only runs and plans without
  changes end `planned_and_finished`; legacy runs only plan (`planned` / `planned_and_finished`).

A run itself (work directory, terraform, counts) is `run_exec`; what happens to a run's outcome (statuses,
state versions) is `run_flows`.

Run duration and capacity (`faults.RunProfile`, read from `<data>/run_profile.json` at start; off by
default): each plan first waits `run_seconds` (with jitter) in `planning`, as a real TFE's queue and plan
take time; at most `run_capacity` runs execute at once (TFE_CAPACITY_CONCURRENCY), the others stay
`pending`. Waiting runs hold a capacity slot but no terraform slot: terraform itself still runs on at most
`workers` threads at a time.

Restart: jobs left `running` when the process died are re-queued (their run goes back to `pending`);
a run that was `applying` ends `errored` (a half-done apply cannot be repeated safely). A run that
exceeds the timeout (default 300 s; `Runner.timeout_s`) ends `errored` with "timed out after N s" in its
log. Cancel/discard while a worker is busy: the worker finishes its terraform command and then drops
its result (every status change is a compare-and-set on the run's current status).
"""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from runbook_lib import terraform
from runbook_lib.sandbox import vcs
from runbook_lib.sandbox.faults import RunProfile
from runbook_lib.sandbox.run_exec import OVERRIDE_FILE, OVERRIDE_TEXT, PlanOutcome, RunFailed, RunSpec, RunTimedOut
from runbook_lib.sandbox.run_flows import RunFlows, Task
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.store.runs import FINAL_STATUSES, RUN_STATUSES

__all__ = ["OVERRIDE_FILE", "OVERRIDE_TEXT", "PlanOutcome", "RunFailed", "RunSpec", "RunTimedOut", "Runner", "Task"]

log = logging.getLogger("runbook_lib.sandbox.runner")

DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.25
HOOK_RESCAN_S = 2.0
STOP_WAIT_S = 60.0
# Statuses of a workspace run that hold later runs of the same workspace back: every status between
# leaving the queue and ending (run.mdx), a saved plan apart (it waits without blocking the queue).
ACTIVE_TFE_STATUSES = tuple(s for s in RUN_STATUSES if s not in FINAL_STATUSES and s not in ("pending", "planned_and_saved"))


class Runner(RunFlows):
    """The run worker pool of one sandbox server.

    Args:
        store: the sandbox store.
        data_dir: the data directory (runs work in `<data>/runs/<run id>`).
        address: the server's base URL (for hooks, and `ATLAS_ADDRESS` in runs).
        ca_file: the CA certificate of an HTTPS sandbox, or None.
        workers: worker threads.
        timeout_s: seconds a run may take (plan, and apply separately).
    """

    def __init__(self, store: Store, data_dir: Path, *, address: str, ca_file: str | None = None,
                 workers: int = DEFAULT_WORKERS, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.address = address
        self.ca_file = ca_file
        self.workers = workers
        self.timeout_s = timeout_s
        self.paused = False
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._versions: dict[str, str] = {}
        self.runs_dir = self.data_dir / "runs"
        self._plugin_dir = ""
        self._rc_1x = ""
        self._rc_011 = ""
        self.profile = RunProfile()
        self._profile_rng = random.Random(0)
        self._terraform_slots = threading.Semaphore(workers)
        self._run_token: str | None = None
        self._run_token_lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare providers and hooks, re-queue runs a stopped process left behind, start the threads."""
        work = self.data_dir / "runner"
        work.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        # Made once here: two workers creating the same provider symlink at once would race.
        self._plugin_dir = terraform.plugin_dir_011(self.data_dir / "plugins-0.11")
        self._mirror_dir = terraform.provider_mirror_1x(self.data_dir / "providers-1.x")
        self._rc_1x_path = work / "terraform-1x.rc"
        self._write_rc_1x(self._run_token)
        self._rc_011 = terraform.write_cli_config(work / "terraform-011.rc")
        vcs.write_hook_config(self.data_dir, self.address, self.ca_file)
        self.install_hooks()
        self._recover()
        self.profile = RunProfile.load(self.data_dir)
        self._profile_rng = random.Random(self.profile.seed)
        self.store.run_listeners.append(self._on_new_run)
        self._threads = [threading.Thread(target=self._dispatch_loop, name="sandbox-run-dispatch", daemon=True)]
        self._threads += [threading.Thread(target=self._worker_loop, name=f"sandbox-run-worker-{i}", daemon=True)
                          for i in range(self._task_threads())]
        for thread in self._threads:
            thread.start()
        self.wake()

    def stop(self) -> None:
        """Stop taking runs, let running terraform commands finish (up to 60 s), join the threads."""
        if self._on_new_run in self.store.run_listeners:
            self.store.run_listeners.remove(self._on_new_run)
        self._stopping.set()
        self._wake.set()
        for _ in range(self._task_threads()):
            self._queue.put(None)
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
            if thread.is_alive():
                log.warning("sandbox run thread %s still busy at stop; its run is re-queued on the next start",
                            thread.name)
        self._threads = []

    def _task_threads(self) -> int:
        """Threads that hold runs: one per capacity slot (a run waiting out its duration holds one)."""
        return max(self.workers, self.profile.run_capacity)

    def _capacity(self) -> int:
        return self.profile.run_capacity or self.workers

    def install_hooks(self) -> list[str]:
        """Install the push hook in every bare repository (also called after seeding, and every 2 s)."""
        return vcs.install_hooks(self.data_dir)

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        self._wake.set()

    def pause(self) -> None:
        """Start no further runs (queued ones stay `pending`); running ones finish."""
        self.paused = True

    def resume(self) -> None:
        """Start runs again."""
        self.paused = False
        self.wake()

    def idle(self) -> bool:
        """True when no job is queued, confirmed or running (runs awaiting confirmation do not count)."""
        with self._inflight_lock:
            busy = bool(self._inflight)
        return not busy and not self.store.run_jobs(("queued", "apply", "running"))

    def _on_new_run(self, kind: str, run_id: str) -> None:
        self.store.add_run_job(kind, run_id)
        self.wake()

    def _recover(self) -> None:
        for job in self.store.run_jobs(("running",)):
            run_id = job["run_id"]
            if job["kind"] == "legacy":
                run = self.store.find_legacy_run(run_id)
                if run is not None and run["status"] == "planning":
                    self.store.update_legacy_run(run_id, status="pending")
                    self.store.set_run_job(run_id, state="queued")
                    continue
            else:
                run = self.store.run_by_id(run_id)
                if run is not None and run["status"] == "planning":
                    plan = self.store.plan_for_run(run_id)
                    self.store.transition_run(run_id, "pending", restart=True)
                    if plan:
                        self.store.update_plan(plan["id"], "pending")
                    self.store.set_run_job(run_id, state="queued")
                    continue
                if run is not None and run["status"] == "applying":
                    self.store.transition_run(run_id, "errored")
                    self.store.set_run_job(run_id, state="done",
                                           apply_log="Error: the sandbox stopped during this apply; it was not resumed.")
                    continue
            self.store.set_run_job(run_id, state="done")
        log.debug("run jobs recovered")

    # --- dispatcher --------------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        last_scan = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if time.monotonic() - last_scan >= HOOK_RESCAN_S:
                    # Repositories created after start (e.g. `git init --bare` by hand) get their hook here.
                    self.install_hooks()
                    last_scan = time.monotonic()
                self.store.queue_scheduled_destroys()  # a workspace's auto-destroy-at may have come
                if not self.paused:
                    self._dispatch_once()
            except sqlite3.ProgrammingError:
                break  # the store was closed under us: the server is stopping
            except Exception:  # noqa: BLE001 - the dispatcher must outlive one bad row; it is logged
                log.exception("sandbox run dispatcher: unexpected error")

    def _dispatch_once(self) -> None:
        jobs = self.store.run_jobs(("queued", "apply"))
        if not jobs:
            return
        held: set[str] = set()
        with self.store.tx():
            for job in jobs:
                with self._inflight_lock:
                    if len(self._inflight) >= self._capacity():
                        break  # the host's run capacity is used: the rest stay queued (pending)
                task = (self._next_legacy(job, held) if job["kind"] == "legacy" else self._next_tfe(job, held))
                if task is not None:
                    with self._inflight_lock:
                        self._inflight.add(task.target)
                    self.store.set_run_job(task.run_id, state="running")
                    self._queue.put(task)

    def _busy(self, target: str) -> bool:
        with self._inflight_lock:
            return target in self._inflight

    def _next_tfe(self, job: dict[str, Any], held: set[str]) -> Task | None:
        run_id = job["run_id"]
        run = self.store.run_by_id(run_id)
        wanted = "pending" if job["state"] == "queued" else "confirmed"
        if run is None or run["status"] != wanted:
            self.store.set_run_job(run_id, state="done")  # discarded, canceled or deleted meanwhile
            return None
        ws_id = run["workspace_id"]
        if run["plan_only"] and job["state"] == "queued":
            # "Speculative plans are plan-only runs ... They can begin at any time without waiting for other
            # runs, since they don't affect real infrastructure" (terraform-website 6a3873a83,
            # content/source/docs/cloud/run/index.html.md): no queue, no lock, their own slot.
            if self.store.workspace_by_id(ws_id) is None:
                self.store.set_run_job(run_id, state="done")
                return None
            self.store.transition_run(run_id, "planning")
            plan = self.store.plan_for_run(run_id)
            if plan:
                self.store.update_plan(plan["id"], "running")
            return Task("plan", "tfe", run_id, "speculative:" + run_id)
        if ws_id in held or self._busy(ws_id):
            return None
        held.add(ws_id)  # one decision per workspace per pass keeps its runs in order
        ws = self.store.workspace_by_id(ws_id)
        if ws is None:
            self.store.set_run_job(run_id, state="done")
            return None
        if job["state"] == "apply":
            self.store.transition_run(run_id, "applying")
            return Task("apply", "tfe", run_id, ws_id)
        if ws["locked"] or self.store.list_runs(ws_id, list(ACTIVE_TFE_STATUSES)):
            return None
        self.store.transition_run(run_id, "planning")  # takes the workspace's lock for the run
        plan = self.store.plan_for_run(run_id)
        if plan:
            self.store.update_plan(plan["id"], "running")
        return Task("plan", "tfe", run_id, ws_id)

    def _next_legacy(self, job: dict[str, Any], held: set[str]) -> Task | None:
        run_id = job["run_id"]
        run = self.store.find_legacy_run(run_id)
        if run is None or run["status"] != "pending" or job["state"] != "queued":
            self.store.set_run_job(run_id, state="done")
            return None
        target = "env:" + run["env_id"]
        if target in held or self._busy(target):
            return None
        held.add(target)
        env = self.store.environment_by_id(run["env_id"])
        if env is None:
            self.store.set_run_job(run_id, state="done")
            return None
        if env["locked"]:
            return None
        self.store.update_legacy_run(run_id, status="planning")
        return Task("plan", "legacy", run_id, target)

    # --- workers -------------------------------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                if task.action == "plan":
                    # Queue plus plan time of a real host; the run holds its capacity slot meanwhile.
                    with self._inflight_lock:
                        seconds = self.profile.draw_seconds(self._profile_rng)
                    self._stopping.wait(seconds)
                with self._terraform_slots:
                    if task.kind == "legacy":
                        self._plan_legacy(task.run_id)
                    elif task.action == "plan":
                        self._plan_tfe(task.run_id)
                    else:
                        self._apply_tfe(task.run_id)
            except sqlite3.ProgrammingError:
                log.warning("sandbox stopped while run %s was executing; it is re-queued on the next start",
                            task.run_id)
            except Exception:  # noqa: BLE001 - the worker's guard: the run ends errored with the traceback
                log.exception("sandbox run %s failed unexpectedly", task.run_id)
                self._fail_unexpectedly(task, traceback.format_exc())
            finally:
                with self._inflight_lock:
                    self._inflight.discard(task.target)
                self.wake()
