"""Configuration versions, runs, plans, and the run worker's job table."""

from __future__ import annotations

import json
import secrets
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (StoreBase, _b, new_id, now_iso)


class RunStore(StoreBase):
    """Configuration versions, runs, plans, and the run worker's job table."""

    # --- configuration versions, runs, plans -------------------------------------------------------

    def create_configuration_version(self, ws_id: str, *, auto_queue_runs: bool = True, speculative: bool = False,
                                     source: str = "tfe-api", ingress: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a configuration version awaiting its tarball upload."""
        row = {"id": new_id("cv-"), "workspace_id": ws_id, "status": "pending", "source": source,
               "speculative": _b(speculative), "auto_queue_runs": _b(auto_queue_runs),
               "upload_token": secrets.token_urlsafe(24), "tarball": None,
               "ingress": json.dumps(ingress) if ingress else None, "created_at": now_iso()}
        with self.tx():
            self._insert("configuration_versions", row)
            self._insert("blobs", {"token": row["upload_token"], "kind": "cv", "owner_id": row["id"],
                                   "direction": "upload"})
        return row

    def get_configuration_version(self, cv_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A configuration version of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("configuration_versions", cv_id, user)

    def list_configuration_versions(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's configuration versions, newest first."""
        return self._q("SELECT * FROM configuration_versions WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC",
                       (ws_id,))

    def upload_configuration(self, cv_id: str, tarball: bytes) -> None:
        """Store an uploaded configuration tarball; the version becomes `uploaded`."""
        self._update("configuration_versions", "id", cv_id, {"tarball": tarball, "status": "uploaded"})

    def create_run(self, ws: dict[str, Any], user: dict[str, Any] | None, *, cv_id: str | None, message: str,
                   is_destroy: bool = False, plan_only: bool = False, auto_apply: bool | None = None,
                   source: str = "tfe-api", status: str = "pending") -> dict[str, Any]:
        """Create a run and its plan; a pending run is announced to the run listeners after commit.

        A run in a locked workspace stays pending (queued), as in real TFE.
        """
        stamp = now_iso()
        run = {"id": new_id("run-"), "workspace_id": ws["id"], "configuration_version_id": cv_id, "status": status,
               "message": message, "source": source, "is_destroy": _b(is_destroy), "plan_only": _b(plan_only),
               "auto_apply": _b(ws["auto_apply"] if auto_apply is None else auto_apply), "has_changes": 0,
               "created_by": user["id"] if user else None,
               "status_timestamps": json.dumps({f"{status}-at": stamp}), "created_at": stamp}
        plan = {"id": new_id("plan-"), "run_id": run["id"], "status": "pending", "has_changes": 0, "additions": 0,
                "changes": 0, "destructions": 0, "imports": 0, "log": None, "json_output": None,
                "json_download_token": secrets.token_urlsafe(24), "log_token": secrets.token_urlsafe(24),
                "status_timestamps": json.dumps({"queued-at": stamp})}
        with self.tx():
            self._insert("runs", run)
            self._insert("plans", plan)
            self._insert("blobs", {"token": plan["json_download_token"], "kind": "plan-json", "owner_id": plan["id"],
                                   "direction": "download"})
            self._insert("blobs", {"token": plan["log_token"], "kind": "plan-log", "owner_id": plan["id"],
                                   "direction": "download"})
            if status == "pending":
                self._pending_run_events.append(("tfe", run["id"]))
        return run

    def get_run(self, run_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A run of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("runs", run_id, user)

    def run_by_id(self, run_id: str) -> dict[str, Any] | None:
        """A run without access checks (run worker), or None."""
        return self._one("SELECT * FROM runs WHERE id = ?", (run_id,))

    def list_runs(self, ws_id: str, statuses: list[str] | None = None) -> list[dict[str, Any]]:
        """A workspace's runs, newest first, optionally only those in `statuses`."""
        if statuses:
            marks = ",".join("?" for _ in statuses)
            return self._q(f"SELECT * FROM runs WHERE workspace_id = ? AND status IN ({marks}) "
                           "ORDER BY created_at DESC, rowid DESC", (ws_id, *statuses))
        return self._q("SELECT * FROM runs WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC", (ws_id,))

    def update_run(self, run_id: str, status: str | None = None, **fields: Any) -> None:
        """Change a run (run worker): a new status is stamped into status-timestamps."""
        with self.tx():
            run = self.run_by_id(run_id)
            if run is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(run["status_timestamps"])
                stamps[f"{status}-at"] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("runs", "id", run_id, fields)

    def plan_for_run(self, run_id: str) -> dict[str, Any] | None:
        """The plan of a run, or None."""
        return self._one("SELECT * FROM plans WHERE run_id = ?", (run_id,))

    def get_plan(self, plan_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A plan of a run the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("plans", plan_id, user)

    def plan_by_id(self, plan_id: str) -> dict[str, Any] | None:
        """A plan without access checks, or None."""
        return self._one("SELECT * FROM plans WHERE id = ?", (plan_id,))

    def update_plan(self, plan_id: str, status: str | None = None, **fields: Any) -> None:
        """Change a plan (run worker): status, has_changes, counts, log, json_output."""
        with self.tx():
            plan = self.plan_by_id(plan_id)
            if plan is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(plan["status_timestamps"])
                stamps[f"{status}-at"] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("plans", "id", plan_id, fields)

    def configuration_tarball(self, cv_id: str) -> bytes | None:
        """The uploaded tarball of a configuration version (run worker), or None."""
        row = self._one("SELECT tarball FROM configuration_versions WHERE id = ?", (cv_id,))
        return row["tarball"] if row else None

    # --- run worker (issue 4): look-ups without access checks, and the job table ------------------------

    def workspace_by_id(self, ws_id: str) -> dict[str, Any] | None:
        """A workspace without access checks (run worker, webhook), or None."""
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws_id,))

    def environment_by_id(self, env_id: str) -> dict[str, Any] | None:
        """A legacy environment without access checks (run worker), or None."""
        return self._one("SELECT * FROM environments WHERE id = ?", (env_id,))

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

