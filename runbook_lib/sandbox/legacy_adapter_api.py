"""The `site-adapter` profile: legacy endpoints the legacy host never documented, served only when named.

The legacy product did these things in its UI only (list and read environments, read variables, VCS link
and unlink, lock and unlock, list runs, the teams with access, delete an environment). A site that wrote an
adapter of its own for them (a script against its installation's internals, say) can rehearse it against
these routes: `Sandbox(legacy_profile="site-adapter")` or `tfe-runbook sandbox serve --legacy-profile
site-adapter`. They are never served by default (not in the demo, the notebooks' rehearsal or any test
tier), and the runbook itself never calls them: it works with the documented endpoints (`legacy_api`) and
asks the operator to act in the UI (`legacy_ui`). Their shapes are in docs/legacy-api-contract.md.
"""

from __future__ import annotations

import math
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.legacy_api import _env, _page, _user
from runbook_lib.sandbox.wire import Request, Response, json_response

ENV_PAGE_SIZE = 100
#: The profile that serves this module's routes (see `routes.Route.profile`).
PROFILE = "site-adapter"


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


def list_environments(req: Request, org: str) -> Response:
    """`GET /api/v1/environments/<org>?page=N`: 100 a page, with meta."""
    req.store.require_legacy_access(org, _user(req))
    rows = req.store.list_environments(org)
    page = _page(req)
    chunk = rows[(page - 1) * ENV_PAGE_SIZE: page * ENV_PAGE_SIZE]
    return json_response({"environments": [_env_doc(req, e) for e in chunk],
                          "meta": {"page": page, "total_pages": max(1, math.ceil(len(rows) / ENV_PAGE_SIZE)),
                                   "total_count": len(rows)}})


def show_environment(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/environments/<org>/<env>`."""
    return json_response({"environment": _env_doc(req, _env(req, org, env))})


def list_variables(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/environments/<org>/<env>/variables`: sensitive values are null."""
    row = _env(req, org, env)
    return json_response({"variables": [
        {"key": v["key"], "value": None if v["sensitive"] else v["value"], "category": v["category"],
         "hcl": bool(v["hcl"]), "sensitive": bool(v["sensitive"])} for v in req.store.list_legacy_vars(row["id"])]})


def unlink_vcs(req: Request, org: str, env: str) -> Response:
    """`DELETE /api/v1/environments/<org>/<env>/vcs`: unlink (idempotent)."""
    row = _env(req, org, env, write=True)
    if row["vcs_repo"]:
        req.store.set_environment_vcs(row["id"], None)
    return json_response({"environment": _env_doc(req, _env(req, org, env))})


def link_vcs(req: Request, org: str, env: str) -> Response:
    """`PUT /api/v1/environments/<org>/<env>/vcs` {"vcs":{repo, branch, working_directory}}."""
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
    """`POST /api/v1/environments/<org>/<env>/lock` {"reason"}: 200 ENV; 409 when locked."""
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
    """`POST /api/v1/environments/<org>/<env>/unlock`: 200 ENV; 409 locked by another user."""
    row = _env(req, org, env, write=True)
    req.store.unlock_environment(row, _user(req))
    return json_response(_env_doc(req, _env(req, org, env)))


def list_runs(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/environments/<org>/<env>/runs`: newest first."""
    row = _env(req, org, env)
    return json_response({"runs": [_run_doc(r) for r in req.store.list_legacy_runs(row["id"])]})


def delete_environment(req: Request, org: str, env: str) -> Response:
    """`DELETE /api/v1/environments/<org>/<env>`: the environment and all it holds are gone."""
    row = _env(req, org, env, write=True)
    req.store.delete_environment(row["id"])
    return json_response({"success": True})


def list_environment_teams(req: Request, org: str, env: str) -> Response:
    """`GET /api/v1/environments/<org>/<env>/teams`: the teams with access, by name.

    Answer: `{"teams":[{"name":"ops","access":"admin","members":["alice","bob"]}]}`; `access` is one of
    read, write, admin (the legacy UI's levels); members are usernames of the legacy product.
    """
    row = _env(req, org, env)
    return json_response({"teams": [{"name": t["name"], "access": t["access"], "members": t["members"]}
                                    for t in req.store.legacy_environment_teams(row["id"])]})
