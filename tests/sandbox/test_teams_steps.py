"""Step 2 carries the legacy teams over: created or adopted by name, members with an account, the same access.

Which teams an environment had is the operator's word: the mapping's `teams` column (the legacy API never showed
teams; the operator copies them off the environment's settings page). `write_operator_mapping` writes the seed's.
"""

from __future__ import annotations

import pytest
from sandbox_fixtures import write_operator_mapping
from sandbox_helpers import Api, doc, step_context

from runbook_lib.catalog import step_parameters
from runbook_lib.context import StepContext
from runbook_lib.errors import StepError
from runbook_lib.sandbox import Sandbox
from runbook_lib.steps import organization, workspaces


_ctx = step_context


def _org_ready(tmp_path, rehearsal, org):
    organization.apply(_ctx(tmp_path, "01_create_organization", "app-prod", org, **rehearsal))


def _changes(sandbox: Sandbox, mark: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.request_log(since=mark) if r["changes"]]


def _team_state(api: Api, org: str, ws_name: str) -> dict:
    ws = api.get(f"/api/v2/organizations/{org}/workspaces/{ws_name}").json()["data"]
    access = api.get("/api/v2/team-workspaces", params={"filter[workspace][id]": ws["id"]}).json()["data"]
    out = {}
    for a in access:
        team_id = a["relationships"]["team"]["data"]["id"]
        team = api.get(f"/api/v2/teams/{team_id}", params={"include": "users"}).json()
        members = sorted(u["attributes"]["username"] for u in team.get("included", []))
        out[team["data"]["attributes"]["name"]] = (a["attributes"]["access"], members)
    return out


def test_teams_created_with_members_and_access_then_idempotent(tmp_path, rehearsal, seeded_sandbox, new_org):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["app-prod", "network-prod"], new_org=new_org)
    _org_ready(tmp_path, rehearsal, new_org)
    ctx = _ctx(tmp_path, "02_create_workspaces", "app-prod", new_org, mode="plan", **rehearsal)
    plan = workspaces.plan(ctx)
    teams = plan[plan["object"] == "team"].set_index("name")
    assert dict(teams["action"]) == {"auditors": "create", "developers": "create"}
    assert "carol, dave" in teams.loc["auditors", "detail"]
    access = plan[plan["object"] == "team access"]
    assert sorted(access["detail"]) == ["grant read", "grant write"]

    ctx = _ctx(tmp_path, "02_create_workspaces", "app-prod", new_org, **rehearsal, accept_empty_sensitive=True)
    done = workspaces.apply(ctx)
    results = " | ".join(done["result"])
    assert "no account on the new host (invite them yourself): dave" in results
    assert "granted read" in results and "granted write" in results
    verdict = workspaces.verify(ctx)
    assert verdict.passed, verdict.summary
    assert verdict.evidence["teams"]["auditors"] == {"access": "read", "members": ["carol"], "not_members": ["dave"]}
    api = Api(seeded_sandbox)
    assert _team_state(api, new_org, "app-prod") == {"auditors": ("read", ["carol"]),
                                                     "developers": ("write", ["alice", "bob"])}
    # again: everything is adopted, nothing is written (dave is still listed, never invented)
    mark = seeded_sandbox.log_mark()
    again = workspaces.apply(_ctx(tmp_path, "02_create_workspaces", "app-prod", new_org, **rehearsal,
                                  accept_empty_sensitive=True))
    assert _changes(seeded_sandbox, mark) == []
    assert set(again.loc[again["object"] == "team", "result"]) == {"adopted"}

    # a second environment adopts the teams that exist and creates the one that does not
    ctx = _ctx(tmp_path, "02_create_workspaces", "network-prod", new_org, **rehearsal)
    plan = workspaces.plan(ctx)
    assert dict(plan[plan["object"] == "team"].set_index("name")["action"]) == {"auditors": "adopt",
                                                                                "platform": "create"}
    workspaces.apply(ctx)
    assert workspaces.verify(ctx).passed
    assert _team_state(api, new_org, "network-prod") == {"auditors": ("read", ["carol"]),
                                                         "platform": ("admin", ["alice", "operator"])}


def _existing_team(api: Api, org: str, name: str, *members: str) -> str:
    team = api.post(f"/api/v2/organizations/{org}/teams", json=doc("teams", name=name)).json()["data"]
    if members:
        answer = api.post(f"/api/v2/teams/{team['id']}/relationships/users",
                          json={"data": [{"type": "users", "id": m} for m in members]})
        assert answer.status_code == 204
    return team["id"]


def test_existing_team_with_other_members_is_a_diff_changed_only_when_asked(tmp_path, rehearsal, seeded_sandbox,
                                                                           new_org):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["web.prod"], new_org=new_org)
    _org_ready(tmp_path, rehearsal, new_org)
    api = Api(seeded_sandbox)
    _existing_team(api, new_org, "developers", "carol", "alice")
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal)
    mark = seeded_sandbox.log_mark()
    plan = workspaces.plan(ctx)
    row = plan[plan["object"] == "team"].iloc[0]
    assert row["action"] == "refuse" and "lacks legacy members bob" in row["detail"]
    assert "did not have: carol" in row["detail"]
    with pytest.raises(StepError, match="team developers.*carol.*existing_team_members"):
        workspaces.apply(ctx)
    assert _changes(seeded_sandbox, mark) == []  # refused before the workspace was created

    # "keep": access granted to the team as it is, members untouched
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal, existing_team_members="keep")
    workspaces.apply(ctx)
    assert workspaces.verify(ctx).passed
    assert _team_state(api, new_org, "web-prod") == {"developers": ("write", ["alice", "carol"])}
    # "add": the legacy members it lacks are added; nobody is removed
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal, existing_team_members="add")
    done = workspaces.apply(ctx)
    assert "added bob" in " | ".join(done["result"])
    assert _team_state(api, new_org, "web-prod") == {"developers": ("write", ["alice", "bob", "carol"])}


def test_other_access_level_is_refused_and_verify_reads_access_back(tmp_path, rehearsal, seeded_sandbox, new_org):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["cache-staging"], new_org=new_org)
    _org_ready(tmp_path, rehearsal, new_org)
    api = Api(seeded_sandbox)
    ctx = _ctx(tmp_path, "02_create_workspaces", "cache-staging", new_org, **rehearsal, migrate_teams=False)
    workspaces.apply(ctx)
    ws = api.get(f"/api/v2/organizations/{new_org}/workspaces/cache-staging").json()["data"]
    team_id = _existing_team(api, new_org, "developers", "alice", "bob")
    # without the teams, verify fails (reads the access back) once teams are asked for
    ctx = _ctx(tmp_path, "02_create_workspaces", "cache-staging", new_org, **rehearsal)
    failed = workspaces.verify(ctx)
    assert not failed.passed and "team developers has no access, the legacy level is write" in failed.summary
    created = api.post("/api/v2/team-workspaces", json={"data": {
        "type": "team-workspaces", "attributes": {"access": "read"}, "relationships": {
            "team": {"data": {"type": "teams", "id": team_id}}, "workspace": {"data": {"type": "workspaces",
                                                                                       "id": ws["id"]}}}}})
    assert created.status_code == 201
    # a new context: in a batch a step's reads are reused, and this change came from outside it
    ctx = _ctx(tmp_path, "02_create_workspaces", "cache-staging", new_org, **rehearsal)
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match="already has 'read'.*legacy level is 'write'"):
        workspaces.apply(ctx)
    assert _changes(seeded_sandbox, mark) == []


def test_inventory_lists_teams_and_the_mapping_says_what_step_2_does(tmp_path, rehearsal, seeded_sandbox, new_org):
    from dataclasses import replace

    from runbook_lib import inventory
    from runbook_lib.legacy import LegacyClient
    from runbook_lib.mapping import UNKNOWN, propose
    from runbook_lib.rehearsal import operator_rows
    from runbook_lib.settings import Settings
    from runbook_lib.tfe import TfeClient

    settings = Settings.from_env()
    legacy, tfe = LegacyClient(settings, read_only=True), TfeClient(settings, read_only=True)
    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ["app-prod", "network-prod"], new_org))
    envs = inventory.legacy_environments(legacy, "acme-legacy", rows)
    assert list(envs["teams"]) == ["developers:write[alice,bob]; auditors:read[carol,dave]",
                                   "platform:admin[operator,alice]; auditors:read[carol,dave]"]
    assert all("mapping: " in s and "teams" in s.split("mapping: ")[1] for s in envs["sources"])  # the operator's
    _existing_team(Api(seeded_sandbox), new_org, "platform", "alice", "operator")
    frame = inventory.mapping_frame(rows, envs, tfe)
    assert list(frame["teams"]) == ["developers (write): create; auditors (read): create",
                                    "platform (admin): adopt; auditors (read): create"]  # in the mapping's order
    # an organization step 1 has not created yet: every team would be created
    later = inventory.mapping_frame([replace(rows[0], new_org="not-created-yet")], envs, tfe)
    assert later["teams"].iloc[0] == "developers (write): create; auditors (read): create"
    # the survey's own rows: nothing says which teams there are, so the environment is not ready
    unknown = [replace(rows[0], teams=UNKNOWN)]
    unsaid = inventory.mapping_frame(unknown, inventory.legacy_environments(legacy, "acme-legacy", unknown), tfe)
    assert not unsaid["ready"].iloc[0] and "teams" in unsaid["reason"].iloc[0] and unsaid["teams"].iloc[0] == ""


def test_plan_before_the_organization_exists_creates_every_team(tmp_path, rehearsal, seeded_sandbox):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["app-prod"], new_org="org-not-created-yet")
    ctx = _ctx(tmp_path, "02_create_workspaces", "app-prod", "org-not-created-yet", mode="plan", **rehearsal)
    plan = workspaces.plan(ctx)
    assert dict(plan[plan["object"] == "team"].set_index("name")["action"]) == {"auditors": "create",
                                                                                "developers": "create"}


def test_invalid_team_name_is_refused_skip_teams_and_owners_are_left_alone(tmp_path, rehearsal, seeded_sandbox,
                                                                           new_org):
    import uuid

    from runbook_lib.sandbox.seed import _synthetic_state

    from runbook_lib.mapping import MappingRow, write_csv

    store = seeded_sandbox.store
    legacy_org = f"teams-legacy-{uuid.uuid4().hex[:6]}"  # an organization of its own: the shared estate stays as seeded
    operator = store.find_user("operator")
    with store.tx():
        store.create_legacy_org(legacy_org, "ops@acme.example")
        store.add_legacy_member(legacy_org, operator["id"], "admin")
        env = store.create_environment(legacy_org, "billing")
        store.put_legacy_state(env["id"], _synthetic_state(3))
        store.create_legacy_config_version(env["id"], {})
    # what the operator read off its settings page, with no repository and no hidden variables
    (tmp_path / "runs").mkdir(parents=True, exist_ok=True)
    write_csv([MappingRow(legacy_org, "billing", new_org, "billing", terraform_version="0.11.11", vcs_repo="",
                          vcs_branch="", working_directory="", sensitive_variables="", env_variables="",
                          teams="release.managers:write[alice]; owners:admin[operator]; finance:read[bob]")],
              tmp_path / "runs" / "mapping.csv")

    def ctx(mode="apply", **options):
        return StepContext.create(step="02_create_workspaces", legacy_org=legacy_org, legacy_env="billing",
                                  new_org=new_org, mode=mode, audit_root=str(tmp_path / "runs"), interactive=False,
                                  **step_parameters("02_create_workspaces", {**rehearsal, **options}))

    _org_ready(tmp_path, rehearsal, new_org)
    plan = workspaces.plan(ctx(mode="plan"))
    teams = plan[plan["object"] == "team"].set_index("name")
    assert dict(teams["action"]) == {"finance": "create", "owners": "none", "release.managers": "refuse"}
    assert "skip_teams" in teams.loc["release.managers", "detail"]
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match="team release.managers: team name 'release.managers' is invalid"):
        workspaces.apply(ctx())
    assert _changes(seeded_sandbox, mark) == []
    # left out by skip_teams: the rest goes ahead, and verify asks only for the teams carried over
    done = workspaces.apply(ctx(skip_teams="release.managers"))
    assert "granted read" in " | ".join(done["result"])
    verdict = workspaces.verify(ctx(skip_teams="release.managers"))
    assert verdict.passed and set(verdict.evidence["teams"]) == {"finance"}, verdict.summary
    assert _team_state(Api(seeded_sandbox), new_org, "billing") == {"finance": ("read", ["bob"])}
