"""Workspace behaviour that go-tfe's integration tests hold the sandbox to: execution modes inherited from
the organization (`setting-overwrites`), ordering on the current run, and tags."""

from __future__ import annotations

import time

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


def test_agent_mode_needs_a_pool_of_the_organization_and_runs_are_listed_by_pool(seeded_sandbox: Sandbox, api: Api,
                                                                                  new_org: str):
    # workspaces.mdx `agent-pool-id`; run.mdx `filter[agent_pool_names]`; go-tfe `run_integration_test.go`
    # ListForOrganization "with filter by agent pool"
    seeded_sandbox.run_settings(paused=True)
    pool = api.post(f"/api/v2/organizations/{new_org}/agent-pools", json=doc("agent-pools", name="pool-a"))
    assert pool.status_code == 201, pool.text
    pool_id = pool.json()["data"]["id"]
    mark = seeded_sandbox.log_mark()
    for attrs, needle in (({"execution-mode": "agent"}, "must be set"),
                          ({"execution-mode": "remote", "agent-pool-id": pool_id}, "only be set"),
                          ({"execution-mode": "agent", "agent-pool-id": "apool-nonesuch"}, "no agent pool")):
        refused = api.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc("workspaces", name="agents", **attrs))
        assert refused.status_code == 422 and needle in refused.text, refused.text
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))
    ws = create_workspace(api, new_org, "agents", **{"execution-mode": "agent", "agent-pool-id": pool_id})
    assert ws["relationships"]["agent-pool"]["data"]["id"] == pool_id
    other = create_workspace(api, new_org, "no-agents")
    for target in (ws, other):
        made = api.post("/api/v2/runs", json={"data": {"type": "runs", "relationships": {
            "workspace": {"data": {"type": "workspaces", "id": target["id"]}}}}})
        assert made.status_code == 201, made.text
    listed = api.get(f"/api/v2/organizations/{new_org}/runs", params={"filter[agent_pool_names]": "pool-a"}).json()
    assert [r["relationships"]["workspace"]["data"]["id"] for r in listed["data"]] == [ws["id"]]
    moved = api.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", **{"execution-mode": "remote"}))
    assert moved.status_code == 200 and moved.json()["data"]["relationships"]["agent-pool"]["data"] is None


def _names(api: Api, org: str, **query: str) -> list[str]:
    answer = api.get(f"/api/v2/organizations/{org}/workspaces", params=query)
    assert answer.status_code == 200, answer.text
    return [w["attributes"]["name"] for w in answer.json()["data"]]


def test_list_sorts_on_the_current_run_and_a_queued_run_is_not_current(seeded_sandbox: Sandbox, api: Api,
                                                                        new_org: str):
    store = seeded_sandbox.store
    ws = {name: create_workspace(api, new_org, name, **{"execution-mode": "remote"})
          for name in ("a-ws", "b-ws", "c-ws")}
    user = {"id": store.find_user("alice")["id"]} if store.find_user("alice") else None
    rows = {name: store.find_workspace(new_org, name) for name in ws}
    older = store.create_run(rows["c-ws"], user, cv_id=None, message="older", status="planned")
    time.sleep(0.01)
    newer = store.create_run(rows["a-ws"], user, cv_id=None, message="newer", status="planned")
    # a run in a locked workspace stays queued (pending): it is not the workspace's current run
    assert api.post(f"/api/v2/workspaces/{ws['b-ws']['id']}/actions/lock", json={}).status_code == 200
    queued = store.create_run(store.find_workspace(new_org, "b-ws"), user, cv_id=None, message="queued")
    assert _names(api, new_org) == ["a-ws", "b-ws", "c-ws"] == _names(api, new_org, sort="name")
    assert _names(api, new_org, sort="-name") == ["c-ws", "b-ws", "a-ws"]
    # ascending: oldest current run first, workspaces without one last; descending: the reverse
    assert _names(api, new_org, sort="current-run.created-at") == ["c-ws", "a-ws", "b-ws"]
    assert _names(api, new_org, sort="-current-run.created-at") == ["b-ws", "a-ws", "c-ws"]
    rel = {w["attributes"]["name"]: w["relationships"]["current-run"]["data"]
           for w in api.get(f"/api/v2/organizations/{new_org}/workspaces").json()["data"]}
    assert rel == {"a-ws": {"id": newer["id"], "type": "runs"}, "b-ws": None,
                   "c-ws": {"id": older["id"], "type": "runs"}}
    assert api.get(f"/api/v2/runs/{queued['id']}").json()["data"]["attributes"]["status"] == "pending"
    bad = api.get(f"/api/v2/organizations/{new_org}/workspaces", params={"sort": "size"})
    assert bad.status_code == 400 and "current-run.created-at" in bad.json()["errors"][0]["detail"]


def test_workspace_tags_are_added_listed_searched_and_removed(seeded_sandbox: Sandbox, api: Api, new_org: str):
    one = create_workspace(api, new_org, "tag-one")
    two = create_workspace(api, new_org, "tag-two")
    url = f"/api/v2/workspaces/{one['id']}/relationships/tags"

    def tags(name: str) -> dict:
        return {"data": [{"type": "tags", "attributes": {"name": name}}]}

    assert api.post(url, json={"data": [{"type": "tags", "attributes": {"name": "prod"}},
                                        {"type": "tags", "attributes": {"name": "network"}}]}).status_code == 204
    assert api.post(f"/api/v2/workspaces/{two['id']}/relationships/tags", json=tags("prod")).status_code == 204
    listed = api.get(url).json()["data"]
    assert [t["attributes"]["name"] for t in listed] == ["prod", "network"]
    assert all(t["type"] == "tags" and t["id"].startswith("tag-") for t in listed)
    assert _names(api, new_org, **{"search[tags]": "prod"}) == ["tag-one", "tag-two"]
    assert _names(api, new_org, **{"search[tags]": "prod,network"}) == ["tag-one"]
    assert _names(api, new_org, **{"search[exclude-tags]": "network"}) == ["tag-two"]
    # bad requests change nothing
    mark = seeded_sandbox.log_mark()
    assert api.post(url, json={"data": []}).status_code == 422
    assert api.post(url, json={"data": [{"type": "tags", "id": "tag-unknown"}]}).status_code == 404
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))
    # removing by id or by name
    network_id = next(t["id"] for t in listed if t["attributes"]["name"] == "network")
    assert api.delete(url, json={"data": [{"type": "tags", "id": network_id}]}).status_code == 204
    assert [t["attributes"]["name"] for t in api.get(url).json()["data"]] == ["prod"]
    assert api.delete(url, json=tags("prod")).status_code == 204
    assert api.get(url).json()["data"] == []
    assert api.get(f"/api/v2/workspaces/{one['id']}").json()["data"]["attributes"]["tag-names"] == []


def test_projects_hold_workspaces_and_filter_the_list(seeded_sandbox: Sandbox, api: Api, new_org: str):
    made = api.post(f"/api/v2/organizations/{new_org}/projects", json=doc("projects", name="network team"))
    assert made.status_code == 201
    project = made.json()["data"]
    assert api.get(f"/api/v2/projects/{project['id']}").json()["data"]["attributes"]["name"] == "network team"
    default = api.get(f"/api/v2/organizations/{new_org}").json()["data"]["relationships"]["default-project"]["data"]
    plain = create_workspace(api, new_org, "in-default")
    assert plain["relationships"]["project"]["data"] == {"id": default["id"], "type": "projects"}
    rel = {"project": {"data": {"type": "projects", "id": project["id"]}}}
    placed = api.post(f"/api/v2/organizations/{new_org}/workspaces", json={"data": {
        "type": "workspaces", "attributes": {"name": "in-project"}, "relationships": rel}})
    assert placed.status_code == 201
    assert placed.json()["data"]["relationships"]["project"]["data"]["id"] == project["id"]
    assert _names(api, new_org, **{"filter[project][id]": project["id"]}) == ["in-project"]
    assert "in-default" in _names(api, new_org, **{"filter[project][id]": default["id"]})
    # refusals change nothing: a taken or bad name, an unknown project, deleting a project with workspaces
    mark = seeded_sandbox.log_mark()
    assert api.post(f"/api/v2/organizations/{new_org}/projects",
                    json=doc("projects", name="network team")).status_code == 422
    assert api.post(f"/api/v2/organizations/{new_org}/projects", json=doc("projects", name="a/b")).status_code == 422
    assert api.post(f"/api/v2/organizations/{new_org}/workspaces", json={"data": {
        "type": "workspaces", "attributes": {"name": "nowhere"},
        "relationships": {"project": {"data": {"type": "projects", "id": "prj-unknown"}}}}}).status_code == 404
    held = api.delete(f"/api/v2/projects/{project['id']}")
    assert held.status_code == 409 and "delete them first" in held.json()["errors"][0]["detail"]
    assert api.delete(f"/api/v2/projects/{default['id']}").status_code == 409
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))
    # moved back to the default project, the project is empty and can go
    moved = api.patch(f"/api/v2/workspaces/{placed.json()['data']['id']}", json={"data": {
        "type": "workspaces", "relationships": {"project": {"data": {"type": "projects", "id": default["id"]}}}}})
    assert moved.status_code == 200
    assert api.delete(f"/api/v2/projects/{project['id']}").status_code == 204
    assert api.get(f"/api/v2/projects/{project['id']}").status_code == 404


def test_a_team_token_sees_its_teams_workspaces_and_its_lock_is_the_teams(seeded_sandbox: Sandbox, api: Api,
                                                                          new_org: str):
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="lockers")).json()["data"]
    mine = create_workspace(api, new_org, "team-visible")
    other = create_workspace(api, new_org, "team-hidden")
    access = {"data": {"type": "team-workspaces", "attributes": {"access": "admin"}, "relationships": {
        "team": {"data": {"type": "teams", "id": team["id"]}},
        "workspace": {"data": {"type": "workspaces", "id": mine["id"]}}}}}
    assert api.post("/api/v2/team-workspaces", json=access).status_code == 201
    made = api.post(f"/api/v2/teams/{team['id']}/authentication-token", json={"data": {
        "type": "authentication-tokens"}})
    assert made.status_code == 201
    value = made.json()["data"]["attributes"]["token"]
    assert value and api.get(f"/api/v2/teams/{team['id']}/authentication-token").json()[
        "data"]["attributes"]["token"] is None
    as_team = Api(seeded_sandbox, value)
    assert as_team.get(f"/api/v2/workspaces/{mine['id']}").status_code == 200
    assert as_team.get(f"/api/v2/workspaces/{other['id']}").status_code == 404
    assert [w["id"] for w in as_team.get(f"/api/v2/organizations/{new_org}/workspaces").json()["data"]] == [mine["id"]]
    # the team's lock: answered as the team's, refused to anyone else's unlock, released by the team
    locked = as_team.post(f"/api/v2/workspaces/{mine['id']}/actions/lock", json={})
    assert locked.status_code == 200
    assert locked.json()["data"]["relationships"]["locked-by"]["data"] == {"id": team["id"], "type": "teams"}
    refused = api.post(f"/api/v2/workspaces/{mine['id']}/actions/unlock", json={})
    assert refused.status_code == 409 and "is locked by Team lockers" in refused.json()["errors"][0]["detail"]
    assert as_team.post(f"/api/v2/workspaces/{mine['id']}/actions/unlock", json={}).status_code == 200
    # a new token replaces the old one; a deleted token stops working
    again = api.post(f"/api/v2/teams/{team['id']}/authentication-token", json={"data": {
        "type": "authentication-tokens"}}).json()["data"]["attributes"]["token"]
    assert as_team.get(f"/api/v2/workspaces/{mine['id']}").status_code == 401
    assert Api(seeded_sandbox, again).get(f"/api/v2/workspaces/{mine['id']}").status_code == 200
    assert api.delete(f"/api/v2/teams/{team['id']}/authentication-token").status_code == 204
    assert Api(seeded_sandbox, again).get(f"/api/v2/workspaces/{mine['id']}").status_code == 401
    assert api.get(f"/api/v2/teams/{team['id']}/authentication-token").status_code == 404
    assert value not in str(seeded_sandbox.request_log(since=0))
