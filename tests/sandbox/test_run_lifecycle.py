"""Run behaviours of the sandbox's /api/v2 as the API docs describe them (contract: docs/sandbox-runs.md).

The run worker is paused in these tests: they move runs through statuses with the store's own
transition function (the one the worker calls), so each status a real TFE can show is reached on
purpose, not by timing.
"""

from __future__ import annotations

from typing import Any

from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.tfe_runs_api import RunListLimiter


def _run(api: Api, ws_id: str, **attributes: Any) -> dict[str, Any]:
    body = {"data": {"type": "runs", "attributes": attributes,
                     "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws_id}},
                                       "configuration-version": {"data": None}}}}
    response = api.post("/api/v2/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _setup(sandbox: Sandbox, version: str = "1.2.3") -> tuple[Api, dict[str, Any]]:
    sandbox.run_settings(paused=True)
    api = Api(sandbox)
    assert api.post("/api/v2/organizations", json=doc("organizations", name="runs", email="a@b.example")).status_code == 201
    return api, create_workspace(api, "runs", "app", **{"terraform-version": version})


def _status(api: Api, run_id: str) -> str:
    return api.get(f"/api/v2/runs/{run_id}").json()["data"]["attributes"]["status"]


def test_discard_only_on_a_paused_or_queued_run_and_cancel_only_on_a_working_one(fresh_sandbox: Sandbox):
    api, ws = _setup(fresh_sandbox)
    store = fresh_sandbox.store
    # run.html.md "Discard a Run": runs "paused waiting for confirmation or priority", "pending" included.
    queued = _run(api, ws["id"])
    assert api.get(f"/api/v2/runs/{queued['id']}").json()["data"]["attributes"]["actions"]["is-discardable"] is True
    assert api.post(f"/api/v2/runs/{queued['id']}/actions/discard").status_code == 202
    assert _status(api, queued["id"]) == "discarded"
    pending = _run(api, ws["id"])
    store.transition_run(pending["id"], "planning")
    refused = api.post(f"/api/v2/runs/{pending['id']}/actions/discard")
    assert refused.status_code == 409 and "planning run cannot become discarded" in refused.text
    # run.mdx "Cancel a Run": a planning run is interrupted.
    assert api.post(f"/api/v2/runs/{pending['id']}/actions/cancel").status_code == 202
    assert _status(api, pending["id"]) == "canceled"

    paused = _run(api, ws["id"])
    store.transition_run(paused["id"], "planning")
    store.transition_run(paused["id"], "planned")
    actions = api.get(f"/api/v2/runs/{paused['id']}").json()["data"]["attributes"]["actions"]
    assert actions == {"is-cancelable": False, "is-confirmable": True, "is-discardable": True,
                       "is-force-cancelable": False}
    assert api.post(f"/api/v2/runs/{paused['id']}/actions/cancel").status_code == 409
    assert api.post(f"/api/v2/runs/{paused['id']}/actions/discard").status_code == 202
    assert _status(api, paused["id"]) == "discarded"
    assert api.post(f"/api/v2/runs/{paused['id']}/actions/discard").status_code == 409  # final is final

    override = _run(api, ws["id"])
    for status in ("planning", "policy_checking", "policy_override"):
        store.transition_run(override["id"], status)
    assert api.post(f"/api/v2/runs/{override['id']}/actions/discard").status_code == 202


def test_a_run_locks_its_workspace_while_it_works(fresh_sandbox: Sandbox):
    api, ws = _setup(fresh_sandbox)
    run = _run(api, ws["id"])
    fresh_sandbox.store.transition_run(run["id"], "planning")
    locked = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]
    assert locked["attributes"]["locked"] is True
    assert locked["relationships"]["locked-by"]["data"] == {"id": run["id"], "type": "runs"}
    unlock = api.post(f"/api/v2/workspaces/{ws['id']}/actions/unlock")
    assert unlock.status_code == 409 and "is locked by Run" in unlock.text  # what go-tfe matches
    assert api.post(f"/api/v2/runs/{run['id']}/actions/cancel").status_code == 202
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["locked"] is False


def test_the_runs_list_has_its_own_limit_per_minute(fresh_sandbox: Sandbox):
    api, ws = _setup(fresh_sandbox)
    # A limiter of this test's own (the documented 30 a minute), so reads by other tests do not count.
    fresh_sandbox._server.runs_list_limiter = RunListLimiter(limit=30, window_s=60.0)
    # 31 reads in well under a second would also meet the general limit of 30 a second (a 429 of the wrong kind):
    # this sandbox is the test's own, so that limit is raised (not switched off: off switches both) to see the
    # per-minute one alone.
    fresh_sandbox.set_rate_limit(1000.0)
    api = Api(fresh_sandbox, retry_429=False)  # see the 429 itself, not a client's retry a minute later
    answers = [api.get(f"/api/v2/workspaces/{ws['id']}/runs").status_code for _ in range(30)]
    assert answers == [200] * 30
    limited = api.get(f"/api/v2/workspaces/{ws['id']}/runs")
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Limit"] == "30" and int(limited.headers["Retry-After"]) >= 1
    assert 0 < float(limited.headers["X-RateLimit-Reset"]) <= 60.0
    assert limited.json()["errors"][0]["status"] == 429
    # Other reads are not charged to it: a run by id, the workspace.
    assert api.get(f"/api/v2/workspaces/{ws['id']}").status_code == 200
    # Another user has a budget of their own.
    assert Api(fresh_sandbox, fresh_sandbox.outsider_token).get(f"/api/v2/workspaces/{ws['id']}/runs").status_code == 404


def test_json_output_is_422_for_a_plan_made_by_terraform_0_11(fresh_sandbox: Sandbox):
    api, ws = _setup(fresh_sandbox, version="0.11.11")
    run = _run(api, ws["id"], **{"plan-only": True})
    plan_id = run["relationships"]["plan"]["data"]["id"]
    answer = api.get(f"/api/v2/plans/{plan_id}/json-output", allow_redirects=False)
    assert answer.status_code == 422 and "0.12" in answer.text
    assert api.get(f"/api/v2/runs/{run['id']}/plan/json-output", allow_redirects=False).status_code == 422
    _, ws_1x = api, create_workspace(api, "runs", "app-1x", **{"terraform-version": "1.2.3"})
    run_1x = _run(api, ws_1x["id"], **{"plan-only": True})
    plan_1x = run_1x["relationships"]["plan"]["data"]["id"]
    assert api.get(f"/api/v2/plans/{plan_1x}/json-output", allow_redirects=False).status_code == 204  # not yet


def test_run_create_answers_go_tfe_options_and_includes(fresh_sandbox: Sandbox):
    api, ws = _setup(fresh_sandbox)
    run = _run(api, ws["id"], **{"save-plan": True, "allow-empty-apply": True, "refresh": False,
                                 "target-addrs": ["null_resource.a"], "variables": [{"key": "k", "value": "v"}]})
    attrs = run["attributes"]
    assert attrs["save-plan"] is True and attrs["allow-empty-apply"] is True and attrs["refresh"] is False
    assert attrs["target-addrs"] == ["null_resource.a"] and attrs["variables"] == [{"key": "k", "value": "v"}]
    assert "plan-queueable-at" in attrs["status-timestamps"]
    refused = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {"terraform-version": "1.0.0"},
                       "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws["id"]}}}}})
    assert refused.status_code == 422  # run.mdx: terraform-version only with plan-only
    listed = api.get(f"/api/v2/workspaces/{ws['id']}/runs?include=workspace,created_by").json()
    kinds = {(i["type"], i["id"]) for i in listed["included"]}
    assert ("workspaces", ws["id"]) in kinds and any(kind == "users" for kind, _ in kinds)
    assert api.get(f"/api/v2/runs/{run['id']}?include=nonsense").status_code == 400


def test_comments_and_run_events_and_the_force_cancel_cool_off(fresh_sandbox: Sandbox):
    # comments.mdx; go-tfe `comment.go`, `run_event.go`; run.mdx "Cancel a Run" (`comment`), "Forcefully cancel
    # a run" (`force-cancel-available-at` once a cancel was asked for)
    api, ws = _setup(fresh_sandbox)
    run = _run(api, ws["id"])
    made = api.post(f"/api/v2/runs/{run['id']}/comments", json=doc("comments", body="looks right"))
    assert made.status_code == 201, made.text
    comment = made.json()["data"]
    assert api.get(f"/api/v2/comments/{comment['id']}").json()["data"]["attributes"]["body"] == "looks right"
    assert api.post(f"/api/v2/runs/{run['id']}/comments", json=doc("comments", body=" ")).status_code == 422
    assert api.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={"comment": "stuck"}).status_code == 202
    assert api.post(f"/api/v2/runs/{run['id']}/actions/cancel", json={"reason": "x"}).status_code == 422
    read = api.get(f"/api/v2/runs/{run['id']}").json()["data"]
    assert read["attributes"]["force-cancel-available-at"] > read["attributes"]["canceled-at"]
    assert read["attributes"]["actions"]["is-force-cancelable"] is False  # the cancel already ended it
    bodies = [api.get(f"/api/v2/comments/{c['id']}").json()["data"]["attributes"]["body"]
              for c in read["relationships"]["comments"]["data"]]
    assert bodies == ["looks right", "stuck"]
    events = api.get(f"/api/v2/runs/{run['id']}/run-events?include=actor,comment").json()
    assert [e["attributes"]["action"] for e in events["data"]] == ["created", "commented", "commented"]
    event = events["data"][1]
    assert event["relationships"]["comment"]["data"]["id"] == comment["id"]
    included = {(i["type"], i["id"]) for i in events["included"]}
    assert ("comments", comment["id"]) in included and ("users", event["relationships"]["actor"]["data"]["id"]) in included
    assert api.get(f"/api/v2/run-events/{event['id']}").json()["data"]["attributes"]["action"] == "commented"
    assert api.get(f"/api/v2/runs/{run['id']}/run-events?include=target").status_code == 400
    outsider = Api(fresh_sandbox, fresh_sandbox.outsider_token)
    assert outsider.get(f"/api/v2/comments/{comment['id']}").status_code == 404


def test_a_speculative_plan_starts_while_a_run_awaits_confirmation_and_takes_no_lock(fresh_sandbox: Sandbox):
    # Speculative plans "can begin at any time without waiting for other runs" (terraform-website 6a3873a83,
    # content/source/docs/cloud/run/index.html.md); a normal run queued behind the paused one waits.
    import time

    api, ws = _setup(fresh_sandbox)
    paused = _run(api, ws["id"])
    fresh_sandbox.store.transition_run(paused["id"], "planning")
    fresh_sandbox.store.transition_run(paused["id"], "planned")  # awaits confirmation, holding the queue
    queued = _run(api, ws["id"])
    speculative = _run(api, ws["id"], **{"plan-only": True})
    fresh_sandbox.run_settings(paused=False)
    deadline = time.monotonic() + 30
    while _status(api, speculative["id"]) == "pending":
        assert time.monotonic() < deadline, "the speculative plan never started"
        time.sleep(0.1)
    assert _status(api, paused["id"]) == "planned" and _status(api, queued["id"]) == "pending"
    locked_by = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["relationships"]["locked-by"]["data"]
    assert locked_by == {"id": paused["id"], "type": "runs"}  # still the paused run's; the plan took none
