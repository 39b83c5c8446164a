"""Handlers for what a run does after it was created: confirm, discard, cancel; ingress attributes; run settings.

New API (`/api/v2`, bearer token), as TFE answers them:
- `POST /runs/:id/actions/apply` {"comment"}: 202; only a run paused for confirmation (`planned`,
  `cost_estimated`, `policy_checked`, `post_plan_completed`, `planned_and_saved`); 409 "transition not
  allowed" otherwise. The run goes `confirmed`, then the run worker applies it (`applying` -> `applied`).
- `POST /runs/:id/actions/discard`: 202; a run paused for confirmation or a policy override, or still
  `pending` in the queue (run.html.md "Discard a Run"); 409 otherwise, a planning run included (cancel it).
- `POST /runs/:id/actions/cancel`: 202; a queued, planning or applying run -> `canceled` (run.mdx "Cancel
  a Run"; a terraform command already running finishes; its result is dropped); 409 for a paused or
  finished run.
Every status change goes through `Store.transition_run` (store/runs.py), the table of run.mdx.

Admin surface (SANDBOX-DEFINED, `X-Sandbox-Admin` secret): `GET /_sandbox/runs` and `PUT /_sandbox/runs`
`{"paused": bool, "timeout": seconds}` -> `{"paused", "timeout", "workers", "idle"}`.
"""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.runs import CANCELABLE_STATUSES, CONFIRMABLE_STATUSES, DISCARDABLE_STATUSES
from runbook_lib.sandbox.wire import Request, Response, json_response


#: Seconds from a cancel to `force-cancel-available-at` (run.mdx "a cool-off period"; the docs give no length,
#: so this is the sandbox's).
FORCE_CANCEL_COOL_OFF_S = 60


def _runner(req: Request) -> Any:
    return getattr(req.app, "runner", None)


def _user(req: Request) -> dict[str, Any]:
    assert req.user is not None  # bearer routes are authenticated by the server
    return req.user


def _comment(req: Request) -> str | None:
    """The optional body `{"comment": "..."}` of a run action (run.mdx: "An optional comment about the run");
    the caller records it as a comment on the run once the action succeeded (`_record_comment`)."""
    if not req.body.strip():
        return None
    doc = req.json()
    if not isinstance(doc, dict) or not isinstance(doc.get("comment", ""), (str, type(None))):
        raise errors.UnprocessableError("comment must be a string", pointer="/comment")
    unknown = sorted(set(doc) - {"comment"})
    if unknown:
        raise errors.UnprocessableError(f"{', '.join(unknown)} is not a parameter of this run action (it takes "
                                        "only comment)", pointer=f"/{unknown[0]}")
    return doc.get("comment") or None


def _record_comment(req: Request, run_id: str, comment: str | None) -> None:
    if comment:
        req.store.add_comment(run_id, comment, _user(req))


def apply_run(req: Request, run_id: str) -> Response:
    """`POST /api/v2/runs/:id/actions/apply`: confirm a run paused for confirmation; 202 (409 otherwise)."""
    run = req.store.get_run(run_id, _user(req))
    req.store.require(_user(req), req.store.get_workspace(run["workspace_id"], _user(req)), "apply")
    comment = _comment(req)
    if req.store.run_job(run_id) is None:
        # Seeded history is never executed: nothing would carry a confirmation on.
        raise errors.ConflictError(f"transition not allowed: a {run['status']} run cannot become confirmed")
    req.store.transition_run(run_id, "confirmed", only_from=tuple(CONFIRMABLE_STATUSES))
    apply = req.store.apply_for_run(run_id)
    if apply is not None:  # run.mdx `relationships.confirmed-by`: the user who confirmed the apply
        req.store.update_apply(apply["id"], confirmed_by=_user(req)["id"])
    req.store.set_run_job(run_id, state="apply")
    _record_comment(req, run_id, comment)
    runner = _runner(req)
    if runner is not None:
        runner.wake()  # it waits for this transaction's commit (the store lock) before it looks
    return Response(202)


def discard_run(req: Request, run_id: str) -> Response:
    """`POST /api/v2/runs/:id/actions/discard`: a run paused for confirmation or a policy override, or one
    still pending in the queue, becomes `discarded` (store/runs.py DISCARDABLE_STATUSES); 202, or 409."""
    return _stop(req, run_id, DISCARDABLE_STATUSES, "discarded")


def cancel_run(req: Request, run_id: str) -> Response:
    """`POST /api/v2/runs/:id/actions/cancel`: a queued, planning or applying run becomes `canceled`
    (run.mdx "Cancel a Run"); 202, or 409 for a paused or finished run."""
    return _stop(req, run_id, CANCELABLE_STATUSES, "canceled")


def force_cancel_run(req: Request, run_id: str) -> Response:
    """`POST /api/v2/runs/:id/actions/force-cancel`: 409 for every run (run.mdx "Forcefully cancel a run":
    409 when the run "was not planning or applying, has not been canceled non-forcefully, or the cool-off
    period has not yet passed"). The sandbox's cancel ends a run at once (`canceled`), so no run is ever
    left canceling after its cool-off; `is-force-cancelable` is always false."""
    run = req.store.get_run(run_id, _user(req))
    req.store.require(_user(req), req.store.get_workspace(run["workspace_id"], _user(req)), "force-cancel")
    _comment(req)
    raise errors.ConflictError(f"run {run_id} cannot be force-canceled: it is {run['status']}, and the sandbox's "
                               "cancel ends a run at once, so there is no cancel in progress to force")


def _stop(req: Request, run_id: str, allowed: frozenset[str], status: str) -> Response:
    run = req.store.get_run(run_id, _user(req))
    req.store.require(_user(req), req.store.get_workspace(run["workspace_id"], _user(req)), "cancel")
    comment = _comment(req)
    req.store.transition_run(run_id, status, only_from=tuple(allowed))
    if status == "canceled":
        # run.mdx "Forcefully cancel a run": after a cancel, `force-cancel-available-at` names when the cool-off
        # ends (go-tfe `run_integration_test.go` ForceCancel "after a normal cancel" waits for it)
        req.store.note_cancel_requested(run_id, FORCE_CANCEL_COOL_OFF_S)
    _record_comment(req, run_id, comment)
    plan = req.store.plan_for_run(run_id)
    if plan and plan["status"] in ("pending", "running"):
        req.store.update_plan(plan["id"], "unreachable" if plan["status"] == "pending" else "canceled")
    job = req.store.run_job(run_id)
    if job is not None:
        running = job["state"] == "running"
        req.store.set_run_job(run_id, state="running" if running else "done")
        runner = _runner(req)
        if runner is not None and not running:
            runner.discard_workdir(run_id)
    return Response(202)


def _settings(req: Request) -> dict[str, Any]:
    runner = _runner(req)
    if runner is None:
        raise errors.NotFoundError("this sandbox has no run worker")
    return {"paused": runner.paused, "timeout": runner.timeout_s, "workers": runner.workers,
            "idle": runner.idle()}


def show_settings(req: Request) -> Response:
    """`GET /_sandbox/runs` (admin): the run worker's settings and whether it is idle."""
    return json_response(_settings(req))


def put_settings(req: Request) -> Response:
    """`PUT /_sandbox/runs` (admin) `{"paused": bool, "timeout": seconds}`: change the run worker's settings."""
    runner = _runner(req)
    doc = req.json()
    if runner is None:
        raise errors.NotFoundError("this sandbox has no run worker")
    if not isinstance(doc, dict):
        raise errors.UnprocessableError("a JSON object is expected", pointer="/")
    if "timeout" in doc:
        timeout = doc["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise errors.UnprocessableError("timeout must be a positive number of seconds", pointer="/timeout")
        runner.timeout_s = float(timeout)
    if "paused" in doc:
        if not isinstance(doc["paused"], bool):
            raise errors.UnprocessableError("paused must be true or false", pointer="/paused")
        if doc["paused"]:
            runner.pause()
        else:
            runner.resume()
    return json_response(_settings(req))
