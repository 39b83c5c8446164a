"""The new API (/api/v2) on the wire, including proof 4: bad requests get real TFE's answers and change nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import Sandbox


def _state(serial: int, lineage: str = "lin-1", extra: str = "") -> bytes:
    return json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": serial, "lineage": lineage,
                       "outputs": {"x": {"value": extra, "type": "string"}}, "resources": []}).encode()


def _sv(api: Api, ws_id: str, body: bytes, *, inline: bool = True, **overrides) -> object:
    info = json.loads(body)
    attrs = {"serial": info["serial"], "md5": hashlib.md5(body).hexdigest(), "lineage": info["lineage"]}
    if inline:
        attrs["state"] = base64.b64encode(body).decode()
    attrs.update(overrides)
    return api.post(f"/api/v2/workspaces/{ws_id}/state-versions", json=doc("state-versions", **attrs))


def _assert_no_writes(sandbox: Sandbox, mark: int) -> None:
    rows = sandbox.request_log(since=mark)
    assert rows and all(r["changes"] == 0 for r in rows), rows


# --- proof 4: bad requests -----------------------------------------------------------------------------

def test_bad_token_and_no_token_are_401(seeded_sandbox: Sandbox, new_org: str):
    mark = seeded_sandbox.log_mark()
    for token in ("", "bogus.atlasv1." + "x" * 67):
        answer = Api(seeded_sandbox, token).post(f"/api/v2/organizations/{new_org}/workspaces",
                                                 json=doc("workspaces", name="nope"))
        assert answer.status_code == 401
        assert answer.json() == {"errors": [{"status": "401", "title": "unauthorized"}]}
    _assert_no_writes(seeded_sandbox, mark)
    assert Api(seeded_sandbox).get(f"/api/v2/organizations/{new_org}/workspaces/nope").status_code == 404


@pytest.mark.parametrize("body, status, detail", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (json.dumps({"name": "flat"}).encode(), 422, "param is missing or the value is empty: data"),
    (json.dumps({"data": {"type": "organizations", "attributes": {"name": "x"}}}).encode(), 409, "does not match"),
    (json.dumps({"data": {"attributes": {"name": "x"}}}).encode(), 422, "type"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {}}}).encode(), 422, "Name can't be blank"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {"name": "web.prod"}}}).encode(), 422, "Name is invalid"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {"name": "a" * 91}}}).encode(), 422, "Name is invalid"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {"name": "has space"}}}).encode(), 422, "Name is invalid"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {"name": "ok", "auto-apply": "yes"}}}).encode(),
     422, "auto-apply"),
    (json.dumps({"data": {"type": "workspaces", "attributes": {"name": "ok", "execution-mode": "cloud"}}}).encode(),
     422, "Execution mode"),
])
def test_malformed_workspace_creates_are_refused(seeded_sandbox: Sandbox, new_org: str, body: bytes, status: int,
                                                detail: str):
    api = Api(seeded_sandbox)
    mark = seeded_sandbox.log_mark()
    answer = api.post(f"/api/v2/organizations/{new_org}/workspaces", data=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/vnd.api+json"
    error = answer.json()["errors"][0]
    assert error["status"] == str(status) and detail in error.get("detail", "")
    if status == 422 and "Name" in detail:
        assert error["title"] == "invalid attribute" and error["source"] == {"pointer": "/data/attributes/name"}
    _assert_no_writes(seeded_sandbox, mark)
    assert api.get(f"/api/v2/organizations/{new_org}/workspaces").json()["data"] == []


def test_names_at_the_limits(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    longest = "a" * 90
    assert create_workspace(api, new_org, longest)["attributes"]["name"] == longest
    assert create_workspace(api, new_org, "Web_Prod-2")["attributes"]["name"] == "Web_Prod-2"
    mark = seeded_sandbox.log_mark()
    taken = api.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc("workspaces", name=longest))
    assert taken.status_code == 422 and taken.json()["errors"][0]["detail"] == "Name has already been taken"
    _assert_no_writes(seeded_sandbox, mark)


def test_foreign_organization_objects_answer_404(seeded_sandbox: Sandbox, new_org: str):
    operator, outsider = Api(seeded_sandbox), Api(seeded_sandbox, seeded_sandbox.outsider_token)
    ws = create_workspace(operator, new_org, "mine")
    own_ws = outsider.get("/api/v2/organizations/outsider-corp/workspaces/payments-prod").json()["data"]
    mark = seeded_sandbox.log_mark()
    not_found = {"errors": [{"status": "404", "title": "not found"}]}
    for answer in (
        outsider.get(f"/api/v2/organizations/{new_org}"),
        outsider.get(f"/api/v2/organizations/{new_org}/workspaces"),
        outsider.get(f"/api/v2/workspaces/{ws['id']}"),
        outsider.post(f"/api/v2/workspaces/{ws['id']}/actions/lock"),
        outsider.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", name="stolen")),
        outsider.delete(f"/api/v2/workspaces/{ws['id']}"),
        outsider.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc("workspaces", name="intruder")),
        operator.get(f"/api/v2/workspaces/{own_ws['id']}"),
        operator.get(f"/api/v2/workspaces/{own_ws['id']}/current-state-version"),
        operator.get("/api/v2/organizations/outsider-corp/entitlement-set"),
    ):
        assert answer.status_code == 404 and answer.json() == not_found
    _assert_no_writes(seeded_sandbox, mark)
    assert operator.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["locked"] is False


def test_organization_names_are_global(seeded_sandbox: Sandbox):
    api = Api(seeded_sandbox)
    for name in ("acme-legacy", "outsider-corp"):
        answer = api.post("/api/v2/organizations", json=doc("organizations", name=name, email="a@b.example"))
        assert answer.status_code == 422
        assert answer.json()["errors"][0] == {"status": "422", "title": "invalid attribute",
                                              "detail": "Name has already been taken",
                                              "source": {"pointer": "/data/attributes/name"}}
    assert api.get("/api/v2/organizations/acme-legacy").status_code == 404  # a legacy org is not a new one


# --- workspaces ------------------------------------------------------------------------------------------

def test_workspace_with_vcs_and_settings(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    client = api.post(f"/api/v2/organizations/{new_org}/oauth-clients", json=doc(
        "oauth-clients", **{"service-provider": "github_enterprise", "http-url": "https://git.acme.example",
                            "api-url": "https://git.acme.example/api/v3", "oauth-token-string": "ghp-fake",
                            "name": "acme git"}))
    assert client.status_code == 201
    token_id = client.json()["data"]["relationships"]["oauth-tokens"]["data"][0]["id"]
    tokens = api.get(f"/api/v2/oauth-clients/{client.json()['data']['id']}/oauth-tokens").json()["data"]
    assert [t["id"] for t in tokens] == [token_id] and "ghp-fake" not in json.dumps(tokens)
    ws = create_workspace(api, new_org, "network-prod", **{
        "vcs-repo": {"identifier": "acme-legacy/infrastructure", "branch": "master", "oauth-token-id": token_id},
        "working-directory": "network/prod", "terraform-version": "0.11.11", "auto-apply": False,
        "execution-mode": "remote", "queue-all-runs": False})
    attrs = ws["attributes"]
    assert attrs["vcs-repo"]["identifier"] == "acme-legacy/infrastructure"
    assert attrs["vcs-repo"]["oauth-token-id"] == token_id and attrs["vcs-repo"]["branch"] == "master"
    assert attrs["working-directory"] == "network/prod" and attrs["terraform-version"] == "0.11.11"
    assert attrs["auto-apply"] is False and attrs["execution-mode"] == "remote"
    assert attrs["permissions"]["can-force-unlock"] is True and attrs["actions"]["is-destroyable"] is True
    by_name = api.get(f"/api/v2/organizations/{new_org}/workspaces/network-prod").json()["data"]
    assert by_name["id"] == ws["id"] and by_name["relationships"]["current-state-version"]["data"] is None
    bad = api.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc(
        "workspaces", name="bad-vcs", **{"vcs-repo": {"identifier": "a/b", "oauth-token-id": "ot-doesnotexist"}}))
    assert bad.status_code == 422 and bad.json()["errors"][0]["source"]["pointer"].endswith("oauth-token-id")
    patched = api.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", **{"vcs-repo": None}))
    assert patched.json()["data"]["attributes"]["vcs-repo"] is None
    assert api.delete(f"/api/v2/organizations/{new_org}/workspaces/network-prod").status_code == 204
    assert api.get(f"/api/v2/workspaces/{ws['id']}").status_code == 404


def test_pagination(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    for i in range(23):
        create_workspace(api, new_org, f"ws-{i:02d}")
    first = api.get(f"/api/v2/organizations/{new_org}/workspaces?page[size]=10").json()
    assert len(first["data"]) == 10
    assert first["meta"]["pagination"] == {"current-page": 1, "page-size": 10, "prev-page": None, "next-page": 2,
                                           "total-pages": 3, "total-count": 23}
    last = api.get(first["links"]["last"]).json()
    assert [w["attributes"]["name"] for w in last["data"]] == ["ws-20", "ws-21", "ws-22"]
    assert last["meta"]["pagination"]["next-page"] is None and last["links"]["next"] is None
    default = api.get(f"/api/v2/organizations/{new_org}/workspaces").json()
    assert len(default["data"]) == 20
    capped = api.get(f"/api/v2/organizations/{new_org}/workspaces?page[size]=500").json()
    assert capped["meta"]["pagination"]["page-size"] == 100 and len(capped["data"]) == 23
    searched = api.get(f"/api/v2/organizations/{new_org}/workspaces?search[name]=ws-1").json()
    assert len(searched["data"]) == 10


def test_lock_unlock_force_unlock(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    api = Api(sandbox)
    api.post("/api/v2/organizations", json=doc("organizations", name="locks", email="a@b.example"))
    colleague = sandbox.store.create_user("colleague", "c@acme.example")
    other = Api(sandbox, sandbox.store.create_token(colleague["id"], "colleague-api-token"))
    sandbox.store.add_org_member("locks", colleague["id"])
    ws = create_workspace(api, "locks", "app")
    path = f"/api/v2/workspaces/{ws['id']}/actions"

    not_locked = api.post(f"{path}/unlock")
    assert not_locked.status_code == 409
    assert not_locked.json()["errors"][0]["detail"] == "Unable to unlock workspace. The workspace is not locked."
    # Terraform's own lock body: JSON:API with an empty type
    locked = api.post(f"{path}/lock", json={"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}})
    assert locked.status_code == 200
    attrs = locked.json()["data"]
    assert attrs["attributes"]["locked"] is True
    assert attrs["relationships"]["locked-by"]["data"] == {"id": sandbox.store.find_user("operator")["id"], "type": "users"}
    mark = sandbox.log_mark()
    again = other.post(f"{path}/lock", json={"reason": "mine"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["detail"] == "Unable to lock workspace. The workspace is already locked."
    refused = other.post(f"{path}/unlock")
    assert refused.status_code == 409 and "is locked by User operator" in refused.json()["errors"][0]["detail"]
    _assert_no_writes(sandbox, mark)
    forced = other.post(f"{path}/force-unlock")
    assert forced.status_code == 200 and forced.json()["data"]["attributes"]["locked"] is False
    assert other.post(f"{path}/force-unlock").status_code == 409


# --- state versions -------------------------------------------------------------------------------------

def test_state_version_rules(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    ws = create_workspace(api, new_org, "state-rules")
    ws_id = ws["id"]
    unlocked = _sv(api, ws_id, _state(1))
    assert unlocked.status_code == 409 and "locked" in unlocked.json()["errors"][0]["detail"]
    api.post(f"/api/v2/workspaces/{ws_id}/actions/lock", json={"reason": "migration"})
    first = _sv(api, ws_id, _state(3))
    assert first.status_code == 201 and first.json()["data"]["attributes"]["status"] == "finalized"

    mark = seeded_sandbox.log_mark()
    for body, needle in ((_state(4, lineage="other"), "lineage"), (_state(2), "serial"),
                         (_state(3, extra="different"), "MD5")):
        conflict = _sv(api, ws_id, body)
        assert conflict.status_code == 409 and needle in conflict.json()["errors"][0]["detail"], conflict.text
    wrong_md5 = _sv(api, ws_id, _state(5), md5="0" * 32)
    assert wrong_md5.status_code == 422 and wrong_md5.json()["errors"][0]["source"]["pointer"] == "/data/attributes/md5"
    missing = api.post(f"/api/v2/workspaces/{ws_id}/state-versions", json=doc("state-versions", lineage="lin-1"))
    assert missing.status_code == 422 and missing.json()["errors"][0]["detail"] == "Serial can't be blank"
    _assert_no_writes(seeded_sandbox, mark)

    same = _sv(api, ws_id, _state(3))  # an identical retry: the existing version, no new one
    assert same.status_code == 200 and same.json()["data"]["id"] == first.json()["data"]["id"]
    forced = _sv(api, ws_id, _state(1, lineage="new-lineage"), force=True)
    assert forced.status_code == 201

    # hosted upload: pending until the bytes arrive; md5 checked
    body = _state(7, lineage="new-lineage")
    pending = _sv(api, ws_id, body, inline=False).json()["data"]
    assert pending["attributes"]["status"] == "pending" and pending["attributes"]["hosted-json-state-upload-url"]
    assert api.get(f"/api/v2/workspaces/{ws_id}/current-state-version").json()["data"]["id"] == forced.json()["data"]["id"]
    assert api.put(pending["attributes"]["hosted-state-upload-url"], data=body + b" ").status_code == 422
    assert api.put(pending["attributes"]["hosted-state-upload-url"], data=body,
                   headers={"Authorization": ""}).status_code == 200
    # finalized asynchronously (state-versions.mdx): current once the host has processed the upload
    deadline = time.monotonic() + 10
    while (current := api.get(f"/api/v2/workspaces/{ws_id}/current-state-version").json()["data"])["id"] != \
            pending["id"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert current["id"] == pending["id"] and current["attributes"]["serial"] == 7
    assert api.get(current["attributes"]["hosted-state-download-url"]).content == body
    listed = api.get(f"/api/v2/state-versions?filter[organization][name]={new_org}"
                     "&filter[workspace][name]=state-rules").json()
    assert [s["attributes"]["serial"] for s in listed["data"]] == [7, 1, 3]
    assert listed["meta"]["pagination"]["total-count"] == 3
    # the legacy endpoint reads the same bytes
    assert Api(seeded_sandbox, legacy=True).get(f"/api/v1/terraform/state/{new_org}/state-rules").content == body


def test_state_versions_include_their_outputs_and_filter_by_status(seeded_sandbox: Sandbox, new_org: str):
    # state-versions.mdx "Available Related Resources" and "List State Versions" (`filter[status]`); go-tfe
    # `state_version_output_integration_test.go` reads `outputs` included with the current version
    api = Api(seeded_sandbox)
    ws_id = create_workspace(api, new_org, "state-includes")["id"]
    api.post(f"/api/v2/workspaces/{ws_id}/actions/lock")
    done = _sv(api, ws_id, _state(1, extra="hello")).json()["data"]
    _sv(api, ws_id, _state(2), inline=False)  # pending until its upload
    current = api.get(f"/api/v2/workspaces/{ws_id}/current-state-version?include=outputs,created_by").json()
    included = {(i["type"], i["id"]): i for i in current["included"]}
    out_id = current["data"]["relationships"]["outputs"]["data"][0]["id"]
    assert included[("state-version-outputs", out_id)]["attributes"] == api.get(
        f"/api/v2/state-version-outputs/{out_id}").json()["data"]["attributes"]
    assert included[("state-version-outputs", out_id)]["attributes"]["value"] == "hello"
    assert any(kind == "users" for kind, _ in included)
    listed = f"/api/v2/state-versions?filter[organization][name]={new_org}&filter[workspace][name]=state-includes"
    assert [s["id"] for s in api.get(listed + "&filter[status]=finalized").json()["data"]] == [done["id"]]
    assert [s["attributes"]["status"] for s in api.get(listed + "&filter[status]=pending").json()["data"]] == [
        "pending"]
    for bad in (listed + "&filter[status]=lost", f"/api/v2/state-versions/{done['id']}?include=workspace"):
        refused = api.get(bad)
        assert refused.status_code == 400 and ("lost" in refused.text or "workspace" in refused.text)


# --- variables, runs, plans, configuration versions ------------------------------------------------------

def test_variables_sensitive_values_are_write_only(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    ws = create_workspace(api, new_org, "vars")
    base = f"/api/v2/workspaces/{ws['id']}/vars"
    secret = api.post(base, json=doc("vars", key="db_password", value="hunter2", category="terraform", sensitive=True))
    assert secret.status_code == 201 and secret.json()["data"]["attributes"]["value"] is None
    plain = api.post(base, json=doc("vars", key="region", value="us-east-1", category="env"))
    assert plain.json()["data"]["attributes"]["value"] == "us-east-1"
    listed = api.get(base)
    assert "hunter2" not in listed.text and len(listed.json()["data"]) == 2
    dup = api.post(base, json=doc("vars", key="db_password", value="x", category="terraform"))
    assert dup.status_code == 422 and dup.json()["errors"][0]["detail"] == "Key has already been taken"
    bad = api.post(base, json=doc("vars", key="k", value="v", category="shell"))
    assert bad.status_code == 422
    var_id = secret.json()["data"]["id"]
    unhide = api.patch(f"{base}/{var_id}", json=doc("vars", sensitive=False))
    assert unhide.status_code == 422
    assert api.patch(f"{base}/{var_id}", json=doc("vars", value="new")).json()["data"]["attributes"]["value"] is None
    assert api.delete(f"{base}/{var_id}").status_code == 204
    assert [v["attributes"]["key"] for v in api.get(base).json()["data"]] == ["region"]


def test_runs_plans_and_configuration_versions(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    sandbox.run_settings(paused=True)  # this test plays the run worker itself (tests/sandbox/test_vcs_runs.py: the real one)
    announced: list[tuple[str, str]] = []
    sandbox.store.run_listeners.append(lambda kind, run_id: announced.append((kind, run_id)))
    api = Api(sandbox)
    api.post("/api/v2/organizations", json=doc("organizations", name="runs", email="a@b.example"))
    ws = create_workspace(api, "runs", "app", **{"terraform-version": "1.2.3"})  # JSON plans need >= 0.12
    cv = api.post(f"/api/v2/workspaces/{ws['id']}/configuration-versions",
                  json=doc("configuration-versions", **{"auto-queue-runs": False}))
    assert cv.status_code == 201 and cv.json()["data"]["attributes"]["status"] == "pending"
    assert api.put(cv.json()["data"]["attributes"]["upload-url"], data=b"tarball-bytes").status_code == 200
    assert api.get(f"/api/v2/configuration-versions/{cv.json()['data']['id']}").json()["data"]["attributes"]["status"] == "uploaded"

    run = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {"message": "verify", "plan-only": True},
                                                  "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws["id"]}}}}})
    assert run.status_code == 201
    data = run.json()["data"]
    assert data["attributes"]["status"] == "pending" and data["attributes"]["plan-only"] is True
    assert data["relationships"]["configuration-version"]["data"]["id"] == cv.json()["data"]["id"]
    assert announced == [("tfe", data["id"])]
    plan_id = data["relationships"]["plan"]["data"]["id"]
    plan = api.get(f"/api/v2/plans/{plan_id}").json()["data"]["attributes"]
    assert plan["status"] == "pending" and plan["has-changes"] is False and plan["resource-additions"] == 0
    assert api.get(f"/api/v2/plans/{plan_id}/json-output", allow_redirects=False).status_code == 204

    # what the run worker does: finish the plan; then the JSON output is served
    sandbox.store.update_plan(plan_id, "finished", has_changes=0, json_output=b'{"resource_changes": []}')
    sandbox.store.transition_run(data["id"], "planning")
    sandbox.store.transition_run(data["id"], "planned_and_finished")
    redirect = api.get(f"/api/v2/runs/{data['id']}/plan/json-output", allow_redirects=False)
    assert redirect.status_code == 307
    assert api.get(redirect.headers["Location"]).json() == {"resource_changes": []}
    # plan-only runs are listed only when filter[operation] asks for them (run.mdx "List Runs in a Workspace")
    assert api.get(f"/api/v2/workspaces/{ws['id']}/runs?filter[status]=planned_and_finished").json()["data"] == []
    finished = api.get(f"/api/v2/workspaces/{ws['id']}/runs?filter[status]=planned_and_finished"
                       "&filter[operation]=plan_only,plan_and_apply").json()
    assert [r["id"] for r in finished["data"]] == [data["id"]]
    assert api.get(f"/api/v2/workspaces/{ws['id']}/runs?filter[status]=pending").json()["data"] == []
    assert "planned-and-finished-at" in api.get(f"/api/v2/runs/{data['id']}").json()["data"]["attributes"]["status-timestamps"]
    wrong = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {}}})
    assert wrong.status_code == 422


def test_entitlements_and_account(seeded_sandbox: Sandbox, new_org: str):
    api = Api(seeded_sandbox)
    ent = api.get(f"/api/v2/organizations/{new_org}/entitlement-set").json()["data"]
    assert ent["type"] == "entitlement-sets" and ent["attributes"]["operations"] is True
    me = api.get("/api/v2/account/details").json()["data"]
    assert me["type"] == "users" and me["attributes"]["username"] == "operator"
    assert Api(seeded_sandbox).get("/api/v2/no-such-thing").json() == {"errors": [{"status": "404", "title": "not found"}]}
