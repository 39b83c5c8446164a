"""The new TFE API (`/api/v2`, JSON:API, bearer tokens): discovery, ping, account, and what its handlers share.

The handlers live one module per concern: `orgs_api`, `workspaces_api`, `states_api`, `tfe_runs_api`
(create, read, list) and `runs_api` (what a run does after it was created).

Each handler parses the request, calls the store, and serialises the reply in the shapes real TFE
and go-tfe use (`data.type` exact, dasherised attributes, relationships, links). Rules live in the
store; errors are raised as `SandboxError`s and rendered by the server.

Wire choices where the public documentation is silent (documented here so tests can rely on them):
- malformed JSON -> 400; a body without a `data` object -> 422 `param is missing or the value is
  empty: data`; a `data.type` that is not the endpoint's -> 409 (JSON:API's rule).
- lock accepts an empty body, `{"reason": ...}` (pytfe) and the JSON:API form Terraform sends with
  `"type": ""`.
- a state version with the same serial and md5 as the current one is answered 200 with the existing
  version (an idempotent retry), not a second version.
- hosted upload/download URLs are archivist-style capability URLs under `/_archivist/v1/object/`.
"""

from __future__ import annotations

import json
from typing import Any

from runbook_lib.sandbox import documents
from runbook_lib.sandbox.wire import Request, Response, jsonapi_response

API_VERSION = "2.5"
APP_NAME = "Terraform Enterprise"
TFE_VERSION = "v202401-1"
EXECUTION_MODES = ("remote", "local", "agent")
OAUTH_PROVIDERS = ("github", "github_enterprise", "gitlab_hosted", "gitlab_community_edition",
                   "gitlab_enterprise_edition", "ado_server", "ado_services", "bitbucket_hosted",
                   "bitbucket_server", "bitbucket_server_legacy", "bitbucket_data_center")
_ALL_PERMISSIONS = ("can-update", "can-destroy", "can-queue-run", "can-read-variable", "can-update-variable",
                    "can-read-state-versions", "can-read-state-outputs", "can-create-state-versions",
                    "can-queue-apply", "can-lock", "can-unlock", "can-force-unlock", "can-read-settings",
                    "can-manage-tags", "can-manage-run-tasks", "can-force-delete", "can-manage-assessments",
                    "can-read-assessments", "can-queue-destroy", "can-read-run-state-versions")


def _user(req: Request) -> dict[str, Any]:
    assert req.user is not None  # routes marked "bearer" are authenticated by the server
    return req.user


def _rel(kind: str, ident: str | None) -> dict[str, Any]:
    return {"data": {"id": ident, "type": kind} if ident else None}


def _archivist(req: Request, token: str | None) -> str | None:
    return f"{req.base_url}/_archivist/v1/object/{token}" if token else None


# --- discovery, ping, account ------------------------------------------------------------------------

def discovery(req: Request) -> Response:
    """`GET /.well-known/terraform.json`: where the CLI finds the API (relative URLs, as allowed)."""
    return Response(200, json.dumps({
        "tfe.v2": "/api/v2/", "tfe.v2.1": "/api/v2/", "tfe.v2.2": "/api/v2/", "state.v2": "/api/v2/",
        "modules.v1": "/api/registry/v1/modules/", "motd.v1": "/api/terraform/motd"}).encode(),
        {"Content-Type": "application/json"})


def ping(req: Request) -> Response:
    """`GET /api/v2/ping`: 204; the version headers are added to every /api/v2 answer by the server."""
    return Response(204)


def motd(req: Request) -> Response:
    """`GET /api/terraform/motd`: the CLI prints this after init; empty keeps its output clean."""
    return json_plain({"msg": ""})


def json_plain(obj: Any) -> Response:
    """Plain JSON (non-JSON:API) response."""
    return Response(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})


def account_details(req: Request) -> Response:
    """`GET /api/v2/account/details`: the token's user."""
    return jsonapi_response({"data": _user_doc(_user(req))})


@documents.renders("users")
def _user_render(req: Request, user: dict[str, Any]) -> dict[str, Any]:
    return _user_doc(user)


def _user_doc(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "users", "attributes": {
        "username": user["username"], "email": user["email"], "is-service-account": False,
        "avatar-url": "", "two-factor": {"enabled": False, "verified": False},
        "permissions": {"can-create-organizations": True, "can-change-email": True,
                        "can-change-username": True}},
        "links": {"self": f"/api/v2/users/{user['id']}"}}

def _ws(req: Request, org: str | None = None, name: str | None = None, ws_id: str | None = None, *,
        need: str | None = None) -> dict[str, Any]:
    """The workspace a request names (404 when the caller cannot see it); with `need`, also refused unless the
    caller's access allows that action (`access.NEEDS`; a team token's team access, see store/teams.py)."""
    if ws_id is not None:
        ws = req.store.get_workspace(ws_id, _user(req))
    else:
        ws = req.store.get_workspace_by_name(org or "", name or "", _user(req))
    if need is not None:
        req.store.require(_user(req), ws, need)
    return ws


def _ws_of(req: Request, ws_id: str, need: str | None = None) -> dict[str, Any]:
    """The workspace of an object read by id (a run, a plan, a state version): a team token sees only those of
    workspaces its team can see, and with `need` may do only what its access allows."""
    return _ws(req, ws_id=ws_id, need=need)

