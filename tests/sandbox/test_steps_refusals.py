"""Every refusal of steps 1-3 changes nothing: the sandbox request log shows no write for it (issue 7)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from sandbox_fixtures import write_operator_mapping
from sandbox_helpers import step_context

from runbook_lib.errors import ConfigError, StepError
from runbook_lib.http import ReadOnlyError
from runbook_lib.legacy import LegacyClient
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.steps import organization, state_migration, workspaces
from runbook_lib.tfe import TfeClient
from runbook_lib.settings import Settings


_ctx = step_context


def _prepare(tmp_path, rehearsal, env, org, sandbox):
    """Steps 1 and 2 applied for `env` into `org`, from the mapping the survey and the operator wrote."""
    write_operator_mapping(sandbox, tmp_path / "runs", [env], new_org=org)
    for step, module in (("01_create_organization", organization), ("02_create_workspaces", workspaces)):
        ctx = _ctx(tmp_path, step, env, org, **rehearsal, accept_empty_sensitive=True)
        module.apply(ctx)
        assert module.verify(ctx).passed


def _no_writes(sandbox: Sandbox, mark: int) -> None:
    rows = sandbox.request_log(since=mark)
    assert rows, "the refusal must have been decided from the servers' answers"
    assert sum(r["changes"] for r in rows) == 0, [f"{r['method']} {r['path']}" for r in rows if r["changes"]]


def test_taken_organization_name_is_refused(tmp_path, rehearsal, seeded_sandbox):
    ctx = _ctx(tmp_path, "01_create_organization", "network-prod", "outsider-corp", **rehearsal)
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match="not available.*globally unique"):
        organization.apply(ctx)
    _no_writes(seeded_sandbox, mark)


def test_existing_workspace_that_differs_is_refused_with_a_diff(tmp_path, rehearsal, seeded_sandbox, new_org):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", ["network-prod"], new_org=new_org)
    TfeClient(Settings.from_env()).create_workspace(new_org, "network-prod", {"terraform-version": "1.2.3"})
    ctx = _ctx(tmp_path, "01_create_organization", "network-prod", new_org, **rehearsal)
    organization.apply(ctx)
    ctx = _ctx(tmp_path, "02_create_workspaces", "network-prod", new_org)
    mark = seeded_sandbox.log_mark()  # before the plan: in a batch the apply acts on the plan's reads
    frame = workspaces.plan(ctx)
    assert "terraform-version" in frame.loc[frame["object"] == "workspace", "detail"].iloc[0]
    with pytest.raises(StepError, match="exists and differs.*terraform-version.*'1.2.3'"):
        workspaces.apply(ctx)
    _no_writes(seeded_sandbox, mark)


@pytest.mark.parametrize("env, holder", [("app-staging", "a run in progress"), ("db-prod", "a lock by operator")])
def test_a_legacy_lock_or_run_shown_only_in_the_ui_is_left_to_the_operator(tmp_path, rehearsal, seeded_sandbox,
                                                                           new_org, env, holder):
    """The legacy API shows neither locks nor runs (guide 3.a: the operator checks the UI), so step 3 cannot refuse
    them: its plan sends the operator to the runs page, and what it uploads is the state it read again just before."""
    store = seeded_sandbox.store
    row = store.find_environment("acme-legacy", env)
    assert store.current_legacy_run(row["id"]) is not None or row["locked_by"] == "operator", holder  # the seed's
    _prepare(tmp_path, rehearsal, env, new_org, seeded_sandbox)
    ctx = _ctx(tmp_path, "03_migrate_state", env, new_org)
    shown = state_migration.plan(ctx).set_index("object").loc["legacy locks and runs"]
    assert shown["action"] == "none" and f"/terraform/acme-legacy/environments/{env}/changes/runs" in shown["detail"]
    state_migration.apply(ctx)
    result = state_migration.verify(ctx)
    assert result.passed and result.evidence["identical_bytes"], result.summary
    assert result.evidence["legacy_serial"] == ctx.legacy.get_state("acme-legacy", env).serial


def test_workspace_holding_another_lineage_is_refused(tmp_path, rehearsal, seeded_sandbox, new_org):
    _prepare(tmp_path, rehearsal, "network-prod", new_org, seeded_sandbox)
    tfe = TfeClient(Settings.from_env())
    ws = tfe.get_workspace(new_org, "network-prod")
    foreign = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 9, "lineage": "someone-else",
                          "outputs": {}, "resources": []}).encode()
    tfe.push_state(ws.id, foreign)
    ctx = _ctx(tmp_path, "03_migrate_state", "network-prod", new_org)
    mark = seeded_sandbox.log_mark()  # before the plan: in a batch the apply acts on the plan's reads
    assert "refuse" in set(state_migration.plan(ctx)["action"])
    with pytest.raises(StepError, match="another lineage \\(someone-else"):
        state_migration.apply(ctx)
    _no_writes(seeded_sandbox, mark)
    assert tfe.download_state(tfe.current_state_version(ws.id)) == foreign


def test_plan_mode_cannot_write(tmp_path, rehearsal, seeded_sandbox):
    ctx = _ctx(tmp_path, "01_create_organization", "network-prod", "never-created-org", mode="plan", **rehearsal)
    mark = seeded_sandbox.log_mark()
    with pytest.raises(ReadOnlyError):
        organization.apply(ctx)
    assert [r for r in seeded_sandbox.request_log(since=mark) if r["method"] != "GET"] == []


def test_unknown_environment_and_bad_options_are_clear(tmp_path, rehearsal, seeded_sandbox, new_org):
    unknown = _ctx(tmp_path, "03_migrate_state", "no-such-env", new_org)
    mark = seeded_sandbox.log_mark()  # before the plan: the apply acts on the plan's reads
    refused = state_migration.plan(unknown).set_index("object").loc["legacy state"]
    assert refused["action"] == "refuse" and "no-such-env does not exist or $ATLAS_TOKEN cannot see it" in \
        refused["detail"]
    with pytest.raises(StepError, match="step 3 refused, nothing changed: .*answered 404.*check the name"):
        state_migration.apply(unknown)
    _no_writes(seeded_sandbox, mark)
    # Step 2 reads the environment's facts from the mapping, and there is no line for it: it says where to write it.
    planned = workspaces.plan(_ctx(tmp_path, "02_create_workspaces", "no-such-env", new_org))
    assert list(planned["action"]) == ["refuse"] and "write it with notebook 00" in planned["detail"].iloc[0]
    with pytest.raises(ConfigError, match="migration_path must be"):
        state_migration.plan(_ctx(tmp_path, "03_migrate_state", "network-prod", new_org, migration_path="ftp"))
    with pytest.raises(ConfigError, match="new lineage"):
        state_migration.plan(_ctx(tmp_path, "03_migrate_state", "network-prod", new_org, migration_path="cli",
                                  cli_target="cloud"))
    with pytest.raises(ConfigError, match="workspace name"):
        _ctx(tmp_path, "02_create_workspaces", "network-prod", new_org, workspace="bad.name")


@pytest.fixture
def own_sandbox(tmp_path, monkeypatch):
    """A sandbox of this test's own with one seeded environment, for tests that change legacy state."""
    with Sandbox(tmp_path / "own", seed=1) as sandbox:
        for name, value in batch_environ(sandbox.env).items():
            monkeypatch.setenv(name, value)
        yield sandbox


def test_legacy_state_that_moved_between_backup_and_upload_is_not_uploaded(tmp_path, own_sandbox):
    """Someone applies in the legacy environment while step 3 runs (a legacy lock or run the operator missed in the
    UI): the step reads the state again right before the upload, refuses, and uploads nothing."""
    params = batch_parameters(own_sandbox.env)
    _prepare(tmp_path, params, "network-prod", "acme", own_sandbox)
    ctx = _ctx(tmp_path, "03_migrate_state", "network-prod", "acme")
    legacy_path = "/api/v1/terraform/state/acme-legacy/network-prod"
    before = LegacyClient(Settings.from_env(own_sandbox.env), read_only=True).get_state("acme-legacy", "network-prod")
    moved = json.loads(before.data)
    moved["serial"] += 1
    mark = own_sandbox.log_mark()

    def someone_applies() -> None:
        # right after step 3 read the state for its backup, while its workspace lookup is slowed down
        deadline = time.monotonic() + 60
        while not own_sandbox.request_log(since=mark, method="GET", path_prefix=legacy_path):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        other = LegacyClient(Settings.from_env(own_sandbox.env))
        other.put_state("acme-legacy", "network-prod", json.dumps(moved).encode())

    actor = threading.Thread(target=someone_applies)
    own_sandbox.set_faults(latency_ms=1500, methods=["GET"], path_prefix="/api/v2/organizations/acme/workspaces/")
    actor.start()
    try:
        with pytest.raises(StepError, match=f"changed between backup \\(serial {before.serial}, .* and upload: it "
                                            f"moved to serial {moved['serial']}.*nothing was uploaded"):
            state_migration.apply(ctx)
    finally:
        actor.join(60)
        own_sandbox.clear_faults()
    writes = [f"{r['method']} {r['path']}" for r in own_sandbox.request_log(since=mark) if r["changes"]]
    assert writes == [f"PUT {legacy_path}"], writes  # the other writer's, and nothing of step 3's
    ws = ctx.tfe.get_workspace("acme", "network-prod")
    assert ctx.tfe.current_state_version(ws.id) is None
    backups = sorted(p.name for p in (tmp_path / "runs" / "acme-legacy__network-prod" / "state").glob("*.tfstate"))
    assert backups and all(f"serial{before.serial}-" in name for name in backups)  # the backup of what it read
    # Run again, the step backs up the new serial and migrates it.
    again = _ctx(tmp_path, "03_migrate_state", "network-prod", "acme")
    state_migration.apply(again)
    result = state_migration.verify(again)
    assert result.passed and result.evidence["workspace_serial"] == moved["serial"]
