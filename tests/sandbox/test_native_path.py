"""migration_path = "native": the host's own import creates the workspace; the runbook plans, locks and proves."""

from __future__ import annotations

import dataclasses

import pytest
from sandbox_helpers import Api, step_context

from runbook_lib import native
from runbook_lib.errors import StepError
from runbook_lib.sandbox import Sandbox
from runbook_lib.steps import organization, state_migration, workspaces


_ctx = step_context


@pytest.fixture
def rehearsal(rehearsal):
    """The shared rehearsal parameters, on the host's own import path."""
    return {**rehearsal, "migration_path": "native"}


def _changes(sandbox: Sandbox, mark: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.request_log(since=mark) if r["changes"]]


def test_native_path_end_to_end_is_proven_like_the_others(tmp_path, rehearsal, seeded_sandbox, new_org):
    organization.apply(_ctx(tmp_path, "01_create_organization", "dns-prod", new_org, **rehearsal))
    ctx = _ctx(tmp_path, "02_create_workspaces", "dns-prod", new_org, mode="plan", **rehearsal)
    plan = workspaces.plan(ctx)
    row = plan[plan["object"] == "host import"].iloc[0]
    assert row["action"] == "create" and "migration-environment" in row["detail"]

    ctx = _ctx(tmp_path, "02_create_workspaces", "dns-prod", new_org, **rehearsal)
    done = workspaces.apply(ctx)
    # the host copied variables (sensitive values included) and teams; the runbook only locked
    assert not (done["object"] == "variable").any()
    assert "no account on the new host" not in " | ".join(done["result"])  # existing team is adopted, not changed
    verdict = workspaces.verify(ctx)
    assert verdict.passed, verdict.summary  # no sensitive variable left empty: the host had the values
    assert verdict.evidence["teams"]["auditors"] == {"access": "read", "members": ["carol"], "not_members": ["dave"]}
    api = Api(seeded_sandbox)
    ws = api.get(f"/api/v2/organizations/{new_org}/workspaces/dns-prod").json()["data"]
    assert ws["attributes"]["migration-environment"] == "acme-legacy/dns-prod" and ws["attributes"]["locked"]

    ctx = _ctx(tmp_path, "03_migrate_state", "dns-prod", new_org, **rehearsal)
    mark = seeded_sandbox.log_mark()
    moved = state_migration.apply(ctx)
    assert moved["action"].iloc[0] == "adopt" and _changes(seeded_sandbox, mark) == []  # nothing uploaded
    proof = state_migration.verify(ctx)
    assert proof.passed and proof.evidence["identical_bytes"] is True, proof.summary


def test_native_path_refusals(tmp_path, rehearsal, seeded_sandbox, new_org, monkeypatch):
    organization.apply(_ctx(tmp_path, "01_create_organization", "web.prod", new_org, **rehearsal))
    # legacy environments on another host: refused by the runbook before anything is sent
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, mode="plan", **rehearsal)
    ctx.settings = dataclasses.replace(ctx.settings, legacy_address="https://atlas.example.com")
    reason = native.unsupported(ctx)
    assert reason.startswith("the new host cannot import acme-legacy/web.prod itself") and "'api'" in reason

    store = seeded_sandbox.store
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
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match="owners team of .*migration_path = 'api'"):
        workspaces.apply(ctx)
    # an owner of the new organization only: the host refuses the import, nothing is created
    monkeypatch.setenv("TFE_TOKEN", store.create_token(owner["id"], "native-owner-token"))
    ctx = _ctx(tmp_path, "02_create_workspaces", "web.prod", new_org, **rehearsal)
    with pytest.raises(StepError, match="refused to import acme-legacy/web.prod.*owners team in both.*'api'"):
        workspaces.apply(ctx)
    assert _changes(seeded_sandbox, mark) == []


def test_step_3_native_refuses_a_workspace_without_the_imported_state(tmp_path, rehearsal, seeded_sandbox, new_org):
    api_path = {**rehearsal, "migration_path": "api"}
    organization.apply(_ctx(tmp_path, "01_create_organization", "queue-prod", new_org, **api_path))
    workspaces.apply(_ctx(tmp_path, "02_create_workspaces", "queue-prod", new_org, **api_path))
    plan = state_migration.plan(_ctx(tmp_path, "03_migrate_state", "queue-prod", new_org, mode="plan", **rehearsal))
    assert plan.loc[plan["object"] == "state version", "action"].iloc[0] == "refuse"
    ctx = _ctx(tmp_path, "03_migrate_state", "queue-prod", new_org, **rehearsal)
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match="does not hold the legacy state.*migration_path = 'api'"):
        state_migration.apply(ctx)
    assert _changes(seeded_sandbox, mark) == []


def test_native_path_through_the_notebooks(tmp_path, rehearsal, seeded_sandbox):
    import uuid

    from runbook_lib.batch import STEPS, BatchRunner
    from runbook_lib.ledger import Ledger
    from runbook_lib.mapping import propose

    org = f"native-{uuid.uuid4().hex[:8]}"
    rows = propose("acme-legacy", ["search-staging"], org)
    result = BatchRunner(rows, STEPS[:4], mode="apply", out=tmp_path / "runs", batch_id="native", jobs=1,
                         parameters=rehearsal).run()
    assert result.ok, result.frame().to_string()
    ledger = Ledger(tmp_path / "runs" / "native" / "ledger.sqlite")
    step2 = ledger.passed("acme-legacy/search-staging", "02_create_workspaces").evidence
    assert step2["teams"]["developers"] == {"access": "write", "members": ["alice", "bob"], "not_members": []}
    assert ledger.passed("acme-legacy/search-staging", "03_migrate_state").evidence["identical_bytes"] is True
    ws = Api(seeded_sandbox).get(f"/api/v2/organizations/{org}/workspaces/search-staging").json()["data"]
    assert ws["attributes"]["migration-environment"] == "acme-legacy/search-staging"
    assert "developers write (alice, bob)" in (tmp_path / "runs" / "native" / "summary.html").read_text()
