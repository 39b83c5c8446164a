"""New organizations, their members and VCS connections (OAuth clients and tokens)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import new_id, now_iso, StoreBase, _valid_ws_name, visible_row


# Tables that name their organization in an `org` column (a rename follows them).
_PROJECT_NAME = re.compile(r"[A-Za-z0-9 _-]+")
_ORG_REFERENCES = ("workspaces", "org_members", "oauth_clients", "projects", "agent_pools")


class OrganizationStore(StoreBase):
    """New organizations, their members and VCS connections (OAuth clients and tokens)."""

    # --- new organizations and OAuth ---------------------------------------------------------------

    def create_organization(self, name: str, email: str, owner: dict[str, Any],
                            default_execution_mode: str = "remote") -> dict[str, Any]:
        """Create an organization owned by `owner`.

        Raises:
            UnprocessableError: invalid name, or the name is taken (by a new or a legacy organization).
        """
        if not name or not _valid_ws_name(name, 40):
            raise errors.UnprocessableError("Name is invalid", pointer="/data/attributes/name")
        if self.org_name_taken(name):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        stamp = now_iso()
        # Every organization has a default project that new workspaces land in (projects.mdx:
        # "Every organization has a default project"; go-tfe `organization.go` include `default_project`).
        project = {"id": new_id("prj-"), "org": name, "name": "Default Project", "created_at": stamp}
        with self.tx():
            self._insert("organizations", {"name": name, "external_id": new_id("org-"), "email": email,
                                           "created_at": stamp, "default_project_id": project["id"],
                                           "default_execution_mode": default_execution_mode})
            self._insert("projects", project)
            self.add_org_member(name, owner["id"], "owners")
        return self._one("SELECT * FROM organizations WHERE name = ?", (name,))  # type: ignore[return-value]

    def update_organization(self, org: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """Change an organization's settings; a new `name` renames it everywhere it is referenced.

        Args:
            org: the organization row (already checked visible).
            fields: column -> value (name, email, session_timeout, session_remember,
                default_execution_mode, default_agent_pool_id).

        Raises:
            UnprocessableError: invalid or taken new name.
        """
        new_name = fields.get("name")
        fields = dict(fields)
        kept = fields.pop("settings", None)
        if kept:  # kept beside the row (settings added after the table)
            self.set_meta(f"org-settings:{org['external_id']}", json.dumps({**self.org_settings(org), **kept}))
        with self.tx():
            if new_name and new_name != org["name"]:
                if not _valid_ws_name(new_name, 40):
                    raise errors.UnprocessableError("Name is invalid", pointer="/data/attributes/name")
                if self.org_name_taken(new_name):
                    raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
                for table in _ORG_REFERENCES:
                    self._x(f"UPDATE {table} SET org = ? WHERE org = ?", (new_name, org["name"]))
            self._update("organizations", "name", org["name"], fields)
        return self._one("SELECT * FROM organizations WHERE name = ?",  # type: ignore[return-value]
                         (new_name or org["name"],))

    def org_settings(self, org: dict[str, Any]) -> dict[str, Any]:
        """The kept settings: `allow-force-delete-workspaces` (organizations.mdx: "Whether workspace administrators
        can delete workspaces with resources under management. If false, only organization owners may"),
        `cost-estimation-enabled`; both false by default."""
        kept = json.loads(self.find_meta(f"org-settings:{org['external_id']}", "{}") or "{}")
        return {"allow-force-delete-workspaces": False, "cost-estimation-enabled": False, **kept}

    def org_allows_force_delete(self, org: dict[str, Any]) -> bool:
        return bool(self.org_settings(org)["allow-force-delete-workspaces"])

    def delete_organization(self, name: str) -> None:
        """Delete an organization and everything in it (organizations.mdx: deleting an organization
        deletes its workspaces, their state and runs, and its VCS connections)."""
        with self.tx():
            ws_ids = [w["id"] for w in self._q("SELECT id FROM workspaces WHERE org = ?", (name,))]
            for ws_id in ws_ids:
                self.delete_workspace(ws_id)  # type: ignore[attr-defined]
            self._x("DELETE FROM oauth_tokens WHERE client_id IN (SELECT id FROM oauth_clients WHERE org = ?)",
                    (name,))
            for table in ("oauth_clients", "projects", "agent_pools", "org_members"):
                self._x(f"DELETE FROM {table} WHERE org = ?", (name,))
            self._x("DELETE FROM organizations WHERE name = ?", (name,))

    def find_project(self, project_id: str) -> dict[str, Any] | None:
        """A project without access checks (the caller already checked its organization), with its
        `description`, or None."""
        row = self._one("SELECT * FROM projects WHERE id = ?", (project_id,))
        return self._with_description(row) if row else None

    def _with_description(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "description": self.find_meta(f"project-description:{row['id']}")}

    def create_project(self, org: str, name: Any, description: str | None = None) -> dict[str, Any]:
        """Create a project in an organization.

        Raises:
            UnprocessableError: a blank, too long or badly spelled name, or one the organization already
                uses ("letters, numbers, spaces, -, and _", at most 40 characters, unique in the organization:
                projects.mdx "Create a Project").
        """
        if not isinstance(name, str) or not name.strip():
            raise errors.UnprocessableError("Name can't be blank", pointer="/data/attributes/name")
        if len(name) > 40 or not _PROJECT_NAME.fullmatch(name):
            raise errors.UnprocessableError("Name is invalid: at most 40 letters, numbers, spaces, - and _",
                                            pointer="/data/attributes/name")
        if self._one("SELECT 1 FROM projects WHERE org = ? AND name = ?", (org, name)):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        row = {"id": new_id("prj-"), "org": org, "name": name, "created_at": now_iso()}
        with self.tx():
            self._insert("projects", row)
            if description:  # projects.mdx `description` (a column the table predates, kept beside it)
                self.set_meta(f"project-description:{row['id']}", description)
        return self._with_description(row)

    def list_projects(self, org: str) -> list[dict[str, Any]]:
        return [self._with_description(r) for r in self._q("SELECT * FROM projects WHERE org = ? ORDER BY name",
                                                           (org,))]

    def delete_project(self, project: dict[str, Any], workspace_count: int) -> None:
        """Delete an empty project.

        Raises:
            ConflictError: the organization's default project, or a project that still holds workspaces
                (nothing is deleted with it; the operator moves or deletes them first).
        """
        org = self._one("SELECT default_project_id FROM organizations WHERE name = ?", (project["org"],))
        if org and org["default_project_id"] == project["id"]:
            raise errors.ConflictError("The default project of an organization cannot be deleted.")
        if workspace_count:
            raise errors.ConflictError(f"Project {project['name']} still holds {workspace_count} workspace(s): "
                                       "move them to another project or delete them first.")
        with self.tx():
            self._x("DELETE FROM projects WHERE id = ?", (project["id"],))

    # --- agent pools: the organization setting `default-agent-pool` points at one ---------------------

    def create_agent_pool(self, org: str, name: str) -> dict[str, Any]:
        """Create an agent pool (agents.mdx `POST /organizations/:org/agent-pools`).

        Raises:
            UnprocessableError: blank or taken name.
        """
        if not name:
            raise errors.UnprocessableError("Name can't be blank", pointer="/data/attributes/name")
        if self._one("SELECT id FROM agent_pools WHERE org = ? AND name = ?", (org, name)):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        return self._insert("agent_pools", {"id": new_id("apool-"), "org": org, "name": name,
                                            "created_at": now_iso()})

    get_agent_pool = visible_row("agent_pools", "An agent pool of one of the user's organizations")

    def delete_agent_pool(self, pool_id: str, user: dict[str, Any]) -> None:
        """Delete an agent pool; an organization that defaulted to it falls back to no default pool.

        Raises:
            NotFoundError: missing or foreign.
        """
        pool_id = self.get_agent_pool(pool_id, user)["id"]
        with self.tx():
            self._x("UPDATE organizations SET default_agent_pool_id = NULL WHERE default_agent_pool_id = ?",
                    (pool_id,))
            self._x("DELETE FROM agent_pools WHERE id = ?", (pool_id,))

    def add_org_member(self, org: str, user_id: str, role: str = "owners") -> None:
        """Make a user a member of a new organization."""
        self._x("INSERT OR REPLACE INTO org_members (org, user_id, role) VALUES (?, ?, ?)", (org, user_id, role))

    def get_organization(self, name: str, user: dict[str, Any]) -> dict[str, Any]:
        """The organization, if the user is a member.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("organizations", name, user)

    def list_organizations(self, user: dict[str, Any]) -> list[dict[str, Any]]:
        """Organizations the user belongs to, by name."""
        return self._q("SELECT o.* FROM organizations o JOIN org_members m ON m.org = o.name "
                       "WHERE m.user_id = ? ORDER BY o.name", (user["id"],))

    def create_oauth_client(self, org: str, *, service_provider: str, name: str | None, http_url: str | None,
                            api_url: str | None, token_string: str | None) -> dict[str, Any]:
        """Create an OAuth client (VCS connection) and, given a token string, its OAuth token."""
        row = self._insert("oauth_clients", {"id": new_id("oc-"), "org": org, "name": name,
                                             "service_provider": service_provider, "http_url": http_url,
                                             "api_url": api_url, "created_at": now_iso()})
        if token_string:
            self._insert("oauth_tokens", {
                # `uid` is the VCS user id an OAuth handshake yields; a token string given through the
                # API went through none, so it has no uid (inferred: go-tfe's TestOAuthTokensList
                # compares a token known only by id from the client's create answer with the listed one).
                "id": new_id("ot-"), "client_id": row["id"], "uid": "",
                "token_sha256": hashlib.sha256(token_string.encode()).hexdigest(),
                "service_provider_user": "sandbox-vcs-user", "has_ssh_key": 0, "created_at": now_iso()})
        return row

    get_oauth_client = visible_row("oauth_clients", "An OAuth client of one of the user's organizations")

    def list_oauth_clients(self, org: str) -> list[dict[str, Any]]:
        """The organization's OAuth clients, oldest first."""
        return self._q("SELECT * FROM oauth_clients WHERE org = ? ORDER BY created_at, id", (org,))

    def delete_oauth_client(self, client_id: str, user: dict[str, Any]) -> None:
        """Delete an OAuth client and its tokens (oauth-clients.mdx `DELETE /oauth-clients/:id`).

        Raises:
            NotFoundError: missing or foreign.
        """
        client_id = self.get_oauth_client(client_id, user)["id"]
        with self.tx():
            self._x("DELETE FROM oauth_tokens WHERE client_id = ?", (client_id,))
            self._x("DELETE FROM oauth_clients WHERE id = ?", (client_id,))

    def list_org_oauth_tokens(self, org: str) -> list[dict[str, Any]]:
        """The OAuth tokens of all the organization's OAuth clients, oldest first."""
        return self._q("SELECT t.* FROM oauth_tokens t JOIN oauth_clients c ON c.id = t.client_id "
                       "WHERE c.org = ? ORDER BY t.created_at, t.id", (org,))

    def list_oauth_tokens(self, client_id: str) -> list[dict[str, Any]]:
        """An OAuth client's tokens."""
        return self._q("SELECT * FROM oauth_tokens WHERE client_id = ? ORDER BY created_at, id", (client_id,))

    def get_oauth_token(self, token_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """An OAuth token (with its client's `org`) of one of the user's organizations.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("oauth_tokens", token_id, user, columns="x.*, c.org, c.service_provider")

    def oauth_token_client(self, token_id: str) -> dict[str, Any] | None:
        """The OAuth client (service_provider, http_url) behind an OAuth token, without access checks."""
        return self._one("SELECT c.* FROM oauth_tokens t JOIN oauth_clients c ON c.id = t.client_id "
                         "WHERE t.id = ?", (token_id,))

