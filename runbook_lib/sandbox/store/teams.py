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

import json

from runbook_lib.sandbox import access, errors
from runbook_lib.sandbox.store.base import StoreBase, _valid_ws_name, new_id, now_iso

LEGACY_ACCESS = ("read", "write", "admin")
#: Access levels of team access (team-access.mdx `access`): the fixed sets and `custom`.
ACCESS_LEVELS = access.ACCESS_LEVELS
#: A team's organization access flags (teams.mdx "Organization Access"; go-tfe `team.go`
#: OrganizationAccess): each false unless granted.
ORGANIZATION_ACCESS = ("manage-policies", "manage-policy-overrides", "manage-workspaces", "manage-vcs-settings",
                       "manage-providers", "manage-modules", "manage-run-tasks", "manage-projects",
                       "read-workspaces", "read-projects", "manage-membership", "manage-teams",
                       "manage-organization-access", "access-secret-teams", "manage-agent-pools")


def check_team_attributes(attrs: dict[str, Any]) -> None:
    """Refuse team attributes the sandbox cannot keep as asked (422 naming the attribute)."""
    org_access = attrs.get("organization-access")
    if org_access is not None:
        if not isinstance(org_access, dict) or not all(isinstance(v, bool) for v in org_access.values()):
            raise errors.UnprocessableError("organization-access must map permissions to true or false",
                                            pointer="/data/attributes/organization-access")
        unknown = sorted(set(org_access) - set(ORGANIZATION_ACCESS))
        if unknown:
            raise errors.UnprocessableError(f"organization-access has unknown permissions {', '.join(unknown)}",
                                            pointer="/data/attributes/organization-access")
    if "visibility" in attrs and attrs["visibility"] not in ("secret", "organization"):
        raise errors.UnprocessableError("visibility must be secret or organization",
                                        pointer="/data/attributes/visibility")
    if "sso-team-id" in attrs and attrs["sso-team-id"] is not None and not isinstance(attrs["sso-team-id"], str):
        raise errors.UnprocessableError("sso-team-id must be a string", pointer="/data/attributes/sso-team-id")
    if "allow-member-token-management" in attrs and not isinstance(attrs["allow-member-token-management"], bool):
        raise errors.UnprocessableError("allow-member-token-management must be true or false",
                                        pointer="/data/attributes/allow-member-token-management")
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
        return self._team_grant(team, ws_id) is not None

    def _team_grant(self, team: dict[str, Any], ws_id: str) -> access.Grant | None:
        """What a team may do on a workspace: its team access (fixed level or custom permissions) joined with
        its organization access (`manage-workspaces`: admin everywhere; `read-workspaces`: read); None when
        it has neither (the workspace is not visible to it)."""
        grant = None
        row = self._one("SELECT * FROM team_workspaces WHERE team_id = ? AND workspace_id = ?", (team["id"], ws_id))
        if row is not None:
            grant = self.access_grant(row)
        org_access = self.team_settings(team)["organization-access"]
        for flag, level in (("manage-workspaces", "admin"), ("read-workspaces", "read")):
            if org_access.get(flag):
                grant = access.FIXED[level] if grant is None else grant.union(access.FIXED[level])
        return grant

    def access_grant(self, row: dict[str, Any]) -> access.Grant:
        """The permissions a team-workspaces row stands for (a fixed level, or its custom permissions)."""
        if row["access"] == "custom":
            return access.custom_grant(json.loads(self.find_meta(f"tws-custom:{row['id']}", "{}") or "{}"))
        return access.FIXED[row["access"]]

    def workspace_grant(self, user: dict[str, Any], ws_id: str) -> access.Grant:
        """What the caller may do on a workspace it can see: everything for a person (the sandbox's users are
        owners or members acting as owners did in 2018), its team's grant for a team token."""
        team = self.token_team(user)
        if team is None:
            return access.EVERYTHING
        return self._team_grant(team, ws_id) or access.Grant()

    def require(self, user: dict[str, Any], ws: dict[str, Any], action: str) -> None:
        """Refuse an action the caller's grant on the workspace does not allow (`access.NEEDS`).

        Raises:
            NotFoundError: not allowed (the API pages: "not found, or user unauthorized to perform action").
            ForbiddenError: a force delete that is not allowed (workspaces.mdx "Force Delete a workspace").
        """
        flag = access.NEEDS[action]
        if self.workspace_grant(user, ws["id"]).can()[flag]:
            return
        if action == "force-delete":
            raise errors.ForbiddenError("Not authorized to perform a force delete on the workspace "
                                        "(needs admin access)")
        raise errors.NotFoundError()

    def run_permissions(self, user: dict[str, Any], ws_id: str) -> dict[str, bool]:
        """A run's `permissions` for the caller."""
        return self.workspace_grant(user, ws_id).run_can()

    def require_org_workspace_creation(self, org: str, user: dict[str, Any]) -> None:
        """A team token creates workspaces only with `manage-workspaces` organization access
        (permissions.mdx "Manage all workspaces"); 404 otherwise (workspaces.mdx "Create a Workspace":
        "Organization not found or user unauthorized to perform action")."""
        team = self.token_team(user)
        if team is not None and not self.team_settings(team)["organization-access"].get("manage-workspaces"):
            raise errors.NotFoundError()

    # --- team settings (teams.mdx "Create a Team", "Update a Team") -----------------------------------

    def team_settings(self, team: dict[str, Any]) -> dict[str, Any]:
        """A team's kept attributes: `organization-access` (every flag, false unless granted; all true for
        the owners team), `visibility`, `sso-team-id`, `allow-member-token-management`."""
        owners = team["name"] == OWNERS
        kept = json.loads(self.find_meta(f"team-settings:{team['id']}", "{}") or "{}")
        org_access = {flag: owners for flag in ORGANIZATION_ACCESS}
        org_access.update(kept.get("organization-access") or {})
        return {"organization-access": org_access, "visibility": kept.get("visibility", "secret"),
                "sso-team-id": kept.get("sso-team-id"),
                "allow-member-token-management": kept.get("allow-member-token-management", True)}

    def update_team(self, team_id: str, attrs: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Change a team's name and kept attributes (owners only; the owners team keeps its name and access).

        Raises:
            UnprocessableError: an invalid or taken name, an unknown organization-access flag, a bad value.
        """
        team = self.get_team(team_id, user)
        self._require_owner(team["org"], user)
        check_team_attributes(attrs)
        if team["name"] == OWNERS and ({"name", "organization-access"} & set(attrs)):
            raise errors.UnprocessableError("the owners team's name and organization access cannot change",
                                            pointer="/data/attributes")
        with self.tx():
            name = attrs.get("name")
            if name is not None and name != team["name"]:
                if not isinstance(name, str) or not _valid_ws_name(name):
                    raise errors.UnprocessableError("Name is invalid: only letters, numbers, -, and _ are allowed",
                                                    pointer="/data/attributes/name")
                if name.lower() == OWNERS or self._one("SELECT 1 FROM teams WHERE org = ? AND lower(name) = lower(?) "
                                                       "AND id != ?", (team["org"], name, team_id)):
                    raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
                self._update("teams", "id", team_id, {"name": name})
            self.keep_team_settings(team_id, attrs)
        return self.get_team(team_id, user)

    def keep_team_settings(self, team_id: str, attrs: dict[str, Any]) -> None:
        """Store the kept attributes of a create or update request (checked by `check_team_attributes`)."""
        kept = json.loads(self.find_meta(f"team-settings:{team_id}", "{}") or "{}")
        if "organization-access" in attrs:
            kept["organization-access"] = {**(kept.get("organization-access") or {}), **attrs["organization-access"]}
        for key in ("visibility", "sso-team-id", "allow-member-token-management"):
            if key in attrs:
                kept[key] = attrs[key]
        self.set_meta(f"team-settings:{team_id}", json.dumps(kept))

    def authenticate(self, value: str) -> dict[str, Any] | None:
        """The token's user, or None; a team token past its `expired-at` authenticates no more
        (team-tokens.mdx "Generate a new team token": `expired-at`)."""
        user = super().authenticate(value)  # type: ignore[misc]
        if user is not None and user["username"].startswith(TEAM_USER_PREFIX):
            expiry = self.find_meta(f"token-expired-at:{user['token_id']}")
            if expiry and expiry <= now_iso():
                return None
        return user

    def create_team_token(self, team_id: str, user: dict[str, Any],
                          expired_at: str | None = None) -> tuple[dict[str, Any], str]:
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
            row = self.get_team_token(team_id, user)
            if expired_at:
                self.set_meta(f"token-expired-at:{row['id']}", expired_at)
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
        return {**row, "team_id": team["id"], "expired_at": self.find_meta(f"token-expired-at:{row['id']}")}

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

    def _check_access(self, level: Any, attrs: dict[str, Any] | None = None) -> str:
        if level not in ACCESS_LEVELS:
            raise errors.UnprocessableError(f"Access is not included in the list ({', '.join(ACCESS_LEVELS)})",
                                            pointer="/data/attributes/access")
        problem = access.check_custom(attrs or {}, level)
        if problem:
            raise errors.UnprocessableError(problem, pointer="/data/attributes")
        return level

    def _keep_custom(self, access_id: str, level: str, attrs: dict[str, Any]) -> None:
        key = f"tws-custom:{access_id}"
        if level != "custom":
            self._x("DELETE FROM meta WHERE key = ?", (key,))
            return
        kept = json.loads(self.find_meta(key, "{}") or "{}")
        kept.update({k: attrs[k] for k in access.CUSTOM_KEYS if k in attrs})
        self.set_meta(key, json.dumps(kept))

    def create_team_access(self, team_id: str, ws_id: str, level: Any, user: dict[str, Any],
                           attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Give a team `access` on a workspace of the same organization.

        Raises:
            NotFoundError: team or workspace missing or foreign.
            UnprocessableError: invalid access, another organization's team, or the team has access already.
        """
        level = self._check_access(level, attrs)
        team = self.get_team(team_id, user)
        ws = self._visible("workspaces", ws_id, user)
        self._require_owner(ws["org"], user)
        if team["org"] != ws["org"]:
            raise errors.UnprocessableError("Team must belong to the workspace's organization",
                                            pointer="/data/relationships/team")
        if self._one("SELECT 1 FROM team_workspaces WHERE team_id = ? AND workspace_id = ?", (team_id, ws_id)):
            raise errors.UnprocessableError("Team has already been taken", pointer="/data/relationships/team")
        with self.tx():
            row = self._insert("team_workspaces", {"id": new_id("tws-"), "team_id": team_id, "workspace_id": ws_id,
                                                   "access": level, "created_at": now_iso()})
            self._keep_custom(row["id"], level, attrs or {})
        return row

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

    def update_team_access(self, access_id: str, level: Any, user: dict[str, Any],
                           attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change a team's access level (or its custom permissions) on a workspace."""
        row = self.get_team_access(access_id, user)
        level = self._check_access(row["access"] if level is None else level, attrs)
        self._require_owner(self._visible("workspaces", row["workspace_id"], user)["org"], user)
        with self.tx():
            self._update("team_workspaces", "id", access_id, {"access": level})
            self._keep_custom(access_id, level, attrs or {})
        return {**row, "access": level}

    def delete_team_access(self, access_id: str, user: dict[str, Any]) -> None:
        """Remove a team's access to a workspace."""
        row = self.get_team_access(access_id, user)
        self._require_owner(self._visible("workspaces", row["workspace_id"], user)["org"], user)
        self._x("DELETE FROM team_workspaces WHERE id = ?", (access_id,))
