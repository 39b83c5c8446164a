"""The sandbox's admin surface for tests: `/_sandbox/...`, never reachable with an API token.

Every route except `/_sandbox/health` needs the header `X-Sandbox-Admin: <secret>`, where the secret is
the content of `<data dir>/admin.secret` (mode 0600, written at first start). API tokens are refused
here (401), and faults and the rate limit never apply to these paths.

| method | path | body / answer |
|---|---|---|
| GET | /_sandbox/health | `{"ok": true, "seeded": N}` (no secret needed; readiness probe) |
| GET | /_sandbox/requests?since=ID&method=&path_prefix=&status=&username= | `{"requests": [ROW...]}` |
| PUT | /_sandbox/faults | a `FaultConfig` as JSON -> `{"faults": {...}}` |
| DELETE | /_sandbox/faults | faults off -> `{"faults": null}` |
| PUT | /_sandbox/rate-limit | `{"limit": 30}` (null: off) -> `{"limit": ...}` |
| POST | /_sandbox/reset | remove every object of both APIs (users and tokens stay) -> `{"ok": true}` |

ROW: `{"id", "ts", "method", "path", "status", "token_name", "username", "changes", "fault", "duration_ms"}`;
`changes` is the number of database rows the request wrote (0 for any refused request).
"""

from __future__ import annotations

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.faults import FaultConfig
from runbook_lib.sandbox.wire import Request, Response, json_response


def health(req: Request) -> Response:
    """Readiness probe."""
    return json_response({"ok": True, "seeded": int(req.store.find_meta("seeded_n", "0") or 0)})


def requests_log(req: Request) -> Response:
    """The request log, filtered by query parameters."""
    try:
        since = int(req.query.get("since", "0"))
        status = int(req.query["status"]) if req.query.get("status") else None
    except ValueError as exc:
        raise errors.BadRequestError("since and status must be integers") from exc
    rows = req.store.request_log(since_id=since, method=req.query.get("method"),
                                 path_prefix=req.query.get("path_prefix"), status=status,
                                 username=req.query.get("username"))
    return json_response({"requests": rows})


def put_faults(req: Request) -> Response:
    """Switch fault injection on."""
    doc = req.json()
    if not isinstance(doc, dict):
        raise errors.BadRequestError("a JSON object of fault settings was expected")
    try:
        config = FaultConfig.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise errors.BadRequestError(str(exc)) from exc
    req.app.faults.configure(config)
    return json_response({"faults": config.to_dict()})


def delete_faults(req: Request) -> Response:
    """Switch fault injection off."""
    req.app.faults.configure(None)
    return json_response({"faults": None})


def put_rate_limit(req: Request) -> Response:
    """Change the per-token rate limit (requests per second; null switches it off)."""
    doc = req.json()
    limit = doc.get("limit") if isinstance(doc, dict) else None
    if limit is not None and (not isinstance(limit, (int, float)) or limit <= 0):
        raise errors.BadRequestError("limit must be a positive number or null")
    req.app.set_rate_limit(limit)
    return json_response({"limit": limit})


def reset(req: Request) -> Response:
    """Remove every object of both APIs, then bootstrap the users' organizations again."""
    from runbook_lib.sandbox.seed import bootstrap  # seed imports terraform helpers: load only when used

    req.store.reset()
    bootstrap(req.store)
    return json_response({"ok": True})
