"""Workspace behaviour that go-tfe's integration tests hold the sandbox to: execution modes inherited from
the organization (`setting-overwrites`), ordering on the current run, and tags."""

from __future__ import annotations

from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import Sandbox


def _mode(api: Api, ws_id: str) -> tuple[str, dict]:
    attrs = api.get(f"/api/v2/workspaces/{ws_id}").json()["data"]["attributes"]
    return attrs["execution-mode"], attrs["setting-overwrites"]


def test_a_workspace_inherits_its_organizations_default_execution_mode(api: Api, new_org: str):
    patched = api.patch(f"/api/v2/organizations/{new_org}", json=doc("organizations", **{
        "default-execution-mode": "local"}))
    assert patched.status_code == 200
    inheriting = create_workspace(api, new_org, "inherits", **{"setting-overwrites": {"execution-mode": False}})
    silent = create_workspace(api, new_org, "says-nothing")
    own = create_workspace(api, new_org, "own-mode", **{"execution-mode": "remote"})
    assert _mode(api, inheriting["id"]) == ("local", {"execution-mode": False, "agent-pool": False})
    assert _mode(api, silent["id"])[0] == "local"
    assert _mode(api, own["id"]) == ("remote", {"execution-mode": True, "agent-pool": True})
    # the organization's default changes: the inheriting workspaces follow it, the other keeps its own
    api.patch(f"/api/v2/organizations/{new_org}", json=doc("organizations", **{"default-execution-mode": "remote"}))
    assert _mode(api, inheriting["id"])[0] == "remote" and _mode(api, own["id"])[0] == "remote"
    api.patch(f"/api/v2/organizations/{new_org}", json=doc("organizations", **{"default-execution-mode": "local"}))
    # setting a mode on the workspace overwrites the default; setting the flag false inherits again
    api.patch(f"/api/v2/workspaces/{inheriting['id']}", json=doc("workspaces", **{"execution-mode": "remote"}))
    assert _mode(api, inheriting["id"]) == ("remote", {"execution-mode": True, "agent-pool": False})
    api.patch(f"/api/v2/workspaces/{inheriting['id']}", json=doc("workspaces", **{
        "setting-overwrites": {"execution-mode": False}}))
    assert _mode(api, inheriting["id"])[0] == "local"


def test_an_organization_created_with_a_default_execution_mode(seeded_sandbox: Sandbox, api: Api):
    made = api.post("/api/v2/organizations", json=doc("organizations", name="wsconf-local-org",
                                                      email="ops@acme.example", **{"default-execution-mode": "local"}))
    assert made.status_code == 201 and made.json()["data"]["attributes"]["default-execution-mode"] == "local"
    mark = seeded_sandbox.log_mark()
    bad = api.post("/api/v2/organizations", json=doc("organizations", name="wsconf-bad-org",
                                                     email="ops@acme.example", **{"default-execution-mode": "cloud"}))
    assert bad.status_code == 422 and bad.json()["errors"][0]["source"]["pointer"].endswith("default-execution-mode")
    assert api.get("/api/v2/organizations/wsconf-bad-org").status_code == 404
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))


def test_bad_setting_overwrites_are_refused(api: Api, new_org: str):
    bad = api.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc(
        "workspaces", name="bad-overwrites", **{"setting-overwrites": {"execution-mode": "no"}}))
    assert bad.status_code == 422 and bad.json()["errors"][0]["source"]["pointer"].endswith("setting-overwrites")
    assert api.get(f"/api/v2/organizations/{new_org}/workspaces/bad-overwrites").status_code == 404
