"""migration_path = "native": the host's own import creates the workspace; the runbook plans, locks and proves.

The import changes the legacy side (it locks the environment and imports its state history in the background), so
these tests run against a sandbox of this module's own, never the shared seeded one.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Iterator

import pytest
from sandbox_fixtures import create_organization, operator_mapping_rows, sandbox_in_environ, write_operator_mapping
from sandbox_helpers import Api, create_workspace, step_context

from runbook_lib import native
from runbook_lib.errors import StepError
from runbook_lib.rehearsal import LegacyUi, batch_parameters
from runbook_lib.sandbox import Sandbox
from runbook_lib.steps import decommission, organization, state_migration, workspaces

_ctx = step_context


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A seeded sandbox of this module's own (network-prod, web.prod, app-staging, db-prod, app-prod, dns-prod),
    its variables in os.environ for the module."""
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-native"), seed=6) as sb:
        yield sb


@pytest.fixture
def rehearsal(sandbox: Sandbox) -> dict[str, str]:
    """The rehearsal parameters of this module's sandbox, on the host's own import path."""
    return {**batch_parameters(sandbox.env), "migration_path": "native"}


@pytest.fixture
def new_org(sandbox: Sandbox) -> str:
    return create_organization(sandbox)


def _changes(sandbox: Sandbox, mark: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.request_log(since=mark) if r["changes"]]


def test_native_path_end_to_end_is_proven_like_the_others(tmp_path, rehearsal, sandbox, new_org):
    write_operator_mapping(sandbox, tmp_path / "runs", ["dns-prod"], new_org=new_org)
    organization.apply(_ctx(tmp_path, "01_create_organization", "dns-prod", new_org, **rehearsal))
    ctx = _ctx(tmp_path, "02_create_workspaces", "dns-prod", new_org, mode="plan", **rehearsal)
    plan = workspaces.plan(ctx)
    row = plan[plan["object"] == "host import"].iloc[0]
    assert row["action"] == "create" and "migration-environment" in row["detail"]
    legacy_env = sandbox.store.find_environment("acme-legacy", "dns-prod")
    assert not legacy_env["locked"]

    ctx = _ctx(tmp_path, "02_create_workspaces", "dns-prod", new_org, **rehearsal)
    done = workspaces.apply(ctx)
    # the host copied variables (sensitive values included) and teams; the runbook only locked
    assert not (done["object"] == "variable").any()
    assert "no account on the new host" not in " | ".join(done["result"])  # existing team is adopted, not changed
    verdict = workspaces.verify(ctx)
    assert verdict.passed, verdict.summary  # no sensitive variable left empty: the host had the values
    assert verdict.evidence["teams"]["auditors"] == {"access": "read", "members": ["carol"], "not_members": ["dave"]}
    api = Api(sandbox)
    ws = api.get(f"/api/v2/organizations/{new_org}/workspaces/dns-prod").json()["data"]
    assert ws["attributes"]["migration-environment"] == "acme-legacy/dns-prod" and ws["attributes"]["locked"]
    # The host locked the legacy environment itself, as the importing user (batch.html.md: the API "locks the
    # legacy environment"); the operator sees it on the settings page.
    legacy_env = sandbox.store.find_environment("acme-legacy", "dns-prod")
    assert (legacy_env["locked"], legacy_env["locked_by"]) == (1, "operator")
    assert legacy_env["lock_reason"] == f"migrated to workspace {new_org}/dns-prod"
    assert "Locked by <b>operator</b>" in LegacyUi.for_sandbox(sandbox).page("acme-legacy", "dns-prod", "settings")

    # Step 3 does not refuse the lock the import placed: it backs up, adopts what the host copied, proves it.
    ctx = _ctx(tmp_path, "03_migrate_state", "dns-prod", new_org, **rehearsal)
    mark = sandbox.log_mark()
    moved = state_migration.apply(ctx)
    assert moved["action"].iloc[0] == "adopt" and _changes(sandbox, mark) == []  # nothing uploaded
    proof = state_migration.verify(ctx)
    assert proof.passed and proof.evidence["identical_bytes"] is True, proof.summary
    ctx.conclude(proof)
    # The history arrives in the background with no status shown: step 6 says it cannot know.
    six = _ctx(tmp_path, "06_delete_legacy_environment", "dns-prod", new_org, mode="plan")
    history = decommission.plan(six).set_index("object").loc["state history"]
    assert history["action"] == "none" and "it cannot be known here" in history["detail"]


def test_native_path_refusals(tmp_path, rehearsal, sandbox, new_org, monkeypatch):
    write_operator_mapping(sandbox, tmp_path / "runs", ["web.prod"], new_org=new_org)
    organization.apply(_ctx(tmp_path, "01_create_organization", "web.prod", new_org, **rehearsal))
    # legacy environments on another host: refused by the runbook before anything is sent
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, mode="plan", **rehearsal)
    ctx.settings = dataclasses.replace(ctx.settings, legacy_address="https://atlas.example.com")
    reason = native.unsupported(ctx)
    assert reason.startswith("the new host cannot import acme-legacy/web.prod itself") and "'api'" in reason

    store = sandbox.store
    member = store.create_user("native-member", "nm@acme.example")
    owner = store.create_user("native-owner", "no@acme.example")
    with store.tx():
        store.add_org_member(new_org, member["id"], "members")
        store.add_legacy_member("acme-legacy", member["id"], "admin")
        store.add_org_member(new_org, owner["id"], "owners")
        store.add_legacy_member("acme-legacy", owner["id"], "write")
    # not in the new organization's owners team: the plan refuses and names the api path
    monkeypatch.setenv("TFE_TOKEN", store.create_token(member["id"], "native-member-token"))
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal)
    mark = sandbox.log_mark()
    with pytest.raises(StepError, match="owners team of .*migration_path = 'api'"):
        workspaces.apply(ctx)
    # an owner of the new organization only: the host refuses the import, nothing is created
    monkeypatch.setenv("TFE_TOKEN", store.create_token(owner["id"], "native-owner-token"))
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal)
    with pytest.raises(StepError, match="refused to import acme-legacy/web.prod.*owners team in both.*'api'"):
        workspaces.apply(ctx)
    assert _changes(sandbox, mark) == []
    assert not store.find_environment("acme-legacy", "web.prod")["locked"]


def test_step_3_native_refuses_a_workspace_without_the_imported_state(tmp_path, rehearsal, sandbox, new_org):
    api_path = {**rehearsal, "migration_path": "api"}
    write_operator_mapping(sandbox, tmp_path / "runs", ["network-prod"], new_org=new_org)
    organization.apply(_ctx(tmp_path, "01_create_organization", "network-prod", new_org, **api_path))
    workspaces.apply(_ctx(tmp_path, "02_create_workspaces", "network-prod", new_org, **api_path))
    plan = state_migration.plan(_ctx(tmp_path, "03_migrate_state", "network-prod", new_org, mode="plan", **rehearsal))
    assert plan.loc[plan["object"] == "state version", "action"].iloc[0] == "refuse"
    ctx = _ctx(tmp_path, "03_migrate_state", "network-prod", new_org, **rehearsal)
    mark = sandbox.log_mark()
    with pytest.raises(StepError, match="does not hold the legacy state.*migration_path = 'api'"):
        state_migration.apply(ctx)
    assert _changes(sandbox, mark) == []


@pytest.mark.parametrize("legacy_address, tfe_address, one", [
    ("https://atlas.hashicorp.com", "https://app.terraform.io", True),   # the 2018 SaaS: one installation
    ("https://app.terraform.io", "https://atlas.hashicorp.com", True),
    ("https://ATLAS.hashicorp.com/", "https://app.terraform.io/", True),
    ("https://tfe.example.com", "https://TFE.example.com/", True),     # one host
    ("https://atlas.hashicorp.com", "https://tfe.example.com", False),
    ("http://atlas.hashicorp.com", "http://app.terraform.io", False),   # the pair only over HTTPS
    ("https://atlas.hashicorp.com:8443", "https://app.terraform.io", False),
])
def test_the_address_check_accepts_the_2018_saas_pair(tmp_path, rehearsal, sandbox, new_org, legacy_address,
                                                      tfe_address, one):
    """Legacy environments at atlas.hashicorp.com and the new product at app.terraform.io were one installation
    (the upgrade guide's own hosts), so the host's import is offered there; any other pair of hosts is refused."""
    assert native.one_installation(legacy_address, tfe_address) is one
    write_operator_mapping(sandbox, tmp_path / "runs", ["web.prod"], new_org=new_org)
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, mode="plan", **rehearsal)
    assert ctx.tfe is not None  # the client is made now, with the sandbox's address: nothing goes to those hosts
    ctx.settings = dataclasses.replace(ctx.settings, legacy_address=legacy_address, tfe_address=tfe_address)
    reason = native.unsupported(ctx)
    if one:
        assert reason is None  # and the owners check ran against the sandbox: the operator owns new_org
    else:
        assert reason.startswith("the new host cannot import acme-legacy/web.prod itself") and "'api'" in reason


def test_the_import_refuses_a_legacy_run_in_progress_or_a_lock_by_another_user(tmp_path, rehearsal, sandbox,
                                                                                new_org):
    """The upgrade guide's 3.a: no run in progress, and the environment unlocked or locked by the importing user;
    otherwise "the migration will fail" (422), and nothing is created."""
    store = sandbox.store
    locker = store.create_user(f"locker-{uuid.uuid4().hex[:6]}", "locker@acme.example")
    store.add_legacy_member("acme-legacy", locker["id"], "admin")
    token = store.create_token(locker["id"], f"{locker['username']}-token")
    their_ui = LegacyUi(sandbox.legacy_address, locker["username"], token, sandbox.ca_file)
    their_ui.lock("acme-legacy", "network-prod", reason="hands off")
    try:
        write_operator_mapping(sandbox, tmp_path / "runs", ["app-staging", "network-prod", "db-prod"], new_org=new_org)
        organization.apply(_ctx(tmp_path, "01_create_organization", "app-staging", new_org, **rehearsal))
        for env, why in (("app-staging", "Migration environment has a run in progress; wait for it to finish"),
                         ("network-prod", f"Migration environment is locked by {locker['username']}; it must be "
                                          f"unlocked or locked by you")):
            ctx = _ctx(tmp_path, "02_create_workspaces", env, new_org, **rehearsal)
            mark = sandbox.log_mark()
            with pytest.raises(StepError, match=f"refused to import acme-legacy/{env} \\({why}\\).*Nothing was "
                                                f"created"):
                workspaces.apply(ctx)
            assert _changes(sandbox, mark) == []
            assert Api(sandbox).get(f"/api/v2/organizations/{new_org}/workspaces/{env}").status_code == 404
        assert store.find_environment("acme-legacy", "network-prod")["locked_by"] == locker["username"]
        # locked by the importing user (the seed's "change freeze" of operator): imported, and the lock stays theirs
        ctx = _ctx(tmp_path, "02_create_workspaces", "db-prod", new_org, **rehearsal)
        workspaces.apply(ctx)
        assert workspaces.verify(ctx).passed
        db = store.find_environment("acme-legacy", "db-prod")
        assert db["locked_by"] == "operator" and db["lock_reason"].startswith("change freeze")
    finally:
        their_ui.unlock("acme-legacy", "network-prod")


def _state(serial: int) -> bytes:
    return json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": serial, "lineage": "lin-history",
                       "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]}).encode()


def _import(api: Api, org: str, name: str, source: str) -> dict:
    return create_workspace(api, org, name, **{"migration-environment": source})


def _serials(api: Api, ws_id: str) -> list[int]:
    return [sv["attributes"]["serial"] for sv in api.get(f"/api/v2/workspaces/{ws_id}/state-versions").json()["data"]]


def test_the_import_copies_older_states_in_the_background_unless_the_environment_is_deleted_first(fresh_sandbox):
    """workspaces.html.md / the upgrade guide: the current state at once, the history "asynchronously" and
    silently; here `store.history_import_seconds` later. An environment deleted before that loses it."""
    sandbox = fresh_sandbox
    sandbox.store.history_import_seconds = 1.5
    legacy, api = Api(sandbox, legacy=True), Api(sandbox)
    for env in ("kept", "gone"):
        for serial in (1, 2, 3):
            assert legacy.put(f"/api/v1/terraform/state/acme-legacy/{env}", data=_state(serial)).status_code == 200
    org = create_organization(sandbox)
    started = time.monotonic()
    kept = _import(api, org, "kept", "acme-legacy/kept")
    gone = _import(api, org, "gone", "acme-legacy/gone")
    assert _serials(api, kept["id"]) == [3] and _serials(api, gone["id"]) == [3]  # the current state only, at once
    env = sandbox.store.find_environment("acme-legacy", "kept")
    assert (env["locked_by"], env["lock_reason"]) == ("operator", f"migrated to workspace {org}/kept")
    LegacyUi.for_sandbox(sandbox).delete("acme-legacy", "gone")  # before its history came over
    assert time.monotonic() - started < 1.5, "too slow to read before the history is due"
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    assert _serials(api, kept["id"]) == [3, 2, 1]
    assert _serials(api, gone["id"]) == [3]
    held = api.get(f"/api/v2/workspaces/{kept['id']}/current-state-version").json()["data"]
    assert held["attributes"]["serial"] == 3  # the history went below the current state, not over it


def test_native_path_through_the_notebooks(tmp_path, rehearsal, sandbox):
    from runbook_lib.batch import STEPS, BatchRunner
    from runbook_lib.ledger import Ledger

    org = f"native-{uuid.uuid4().hex[:8]}"
    rows = operator_mapping_rows(sandbox, ["web.prod"], org)
    result = BatchRunner(rows, STEPS[:4], mode="apply", out=tmp_path / "runs", batch_id="native", jobs=1,
                         parameters=rehearsal).run()
    assert result.ok, result.frame().to_string()
    ledger = Ledger(tmp_path / "runs" / "native" / "ledger.sqlite")
    step2 = ledger.passed("acme-legacy/web.prod", "02_create_workspaces").evidence
    assert step2["teams"]["developers"] == {"access": "write", "members": ["alice", "bob"], "not_members": []}
    assert ledger.passed("acme-legacy/web.prod", "03_migrate_state").evidence["identical_bytes"] is True
    ws = Api(sandbox).get(f"/api/v2/organizations/{org}/workspaces/web-prod").json()["data"]
    assert ws["attributes"]["migration-environment"] == "acme-legacy/web.prod"
    assert "developers write (alice, bob)" in (tmp_path / "runs" / "native" / "summary.html").read_text()
