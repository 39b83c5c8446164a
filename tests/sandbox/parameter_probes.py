"""The probes of `test_every_documented_parameter.py`: for each parameter the sandbox honours, what its API page
says it does, asserted on the wire (imported by name: tests/sandbox is on sys.path). A probe may hold several
keys of a route; the test runs it once per route."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from parameter_world import CONFIG, STATE, World, jdoc, rel, tarball, unique
from sandbox_helpers import Api, create_workspace
from vcs_helpers import Checkout, new_org_with_vcs, vcs_workspace, wait_run

Probe = Callable[[World, str], None]
PROBES: dict[tuple[str, str], Probe] = {}
_DONE: dict[tuple[Probe, str], BaseException | None] = {}


def probe(route_keys: str | tuple[str, ...], *keys: str) -> Callable[[Probe], Probe]:
    """Register a probe for `keys` of these routes (one probe may hold several keys: it runs once per route)."""
    def register(fn: Probe) -> Probe:
        for route in (route_keys,) if isinstance(route_keys, str) else route_keys:
            for key in keys:
                PROBES[(route, key)] = fn
        return fn
    return register


def _ok(answer: Any, *statuses: int) -> Any:
    assert answer.status_code in (statuses or (200, 201)), answer.text
    return answer.json() if answer.content else None


def _ids(answer: Any) -> list[str]:
    return [d["id"] for d in _ok(answer)["data"]]


ORG_ROUTES = ("POST /api/v2/organizations", "PATCH /api/v2/organizations/<org>")


@probe("GET /api/v2/organizations", "q", "q[email]", "q[name]")
def _org_search(w: World, route: str) -> None:
    tag = uuid.uuid4().hex[:6]
    made = {}
    for side in ("alpha", "beta"):
        name = f"q-{tag}-{side}"
        _ok(w.api.post("/api/v2/organizations", json=jdoc("organizations", {"name": name,
                                                                          "email": f"{side}-{tag}@mail.example"})))
        made[side] = name

    def names(**query: str) -> set[str]:
        return {o["attributes"]["name"] for o in _ok(w.api.get("/api/v2/organizations", params=query))["data"]}

    assert names(q=f"{tag}-ALPHA") == {made["alpha"]}  # by name, case-insensitive
    assert names(q=f"beta-{tag}@mail") == {made["beta"]}  # by email
    assert names(**{"q[name]": f"q-{tag}"}) == set(made.values())
    assert names(**{"q[name]": f"q-{tag}", "q[email]": f"alpha-{tag}"}) == {made["alpha"]}  # both must match
    assert names(q=f"{tag}-alpha", **{"q[name]": "beta"}) == {made["alpha"]}  # q takes precedence


@probe(ORG_ROUTES, "name", "email", "session-timeout", "session-remember", "cost-estimation-enabled",
       "default-execution-mode")
def _org_settings(w: World, route: str) -> None:
    wanted = {"email": "owners@acme.example", "session-timeout": 60, "session-remember": 120,
              "cost-estimation-enabled": True, "default-execution-mode": "local"}
    if route.startswith("POST"):
        name = unique("org")
        answer = _ok(w.api.post("/api/v2/organizations", json=jdoc("organizations", {"name": name, **wanted})))
    else:
        old, name = w.scratch_org(), unique("renamed")
        answer = _ok(w.api.patch(f"/api/v2/organizations/{old}", json=jdoc("organizations", {"name": name, **wanted})))
        assert w.api.get(f"/api/v2/organizations/{old}").status_code == 404
    for attrs in (answer["data"]["attributes"], _ok(w.api.get(f"/api/v2/organizations/{name}"))["data"]["attributes"]):
        assert attrs["name"] == name and {k: attrs[k] for k in wanted} == wanted
    # cost estimation is kept but no run is estimated: the site integration is off, as the entitlement set says
    assert _ok(w.api.get(f"/api/v2/organizations/{name}/entitlement-set"))["data"]["attributes"]["cost-estimation"] is False
    ws = create_workspace(w.api, name, "inherits", **{"setting-overwrites": {"execution-mode": False}})
    assert ws["attributes"]["execution-mode"] == "local"  # the default execution mode is what workspaces inherit


@probe(ORG_ROUTES, "allow-force-delete-workspaces")
def _org_force_delete(w: World, route: str) -> None:
    # organizations.mdx: "Whether workspace administrators can delete workspaces with resources under management.
    # If false, only organization owners may delete these workspaces."
    if route.startswith("POST"):
        org = unique("org")
        _ok(w.api.post("/api/v2/organizations", json=jdoc("organizations", {
            "name": org, "email": "ops@acme.example", "allow-force-delete-workspaces": False})))
    else:
        org = w.scratch_org()
    state = {**STATE, "resources": [{"mode": "managed", "type": "null_resource", "name": "x",
                                     "provider": "provider[\"registry.terraform.io/hashicorp/null\"]",
                                     "instances": [{"attributes": {"id": "1"}}]}]}
    team = _ok(w.api.post(f"/api/v2/organizations/{org}/teams", json=jdoc("teams", {"name": "admins"})))["data"]
    token = _ok(w.api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=jdoc("authentication-token")))
    admin = Api(w.sandbox, token["data"]["attributes"]["token"])
    ws_ids = []
    for name in ("managed-1", "managed-2"):
        ws = create_workspace(w.api, org, name)
        w.state_version(ws["id"], state)
        _ok(w.api.post("/api/v2/team-workspaces", json=jdoc("team-workspaces", {"access": "admin"}, {
            "team": rel("teams", team["id"]), "workspace": rel("workspaces", ws["id"])})))
        ws_ids.append(ws["id"])
    refused = admin.delete(f"/api/v2/workspaces/{ws_ids[0]}")
    assert refused.status_code == 403 and "allow-force-delete-workspaces" in refused.text
    answer = _ok(w.api.patch(f"/api/v2/organizations/{org}", json=jdoc("organizations", {
        "allow-force-delete-workspaces": True})))
    assert answer["data"]["attributes"]["allow-force-delete-workspaces"] is True
    assert admin.delete(f"/api/v2/workspaces/{ws_ids[1]}").status_code == 204


@probe("PATCH /api/v2/organizations/<org>", "default-agent-pool-id")
def _org_default_pool(w: World, route: str) -> None:
    org = w.scratch_org()
    pool = _ok(w.api.post(f"/api/v2/organizations/{org}/agent-pools", json=jdoc("agent-pools", {"name": "p"})))["data"]
    answer = _ok(w.api.patch(f"/api/v2/organizations/{org}", json=jdoc("organizations", {
        "default-execution-mode": "agent", "default-agent-pool-id": pool["id"]})))
    assert answer["data"]["relationships"]["default-agent-pool"]["data"]["id"] == pool["id"]
    ws = create_workspace(w.api, org, "inherits-pool", **{"setting-overwrites": {"execution-mode": False}})
    assert ws["relationships"]["agent-pool"]["data"]["id"] == pool["id"]
    bad = w.api.patch(f"/api/v2/organizations/{org}", json=jdoc("organizations", {
        "default-execution-mode": "remote", "default-agent-pool-id": pool["id"]}))
    assert bad.status_code == 422 and "agent" in bad.text


# --- runs lists -------------------------------------------------------------------------------------------------

RUN_LISTS = ("GET /api/v2/organizations/<org>/runs", "GET /api/v2/workspaces/<ws_id>/runs")


@dataclass
class RunSet:
    org: str
    ws: dict[str, Any]
    api_run: dict[str, Any]
    plan_only: dict[str, Any]
    vcs_run: dict[str, Any]
    sha: str
    pool_run: dict[str, Any]
    other_ws: dict[str, Any]


_RUNSET: list[RunSet] = []


def _runset(w: World) -> RunSet:
    """One organization's runs of every kind a list filter tells apart (the runner stays paused; statuses are
    moved by the store's own transition function)."""
    if _RUNSET:
        return _RUNSET[0]
    org, token_id = new_org_with_vcs(w.api)
    identifier = f"{org}/app"
    w.sandbox.create_repository(identifier)
    checkout = Checkout(w.sandbox, identifier, w.tmp / unique("checkout"))
    checkout.write("main.tf", 'resource "null_resource" "a" {}\n')
    checkout.push("first")
    ws = vcs_workspace(w.api, org, token_id, "lists", identifier, terraform_version="1.15.5")
    api_run = w.create_run(ws["id"], message="applied through the API")
    for status in ("planning", "planned", "confirmed", "applying", "applied"):
        w.store.transition_run(api_run["id"], status)
    plan_only = w.create_run(ws["id"], **{"plan-only": True, "message": "a speculative look"})
    for status in ("planning", "planned_and_finished"):
        w.store.transition_run(plan_only["id"], status)
    sha, _ = checkout.push("second: pushed by the committer")
    vcs_run = next(r for r in _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}/runs"))["data"]
                   if r["attributes"]["source"] == "tfe-configuration-version")
    pool = _ok(w.api.post(f"/api/v2/organizations/{org}/agent-pools", json=jdoc("agent-pools", {"name": "lists-pool"})))
    other = create_workspace(w.api, org, "on-agents", **{"execution-mode": "agent",
                                                         "agent-pool-id": pool["data"]["id"]})
    pool_run = w.create_run(other["id"], message="on an agent")
    _RUNSET.append(RunSet(org, ws, api_run, plan_only, vcs_run, sha, pool_run, other))
    return _RUNSET[0]


def _list(w: World, route: str, rs: RunSet, **query: str) -> list[str]:
    path = f"/api/v2/organizations/{rs.org}/runs" if route.startswith("GET /api/v2/organizations") \
        else f"/api/v2/workspaces/{rs.ws['id']}/runs"
    return _ids(w.api.get(path, params=query))


@probe(RUN_LISTS, "filter[operation]", "filter[status]", "filter[source]", "filter[status_group]",
       "filter[timeframe]")
def _run_filters(w: World, route: str) -> None:
    rs = _runset(w)
    # run.mdx "List Runs": by default plan_only runs are excluded; operations, statuses and sources select
    assert rs.plan_only["id"] not in _list(w, route, rs)
    assert _list(w, route, rs, **{"filter[operation]": "plan_only"}) == [rs.plan_only["id"]]
    assert _list(w, route, rs, **{"filter[status]": "applied"}) == [rs.api_run["id"]]
    assert set(_list(w, route, rs, **{"filter[source]": "tfe-configuration-version"})) == {rs.vcs_run["id"]}
    assert rs.api_run["id"] in _list(w, route, rs, **{"filter[status_group]": "final"})
    assert rs.api_run["id"] not in _list(w, route, rs, **{"filter[status_group]": "non_final"})
    assert rs.vcs_run["id"] in _list(w, route, rs, **{"filter[timeframe]": "year"})
    assert _list(w, route, rs, **{"filter[timeframe]": "2001"}) == []
    assert w.api.get(f"/api/v2/workspaces/{rs.ws['id']}/runs", params={"filter[timeframe]": "soon"}).status_code == 400


@probe(RUN_LISTS, "search[user]", "search[commit]", "search[basic]")
def _run_searches(w: World, route: str) -> None:
    rs = _runset(w)
    # the sender of a push is its head's committer (the sandbox's git host has no accounts)
    sender = w.api.get(f"/api/v2/configuration-versions/{rs.vcs_run['relationships']['configuration-version']['data']['id']}"
                       "/ingress-attributes").json()["data"]["attributes"]["sender-username"]
    assert sender == "Rehearsal"
    assert _list(w, route, rs, **{"search[user]": "rehearsal"}) == [rs.vcs_run["id"]]
    assert _list(w, route, rs, **{"search[user]": "somebody-else"}) == []
    assert _list(w, route, rs, **{"search[commit]": rs.sha[:10]}) == [rs.vcs_run["id"]]
    assert _list(w, route, rs, **{"search[basic]": "THROUGH THE API"}) == [rs.api_run["id"]]  # the message
    assert _list(w, route, rs, **{"search[basic]": rs.api_run["id"][-8:]}) == [rs.api_run["id"]]  # the id
    # search[commit] wins over search[basic] (run.mdx)
    assert _list(w, route, rs, **{"search[commit]": rs.sha[:10], "search[basic]": "through the API"}) == [
        rs.vcs_run["id"]]


@probe(RUN_LISTS, "filter[agent_pool_names]")
def _run_pools(w: World, route: str) -> None:
    rs = _runset(w)
    if route.startswith("GET /api/v2/organizations"):
        assert _list(w, route, rs, **{"filter[agent_pool_names]": "lists-pool"}) == [rs.pool_run["id"]]
    else:
        path = f"/api/v2/workspaces/{rs.other_ws['id']}/runs"
        assert _ids(w.api.get(path, params={"filter[agent_pool_names]": "lists-pool"})) == [rs.pool_run["id"]]
    assert _list(w, route, rs, **{"filter[agent_pool_names]": "no-such-pool"}) == []


@probe("GET /api/v2/organizations/<org>/runs", "filter[workspace_names]")
def _run_workspace_names(w: World, route: str) -> None:
    rs = _runset(w)
    assert _list(w, route, rs, **{"filter[workspace_names]": "on-agents"}) == [rs.pool_run["id"]]
    assert set(_list(w, route, rs, **{"filter[workspace_names]": "lists,on-agents"})) >= {
        rs.pool_run["id"], rs.api_run["id"]}


# --- projects, agent pools, VCS connections ---------------------------------------------------------------------

@probe("GET /api/v2/organizations/<org>/projects", "q", "filter[names]", "sort", "filter[permissions][create-workspace]",
       "filter[permissions][update]")
def _project_list(w: World, route: str) -> None:
    org = w.scratch_org()
    for name in ("Payments", "payroll", "Search"):
        _ok(w.api.post(f"/api/v2/organizations/{org}/projects", json=jdoc("projects", {"name": name})))

    def names(api: Api = w.api, **query: str) -> list[str]:
        return [p["attributes"]["name"] for p in _ok(api.get(f"/api/v2/organizations/{org}/projects",
                                                             params=query))["data"]]

    assert set(names(q="PAY")) == {"Payments", "payroll"}
    assert set(names(**{"filter[names]": "search,PAYROLL", "q": "pay"})) == {"payroll", "Search"}  # names win over q
    every = names()
    assert names(sort="name") == sorted(every) and names(sort="-name") == sorted(every, reverse=True)
    assert w.api.get(f"/api/v2/organizations/{org}/projects", params={"sort": "created-at"}).status_code == 400
    # permissions: a person (an owner) may do both; a team token only with the organization access that grants it
    assert len(names(**{"filter[permissions][update]": "true"})) == 4
    plain = _ok(w.api.post(f"/api/v2/organizations/{org}/teams", json=jdoc("teams", {"name": "plain"})))["data"]
    movers = _ok(w.api.post(f"/api/v2/organizations/{org}/teams", json=jdoc("teams", {
        "name": "movers", "organization-access": {"manage-workspaces": True}})))["data"]
    tokens = {}
    for team in (plain, movers):
        made = _ok(w.api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=jdoc("authentication-token")))
        tokens[team["attributes"]["name"]] = Api(w.sandbox, made["data"]["attributes"]["token"])
    assert names(tokens["plain"], **{"filter[permissions][create-workspace]": "true"}) == []
    assert len(names(tokens["movers"], **{"filter[permissions][create-workspace]": "true"})) == 4
    assert names(tokens["movers"], **{"filter[permissions][update]": "true"}) == []  # manage-projects would


@probe("POST /api/v2/organizations/<org>/projects", "name", "description")
def _project_create(w: World, route: str) -> None:
    name = unique("project")
    made = _ok(w.api.post(f"/api/v2/organizations/{w.org}/projects", json=jdoc("projects", {
        "name": name, "description": "the payments team's"})))["data"]
    shown = _ok(w.api.get(f"/api/v2/projects/{made['id']}"))["data"]["attributes"]
    assert (shown["name"], shown["description"]) == (name, "the payments team's")


@probe("POST /api/v2/organizations/<org>/agent-pools", "name")
def _pool_create(w: World, route: str) -> None:
    name = unique("pool")
    made = _ok(w.api.post(f"/api/v2/organizations/{w.org}/agent-pools", json=jdoc("agent-pools", {"name": name})))
    assert _ok(w.api.get(f"/api/v2/agent-pools/{made['data']['id']}"))["data"]["attributes"]["name"] == name


@probe("POST /api/v2/organizations/<org>/oauth-clients", "service-provider", "name", "http-url", "api-url",
       "oauth-token-string")
def _oauth_create(w: World, route: str) -> None:
    wanted = {"service-provider": "gitlab_enterprise_edition", "name": "acme gitlab",
              "http-url": "https://gitlab.acme.example", "api-url": "https://gitlab.acme.example/api/v4"}
    made = _ok(w.api.post(f"/api/v2/organizations/{w.org}/oauth-clients", json=jdoc("oauth-clients", {
        **wanted, "oauth-token-string": "glpat-probe-secret"})))["data"]
    shown = _ok(w.api.get(f"/api/v2/oauth-clients/{made['id']}?include=oauth_tokens"))
    assert {k: shown["data"]["attributes"][k] for k in wanted} == wanted
    tokens = shown["data"]["relationships"]["oauth-tokens"]["data"]
    assert len(tokens) == 1 and [i["id"] for i in shown["included"]] == [tokens[0]["id"]]
    assert "glpat-probe-secret" not in json.dumps(shown)  # the token string is write-only
    without = _ok(w.api.post(f"/api/v2/organizations/{w.org}/oauth-clients", json=jdoc("oauth-clients", wanted)))
    assert without["data"]["relationships"]["oauth-tokens"]["data"] == []


# --- workspaces ---------------------------------------------------------------------------------------------------

WS_CREATE = "POST /api/v2/organizations/<org>/workspaces"
WS_UPDATES = ("PATCH /api/v2/organizations/<org>/workspaces/<name>", "PATCH /api/v2/workspaces/<ws_id>")


def _ws_write(w: World, route: str, attrs: dict[str, Any], rels: dict[str, Any] | None = None,
              status: int = 0) -> Any:
    """Create a workspace with `attrs` (the create route) or create one and PATCH it (an update route)."""
    if route == WS_CREATE:
        answer = w.api.post(f"/api/v2/organizations/{w.org}/workspaces",
                            json=jdoc("workspaces", {"name": unique("ws"), **attrs}, rels))
    else:
        ws = w.scratch_ws()
        path = f"/api/v2/workspaces/{ws['id']}" if route.endswith("<ws_id>") else \
            f"/api/v2/organizations/{w.org}/workspaces/{ws['attributes']['name']}"
        answer = w.api.patch(path, json=jdoc("workspaces", attrs, rels))
    if status:
        assert answer.status_code == status, answer.text
        return answer
    return _ok(answer)["data"]


@probe((WS_CREATE, *WS_UPDATES), "name", "description", "auto-apply", "execution-mode", "file-triggers-enabled",
       "queue-all-runs", "speculative-enabled", "terraform-version", "trigger-prefixes", "working-directory",
       "setting-overwrites", "vcs-repo", "vcs-repo.identifier", "vcs-repo.branch", "vcs-repo.oauth-token-id",
       "relationships.project", "source-name", "source-url")
def _ws_settings(w: World, route: str) -> None:
    # what a workspace keeps is what it answers, on the write and on a read (what each setting does with runs
    # and pushes is held by test_vcs_runs.py, test_real_semantics.py and test_workspace_settings.py)
    project = _ok(w.api.post(f"/api/v2/organizations/{w.org}/projects", json=jdoc("projects", {
        "name": unique("project")})))["data"]
    wanted = {"name": unique("ws"), "description": "probe", "auto-apply": True, "execution-mode": "local",
              "file-triggers-enabled": False, "queue-all-runs": False, "speculative-enabled": False,
              "terraform-version": "1.15.5", "trigger-prefixes": ["/modules"], "working-directory": "app",
              "setting-overwrites": {"execution-mode": True, "agent-pool": True}}
    if route == WS_CREATE:
        wanted.update({"source-name": "probe", "source-url": "https://probe.example"})
    vcs = {"identifier": "acme/app", "branch": "main", "oauth-token-id": w.token_id}
    data = _ws_write(w, route, {**wanted, "vcs-repo": vcs}, {"project": rel("projects", project["id"])})
    for answer in (data, _ok(w.api.get(f"/api/v2/workspaces/{data['id']}"))["data"]):
        attrs = answer["attributes"]
        assert {k: attrs[k] for k in wanted} == wanted
        assert {k: attrs["vcs-repo"][k] for k in vcs} == vcs
        assert answer["relationships"]["project"]["data"]["id"] == project["id"]


@probe((WS_CREATE, *WS_UPDATES), "operations")
def _ws_operations(w: World, route: str) -> None:
    # workspaces.mdx `operations` (deprecated): "Whether to use remote execution mode"
    assert _ws_write(w, route, {"operations": False})["attributes"]["execution-mode"] == "local"
    assert _ws_write(w, route, {"operations": True})["attributes"]["execution-mode"] == "remote"


@probe((WS_CREATE, *WS_UPDATES), "agent-pool-id")
def _ws_agent_pool(w: World, route: str) -> None:
    data = _ws_write(w, route, {"execution-mode": "agent", "agent-pool-id": w.pool_id})
    assert data["relationships"]["agent-pool"]["data"]["id"] == w.pool_id
    assert "agent-pool-id" in _ws_write(w, route, {"execution-mode": "remote", "agent-pool-id": w.pool_id},
                                        status=422).text


@probe((WS_CREATE, *WS_UPDATES), "allow-destroy-plan")
def _ws_destroy_plans(w: World, route: str) -> None:
    # workspaces.mdx `allow-destroy-plan`: "Whether destroy plans can be queued on the workspace"
    data = _ws_write(w, route, {"allow-destroy-plan": False})
    assert data["attributes"]["allow-destroy-plan"] is False
    refused = w.api.post("/api/v2/runs", json=jdoc("runs", {"is-destroy": True}, {
        "workspace": rel("workspaces", data["id"])}))
    assert refused.status_code == 422 and "allow-destroy-plan" in refused.text
    assert w.api.post("/api/v2/runs", json=jdoc("runs", {}, {"workspace": rel("workspaces", data["id"])})).status_code \
        == 201


@probe((WS_CREATE, *WS_UPDATES), "auto-destroy-at")
def _ws_auto_destroy(w: World, route: str) -> None:
    # workspaces.mdx `auto-destroy-at`; settings/deletion.mdx: the run does not wait for approval
    later = _ws_write(w, route, {"auto-destroy-at": "2099-01-01T00:00:00Z"})
    assert later["attributes"]["auto-destroy-at"] == "2099-01-01T00:00:00Z"
    due = _ws_write(w, route, {"auto-destroy-at": "2001-01-01T00:00:00Z"})
    deadline = time.monotonic() + 10
    while not (runs := _ok(w.api.get(f"/api/v2/workspaces/{due['id']}/runs"))["data"]):
        assert time.monotonic() < deadline, "no destroy run was queued for a past auto-destroy-at"
        time.sleep(0.1)
    assert runs[0]["attributes"]["is-destroy"] is True and runs[0]["attributes"]["auto-apply"] is True
    assert _ok(w.api.get(f"/api/v2/workspaces/{later['id']}/runs"))["data"] == []
    assert "ISO 8601" in _ws_write(w, route, {"auto-destroy-at": "tomorrow"}, status=422).text


@probe((WS_CREATE, *WS_UPDATES), "trigger-patterns")
def _ws_trigger_patterns(w: World, route: str) -> None:
    # workspaces.mdx `trigger-patterns`: glob patterns of the files whose change starts a run
    data = _ws_write(w, route, {"trigger-patterns": ["/modules/**/*.tf"]})
    assert data["attributes"]["trigger-patterns"] == ["/modules/**/*.tf"]
    org, token_id = new_org_with_vcs(w.api)
    identifier = f"{org}/patterns"
    w.sandbox.create_repository(identifier)
    checkout = Checkout(w.sandbox, identifier, w.tmp / unique("patterns"))
    checkout.write("main.tf", 'resource "null_resource" "a" {}\n')
    checkout.push("first")
    ws = vcs_workspace(w.api, org, token_id, "patterned", identifier, terraform_version="1.15.5",
                       **{"file-triggers-enabled": True, "trigger-patterns": ["/modules/**/*.tf"]})
    checkout.write("README.md", "not a module\n")
    checkout.push("docs only")
    assert _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}/runs"))["data"] == []
    checkout.write("modules/net/deep/vpc.tf", "# a module\n")
    checkout.push("a module changed")
    assert len(_ok(w.api.get(f"/api/v2/workspaces/{ws['id']}/runs"))["data"]) == 1


@probe("GET /api/v2/organizations/<org>/workspaces", "search[name]", "search[tags]", "search[exclude-tags]",
       "search[wildcard-name]", "sort", "filter[project][id]", "filter[current-run][status]")
def _ws_list(w: World, route: str) -> None:
    org = w.scratch_org()
    project = _ok(w.api.post(f"/api/v2/organizations/{org}/projects", json=jdoc("projects", {"name": "p"})))["data"]
    made = {}
    for name, tags in (("alpha-prod", ["prod", "web"]), ("beta-prod", ["prod"]), ("alpha-dev", ["dev"])):
        made[name] = create_workspace(w.api, org, name, **{"tag-names": tags})
    w.api.patch(f"/api/v2/workspaces/{made['beta-prod']['id']}", json=jdoc("workspaces", {}, {
        "project": rel("projects", project["id"])}))
    run = w.create_run(made["alpha-dev"]["id"])
    w.store.transition_run(run["id"], "planning")

    def names(**query: str) -> list[str]:
        return [x["attributes"]["name"] for x in _ok(w.api.get(f"/api/v2/organizations/{org}/workspaces",
                                                               params=query))["data"]]

    assert names(**{"search[name]": "ALPHA"}) == ["alpha-dev", "alpha-prod"]
    assert names(**{"search[tags]": "prod,web"}) == ["alpha-prod"]
    assert names(**{"search[exclude-tags]": "prod"}) == ["alpha-dev"]
    assert names(**{"search[wildcard-name]": "*-prod"}) == ["alpha-prod", "beta-prod"]
    assert names(sort="-name") == ["beta-prod", "alpha-prod", "alpha-dev"]
    assert names(**{"filter[project][id]": project["id"]}) == ["beta-prod"]
    assert names(**{"filter[current-run][status]": "planning"}) == ["alpha-dev"]


@probe("POST /api/v2/workspaces/<ws_id>/actions/lock", "reason")
def _lock_reason(w: World, route: str) -> None:
    ws = w.scratch_ws()
    locked = _ok(w.api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={"reason": "migrating its state"}))
    assert locked["data"]["attributes"]["locked-reason"] == "migrating its state"


@probe(("POST /api/v2/workspaces/<ws_id>/relationships/tags", "DELETE /api/v2/workspaces/<ws_id>/relationships/tags"),
       "data[].id", "data[].attributes.name")
def _tags(w: World, route: str) -> None:
    ws = w.scratch_ws()
    path = f"/api/v2/workspaces/{ws['id']}/relationships/tags"
    _ok(w.api.post(path, json={"data": [{"type": "tags", "attributes": {"name": "payments"}},
                                        {"type": "tags", "attributes": {"name": "prod"}}]}), 204)
    listed = _ok(w.api.get(path))["data"]
    assert sorted(t["attributes"]["name"] for t in listed) == ["payments", "prod"]
    by_id = next(t["id"] for t in listed if t["attributes"]["name"] == "prod")
    other = w.scratch_ws()
    _ok(w.api.post(f"/api/v2/workspaces/{other['id']}/relationships/tags", json={"data": [{"type": "tags",
                                                                                          "id": by_id}]}), 204)
    assert [t["attributes"]["name"] for t in _ok(w.api.get(f"/api/v2/workspaces/{other['id']}/relationships/tags"))[
        "data"]] == ["prod"]
    _ok(w.api.delete(path, json={"data": [{"type": "tags", "id": by_id}]}), 204)
    _ok(w.api.delete(path, json={"data": [{"type": "tags", "attributes": {"name": "payments"}}]}), 204)
    assert _ok(w.api.get(path))["data"] == []


# --- variables, state versions, configuration versions ------------------------------------------------------------

VAR_ROUTES = ("POST /api/v2/workspaces/<ws_id>/vars", "PATCH /api/v2/workspaces/<ws_id>/vars/<var_id>")


@probe(VAR_ROUTES, "key", "value", "description", "category", "hcl", "sensitive")
def _vars(w: World, route: str) -> None:
    ws = w.scratch_ws()
    path = f"/api/v2/workspaces/{ws['id']}/vars"
    wanted = {"key": "replicas", "value": "[1, 2]", "description": "how many", "category": "terraform", "hcl": True}
    if route.startswith("POST"):
        var = _ok(w.api.post(path, json=jdoc("vars", {**wanted, "sensitive": False})))["data"]
    else:
        var = _ok(w.api.post(path, json=jdoc("vars", {"key": "x", "value": "1", "category": "env"})))["data"]
        var = _ok(w.api.patch(f"{path}/{var['id']}", json=jdoc("vars", {**wanted, "sensitive": False})))["data"]
    assert {k: var["attributes"][k] for k in wanted} == wanted
    shown = _ok(w.api.get(f"{path}/{var['id']}"))["data"]["attributes"]
    assert {k: shown[k] for k in wanted} == wanted
    # sensitive: written, never shown again; every update issues a new version-id, even one that changes no value
    hidden = _ok(w.api.patch(f"{path}/{var['id']}", json=jdoc("vars", {"sensitive": True})))["data"]["attributes"]
    assert hidden["sensitive"] is True and hidden["value"] is None
    again = _ok(w.api.patch(f"{path}/{var['id']}", json=jdoc("vars", {"description": "how many"})))["data"]
    assert again["attributes"]["version-id"] != hidden["version-id"] != var["attributes"]["version-id"]


@probe("POST /api/v2/workspaces/<ws_id>/state-versions", "serial", "md5", "state", "lineage", "json-state",
       "json-state-outputs", "relationships.run")
def _state_version_create(w: World, route: str) -> None:
    ws = w.scratch_ws()
    state = json.dumps({**STATE, "serial": 4}).encode()
    json_state = json.dumps({"format_version": "1.0", "values": {"outputs": {}}}).encode()
    outputs = json.dumps({"from-json": {"value": "given", "type": "string", "sensitive": False}}).encode()
    run = w.create_run(ws["id"])
    w.api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={})
    made = _ok(w.api.post(f"/api/v2/workspaces/{ws['id']}/state-versions", json=jdoc("state-versions", {
        "serial": 4, "md5": hashlib.md5(state).hexdigest(), "lineage": "probe-lineage",
        "state": base64.b64encode(state).decode(), "json-state": base64.b64encode(json_state).decode(),
        "json-state-outputs": base64.b64encode(outputs).decode()}, {"run": rel("runs", run["id"])})))["data"]
    attrs = made["attributes"]
    assert attrs["serial"] == 4 and made["relationships"]["run"]["data"]["id"] == run["id"]
    assert w.api.get(attrs["hosted-state-download-url"]).content == state
    assert w.api.get(attrs["hosted-json-state-download-url"]).content == json_state
    # json-state-outputs: "If provided, the workspace outputs populate immediately" from them
    names = [o["attributes"]["name"] for o in _ok(w.api.get(f"/api/v2/state-versions/{made['id']}/outputs"))["data"]]
    assert names == ["from-json"]
    # md5 must match the bytes; the lineage is kept to refuse a state of another lineage
    other = json.dumps({**STATE, "serial": 5, "lineage": "another"}).encode()
    for attrs_, needle in (({"md5": "0" * 32, "serial": 5, "state": base64.b64encode(state).decode()}, "md5"),
                           ({"md5": hashlib.md5(other).hexdigest(), "serial": 5, "lineage": "another",
                             "state": base64.b64encode(other).decode()}, "lineage")):
        refused = w.api.post(f"/api/v2/workspaces/{ws['id']}/state-versions", json=jdoc("state-versions", attrs_))
        assert refused.status_code in (409, 422) and needle in refused.text.lower(), refused.text


@probe("GET /api/v2/state-versions", "filter[workspace][name]", "filter[organization][name]", "filter[status]")
def _state_version_list(w: World, route: str) -> None:
    query = {"filter[organization][name]": w.org, "filter[workspace][name]": "probe"}
    assert _ids(w.api.get("/api/v2/state-versions", params=query)) == [w.sv["id"]]
    assert _ids(w.api.get("/api/v2/state-versions", params={**query, "filter[status]": "pending"})) == []
    assert w.api.get("/api/v2/state-versions", params={**query, "filter[workspace][name]": "nope"}).status_code == 404
    assert w.api.get("/api/v2/state-versions", params={"filter[workspace][name]": "probe"}).status_code == 422


@probe("POST /api/v2/workspaces/<ws_id>/configuration-versions", "auto-queue-runs", "speculative", "provisional")
def _cv_create(w: World, route: str) -> None:
    # configuration-versions.mdx "Create a Configuration Version"
    ws = w.scratch_ws()
    quiet = w.upload(ws["id"])  # auto-queue-runs false: nothing queued
    assert _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}/runs"))["data"] == []
    assert _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}"))["data"]["relationships"][
        "current-configuration-version"]["data"]["id"] == quiet
    provisional = w.upload(ws["id"], provisional=True)  # not the workspace's current version
    assert _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}"))["data"]["relationships"][
        "current-configuration-version"]["data"]["id"] == quiet
    made = _ok(w.api.post(f"/api/v2/workspaces/{ws['id']}/configuration-versions", json=jdoc(
        "configuration-versions", {"speculative": True})))["data"]  # auto-queue-runs by default
    assert made["attributes"]["auto-queue-runs"] is True and made["attributes"]["speculative"] is True
    assert w.api.put(made["attributes"]["upload-url"], data=tarball({"main.tf": CONFIG})).status_code == 200
    runs = _ok(w.api.get(f"/api/v2/workspaces/{ws['id']}/runs", params={"filter[operation]": "plan_only"}))["data"]
    assert len(runs) == 1 and runs[0]["relationships"]["configuration-version"]["data"]["id"] == made["id"]
    shown = _ok(w.api.get(f"/api/v2/configuration-versions/{made['id']}?include=run"))
    assert [i["id"] for i in shown["included"]] == [runs[0]["id"]]
    refused = w.api.post("/api/v2/runs", json=jdoc("runs", {"plan-only": False}, {
        "workspace": rel("workspaces", ws["id"]), "configuration-version": rel("configuration-versions", made["id"])}))
    assert refused.status_code == 422 and "speculative" in refused.text
    assert provisional


# --- runs: real terraform plans with each option --------------------------------------------------------------

def _plan(w: World, run: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(plan attributes, plan log, plan JSON) of a settled run."""
    plan = _ok(w.api.get(f"/api/v2/runs/{run['id']}/plan"))["data"]["attributes"]
    log = w.api.get(plan["log-read-url"]).text
    shown = w.api.get(f"/api/v2/runs/{run['id']}/plan/json-output")
    return plan, log, (shown.json() if shown.status_code == 200 else {})


def _settle(w: World, ws_id: str, cv_id: str, **attrs: Any) -> tuple[dict[str, Any], dict[str, Any], str, dict[str, Any]]:
    run = wait_run(w.api, w.create_run(ws_id, cv_id, **attrs)["id"], SETTLED_OR_SAVED, timeout=180)
    return (run, *_plan(w, run))


SETTLED_OR_SAVED = ("planned", "planned_and_finished", "planned_and_saved", "applied", "errored", "discarded",
                    "canceled")


@probe("POST /api/v2/runs", "allow-empty-apply", "auto-apply", "debugging-mode", "is-destroy", "message", "refresh",
       "refresh-only", "replace-addrs", "target-addrs", "variables", "plan-only", "save-plan", "terraform-version",
       "relationships.workspace", "relationships.configuration-version")
def _run_options(w: World, route: str) -> None:
    # run.mdx "Create a Run": each option is passed to terraform as the page says
    w.sandbox.run_settings(paused=False)
    try:
        ws = w.scratch_ws(**{"terraform-version": "1.15.5"})
        cv = w.upload(ws["id"])
        run, plan, _, _ = _settle(w, ws["id"], cv, **{"target-addrs": ["null_resource.b"], "plan-only": True,
                                                       "message": "only b"})
        assert run["attributes"]["status"] == "planned_and_finished" and plan["resource-additions"] == 1  # -target
        assert run["attributes"]["message"] == "only b"
        assert run["relationships"]["workspace"]["data"]["id"] == ws["id"]
        assert run["relationships"]["configuration-version"]["data"]["id"] == cv
        run, plan, _, _ = _settle(w, ws["id"], cv, **{"auto-apply": True})
        assert run["attributes"]["status"] == "applied" and plan["resource-additions"] == 2  # no confirmation
        _, _, log, _ = _settle(w, ws["id"], cv, **{"plan-only": True})
        assert "Refreshing state" in log
        run, _, log, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "refresh": False})
        assert run["attributes"]["refresh"] is False and "Refreshing state" not in log  # -refresh=false
        bye = [{"key": "greeting", "value": '"bye"'}]
        _, plan, _, shown = _settle(w, ws["id"], cv, **{"plan-only": True, "variables": bye})
        assert shown["output_changes"]["greeting"]["after"] == "bye"  # an HCL literal over the default
        assert (plan["resource-additions"], plan["resource-destructions"]) == (1, 1)  # a's trigger changed
        _, plan, _, shown = _settle(w, ws["id"], cv, **{"plan-only": True, "variables": bye, "refresh-only": True})
        assert (plan["resource-additions"], plan["resource-destructions"]) == (0, 0)  # -refresh-only
        _, plan, _, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "replace-addrs": ["null_resource.b"]})
        assert (plan["resource-additions"], plan["resource-destructions"]) == (1, 1)  # -replace
        _, plan, _, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "is-destroy": True})
        assert plan["resource-destructions"] == 2
        _, _, log, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "debugging-mode": True})
        assert "[TRACE]" in log  # TF_LOG=TRACE
        run, _, _, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "terraform-version": "1.9.0"})
        assert run["attributes"]["terraform-version"] == "1.9.0" and run["attributes"]["status"] == "planned_and_finished"
        run, plan, _, _ = _settle(w, ws["id"], cv, **{"allow-empty-apply": True})
        assert not plan["has-changes"] and run["attributes"]["status"] == "planned"  # confirmable though empty
        _ok(w.api.post(f"/api/v2/runs/{run['id']}/actions/discard", json={}), 202)
        run, plan, _, _ = _settle(w, ws["id"], cv, **{"save-plan": True, "variables": bye})
        assert run["attributes"]["status"] == "planned_and_saved" and plan["has-changes"]
        _ok(w.api.post(f"/api/v2/runs/{run['id']}/actions/discard", json={}), 202)
        run, plan, _, _ = _settle(w, ws["id"], cv, **{"plan-only": True, "variables": bye})
        assert run["attributes"]["status"] == "planned_and_finished" and plan["has-changes"]  # never applied
    finally:
        w.sandbox.run_settings(paused=True)


@probe(("POST /api/v2/runs/<run_id>/actions/apply", "POST /api/v2/runs/<run_id>/actions/discard",
        "POST /api/v2/runs/<run_id>/actions/cancel", "POST /api/v2/runs/<run_id>/actions/force-cancel"), "comment")
def _action_comments(w: World, route: str) -> None:
    # run.mdx: each action takes an optional comment; it is recorded as a comment on the run (go-tfe TestRunsApply)
    action = route.rsplit("/", 1)[-1]
    ws = w.scratch_ws()
    run = w.create_run(ws["id"])
    if action in ("apply", "discard"):
        for status in ("planning", "planned"):
            w.store.transition_run(run["id"], status)
        w.store.add_run_job("tfe", run["id"])
    answer = w.api.post(f"/api/v2/runs/{run['id']}/actions/{action}", json={"comment": f"{action}: as agreed"})
    comments = _ok(w.api.get(f"/api/v2/runs/{run['id']}/comments"))["data"]
    if action == "force-cancel":  # never allowed in the sandbox (its cancel ends a run at once): nothing recorded
        assert answer.status_code == 409 and comments == []
        return
    assert answer.status_code == 202, answer.text
    assert [c["attributes"]["body"] for c in comments] == [f"{action}: as agreed"]


@probe("POST /api/v2/runs/<run_id>/comments", "body")
def _comment(w: World, route: str) -> None:
    made = _ok(w.api.post(f"/api/v2/runs/{w.run['id']}/comments", json=jdoc("comments", {"body": "seen"})))["data"]
    assert _ok(w.api.get(f"/api/v2/comments/{made['id']}"))["data"]["attributes"]["body"] == "seen"
    assert w.api.post(f"/api/v2/runs/{w.run['id']}/comments", json=jdoc("comments", {"body": ""})).status_code == 422


# --- teams ------------------------------------------------------------------------------------------------------

@probe("GET /api/v2/organizations/<org>/teams", "q", "filter[names]")
def _team_list(w: World, route: str) -> None:
    org = w.scratch_org()
    for name in ("platform", "platform-oncall", "auditors"):
        _ok(w.api.post(f"/api/v2/organizations/{org}/teams", json=jdoc("teams", {"name": name})))

    def names(**query: str) -> list[str]:
        return [t["attributes"]["name"] for t in _ok(w.api.get(f"/api/v2/organizations/{org}/teams",
                                                               params=query))["data"]]

    assert names(q="PLATFORM") == ["platform", "platform-oncall"]
    assert names(**{"filter[names]": "auditors,platform"}) == ["auditors", "platform"]


TEAM_WRITES = ("POST /api/v2/organizations/<org>/teams", "PATCH /api/v2/teams/<team_id>")


@probe(TEAM_WRITES, "name", "sso-team-id", "organization-access", "visibility", "allow-team-token-management")
def _team_settings(w: World, route: str) -> None:
    wanted = {"name": unique("team"), "sso-team-id": "idp-7", "visibility": "organization",
              "organization-access": {"manage-workspaces": True, "read-projects": True}}
    if route.startswith("POST"):
        team = _ok(w.api.post(f"/api/v2/organizations/{w.org}/teams", json=jdoc("teams", wanted)))["data"]
    else:
        team = _ok(w.api.patch(f"/api/v2/teams/{w.scratch_team()['id']}", json=jdoc("teams", {
            **wanted, "allow-team-token-management": False})))["data"]
        # teams.mdx spells go-tfe's `allow-member-token-management` this way in "Update a Team"
        assert team["attributes"]["allow-member-token-management"] is False
    shown = _ok(w.api.get(f"/api/v2/teams/{team['id']}"))["data"]["attributes"]
    assert {k: shown[k] for k in ("name", "sso-team-id", "visibility")} == {
        k: wanted[k] for k in ("name", "sso-team-id", "visibility")}
    assert shown["organization-access"]["manage-workspaces"] is True and shown["organization-access"]["read-projects"]
    # manage-workspaces is acted on: the team's token may create workspaces
    token = _ok(w.api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=jdoc("authentication-token")))
    as_team = Api(w.sandbox, token["data"]["attributes"]["token"])
    assert as_team.post(f"/api/v2/organizations/{w.org}/workspaces", json=jdoc("workspaces", {
        "name": unique("by-team")})).status_code == 201


@probe(("POST /api/v2/teams/<team_id>/relationships/users", "DELETE /api/v2/teams/<team_id>/relationships/users"),
       "data[].id")
def _team_members(w: World, route: str) -> None:
    team = w.scratch_team()
    path = f"/api/v2/teams/{team['id']}/relationships/users"
    _ok(w.api.post(path, json={"data": [{"type": "users", "id": "operator"}]}), 204)
    assert _ok(w.api.get(f"/api/v2/teams/{team['id']}"))["data"]["attributes"]["users-count"] == 1
    _ok(w.api.delete(path, json={"data": [{"type": "users", "id": "operator"}]}), 204)
    assert _ok(w.api.get(f"/api/v2/teams/{team['id']}"))["data"]["attributes"]["users-count"] == 0


@probe("POST /api/v2/teams/<team_id>/authentication-token", "expired-at")
def _team_token_expiry(w: World, route: str) -> None:
    team = w.scratch_team()
    made = _ok(w.api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=jdoc("authentication-token", {
        "expired-at": "2001-01-01T00:00:00.000Z"})))["data"]
    assert made["attributes"]["expired-at"].startswith("2001-01-01")
    assert Api(w.sandbox, made["attributes"]["token"]).get("/api/v2/account/details").status_code == 401


@probe("GET /api/v2/team-workspaces", "filter[workspace][id]")
def _access_list(w: World, route: str) -> None:
    ws, team = w.scratch_ws(), w.scratch_team()
    made = _ok(w.api.post("/api/v2/team-workspaces", json=jdoc("team-workspaces", {"access": "write"}, {
        "team": rel("teams", team["id"]), "workspace": rel("workspaces", ws["id"])})))["data"]
    assert _ids(w.api.get("/api/v2/team-workspaces", params={"filter[workspace][id]": ws["id"]})) == [made["id"]]
    assert w.api.get("/api/v2/team-workspaces").status_code == 400


ACCESS_WRITES = ("POST /api/v2/team-workspaces", "PATCH /api/v2/team-workspaces/<access_id>")


@probe(ACCESS_WRITES, "access", "runs", "variables", "state-versions", "sentinel-mocks", "workspace-locking",
       "run-tasks", "relationships.workspace", "relationships.team")
def _access_write(w: World, route: str) -> None:
    ws, team = w.scratch_ws(), w.scratch_team()
    custom = {"access": "custom", "runs": "plan", "variables": "read", "state-versions": "read-outputs",
              "sentinel-mocks": "read", "workspace-locking": True, "run-tasks": False}
    rels = {"team": rel("teams", team["id"]), "workspace": rel("workspaces", ws["id"])}
    if route.startswith("POST"):
        made = _ok(w.api.post("/api/v2/team-workspaces", json=jdoc("team-workspaces", custom, rels)))["data"]
    else:
        made = _ok(w.api.post("/api/v2/team-workspaces", json=jdoc("team-workspaces", {"access": "read"}, rels)))["data"]
        made = _ok(w.api.patch(f"/api/v2/team-workspaces/{made['id']}", json=jdoc("team-workspaces", custom)))["data"]
    assert {k: made["attributes"][k] for k in custom} == custom
    assert made["relationships"]["team"]["data"]["id"] == team["id"]
    assert made["relationships"]["workspace"]["data"]["id"] == ws["id"]
    # acted on: this team's token may lock and read outputs, not read the variables' values beyond read
    token = _ok(w.api.post(f"/api/v2/teams/{team['id']}/authentication-token", json=jdoc("authentication-token")))
    as_team = Api(w.sandbox, token["data"]["attributes"]["token"])
    assert as_team.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={}).status_code == 200
    assert as_team.get(f"/api/v2/workspaces/{ws['id']}/vars").status_code == 200
    assert as_team.post(f"/api/v2/workspaces/{ws['id']}/vars", json=jdoc("vars", {
        "key": "k", "value": "v", "category": "env"})).status_code == 404
    assert as_team.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").status_code == 404
