"""Handlers of the new API for a run's comments and its events.

- `GET /runs/:id/comments`, `POST /runs/:id/comments` {body}, `GET /comments/:id` (comments.mdx): a comment
  relates the run event it made (`run-event`).
- `GET /runs/:id/run-events`, `GET /run-events/:id` (go-tfe `run_event.go`; the API pages do not document
  them): `action`, `created-at`, `description`, relationships `actor` and `comment`, `?include=actor,comment`.
  The sandbox records `created` when a run is created and `commented` for each comment (go-tfe
  `run_event_integration_test.go`; Terraform `internal/cloud/backend_run_warning_test.go`). The cloud backend
  lists them before each run to print policy and task enforcement warnings
  (`internal/cloud/backend_run_warning.go`); the sandbox has no policies or run tasks, so it records none
  of those.

A comment given to a run action (`apply`, `discard`, `cancel`, `force-cancel`: run.mdx "An optional
comment about the run") is recorded here too (go-tfe `run_integration_test.go` Apply reads it back as
the run's comment).
"""

from __future__ import annotations

from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.tfe_api import _rel, _user, _ws_of
from runbook_lib.sandbox.wire import Request, Response, includes, jsonapi_response, paginate, parse_resource

#: `?include=` on run events (go-tfe `run_event.go` RunEventIncludeOpt).
RUN_EVENT_INCLUDES = ("actor", "comment")


@documents.renders("comments")
def comment_doc(req: Request, row: dict[str, Any]) -> dict[str, Any]:
    event = req.store.comment_event(row["id"])
    run_event: dict[str, Any] = _rel("run-events", event["id"] if event else None)
    if event:
        run_event["links"] = {"related": f"/api/v2/run-events/{event['id']}"}
    return {"id": row["id"], "type": "comments", "attributes": {"body": row["body"]},
            "relationships": {"run-event": run_event}, "links": {"self": f"/api/v2/comments/{row['id']}"}}


def _event_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "type": "run-events", "attributes": {
        "action": row["action"], "created-at": row["created_at"], "description": row["description"]},
        "relationships": {"actor": _rel("users", row["actor_id"]), "comment": _rel("comments", row["comment_id"])},
        "links": {"self": f"/api/v2/run-events/{row['id']}"}}


def _run(req: Request, run_id: str, need: str | None = None) -> dict[str, Any]:
    run = req.store.get_run(run_id, _user(req))
    _ws_of(req, run["workspace_id"], need)
    return run


def list_comments(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/comments` (paged, oldest first)."""
    run = _run(req, run_id)
    rows, meta, links = paginate(req, req.store.list_comments(run["id"]))
    return jsonapi_response({"data": [comment_doc(req, r) for r in rows], "links": links, "meta": meta})


def create_comment(req: Request, run_id: str) -> Response:
    """`POST /api/v2/runs/:id/comments` {body}: 201; a blank body is 422. Commenting needs the right to queue
    plans (run.mdx `permissions.can-comment`; permissions.mdx "Plan" and above)."""
    run = _run(req, run_id, need="queue-run")
    attrs, _ = parse_resource(req, "comments")
    body = attrs.get("body")
    if not isinstance(body, str) or not body.strip():
        raise errors.UnprocessableError("Body can't be blank", pointer="/data/attributes/body")
    return jsonapi_response({"data": comment_doc(req, req.store.add_comment(run["id"], body, _user(req)))}, 201)


def show_comment(req: Request, comment_id: str) -> Response:
    """`GET /api/v2/comments/:id`."""
    row = req.store.get_comment(comment_id, _user(req))
    _run(req, row["run_id"])
    return jsonapi_response({"data": comment_doc(req, row)})


def _events_document(req: Request, data: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    asked = includes(req, RUN_EVENT_INCLUDES, f"run events include {', '.join(RUN_EVENT_INCLUDES)}")
    doc: dict[str, Any] = {"data": data}
    if asked:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            if "actor" in asked and row["actor_id"]:
                user = req.store.find_user_by_id(row["actor_id"])
                if user is not None:
                    out[("users", user["id"])] = documents.render(req, "users", user)
            if "comment" in asked and row["comment_id"]:
                comment = req.store.comment_by_id(row["comment_id"])
                if comment is not None:
                    out[("comments", comment["id"])] = comment_doc(req, comment)
        doc["included"] = list(out.values())
    return doc


def list_run_events(req: Request, run_id: str) -> Response:
    """`GET /api/v2/runs/:id/run-events` (oldest first; `include=actor,comment`)."""
    run = _run(req, run_id)
    rows = req.store.list_run_events(run["id"])
    return jsonapi_response(_events_document(req, [_event_doc(r) for r in rows], rows))


def show_run_event(req: Request, event_id: str) -> Response:
    """`GET /api/v2/run-events/:id` (`include=actor,comment`)."""
    row = req.store.get_run_event(event_id, _user(req))
    _run(req, row["run_id"])
    return jsonapi_response(_events_document(req, _event_doc(row), [row]))
