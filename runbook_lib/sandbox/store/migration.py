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
"""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import StoreBase, _valid_ws_name, md5_hex, new_id, now_iso

_POINTER = "/data/attributes/migration-environment"


class MigrationStore(StoreBase):
    """The `migration-environment` import (called by workspace creation, inside its transaction)."""

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
        fields: dict[str, Any] = {"working_directory": env["vcs_working_directory"] or ""}
        if ws["vcs_identifier"] and not ws["vcs_branch"]:
            fields["vcs_branch"] = env["vcs_branch"] or ""
        self._update("workspaces", "id", ws["id"], fields)
        return {**ws, **fields}

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
