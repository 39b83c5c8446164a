"""Teams of both products: who may touch an environment or a workspace, and how much.

Legacy side (SANDBOX-DEFINED: the legacy product managed teams in its UI only; see
docs/legacy-api-contract.md): a legacy organization has teams; a team has members (usernames) and an
access level on some environments, one of `read`, `write`, `admin`. A member's username need not be a
user of the new product: the legacy product kept its own accounts, so a username with no row in `users`
is an account the new host does not have.

New side, as the documentation describes it:
- teams: `GET/POST /organizations/:org/teams`, `GET/DELETE /teams/:id`; a name holds only letters,
  digits, `-` and `_` and is unique in the organization (2018 teams.html.md, today's teams.mdx). Every
  organization has an `owners` team holding its owners (the 2018 sample list answer shows it; it cannot
  be destroyed: `permissions.can-destroy` false). The sandbox derives it from the organization's owners
  instead of storing it, so that reading teams never writes.
- members: `POST/DELETE /teams/:id/relationships/users` with usernames; "Both users and teams must
  already exist" (2018 team-members.html.md). Adding a user to a team makes them a member of the
  organization (the 2018 product had no separate invitation step).
- access: `team-workspaces` rows with `access` `read`, `write` or `admin` (2018 team-access.html.md),
  plus `plan` (today's team-access.mdx); one row per team and workspace.
"""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import StoreBase, _valid_ws_name, new_id, now_iso

LEGACY_ACCESS = ("read", "write", "admin")
#: Access levels the sandbox grants (today's team-access.mdx also has `custom`, not served here).
ACCESS_LEVELS = ("read", "plan", "write", "admin")
OWNERS = "owners"

#: A team's API token acts as a service account of the team (team-tokens.mdx: team tokens act as the team,
#: not as a user; a new token replaces the team's previous one). The sandbox keeps it as a user named
#: `api-team_<team id>`, a member of the organization in this role, that sees only the workspaces its team
#: has access to.
TEAM_TOKEN_ROLE = "team-token"
TEAM_USER_PREFIX = "api-team_"

# The owners team's id is derived from its organization's external id (`org-X` -> `team-owners-X`).
_OWNERS_PREFIX = "team-owners-"


def _owners_id(external_id: str) -> str:
    return _OWNERS_PREFIX + external_id[len("org-"):]


_TEAM_TABLES = ("legacy_teams", "legacy_team_members", "legacy_team_access", "teams", "team_members",
                "team_workspaces")


class TeamStore(StoreBase):
    """Teams, members and access of the legacy and the new product."""

    def reset(self) -> None:
        """Remove every object of both APIs, teams included."""
        with self.tx():
            super().reset()
            for table in _TEAM_TABLES:
                self._conn.execute(f"DELETE FROM {table}")

    # --- legacy teams (sandbox-defined) ------------------------------------------------------------

    def create_legacy_team(self, org: str, name: str, members: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """Create (or return) a legacy team with these member usernames (seed and tests only)."""
        row = self._one("SELECT * FROM legacy_teams WHERE org = ? AND name = ?", (org, name))
        if row is None:
            row = self._insert("legacy_teams", {"id": new_id("lteam-"), "org": org, "name": name,
                                                "created_at": now_iso()})
        for username in members:
            self._x("INSERT OR IGNORE INTO legacy_team_members (team_id, username) VALUES (?, ?)",
                    (row["id"], username))
        return row

    def grant_legacy_access(self, team_id: str, env_id: str, access: str) -> None:
        """Give a legacy team `access` (read, write, admin) on an environment."""
        if access not in LEGACY_ACCESS:
            raise errors.UnprocessableError(f"access must be one of {', '.join(LEGACY_ACCESS)}",
                                            pointer="/access")
        self._x("INSERT OR REPLACE INTO legacy_team_access (team_id, env_id, access) VALUES (?, ?, ?)",
                (team_id, env_id, access))

    def legacy_environment_teams(self, env_id: str) -> list[dict[str, Any]]:
        """The teams with access to an environment: [{name, access, members: [username, ...]}], by name."""
        rows = self._q("SELECT t.id, t.name, a.access FROM legacy_team_access a JOIN legacy_teams t "
                       "ON t.id = a.team_id WHERE a.env_id = ? ORDER BY t.name", (env_id,))
        for row in rows:
            row["members"] = [m["username"] for m in self._q(
                "SELECT username FROM legacy_team_members WHERE team_id = ? ORDER BY username", (row["id"],))]
        return rows

    # --- new teams -----------------------------------------------------------------------------------

    def _org_member(self, org: str, user: dict[str, Any]) -> dict[str, Any]:
        row = self._one("SELECT * FROM org_members WHERE org = ? AND user_id = ?", (org, user["id"]))
        if row is None:
            raise errors.NotFoundError()
        return row

    def _require_owner(self, org: str, user: dict[str, Any]) -> None:
        """Only owners manage teams and access (404 for outsiders, 403 for plain members)."""
        if self._org_member(org, user)["role"] != OWNERS:
            raise errors.ForbiddenError("only members of the owners team may manage teams")

    def _owners_team(self, org: str) -> dict[str, Any] | None:
        """The organization's owners team. It is not stored: its members are the users whose membership role
        is `owners`, so reading it never writes, and it exists from the organization's first moment."""
        row = self._one("SELECT external_id, created_at FROM organizations WHERE name = ?", (org,))
        if row is None:
            return None
        return {"id": _owners_id(row["external_id"]), "org": org, "name": OWNERS, "created_at": row["created_at"]}

    def is_owner(self, org: str, user_id: str) -> bool:
        """Whether the user is an owner of the new organization."""
        row = self._one("SELECT role FROM org_members WHERE org = ? AND user_id = ?", (org, user_id))
        return bool(row) and row["role"] == OWNERS

    def list_teams(self, org: str, user: dict[str, Any], names: list[str] | None = None) -> list[dict[str, Any]]:
        """The organization's teams by name (`names`: only those, as `filter[names]` asks)."""
        self._org_member(org, user)
        owners = self._owners_team(org)
        rows = sorted(self._q("SELECT * FROM teams WHERE org = ?", (org,)) + ([owners] if owners else []),
                      key=lambda r: r["name"])
        if names is not None:
            rows = [r for r in rows if r["name"] in names]
        return rows

    def create_team(self, org: str, name: Any, user: dict[str, Any]) -> dict[str, Any]:
        """Create a team.

        Raises:
            NotFoundError: missing or foreign organization.
            ForbiddenError: the user is not an owner.
            UnprocessableError: blank, invalid or taken name.
        """
        self._require_owner(org, user)
        if not name:
            raise errors.UnprocessableError("Name can't be blank", pointer="/data/attributes/name")
        if not isinstance(name, str) or not _valid_ws_name(name):
            raise errors.UnprocessableError("Name is invalid: only letters, numbers, -, and _ are allowed",
                                            pointer="/data/attributes/name")
        if name.lower() == OWNERS or self._one("SELECT 1 FROM teams WHERE org = ? AND lower(name) = lower(?)",
                                               (org, name)):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        return self._insert("teams", {"id": new_id("team-"), "org": org, "name": name, "created_at": now_iso()})

    def get_team(self, team_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A team of one of the user's organizations.

        Raises:
            NotFoundError: missing or foreign.
        """
        row = self._one("SELECT t.* FROM teams t JOIN org_members m ON m.org = t.org "
                        "WHERE t.id = ? AND m.user_id = ?", (team_id, user["id"]))
        if row is None and team_id.startswith(_OWNERS_PREFIX):
            org = self._one("SELECT o.name FROM organizations o JOIN org_members m ON m.org = o.name "
                            "WHERE 'org-' || ? = o.external_id AND m.user_id = ?",
                            (team_id[len(_OWNERS_PREFIX):], user["id"]))
            row = self._owners_team(org["name"]) if org else None
        if row is None:
            raise errors.NotFoundError()
        return row

    def delete_team(self, team_id: str, user: dict[str, Any]) -> None:
        """Delete a team and its access (the owners team cannot be deleted: 403)."""
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        if team["name"] == OWNERS:
            raise errors.ForbiddenError("the owners team cannot be deleted")
        with self.tx():
            self._drop_team_token(team)
            for table, column in (("team_members", "team_id"), ("team_workspaces", "team_id"), ("teams", "id")):
                self._x(f"DELETE FROM {table} WHERE {column} = ?", (team_id,))

    # --- team tokens ---------------------------------------------------------------------------------

    def token_team(self, user: dict[str, Any]) -> dict[str, Any] | None:
        """The team whose token `user` is (its service account), or None for a person."""
        if not (user.get("username") or "").startswith(TEAM_USER_PREFIX):
            return None
        team_id = user["username"][len(TEAM_USER_PREFIX):]
        return self._one("SELECT * FROM teams WHERE id = ?", (team_id,))

    def team_sees_workspace(self, team: dict[str, Any], ws_id: str) -> bool:
        return self._one("SELECT 1 FROM team_workspaces WHERE team_id = ? AND workspace_id = ?",
                         (team["id"], ws_id)) is not None

    def create_team_token(self, team_id: str, user: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Issue the team's token, replacing any previous one; owners only (teams are theirs to manage).

        Returns:
            (the token row, its value: shown once, in the create answer).
        """
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        if team["name"] == OWNERS:
            raise errors.UnprocessableError("the sandbox issues team tokens for teams it stores, not the "
                                            "owners team; use an owner's user token")
        with self.tx():
            self._drop_team_token(team)
            account = self.create_user(TEAM_USER_PREFIX + team["id"], "")
            self._x("INSERT OR IGNORE INTO org_members (org, user_id, role) VALUES (?, ?, ?)",
                    (team["org"], account["id"], TEAM_TOKEN_ROLE))
            value = self.create_token(account["id"], f"team token of {team['name']}")
        return self.get_team_token(team_id, user), value

    def get_team_token(self, team_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """The team's token row (never its value).

        Raises:
            NotFoundError: no such team, or it has no token.
        """
        team = self.get_team(team_id, user)
        row = self._one("SELECT t.id, t.created_at, t.description FROM tokens t JOIN users u ON u.id = t.user_id "
                        "WHERE u.username = ?", (TEAM_USER_PREFIX + team["id"],))
        if row is None:
            raise errors.NotFoundError()
        return {**row, "team_id": team["id"]}

    def delete_team_token(self, team_id: str, user: dict[str, Any]) -> None:
        """Revoke the team's token (404 when it has none)."""
        self.get_team_token(team_id, user)
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        with self.tx():
            self._drop_team_token(team)

    def _drop_team_token(self, team: dict[str, Any]) -> None:
        account = self.find_user(TEAM_USER_PREFIX + team["id"])
        if account:
            self._x("DELETE FROM tokens WHERE user_id = ?", (account["id"],))
            self._x("DELETE FROM org_members WHERE user_id = ?", (account["id"],))

    def team_users(self, team_id: str) -> list[dict[str, Any]]:
        """The team's members (user rows), by username."""
        if team_id.startswith(_OWNERS_PREFIX):
            return self._q("SELECT u.* FROM org_members m JOIN organizations o ON o.name = m.org JOIN users u "
                           "ON u.id = m.user_id WHERE 'org-' || ? = o.external_id AND m.role = ? "
                           "ORDER BY u.username", (team_id[len(_OWNERS_PREFIX):], OWNERS))
        return self._q("SELECT u.* FROM team_members tm JOIN users u ON u.id = tm.user_id WHERE tm.team_id = ? "
                       "ORDER BY u.username", (team_id,))

    def add_team_users(self, team_id: str, usernames: list[str], user: dict[str, Any]) -> None:
        """Add users (by username) to a team; each becomes a member of the organization.

        Raises:
            NotFoundError: the team, or any of the users, does not exist (nothing is added then).
        """
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        found = [self.find_user(name) for name in usernames]
        if any(row is None for row in found):
            raise errors.NotFoundError()
        with self.tx():
            for row in found:
                assert row is not None
                if team["name"] == OWNERS:  # owners team membership is the owners role in the organization
                    self.add_org_member(team["org"], row["id"], OWNERS)  # type: ignore[attr-defined]
                    continue
                self._x("INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?, ?)", (team_id, row["id"]))
                self._x("INSERT OR IGNORE INTO org_members (org, user_id, role) VALUES (?, ?, 'members')",
                        (team["org"], row["id"]))

    def remove_team_users(self, team_id: str, usernames: list[str], user: dict[str, Any]) -> None:
        """Remove users from a team (the users themselves stay).

        Raises:
            NotFoundError: the team, or any of the users, does not exist.
        """
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        found = [self.find_user(name) for name in usernames]
        if any(row is None for row in found):
            raise errors.NotFoundError()
        if team["name"] == OWNERS:
            raise errors.ForbiddenError("owners are removed from the organization's owners in the settings")
        with self.tx():
            for row in found:
                assert row is not None
                self._x("DELETE FROM team_members WHERE team_id = ? AND user_id = ?", (team_id, row["id"]))

    # --- team access (team-workspaces) -------------------------------------------------------------

    def _check_access(self, access: Any) -> str:
        if access not in ACCESS_LEVELS:
            raise errors.UnprocessableError(f"Access is not included in the list ({', '.join(ACCESS_LEVELS)})",
                                            pointer="/data/attributes/access")
        return access

    def create_team_access(self, team_id: str, ws_id: str, access: Any, user: dict[str, Any]) -> dict[str, Any]:
        """Give a team `access` on a workspace of the same organization.

        Raises:
            NotFoundError: team or workspace missing or foreign.
            UnprocessableError: invalid access, another organization's team, or the team has access already.
        """
        access = self._check_access(access)
        team = self.get_team(team_id, user)
        ws = self._visible("workspaces", ws_id, user)
        self._require_owner(ws["org"], user)
        if team["org"] != ws["org"]:
            raise errors.UnprocessableError("Team must belong to the workspace's organization",
                                            pointer="/data/relationships/team")
        if self._one("SELECT 1 FROM team_workspaces WHERE team_id = ? AND workspace_id = ?", (team_id, ws_id)):
            raise errors.UnprocessableError("Team has already been taken", pointer="/data/relationships/team")
        return self._insert("team_workspaces", {"id": new_id("tws-"), "team_id": team_id, "workspace_id": ws_id,
                                                "access": access, "created_at": now_iso()})

    def list_team_access(self, ws_id: str, user: dict[str, Any]) -> list[dict[str, Any]]:
        """Every team's access to a workspace (oldest first)."""
        self._visible("workspaces", ws_id, user)
        return self._q("SELECT * FROM team_workspaces WHERE workspace_id = ? ORDER BY created_at, id", (ws_id,))

    def get_team_access(self, access_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """One team-workspace row of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        row = self._one("SELECT a.* FROM team_workspaces a JOIN workspaces w ON w.id = a.workspace_id "
                        "JOIN org_members m ON m.org = w.org WHERE a.id = ? AND m.user_id = ?",
                        (access_id, user["id"]))
        if row is None:
            raise errors.NotFoundError()
        return row

    def update_team_access(self, access_id: str, access: Any, user: dict[str, Any]) -> dict[str, Any]:
        """Change a team's access level on a workspace."""
        access = self._check_access(access)
        row = self.get_team_access(access_id, user)
        self._require_owner(self._visible("workspaces", row["workspace_id"], user)["org"], user)
        self._update("team_workspaces", "id", access_id, {"access": access})
        return {**row, "access": access}

    def delete_team_access(self, access_id: str, user: dict[str, Any]) -> None:
        """Remove a team's access to a workspace."""
        row = self.get_team_access(access_id, user)
        self._require_owner(self._visible("workspaces", row["workspace_id"], user)["org"], user)
        self._x("DELETE FROM team_workspaces WHERE id = ?", (access_id,))
