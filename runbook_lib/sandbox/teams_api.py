"""Handlers of the new API for teams, team membership and team access (`team-workspaces`).

Shapes follow the 2018 pages in hashicorp/terraform-website (`content/source/docs/enterprise/api/
teams.html.md`, `team-members.html.md`, `team-access.html.md`) and, where they are silent or older,
today's `teams.mdx` / `team-access.mdx` (hashicorp/terraform-docs-common):
- a team: attributes `name`, `users-count`, `visibility`, `permissions`; relationships `users` (data:
  the member ids), `organization`; `?include=users` adds the full user records (teams.html.md).
  Create answers 201 (today's teams.mdx; the 2018 page said 200).
- `filter[names]` (comma-separated) and `q` (a substring of the name) narrow the list (today's teams.mdx).
- team membership: POST/DELETE `/teams/:id/relationships/users` with `data[]` of `{type: users, id:
  <username>}`, answered 204 (team-members.html.md).
- team access: `team-workspaces` with `access` and relationships `team` and `workspace`; the list needs
  `filter[workspace][id]` ("Required", team-access.html.md); PATCH changes `access` (today's
  team-access.mdx: "Update Team Access to a Workspace").
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.tfe_api import _rel, _user, _user_doc
from runbook_lib.sandbox.wire import (Request, Response, includes, jsonapi_response, paginate, parse_resource,
                                      relationship_id)
from runbook_lib.sandbox.store.teams import OWNERS, check_team_attributes

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _team_doc(req: Request, team: dict[str, Any], users: list[dict[str, Any]]) -> dict[str, Any]:
    owners = team["name"] == OWNERS
    settings = req.store.team_settings(team)
    return {"id": team["id"], "type": "teams", "attributes": {
        "name": team["name"], "users-count": len(users), "visibility": settings["visibility"],
        "sso-team-id": settings["sso-team-id"],
        "allow-member-token-management": settings["allow-member-token-management"],
        "permissions": {"can-update-membership": True, "can-destroy": not owners,
                        "can-update-organization-access": not owners, "can-update-api-token": True,
                        "can-update-visibility": True},
        "organization-access": settings["organization-access"]},
        "relationships": {"users": {"data": [{"id": u["id"], "type": "users"} for u in users]},
                          "organization": _rel("organizations", team["org"]),
                          "authentication-token": {"meta": {}}},
        "links": {"self": f"/api/v2/teams/{team['id']}"}}


def _with_included(req: Request, docs: list[dict[str, Any]], users: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`include=users` adds every member's user record once; any other include is a 400."""
    # `organization-memberships` (teams.mdx) is not modelled: the sandbox keeps no membership records
    include = includes(req, ("users",), "the sandbox includes users only: it keeps no organization membership "
                                        "records")
    return {"included": [_user_doc(u) for u in users.values()]} if include else {}


def list_teams(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/teams` (paged; `filter[names]` narrows it)."""
    names_filter = req.query.get("filter[names]")
    names = [n for n in names_filter.split(",") if n] if names_filter else None
    teams = req.store.list_teams(org, _user(req), names)
    query = (req.query.get("q") or "").lower()
    if query:  # a case-insensitive substring of the name (today's teams.mdx, go-tfe TeamListOptions.Query)
        teams = [t for t in teams if query in t["name"].lower()]
    rows, meta, links = paginate(req, teams)
    docs, users = [], {}
    for team in rows:
        members = req.store.team_users(team["id"])
        users.update({u["id"]: u for u in members})
        docs.append(_team_doc(req, team, members))
    return jsonapi_response({"data": docs, **_with_included(req, docs, users), "links": links, "meta": meta})


def create_team(req: Request, org: str) -> Response:
    """`POST /api/v2/organizations/:org/teams` {name}: 201; 422 for a blank, invalid or taken name."""
    attrs, _ = parse_resource(req, "teams")
    check_team_attributes(attrs)
    team = req.store.create_team(org, attrs.get("name"), _user(req))
    req.store.keep_team_settings(team["id"], attrs)
    return jsonapi_response({"data": _team_doc(req, team, [])}, 201)


def update_team(req: Request, team_id: str) -> Response:
    """`PATCH /api/v2/teams/:id` (teams.mdx "Update a Team"): name, `organization-access`, `visibility`,
    `sso-team-id`, `allow-member-token-management`; 422 for an invalid or taken name or a bad value."""
    attrs, _ = parse_resource(req, "teams")
    if "allow-team-token-management" in attrs:
        # teams.mdx "Update a Team" spells go-tfe's `allow-member-token-management` this way: the same setting
        attrs = {**{k: v for k, v in attrs.items() if k != "allow-team-token-management"},
                 "allow-member-token-management": attrs["allow-team-token-management"]}
    team = req.store.update_team(team_id, attrs, _user(req))
    return jsonapi_response({"data": _team_doc(req, team, req.store.team_users(team["id"]))})


def show_team(req: Request, team_id: str) -> Response:
    """`GET /api/v2/teams/:id` (`include=users` for the member records)."""
    team = req.store.get_team(team_id, _user(req))
    members = req.store.team_users(team_id)
    doc = _team_doc(req, team, members)
    return jsonapi_response({"data": doc, **_with_included(req, [doc], {u["id"]: u for u in members})})


def delete_team(req: Request, team_id: str) -> Response:
    """`DELETE /api/v2/teams/:id`: 204 (403 for the owners team)."""
    req.store.delete_team(team_id, _user(req))
    return Response(204)


def _usernames(req: Request) -> list[str]:
    doc = req.json()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise errors.UnprocessableError("data must be a non-empty list of users", pointer="/data")
    names = []
    for item in data:
        if not isinstance(item, dict) or item.get("type") != "users" or not isinstance(item.get("id"), str) \
                or set(item) - {"type", "id"}:
            raise errors.UnprocessableError("each entry must be {\"type\": \"users\", \"id\": <username>}",
                                            pointer="/data")
        names.append(item["id"])
    return names


def add_team_users(req: Request, team_id: str) -> Response:
    """`POST /api/v2/teams/:id/relationships/users`: 204; 404 when the team or any user does not exist."""
    req.store.add_team_users(team_id, _usernames(req), _user(req))
    return Response(204)


def remove_team_users(req: Request, team_id: str) -> Response:
    """`DELETE /api/v2/teams/:id/relationships/users`: 204."""
    req.store.remove_team_users(team_id, _usernames(req), _user(req))
    return Response(204)


# --- team access ---------------------------------------------------------------------------------------

def _access_doc(req: Request, row: dict[str, Any]) -> dict[str, Any]:
    # a fixed level is answered with the permissions it stands for (team-access.mdx sample responses:
    # `runs`, `variables`, `state-versions`, `sentinel-mocks`, `workspace-locking`, `run-tasks`)
    return {"id": row["id"], "type": "team-workspaces",
            "attributes": {"access": row["access"], **req.store.access_grant(row).attributes()},
            "relationships": {
                "team": {**_rel("teams", row["team_id"]), "links": {"related": f"/api/v2/teams/{row['team_id']}"}},
                "workspace": {**_rel("workspaces", row["workspace_id"]),
                              "links": {"related": f"/api/v2/workspaces/{row['workspace_id']}"}}},
            "links": {"self": f"/api/v2/team-workspaces/{row['id']}"}}


def list_team_access(req: Request) -> Response:
    """`GET /api/v2/team-workspaces?filter[workspace][id]=ws-...` (the filter is required: 400 without)."""
    ws_id = req.query.get("filter[workspace][id]")
    if not ws_id:
        raise errors.BadRequestError("filter[workspace][id] is required")
    rows, meta, links = paginate(req, req.store.list_team_access(ws_id, _user(req)))
    return jsonapi_response({"data": [_access_doc(req, r) for r in rows], "links": links, "meta": meta})


def create_team_access(req: Request) -> Response:
    """`POST /api/v2/team-workspaces` {access, team, workspace}: 201; 422 for a bad level or a duplicate."""
    attrs, rels = parse_resource(req, "team-workspaces")
    team_id = relationship_id(rels, "team", "teams")
    ws_id = relationship_id(rels, "workspace", "workspaces")
    if not team_id or not ws_id:
        missing = "team" if not team_id else "workspace"
        raise errors.UnprocessableError(f"{missing.capitalize()} can't be blank",
                                        pointer=f"/data/relationships/{missing}")
    row = req.store.create_team_access(team_id, ws_id, attrs.get("access"), _user(req), attrs)
    return jsonapi_response({"data": _access_doc(req, row)}, 201)


def show_team_access(req: Request, access_id: str) -> Response:
    """`GET /api/v2/team-workspaces/:id`."""
    return jsonapi_response({"data": _access_doc(req, req.store.get_team_access(access_id, _user(req)))})


def update_team_access(req: Request, access_id: str) -> Response:
    """`PATCH /api/v2/team-workspaces/:id` {access}."""
    attrs, _ = parse_resource(req, "team-workspaces")
    return jsonapi_response({"data": _access_doc(req, req.store.update_team_access(
        access_id, attrs.get("access"), _user(req), attrs))})


def delete_team_access(req: Request, access_id: str) -> Response:
    """`DELETE /api/v2/team-workspaces/:id`: 204."""
    req.store.delete_team_access(access_id, _user(req))
    return Response(204)


# --- team tokens (team-tokens.mdx): one token per team, shown once at creation ---------------------------

def _team_token_doc(row: dict[str, Any], value: str | None = None) -> dict[str, Any]:
    return {"id": row["id"], "type": "authentication-tokens", "attributes": {
        "created-at": row["created_at"], "last-used-at": None, "description": row["description"],
        "token": value, "expired-at": row.get("expired_at")},
        "relationships": {"team": _rel("teams", row["team_id"])}}


def create_team_token(req: Request, team_id: str) -> Response:
    """`POST /api/v2/teams/:id/authentication-token`: 201 with the token's value (the only time it is
    shown); it replaces the team's previous token (team-tokens.mdx "Generate a new team token")."""
    expired_at = None
    if req.body.strip():
        # team-tokens.mdx: `data.type` "Must be `authentication-token`" (the answer's type is the plural);
        # go-tfe `team_token.go` TeamTokenCreateOptions has no JSON:API type, so its body says `"type": ""`
        attrs, _ = parse_resource(req, ("authentication-token", "authentication-tokens"), require_type=False)
        expired_at = attrs.get("expired-at")
        if expired_at is not None and not (isinstance(expired_at, str) and _ISO.fullmatch(expired_at)):
            raise errors.UnprocessableError("expired-at must be an ISO 8601 time like 2030-01-01T00:00:00.000Z",
                                            pointer="/data/attributes/expired-at")
        if expired_at:  # kept as the sandbox writes times, so it compares with the clock as text
            stamp = datetime.fromisoformat(expired_at.replace("Z", "+00:00")).astimezone(timezone.utc)
            expired_at = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    row, value = req.store.create_team_token(team_id, _user(req), expired_at)
    return jsonapi_response({"data": _team_token_doc(row, value)}, 201)


def show_team_token(req: Request, team_id: str) -> Response:
    """`GET /api/v2/teams/:id/authentication-token`: the token without its value; 404 when none."""
    return jsonapi_response({"data": _team_token_doc(req.store.get_team_token(team_id, _user(req)))})


def delete_team_token(req: Request, team_id: str) -> Response:
    """`DELETE /api/v2/teams/:id/authentication-token`: 204; the token stops working at once."""
    req.store.delete_team_token(team_id, _user(req))
    return Response(204)
