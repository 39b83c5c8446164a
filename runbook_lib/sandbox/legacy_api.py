"""Handlers of the legacy (Atlas-era) API, `/api/v1`, token in `X-Atlas-Token`: what the legacy host documented.

The sources, cited beside each handler (full table: docs/legacy-api-contract.md):
- the 2018 legacy API pages, hashicorp/terraform-website `content/source/docs/enterprise-legacy/api/*.html.md`
  at 98a35d246 (2018-03-27, their last revision before the pages were removed): `states`, `configurations`,
  `environments` (variables PUT), `runs` (queue a plan), `users`, and `index` (404 for what is missing *or*
  not accessible; errors as `{"errors": ...}`);
- Terraform 0.11.11's atlas backend, hashicorp/terraform `backend/atlas/state_client.go` (what the state
  endpoint answers and what the client makes of it) and its test host `state_client_test.go`;
- atlas-go as vendored in Terraform 0.11.11 (`vendor/github.com/hashicorp/atlas-go/v1/terraform.go`: the
  configuration version document, `tf_vars` of `{key, value, hcl}`).

Nothing else is served by default. Listing or reading environments, reading variables, VCS unlink, locks,
runs, teams and deleting an environment were UI actions on the legacy product (the seed's step 4: "go to the
Environment settings page ... click Unlink"); the sandbox has that UI (`legacy_ui`). The endpoints an
earlier sandbox invented for them live in `legacy_adapter_api`, served only under the explicitly named
`site-adapter` profile.

The state endpoint also serves new workspaces (`<NEW_ORG>/<WORKSPACE>`), as the 2018 SaaS host, where legacy
and new were one installation, did for the upgrade guide's step 3.d-3.e.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store import md5_b64
from runbook_lib.sandbox.wire import Request, Response, json_response

STATE_PAGE_SIZE = 20


def _user(req: Request) -> dict[str, Any]:
    assert req.user is not None  # legacy routes are authenticated by the server
    return req.user


def _page(req: Request) -> int:
    try:
        return max(int(req.query.get("page", "1")), 1)
    except ValueError:
        return 1


# --- documented: the state endpoint --------------------------------------------------------------------

def _state_target(req: Request, org: str, name: str, *, write: bool) -> tuple[str, dict[str, Any] | None]:
    """Resolve `<org>/<name>` to ("env", env|None) or ("ws", workspace).

    Raises:
        NotFoundError: unknown or foreign organization, or unknown workspace.
        ForbiddenError: read-only legacy member writing.
    """
    store, user = req.store, _user(req)
    if store.legacy_org_exists(org):
        store.require_legacy_access(org, user, write=write)
        return "env", store.find_environment(org, name)
    store.get_organization(org, user)  # 404 for a missing or foreign new organization
    ws = store.find_workspace(org, name)
    if ws is None:
        raise errors.NotFoundError()
    return "ws", ws


def get_state(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/terraform/state/<org>/<env>`: 200 raw state + Content-MD5; 204 none; 404 unknown.

    Terraform 0.11's atlas backend reads 204 (and 404, and an empty 200) as "no state"
    (`backend/atlas/state_client.go` Get), so an environment without state answers 204 and `terraform init`
    starts empty. A 404 is an unknown environment or one the token cannot see (index.html.md): a client
    cannot tell those apart, and the legacy host documents nothing else that could.
    """
    kind, target = _state_target(req, org, env, write=False)
    if target is None:
        raise errors.NotFoundError()
    if kind == "env":
        row = req.store.current_legacy_state(target["id"])
        body = bytes(row["body"]) if row else None
    else:
        row = req.store.current_state_version(target["id"])
        body = bytes(row["state"]) if row and row["state"] is not None else None
    if body is None:
        return Response(204)
    return Response(200, body, {"Content-Type": "application/json", "Content-MD5": md5_b64(body)})


def _check_content_md5(req: Request) -> None:
    header = req.headers.get("Content-MD5")
    if not header:
        return
    try:
        given = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.LegacyContentMd5Error() from exc
    if given != hashlib.md5(req.body).digest():  # noqa: S324 - protocol checksum
        raise errors.LegacyContentMd5Error()


def put_state(req: Request, org: str, env: str) -> Response:
    """`PUT /api/v1/terraform/state/<org>/<env>`: 200; 409 same serial, other md5; 400 bad Content-MD5.

    The client sends only these two outcomes' cases (`state_client.go` Put: 200 is success, 409 a conflict it
    resolves); the conflict rule is Terraform's own test host's (`store.base.atlas_serial_allows`).

    As on the legacy product, a PUT naming an environment that does not exist yet in an organization
    the token may write creates that environment (this is how `terraform apply` with a new atlas
    backend name started one). A workspace must already exist.
    """
    _check_content_md5(req)
    kind, target = _state_target(req, org, env, write=True)
    run_id = req.query.get("atlas_run_id") or None
    if kind == "env":
        if target is None:
            target = req.store.create_environment(org, env)
        req.store.put_legacy_state(target["id"], req.body, run_id=run_id)
    else:
        assert target is not None
        req.store.put_workspace_state_legacy(target, _user(req), req.body)
    return Response(200, b"", {"Content-Type": "application/json"})


def delete_state(req: Request, org: str, env: str) -> Response:
    """`DELETE /api/v1/terraform/state/<org>/<env>`: 200 (a workspace's state cannot be deleted: 403).

    What the atlas backend sends for `terraform state` removal (`state_client.go` Delete: 200, 204 and 404 are
    success). The environment itself stays: deleting an environment was a UI action.
    """
    kind, target = _state_target(req, org, env, write=True)
    if target is None:
        raise errors.NotFoundError()
    if kind == "ws":
        raise errors.ForbiddenError("a workspace's state versions cannot be deleted through this endpoint")
    req.store.delete_legacy_state(target["id"])
    return Response(200, b"", {"Content-Type": "application/json"})


# --- documented: other endpoints -------------------------------------------------------------------------

def list_states(req: Request) -> Response:
    """`GET /api/v1/terraform/state?username=<org>&page=N`: environments with state, 20 a page.

    states.html.md (98a35d246): "a list of states accessible to the user corresponding to the provided
    token", filtered by `?username`, paginated by `?page` (default 1); the answer has no page count, so a
    client reads pages until one comes back short. An organization the token cannot see is a 404 here, as
    index.html.md says for any resource the user has no access to.
    """
    org = req.query.get("username") or ""
    req.store.require_legacy_access(org, _user(req))
    rows = req.store.list_legacy_states(org)
    page = _page(req)
    chunk = rows[(page - 1) * STATE_PAGE_SIZE: page * STATE_PAGE_SIZE]
    return json_response({"states": [{"updated_at": r["updated_at"],
                                      "environment": {"username": r["org"], "name": r["name"]}} for r in chunk]})


def _env(req: Request, org: str, env: str, *, write: bool = False) -> dict[str, Any]:
    return req.store.get_environment(org, env, _user(req), write=write)


def latest_configuration_version(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/terraform/configurations/<org>/<env>/versions/latest` (404 when none).

    configurations.html.md (98a35d246) answers `{"version": {"version": 6, "metadata": {...}, "tf_vars": [],
    "variables": {}}}`; atlas-go's `TerraformConfigVersion` (vendored in Terraform 0.11.11) types `tf_vars` as
    `[{key, value, hcl}]`, "a single Terraform variable" each, and `variables` as a string map, the same
    "Terraform variables" the environments page's variables PUT sets. So both carry the environment's
    Terraform variables; a sensitive value is never revealed, so sensitive variables are left out, and
    environment variables (category env) appear in neither: no documented endpoint shows them.
    """
    row = _env(req, org, env)
    cv = req.store.latest_legacy_config_version(row["id"])
    if cv is None:
        raise errors.NotFoundError()
    shown = [v for v in req.store.list_legacy_vars(row["id"]) if v["category"] == "terraform" and not v["sensitive"]]
    return json_response({"version": {"version": cv["version"], "metadata": json.loads(cv["metadata"]),
                                      "tf_vars": [{"key": v["key"], "value": v["value"], "hcl": bool(v["hcl"])}
                                                  for v in shown],
                                      "variables": {v["key"]: v["value"] for v in shown}}})


def create_configuration_version(req: Request, org: str, env: str) -> Response:
    """`POST /api/v1/terraform/configurations/<org>/<env>/versions`: next version and its upload path.

    configurations.html.md (98a35d246): `{"version": {"metadata": {...}, "variables": {...}}}` in,
    `{"version": 6, "upload_path": ..., "token": ...}` out; the archive goes to `upload_path` (atlas-go's
    `putFile` sends it with PUT).
    """
    row = _env(req, org, env, write=True)
    metadata: dict[str, Any] = {}
    if req.body.strip():
        doc = req.json()
        version = doc.get("version") if isinstance(doc, dict) else None
        if isinstance(version, dict) and isinstance(version.get("metadata"), dict):
            metadata = version["metadata"]
    cv = req.store.create_legacy_config_version(row["id"], metadata)
    return json_response({"version": cv["version"],
                          "upload_path": f"{req.base_url}/_archivist/v1/object/{cv['upload_token']}",
                          "token": cv["upload_token"]}, 201)


def put_variables(req: Request, org: str, env: str) -> Response:
    """`PUT /api/v1/environments/<org>/<env>/variables` {"variables":{"k":"v"}}; an empty value removes.

    environments.html.md (98a35d246): "Existing variables will only be removed when their value is empty.
    Variables of the same key will be overwritten"; "Due to the sensitive nature of variables, they are not
    returned on success": the sample response is an empty body. Only string values ("Only string variables
    can be updated via the API currently").
    """
    row = _env(req, org, env, write=True)
    doc = req.json()
    variables = doc.get("variables") if isinstance(doc, dict) else None
    if not isinstance(variables, dict) or not all(isinstance(k, str) and k for k in variables) \
            or not all(isinstance(v, str) for v in variables.values()):
        raise errors.UnprocessableError("must be an object of string keys and string values", pointer="/variables")
    existing = {v["key"]: v for v in req.store.list_legacy_vars(row["id"])}
    for key, value in variables.items():
        category = existing[key]["category"] if key in existing else "terraform"
        req.store.set_legacy_var(row["id"], key, value, category=category)
    return Response(200)


def queue_plan(req: Request, org: str, env: str) -> Response:
    """`POST /api/v1/environments/<org>/<env>/plan` {"destroy": false}: queues a run (status pending).

    runs.html.md (98a35d246): "Requires a configuration version to be present on the environment to succeed,
    but will otherwise 404"; answers `{"success": true}`.
    """
    row = _env(req, org, env, write=True)
    destroy = False
    if req.body.strip():
        doc = req.json()
        destroy = bool(doc.get("destroy")) if isinstance(doc, dict) else False
    cv = req.store.latest_legacy_config_version(row["id"])
    if cv is None:
        raise errors.NotFoundError()
    sha = json.loads(cv["metadata"]).get("commit_sha")
    req.store.create_legacy_run(row["id"], status="pending", source="api", commit_sha=sha,
                                message="Queued manually via the API", is_destroy=destroy,
                                created_by=_user(req)["username"])
    return json_response({"success": True})


def show_user(req: Request, username: str) -> Response:
    """`GET /api/v1/user/<username>`: the user object itself, not wrapped.

    users.html.md (98a35d246): "Users are both users and organizations"; the sample answer is
    `{"username": ..., "avatar_url": ..., "profile_html": ..., "profile_markdown": ..., "boxes": []}`. The page
    does not say who may read whom; the sandbox answers any user to any token, and an organization only to
    its members (404 otherwise, as index.html.md answers what a user has no access to), so a 200 for an
    organization means "this token sees it".
    """
    user = req.store.find_user(username)
    if user is None:
        if not req.store.legacy_org_exists(username) or req.store.legacy_role(username, _user(req)["id"]) is None:
            raise errors.NotFoundError()
    return json_response({"username": username, "avatar_url": f"https://www.gravatar.com/avatar/{username}",
                          "profile_html": "", "profile_markdown": "", "boxes": []})
