"""The sandbox answers as the documented API does where the runbook could be fooled (docs/sandbox-behaviour.md).

Each test names the behaviour and its source; the runbook's clients are exercised against the same rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Iterator

import pytest
from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.errors import ConflictError
from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.vcs import vcs_runs_queue
from runbook_lib.settings import Settings
from runbook_lib.tfe import StateVersionPendingError, TfeClient
from sandbox_fixtures import create_organization

FINALIZE = 0.6


@pytest.fixture(scope="module")
def slow_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """An unseeded sandbox whose uploads take FINALIZE seconds to finalize (set through `Sandbox(...)`)."""
    with Sandbox(tmp_path_factory.mktemp("real-sem"), state_finalize_seconds=FINALIZE, rate_limit=None) as sb:
        yield sb


@pytest.fixture
def org(slow_sandbox: Sandbox) -> str:
    return create_organization(slow_sandbox)


def _state(serial: int, lineage: str = "lin-a", resources: int = 0) -> bytes:
    res = {f"null_resource.r{i}": {"type": "null_resource", "primary": {"id": str(i), "attributes": {}}}
           for i in range(resources)}
    return json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": serial, "lineage": lineage,
                       "modules": [{"path": ["root"], "outputs": {}, "resources": res}]}, indent=2).encode()


def _create(api: Api, ws_id: str, body: bytes, *, inline: bool, serial: int | None = None) -> dict:
    info = json.loads(body)
    attrs = {"serial": info["serial"] if serial is None else serial, "md5": hashlib.md5(body).hexdigest(),
             "lineage": info["lineage"]}
    if inline:
        attrs["state"] = base64.b64encode(body).decode()
    answer = api.post(f"/api/v2/workspaces/{ws_id}/state-versions", json=doc("state-versions", **attrs))
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["data"]


def _locked_ws(api: Api, org: str, name: str | None = None) -> str:
    ws = create_workspace(api, org, name or f"ws-{uuid.uuid4().hex[:8]}")
    assert api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={}).status_code == 200
    return ws["id"]


# --- state versions ----------------------------------------------------------------------------------------

def test_state_version_answers_carry_no_md5_and_no_lineage(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    sv = _create(api, ws_id, _state(1), inline=True)
    for answer in (sv, api.get(f"/api/v2/state-versions/{sv['id']}").json()["data"],
                   api.get(f"/api/v2/workspaces/{ws_id}/current-state-version").json()["data"]):
        assert "md5" not in answer["attributes"] and "lineage" not in answer["attributes"]
        assert answer["attributes"]["serial"] == 1


def test_hosted_upload_is_pending_until_finalized_and_accepted_once(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    body = _state(4)
    sv = _create(api, ws_id, body, inline=False)
    assert sv["attributes"]["status"] == "pending" and sv["attributes"]["hosted-state-download-url"] is None
    upload = sv["attributes"]["hosted-state-upload-url"]
    assert api.put(upload, data=body, headers={"Content-Type": "application/octet-stream"}).status_code == 200
    started = time.monotonic()
    after = api.get(f"/api/v2/state-versions/{sv['id']}").json()["data"]["attributes"]
    assert after["status"] == "pending" and after["hosted-state-download-url"] is None
    assert after["hosted-state-upload-url"] is None  # "once you upload state content, this URL is hidden"
    again = api.put(upload, data=body, headers={"Content-Type": "application/octet-stream"})
    assert again.status_code == 409  # "You can upload state data once per state version"
    assert api.get(f"/api/v2/workspaces/{ws_id}/current-state-version").status_code == 404
    while (now := api.get(f"/api/v2/state-versions/{sv['id']}").json()["data"]["attributes"])["status"] != "finalized":
        assert time.monotonic() - started < FINALIZE + 5
        time.sleep(0.05)
    assert time.monotonic() - started >= FINALIZE * 0.8
    assert api.get(now["hosted-state-download-url"]).content == body
    assert api.get(f"/api/v2/workspaces/{ws_id}/current-state-version").json()["data"]["id"] == sv["id"]


def test_unlock_is_refused_while_the_latest_state_version_awaits_its_upload(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    _create(api, ws_id, _state(1), inline=False)
    refused = api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock")
    assert refused.status_code == 409
    assert "latest state version is still pending" in refused.json()["errors"][0]["detail"]
    assert api.get(f"/api/v2/workspaces/{ws_id}").json()["data"]["attributes"]["locked"] is True
    # force-unlock is the documented way out (go-tfe's own test does it)
    assert api.post(f"/api/v2/workspaces/{ws_id}/actions/force-unlock").status_code == 200


def test_a_serial_attribute_other_than_the_states_is_accepted_and_answered(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    sv = _create(api, ws_id, _state(9), inline=True, serial=2)
    assert sv["attributes"]["serial"] == 2 and sv["attributes"]["status"] == "finalized"
    assert sv["attributes"]["hosted-state-download-url"]


# --- workspaces ----------------------------------------------------------------------------------------------

def test_workspace_include_current_state_version_dashed_and_unknown_is_400(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    sv = _create(api, ws_id, _state(1), inline=True)
    shown = api.get(f"/api/v2/workspaces/{ws_id}?include=current-state-version").json()
    assert [i["id"] for i in shown["included"]] == [sv["id"]]
    listed = api.get(f"/api/v2/organizations/{org}/workspaces?include=current-state-version").json()
    assert sv["id"] in [i["id"] for i in listed["included"]]
    for bad in ("current_state_version", "nonsense"):
        assert api.get(f"/api/v2/workspaces/{ws_id}?include={bad}").status_code == 400


def test_locked_by_names_the_user_holding_the_lock(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    shown = api.get(f"/api/v2/workspaces/{ws_id}?include=locked_by").json()
    holder = shown["data"]["relationships"]["locked-by"]["data"]
    assert holder["type"] == "users" and holder["id"]
    assert [(i["type"], i["id"]) for i in shown["included"]] == [("users", holder["id"])]
    api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock")
    assert api.get(f"/api/v2/workspaces/{ws_id}").json()["data"]["relationships"]["locked-by"]["data"] is None


def test_safe_delete_refuses_a_workspace_managing_resources_and_delete_forces(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    managing = _locked_ws(api, org)
    _create(api, managing, _state(1, resources=2), inline=True)
    assert api.get(f"/api/v2/workspaces/{managing}").json()["data"]["attributes"]["resource-count"] == 2
    refused = api.post(f"/api/v2/workspaces/{managing}/actions/safe-delete")
    assert refused.status_code == 409 and "managing resources" in refused.json()["errors"][0]["detail"]
    assert api.get(f"/api/v2/workspaces/{managing}").status_code == 200
    assert api.delete(f"/api/v2/workspaces/{managing}").status_code == 204  # force delete
    assert api.get(f"/api/v2/workspaces/{managing}").status_code == 404
    empty = create_workspace(api, org, "empty-one")
    assert api.post(f"/api/v2/organizations/{org}/workspaces/empty-one/actions/safe-delete").status_code == 204
    assert api.get(f"/api/v2/workspaces/{empty['id']}").status_code == 404


def test_queue_all_runs_false_holds_vcs_runs_until_one_run_was_queued_otherwise(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    ws = {"id": "ws-1", "queue_all_runs": 0, "auto_apply": 0}
    assert vcs_runs_queue(store, ws) is False
    store.create_run(ws, None, cv_id=None, message="push", source="tfe-configuration-version")
    assert vcs_runs_queue(store, ws) is False  # a push's own run does not count
    store.create_run(ws, None, cv_id=None, message="by hand", source="tfe-api")
    assert vcs_runs_queue(store, ws) is True
    assert vcs_runs_queue(store, {"id": "ws-2", "queue_all_runs": 1}) is True


# --- content type ------------------------------------------------------------------------------------------

def test_mutating_requests_without_the_jsonapi_content_type_are_415(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws = create_workspace(api, org, "ctype")
    plain = {"Content-Type": "application/json"}
    body = json.dumps(doc("workspaces", name="ctype-2"))
    assert api.post(f"/api/v2/organizations/{org}/workspaces", data=body, headers=plain).status_code == 415
    assert api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", headers={"Content-Type": ""}).status_code == 415
    assert api.delete(f"/api/v2/workspaces/{ws['id']}", headers=plain).status_code == 415
    assert api.get(f"/api/v2/workspaces/{ws['id']}", headers=plain).status_code == 200  # reads are not checked
    assert api.get(f"/api/v2/organizations/{org}/workspaces/ctype-2").status_code == 404  # nothing was created
    ok = api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock",
                  headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert ok.status_code == 200
    # the hosted upload URL is not JSON:API: raw bytes are accepted there
    sv = _create(api, ws["id"], _state(1), inline=False)
    put = api.put(sv["attributes"]["hosted-state-upload-url"], data=_state(1),
                  headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 200


# --- the runbook's client against these rules ----------------------------------------------------------------

def _tfe(sb: Sandbox) -> TfeClient:
    return TfeClient(Settings.from_env(sb.env))


def test_client_push_state_waits_until_finalized_and_reads_identity_from_bytes(slow_sandbox: Sandbox, org: str):
    tfe = _tfe(slow_sandbox)
    ws = tfe.create_workspace(org, "pushed")
    tfe.lock_workspace(ws.id)
    body = _state(5, lineage="lin-pushed")
    notes: list[str] = []
    sv = tfe.push_state(ws.id, body)
    assert sv.get("status") == "finalized" and sv.get("hosted-state-download-url")
    held = tfe.held_state(tfe.get_workspace(org, "pushed", fresh=True))
    assert (held.state_version_id, held.serial, held.lineage) == (sv.id, 5, "lin-pushed")
    assert held.md5 == hashlib.md5(body).hexdigest() and held.data == body
    tfe.unlock_workspace(ws.id, progress=notes.append)
    assert notes == []  # finalized before the unlock: nothing to wait for


def test_client_unlock_retries_a_pending_refusal_then_names_it(slow_sandbox: Sandbox, org: str):
    tfe = _tfe(slow_sandbox)
    ws = tfe.create_workspace(org, "stuck")
    tfe.lock_workspace(ws.id)
    body = _state(1)
    tfe.create_state_version(ws.id, serial=1, md5=hashlib.md5(body).hexdigest(), lineage="lin-a")
    notes: list[str] = []
    started = time.monotonic()
    with pytest.raises(StateVersionPendingError, match="latest state version is still pending after 2s") as info:
        tfe.unlock_workspace(ws.id, pending_timeout=2, progress=notes.append)
    assert 2 <= time.monotonic() - started < 10
    assert len(notes) >= 2 and all("still pending" in n for n in notes)
    assert "state versions" in str(info.value)  # names where to look
    assert tfe.get_workspace_by_id(ws.id, fresh=True).get("locked") is True


def test_client_delete_workspace_is_a_safe_delete(slow_sandbox: Sandbox, org: str):
    tfe = _tfe(slow_sandbox)
    ws = tfe.create_workspace(org, "keeps-resources")
    tfe.lock_workspace(ws.id)
    tfe.push_state(ws.id, _state(1, resources=1))
    with pytest.raises(ConflictError, match="managing resources"):
        tfe.delete_workspace(ws.id)
    assert tfe.find_workspace(org, "keeps-resources", fresh=True) is not None
    assert tfe.force_delete_workspace(ws.id) is True
    assert tfe.find_workspace(org, "keeps-resources", fresh=True) is None


def test_a_push_queues_no_run_until_one_was_queued_through_the_api(fresh_sandbox: Sandbox, tmp_path):
    """workspaces.mdx `queue-all-runs` (default false): VCS runs wait for a first run queued by hand."""
    from vcs_helpers import Checkout, new_org_with_vcs, vcs_workspace, workspace_runs

    sandbox = fresh_sandbox
    api = Api(sandbox)
    sandbox.create_repository("platform/held")
    org, token_id = new_org_with_vcs(api)
    ws = vcs_workspace(api, org, token_id, "held", "platform/held", terraform_version="0.11.11",
                       **{"queue-all-runs": False})
    assert ws["attributes"]["queue-all-runs"] is False
    repo = Checkout(sandbox, "platform/held", tmp_path / "held")
    sandbox.run_settings(paused=True)  # what is queued matters here, not what terraform makes of it
    repo.write("main.tf", 'resource "null_resource" "one" {}\n')
    repo.push("First configuration")
    assert workspace_runs(api, ws["id"]) == []
    queued = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {"message": "by hand"},
                                                     "relationships": {"workspace": {"data": {
                                                         "type": "workspaces", "id": ws["id"]}}}}})
    assert queued.status_code == 201, queued.text
    repo.write("main.tf", 'resource "null_resource" "two" {}\n')
    repo.push("Second configuration")
    assert len(workspace_runs(api, ws["id"])) == 2


# --- step 3's CLI path precondition ---------------------------------------------------------------------------

def test_cli_path_is_refused_when_the_legacy_host_does_not_serve_the_new_workspaces_state(
        seeded_sandbox: Sandbox, fresh_sandbox: Sandbox, sandbox_environ, tmp_path, monkeypatch):
    """Terraform 0.11 writes under the new name to the legacy address: a new TFE on another host is not there."""
    from runbook_lib.context import StepContext
    from runbook_lib.errors import StepError
    from runbook_lib.steps import state_migration

    monkeypatch.setenv("OTHER_TFE_TOKEN", fresh_sandbox.operator_token)
    other = TfeClient(Settings.from_env({**fresh_sandbox.env, "TFE_TOKEN": fresh_sandbox.operator_token}))
    other.create_organization("elsewhere", "ops@acme.example")
    ws = other.create_workspace("elsewhere", "network-prod")
    other.lock_workspace(ws.id)
    ctx = StepContext.create(step="03_migrate_state", legacy_org="acme-legacy", legacy_env="network-prod",
                             new_org="elsewhere", mode="apply", audit_root=str(tmp_path / "runs"), interactive=False,
                             tfe_address=fresh_sandbox.tfe_address, tfe_token_var="OTHER_TFE_TOKEN",
                             migration_path="cli")
    planned = state_migration.plan(ctx).set_index("object")
    assert planned.loc["cli path", "action"] == "refuse"
    marks = seeded_sandbox.log_mark(), fresh_sandbox.log_mark()
    with pytest.raises(StepError, match=r"does not serve workspace elsewhere/network-prod's state \(GET "
                                        r"/api/v1/terraform/state/elsewhere/network-prod answered 404.*"
                                        r"use migration_path = 'api'"):
        state_migration.apply(ctx)
    for sb, mark in zip((seeded_sandbox, fresh_sandbox), marks):
        assert all(r["changes"] == 0 for r in sb.request_log(since=mark))
    assert other.current_state_version(ws.id) is None


# --- what go-tfe's own tests read ----------------------------------------------------------------------------

def test_workspace_lists_its_variables_and_variables_follow_go_tfe(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws = create_workspace(api, org, "with-vars")
    base = f"/api/v2/workspaces/{ws['id']}/vars"
    var = api.post(base, json=doc("vars", key="region", value="eu", category="terraform")).json()["data"]
    rel = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["relationships"]["vars"]["data"]
    assert rel == [{"id": var["id"], "type": "vars"}]
    too_long = api.post(base, json=doc("vars", key="other", value="x", category="terraform", description="d" * 513))
    assert too_long.status_code == 422
    moved = api.patch(f"{base}/{var['id']}", json=doc("vars", category="env", value="us")).json()["data"]
    assert moved["attributes"]["category"] == "env"
    assert moved["attributes"]["version-id"] != var["attributes"]["version-id"]


def test_workspace_wildcard_name_search(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    for name in ("app-prod", "db-prod", "app-dev"):
        create_workspace(api, org, name)

    def names(pattern: str) -> list[str]:
        listed = api.get(f"/api/v2/organizations/{org}/workspaces", params={"search[wildcard-name]": pattern})
        return sorted(w["attributes"]["name"] for w in listed.json()["data"])

    assert names("*-prod") == ["app-prod", "db-prod"]
    assert names("app-*") == ["app-dev", "app-prod"]
    assert names("*p-d*") == ["app-dev"]
    assert names("*-qa") == []


def test_a_finalized_state_version_counts_its_resources_and_relates_its_outputs(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws_id = _locked_ws(api, org)
    body = json.loads(_state(1, resources=3))
    body["modules"][0]["outputs"] = {"url": {"type": "string", "value": "x"}}
    sv = _create(api, ws_id, json.dumps(body).encode(), inline=True)
    assert sv["attributes"]["billable-rum-count"] == 3
    assert len(sv["relationships"]["outputs"]["data"]) == 1


def test_a_terraform_version_that_is_no_version_is_refused(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws = create_workspace(api, org, "versions", **{"terraform-version": "~> 1.0.0"})
    assert ws["attributes"]["terraform-version"] == "~> 1.0.0"
    refused = api.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", **{"terraform-version": "nonexisting"}))
    assert refused.status_code == 422
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["terraform-version"] == "~> 1.0.0"


# --- steps 2 and 3 against these rules ----------------------------------------------------------------------

def test_step_2_sets_queue_all_runs_and_step_3_leaves_a_finalized_state(seeded_sandbox: Sandbox, sandbox_environ,
                                                                         new_org: str, tmp_path, monkeypatch):
    from runbook_lib.context import StepContext
    from runbook_lib.catalog import step_parameters
    from runbook_lib.rehearsal import batch_environ, batch_parameters
    from runbook_lib.steps import organization, state_migration, workspaces
    from sandbox_fixtures import write_operator_mapping

    for name, value in batch_environ(seeded_sandbox.env).items():
        monkeypatch.setenv(name, value)
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["network-prod"], new_org=new_org)

    def ctx(step: str, **options):
        return StepContext.create(step=step, legacy_org="acme-legacy", legacy_env="network-prod", new_org=new_org,
                                  mode="apply", audit_root=str(tmp_path / "runs"), interactive=False,
                                  **step_parameters(step, {**batch_parameters(seeded_sandbox.env),
                                                           "accept_empty_sensitive": True, **options}))

    organization.apply(ctx("01_create_organization"))
    workspaces.apply(ctx("02_create_workspaces"))
    tfe = _tfe(seeded_sandbox)
    ws = tfe.get_workspace(new_org, "network-prod", fresh=True)
    assert ws.get("vcs-repo") and ws.get("queue-all-runs") is True
    tfe.update_workspace(ws.id, {"queue-all-runs": False})  # as a workspace made by hand would be
    step2 = ctx("02_create_workspaces")
    verdict = workspaces.verify(step2)
    assert not verdict.passed and "queue-all-runs" in verdict.summary
    assert "queue-all-runs" in set(workspaces.plan(step2)["object"])
    workspaces.apply(step2)
    assert workspaces.verify(ctx("02_create_workspaces")).passed

    step3 = ctx("03_migrate_state")
    state_migration.apply(step3)
    current = tfe.current_state_version(ws.id, fresh=True)  # no wait here: apply waited for it
    assert current is not None and current.get("status") == "finalized"
    assert state_migration.verify(ctx("03_migrate_state")).passed


def test_workspace_settings_are_kept_and_trigger_patterns_exclude_prefixes(slow_sandbox: Sandbox, org: str):
    api = Api(slow_sandbox)
    ws = create_workspace(api, org, "settings", **{"allow-destroy-plan": False, "auto-destroy-at": "2025-01-01T00:00:00Z",
                                                   "trigger-patterns": ["/modules/**/*"]})
    shown = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]
    assert (shown["allow-destroy-plan"], shown["auto-destroy-at"], shown["trigger-patterns"]) == (
        False, "2025-01-01T00:00:00Z", ["/modules/**/*"])
    api.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", **{"allow-destroy-plan": True}))
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["allow-destroy-plan"] is True
    both = api.post(f"/api/v2/organizations/{org}/workspaces", json=doc(
        "workspaces", name="both", **{"trigger-patterns": ["/a/*"], "trigger-prefixes": ["/b"]}))
    assert both.status_code == 422
