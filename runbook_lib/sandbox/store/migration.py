"""The host's own import of a legacy environment: a workspace created with `migration-environment`.

As the 2018 workspaces page describes it (hashicorp/terraform-website,
`content/source/docs/enterprise/api/workspaces.html.md`, "Create a Workspace"):

- "Migrating legacy workspaces (with the `migration-environment` attribute) can only be done with a user
  token. The user must be a member of the owners team in both the legacy organization and the new
  organization." Every sandbox token is a user token; owners are the legacy organization's `admin`
  members and the new organization's `owners`. Anyone else is refused (422 on the attribute: the page
  names no status, so the sandbox answers as for any attribute it cannot accept), and nothing is created.
- "Environment and Terraform variables will be copied to the workspace." The host holds the values, so
  sensitive ones are copied too (still sensitive: write-only).
- "Teams which are associated with the legacy environment will be created in the destination workspace's
  organization, if teams with those names don't already exist." / "Members of those teams will be added
  as members of the corresponding teams" (those with an account on the new product: the host cannot
  invent one either) / "Each team will be given the same access level on the workspace as it had on the
  legacy environment." A legacy team name the new API refuses makes the import fail (422): the page is
  silent, and merging or renaming teams silently would be worse.
- "The latest state of the legacy environment will be copied over into the workspace and set as the
  workspace's current state." The bytes are copied unchanged.
- "VCS repo ingress settings (like branch and working directory) will be copied over into the workspace."
  The repository itself comes from the request's `vcs-repo` (the sample payload sends it); its branch,
  when the request leaves it empty, and the working directory come from the environment.

What the 2018 upgrade guides add (content/source/docs/enterprise/upgrade/{index,batch}.html.md at 7d396061a):
- preconditions, 3.a: "Make sure that no runs are currently in progress" and "that the environment is either
  unlocked, or locked by your currently logged-in user account. [...] If you start migrating with a run in
  progress or with the workspace locked by a different user, the migration will fail": 422, nothing created;
- the import locks the legacy environment: batch.html.md, the API "automaticaly locks the legacy environment";
  3.e, "The legacy environment is locked and will perform no more runs unless someone in your organization
  unlocks it". The lock is the importing user's (the one user who was allowed to hold it);
- history later: "TFE immediately imports the settings and current state, and asynchronously imports
  historical states and runs", and "History migration is a silent background process, and TFE does not
  display its status to normal users". Here the older legacy states appear as older state versions of the
  workspace `history_import_seconds` after the import (materialized when the workspace's versions are next
  read); no API answer says whether that has happened. If the environment is deleted first, they never come.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import StoreBase, _valid_ws_name, md5_hex, new_id, now_iso

_POINTER = "/data/attributes/migration-environment"
_HISTORY = "legacy-history:"


class MigrationStore(StoreBase):
    """The `migration-environment` import (called by workspace creation, inside its transaction)."""

    #: Seconds until the host has imported an environment's state history (see the module docstring).
    history_import_seconds: float = 5.0

    def import_legacy_environment(self, ws: dict[str, Any], source: str, user: dict[str, Any]) -> dict[str, Any]:
        """Copy a legacy environment into a workspace just created; raise to roll the creation back.

        Args:
            ws: the new workspace row.
            source: `<legacy org>/<environment>`.
            user: the token's user.

        Returns:
            The workspace row as updated (working directory, branch).

        Raises:
            UnprocessableError: malformed source, unknown environment, the user is not an owner of both
                organizations, or a legacy team's name is invalid on the new product.
        """
        org, _, name = (source or "").partition("/")
        if not org or not name:
            raise errors.UnprocessableError("Migration environment must look like <organization>/<environment>",
                                            pointer=_POINTER)
        legacy_owner = self.legacy_role(org, user["id"]) == "admin"  # type: ignore[attr-defined]
        new_owner = self.is_owner(ws["org"], user["id"])  # type: ignore[attr-defined]
        if not (legacy_owner and new_owner):
            raise errors.UnprocessableError(
                "Migrating a legacy environment needs a user token of a member of the owners team in both the "
                "legacy and the new organization", pointer=_POINTER)
        env = self.find_environment(org, name)  # type: ignore[attr-defined]
        if env is None:
            raise errors.UnprocessableError("Migration environment not found", pointer=_POINTER)
        if self.current_legacy_run(env["id"]) is not None:  # type: ignore[attr-defined]
            raise errors.UnprocessableError("Migration environment has a run in progress; wait for it to finish",
                                            pointer=_POINTER)
        if env["locked"] and env["locked_by"] != user["username"]:
            raise errors.UnprocessableError(f"Migration environment is locked by {env['locked_by']}; it must be "
                                            f"unlocked or locked by you", pointer=_POINTER)
        teams = self.legacy_environment_teams(env["id"])  # type: ignore[attr-defined]
        for team in teams:
            if not _valid_ws_name(team["name"]):
                raise errors.UnprocessableError(f"Team name {team['name']!r} is invalid: only letters, numbers, "
                                                f"-, and _ are allowed", pointer=_POINTER)
        for var in self.list_legacy_vars(env["id"]):  # type: ignore[attr-defined]
            self.create_var(ws["id"], {"key": var["key"], "value": var["value"],  # type: ignore[attr-defined]
                                       "category": var["category"], "hcl": bool(var["hcl"]),
                                       "sensitive": bool(var["sensitive"])})
        for team in teams:
            self._import_team(ws, team)
        state = self.current_legacy_state(env["id"])  # type: ignore[attr-defined]
        if state is not None:
            body = bytes(state["body"])
            self.create_state_version(ws, user, serial=state["serial"],  # type: ignore[attr-defined]
                                      md5=md5_hex(body), lineage=state["lineage"], state=body, force=True,
                                      require_lock=False)
            if self._one("SELECT 1 FROM legacy_states WHERE env_id = ? AND id < ?", (env["id"], state["id"])):
                self.set_meta(_HISTORY + ws["id"], json.dumps(  # type: ignore[attr-defined]
                    {"env_id": env["id"], "before": state["id"], "due": time.time() + self.history_import_seconds}))
        if not env["locked"]:
            self.update_environment(env["id"], locked=1, locked_by=user["username"],  # type: ignore[attr-defined]
                                    lock_reason=f"migrated to workspace {ws['org']}/{ws['name']}")
        fields: dict[str, Any] = {"working_directory": env["vcs_working_directory"] or ""}
        if ws["vcs_identifier"] and not ws["vcs_branch"]:
            fields["vcs_branch"] = env["vcs_branch"] or ""
        self._update("workspaces", "id", ws["id"], fields)
        return {**ws, **fields}

    def import_history_due(self, ws_id: str) -> None:
        """Add the imported environment's older states to the workspace once the background import is due."""
        pending = self.find_meta(_HISTORY + ws_id)  # type: ignore[attr-defined]
        if pending is None:
            return
        job = json.loads(pending)
        if time.time() < job["due"]:
            return
        with self.tx():  # type: ignore[attr-defined]
            self._x("DELETE FROM meta WHERE key = ?", (_HISTORY + ws_id,))
            lowest = self._one("SELECT MIN(seq) AS seq FROM state_versions WHERE workspace_id = ?", (ws_id,))
            seq = (lowest["seq"] if lowest and lowest["seq"] is not None else 1) - 1
            for old in self._q("SELECT * FROM legacy_states WHERE env_id = ? AND id < ? ORDER BY id DESC",
                               (job["env_id"], job["before"])):  # gone with a deleted environment
                body = bytes(old["body"])
                row = {"id": new_id("sv-"), "workspace_id": ws_id, "seq": seq, "serial": old["serial"],
                       "lineage": old["lineage"], "md5": md5_hex(body), "status": "finalized", "state": body,
                       "download_token": secrets.token_urlsafe(24), "json_download_token": secrets.token_urlsafe(24),
                       "created_at": old["created_at"]}
                self._insert("state_versions", row)
                self._insert("blobs", {"token": row["download_token"], "kind": "state", "owner_id": row["id"],
                                       "direction": "download"})
                seq -= 1

    def _import_team(self, ws: dict[str, Any], team: dict[str, Any]) -> None:
        row = self._one("SELECT * FROM teams WHERE org = ? AND name = ?", (ws["org"], team["name"]))
        if row is None:
            row = self._insert("teams", {"id": new_id("team-"), "org": ws["org"], "name": team["name"],
                                         "created_at": now_iso()})
        for username in team["members"]:
            member = self.find_user(username)
            if member is None:
                continue  # no account on the new product: nobody can be invented
            self._x("INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?, ?)", (row["id"], member["id"]))
            self._x("INSERT OR IGNORE INTO org_members (org, user_id, role) VALUES (?, ?, 'members')",
                    (ws["org"], member["id"]))
        self._x("INSERT OR REPLACE INTO team_workspaces (id, team_id, workspace_id, access, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (new_id("tws-"), row["id"], ws["id"], team["access"], now_iso()))
