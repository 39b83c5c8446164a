"""Workspaces, their locks and their variables."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (FINAL_RUN_STATUSES, _b, _check_ws_name, new_id, now_iso, parse_state,
                                            StoreBase)


def count_managed_resources(state: bytes | None) -> int:
    """Managed (not data) resources in a state file: v4 `resources[]` with mode "managed", v3 every module's
    `resources` whose key does not start with "data."."""
    if not state:
        return 0
    try:
        doc = parse_state(state)["doc"]
    except errors.SandboxError:
        return 0
    if isinstance(doc.get("resources"), list):
        return sum(1 for r in doc["resources"] if isinstance(r, dict) and r.get("mode", "managed") == "managed")
    count = 0
    for module in doc.get("modules") or []:
        if isinstance(module, dict):
            count += sum(1 for key in (module.get("resources") or {}) if not str(key).startswith("data."))
    return count


#: Workspace settings the sandbox keeps but does not act on, with their defaults (workspaces.mdx "Create a
#: Workspace"; go-tfe `workspace_integration_test.go` Create/Update read them back). Kept as JSON in the
#: bookkeeping table, one key per workspace.
SETTINGS_DEFAULTS: dict[str, Any] = {"allow-destroy-plan": True, "auto-destroy-at": None,
                                     "assessments-enabled": False, "structured-run-output-enabled": True,
                                     "tag-names": [], "trigger-patterns": []}
#: Whether a workspace's own execution mode / agent pool overwrite its organization's defaults
#: (workspaces.mdx `setting-overwrites`: "attributes that have organization-level defaults ... true by
#: default. To overwrite the default inherited value, set an attribute's value to false"). A workspace
#: stored before these flags existed keeps its own mode (both true).
OWN_SETTINGS = {"execution-mode": True, "agent-pool": True}


class WorkspaceStore(StoreBase):
    """Workspaces, their locks and their variables."""

    def workspace_settings(self, ws_id: str) -> dict[str, Any]:
        """The kept settings of a workspace (defaults where never set)."""
        return {**SETTINGS_DEFAULTS, **json.loads(self.find_meta(f"ws-settings:{ws_id}", "{}") or "{}")}

    def _store_settings(self, ws_id: str, attrs: dict[str, Any]) -> bool:
        given = {k: attrs[k] for k in SETTINGS_DEFAULTS if k in attrs}
        if not given:
            return False
        self.set_meta(f"ws-settings:{ws_id}", json.dumps({**self.workspace_settings(ws_id), **given}))
        return True

    def queue_scheduled_destroys(self) -> list[str]:
        """Queue the destroy run of every workspace whose `auto-destroy-at` has come, and unset that time once the
        run has ended (workspaces.mdx `auto-destroy-at`: "Timestamp when the next scheduled destroy run will
        occur"; settings/deletion.mdx: auto-destroy runs do not wait for approval, and "After HCP Terraform performs
        an auto-destroy run, it unsets the `auto-destroy-at` field"). Called by the run worker on each poll.

        Returns:
            The ids of the runs queued now.
        """
        queued = []
        now = datetime.now(timezone.utc)
        for row in self._q("SELECT key, value FROM meta WHERE key LIKE 'ws-settings:%'"):
            ws_id = row["key"].split(":", 1)[1]
            due = json.loads(row["value"] or "{}").get("auto-destroy-at")
            if not due:
                continue
            marker = f"ws-auto-destroy-run:{ws_id}"
            with self.tx():
                fired = self.find_meta(marker)  # "<run id> <the time it was queued for>"
                if fired:
                    run_id, _, fired_for = fired.partition(" ")
                    run = self._one("SELECT status FROM runs WHERE id = ?", (run_id,))
                    if run is None or run["status"] in FINAL_RUN_STATUSES:
                        if fired_for == due:  # not rescheduled meanwhile
                            self._store_settings(ws_id, {"auto-destroy-at": None})
                        self._x("DELETE FROM meta WHERE key = ?", (marker,))
                    continue
                ws = self._one("SELECT * FROM workspaces WHERE id = ?", (ws_id,))
                if ws is None or datetime.fromisoformat(due.replace("Z", "+00:00")) > now:
                    continue
                cv = self.current_configuration_version(ws_id)  # type: ignore[attr-defined]
                run = self.create_run(ws, None, cv_id=cv["id"] if cv else None,  # type: ignore[attr-defined]
                                      message="Triggered by the workspace's scheduled destroy (auto-destroy-at)",
                                      is_destroy=True, auto_apply=True,
                                      options={"terraform-version": ws["terraform_version"]})
                self.set_meta(marker, f"{run['id']} {due}")
                queued.append(run["id"])
        return queued

    def setting_overwrites(self, ws_id: str) -> dict[str, bool]:
        """The workspace's `setting-overwrites` flags (true: its own value; false: the organization's)."""
        return {**OWN_SETTINGS, **json.loads(self.find_meta(f"ws-overwrites:{ws_id}", "{}") or "{}")}

    def effective_execution_mode(self, ws: dict[str, Any]) -> str:
        """The execution mode a workspace runs with: its own, or its organization's current
        `default-execution-mode` while it inherits (go-tfe `workspace.go` WorkspaceSettingOverwritesOptions:
        "If false, the workspace will defer to its organization or project's DefaultExecutionMode value")."""
        if self.setting_overwrites(ws["id"])["execution-mode"]:
            return ws["execution_mode"]
        org = self._one("SELECT default_execution_mode FROM organizations WHERE name = ?", (ws["org"],))
        return org["default_execution_mode"] if org else ws["execution_mode"]

    def workspace_agent_pool(self, ws: dict[str, Any]) -> str | None:
        """The agent pool a workspace's runs use: its own, or its organization's `default-agent-pool` while it
        inherits (`setting-overwrites.agent-pool` false); None unless its execution mode is `agent`
        (workspaces.mdx `agent-pool-id`, `setting-overwrites`)."""
        if self.effective_execution_mode(ws) != "agent":
            return None
        if self.setting_overwrites(ws["id"])["agent-pool"]:
            return self.find_meta(f"ws-agent-pool:{ws['id']}")
        org = self._one("SELECT default_agent_pool_id FROM organizations WHERE name = ?", (ws["org"],))
        return org["default_agent_pool_id"] if org else None

    def _keep_agent_pool(self, ws_id: str, attrs: dict[str, Any]) -> None:
        """Store a create's or update's `agent-pool-id` (workspaces.mdx: "Required when `execution-mode` is set
        to `agent`. The ID of the agent pool belonging to the workspace's organization. This value must not be
        specified if `execution-mode` is set to `remote` or `local`"); a workspace leaving agent mode drops it.

        Raises:
            UnprocessableError: a pool without agent mode, another organization's pool, or agent mode without one.
        """
        ws = self.workspace_by_id(ws_id)  # type: ignore[attr-defined]
        key = f"ws-agent-pool:{ws_id}"
        agent = self.effective_execution_mode(ws) == "agent"
        pool_id = attrs.get("agent-pool-id")
        pointer = "/data/attributes/agent-pool-id"
        if pool_id is not None:
            if not agent:
                raise errors.UnprocessableError("agent-pool-id can only be set when execution-mode is agent",
                                                pointer=pointer)
            if not self._one("SELECT 1 FROM agent_pools WHERE id = ? AND org = ?", (pool_id, ws["org"])):
                raise errors.UnprocessableError(f"agent-pool-id {pool_id!r} is no agent pool of this organization",
                                                pointer=pointer)
            self.set_meta(key, pool_id)
            flags = self.setting_overwrites(ws_id)
            if not flags["agent-pool"] and "agent-pool" not in (attrs.get("setting-overwrites") or {}):
                self.set_meta(f"ws-overwrites:{ws_id}", json.dumps({**flags, "agent-pool": True}))
        elif not agent or "agent-pool-id" in attrs:
            self._x("DELETE FROM meta WHERE key = ?", (key,))
        if agent and self.workspace_agent_pool(ws) is None:
            raise errors.UnprocessableError("Agent pool must be set when execution mode is agent", pointer=pointer)

    def _resolve_overwrites(self, org: str, attrs: dict[str, Any],
                            current: dict[str, bool] | None) -> tuple[dict[str, bool], str | None]:
        """The `setting-overwrites` flags after a create (`current` None) or update, and the execution mode
        to store (None: unchanged). An explicit flag wins; otherwise sending `execution-mode` overwrites the
        organization's default, and a create without one inherits it (workspaces.mdx `setting-overwrites`,
        `execution-mode`; go-tfe `workspace_integration_test.go` "when organization has a default execution
        mode")."""
        given = attrs.get("setting-overwrites") or {}
        flags = dict(current) if current is not None else {}
        if "execution-mode" in given:
            flags["execution-mode"] = given["execution-mode"]
        elif "execution-mode" in attrs or current is None:
            flags["execution-mode"] = "execution-mode" in attrs
        flags["agent-pool"] = given.get("agent-pool", flags.get("agent-pool", flags["execution-mode"]))
        if flags["execution-mode"]:
            mode = attrs.get("execution-mode") or (None if current is not None else "remote")
        else:
            row = self._one("SELECT default_execution_mode FROM organizations WHERE name = ?", (org,))
            mode = row["default_execution_mode"] if row else "remote"
        return flags, mode

    # --- workspaces -------------------------------------------------------------------------------

    def create_workspace(self, org: str, attrs: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Create a workspace from parsed attributes (see `workspaces_api._workspace_attrs`).

        Raises:
            UnprocessableError: missing/invalid/taken name, or an OAuth token of another organization.
        """
        name = attrs.get("name")
        _check_ws_name(name)
        if self._one("SELECT 1 FROM workspaces WHERE org = ? AND name = ?", (org, name)):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        vcs = attrs.get("vcs-repo")
        if vcs:
            self._check_vcs(org, vcs, user)
        stamp = now_iso()
        overwrites, mode = self._resolve_overwrites(org, attrs, None)
        row = {
            "id": new_id("ws-"), "org": org, "name": name, "description": attrs.get("description"),
            "execution_mode": mode or "remote",
            "auto_apply": _b(attrs.get("auto-apply", False)),
            "terraform_version": attrs.get("terraform-version") or "latest",
            "working_directory": attrs.get("working-directory") or "",
            "queue_all_runs": _b(attrs.get("queue-all-runs", False)),
            "speculative_enabled": _b(attrs.get("speculative-enabled", True)),
            "file_triggers_enabled": _b(attrs.get("file-triggers-enabled", True)),
            "trigger_prefixes": json.dumps(attrs.get("trigger-prefixes") or []),
            "source_name": attrs.get("source-name"), "source_url": attrs.get("source-url"),
            "migration_environment": attrs.get("migration-environment"),
            "vcs_identifier": vcs.get("identifier") if vcs else None,
            "vcs_branch": (vcs.get("branch") or "") if vcs else None,
            "vcs_oauth_token_id": vcs.get("oauth-token-id") if vcs else None,
            "vcs_ingress_submodules": _b(vcs.get("ingress-submodules")) if vcs else None,
            "locked": 0, "locked_by_user": None, "locked_by_run": None, "lock_reason": None,
            "created_at": stamp, "updated_at": stamp}
        with self.tx():
            created = self._insert("workspaces", row)
            self._store_settings(row["id"], attrs)
            self.set_meta(f"ws-overwrites:{row['id']}", json.dumps(overwrites))
            self._keep_agent_pool(row["id"], attrs)
            if attrs.get("project"):  # a project id the API checked belongs to the organization
                self.set_meta(f"ws-project:{row['id']}", attrs["project"])
            if attrs.get("migration-environment"):  # the host's own import (store/migration.py)
                created = self.import_legacy_environment(  # type: ignore[attr-defined]
                    created, attrs["migration-environment"], user)
        return created

    def _check_vcs(self, org: str, vcs: dict[str, Any], user: dict[str, Any]) -> None:
        if not vcs.get("identifier"):
            raise errors.UnprocessableError("Identifier can't be blank", pointer="/data/attributes/vcs-repo/identifier")
        token_id = vcs.get("oauth-token-id")
        if not token_id:
            raise errors.UnprocessableError("Oauth token can't be blank",
                                            pointer="/data/attributes/vcs-repo/oauth-token-id")
        try:
            token = self.get_oauth_token(token_id, user)
        except errors.NotFoundError:
            token = None
        if token is None or token["org"] != org:
            raise errors.UnprocessableError("Oauth token not found", pointer="/data/attributes/vcs-repo/oauth-token-id")

    def get_workspace(self, ws_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A workspace by id, if the user belongs to its organization.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._team_scoped(self._visible("workspaces", ws_id, user), user)

    def _team_scoped(self, ws: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """A team token sees only the workspaces its team has access to (team-access.mdx); 404 otherwise."""
        team = self.token_team(user)  # type: ignore[attr-defined]
        if team is not None and not self.team_sees_workspace(team, ws["id"]):  # type: ignore[attr-defined]
            raise errors.NotFoundError()
        return ws

    def visible_to(self, user: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The workspaces of `rows` the caller may see (all of them, unless the caller is a team token)."""
        team = self.token_team(user)  # type: ignore[attr-defined]
        if team is None:
            return rows
        return [w for w in rows if self.team_sees_workspace(team, w["id"])]  # type: ignore[attr-defined]

    def find_workspace(self, org: str, name: str) -> dict[str, Any] | None:
        """A workspace by organization and name, without access checks, or None."""
        return self._one("SELECT * FROM workspaces WHERE org = ? AND name = ?", (org, name))

    def get_workspace_by_name(self, org: str, name: str, user: dict[str, Any]) -> dict[str, Any]:
        """A workspace by organization and name.

        Raises:
            NotFoundError: missing or foreign.
        """
        self.get_organization(org, user)
        row = self.find_workspace(org, name)
        if row is None:
            raise errors.NotFoundError()
        return self._team_scoped(row, user)

    def list_workspaces(self, org: str, search: str | None = None) -> list[dict[str, Any]]:
        """The organization's workspaces by name; `search` matches a substring of the name."""
        if search:
            return self._q("SELECT * FROM workspaces WHERE org = ? AND instr(lower(name), lower(?)) > 0 "
                           "ORDER BY name", (org, search))
        return self._q("SELECT * FROM workspaces WHERE org = ? ORDER BY name", (org,))

    def workspace_project_id(self, ws: dict[str, Any]) -> str | None:
        """The project a workspace belongs to: the one it was put in, else its organization's default
        project ("If left blank, the workspace will be created in the organization's default project":
        workspaces.mdx `relationships.project`)."""
        chosen = self.find_meta(f"ws-project:{ws['id']}")
        if chosen:
            return chosen
        org = self._one("SELECT default_project_id FROM organizations WHERE name = ?", (ws["org"],))
        return org["default_project_id"] if org else None

    def project_workspaces(self, project: dict[str, Any]) -> list[dict[str, Any]]:
        return [w for w in self.list_workspaces(project["org"]) if self.workspace_project_id(w) == project["id"]]

    def current_run(self, ws_id: str) -> dict[str, Any] | None:
        """The workspace's current run: the newest run that is not plan-only and has left `pending`, kept
        after it finishes until the next one starts (go-tfe `workspace_integration_test.go` List reads
        `current-run` after an applied run and sorts on `current-run.created-at`; run-states.mdx: a
        `pending` run waits in the queue behind the current one)."""
        return self._one("SELECT * FROM runs WHERE workspace_id = ? AND plan_only = 0 AND status != 'pending' "
                         "ORDER BY created_at DESC, rowid DESC LIMIT 1", (ws_id,))

    def change_workspace_tags(self, ws: dict[str, Any], names: list[str], *, add: bool) -> None:
        """Add tags to (or remove them from) a workspace; adding a tag it has, or removing one it has
        not, changes nothing (workspaces.mdx "Add tags to a workspace", "Remove tags from a workspace")."""
        current = list(self.workspace_settings(ws["id"])["tag-names"])
        if add:
            changed = current + [n for n in dict.fromkeys(names) if n not in current]
        else:
            changed = [n for n in current if n not in names]
        if changed != current:
            with self.tx():
                self._store_settings(ws["id"], {"tag-names": changed})
                self._update("workspaces", "id", ws["id"], {"updated_at": now_iso()})

    def update_workspace(self, ws: dict[str, Any], attrs: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH's attributes; `vcs-repo: null` unlinks VCS.

        Raises:
            UnprocessableError: invalid or taken new name, or a bad VCS link.
        """
        fields: dict[str, Any] = {}
        if "name" in attrs and attrs["name"] != ws["name"]:
            _check_ws_name(attrs["name"])
            if self.find_workspace(ws["org"], attrs["name"]):
                raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
            fields["name"] = attrs["name"]
        simple = {"description": "description",
                  "terraform-version": "terraform_version", "working-directory": "working_directory",
                  "source-name": "source_name", "source-url": "source_url"}
        for attr, col in simple.items():
            if attr in attrs:
                fields[col] = attrs[attr] if attrs[attr] is not None else ("" if col == "working_directory" else None)
        for attr, col in {"auto-apply": "auto_apply", "queue-all-runs": "queue_all_runs",
                          "speculative-enabled": "speculative_enabled",
                          "file-triggers-enabled": "file_triggers_enabled"}.items():
            if attr in attrs:
                fields[col] = _b(attrs[attr])
        if "trigger-prefixes" in attrs:
            fields["trigger_prefixes"] = json.dumps(attrs["trigger-prefixes"] or [])
        if "vcs-repo" in attrs:
            vcs = attrs["vcs-repo"]
            if vcs is None:
                fields.update(vcs_identifier=None, vcs_branch=None, vcs_oauth_token_id=None,
                              vcs_ingress_submodules=None)
            else:
                merged = {"identifier": ws["vcs_identifier"], "oauth-token-id": ws["vcs_oauth_token_id"],
                          "branch": ws["vcs_branch"], "ingress-submodules": ws["vcs_ingress_submodules"]}
                merged.update({k: v for k, v in vcs.items()})
                self._check_vcs(ws["org"], merged, user)
                fields.update(vcs_identifier=merged["identifier"], vcs_branch=merged.get("branch") or "",
                              vcs_oauth_token_id=merged["oauth-token-id"],
                              vcs_ingress_submodules=_b(merged.get("ingress-submodules")))
        if "execution-mode" in attrs or "setting-overwrites" in attrs:
            overwrites, mode = self._resolve_overwrites(ws["org"], attrs, self.setting_overwrites(ws["id"]))
            self.set_meta(f"ws-overwrites:{ws['id']}", json.dumps(overwrites))
            fields["execution_mode"] = mode or ws["execution_mode"]
        if attrs.get("project"):  # moved to another project of its organization (checked by the API)
            self.set_meta(f"ws-project:{ws['id']}", attrs["project"])
            fields["updated_at"] = now_iso()
        if self._store_settings(ws["id"], attrs):
            fields.setdefault("updated_at", now_iso())
        if fields:
            fields["updated_at"] = now_iso()
            self._update("workspaces", "id", ws["id"], fields)
        if {"execution-mode", "setting-overwrites", "agent-pool-id"} & set(attrs):
            self._keep_agent_pool(ws["id"], attrs)
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]

    def delete_workspace(self, ws_id: str) -> None:
        """Delete a workspace and everything that belongs to it."""
        with self.tx():
            run_ids = [r["id"] for r in self._q("SELECT id FROM runs WHERE workspace_id = ?", (ws_id,))]
            for run_id in run_ids:
                self._x("DELETE FROM plans WHERE run_id = ?", (run_id,))
                self._x("DELETE FROM applies WHERE run_id = ?", (run_id,))
            for table in ("runs", "state_versions", "vars", "configuration_versions"):
                self._x(f"DELETE FROM {table} WHERE workspace_id = ?", (ws_id,))
            self._x("DELETE FROM workspaces WHERE id = ?", (ws_id,))
            for key in (f"ws-settings:{ws_id}", f"ws-overwrites:{ws_id}", f"ws-project:{ws_id}",
                        f"ws-agent-pool:{ws_id}", f"ws-auto-destroy-run:{ws_id}"):
                self._x("DELETE FROM meta WHERE key = ?", (key,))

    def managed_resources(self, ws_id: str) -> int:
        """How many resources the workspace's current state manages (0 without state)."""
        current = self.current_state_version(ws_id)
        return count_managed_resources(current["state"]) if current else 0

    def safe_delete_workspace(self, ws_id: str) -> None:
        """Delete a workspace only if it manages no resources (workspaces.mdx "Safe Delete a workspace").

        Raises:
            ConflictError: the workspace is locked, or its current state still manages resources (nothing
                deleted).
        """
        with self.tx():
            managed = self.managed_resources(ws_id)
            if managed:
                raise errors.ConflictError(f"Workspace is not safe to delete because it is managing resources "
                                           f"({managed} in its current state). Destroy them first, or force "
                                           f"delete with DELETE /api/v2/workspaces/{ws_id}.")
            # (resources first: which of the two a real host names for a locked workspace managing
            # resources is not documented; the resources are what the operator must act on)
            ws = self.workspace_by_id(ws_id)  # type: ignore[attr-defined]
            if ws is not None and ws["locked"]:
                # go-tfe `errors.go` ErrWorkspaceLockedCannotDelete, matched on "locked" in the 409's text
                # (`tfe.go` checkResponseCode); `workspace_integration_test.go` SafeDelete "when workspace is locked"
                raise errors.ConflictError("Workspace is currently locked. Workspace must be unlocked before it can "
                                           "be safely deleted")
            self.delete_workspace(ws_id)

    def lock_workspace(self, ws: dict[str, Any], user: dict[str, Any], reason: str) -> dict[str, Any]:
        """Lock a workspace for a user.

        Raises:
            ConflictError: already locked (by anyone, the way real TFE answers).
        """
        if ws["locked"]:
            raise errors.ConflictError("Unable to lock workspace. The workspace is already locked.")
        self._update("workspaces", "id", ws["id"], {"locked": 1, "locked_by_user": user["id"],
                                                    "lock_reason": reason or "", "updated_at": now_iso()})
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]

    def unlock_workspace(self, ws: dict[str, Any], user: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Unlock a workspace; `force` also releases another user's lock (force-unlock).

        Raises:
            ConflictError: not locked, or (without force) locked by another user or a run; the text
                is what go-tfe matches ("is locked by User/Run").
        """
        if not ws["locked"]:
            raise errors.ConflictError("Unable to unlock workspace. The workspace is not locked.")
        if not force:
            if ws["locked_by_run"]:
                raise errors.ConflictError(f"Unable to unlock workspace. The workspace is locked by Run "
                                           f"{ws['locked_by_run']}.")
            if ws["locked_by_user"] != user["id"]:
                holder = self.find_user_by_id(ws["locked_by_user"] or "")
                team = self.token_team(holder) if holder else None  # type: ignore[attr-defined]
                if team is not None:
                    # a lock taken with a team's token is the team's ("is locked by Team": go-tfe `tfe.go`
                    # maps it to ErrWorkspaceLockedByTeam; `workspace_integration_test.go` Unlock)
                    raise errors.ConflictError(f"Unable to unlock workspace. The workspace is locked by Team "
                                               f"{team['name']}.")
                raise errors.ConflictError("Unable to unlock workspace. The workspace is locked by User "
                                           f"{holder['username'] if holder else 'unknown'}.")
            # "The workspace may not be unlocked normally until the state version is uploaded"
            # (state-versions.mdx, `data.attributes.state`; workspaces.mdx "Unlock a workspace"). The text
            # is what go-tfe `workspace.go` Unlock maps to ErrWorkspaceLockedStateVersionStillPending.
            # Force-unlock is allowed (go-tfe `state_version_integration_test.go`: "Workspaces must be
            # force-unlocked when there is a pending state version").
            latest = self.latest_state_version(ws["id"])
            if latest is not None and latest["status"] == "pending" and latest["state"] is None:
                raise errors.ConflictError(f"Unable to unlock workspace. The latest state version is still pending "
                                           f"({latest['id']} awaits its upload).")
        self._update("workspaces", "id", ws["id"], {"locked": 0, "locked_by_user": None, "locked_by_run": None,
                                                    "lock_reason": None, "updated_at": now_iso()})
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]


    # --- variables ------------------------------------------------------------------------------

    def list_vars(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's variables, oldest first."""
        return self._q("SELECT * FROM vars WHERE workspace_id = ? ORDER BY created_at, id", (ws_id,))

    def get_var(self, ws_id: str, var_id: str) -> dict[str, Any]:
        """One variable of a workspace.

        Raises:
            NotFoundError: missing.
        """
        row = self._one("SELECT * FROM vars WHERE workspace_id = ? AND id = ?", (ws_id, var_id))
        if row is None:
            raise errors.NotFoundError()
        return row

    def create_var(self, ws_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Create a variable.

        Raises:
            UnprocessableError: blank or invalid key, bad category, key taken in that category.
        """
        key = attrs.get("key")
        if not key:
            raise errors.UnprocessableError("Key can't be blank", pointer="/data/attributes/key")
        category = attrs.get("category")
        if category not in ("terraform", "env"):
            raise errors.UnprocessableError("Category must be one of: terraform, env",
                                            pointer="/data/attributes/category")
        if self._one("SELECT 1 FROM vars WHERE workspace_id = ? AND key = ? AND category = ?", (ws_id, key, category)):
            raise errors.UnprocessableError("Key has already been taken", pointer="/data/attributes/key")
        with self.tx():
            row = self._insert("vars", {"id": new_id("var-"), "workspace_id": ws_id, "key": key,
                                        "value": "" if attrs.get("value") is None else str(attrs["value"]),
                                        "description": attrs.get("description"), "category": category,
                                        "hcl": _b(attrs.get("hcl")), "sensitive": _b(attrs.get("sensitive")),
                                        "created_at": now_iso()})
            self._new_var_version(row["id"])
        return row

    def update_var(self, var: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
        """Update a variable; a sensitive variable cannot be made non-sensitive (as in real TFE).

        Raises:
            UnprocessableError: un-hiding a sensitive variable, or a key already taken.
        """
        fields: dict[str, Any] = {}
        if "sensitive" in attrs:
            if var["sensitive"] and not attrs["sensitive"]:
                raise errors.UnprocessableError("Sensitive variables cannot be made non-sensitive",
                                                pointer="/data/attributes/sensitive")
            fields["sensitive"] = _b(attrs["sensitive"])
        category = attrs.get("category") or var["category"]
        if category not in ("terraform", "env"):
            raise errors.UnprocessableError("Category must be one of: terraform, env",
                                            pointer="/data/attributes/category")
        key = attrs["key"] if "key" in attrs else var["key"]
        if (key, category) != (var["key"], var["category"]):
            # The key or the category changes (workspace-variables.mdx "Update Variables" accepts both).
            if not key:
                raise errors.UnprocessableError("Key can't be blank", pointer="/data/attributes/key")
            if self._one("SELECT 1 FROM vars WHERE workspace_id = ? AND key = ? AND category = ? AND id != ?",
                         (var["workspace_id"], key, category, var["id"])):
                raise errors.UnprocessableError("Key has already been taken", pointer="/data/attributes/key")
            fields["key"], fields["category"] = key, category
        if "value" in attrs:
            fields["value"] = "" if attrs["value"] is None else str(attrs["value"])
        for attr in ("description",):
            if attr in attrs:
                fields[attr] = attrs[attr]
        if "hcl" in attrs:
            fields["hcl"] = _b(attrs["hcl"])
        with self.tx():
            self._update("vars", "id", var["id"], fields)
            self._new_var_version(var["id"])
        return self.get_var(var["workspace_id"], var["id"])

    def _new_var_version(self, var_id: str) -> None:
        """Issue a variable a new `version-id`: on create and on every update, even one that changes no value
        (workspace-variables.mdx sample responses; go-tfe `variable_integration_test.go` Update asserts a new one
        after each update)."""
        self.set_meta(f"var-version:{var_id}", new_id("", 20))

    def var_version(self, var: dict[str, Any]) -> str:
        """A variable's `version-id` (one issued before versions were kept: derived from its content)."""
        kept = self.find_meta(f"var-version:{var['id']}")
        if kept:
            return kept
        content = json.dumps([var[k] for k in ("key", "value", "description", "category", "hcl", "sensitive")])
        return hashlib.sha256(content.encode()).hexdigest()[:20]

    def delete_var(self, var_id: str) -> None:
        """Delete a variable."""
        with self.tx():
            self._x("DELETE FROM vars WHERE id = ?", (var_id,))
            self._x("DELETE FROM meta WHERE key = ?", (f"var-version:{var_id}",))

