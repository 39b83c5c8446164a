"""What the run worker does with one workspace or legacy run: plan it, record the outcome, apply a confirmed
run and store the state it wrote, and end a run that failed unexpectedly.

As TFE (run.mdx "Run States"): `auto-apply` off, a plan with changes waits in `planned` until
`actions/apply` (then `confirmed` -> `applying` -> `applied`, a new state version) or `actions/discard`;
plan-only runs and plans without changes end `planned_and_finished`; legacy runs only plan (`planned` /
`planned_and_finished`). Cancel/discard while a worker is busy: the worker finishes its terraform command
and then drops its result (every status change is a compare-and-set on the run's current status).
`Runner` (runner.py) mixes this in.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook_lib.git import GitError
from runbook_lib.sandbox import vcs
from runbook_lib.sandbox.errors import ConflictError, NotFoundError, SandboxError
from runbook_lib.sandbox.run_exec import PlanOutcome, RunFailed, RunSpec, TerraformExecution
from runbook_lib.sandbox.store import md5_hex

log = logging.getLogger("runbook_lib.sandbox.runner")

@dataclass(frozen=True)
class Task:
    """One unit of work for a worker thread."""

    action: str  # "plan" or "apply"
    kind: str  # "tfe" or "legacy"
    run_id: str
    target: str  # workspace or environment id: one task per target at a time



class RunFlows(TerraformExecution):
    """Plan, apply and record workspace and legacy runs (the pool in runner.py hands them out)."""

    runs_dir: Path

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
        options = json.loads(run["options"] or "{}")
        # run-specific variables are HCL literals that take precedence over the workspace's (run.mdx "Create a
        # Run": "All values must be expressed as an HCL literal")
        own = {v["key"]: v["value"] for v in options.get("variables") or []}
        variables = [{"key": v["key"], "value": v["value"], "category": v["category"], "hcl": bool(v["hcl"])}
                     for v in self.store.list_vars(ws["id"])
                     if not (v["category"] == "terraform" and v["key"] in own)]
        variables += [{"key": k, "value": value, "category": "terraform", "hcl": True} for k, value in own.items()]
        spec = RunSpec(terraform_version=options.get("terraform-version") or ws["terraform_version"],
                       working_directory=ws["working_directory"] or "",
                       state=self.store.state_version_bytes(current["id"]) if current else None,
                       variables=variables, is_destroy=bool(run["is_destroy"]),
                       structured=bool(self.store.workspace_settings(ws["id"])["structured-run-output-enabled"]),
                       targets=tuple(options.get("target-addrs") or ()), replaces=tuple(options.get("replace-addrs") or ()),
                       refresh=options.get("refresh", True), refresh_only=bool(options.get("refresh-only")),
                       debug=bool(options.get("debugging-mode")))
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
        # run.mdx: a plan without changes (or a plan-only run) ends `planned_and_finished`, unless the run was
        # created with `allow-empty-apply` ("can apply the run even when the plan contains no changes"); a
        # saved-plan run (`save-plan`) ends `planned_and_saved` and waits for a later confirmation.
        applies = outcome.has_changes or bool(options.get("allow-empty-apply"))
        status = ("planned_and_finished" if not applies or run["plan_only"]
                  else "planned_and_saved" if options.get("save-plan") else "planned")
        if status == "planned":
            # Written before the status shows `planned`: a confirmation may follow at once.
            (run_dir / "run.json").write_text(json.dumps({"cwd": str(outcome.cwd), "binary": outcome.binary,
                                                          "structured": bool(outcome.redacted is not None)}))
        with self.store.tx():
            if not self._transition(run_id, ("planning",), status, has_changes=int(outcome.has_changes)):
                if self.store.plan_by_id(plan["id"]) is not None:  # gone with its workspace meanwhile
                    self.store.update_plan(plan["id"], "canceled", **plan_fields)
                self._finish(run_id)
                return
            self.store.update_plan(plan["id"], "finished", **plan_fields)
            if outcome.redacted is not None:
                self.store.set_redacted_plan(plan["id"], outcome.redacted)
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
            options = json.loads(run["options"] or "{}")
            env = self._run_env(options.get("terraform-version") or ws["terraform_version"], self._env_vars(ws["id"]),
                                debug=bool(options.get("debugging-mode")))
            structured = bool(info.get("structured"))
            result = self._tf(binary, ["apply", "-input=false", "-no-color", *(["-json"] if structured else []),
                                       "plan.out"], cwd, env, deadline)
            text = result.output
            if result.returncode != 0:
                raise RunFailed(f"terraform apply failed with exit code {result.returncode}")
            counts = _apply_counts(result.stdout)
            body = (cwd / "terraform.tfstate").read_bytes()
            doc = json.loads(body)
            with self.store.tx():
                # Recorded even if the run was canceled meanwhile: the apply really happened.
                self.store.create_state_version(ws, {"id": run["created_by"]}, serial=int(doc["serial"]),
                                                md5=md5_hex(body), lineage=doc.get("lineage"), state=body,
                                                run_id=run_id, require_lock=False)
                self._record_apply(run_id, text, counts)
                self._transition(run_id, ("applying",), "applied")
            self.store.set_run_job(run_id, apply_log=text)
        except (RunFailed, OSError, ValueError, KeyError, SandboxError) as exc:
            # SandboxError: the store refused the new state (lineage or serial conflict).
            text += f"\nError: {exc}\n"
            with self.store.tx():
                self._record_apply(run_id, text, None)
                self._transition(run_id, ("applying",), "errored")
            self.store.set_run_job(run_id, apply_log=text)
        self._finish(run_id)

    def _record_apply(self, run_id: str, log_text: str, counts: tuple[int, int, int] | None) -> None:
        """The apply's log and its counts (applies.mdx `resource-additions`, ...), from terraform's output."""
        apply = self.store.apply_for_run(run_id)
        if apply is None:
            return
        fields: dict[str, Any] = {"log": log_text}
        if counts is not None:
            fields.update(additions=counts[0], changes=counts[1], destructions=counts[2])
        self.store.update_apply(apply["id"], **fields)

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


_APPLIED = re.compile(r"Resources: (\d+) added, (\d+) changed, (\d+) destroyed")


def _apply_counts(output: str) -> tuple[int, int, int] | None:
    """(added, changed, destroyed) from terraform's apply output: the `change_summary` message of a JSON
    log (`"operation": "apply"`), else the `Apply complete! Resources: ...` line; None when neither."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            changes = msg.get("changes") if msg.get("type") == "change_summary" else None
            if isinstance(changes, dict) and changes.get("operation") == "apply":
                return int(changes.get("add", 0)), int(changes.get("change", 0)), int(changes.get("remove", 0))
    found = _APPLIED.search(output)
    return (int(found.group(1)), int(found.group(2)), int(found.group(3))) if found else None
