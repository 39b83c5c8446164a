"""A legacy 404 is never proof: in every step that reads the legacy host, a 404 cannot become PASS.

The legacy host answers 404 both for what does not exist and for what the token cannot see (index.html.md of the
2018 legacy API: "404 Not Found codes are returned for all resources that a user does not have access to, as well
as for resources that don't exist"). Each test makes the host answer 404 one of the two ways: an environment that
does not exist, or the outsider's token (`SANDBOX_OUTSIDER_TOKEN`, a user of another organization) as the legacy
token (`legacy_token_var`), and checks that the step's verdict is not PASS. Where it helps to show that the 404 is
the only reason, the same step with the operator's token is the control.

One environment (`web.prod`) is migrated through steps 1-5 with the operator's token in a sandbox of this module's
own (step 5 pushes; the operator unlinks in the legacy UI), so steps 4-6 have something real to look at.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from sandbox_fixtures import sandbox_in_environ, write_operator_mapping

from runbook_lib import gates, mapping
from runbook_lib.catalog import step_parameters
from runbook_lib.context import StepContext
from runbook_lib.errors import StepError
from runbook_lib.inventory import STATE_404
from runbook_lib.legacy import NOT_FOUND
from runbook_lib.rehearsal import LegacyUi, batch_parameters
from runbook_lib.sandbox import Sandbox
from runbook_lib.steps import (commit_verify, decommission, legacy_vcs, organization, preflight, state_migration,
                               workspaces)

LEGACY_ORG, NEW_ORG = "acme-legacy", "acme"
OUTSIDER = "SANDBOX_OUTSIDER_TOKEN"  # the outsider's token, named as the legacy token: 404 for all of acme-legacy
MIGRATED = "web.prod"
GHOST = "no-such-env"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """network-prod and web.prod in a sandbox of this module's own, its variables in os.environ for the module."""
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-404"), seed=2) as sb:
        yield sb


def _write_mapping(sandbox: Sandbox, root: Path) -> None:
    """The operator's mapping of both seeded environments, plus `no-such-env` with network-prod's facts (so that
    only the 404 can stop it)."""
    path = write_operator_mapping(sandbox, root, ["network-prod", MIGRATED], new_org=NEW_ORG)
    rows = mapping.read_csv(path)
    mapping.write_csv(rows + [replace(rows[0], legacy_env=GHOST, workspace=GHOST)], path)


def _ctx(root: Path, step: str, env: str, *, token_var: str = "", **options) -> StepContext:
    """A step's context; `token_var` names the legacy token's variable (default ATLAS_TOKEN)."""
    extra = {"legacy_token_var": token_var} if token_var else {}
    return StepContext.create(step=step, legacy_org=LEGACY_ORG, legacy_env=env, new_org=NEW_ORG,
                              mode=options.pop("mode", "apply"), audit_root=str(root), interactive=False,
                              **extra, **options)


@pytest.fixture(scope="module")
def audit(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web.prod through steps 1-5 with the operator's token (API path, atlas target), each verified."""
    root = tmp_path_factory.mktemp("runs-404")
    _write_mapping(sandbox, root)
    params = batch_parameters(sandbox.env)
    for step, module, extra in [
            ("01_create_organization", organization, params),
            ("02_create_workspaces", workspaces, dict(step_parameters("02_create_workspaces", params),
                                                      accept_empty_sensitive=True)),
            ("03_migrate_state", state_migration, {})]:
        ctx = _ctx(root, step, MIGRATED, **extra)
        module.apply(ctx)
        ctx.conclude(module.verify(ctx))
    LegacyUi.for_sandbox(sandbox).unlink(LEGACY_ORG, MIGRATED)
    four = _ctx(root, "04_disable_legacy_vcs", MIGRATED, confirm=f"unlink {LEGACY_ORG}/{MIGRATED}")
    ctx_gate(four, legacy_vcs)
    four.conclude(legacy_vcs.verify(four))
    five = _ctx(root, "05_commit_and_verify", MIGRATED, backend_target="atlas", wait_timeout=120)
    commit_verify.apply(five)
    five.conclude(commit_verify.verify(five))
    return root


def ctx_gate(ctx: StepContext, module) -> object:
    """The step's gated apply as a batch runs it (the confirmation is the `confirm` parameter)."""
    action = "unlink" if module is legacy_vcs else "delete"
    return gates.guard(action, ctx.row.legacy_slug, confirm=ctx.confirm, interactive=False, run=module.apply,
                       args=(ctx,), summary=module.plan(ctx), ledger=ctx.ledger, environment=ctx.row.legacy_slug,
                       step=ctx.step, instructions=str(module.ask(ctx)))


def _writes(sandbox: Sandbox, mark: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.request_log(since=mark) if r["method"] in WRITES]


# --- step 0 ------------------------------------------------------------------------------------------------

def test_step_0_an_environment_answering_404_is_not_ready(sandbox, audit, tmp_path):
    control = preflight.survey(_ctx(audit, "00_preflight_inventory", "network-prod", mode="plan"))
    assert control.result.passed and control.result.evidence["ready"], control.result.summary

    ghost = preflight.survey(_ctx(audit, "00_preflight_inventory", GHOST, mode="plan"))
    assert not ghost.result.passed and not ghost.result.evidence["ready"]
    assert "answered 404" in ghost.result.summary and "cannot see it" in ghost.result.summary
    assert ghost.environments.iloc[0]["legacy_state"] == STATE_404
    with pytest.raises(StepError):
        ghost.conclude()

    hidden = preflight.survey(_ctx(audit, "00_preflight_inventory", "network-prod", token_var=OUTSIDER, mode="plan"))
    assert not hidden.result.passed
    assert f"organization {LEGACY_ORG} does not exist or ${OUTSIDER} cannot see it" in hidden.result.summary


# --- step 2 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env, token_var", [(GHOST, ""), ("network-prod", OUTSIDER)], ids=["missing", "outsider"])
def test_step_2_refuses_an_environment_answering_404(sandbox, audit, env, token_var):
    mark = sandbox.log_mark()
    ctx = _ctx(audit, "02_create_workspaces", env, token_var=token_var, accept_no_configuration=True)
    refused = workspaces.plan(ctx)
    assert list(refused["action"]) == ["refuse"] and "does not exist or $" in refused["detail"].iloc[0]
    with pytest.raises(StepError, match="step 2 refused, nothing changed: .*answered 404"):
        workspaces.apply(ctx)
    verdict = workspaces.verify(ctx)
    assert not verdict.passed and "answered 404" in verdict.summary
    assert _writes(sandbox, mark) == []


# --- step 3 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env, token_var", [(GHOST, ""), (MIGRATED, OUTSIDER)], ids=["missing", "outsider"])
def test_step_3_refuses_and_cannot_verify_a_state_answering_404(sandbox, audit, env, token_var):
    mark = sandbox.log_mark()
    ctx = _ctx(audit, "03_migrate_state", env, token_var=token_var)
    assert "refuse" in set(state_migration.plan(ctx)["action"])
    with pytest.raises(StepError, match="step 3 refused, nothing changed: .*answered 404"):
        state_migration.apply(ctx)
    verdict = state_migration.verify(ctx)  # web.prod's workspace holds its state: still nothing to compare it with
    assert not verdict.passed and verdict.summary.startswith("cannot compare") and "404" in verdict.summary
    assert _writes(sandbox, mark) == []


# --- step 4 ------------------------------------------------------------------------------------------------

def test_step_4_records_no_baseline_from_a_404(sandbox, audit, tmp_path):
    root = tmp_path / "runs"  # an audit trail of its own: the module's holds the operator's step-4 baseline
    _write_mapping(sandbox, root)
    ctx = _ctx(root, "04_disable_legacy_vcs", MIGRATED, token_var=OUTSIDER, confirm=f"unlink {LEGACY_ORG}/{MIGRATED}")
    with pytest.raises(StepError, match="step 4 cannot record a baseline: .*answered 404"):
        ctx_gate(ctx, legacy_vcs)
    assert not (ctx.audit_dir / legacy_vcs.BASELINE_RECORD).exists()
    verdict = legacy_vcs.verify(ctx)
    assert not verdict.passed and "no baseline" in verdict.summary
    with pytest.raises(StepError):
        ctx.conclude(verdict)


# --- step 5 ------------------------------------------------------------------------------------------------

def test_step_5_cannot_prove_the_unlink_from_a_404(sandbox, audit):
    control = _ctx(audit, "05_commit_and_verify", MIGRATED)
    record = commit_verify.push_record(control)
    assert commit_verify.legacy_reaction(control, record)[0] == []
    assert commit_verify.verify(control).passed

    hidden = _ctx(audit, "05_commit_and_verify", MIGRATED, token_var=OUTSIDER)
    problems, facts = commit_verify.legacy_reaction(hidden, record)
    assert facts["state"] == NOT_FOUND and facts["configuration_version"] is None
    assert any("the legacy state answers 404 now" in p for p in problems)
    assert any("configuration versions answer 404 now" in p for p in problems)
    verdict = commit_verify.verify(hidden)  # the run planned no changes: only the 404 stands in the way
    assert not verdict.passed and "the unlink of step 04 is not proven" in verdict.summary
    assert "answers 404" in verdict.summary


# --- step 6 ------------------------------------------------------------------------------------------------

def test_step_6_a_404_for_a_token_that_cannot_see_the_organization_is_no_deletion(sandbox, audit):
    """web.prod is still there; to the outsider its state, configuration, states list and organization are all 404."""
    ctx = _ctx(audit, "06_delete_legacy_environment", MIGRATED, token_var=OUTSIDER,
               confirm=f"delete {LEGACY_ORG}/{MIGRATED}")
    with pytest.raises(StepError, match="step 6 refused, nothing changed: the legacy state .* answers not found"):
        decommission.take_final_backup(ctx)
    proof = decommission.deletion_proof(ctx)
    assert proof["state"] == NOT_FOUND and not proof["organization_visible"]
    assert not proof["proven"] and any("no longer sees organization" in why for why in proof["unproven"])
    verdict = decommission.verify(ctx)
    assert not verdict.passed and not verdict.waits_for_operator and "is not proven" in verdict.summary
    with pytest.raises(StepError):
        ctx.conclude(verdict)
    assert sandbox.store.find_environment(LEGACY_ORG, MIGRATED) is not None  # and indeed it is not deleted


def test_step_6_an_empty_states_list_with_no_earlier_listing_is_no_deletion(sandbox, tmp_path):
    """An organization the token sees whose states list is empty: the 404 and the empty list may only mean the
    token sees nothing (or the environment never existed)."""
    store = sandbox.store
    with store.tx():
        store.create_legacy_org("empty-legacy", "ops@acme.example")
        store.add_legacy_member("empty-legacy", store.find_user("operator")["id"], "admin")
    ctx = StepContext.create(step="06_delete_legacy_environment", legacy_org="empty-legacy", legacy_env="ghost",
                             new_org=NEW_ORG, mode="apply", audit_root=str(tmp_path / "runs"), interactive=False,
                             confirm="delete empty-legacy/ghost")
    proof = decommission.deletion_proof(ctx)
    assert proof["state"] == NOT_FOUND and proof["organization_visible"] and proof["others"] == 0
    assert not proof["proven"] and any("states list is empty" in why for why in proof["unproven"])
    verdict = decommission.verify(ctx)
    assert not verdict.passed and "is not proven" in verdict.summary


def test_step_6_a_404_for_an_environment_this_trail_never_saw_is_no_deletion(sandbox, audit):
    """The organization is visible and lists others, but nothing shows no-such-env ever existed: it was never
    deleted, so the step cannot say it is gone."""
    ctx = _ctx(audit, "06_delete_legacy_environment", GHOST, confirm=f"delete {LEGACY_ORG}/{GHOST}")
    proof = decommission.deletion_proof(ctx)
    assert proof["state"] == NOT_FOUND and proof["organization_visible"] and proof["others"] >= 1
    assert not proof["proven"]
    verdict = decommission.verify(ctx)
    assert not verdict.passed and "is not proven" in verdict.summary
