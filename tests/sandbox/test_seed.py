"""The seeded legacy estate is realistic: real 0.11 states, git repositories, special cases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandbox_helpers import Api

from runbook_lib.rehearsal import LegacyUi
from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.seed import ENVIRONMENTS, environment_specs


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_seed_timing_and_names(seeded_sandbox: Sandbox):
    seconds = float(seeded_sandbox.store.find_meta("seed_seconds"))
    assert seconds < 60, seconds
    assert [s.name for s in seeded_sandbox.seeded_environments()] == [s.name for s in ENVIRONMENTS[:10]]
    assert [s.name for s in environment_specs(12)][10:] == ["service-10-prod", "service-11-prod"]


def test_every_state_is_real_terraform_011(seeded_sandbox: Sandbox, legacy: Api):
    outputs = {}
    for spec in seeded_sandbox.seeded_environments():
        state = json.loads(legacy.get(f"/api/v1/terraform/state/acme-legacy/{spec.name}").content)
        assert state["version"] == 3 and state["terraform_version"] == "0.11.11" and state["lineage"]
        resources = state["modules"][0]["resources"]
        assert any(key.startswith("null_resource.") for key in resources), spec.name
        assert all(r["provider"] == "provider.null" for k, r in resources.items() if k.startswith("null_resource"))
        outputs[spec.name] = state["modules"][0]["outputs"]
    # app-prod read network-prod's output through terraform_remote_state with the atlas backend
    app = json.loads(legacy.get("/api/v1/terraform/state/acme-legacy/app-prod").content)["modules"][0]["resources"]
    remote = app["data.terraform_remote_state.network"]["primary"]["attributes"]
    assert remote["backend"] == "atlas" and remote["vpc_id"] == outputs["network-prod"]["vpc_id"]["value"]
    # ... and the inventory sees it in the state terraform wrote (step 0's `reads_state_of`, on which the
    # batch's order and step 6's reader check rely)
    from runbook_lib.inventory import remote_state_reads

    app_state = legacy.get("/api/v1/terraform/state/acme-legacy/app-prod").content
    assert remote_state_reads(app_state) == ["acme-legacy/network-prod"]
    # the sensitive value never reached the state in clear
    db = legacy.get("/api/v1/terraform/state/acme-legacy/db-prod").text
    assert "s3cr3t-db-pass" not in db


def test_git_repositories_match_the_vcs_links(seeded_sandbox: Sandbox, legacy: Api):
    """The links (kept by the legacy UI: the store is read here) match the repositories, and the latest
    configuration version (the documented API) names the same repository, branch and commit."""
    root = Path(seeded_sandbox.env["SANDBOX_GIT_ROOT"])
    for spec in seeded_sandbox.seeded_environments():
        env = seeded_sandbox.store.find_environment("acme-legacy", spec.name)
        vcs = {"repo": env["vcs_repo"], "branch": env["vcs_branch"], "working_directory": env["vcs_working_directory"]}
        assert vcs == spec.vcs, spec.name
        org, repo = vcs["repo"].split("/")
        bare = root / org / f"{repo}.git"
        assert _git(bare, "rev-parse", "--is-bare-repository") == "true"
        workdir = vcs["working_directory"]
        prefix = f"{workdir}/" if workdir else ""
        files = _git(bare, "ls-tree", "-r", "--name-only", vcs["branch"]).splitlines()
        assert f"{prefix}main.tf" in files, (spec.name, files)
        backend = f"{prefix}backend.tf"
        assert (backend in files) == spec.backend_in_git, spec.name
        if spec.backend_in_git:
            text = _git(bare, "show", f"{vcs['branch']}:{backend}")
            assert f'name = "acme-legacy/{spec.name}"' in text and "address" not in text
        metadata = legacy.get(f"/api/v1/terraform/configurations/acme-legacy/{spec.name}/versions/latest"
                              ).json()["version"]["metadata"]
        assert metadata["commit_sha"] == _git(bare, "rev-parse", vcs["branch"])
        assert (metadata["remote_slug"], metadata["git_branch"]) == (vcs["repo"], vcs["branch"])
    monorepo = _git(root / "acme-legacy" / "infrastructure.git", "ls-tree", "-r", "--name-only", "master")
    assert {"network/prod/main.tf", "database/prod/main.tf"} <= set(monorepo.splitlines())
    assert set(_git(root / "acme-legacy" / "app.git", "branch", "--format=%(refname:short)").split()) == {"master", "staging"}


def test_special_cases_exist(seeded_sandbox: Sandbox, legacy: Api):
    """Locks, runs and sensitive variables are what the legacy UI showed (the store is read here); the documented
    states list names every environment, and the UI's variables page names the sensitive ones, never their values."""
    store = seeded_sandbox.store
    states = legacy.get("/api/v1/terraform/state?username=acme-legacy&page=1").json()["states"]
    names = [s["environment"]["name"] for s in states]
    assert any("." in name for name in names)
    envs = {name: store.find_environment("acme-legacy", name) for name in names}
    running = {name for name, e in envs.items() if store.current_legacy_run(e["id"])}
    assert running == {"app-staging"} and store.current_legacy_run(envs["app-staging"]["id"])["status"] == "planning"
    assert {name: e["locked_by"] for name, e in envs.items() if e["locked"]} == {"db-prod": "operator"}
    assert len({e["vcs_repo"] for e in envs.values() if e["vcs_working_directory"]}) == 1
    sensitive = [v for v in store.list_legacy_vars(envs["dns-prod"]["id"]) if v["sensitive"]]
    assert {v["key"] for v in sensitive} == {"dns_api_key", "DNS_PROVIDER_TOKEN"}
    page = LegacyUi.for_sandbox(seeded_sandbox).page("acme-legacy", "dns-prod", "variables")
    assert all(v["key"] in page and v["value"] not in page for v in sensitive)


def test_bootstrap_objects_for_the_outsider(seeded_sandbox: Sandbox):
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token)
    ws = outsider.get("/api/v2/organizations/outsider-corp/workspaces/payments-prod")
    assert ws.status_code == 200 and ws.json()["data"]["relationships"]["current-state-version"]["data"]
    legacy = Api(seeded_sandbox, seeded_sandbox.outsider_token, legacy=True)
    assert legacy.get("/api/v1/terraform/state/outsider-legacy/private-env").status_code == 200
    assert Api(seeded_sandbox, legacy=True).get("/api/v1/terraform/state/outsider-legacy/private-env"
                                                ).status_code == 404  # not the operator's
    assert [o["id"] for o in Api(seeded_sandbox).get("/api/v2/organizations").json()["data"]
            if o["id"] == "outsider-corp"] == []
