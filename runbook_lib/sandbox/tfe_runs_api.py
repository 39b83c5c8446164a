"""Handlers of the new API for configuration versions, runs and plans."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.runs import CANCELABLE_STATUSES, CONFIRMABLE_STATUSES, DISCARDABLE_STATUSES
from runbook_lib.sandbox.tfe_api import _archivist, _rel, _user, _user_doc, _ws
from runbook_lib.sandbox.workspaces_api import _workspace_doc
from runbook_lib.sandbox.wire import Request, Response, check_bool, check_str, jsonapi_response, paginate, parse_resource, relationship_id


# --- configuration versions -------------------------------------------------------------------------------

def _cv_doc(req: Request, cv: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
    # `upload-url` is answered only by the create request (configuration-versions.mdx "Create a
    # Configuration Version": the URL is in the creation response; go-tfe's
    # TestConfigurationVersionsCreate reads it back empty).
    return {"id": cv["id"], "type": "configuration-versions", "attributes": {
        "auto-queue-runs": bool(cv["auto_queue_runs"]), "error": None, "error-message": None,
        "source": cv["source"], "speculative": bool(cv["speculative"]), "status": cv["status"],
        "status-timestamps": {}, "provisional": bool(cv["provisional"]),
        "upload-url": _archivist(req, cv["upload_token"]) if created and cv["status"] == "pending" else None},
        "relationships": {"ingress-attributes": {
            "data": {"id": "ia-" + cv["id"].removeprefix("cv-"), "type": "ingress-attributes"} if cv["ingress"] else None,
            "links": {"related": f"/api/v2/configuration-versions/{cv['id']}/ingress-attributes"}}},
        "links": {"self": f"/api/v2/configuration-versions/{cv['id']}",
                  "download": f"/api/v2/configuration-versions/{cv['id']}/download"}}


def create_configuration_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/configuration-versions`: 201 with an `upload-url`."""
    ws = _ws(req, ws_id=ws_id)
    attrs: dict[str, Any] = {}
    if req.body.strip():
        attrs, _ = parse_resource(req, "configuration-versions")
    for name in ("auto-queue-runs", "speculative", "provisional"):
        check_bool(attrs, name)
    cv = req.store.create_configuration_version(ws["id"], auto_queue_runs=attrs.get("auto-queue-runs", True),
                                                speculative=attrs.get("speculative", False),
                                                provisional=attrs.get("provisional", False))
    return jsonapi_response({"data": _cv_doc(req, cv, created=True)}, 201)


def list_configuration_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/configuration-versions` (paged)."""
    ws = _ws(req, ws_id=ws_id)
    rows, meta, links = paginate(req, req.store.list_configuration_versions(ws["id"]))
    return jsonapi_response({"data": [_cv_doc(req, c) for c in rows], "links": links, "meta": meta})


def show_configuration_version(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id`."""
    return jsonapi_response({"data": _cv_doc(req, req.store.get_configuration_version(cv_id, _user(req)))})


def download_configuration_version(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id/download`: the uploaded tarball (configuration-versions.mdx
    "Download Configuration Files"); 404 until something was uploaded."""
    cv = req.store.get_configuration_version(cv_id, _user(req))
    tarball = req.store.configuration_tarball(cv["id"])
    if tarball is None:
        raise errors.NotFoundError()
    return Response(200, bytes(tarball), {"Content-Type": "application/octet-stream"})


# --- runs and plans ---------------------------------------------------------------------------------------

#: `?include=` values served on runs (go-tfe `run.go` RunIncludeOpt; the others are HCP features or
#: resources the sandbox does not model).
RUN_INCLUDES = ("workspace", "created_by", "plan", "configuration_version")

#: Attributes a run create request may set besides message/is-destroy/plan-only/auto-apply, answered
#: back as sent (go-tfe `run.go` RunCreateOptions; run.mdx "Create a Run").
_RUN_OPTION_BOOLS = ("allow-empty-apply", "save-plan", "refresh", "refresh-only", "allow-config-generation")
_RUN_OPTION_LISTS = ("target-addrs", "replace-addrs")


def _run_doc(req: Request, run: dict[str, Any]) -> dict[str, Any]:
    plan = req.store.plan_for_run(run["id"])
    status = run["status"]
    options = json.loads(run["options"] or "{}")
    return {"id": run["id"], "type": "runs", "attributes": {
        "actions": {"is-cancelable": status in CANCELABLE_STATUSES,
                    "is-confirmable": status in CONFIRMABLE_STATUSES,
                    "is-discardable": status in DISCARDABLE_STATUSES,
                    "is-force-cancelable": False},
        "auto-apply": bool(run["auto_apply"]), "allow-empty-apply": options.get("allow-empty-apply", False),
        "canceled-at": None, "created-at": run["created_at"], "has-changes": bool(run["has_changes"]),
        "is-destroy": bool(run["is_destroy"]), "message": run["message"], "plan-only": bool(run["plan_only"]),
        "refresh": options.get("refresh", True), "refresh-only": options.get("refresh-only", False),
        "replace-addrs": options.get("replace-addrs"), "save-plan": options.get("save-plan", False),
        "source": run["source"], "status": status, "status-timestamps": json.loads(run["status_timestamps"]),
        "target-addrs": options.get("target-addrs"), "trigger-reason": "manual",
        "terraform-version": _run_terraform_version(req, run), "position-in-queue": 0,
        # go-tfe decodes an absent list as nil; run.mdx shows `variables` only when the run was given some.
        "variables": options.get("variables") or None,
        "permissions": {"can-apply": True, "can-cancel": True, "can-comment": True, "can-discard": True,
                        "can-force-execute": True, "can-force-cancel": True, "can-override-policy-check": True}},
        "relationships": {"workspace": _rel("workspaces", run["workspace_id"]),
                          "configuration-version": _rel("configuration-versions", run["configuration_version_id"]),
                          "plan": _rel("plans", plan["id"] if plan else None), "apply": {"data": None},
                          "created-by": _rel("users", run["created_by"])},
        "links": {"self": f"/api/v2/runs/{run['id']}"}}


def _run_includes(req: Request) -> list[str]:
    includes = [i for i in (req.query.get("include") or "").split(",") if i]
    unknown = [i for i in includes if i not in RUN_INCLUDES]
    if unknown:
        raise errors.BadRequestError(f"Invalid include parameter: {', '.join(unknown)}")
    return includes


def _included(req: Request, runs: list[dict[str, Any]], includes: list[str]) -> list[dict[str, Any]]:
    """The `included` documents of `runs` for `?include=` (JSON:API compound document)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if "workspace" in includes:
            ws = req.store.workspace_by_id(run["workspace_id"])
            if ws is not None:
                out[("workspaces", ws["id"])] = _workspace_doc(req, ws)
        if "created_by" in includes and run["created_by"]:
            user = req.store.find_user_by_id(run["created_by"])
            if user is not None:
                out[("users", user["id"])] = _user_doc(user)
        if "plan" in includes:
            plan = req.store.plan_for_run(run["id"])
            if plan is not None:
                out[("plans", plan["id"])] = _plan_doc(req, plan)
        if "configuration_version" in includes and run["configuration_version_id"]:
            cv = req.store.get_configuration_version(run["configuration_version_id"], _user(req))
            out[("configuration-versions", cv["id"])] = _cv_doc(req, cv)
    return list(out.values())


def _runs_document(req: Request, data: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"data": data}
    includes = _run_includes(req)
    if includes:
        doc["included"] = _included(req, runs, includes)
    return doc


class RunListLimiter:
    """The runs list's own budget: `limit` reads per `window_s` seconds per user (run.mdx "List Runs in
    a Workspace": "This endpoint has a rate limit of 30 requests per minute per user", on top of the
    general limit). A sliding window of the last reads' times."""

    def __init__(self, limit: int = 30, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._reads: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, user_id: str) -> float | None:
        """Count one read; None when allowed, else the seconds until the oldest read leaves the window."""
        now = time.monotonic()
        with self._lock:
            reads = [t for t in self._reads.get(user_id, []) if now - t < self.window_s]
            if len(reads) >= self.limit:
                self._reads[user_id] = reads
                return self.window_s - (now - reads[0])
            reads.append(now)
            self._reads[user_id] = reads
            return None


def _check_list_limit(req: Request) -> None:
    app = req.app
    general = getattr(getattr(app, "limiter", None), "limit", None)
    if app is None or not general:
        return  # the sandbox's rate limits are switched off (tests that measure other things)
    limiter = getattr(app, "runs_list_limiter", None)
    if limiter is None:
        limiter = app.runs_list_limiter = RunListLimiter()
    wait = limiter.check(_user(req)["id"])
    if wait is not None:
        raise errors.RateLimitedError(headers={"X-RateLimit-Limit": str(limiter.limit),
                                               "X-RateLimit-Reset": f"{wait:.3f}",
                                               "Retry-After": str(max(1, math.ceil(wait)))})


def list_runs(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/runs` (paged; `filter[status]` comma list; 30 reads a minute per user)."""
    ws = _ws(req, ws_id=ws_id)
    _check_list_limit(req)
    statuses = [s for s in (req.query.get("filter[status]") or "").split(",") if s]
    rows, meta, links = paginate(req, req.store.list_runs(ws["id"], statuses or None))
    doc = _runs_document(req, [_run_doc(req, r) for r in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def show_run(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id` (`?include=workspace,created_by,plan,configuration_version`)."""
    run = req.store.get_run(run_id, _user(req))
    return jsonapi_response(_runs_document(req, _run_doc(req, run), [run]))


def _to_one(rels: dict[str, Any], name: str, kind: str) -> str | None:
    """A to-one relationship's id; `{"data": null}` (what go-tfe sends for an unset one) means none."""
    if isinstance(rels.get(name), dict) and rels[name].get("data") is None:
        return None
    return relationship_id(rels, name, kind)


def create_run(req: Request) -> Response:
    """`POST /api/v2/runs`: 201 with a `pending` run (a run worker picks it up; a locked workspace queues it)."""
    attrs, rels = parse_resource(req, "runs")
    ws_id = _to_one(rels, "workspace", "workspaces")
    if not ws_id:
        raise errors.UnprocessableError("Workspace is required", pointer="/data/relationships/workspace")
    ws = _ws(req, ws_id=ws_id)
    cv_id = _to_one(rels, "configuration-version", "configuration-versions")
    if cv_id:
        cv = req.store.get_configuration_version(cv_id, _user(req))
        if cv["workspace_id"] != ws["id"]:
            raise errors.UnprocessableError("Configuration version belongs to another workspace",
                                            pointer="/data/relationships/configuration-version")
    else:
        latest = [c for c in req.store.list_configuration_versions(ws["id"]) if not c["provisional"]]
        cv_id = latest[0]["id"] if latest else None
    for name in ("is-destroy", "plan-only", "auto-apply", *_RUN_OPTION_BOOLS):
        check_bool(attrs, name)
    check_str(attrs, "message")
    check_str(attrs, "terraform-version")
    options: dict[str, Any] = {name: attrs[name] for name in _RUN_OPTION_BOOLS if name in attrs}
    for name in _RUN_OPTION_LISTS:
        value = attrs.get(name)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise errors.UnprocessableError(f"{name} must be a list of strings", pointer=f"/data/attributes/{name}")
            options[name] = value
    variables = attrs.get("variables")
    if variables is not None:
        if not isinstance(variables, list) or not all(
                isinstance(v, dict) and isinstance(v.get("key"), str) and isinstance(v.get("value"), str)
                for v in variables):
            raise errors.UnprocessableError("variables must be a list of {key, value} strings",
                                            pointer="/data/attributes/variables")
        options["variables"] = [{"key": v["key"], "value": v["value"]} for v in variables]
    version = attrs.get("terraform-version")
    if version:
        # run.mdx: "terraform-version ... can only be used with plan-only runs".
        if not attrs.get("plan-only"):
            raise errors.UnprocessableError("Terraform version can only be set for plan-only runs",
                                            pointer="/data/attributes/terraform-version")
        options["terraform-version"] = version
    else:
        options["terraform-version"] = ws["terraform_version"]
    run = req.store.create_run(ws, _user(req), cv_id=cv_id,
                               message=attrs.get("message") or "Queued manually via the Terraform Enterprise API",
                               is_destroy=attrs.get("is-destroy", False), plan_only=attrs.get("plan-only", False),
                               auto_apply=attrs.get("auto-apply"), options=options)
    return jsonapi_response({"data": _run_doc(req, run)}, 201)


def _plan_doc(req: Request, plan: dict[str, Any]) -> dict[str, Any]:
    return {"id": plan["id"], "type": "plans", "attributes": {
        "has-changes": bool(plan["has_changes"]), "resource-additions": plan["additions"],
        "resource-changes": plan["changes"], "resource-destructions": plan["destructions"],
        "resource-imports": plan["imports"], "status": plan["status"],
        "status-timestamps": json.loads(plan["status_timestamps"]),
        "log-read-url": _archivist(req, plan["log_token"]), "execution-details": {"mode": "remote"},
        "generated-configuration": False},
        "relationships": {"state-versions": {"data": []}, "exports": {"data": []}},
        "links": {"self": f"/api/v2/plans/{plan['id']}", "json-output": f"/api/v2/plans/{plan['id']}/json-output"}}


def show_plan(req: Request, plan_id: str) -> Response:
    """`GET /api/v2/plans/:id`: counts, `has-changes`, status, log URL."""
    return jsonapi_response({"data": _plan_doc(req, req.store.get_plan(plan_id, _user(req)))})


def show_run_plan(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/plan`."""
    run = req.store.get_run(run_id, _user(req))
    plan = req.store.plan_for_run(run["id"])
    if plan is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": _plan_doc(req, plan)})


def plan_json_output(req: Request, plan_id: str | None = None, run_id: str | None = None) -> Response:
    """`GET /api/v2/plans/:id/json-output` (or via the run): 307 to a short-lived URL; 204 until finished."""
    if run_id is not None:
        run = req.store.get_run(run_id, _user(req))
        plan = req.store.plan_for_run(run["id"])
        if plan is None:
            raise errors.NotFoundError()
    else:
        plan = req.store.get_plan(plan_id or "", _user(req))
    run = req.store.run_by_id(plan["run_id"])
    version = _run_terraform_version(req, run) if run else None
    if version and _before_0_12(version):
        # plans.mdx "Retrieve the JSON execution plan": plans made by Terraform before 0.12 have none (422).
        raise errors.UnprocessableError(f"JSON plans are only available for plans made by Terraform 0.12 or "
                                        f"later; this plan was made by Terraform {version}")
    if plan["status"] != "finished" or plan["json_output"] is None:
        return Response(204)
    return Response(307, b"", {"Location": _archivist(req, plan["json_download_token"]) or ""})


def _run_terraform_version(req: Request, run: dict[str, Any]) -> str | None:
    """The Terraform version a run plans with: its own (plan-only runs may set one), else its workspace's
    (a run started by a push has no options of its own)."""
    version = json.loads(run["options"] or "{}").get("terraform-version")
    if version:
        return version
    ws = req.store.workspace_by_id(run["workspace_id"])
    return ws["terraform_version"] if ws else None


def _before_0_12(version: str) -> bool:
    """True for a version like `0.11.14`; "latest" and other non-numeric versions are recent."""
    found = re.match(r"v?(\d+)\.(\d+)", version)
    return bool(found) and (int(found.group(1)), int(found.group(2))) < (0, 12)
