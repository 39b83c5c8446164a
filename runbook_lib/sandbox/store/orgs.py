"""New organizations, their members and VCS connections (OAuth clients and tokens)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (StoreBase, _valid_ws_name, new_id, now_iso)


class OrganizationStore(StoreBase):
    """New organizations, their members and VCS connections (OAuth clients and tokens)."""

    # --- new organizations and OAuth ---------------------------------------------------------------

    def create_organization(self, name: str, email: str, owner: dict[str, Any]) -> dict[str, Any]:
        """Create an organization owned by `owner`.

        Raises:
            UnprocessableError: invalid name, or the name is taken (by a new or a legacy organization).
        """
        if not name or not _valid_ws_name(name, 40):
            raise errors.UnprocessableError("Name is invalid", pointer="/data/attributes/name")
        if self.org_name_taken(name):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        row = self._insert("organizations", {"name": name, "external_id": new_id("org-"), "email": email,
                                             "created_at": now_iso()})
        self.add_org_member(name, owner["id"], "owners")
        return row

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
                "id": new_id("ot-"), "client_id": row["id"], "uid": str(secrets.randbelow(10**8)),
                "token_sha256": hashlib.sha256(token_string.encode()).hexdigest(),
                "service_provider_user": "sandbox-vcs-user", "has_ssh_key": 0, "created_at": now_iso()})
        return row

    def get_oauth_client(self, client_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """An OAuth client of one of the user's organizations.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("oauth_clients", client_id, user)

    def list_oauth_clients(self, org: str) -> list[dict[str, Any]]:
        """The organization's OAuth clients, oldest first."""
        return self._q("SELECT * FROM oauth_clients WHERE org = ? ORDER BY created_at, id", (org,))

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

