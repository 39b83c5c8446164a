"""Team tokens do what their team's access allows, and no more (permissions.mdx "Fixed Permission Sets",
"Custom Workspace Permissions"; team-access.mdx; go-tfe `team_access.go`, `workspace.go` WorkspacePermissions).

Each refusal is checked to change nothing on the server (the request log's rows written). These fail on a
sandbox that lets any team token through (a read team could PATCH, create variables, create workspaces and
delete the workspace).
"""

from __future__ import annotations

from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import Sandbox


def _team_token(api: Api, org: str, name: str, ws_id: str, access: str, **custom) -> str:
    team = api.post(f"/api/v2/organizations/{org}/teams", json=doc("teams", name=name))
    assert team.status_code == 201, team.text
    team_id = team.json()["data"]["id"]
    granted = api.post("/api/v2/team-workspaces", json={"data": {"type": "team-workspaces",
                       "attributes": {"access": access, **custom},
                       "relationships": {"team": {"data": {"type": "teams", "id": team_id}},
                                         "workspace": {"data": {"type": "workspaces", "id": ws_id}}}}})
    assert granted.status_code == 201, granted.text
    token = api.post(f"/api/v2/teams/{team_id}/authentication-token", json={"data": {"type": "authentication-tokens"}})
    assert token.status_code == 201, token.text
    return token.json()["data"]["attributes"]["token"]


def _writes(sandbox: Sandbox, mark: int) -> int:
    return sum(r["changes"] for r in sandbox.request_log(since=mark))


def test_a_read_team_cannot_patch_create_variables_create_workspaces_or_delete(seeded_sandbox: Sandbox, api: Api,
                                                                               new_org: str):
    ws = create_workspace(api, new_org, "read-only-target")
    reader = Api(seeded_sandbox, _team_token(api, new_org, "readers", ws["id"], "read"))
    assert reader.get(f"/api/v2/workspaces/{ws['id']}").status_code == 200
    assert reader.get(f"/api/v2/workspaces/{ws['id']}/vars").status_code == 200
    mark = seeded_sandbox.log_mark()
    refused = [
        reader.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", description="mine now")),
        reader.post(f"/api/v2/workspaces/{ws['id']}/vars", json=doc("vars", key="x", value="1", category="env")),
        reader.post(f"/api/v2/organizations/{new_org}/workspaces", json=doc("workspaces", name="by-a-reader")),
        reader.post(f"/api/v2/workspaces/{ws['id']}/actions/safe-delete"),
        reader.post(f"/api/v2/workspaces/{ws['id']}/actions/lock"),
        reader.post("/api/v2/runs", json={"data": {"type": "runs", "relationships": {
            "workspace": {"data": {"type": "workspaces", "id": ws["id"]}}}}}),
    ]
    assert [r.status_code for r in refused] == [404] * 6, [r.text for r in refused]
    deleted = reader.delete(f"/api/v2/workspaces/{ws['id']}")
    assert deleted.status_code == 403 and "force delete" in deleted.text
    assert _writes(seeded_sandbox, mark) == 0
    assert api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["description"] != "mine now"
    # the workspace answers what the caller may do
    can = reader.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["attributes"]["permissions"]
    assert can["can-update"] is False and can["can-read-variable"] is True and can["can-queue-run"] is False


def test_write_and_admin_and_custom_teams_get_what_their_level_grants(seeded_sandbox: Sandbox, api: Api,
                                                                      new_org: str):
    ws = create_workspace(api, new_org, "graded")
    writer = Api(seeded_sandbox, _team_token(api, new_org, "writers", ws["id"], "write"))
    assert writer.post(f"/api/v2/workspaces/{ws['id']}/vars",
                       json=doc("vars", key="x", value="1", category="env")).status_code == 201
    assert writer.post(f"/api/v2/workspaces/{ws['id']}/actions/lock").status_code == 200
    assert writer.post(f"/api/v2/workspaces/{ws['id']}/actions/unlock").status_code == 200
    assert writer.patch(f"/api/v2/workspaces/{ws['id']}",
                        json=doc("workspaces", description="no")).status_code == 404  # settings are admin's
    admin = Api(seeded_sandbox, _team_token(api, new_org, "admins", ws["id"], "admin"))
    assert admin.patch(f"/api/v2/workspaces/{ws['id']}", json=doc("workspaces", description="yes")).status_code == 200
    custom = Api(seeded_sandbox, _team_token(api, new_org, "lockers", ws["id"], "custom",
                                             **{"workspace-locking": True, "variables": "none"}))
    assert custom.post(f"/api/v2/workspaces/{ws['id']}/actions/lock").status_code == 200
    assert custom.post(f"/api/v2/workspaces/{ws['id']}/actions/unlock").status_code == 200
    assert custom.get(f"/api/v2/workspaces/{ws['id']}/vars").status_code == 404
    # a fixed level answers the permissions it stands for (team-access.mdx sample responses)
    rows = api.get(f"/api/v2/team-workspaces?filter[workspace][id]={ws['id']}").json()["data"]
    by_access = {r["attributes"]["access"]: r["attributes"] for r in rows}
    assert by_access["write"]["runs"] == "apply" and by_access["write"]["state-versions"] == "write"
    assert by_access["custom"]["workspace-locking"] is True and by_access["custom"]["runs"] == "read"
    # custom permissions only with access custom
    bad = api.patch(f"/api/v2/team-workspaces/{rows[0]['id']}",
                    json=doc("team-workspaces", access="read", runs="apply"))
    assert bad.status_code == 422 and "custom" in bad.text


def test_an_expired_team_token_is_refused(seeded_sandbox: Sandbox, api: Api, new_org: str):
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="temporary")).json()["data"]
    made = api.post(f"/api/v2/teams/{team['id']}/authentication-token",
                    json=doc("authentication-tokens", **{"expired-at": "2001-01-01T00:00:00Z"}))
    assert made.status_code == 201 and made.json()["data"]["attributes"]["expired-at"].startswith("2001-01-01")
    assert Api(seeded_sandbox, made.json()["data"]["attributes"]["token"]).get(
        f"/api/v2/organizations/{new_org}").status_code == 401


def test_a_number_of_more_than_4300_digits_is_a_400(seeded_sandbox: Sandbox, api: Api, new_org: str):
    mark = seeded_sandbox.log_mark()
    body = '{"data": {"type": "workspaces", "attributes": {"name": "x", "description": ' + "9" * 5000 + "}}}"
    answer = api.post(f"/api/v2/organizations/{new_org}/workspaces", data=body)
    assert answer.status_code == 400 and "number" in answer.json()["errors"][0]["detail"]
    assert _writes(seeded_sandbox, mark) == 0


def test_a_team_token_body_without_a_type_is_taken_and_a_wrong_type_is_not(seeded_sandbox: Sandbox, api: Api,
                                                                          new_org: str):
    # go-tfe `team_token.go` TeamTokenCreateOptions carries no JSON:API type: its body says `"type": ""`
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="typeless")).json()["data"]
    made = api.post(f"/api/v2/teams/{team['id']}/authentication-token", json={"data": {"type": "", "attributes": {}}})
    assert made.status_code == 201, made.text
    wrong = api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=doc("workspaces"))
    assert wrong.status_code == 409
    assert Api(seeded_sandbox, made.json()["data"]["attributes"]["token"]).get(
        f"/api/v2/organizations/{new_org}").status_code == 200
