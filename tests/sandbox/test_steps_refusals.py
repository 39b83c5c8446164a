"""Every refusal of steps 1-3 changes nothing: the sandbox request log shows no write for it (issue 7)."""

from __future__ import annotations

import json

import pytest

from sandbox_helpers import step_context

from runbook_lib.errors import ConfigError, NotFoundError, StepError
from runbook_lib.http import ReadOnlyError
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.steps import organization, state_migration, workspaces
from runbook_lib.tfe import TfeClient
from runbook_lib.settings import Settings


_ctx = step_context


def _prepare(tmp_path, rehearsal, env, org):
    """Steps 1 and 2 applied for `env` into `org`."""
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


@pytest.mark.parametrize("env, message", [
    ("app-staging", "legacy run is in progress"),
    ("db-prod", "locked by operator.*change freeze"),
])
def test_legacy_run_in_progress_or_lock_refuses_step_3(tmp_path, rehearsal, seeded_sandbox, new_org, env, message):
    _prepare(tmp_path, rehearsal, env, new_org)
    ctx = _ctx(tmp_path, "03_migrate_state", env, new_org)
    mark = seeded_sandbox.log_mark()
    with pytest.raises(StepError, match=message):
        state_migration.apply(ctx)
    _no_writes(seeded_sandbox, mark)
    assert not list((tmp_path / "runs" / f"acme-legacy__{env}").glob("state/*.tfstate")), "no backup either"


def test_workspace_holding_another_lineage_is_refused(tmp_path, rehearsal, seeded_sandbox, new_org):
    _prepare(tmp_path, rehearsal, "network-prod", new_org)
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
    with pytest.raises(NotFoundError, match="404"):
        workspaces.plan(_ctx(tmp_path, "02_create_workspaces", "no-such-env", new_org))
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


def test_legacy_state_that_moved_after_the_backup_is_not_uploaded(tmp_path, own_sandbox):
    params = batch_parameters(own_sandbox.env)
    _prepare(tmp_path, params, "network-prod", "acme")
    ctx = _ctx(tmp_path, "03_migrate_state", "network-prod", "acme")
    backed_up = ctx.legacy.get_state("acme-legacy", "network-prod")
    state_migration.backup(ctx, backed_up)
    # Someone applies in the legacy environment after the backup: serial goes up, same lineage.
    moved = json.loads(backed_up.data)
    moved["serial"] += 1
    ctx.legacy.put_state("acme-legacy", "network-prod", json.dumps(moved).encode())
    mark = own_sandbox.log_mark()
    with pytest.raises(StepError, match="changed between backup .* and upload"):
        state_migration._recheck_legacy(ctx, backed_up)
    _no_writes(own_sandbox, mark)
    ws = ctx.tfe.get_workspace("acme", "network-prod")
    assert ctx.tfe.current_state_version(ws.id) is None
    # Run again, the step backs up the new serial and migrates it.
    state_migration.apply(ctx)
    result = state_migration.verify(ctx)
    assert result.passed and result.evidence["workspace_serial"] == moved["serial"]
