"""Teams on the wire: legacy teams (shown only in the legacy UI), new teams, team membership and team access."""

from __future__ import annotations

import pytest
import requests
from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.rehearsal import LegacyUi
from runbook_lib.sandbox import Sandbox


def _assert_no_writes(sandbox: Sandbox, mark: int) -> None:
    rows = sandbox.request_log(since=mark)
    assert rows and all(r["changes"] == 0 for r in rows), rows


def _users(*names: str) -> dict:
    return {"data": [{"type": "users", "id": n} for n in names]}


def _access_doc(team_id: str, ws_id: str, access: str) -> dict:
    return {"data": {"type": "team-workspaces", "attributes": {"access": access}, "relationships": {
        "team": {"data": {"type": "teams", "id": team_id}},
        "workspace": {"data": {"type": "workspaces", "id": ws_id}}}}}


def test_seeded_legacy_teams(seeded_sandbox: Sandbox, legacy: Api):
    """The legacy API has no teams endpoint (the operator copies them from the settings page into the mapping)."""
    store = seeded_sandbox.store
    app = store.legacy_environment_teams(store.find_environment("acme-legacy", "app-prod")["id"])
    assert [{k: t[k] for k in ("name", "access", "members")} for t in app] == [
        {"name": "auditors", "access": "read", "members": ["carol", "dave"]},
        {"name": "developers", "access": "write", "members": ["alice", "bob"]}]
    network = store.legacy_environment_teams(store.find_environment("acme-legacy", "network-prod")["id"])
    assert {t["name"]: t["access"] for t in network} == {"auditors": "read", "platform": "admin"}
    page = LegacyUi.for_sandbox(seeded_sandbox).page("acme-legacy", "app-prod", "settings")
    assert "<td>auditors</td><td>read</td><td>carol, dave</td>" in page
    assert "<td>developers</td><td>write</td><td>alice, bob</td>" in page
    # dave is an account of the legacy product only; the others exist on the new host
    assert store.find_user("dave") is None and all(store.find_user(u) for u in ("alice", "bob", "carol"))
    assert legacy.get("/api/v1/environments/acme-legacy/app-prod/teams").status_code == 404  # not documented
    outsider = LegacyUi(seeded_sandbox.legacy_address, "outsider", seeded_sandbox.outsider_token,
                        seeded_sandbox.ca_file)
    with pytest.raises(requests.HTTPError, match="404"):
        outsider.page("acme-legacy", "app-prod", "settings")


def test_create_list_show_and_filter_teams(seeded_sandbox: Sandbox, api: Api, new_org: str):
    created = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="developers"))
    assert created.status_code == 201, created.text
    team = created.json()["data"]
    assert team["type"] == "teams" and team["attributes"]["name"] == "developers"
    assert team["attributes"]["users-count"] == 0 and team["relationships"]["users"]["data"] == []
    listed = api.get(f"/api/v2/organizations/{new_org}/teams").json()["data"]
    # every organization has its owners team, holding the owner
    assert [t["attributes"]["name"] for t in listed] == ["developers", "owners"]
    owners = next(t for t in listed if t["attributes"]["name"] == "owners")
    assert owners["attributes"]["users-count"] == 1 and owners["attributes"]["permissions"]["can-destroy"] is False
    only = api.get(f"/api/v2/organizations/{new_org}/teams", params={"filter[names]": "developers"}).json()["data"]
    assert [t["id"] for t in only] == [team["id"]]
    found = api.get(f"/api/v2/organizations/{new_org}/teams", params={"q": "DEVEL"}).json()["data"]
    assert [t["id"] for t in found] == [team["id"]]
    shown = api.get(f"/api/v2/teams/{team['id']}").json()["data"]
    assert shown["id"] == team["id"]
    assert api.get(f"/api/v2/teams/{team['id']}", params={"include": "workspaces"}).status_code == 400
    assert api.delete(f"/api/v2/teams/{owners['id']}").status_code == 403


def test_bad_team_requests_change_nothing(seeded_sandbox: Sandbox, api: Api, new_org: str):
    assert api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="ops")).status_code == 201
    mark = seeded_sandbox.log_mark()
    for name, detail in (("ops", "already been taken"), ("release.managers", "Name is invalid"), ("", "blank")):
        answer = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name=name))
        assert answer.status_code == 422 and detail in answer.json()["errors"][0]["detail"], answer.text
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token)
    assert outsider.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="x")).status_code == 404
    assert outsider.get(f"/api/v2/organizations/{new_org}/teams").status_code == 404
    _assert_no_writes(seeded_sandbox, mark)


def test_a_team_update_keeps_every_attribute_and_refuses_a_name_the_docs_forbid(seeded_sandbox: Sandbox, api: Api,
                                                                                 new_org: str):
    # teams.mdx "Update a Team"; go-tfe `team_integration_test.go` TestTeamsUpdate "with valid options" sends the
    # same attributes with the name "foo bar", which teams.mdx forbids (docs/sandbox-behaviour.md argues it)
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="renamed-later", **{
        "organization-access": {"manage-policies": True, "manage-modules": True}})).json()["data"]
    wanted = {"name": "foo-bar", "visibility": "organization", "allow-member-token-management": True,
              "sso-team-id": "idp-group-7",
              "organization-access": {"manage-policies": False, "manage-vcs-settings": True,
                                      "manage-policy-overrides": True, "manage-providers": True,
                                      "manage-modules": False}}
    updated = api.patch(f"/api/v2/teams/{team['id']}", json=doc("teams", **wanted))
    assert updated.status_code == 200, updated.text
    for answer in (updated.json()["data"], api.get(f"/api/v2/teams/{team['id']}").json()["data"]):
        attrs = answer["attributes"]
        assert {k: attrs[k] for k in ("name", "visibility", "allow-member-token-management", "sso-team-id")} == {
            k: wanted[k] for k in ("name", "visibility", "allow-member-token-management", "sso-team-id")}
        assert {k: attrs["organization-access"][k] for k in wanted["organization-access"]} == \
            wanted["organization-access"]
    mark = seeded_sandbox.log_mark()
    spaced = api.patch(f"/api/v2/teams/{team['id']}", json=doc("teams", name="foo bar"))
    assert spaced.status_code == 422 and "Name is invalid" in spaced.text
    _assert_no_writes(seeded_sandbox, mark)


def test_team_membership_by_username(seeded_sandbox: Sandbox, api: Api, new_org: str):
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="auditors")).json()["data"]
    path = f"/api/v2/teams/{team['id']}/relationships/users"
    mark = seeded_sandbox.log_mark()
    # dave has no account: the whole request is refused and nobody is added
    assert api.post(path, json=_users("carol", "dave")).status_code == 404
    _assert_no_writes(seeded_sandbox, mark)
    assert api.post(path, json=_users("carol", "alice")).status_code == 204
    assert api.post(path, json=_users("carol")).status_code == 204  # adding again changes nothing
    shown = api.get(f"/api/v2/teams/{team['id']}", params={"include": "users"}).json()
    assert shown["data"]["attributes"]["users-count"] == 2
    assert sorted(u["attributes"]["username"] for u in shown["included"]) == ["alice", "carol"]
    assert api.request("DELETE", path, json=_users("alice")).status_code == 204
    shown = api.get(f"/api/v2/teams/{team['id']}", params={"include": "users"}).json()
    assert [u["attributes"]["username"] for u in shown["included"]] == ["carol"]
    # a member of a team belongs to the organization (and sees its teams)
    carol = seeded_sandbox.store.find_user("carol")
    assert seeded_sandbox.store.is_owner(new_org, carol["id"]) is False
    assert seeded_sandbox.store.get_team(team["id"], carol)["name"] == "auditors"
    assert api.post(path, json={"data": [{"type": "teams", "id": "x"}]}).status_code == 422


def test_team_access_lifecycle(seeded_sandbox: Sandbox, api: Api, new_org: str):
    ws = create_workspace(api, new_org, "app-prod")
    team = api.post(f"/api/v2/organizations/{new_org}/teams", json=doc("teams", name="developers")).json()["data"]
    created = api.post("/api/v2/team-workspaces", json=_access_doc(team["id"], ws["id"], "write"))
    assert created.status_code == 201, created.text
    access = created.json()["data"]
    assert access["type"] == "team-workspaces" and access["attributes"]["access"] == "write"
    assert access["relationships"]["team"]["data"] == {"id": team["id"], "type": "teams"}
    assert access["relationships"]["workspace"]["data"] == {"id": ws["id"], "type": "workspaces"}
    listed = api.get("/api/v2/team-workspaces", params={"filter[workspace][id]": ws["id"]}).json()["data"]
    assert [a["id"] for a in listed] == [access["id"]]
    assert api.get(f"/api/v2/team-workspaces/{access['id']}").json()["data"]["attributes"]["access"] == "write"
    updated = api.patch(f"/api/v2/team-workspaces/{access['id']}",
                        json={"data": {"type": "team-workspaces", "attributes": {"access": "admin"}}})
    assert updated.status_code == 200 and updated.json()["data"]["attributes"]["access"] == "admin"
    mark = seeded_sandbox.log_mark()
    assert api.post("/api/v2/team-workspaces", json=_access_doc(team["id"], ws["id"], "read")).status_code == 422
    assert api.post("/api/v2/team-workspaces", json=_access_doc(team["id"], ws["id"], "owner")).status_code == 422
    assert api.get("/api/v2/team-workspaces").status_code == 400
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token)
    assert outsider.get(f"/api/v2/team-workspaces/{access['id']}").status_code == 404
    assert outsider.delete(f"/api/v2/team-workspaces/{access['id']}").status_code == 404
    _assert_no_writes(seeded_sandbox, mark)
    assert api.delete(f"/api/v2/team-workspaces/{access['id']}").status_code == 204
    assert api.get("/api/v2/team-workspaces", params={"filter[workspace][id]": ws["id"]}).json()["data"] == []
    assert api.get(f"/api/v2/team-workspaces/{access['id']}").status_code == 404


# --- the host's own import: a workspace created with migration-environment ---------------------------------

def _import(api: Api, org: str, name: str, source: str):
    return api.post(f"/api/v2/organizations/{org}/workspaces",
                    json=doc("workspaces", name=name, **{"migration-environment": source}))


def test_native_import_copies_variables_teams_access_state_and_settings(seeded_sandbox: Sandbox, api: Api,
                                                                        legacy: Api, new_org: str):
    created = _import(api, new_org, "dns-prod", "acme-legacy/dns-prod")
    assert created.status_code == 201, created.text
    ws = created.json()["data"]
    assert ws["attributes"]["migration-environment"] == "acme-legacy/dns-prod"
    variables = {(v["attributes"]["category"], v["attributes"]["key"]): v["attributes"]
                 for v in api.get(f"/api/v2/workspaces/{ws['id']}/vars").json()["data"]}
    assert set(variables) == {("terraform", "environment"), ("terraform", "zone"), ("terraform", "dns_api_key"),
                              ("env", "DNS_PROVIDER_TOKEN")}
    assert variables[("terraform", "dns_api_key")]["sensitive"] is True
    assert variables[("terraform", "dns_api_key")]["value"] is None  # write-only, as every sensitive value
    # the host holds the sensitive value and copied it
    stored = seeded_sandbox.store._one("SELECT value FROM vars WHERE workspace_id = ? AND key = 'dns_api_key'",
                                       (ws["id"],))
    assert stored["value"] == "dns-api-key-0123456789"
    access = api.get("/api/v2/team-workspaces", params={"filter[workspace][id]": ws["id"]}).json()["data"]
    assert [a["attributes"]["access"] for a in access] == ["read"]
    team = api.get(f"/api/v2/teams/{access[0]['relationships']['team']['data']['id']}",
                   params={"include": "users"}).json()
    assert team["data"]["attributes"]["name"] == "auditors"
    assert [u["attributes"]["username"] for u in team["included"]] == ["carol"]  # dave has no account
    sv = api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]
    state = api.get(sv["attributes"]["hosted-state-download-url"]).content
    assert state == legacy.get("/api/v1/terraform/state/acme-legacy/dns-prod").content


def test_native_import_settings_and_refusals(seeded_sandbox: Sandbox, api: Api, new_org: str):
    created = _import(api, new_org, "network-prod", "acme-legacy/network-prod")
    assert created.json()["data"]["attributes"]["working-directory"] == "network/prod"
    store = seeded_sandbox.store
    # an owner of the new organization who is not an owner of the legacy one is refused
    colleague = store.create_user("import-colleague", "ic@acme.example")
    token = store.create_token(colleague["id"], "import-colleague-token")
    with store.tx():
        store.add_org_member(new_org, colleague["id"], "owners")
        store.add_legacy_member("acme-legacy", colleague["id"], "write")
    mark = seeded_sandbox.log_mark()
    refused = _import(Api(seeded_sandbox, token), new_org, "web-prod", "acme-legacy/web.prod")
    assert refused.status_code == 422 and "owners team in both" in refused.json()["errors"][0]["detail"]
    # the outsider owns its new organization but not the legacy one
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token)
    assert _import(outsider, "outsider-corp", "stolen", "acme-legacy/web.prod").status_code == 422
    for source, detail in (("acme-legacy/nope", "not found"), ("no-slash", "must look like")):
        answer = _import(api, new_org, "x", source)
        assert answer.status_code == 422 and detail in answer.json()["errors"][0]["detail"]
    rows = seeded_sandbox.request_log(since=mark)
    assert rows and all(r["changes"] == 0 for r in rows)
    assert api.get(f"/api/v2/organizations/{new_org}/workspaces/web-prod").status_code == 404
