"""Real git pushes start real terraform runs in the sandbox (issue 4; contract: docs/sandbox-vcs-runs.md).

Each test has a sandbox of its own seeded with the first two legacy environments (`network-prod` in the
`infrastructure` monorepo at `network/prod`, and `web.prod` at the root of `web`), because pushing and
unlinking change the estate that the session's `seeded_sandbox` must keep read-only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from sandbox_fixtures import upgraded_state
from sandbox_helpers import Api
from vcs_helpers import (Checkout, legacy_runs, legacy_state, new_org_with_vcs, upload_state, vcs_workspace,
                         wait_legacy_run, wait_run, workspace_runs)

from runbook_lib.plans import parse_plan_text
from runbook_lib.rehearsal import LegacyUi
from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.vcs import HOOK_HEADER, hook_secret

WEB = "acme-legacy/web"
INFRA = "acme-legacy/infrastructure"
WEB_VARS = {"environment": "production", "instance_count": "3"}  # as the legacy web.prod has them

NETWORK_1X = '''variable "environment" {}

variable "cidr_block" {
  default = "10.0.0.0/16"
}

resource "null_resource" "vpc" {
  triggers = {
    cidr        = var.cidr_block
    environment = var.environment
  }
}

resource "null_resource" "subnet" {
  count = 3

  triggers = {
    vpc   = null_resource.vpc.id
    index = count.index
  }
}

output "vpc_id" {
  value = null_resource.vpc.id
}

output "subnet_ids" {
  value = null_resource.subnet[*].id
}
'''


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of this test's own with `network-prod` and `web.prod` (plain HTTP: faster, same code)."""
    with Sandbox(tmp_path / "sandbox", seed=2) as sb:
        yield sb


def _atlas_backend(name: str) -> str:
    return f'terraform {{\n  backend "atlas" {{\n    name = "{name}"\n  }}\n}}\n'


def _web_workspace(api: Api, legacy: Api, **attributes: object) -> tuple[str, dict]:
    """web.prod migrated: a 0.11 workspace on acme-legacy/web with its variables and its legacy state."""
    org, token_id = new_org_with_vcs(api)
    ws = vcs_workspace(api, org, token_id, "web-prod", WEB, terraform_version="0.11.11", variables=WEB_VARS,
                       **attributes)
    upload_state(api, ws["id"], legacy_state(legacy, "web.prod"))
    return org, ws


def _plan(api: Api, run: dict) -> dict:
    return api.get(f"/api/v2/plans/{run['relationships']['plan']['data']['id']}").json()["data"]


def _plan_log(api: Api, plan: dict) -> str:
    response = requests.get(plan["attributes"]["log-read-url"], timeout=30)  # a signed URL: no token
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    # a finished log is framed by STX and ETX, which go-tfe's log reader strips (logreader.go)
    assert response.text.startswith("\x02") and response.text.endswith("\x03")
    return response.text[1:-1]


def test_push_with_unchanged_configuration_plans_no_changes(sandbox: Sandbox, tmp_path: Path):
    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    org, ws = _web_workspace(api, legacy)
    before_legacy = legacy_runs(sandbox, "web.prod")
    repo = Checkout(sandbox, WEB, tmp_path / "web")
    # step 5's commit: the backend block now names the new workspace; the resources are unchanged
    repo.write("backend.tf", _atlas_backend(f"{org}/web-prod"))
    sha, output = repo.push("Move the backend to the new workspace")
    assert "started 2 run(s)" in output  # the hook waited for the webhook: the runs exist already

    run_id = workspace_runs(api, ws["id"])[0]["id"]
    run = wait_run(api, run_id)
    attrs = run["attributes"]
    assert attrs["status"] == "planned_and_finished" and attrs["has-changes"] is False
    assert attrs["message"] == "Move the backend to the new workspace" and attrs["source"] == "tfe-configuration-version"
    assert {"pending-at", "planning-at", "planned-and-finished-at"} <= set(attrs["status-timestamps"])
    plan = _plan(api, run)
    assert plan["attributes"]["status"] == "finished" and plan["attributes"]["has-changes"] is False
    assert (plan["attributes"]["resource-additions"], plan["attributes"]["resource-changes"],
            plan["attributes"]["resource-destructions"]) == (0, 0, 0)
    log = _plan_log(api, plan)
    assert log.startswith("Terraform v0.11.11") and "No changes. Infrastructure is up-to-date." in log
    assert parse_plan_text(log).has_changes is False  # what step 5 does with a 0.11 plan
    assert api.get(f"/api/v2/plans/{plan['id']}/json-output", allow_redirects=False).status_code == 422  # 0.11: none (plans.mdx)

    cv_id = run["relationships"]["configuration-version"]["data"]["id"]
    cv = api.get(f"/api/v2/configuration-versions/{cv_id}").json()["data"]
    assert cv["attributes"]["status"] == "uploaded" and cv["attributes"]["source"] == "gitlab"
    assert cv["relationships"]["ingress-attributes"]["data"]["type"] == "ingress-attributes"
    ingress = api.get(f"/api/v2/configuration-versions/{cv_id}/ingress-attributes").json()["data"]["attributes"]
    assert (ingress["commit-sha"], ingress["branch"], ingress["identifier"]) == (sha, "master", WEB)
    # the plan did not touch the workspace's state
    assert len(api.get(f"/api/v2/workspaces/{ws['id']}/state-versions").json()["data"]) == 1
    # one workspace read names the current run and the commit it plans (go-tfe WSCurrentrunConfigVerIngress):
    # the resources along the include path come with it
    shown = api.get(f"/api/v2/workspaces/{ws['id']}",
                    params={"include": "current_run.configuration_version.ingress_attributes"}).json()
    assert shown["data"]["relationships"]["current-run"]["data"]["id"] == run_id
    included = {(i["type"], i["id"]): i for i in shown["included"]}
    assert set(included) == {("runs", run_id), ("configuration-versions", cv_id), ("ingress-attributes", "ia-" + cv_id[3:])}
    assert included[("ingress-attributes", "ia-" + cv_id[3:])]["attributes"]["commit-sha"] == sha
    with_plan = api.get(f"/api/v2/workspaces/{ws['id']}", params={"include": "current_run.plan"}).json()
    assert {i["type"] for i in with_plan["included"]} == {"runs", "plans"}

    # the legacy environment is still linked (step 4 not done here): it planned the same commit, 0.11, no changes
    new_legacy = [r for r in legacy_runs(sandbox, "web.prod") if r["id"] not in {b["id"] for b in before_legacy}]
    assert len(new_legacy) == 1 and new_legacy[0]["commit_sha"] == sha
    settled = wait_legacy_run(sandbox, "web.prod", new_legacy[0]["id"])
    assert settled["status"] == "planned_and_finished" and settled["has_changes"] == 0


def test_changed_configuration_gives_counts_and_a_confirmed_apply_writes_a_state_version(sandbox: Sandbox,
                                                                                         tmp_path: Path):
    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    LegacyUi.for_sandbox(sandbox).unlink("acme-legacy", "web.prod")  # step 4 done: only the workspace runs
    org, ws = _web_workspace(api, legacy)
    first = api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]["attributes"]
    first_lineage = json.loads(api.get(first["hosted-state-download-url"]).content)["lineage"]
    repo = Checkout(sandbox, WEB, tmp_path / "web")
    main = (repo.path / "main.tf").read_text()
    # a new trigger replaces the 3 servers (-/+), and one new resource
    changed = main.replace('    index       = "${count.index}"\n',
                           '    index       = "${count.index}"\n    image       = "v2"\n')
    assert changed != main
    repo.write("main.tf", changed + '\nresource "null_resource" "extra" {}\n')
    repo.push("Roll out image v2")

    run = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    attrs = run["attributes"]
    assert attrs["status"] == "planned" and attrs["has-changes"] is True and attrs["actions"]["is-confirmable"]
    plan = _plan(api, run)["attributes"]
    assert (plan["resource-additions"], plan["resource-changes"], plan["resource-destructions"]) == (4, 0, 3)
    assert "Plan: 4 to add, 0 to change, 3 to destroy." in _plan_log(api, _plan(api, run))
    # auto-apply is off: it waits for confirmation and holds the workspace's queue
    assert wait_run(api, run["id"], ("planned",))["attributes"]["status"] == "planned"

    assert api.post(f"/api/v2/runs/{run['id']}/actions/apply", json={"comment": "looks right"}).status_code == 202
    applied = wait_run(api, run["id"], ("applied", "errored"))
    assert applied["attributes"]["status"] == "applied"
    assert {"confirmed-at", "applying-at", "applied-at"} <= set(applied["attributes"]["status-timestamps"])
    current = api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]
    assert current["attributes"]["serial"] == first["serial"] + 1
    assert current["relationships"]["run"]["data"]["id"] == run["id"]
    body = requests.get(current["attributes"]["hosted-state-download-url"],
                        headers={"Authorization": f"Bearer {sandbox.operator_token}"}, timeout=30).content
    assert json.loads(body)["lineage"] == first_lineage  # the answer has no lineage: the bytes do
    resources = json.loads(body)["modules"][0]["resources"]
    assert "null_resource.extra" in resources and resources["null_resource.server.0"]["primary"]["attributes"][
        "triggers.image"] == "v2"
    # applying again is refused: the run is final
    assert api.post(f"/api/v2/runs/{run['id']}/actions/apply").status_code == 409

    # the applied state matches the configuration: the next push plans no changes
    repo.write("README.md", "# web\n\nImage v2.\n")
    repo.push("Document image v2")
    after = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    assert after["id"] != run["id"] and after["attributes"]["status"] == "planned_and_finished"
    assert after["attributes"]["has-changes"] is False


def test_locked_workspace_holds_its_run_until_unlocked(sandbox: Sandbox, tmp_path: Path):
    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    org, ws = _web_workspace(api, legacy)
    assert api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={"reason": "migration"}).status_code == 200
    repo = Checkout(sandbox, WEB, tmp_path / "web")
    repo.write("backend.tf", _atlas_backend(f"{org}/web-prod"))
    repo.push("Move the backend to the new workspace")
    run_id = workspace_runs(api, ws["id"])[0]["id"]
    wait_legacy_run(sandbox, "web.prod", legacy_runs(sandbox, "web.prod")[0]["id"])  # a free worker was there...
    time.sleep(1.0)  # ...and four dispatcher polls (0.25 s) later the workspace's run still waits
    held = api.get(f"/api/v2/runs/{run_id}").json()["data"]
    assert held["attributes"]["status"] == "pending"
    assert _plan(api, held)["attributes"]["status"] == "pending"
    # a run still queued (pending) is not the workspace's current run (docs/sandbox-behaviour.md, current-run)
    current = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["relationships"]["current-run"]["data"]
    assert (current or {}).get("id") != run_id

    assert api.post(f"/api/v2/workspaces/{ws['id']}/actions/unlock").status_code == 200
    run = wait_run(api, run_id)
    assert run["attributes"]["status"] == "planned_and_finished" and run["attributes"]["has-changes"] is False
    # once it left the queue it is the current run, and stays so after it finished
    current = api.get(f"/api/v2/workspaces/{ws['id']}").json()["data"]["relationships"]["current-run"]["data"]
    assert current["id"] == run_id


def test_unlinked_legacy_environment_gets_no_run(sandbox: Sandbox, tmp_path: Path):
    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    org, ws = _web_workspace(api, legacy)
    repo = Checkout(sandbox, WEB, tmp_path / "web")
    # linked: a push starts a legacy run
    repo.write("README.md", "# web\n\nbefore step 4\n")
    sha, _ = repo.push("Before step 4")
    linked = legacy_runs(sandbox, "web.prod")[0]
    assert linked["commit_sha"] == sha and linked["status"] in ("pending", "planning", "planned_and_finished")
    wait_legacy_run(sandbox, "web.prod", linked["id"])

    # step 4: the operator unlinks in the legacy UI; the next push starts the workspace's run only
    assert LegacyUi.for_sandbox(sandbox).unlink("acme-legacy", "web.prod") == "Unlinked from version control."
    assert sandbox.store.find_environment("acme-legacy", "web.prod")["vcs_repo"] is None
    count = len(legacy_runs(sandbox, "web.prod"))
    repo.write("backend.tf", _atlas_backend(f"{org}/web-prod"))
    sha, output = repo.push("Move the backend to the new workspace")
    assert "started 1 run(s)" in output and "legacy-runs" not in output
    assert len(legacy_runs(sandbox, "web.prod")) == count
    run = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    assert run["attributes"]["status"] == "planned_and_finished"
    sandbox.wait_for_runs(timeout=60)
    assert len(legacy_runs(sandbox, "web.prod")) == count  # nothing arrived later either

    # the documented legacy plan trigger still queues a real (0.11) run, from the last known commit
    assert legacy.post("/api/v1/environments/acme-legacy/web.prod/plan", json={"destroy": False}).json() == {
        "success": True}
    queued = legacy_runs(sandbox, "web.prod")[0]
    done = wait_legacy_run(sandbox, "web.prod", queued["id"])
    assert done["status"] == "planned_and_finished", done["plan_log"]


def test_1x_workspace_refuses_a_011_state_plans_the_upgraded_one_and_honours_its_working_directory(
        sandbox: Sandbox, tmp_path: Path):
    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    LegacyUi.for_sandbox(sandbox).unlink("acme-legacy", "network-prod")  # step 4: its 0.11 cannot read 1.x syntax
    org, token_id = new_org_with_vcs(api)
    ws = vcs_workspace(api, org, token_id, "network-prod", INFRA, terraform_version="1.15.5",
                       working_directory="network/prod",
                       variables={"environment": "production", "cidr_block": "10.20.0.0/16"},
                       env_variables={"AWS_DEFAULT_REGION": "us-east-1"})
    state = legacy_state(legacy, "network-prod")
    assert json.loads(state)["version"] == 3
    upload_state(api, ws["id"], state)
    repo = Checkout(sandbox, INFRA, tmp_path / "infrastructure")
    # the configuration upgraded to 1.x syntax, with a cloud block naming the workspace
    repo.write("network/prod/main.tf", NETWORK_1X)
    repo.write("network/prod/backend.tf", f'terraform {{\n  cloud {{\n    hostname     = "{sandbox.hostname}"\n'
                                          f'    organization = "{org}"\n\n    workspaces {{\n'
                                          f'      name = "network-prod"\n    }}\n  }}\n}}\n')
    repo.push("Terraform 1.x and the cloud block")
    # Terraform 1.x refuses the state as 0.11 wrote it, at init, as on TFE: nothing upgrades it behind the operator
    refused = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    assert refused["attributes"]["status"] == "errored"
    assert "Invalid legacy provider address" in _plan_log(api, _plan(api, refused))
    # the operator's 0.13 upgrade of the state (a new state version), then a change inside network/prod
    upgrade = upgraded_state(state)
    upload_state(api, ws["id"], upgrade)
    repo.write("network/prod/NOTES.md", "state upgraded for Terraform 1.x\n")
    repo.push("Notes after the state upgrade")
    run = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    plan = _plan(api, run)
    assert run["attributes"]["status"] == "planned_and_finished", _plan_log(api, plan)
    assert run["attributes"]["has-changes"] is False and plan["attributes"]["has-changes"] is False
    # structured run output (the workspace default): terraform's JSON log, its version message first
    assert json.loads(_plan_log(api, plan).splitlines()[0])["@message"].startswith("Terraform 1.")
    redirect = api.get(f"/api/v2/plans/{plan['id']}/json-output", allow_redirects=False)
    assert redirect.status_code == 307
    plan_json = requests.get(redirect.headers["Location"], timeout=30).json()
    actions = {rc["address"]: rc["change"]["actions"] for rc in plan_json["resource_changes"]}
    assert actions == {"null_resource.vpc": ["no-op"], **{f"null_resource.subnet[{i}]": ["no-op"] for i in range(3)}}
    # the stored state version is untouched by the plan (still the upgraded one)
    current = api.get(f"/api/v2/workspaces/{ws['id']}/current-state-version").json()["data"]["attributes"]
    assert current["serial"] == json.loads(upgrade)["serial"]

    # a push outside network/prod starts nothing
    repo.write("database/prod/NOTES.md", "maintenance window on Sunday\n")
    _, output = repo.push("Database notes")
    assert "started 0 run(s)" in output and len(workspace_runs(api, ws["id"])) == 2

    # a change inside it is planned by 1.x with the right counts
    repo.write("network/prod/marker.tf", 'resource "terraform_data" "marker" {\n  input = var.environment\n}\n')
    repo.push("Add a marker")
    changed = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    attrs = _plan(api, changed)["attributes"]
    assert changed["attributes"]["status"] == "planned" and attrs["has-changes"] is True
    assert (attrs["resource-additions"], attrs["resource-changes"], attrs["resource-destructions"]) == (1, 0, 0)
    assert api.post(f"/api/v2/runs/{changed['id']}/actions/discard").status_code == 202
    assert api.get(f"/api/v2/runs/{changed['id']}").json()["data"]["attributes"]["status"] == "discarded"


def test_webhook_refuses_requests_without_the_hook_secret(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    url = f"{sandbox.address}/_sandbox/vcs/push"
    body = {"repository": "acme-legacy/web", "ref": "refs/heads/master", "before": "0" * 40, "after": "1" * 40}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    bearer = requests.post(url, json=body, headers={"Authorization": f"Bearer {sandbox.operator_token}"}, timeout=30)
    assert bearer.status_code == 401
    atlas = requests.post(url, json=body, headers={"X-Atlas-Token": sandbox.operator_token}, timeout=30)
    assert atlas.status_code == 401
    assert requests.post(url, json=body, headers={HOOK_HEADER: "not-the-secret"}, timeout=30).status_code == 401
    secret = hook_secret(sandbox.data_dir)
    assert secret and (sandbox.data_dir / "vcs-hook.json").stat().st_mode & 0o077 == 0
    # with the secret: an unknown repository is 404, and nothing was created by any of these
    assert requests.post(url, json=body, headers={HOOK_HEADER: secret}, timeout=30).status_code == 404
    assert sandbox.store.run_jobs(("queued", "running", "waiting", "apply", "done")) == []


def test_a_run_that_exceeds_the_timeout_ends_errored(fresh_sandbox: Sandbox, tmp_path: Path):
    sandbox = fresh_sandbox
    api, ws, repo = _tiny_vcs_workspace(sandbox, tmp_path)
    sandbox.run_settings(timeout=0.05)
    try:
        repo.push("First configuration")
        run = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    finally:
        sandbox.run_settings(timeout=300)
    assert run["attributes"]["status"] == "errored"
    plan = _plan(api, run)
    assert plan["attributes"]["status"] == "errored"
    assert "timed out after 0.05 s" in _plan_log(api, plan)

    # the queue goes on: a run queued through the API plans the workspace's latest configuration version
    queued = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {"message": "retry"},
                                                     "relationships": {"workspace": {"data": {
                                                         "type": "workspaces", "id": ws["id"]}}}}})
    assert queued.status_code == 201
    retried = wait_run(api, queued.json()["data"]["id"])
    assert retried["attributes"]["status"] == "planned"  # no state yet: one resource to add
    assert _plan(api, retried)["attributes"]["resource-additions"] == 1


def test_runs_survive_a_restart_and_seeded_history_is_never_executed(tmp_path: Path):
    with Sandbox(tmp_path / "sandbox", seed=3) as sandbox:
        _restart_requeues(sandbox, tmp_path)
        # app-staging's seeded run "in progress" is history, not a job: still planning after the restart
        in_progress = [r for r in legacy_runs(sandbox, "app-staging") if r["status"] == "planning"]
        assert len(in_progress) == 1 and sandbox.store.run_job(in_progress[0]["id"]) is None


def _tiny_vcs_workspace(sandbox: Sandbox, tmp_path: Path) -> tuple[Api, dict, Checkout]:
    """A new organization's Terraform 0.11 workspace on the repository `platform/tiny`, whose checkout holds
    one null resource not pushed yet."""
    api = Api(sandbox)
    sandbox.create_repository("platform/tiny")
    org, token_id = new_org_with_vcs(api)
    ws = vcs_workspace(api, org, token_id, "tiny", "platform/tiny", terraform_version="0.11.11")
    repo = Checkout(sandbox, "platform/tiny", tmp_path / "tiny")
    repo.write("main.tf", 'resource "null_resource" "one" {}\n')
    return api, ws, repo


def _restart_requeues(sandbox: Sandbox, tmp_path: Path) -> None:
    api, ws, repo = _tiny_vcs_workspace(sandbox, tmp_path)
    sandbox.run_settings(paused=True)
    repo.push("First configuration")
    run_id = workspace_runs(api, ws["id"])[0]["id"]
    # as if the process died while a worker was planning it
    sandbox.store.transition_run(run_id, "planning")
    sandbox.store.set_run_job(run_id, state="running")
    sandbox.restart()  # the pause is not persisted; the run is re-queued on start
    api = Api(sandbox)
    run = wait_run(api, run_id)
    assert run["attributes"]["status"] == "planned" and run["attributes"]["has-changes"] is True


REMOTE_NETWORK = '''data "terraform_remote_state" "network" {
  backend = "atlas"

  config {
    name = "acme-legacy/network-prod"
  }
}
'''


def test_a_run_reads_other_state_with_its_own_token_and_meets_no_injected_fault(sandbox: Sandbox, tmp_path: Path):
    # TFE gives each run a per-run token, not a user's (2018 TFE docs, "Backend Details"). Injected faults
    # stand for trouble between a client and the host; a run's own state reads happen inside the host.
    from runbook_lib.sandbox.store.base import RUN_TOKEN

    api, legacy = Api(sandbox), Api(sandbox, legacy=True)
    org, ws = _web_workspace(api, legacy)
    repo = Checkout(sandbox, WEB, tmp_path / "web")
    repo.write("backend.tf", _atlas_backend(f"{org}/web-prod"))
    repo.write("network.tf", REMOTE_NETWORK)  # the plan reads network-prod's state from the host
    state_reads = "/api/v1/terraform/state/"
    sandbox.set_faults(error_rate=1.0, path_prefix=state_reads, seed=1)
    try:
        assert legacy.get(state_reads + "acme-legacy/network-prod").status_code >= 500  # a client's read: faulted
        mark = sandbox.log_mark()
        repo.push("Read the network's outputs")
        run = wait_run(api, workspace_runs(api, ws["id"])[0]["id"])
    finally:
        sandbox.clear_faults()
    assert run["attributes"]["status"] == "planned_and_finished", _plan_log(api, _plan(api, run))
    reads = sandbox.request_log(since=mark, path_prefix=state_reads + "acme-legacy/network-prod")
    assert reads and {(r["token_name"], r["fault"], r["status"]) for r in reads} == {(RUN_TOKEN, None, 200)}
    assert sandbox.operator_token and RUN_TOKEN not in {r["token_name"] for r in sandbox.request_log(
        username="operator") if r["path"].startswith("/api/v2/")}  # the operator's own calls carry its token
