"""Teams, team membership and team access to workspaces."""

from __future__ import annotations

import json
from typing import Iterator

from runbook_lib.http import create_or_adopt
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.tfe.base import API, JSONAPI, TfeBase


class TeamsApi(TfeBase):
    """Teams (``/organizations/:org/teams``), their members and their access to workspaces (``team-workspaces``)."""

    def list_teams(self, organization: str, *, fresh: bool = False) -> Iterator[Resource]:
        """Yield the organization's teams (``owners`` included); relationship ``users`` lists member ids."""
        return self._list(f"/organizations/{_seg(organization)}/teams", reuse=True, fresh=fresh)

    def find_team(self, organization: str, name: str, *, fresh: bool = False) -> Resource | None:
        """The team of that name, or None."""
        return next((t for t in self.list_teams(organization, fresh=fresh) if t.get("name") == name), None)

    def teams_with_members(self, organization: str, *, fresh: bool = False) -> dict[str, tuple[Resource, list[str]]]:
        """Every team of the organization with its members' usernames, in one listing
        (``GET /organizations/:org/teams?include=users``, teams.mdx "List teams": `include` may be `users`).

        Returns:
            {team name: (team, sorted member usernames)}.
        """
        out = {}
        for team in self._list(f"/organizations/{_seg(organization)}/teams", {"include": "users"}, reuse=True,
                               fresh=fresh):
            ids = set(team.rel("users") or [])
            names = sorted(u.get("username") for u in team.included if u.type == "users" and u.id in ids)
            out[team.get("name")] = (team, names)
        return out

    def team_members(self, team_id: str) -> list[str]:
        """The usernames of a team's members (``GET /teams/:id?include=users``), sorted."""
        team = self._get(f"/teams/{_seg(team_id)}", {"include": "users"}, reuse=True)
        return sorted(u.get("username") for u in team.included if u.type == "users")

    def create_team(self, organization: str, name: str, *, adopt_existing: bool = True) -> Resource:
        """Create a team, or adopt the team of that name (``adopted=True``).

        Raises:
            ConflictError: exists and ``adopt_existing`` is False.
            ValidationError: refused (an invalid name).
        """
        doc = document("teams", {"name": name})
        return self._create_unique(lambda: self._send("POST", f"/organizations/{_seg(organization)}/teams", doc),
                                   lambda: self.find_team(organization, name, fresh=True),
                                   adopt_existing=adopt_existing, what=f"team {name!r}")

    def add_team_members(self, team_id: str, usernames: list[str]) -> None:
        """Add users (by username) to a team; adding a member again changes nothing (so a retry is safe).

        Raises:
            NotFoundError: the team or one of the users does not exist (nobody was added).
        """
        self.session.request("POST", API + f"/teams/{_seg(team_id)}/relationships/users",
                             data=json.dumps({"data": [{"type": "users", "id": u} for u in usernames]}),
                             headers={"Content-Type": JSONAPI})

    def remove_team_members(self, team_id: str, usernames: list[str]) -> None:
        """Remove users (by username) from a team; the users themselves stay."""
        self.session.request("DELETE", API + f"/teams/{_seg(team_id)}/relationships/users",
                             data=json.dumps({"data": [{"type": "users", "id": u} for u in usernames]}),
                             headers={"Content-Type": JSONAPI})

    def list_team_access(self, workspace_id: str, *, fresh: bool = False) -> Iterator[Resource]:
        """Yield every team's access to a workspace (``team-workspaces``: ``access``, relationship ``team``)."""
        return self._list("/team-workspaces", {"filter[workspace][id]": workspace_id}, reuse=True, fresh=fresh)

    def grant_team_access(self, team_id: str, workspace_id: str, access: str) -> Resource:
        """Give a team ``access`` on a workspace; on an ambiguous outcome adopt the row the host holds.

        Raises:
            ValidationError: refused (an invalid level, or the team already has access: read it first).
        """
        doc = document("team-workspaces", {"access": access},
                       {"team": ("teams", team_id), "workspace": ("workspaces", workspace_id)})

        def read_back() -> Resource | None:
            return next((a for a in self.list_team_access(workspace_id, fresh=True) if a.rel("team") == team_id),
                        None)

        return create_or_adopt(lambda: self._send("POST", "/team-workspaces", doc), read_back)

    def update_team_access(self, access_id: str, access: str) -> Resource:
        """PATCH a team's access level on a workspace."""
        return self._send("PATCH", f"/team-workspaces/{_seg(access_id)}",
                          document("team-workspaces", {"access": access}, id_=access_id))  # type: ignore[return-value]

    def account(self) -> Resource:
        """The token's user (``GET /account/details``: ``username``; 404 for a team or organization token)."""
        return self._get("/account/details", reuse=True)
