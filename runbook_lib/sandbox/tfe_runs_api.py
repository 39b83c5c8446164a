"""Handlers of the new API for runs: create, read, list (run.mdx; go-tfe `run.go`). What a run does after
it was created (apply, discard, cancel) is `runs_api`; its plan is `plans_api`."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.plans_api import run_terraform_version
from runbook_lib.sandbox.store.runs import (CANCELABLE_STATUSES, CONFIRMABLE_STATUSES, DISCARDABLE_STATUSES,
                                            FINAL_STATUSES as FINAL_RUN_STATUSES)
from runbook_lib.sandbox.tfe_api import _rel, _user, _ws, _ws_of
from runbook_lib.sandbox.wire import (Request, Response, includes, check_bool, check_str, jsonapi_response, paginate,
                                     parse_resource, relationship_id)


# --- runs ---------------------------------------------------------------------------------------

#: `?include=` values served on runs (go-tfe `run.go` RunIncludeOpt; the others are HCP features or
#: resources the sandbox does not model).
#: `task_stages` is empty: the sandbox runs no run tasks (the cloud backend asks for it on every run,
#: `internal/cloud/backend_taskStages.go`); `cost_estimate` is absent: cost estimation is not modelled.
RUN_INCLUDES = ("workspace", "created_by", "plan", "apply", "configuration_version",
                "configuration_version.ingress_attributes", "task_stages")

#: Attributes a run create request may set besides message/is-destroy/plan-only/auto-apply, answered
#: back as sent (go-tfe `run.go` RunCreateOptions; run.mdx "Create a Run").
_RUN_OPTION_BOOLS = ("allow-empty-apply", "save-plan", "refresh", "refresh-only", "allow-config-generation",
                     "debugging-mode")
_RUN_OPTION_LISTS = ("target-addrs", "replace-addrs")


@documents.renders("runs")
def run_doc(req: Request, run: dict[str, Any]) -> dict[str, Any]:
    plan = req.store.plan_for_run(run["id"])
    apply = req.store.apply_for_run(run["id"])
    status = run["status"]
    stamps = json.loads(run["status_timestamps"])
    options = json.loads(run["options"] or "{}")
    can = req.store.run_permissions(_user(req), run["workspace_id"])
    return {"id": run["id"], "type": "runs", "attributes": {
        "actions": {"is-cancelable": status in CANCELABLE_STATUSES,
                    "is-confirmable": status in CONFIRMABLE_STATUSES,
                    "is-discardable": status in DISCARDABLE_STATUSES,
                    "is-force-cancelable": False},
        "auto-apply": bool(run["auto_apply"]), "allow-empty-apply": options.get("allow-empty-apply", False),
        "canceled-at": stamps.get("canceled-at"), "created-at": run["created_at"],
        "force-cancel-available-at": req.store.force_cancel_available_at(run["id"]), "has-changes": bool(run["has_changes"]),
        "is-destroy": bool(run["is_destroy"]), "message": run["message"], "plan-only": bool(run["plan_only"]),
        "refresh": options.get("refresh", True), "refresh-only": options.get("refresh-only", False),
        "replace-addrs": options.get("replace-addrs"), "save-plan": options.get("save-plan", False),
        "source": run["source"], "status": status, "status-timestamps": stamps,
        "target-addrs": options.get("target-addrs"), "trigger-reason": "manual",
        "terraform-version": run_terraform_version(req, run), "position-in-queue": 0,
        # go-tfe decodes an absent list as nil; run.mdx shows `variables` only when the run was given some.
        "variables": options.get("variables") or None,
        # what the caller may do with it (run.mdx sample `permissions`; team access: permissions.mdx)
        "permissions": can},
        "relationships": {"workspace": _rel("workspaces", run["workspace_id"]),
                          "configuration-version": _rel("configuration-versions", run["configuration_version_id"]),
                          "plan": _rel("plans", plan["id"] if plan else None), "apply": _rel("applies", apply["id"] if apply else None),
                          "created-by": _rel("users", run["created_by"]),
                          # who confirmed the apply (run.mdx `relationships.confirmed-by`), null until then
                          "confirmed-by": _rel("users", apply["confirmed_by"] if apply else None),
                          "task-stages": {"data": []}, "run-events": {
                              "links": {"related": f"/api/v2/runs/{run['id']}/run-events"}},
                          # comments.mdx; go-tfe `run.go` Comments
                          "comments": {"data": [{"id": c["id"], "type": "comments"}
                                                for c in req.store.list_comments(run["id"])],
                                       "links": {"related": f"/api/v2/runs/{run['id']}/comments"}}},
        "links": {"self": f"/api/v2/runs/{run['id']}"}}


def _run_includes(req: Request) -> list[str]:
    return includes(req, RUN_INCLUDES)


def _included(req: Request, runs: list[dict[str, Any]], includes: list[str]) -> list[dict[str, Any]]:
    """The `included` documents of `runs` for `?include=` (JSON:API compound document)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        if "workspace" in includes:
            ws = req.store.workspace_by_id(run["workspace_id"])
            if ws is not None:
                out[("workspaces", ws["id"])] = documents.render(req, "workspaces", ws)
        if "created_by" in includes and run["created_by"]:
            user = req.store.find_user_by_id(run["created_by"])
            if user is not None:
                out[("users", user["id"])] = documents.render(req, "users", user)
        if "plan" in includes:
            plan = req.store.plan_for_run(run["id"])
            if plan is not None:
                out[("plans", plan["id"])] = documents.render(req, "plans", plan)
        if "apply" in includes:
            apply = req.store.apply_for_run(run["id"])
            if apply is not None:
                out[("applies", apply["id"])] = documents.render(req, "applies", apply)
        wants_cv = {"configuration_version", "configuration_version.ingress_attributes"} & set(includes)
        if wants_cv and run["configuration_version_id"]:
            cv = req.store.get_configuration_version(run["configuration_version_id"], _user(req))
            out[("configuration-versions", cv["id"])] = documents.render(req, "configuration-versions", cv)
            if "configuration_version.ingress_attributes" in includes and cv["ingress"]:
                doc = documents.render(req, "ingress-attributes", cv)
                out[("ingress-attributes", doc["id"])] = doc
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


#: Run operations (run.mdx "Run Operations"), derived from how a run was created.
RUN_OPERATIONS = ("plan_only", "plan_and_apply", "save_plan", "refresh_only", "destroy", "empty_apply")
#: Run status groups (run.mdx "Run Status Groups").
STATUS_GROUPS = {"non_final": lambda s: s not in FINAL_RUN_STATUSES,
                 "final": lambda s: s in FINAL_RUN_STATUSES,
                 "discardable": lambda s: s in ("planned", "planned_and_saved", "cost_estimated", "policy_checked",
                                                "policy_override", "post_plan_running", "post_plan_completed")}
RUN_SOURCES = ("tfe-ui", "tfe-api", "tfe-configuration-version")


def run_operation(run: dict[str, Any]) -> str:
    """The operation of a run (run.mdx "Run Operations")."""
    options = json.loads(run["options"] or "{}")
    if run["plan_only"]:
        return "plan_only"
    if options.get("save-plan"):
        return "save_plan"
    if options.get("refresh-only"):
        return "refresh_only"
    if run["is_destroy"]:
        return "destroy"
    return "empty_apply" if options.get("allow-empty-apply") else "plan_and_apply"


def _listed(req: Request, rows: list[dict[str, Any]], org: str | None = None) -> list[dict[str, Any]]:
    """The runs a list's query parameters select (run.mdx "List Runs in a Workspace", Query Parameters):
    `filter[operation]` (default: every operation but `plan_only`, "By default, plan_only runs will be
    excluded"), `filter[status]`, `filter[source]`, `filter[status_group]`, `filter[timeframe]`,
    `filter[agent_pool_names]` (the pool of an agent-mode workspace when the run was created), `search[user]`
    (the VCS username that pushed the run's commit, `sender-username` of its ingress attributes), `search[commit]`,
    `search[basic]` (username, commit sha, run id or message; ignored when `search[user]` or `search[commit]`
    is given). The organization's list has runs of the last year unless `filter[timeframe]` says otherwise."""
    query = req.query

    def listed(name: str) -> list[str]:
        return [v for v in (query.get(name) or "").split(",") if v]

    operations = listed("filter[operation]") or [o for o in RUN_OPERATIONS if o != "plan_only"]
    unknown = sorted(set(operations) - set(RUN_OPERATIONS))
    if unknown:
        raise errors.BadRequestError(f"filter[operation] has unknown operations {', '.join(unknown)} "
                                     f"(known: {', '.join(RUN_OPERATIONS)})")
    rows = [r for r in rows if run_operation(r) in operations]
    statuses = listed("filter[status]")
    if statuses:
        rows = [r for r in rows if r["status"] in statuses]
    sources = listed("filter[source]")
    if sources:
        rows = [r for r in rows if r["source"] in sources]
    group = query.get("filter[status_group]")
    if group:
        if group not in STATUS_GROUPS:
            raise errors.BadRequestError(f"filter[status_group] must be one of {', '.join(STATUS_GROUPS)}")
        rows = [r for r in rows if STATUS_GROUPS[group](r["status"])]
    # run.mdx "List Runs in an Organization": "If omitted, the endpoint returns runs created in the last year"
    timeframe = query.get("filter[timeframe]") or ("year" if org is not None else None)
    if timeframe:
        if timeframe == "year":
            cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 365 * 86400))
            rows = [r for r in rows if r["created_at"] >= cutoff]
        elif timeframe.isdigit():
            rows = [r for r in rows if r["created_at"].startswith(timeframe + "-")]
        else:
            raise errors.BadRequestError("filter[timeframe] must be a year or \"year\"")
    pools = listed("filter[agent_pool_names]")
    if pools:
        rows = [r for r in rows if req.store.run_agent_pool_name(r) in pools]
    names = listed("filter[workspace_names]")
    if names and org is not None:  # the organization's list only
        ids = {w["id"] for n in names if (w := req.store.find_workspace(org, n)) is not None}
        rows = [r for r in rows if r["workspace_id"] in ids]
    commit, user = query.get("search[commit]") or "", query.get("search[user]") or ""
    basic = "" if commit or user else (query.get("search[basic]") or "")
    if commit or user or basic:
        rows = [r for r in rows if _run_matches(req, r, commit, user, basic)]
    return rows


def _run_matches(req: Request, run: dict[str, Any], commit: str, user: str, basic: str) -> bool:
    cv = req.store.configuration_version_by_id(run["configuration_version_id"]) if run["configuration_version_id"] else None
    ingress = json.loads(cv["ingress"]) if cv and cv["ingress"] else {}
    sha, sender = ingress.get("commit-sha") or "", (ingress.get("sender-username") or "").lower()
    if commit or user:
        return (not commit or (bool(sha) and sha.startswith(commit))) and (not user or sender == user.lower())
    needle = basic.lower()
    return ((bool(sha) and sha.startswith(basic)) or (bool(sender) and needle == sender)
            or needle in run["id"].lower() or needle in (run["message"] or "").lower())


def list_runs(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/runs` (paged; the filters of `_listed`; 30 reads a minute per user)."""
    ws = _ws(req, ws_id=ws_id)
    _check_list_limit(req)
    rows, meta, links = paginate(req, _listed(req, req.store.list_runs(ws["id"])))
    doc = _runs_document(req, [run_doc(req, r) for r in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def list_org_runs(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/runs` (run.mdx "List Runs in an Organization"): the runs of the
    workspaces the caller sees, the filters of `_listed` plus `filter[workspace_names]`; 30 reads a minute;
    pagination without `total-count` and `total-pages`, as the page says."""
    req.store.get_organization(org, _user(req))
    _check_list_limit(req)
    visible = {w["id"] for w in req.store.visible_to(_user(req), req.store.list_workspaces(org))}
    rows = [r for r in req.store.list_org_runs(org) if r["workspace_id"] in visible]
    rows, meta, links = paginate(req, _listed(req, rows, org))
    for key in ("total-count", "total-pages"):
        meta["pagination"].pop(key, None)
    links.pop("last", None)
    doc = _runs_document(req, [run_doc(req, r) for r in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def _queued(req: Request, org: str) -> list[dict[str, Any]]:
    """The organization's runs waiting to start, oldest first (`pending`)."""
    return sorted((r for r in req.store.list_org_runs(org) if r["status"] == "pending"),
                  key=lambda r: r["created_at"])


def run_queue(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/runs/queue` (go-tfe `organization.go` ReadRunQueue; Terraform
    `internal/cloud/backend_common.go` waitForRun reads each run's `position-in-queue` here): the pending
    runs, oldest first, positions from 1."""
    req.store.get_organization(org, _user(req))
    queued = _queued(req, org)
    rows, meta, links = paginate(req, queued)
    data = []
    for row in rows:
        doc = run_doc(req, row)
        doc["attributes"]["position-in-queue"] = queued.index(row) + 1
        data.append(doc)
    return jsonapi_response({"data": data, "links": links, "meta": meta})


def capacity(req: Request, org: str) -> Response:
    """`GET /api/v2/organizations/:org/capacity` (go-tfe `organization.go` ReadCapacity, type
    `organization-capacity`): runs pending and runs working now (every status between leaving the queue and
    a pause or an end)."""
    req.store.get_organization(org, _user(req))
    runs = req.store.list_org_runs(org)
    working = [r for r in runs if r["status"] not in FINAL_RUN_STATUSES and r["status"] != "pending"
               and r["status"] not in CONFIRMABLE_STATUSES and r["status"] not in DISCARDABLE_STATUSES]
    return jsonapi_response({"data": {"id": org, "type": "organization-capacity", "attributes": {
        "pending": sum(1 for r in runs if r["status"] == "pending"), "running": len(working)}}})


def show_run(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id` (`?include=workspace,created_by,plan,configuration_version`)."""
    run = req.store.get_run(run_id, _user(req))
    _ws_of(req, run["workspace_id"])
    return jsonapi_response(_runs_document(req, run_doc(req, run), [run]))


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
    ws = _ws(req, ws_id=ws_id, need="queue-run")
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
    if attrs.get("is-destroy") and not req.store.workspace_settings(ws["id"])["allow-destroy-plan"]:
        # workspaces.mdx `allow-destroy-plan`: "Whether destroy plans can be queued on the workspace"
        raise errors.UnprocessableError("Destroy plans are not allowed on this workspace (its allow-destroy-plan is "
                                        "false)", pointer="/data/attributes/is-destroy")
    speculative = bool(cv_id) and bool(req.store.configuration_version_by_id(cv_id)["speculative"])
    if speculative:
        # configuration-versions.mdx `speculative`: "may only be used to create runs which are speculative,
        # that is, can neither be confirmed nor applied" (`terraform plan` with a cloud block uploads one)
        if attrs.get("plan-only") is False:
            raise errors.UnprocessableError("a speculative configuration version only makes plan-only runs",
                                            pointer="/data/attributes/plan-only")
        attrs["plan-only"] = True
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
    if attrs.get("refresh-only") and attrs.get("is-destroy"):
        # run.mdx: `is-destroy` and `refresh-only` are "Mutually exclusive"
        raise errors.UnprocessableError("refresh-only and is-destroy are mutually exclusive",
                                        pointer="/data/attributes/refresh-only")
    if options["terraform-version"].startswith("0.") and (attrs.get("refresh-only") or options.get("replace-addrs")):
        # the sandbox plans 0.x workspaces with Terraform 0.11, which has neither `-refresh-only` nor `-replace`
        name = "refresh-only" if attrs.get("refresh-only") else "replace-addrs"
        raise errors.UnprocessableError(f"{name} needs a Terraform newer than 0.11; the sandbox plans "
                                        f"{options['terraform-version']} with 0.11.11", pointer=f"/data/attributes/{name}")
    run = req.store.create_run(ws, _user(req), cv_id=cv_id,
                               message=attrs.get("message") or "Queued manually via the Terraform Enterprise API",
                               is_destroy=attrs.get("is-destroy", False), plan_only=attrs.get("plan-only", False),
                               auto_apply=attrs.get("auto-apply"), options=options)
    return jsonapi_response({"data": run_doc(req, run)}, 201)
