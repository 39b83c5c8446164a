"""Configuration versions, runs, plans, and the run worker's job table."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (_b, new_id, now_iso, row_by_id, StoreBase, visible_row)


# Every run status of run.mdx ("Run States") and go-tfe `run.go` (type RunStatus).
RUN_STATUSES = (
    "pending", "fetching", "fetching_completed", "pre_plan_running", "pre_plan_completed", "queuing",
    "plan_queued", "planning", "planned", "cost_estimating", "cost_estimated", "policy_checking",
    "policy_override", "policy_soft_failed", "policy_checked", "post_plan_running", "post_plan_completed",
    "post_plan_awaiting_decision", "planned_and_saved", "confirmed", "queuing_apply", "apply_queued",
    "pre_apply_running", "pre_apply_completed", "applying", "applied", "planned_and_finished", "discarded",
    "errored", "canceled", "force_canceled")

# Statuses a run never leaves (run.mdx: "final states"; `policy_soft_failed` is final for the
# plan-only runs it is given to).
FINAL_STATUSES = frozenset(("applied", "planned_and_finished", "discarded", "errored", "canceled", "force_canceled",
                            "policy_soft_failed"))

# Paused for a person (confirmation, a policy override, a post-plan task decision; a saved plan waits for its
# apply the same way) or queued: only these can be discarded. "The discard action can be used to skip any
# remaining work on runs that are paused waiting for confirmation or priority. This includes runs in the
# "pending," "needs confirmation," "policy checked," and "policy override" states" (terraform-website
# 6a3873a83, content/source/docs/cloud/api/run.html.md "Discard a Run"). A planning run cannot be (cancel it).
DISCARDABLE_STATUSES = frozenset(("pending", "planned", "cost_estimated", "policy_checked", "policy_override",
                                  "post_plan_awaiting_decision", "post_plan_completed", "planned_and_saved"))

# Paused for confirmation: `actions/apply` moves these on (run.mdx "Apply a Run").
CONFIRMABLE_STATUSES = frozenset(("planned", "cost_estimated", "policy_checked", "post_plan_completed",
                                  "planned_and_saved"))

# Still working, so cancelable (run.mdx "Cancel a Run": "interrupts a currently planning or applying run";
# a queued one is canceled before it starts).
CANCELABLE_STATUSES = frozenset(("pending", "fetching", "fetching_completed", "pre_plan_running",
                                 "pre_plan_completed", "queuing", "plan_queued", "planning", "cost_estimating",
                                 "policy_checking", "post_plan_running", "confirmed", "queuing_apply",
                                 "apply_queued", "pre_apply_running", "pre_apply_completed", "applying"))

_PLAN_DONE = ("planned", "planned_and_finished", "planned_and_saved", "cost_estimating", "policy_checking",
              "post_plan_running")
_APPLY_PATH = ("confirmed", "queuing_apply", "apply_queued", "pre_apply_running", "applying")
_STOP = ("errored", "canceled")

# The lifecycle of run.mdx as a table: status -> statuses it may move to. A paused run moves on when a
# person confirms (`confirmed`) or discards it; a working one ends `errored` or `canceled`.
RUN_TRANSITIONS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "pending": ("fetching", "queuing", "plan_queued", "pre_plan_running", "planning", "discarded", *_STOP),
    "fetching": ("fetching_completed", "queuing", "plan_queued", "planning", *_STOP),
    "fetching_completed": ("pre_plan_running", "queuing", "plan_queued", "planning", *_STOP),
    "pre_plan_running": ("pre_plan_completed", *_STOP),
    "pre_plan_completed": ("queuing", "plan_queued", "planning", *_STOP),
    "queuing": ("plan_queued", "planning", *_STOP),
    "plan_queued": ("planning", *_STOP),
    "planning": (*_PLAN_DONE, *_STOP, "force_canceled"),
    "planned": ("cost_estimating", "policy_checking", "post_plan_running", *_APPLY_PATH, "discarded", *_STOP),
    "cost_estimating": ("cost_estimated", *_STOP),
    "cost_estimated": ("policy_checking", "post_plan_running", "planned", "planned_and_finished", *_APPLY_PATH,
                       "discarded", *_STOP),
    "policy_checking": ("policy_checked", "policy_override", "policy_soft_failed", *_STOP),
    "policy_override": ("policy_checked", "discarded", *_STOP),
    "policy_checked": ("post_plan_running", "planned", "planned_and_finished", *_APPLY_PATH, "discarded", *_STOP),
    "post_plan_running": ("post_plan_completed", "post_plan_awaiting_decision", *_STOP),
    "post_plan_awaiting_decision": ("post_plan_completed", "discarded", *_STOP),
    "post_plan_completed": ("planned", "planned_and_finished", *_APPLY_PATH, "discarded", *_STOP),
    "planned_and_saved": ("confirmed", "apply_queued", "discarded", *_STOP),
    "confirmed": ("queuing_apply", "apply_queued", "pre_apply_running", "applying", *_STOP),
    "queuing_apply": ("apply_queued", "applying", *_STOP),
    "apply_queued": ("pre_apply_running", "applying", *_STOP),
    "pre_apply_running": ("pre_apply_completed", *_STOP),
    "pre_apply_completed": ("applying", *_STOP),
    "applying": ("applied", *_STOP, "force_canceled"),
}.items()}

# A run holds its workspace's lock from the moment it starts working until it ends (go-tfe
# `workspace.go` LockedBy is a run, user or team; `tfe.go` "is locked by Run"; workspaces.mdx: "runs
# lock the workspace"). A saved plan ends the run's hold until it is confirmed.
_RELEASES_LOCK = FINAL_STATUSES | {"planned_and_saved"}

# An apply's status follows its run (applies.mdx "Apply States"): `pending` until the run is confirmed,
# `queued` until terraform starts, `running`, then `finished`; a run that ends before its apply started
# leaves it `unreachable`, one that ends during it `errored` or `canceled`.
_APPLY_STATUS = {"confirmed": "queued", "queuing_apply": "queued", "apply_queued": "queued",
                 "pre_apply_running": "queued", "pre_apply_completed": "queued", "applying": "running",
                 "applied": "finished"}
APPLY_FINAL = frozenset(("finished", "errored", "canceled", "unreachable"))


class RunStore(StoreBase):
    """Configuration versions, runs, plans, and the run worker's job table."""

    # --- configuration versions, runs, plans -------------------------------------------------------

    def create_configuration_version(self, ws_id: str, *, auto_queue_runs: bool = True, speculative: bool = False,
                                     source: str = "tfe-api", ingress: dict[str, Any] | None = None,
                                     provisional: bool = False) -> dict[str, Any]:
        """Create a configuration version awaiting its tarball upload.

        A provisional one (configuration-versions.mdx `provisional`) does not become the workspace's
        current configuration until a run uses it.
        """
        row = {"id": new_id("cv-"), "workspace_id": ws_id, "status": "pending", "source": source,
               "speculative": _b(speculative), "auto_queue_runs": _b(auto_queue_runs),
               "provisional": _b(provisional),
               "upload_token": secrets.token_urlsafe(24), "tarball": None,
               "ingress": json.dumps(ingress) if ingress else None, "created_at": now_iso()}
        with self.tx():
            self._insert("configuration_versions", row)
            self._insert("blobs", {"token": row["upload_token"], "kind": "cv", "owner_id": row["id"],
                                   "direction": "upload"})
        return row

    configuration_version_by_id = row_by_id("configuration_versions", "A configuration version without access checks")

    get_configuration_version = visible_row("configuration_versions", "A configuration version of a workspace")

    def list_configuration_versions(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's configuration versions, newest first."""
        return self._q("SELECT * FROM configuration_versions WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC",
                       (ws_id,))

    def current_configuration_version(self, ws_id: str) -> dict[str, Any] | None:
        """The workspace's newest configuration version that is not provisional (configuration-versions.mdx:
        a provisional version does not become the workspace's current one), or None."""
        return self._one("SELECT * FROM configuration_versions WHERE workspace_id = ? AND provisional = 0 "
                         "ORDER BY created_at DESC, rowid DESC LIMIT 1", (ws_id,))

    def upload_configuration(self, cv_id: str, tarball: bytes, *, queue: bool = False) -> None:
        """Store an uploaded configuration tarball; the version becomes `uploaded`.

        With `queue` (an upload through the version's upload URL), a version created with `auto-queue-runs`
        queues a run (configuration-versions.mdx: "When true, runs are queued automatically when the
        configuration version is uploaded"; the default), plan-only when the version is speculative. The VCS
        ingress queues its own runs (vcs.py) and does not ask.
        """
        with self.tx():
            self._update("configuration_versions", "id", cv_id, {"tarball": tarball, "status": "uploaded"})
            cv = self.configuration_version_by_id(cv_id)
            ws = self.workspace_by_id(cv["workspace_id"]) if cv else None
            if queue and cv is not None and ws is not None and cv["auto_queue_runs"]:
                self.create_run(ws, None, cv_id=cv_id, message="Triggered via API", plan_only=bool(cv["speculative"]),
                                options={"terraform-version": ws["terraform_version"]})

    def first_run_of_configuration(self, cv_id: str) -> dict[str, Any] | None:
        """The first run that used a configuration version ("the run created by the configuration",
        configuration-versions.mdx), or None."""
        return self._one("SELECT * FROM runs WHERE configuration_version_id = ? ORDER BY created_at, rowid LIMIT 1",
                         (cv_id,))

    def create_run(self, ws: dict[str, Any], user: dict[str, Any] | None, *, cv_id: str | None, message: str,
                   is_destroy: bool = False, plan_only: bool = False, auto_apply: bool | None = None,
                   source: str = "tfe-api", status: str = "pending",
                   options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a run and its plan; a pending run is announced to the run listeners after commit.

        `options` holds the create request's run settings the sandbox answers back (allow-empty-apply,
        save-plan, refresh, target/replace addresses, terraform-version, variables).

        A run in a locked workspace stays pending (queued), as in real TFE.
        """
        stamp = now_iso()
        # the agent pool the run is for, when its workspace runs on agents (run.mdx `filter[agent_pool_names]`:
        # "runs that use one of the agent pools"); the sandbox's run worker stands in for the pool's agents
        full = self.workspace_by_id(ws["id"])
        pool = self.workspace_agent_pool(full) if full else None  # type: ignore[attr-defined]
        if pool:
            options = {**(options or {}), "agent-pool-id": pool}
        stamps = {status_timestamp_key(status): stamp}
        if status == "pending":
            # A new run may be planned as soon as the workspace lets it (go-tfe RunStatusTimestamps
            # `plan-queueable-at`, which go-tfe's own run tests expect on every created run).
            stamps["plan-queueable-at"] = stamp
        run = {"id": new_id("run-"), "workspace_id": ws["id"], "configuration_version_id": cv_id, "status": status,
               "message": message, "source": source, "is_destroy": _b(is_destroy), "plan_only": _b(plan_only),
               "auto_apply": _b(ws["auto_apply"] if auto_apply is None else auto_apply), "has_changes": 0,
               "created_by": user["id"] if user else None,
               "status_timestamps": json.dumps(stamps), "options": json.dumps(options or {}),
               "created_at": stamp}
        plan = {"id": new_id("plan-"), "run_id": run["id"], "status": "pending", "has_changes": 0, "additions": 0,
                "changes": 0, "destructions": 0, "imports": 0, "log": None, "json_output": None,
                "json_download_token": secrets.token_urlsafe(24), "log_token": secrets.token_urlsafe(24),
                "status_timestamps": json.dumps({"queued-at": stamp})}
        apply = {"id": "apply-" + run["id"].removeprefix("run-"), "run_id": run["id"], "status": "pending",
                 "log": None, "log_token": secrets.token_urlsafe(24), "confirmed_by": None,
                 "status_timestamps": "{}"}
        with self.tx():
            self._insert("runs", run)
            self._insert("plans", plan)
            self._insert("applies", apply)
            self._insert("blobs", {"token": apply["log_token"], "kind": "apply-log", "owner_id": apply["id"],
                                   "direction": "download"})
            self._insert("blobs", {"token": plan["json_download_token"], "kind": "plan-json", "owner_id": plan["id"],
                                   "direction": "download"})
            self._insert("blobs", {"token": plan["log_token"], "kind": "plan-log", "owner_id": plan["id"],
                                   "direction": "download"})
            # the run's first event (Terraform `internal/cloud/backend_run_warning_test.go` lists a run's
            # events as `created` ... `queued`)
            self.record_run_event(run["id"], "created", run["created_by"])
            if status == "pending":
                self._pending_run_events.append(("tfe", run["id"]))
        return run

    get_run = visible_row("runs", "A run of a workspace")

    run_by_id = row_by_id("runs", "A run without access checks (run worker)")

    def list_runs(self, ws_id: str, statuses: list[str] | None = None) -> list[dict[str, Any]]:
        """A workspace's runs, newest first, optionally only those in `statuses`."""
        if statuses:
            marks = ",".join("?" for _ in statuses)
            return self._q(f"SELECT * FROM runs WHERE workspace_id = ? AND status IN ({marks}) "
                           "ORDER BY created_at DESC, rowid DESC", (ws_id, *statuses))
        return self._q("SELECT * FROM runs WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC", (ws_id,))

    def run_agent_pool_name(self, run: dict[str, Any]) -> str | None:
        """The name of the agent pool a run was created for, or None (not an agent-mode run, or the pool is gone)."""
        pool_id = json.loads(run["options"] or "{}").get("agent-pool-id")
        row = self._one("SELECT name FROM agent_pools WHERE id = ?", (pool_id,)) if pool_id else None
        return row["name"] if row else None

    def list_org_runs(self, org: str) -> list[dict[str, Any]]:
        """Every run of the organization's workspaces, newest first."""
        return self._q("SELECT r.* FROM runs r JOIN workspaces w ON w.id = r.workspace_id WHERE w.org = ? "
                       "ORDER BY r.created_at DESC, r.rowid DESC", (org,))

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change a run's other columns (configuration version, has_changes); statuses go through
        `transition_run`."""
        if "status" in fields:
            raise ValueError("a run's status changes only through transition_run")
        with self.tx():
            if self.run_by_id(run_id) is None:
                raise errors.NotFoundError()
            self._update("runs", "id", run_id, fields)

    def transition_run(self, run_id: str, status: str, *, only_from: tuple[str, ...] | None = None,
                       restart: bool = False, **fields: Any) -> dict[str, Any]:
        """Move a run to `status`: the one place a run's status changes (handlers and the run worker).

        Refuses a move `RUN_TRANSITIONS` does not allow; stamps `<status>-at` into status-timestamps;
        takes the workspace's lock for the run when it starts working and releases it when the run ends.

        Args:
            run_id: the run.
            status: the new status (one of `RUN_STATUSES`).
            only_from: also refuse unless the run is in one of these (a compare-and-set for the worker).
            restart: the sandbox's own restart recovery, which puts a run it was planning back to
                `pending` (no API client can ask for that).
            fields: other columns to change in the same transaction.

        Returns:
            The run row after the change.

        Raises:
            NotFoundError: no such run.
            ConflictError: the transition is not allowed from the run's current status (409, as TFE
                answers an action on a run in the wrong state).
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self.tx():
            run = self.run_by_id(run_id)
            if run is None:
                raise errors.NotFoundError()
            current = run["status"]
            allowed = (restart and current == "planning" and status == "pending") or \
                status in RUN_TRANSITIONS.get(current, frozenset())
            if not allowed or (only_from is not None and current not in only_from):
                raise errors.ConflictError(f"transition not allowed: a {current} run cannot become {status}")
            stamps = json.loads(run["status_timestamps"])
            stamps[status_timestamp_key(status)] = now_iso()
            fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("runs", "id", run_id, fields)
            if not run["plan_only"]:  # a speculative plan never holds the workspace (below, and runner.py)
                self._hold_workspace_lock(run, status)
            self._follow_with_apply(run_id, status)
            return self.run_by_id(run_id)  # type: ignore[return-value]

    def _follow_with_apply(self, run_id: str, status: str) -> None:
        apply = self.apply_for_run(run_id)
        if apply is None or apply["status"] in APPLY_FINAL:
            return
        new = _APPLY_STATUS.get(status)
        if new is None and status in FINAL_STATUSES:
            new = ("unreachable" if apply["status"] == "pending" else
                   "canceled" if status in ("canceled", "force_canceled") else "errored")
        if new and new != apply["status"]:
            self.update_apply(apply["id"], new)

    def apply_for_run(self, run_id: str) -> dict[str, Any] | None:
        """The apply of a run, or None (runs stored before applies were modelled have none)."""
        return self._one("SELECT * FROM applies WHERE run_id = ?", (run_id,))

    get_apply = visible_row("applies", "An apply of a run")

    apply_by_id = row_by_id("applies", "An apply without access checks")

    def update_apply(self, apply_id: str, status: str | None = None, **fields: Any) -> None:
        """Change an apply: status (stamped `<status>-at`), counts, log, confirmed_by."""
        with self.tx():
            apply = self.apply_by_id(apply_id)
            if apply is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(apply["status_timestamps"])
                stamps[{"running": "started-at", "finished": "finished-at"}.get(status, f"{status}-at")] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("applies", "id", apply_id, fields)

    def set_redacted_plan(self, plan_id: str, body: bytes) -> None:
        """Keep a plan's redacted JSON (plan JSON with provider schemas; run worker)."""
        self._x("INSERT OR REPLACE INTO plan_redacted (plan_id, body) VALUES (?, ?)", (plan_id, body))

    def redacted_plan(self, plan_id: str) -> bytes | None:
        """A plan's redacted JSON, or None (Terraform 0.11 plans and unfinished ones have none)."""
        row = self._one("SELECT body FROM plan_redacted WHERE plan_id = ?", (plan_id,))
        return bytes(row["body"]) if row else None

    def _hold_workspace_lock(self, run: dict[str, Any], status: str) -> None:
        ws = self._one("SELECT id, locked, locked_by_run FROM workspaces WHERE id = ?", (run["workspace_id"],))
        if ws is None:
            return
        if status in _RELEASES_LOCK or status == "pending":
            if ws["locked_by_run"] == run["id"]:
                self._update("workspaces", "id", ws["id"], {"locked": 0, "locked_by_run": None,
                                                            "lock_reason": None, "updated_at": now_iso()})
        elif not ws["locked"]:
            self._update("workspaces", "id", ws["id"], {"locked": 1, "locked_by_run": run["id"],
                                                        "locked_by_user": None, "lock_reason": "",
                                                        "updated_at": now_iso()})

    def plan_for_run(self, run_id: str) -> dict[str, Any] | None:
        """The plan of a run, or None."""
        return self._one("SELECT * FROM plans WHERE run_id = ?", (run_id,))

    get_plan = visible_row("plans", "A plan of a run")

    plan_by_id = row_by_id("plans", "A plan without access checks")

    def update_plan(self, plan_id: str, status: str | None = None, **fields: Any) -> None:
        """Change a plan (run worker): status, has_changes, counts, log, json_output."""
        with self.tx():
            plan = self.plan_by_id(plan_id)
            if plan is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(plan["status_timestamps"])
                stamps[status_timestamp_key(status)] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("plans", "id", plan_id, fields)

    def configuration_tarball(self, cv_id: str) -> bytes | None:
        """The uploaded tarball of a configuration version (run worker), or None."""
        row = self._one("SELECT tarball FROM configuration_versions WHERE id = ?", (cv_id,))
        return row["tarball"] if row else None

    def note_cancel_requested(self, run_id: str, cool_off_s: float) -> None:
        """Remember when a run's force-cancel becomes available (`cool_off_s` after its cancel)."""
        stamp = datetime.now(timezone.utc) + timedelta(seconds=cool_off_s)
        self.set_meta(f"force-cancel-at:{run_id}", stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")

    def force_cancel_available_at(self, run_id: str) -> str | None:
        """When a canceled run's force-cancel became available, or None (never canceled)."""
        return self.find_meta(f"force-cancel-at:{run_id}")

    # --- comments and run events (comments.mdx; go-tfe `comment.go`, `run_event.go`) ------------------

    def record_run_event(self, run_id: str, action: str, actor_id: str | None, *, comment_id: str | None = None,
                         description: str | None = None) -> dict[str, Any]:
        """Append an event to a run's history."""
        return self._insert("run_events", {"id": new_id("re-"), "run_id": run_id, "action": action,
                                           "description": description, "actor_id": actor_id,
                                           "comment_id": comment_id, "created_at": now_iso()})

    def add_comment(self, run_id: str, body: str, user: dict[str, Any] | None) -> dict[str, Any]:
        """Comment on a run: the comment and its `commented` event (go-tfe `run_event_integration_test.go`
        finds a comment's event by that action, with the commenter as its actor)."""
        actor = user["id"] if user else None
        with self.tx():
            row = self._insert("comments", {"id": new_id("wsc-"), "run_id": run_id, "body": body,
                                            "created_by": actor, "created_at": now_iso()})
            self.record_run_event(run_id, "commented", actor, comment_id=row["id"])
        return row

    get_comment = visible_row("comments", "A comment on a run")

    get_run_event = visible_row("run_events", "An event of a run")

    def list_comments(self, run_id: str) -> list[dict[str, Any]]:
        """A run's comments, oldest first."""
        return self._q("SELECT * FROM comments WHERE run_id = ? ORDER BY created_at, rowid", (run_id,))

    def comment_event(self, comment_id: str) -> dict[str, Any] | None:
        """The event a comment made, or None."""
        return self._one("SELECT * FROM run_events WHERE comment_id = ?", (comment_id,))

    comment_by_id = row_by_id("comments", "A comment without access checks (compound documents)")

    def list_run_events(self, run_id: str) -> list[dict[str, Any]]:
        """A run's events, oldest first."""
        return self._q("SELECT * FROM run_events WHERE run_id = ? ORDER BY created_at, rowid", (run_id,))

    # --- run worker: look-ups without access checks, and the job table ------------------------

    workspace_by_id = row_by_id("workspaces", "A workspace without access checks (run worker, webhook)")
    environment_by_id = row_by_id("environments", "A legacy environment without access checks (run worker)")

    def workspaces_linked_to(self, identifier: str) -> list[dict[str, Any]]:
        """Workspaces (of any organization) whose VCS repository is `identifier`, oldest first."""
        return self._q("SELECT * FROM workspaces WHERE vcs_identifier = ? ORDER BY created_at, id", (identifier,))

    def environments_linked_to(self, repo: str) -> list[dict[str, Any]]:
        """Legacy environments whose VCS link is `repo` (`org/repo`), by name; unlinked ones are not."""
        return self._q("SELECT * FROM environments WHERE vcs_repo = ? ORDER BY org, name", (repo,))

    def add_run_job(self, kind: str, run_id: str) -> None:
        """Mark a run as one the run worker executes (`kind`: "legacy" or "tfe"); idempotent."""
        stamp = now_iso()
        self._x("INSERT OR IGNORE INTO run_jobs (run_id, kind, state, apply_log, created_at, updated_at) "
                "VALUES (?, ?, 'queued', NULL, ?, ?)", (run_id, kind, stamp, stamp))

    def run_job(self, run_id: str) -> dict[str, Any] | None:
        """The run worker's job row of a run, or None (a run the sandbox does not execute)."""
        return self._one("SELECT * FROM run_jobs WHERE run_id = ?", (run_id,))

    def run_jobs(self, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """Job rows in the given states, oldest first."""
        marks = ",".join("?" for _ in states)
        return self._q(f"SELECT * FROM run_jobs WHERE state IN ({marks}) ORDER BY created_at, rowid", states)

    def set_run_job(self, run_id: str, **fields: Any) -> None:
        """Change a job row (state, apply_log)."""
        fields["updated_at"] = now_iso()
        self._update("run_jobs", "run_id", run_id, fields)


def status_timestamp_key(status: str) -> str:
    """The status-timestamps key of a status (go-tfe RunStatusTimestamps: `planned-and-finished-at`)."""
    return status.replace("_", "-") + "-at"
