"""Handlers of the legacy (Atlas-era) API, `/api/v1`, token in `X-Atlas-Token`; see docs/legacy-api-contract.md.

Two kinds of endpoint, kept visibly apart:
- documented ones, which a real legacy host served (the state endpoint exactly as Terraform 0.11's
  `atlas` backend speaks it, state list, configuration versions, variables PUT, plan trigger, user);
- SANDBOX-DEFINED ones, which the legacy product exposed only in its UI (list/read environments,
  read variables, VCS unlink/link, lock/unlock, list runs, delete an environment). A real legacy host
  may not have them; the runbook confines their use to `runbook_lib/legacy.py`.

The state endpoint also serves new workspaces (`<NEW_ORG>/<WORKSPACE>`), which the upgrade guide's step
3.d-3.e relies on: the atlas backend migrates a legacy state into a workspace through it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store import md5_b64
from runbook_lib.sandbox.wire import Request, Response, json_response

STATE_PAGE_SIZE = 20
ENV_PAGE_SIZE = 100


def _user(req: Request) -> dict[str, Any]:
    assert req.user is not None  # legacy routes are authenticated by the server
    return req.user


def _env_doc(req: Request, env: dict[str, Any]) -> dict[str, Any]:
    run = req.store.current_legacy_run(env["id"])
    vcs = None
    if env["vcs_repo"]:
        vcs = {"repo": env["vcs_repo"], "branch": env["vcs_branch"] or "master",
               "working_directory": env["vcs_working_directory"] or ""}
    return {"username": env["org"], "name": env["name"], "slug": f"{env['org']}/{env['name']}",
            "terraform_version": env["terraform_version"], "locked": bool(env["locked"]),
            "locked_by": env["locked_by"], "lock_reason": env["lock_reason"], "vcs": vcs,
            "current_run": {"id": run["id"], "status": run["status"]} if run else None,
            "created_at": env["created_at"], "updated_at": env["updated_at"]}


def _run_doc(run: dict[str, Any]) -> dict[str, Any]:
    return {"id": run["id"], "status": run["status"], "commit_sha": run["commit_sha"], "message": run["message"],
            "created_at": run["created_at"], "has_changes": bool(run["has_changes"])}


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
    starts empty; "no such environment" stays a 404 here and on `GET /api/v1/environments/<org>/<env>`,
    which is where a client tells the two apart.
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
    """`PUT /api/v1/terraform/state/<org>/<env>`: 200; 409 md5 conflict; 412 serial backwards; 400 bad MD5.

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
    """`DELETE /api/v1/terraform/state/<org>/<env>`: 200 (a workspace's state cannot be deleted: 403)."""
    kind, target = _state_target(req, org, env, write=True)
    if target is None:
        raise errors.NotFoundError()
    if kind == "ws":
        raise errors.ForbiddenError("a workspace's state versions cannot be deleted through this endpoint")
    req.store.delete_legacy_state(target["id"])
    return Response(200, b"", {"Content-Type": "application/json"})


# --- documented: other endpoints -------------------------------------------------------------------------

def list_states(req: Request) -> Response:
    """`GET /api/v1/terraform/state?username=<org>&page=N`: environments with state, 20 a page."""
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
    """`GET /api/v1/terraform/configurations/<org>/<env>/versions/latest` (404 when none)."""
    row = _env(req, org, env)
    cv = req.store.latest_legacy_config_version(row["id"])
    if cv is None:
        raise errors.NotFoundError()
    tf_vars, env_vars = [], {}
    for var in req.store.list_legacy_vars(row["id"]):
        value = None if var["sensitive"] else var["value"]
        if var["category"] == "terraform":
            tf_vars.append({"key": var["key"], "value": value, "hcl": bool(var["hcl"])})
        else:
            env_vars[var["key"]] = value
    return json_response({"version": {"version": cv["version"], "metadata": json.loads(cv["metadata"]),
                                      "tf_vars": tf_vars, "variables": env_vars}})


def create_configuration_version(req: Request, org: str, env: str) -> Response:
    """`POST /api/v1/terraform/configurations/<org>/<env>/versions`: next version and its upload path."""
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
    """`PUT /api/v1/environments/<org>/<env>/variables` {"variables":{"k":"v"}}; an empty value removes."""
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
    return json_response({"success": True})


def queue_plan(req: Request, org: str, env: str) -> Response:
    """`POST /api/v1/environments/<org>/<env>/plan` {"destroy": false}: queues a run (status pending)."""
    row = _env(req, org, env, write=True)
    destroy = False
    if req.body.strip():
        doc = req.json()
        destroy = bool(doc.get("destroy")) if isinstance(doc, dict) else False
    cv = req.store.latest_legacy_config_version(row["id"])
    sha = json.loads(cv["metadata"]).get("commit_sha") if cv else None
    req.store.create_legacy_run(row["id"], status="pending", source="api", commit_sha=sha,
                                message="Queued manually via the API", is_destroy=destroy,
                                created_by=_user(req)["username"])
    return json_response({"success": True})


def show_user(req: Request, username: str) -> Response:
    """`GET /api/v1/user/<username>`."""
    user = req.store.find_user(username)
    if user is None:
        raise errors.NotFoundError()
    return json_response({"user": {"username": user["username"], "email": user["email"]}})


# --- SANDBOX-DEFINED (UI-only on the legacy product) ---------------------------------------------------

def list_environments(req: Request, org: str) -> Response:
    """SANDBOX-DEFINED `GET /api/v1/environments/<org>?page=N`: 100 a page, with meta."""
    req.store.require_legacy_access(org, _user(req))
    rows = req.store.list_environments(org)
    page = _page(req)
    chunk = rows[(page - 1) * ENV_PAGE_SIZE: page * ENV_PAGE_SIZE]
    return json_response({"environments": [_env_doc(req, e) for e in chunk],
                          "meta": {"page": page, "total_pages": max(1, math.ceil(len(rows) / ENV_PAGE_SIZE)),
                                   "total_count": len(rows)}})


def show_environment(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `GET /api/v1/environments/<org>/<env>`."""
    return json_response({"environment": _env_doc(req, _env(req, org, env))})


def list_variables(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `GET /api/v1/environments/<org>/<env>/variables`: sensitive values are null."""
    row = _env(req, org, env)
    return json_response({"variables": [
        {"key": v["key"], "value": None if v["sensitive"] else v["value"], "category": v["category"],
         "hcl": bool(v["hcl"]), "sensitive": bool(v["sensitive"])} for v in req.store.list_legacy_vars(row["id"])]})


def unlink_vcs(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `DELETE /api/v1/environments/<org>/<env>/vcs`: unlink (idempotent)."""
    row = _env(req, org, env, write=True)
    if row["vcs_repo"]:
        req.store.set_environment_vcs(row["id"], None)
    return json_response({"environment": _env_doc(req, _env(req, org, env))})


def link_vcs(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `PUT /api/v1/environments/<org>/<env>/vcs` {"vcs":{repo, branch, working_directory}}."""
    row = _env(req, org, env, write=True)
    doc = req.json()
    vcs = doc.get("vcs") if isinstance(doc, dict) else None
    if not isinstance(vcs, dict):
        raise errors.UnprocessableError("can't be blank", pointer="/vcs")
    repo = vcs.get("repo")
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise errors.UnprocessableError("must look like <org>/<repo>", pointer="/repo")
    branch = vcs.get("branch") or "master"
    workdir = vcs.get("working_directory") or ""
    if not isinstance(branch, str) or not isinstance(workdir, str):
        raise errors.UnprocessableError("branch and working_directory must be strings", pointer="/vcs")
    req.store.set_environment_vcs(row["id"], {"repo": repo, "branch": branch, "working_directory": workdir})
    return json_response({"environment": _env_doc(req, _env(req, org, env))})


def lock_environment(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `POST /api/v1/environments/<org>/<env>/lock` {"reason"}: 200 ENV; 409 when locked."""
    row = _env(req, org, env, write=True)
    reason = ""
    if req.body.strip():
        doc = req.json()
        reason = doc.get("reason") or "" if isinstance(doc, dict) else ""
        if not isinstance(reason, str):
            raise errors.UnprocessableError("must be a string", pointer="/reason")
    req.store.lock_environment(row, _user(req), reason)
    return json_response(_env_doc(req, _env(req, org, env)))


def unlock_environment(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `POST /api/v1/environments/<org>/<env>/unlock`: 200 ENV; 409 locked by another user."""
    row = _env(req, org, env, write=True)
    req.store.unlock_environment(row, _user(req))
    return json_response(_env_doc(req, _env(req, org, env)))


def list_runs(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `GET /api/v1/environments/<org>/<env>/runs`: newest first."""
    row = _env(req, org, env)
    return json_response({"runs": [_run_doc(r) for r in req.store.list_legacy_runs(row["id"])]})


def delete_environment(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `DELETE /api/v1/environments/<org>/<env>`: the environment and all it holds are gone."""
    row = _env(req, org, env, write=True)
    req.store.delete_environment(row["id"])
    return json_response({"success": True})


def list_environment_teams(req: Request, org: str, env: str) -> Response:
    """SANDBOX-DEFINED `GET /api/v1/environments/<org>/<env>/teams`: the teams with access, by name.

    Answer: `{"teams":[{"name":"ops","access":"admin","members":["alice","bob"]}]}`; `access` is one of
    read, write, admin (the legacy UI's levels); members are usernames of the legacy product.
    """
    row = _env(req, org, env)
    return json_response({"teams": [{"name": t["name"], "access": t["access"], "members": t["members"]}
                                    for t in req.store.legacy_environment_teams(row["id"])]})
