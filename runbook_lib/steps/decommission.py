"""Step 6: delete the legacy environment, only with recorded proof and an explicit confirmation.

The seed: "Once the new workspace configuration is verified it is safe to delete the legacy
environment." Verified means, here, a PASS of step 05_commit_and_verify for this environment in the
ledger (the workspace's run for the pushed commit planned no changes, and the legacy environment did
not run). Deleting is gated (`runbook_lib.gates`, action ``delete``): a batch needs
``confirm = "delete <LEGACY_ORG>/<ENV>"``, an operator in JupyterLab clicks the button.

Apply, in this order, stopping with nothing changed at the first problem:

1. the ledger holds step 5's PASS (its evidence: run id, commit, plan counts);
2. no legacy run is in progress;
3. final backup: the legacy state goes to the audit trail once more (mode 0600); its sha256 is compared
   with step 3's backup from the ledger. When they differ, the legacy state moved after it was
   migrated and the workspace may not hold the latest one: refused. When step 3's evidence is not in
   this ledger, the sha256 is recorded anew;
4. ``DELETE`` the environment (with its state, variables and runs), then read it back: it must be gone.

Without step 5's evidence or (in a batch) the confirmation, `check_ready` says which is missing before
any button is shown or anything is sent. Verify: the legacy host no longer knows the environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import StepError
from runbook_lib.evidence import CutOver, EvidenceError, MigratedState, StateReaders
from runbook_lib.gates import phrase, recorded_decision
from runbook_lib.ledger import StepRun
from runbook_lib.results import StepResult
from runbook_lib.state import TerraformState
from runbook_lib.steps import plan_frame
from runbook_lib.steps.state_migration import backup

VERIFY_STEP = catalog.COMMIT_AND_VERIFY
MIGRATE_STEP = catalog.MIGRATE_STATE
BACKUP_LABEL = "final"


def step5_evidence(ctx: StepContext) -> StepRun | None:
    """Step 5's recorded PASS for this environment (apply mode), or None."""
    return ctx.ledger.passed(ctx.row.legacy_slug, VERIFY_STEP, "apply")


def _evidence_problem(ctx: StepContext) -> str | None:
    run = step5_evidence(ctx)
    if run is None:
        latest = ctx.ledger.latest(ctx.row.legacy_slug, VERIFY_STEP, "apply")
        seen = f" (its latest run there {latest.status})" if latest is not None else ""
        return (f"evidence: the ledger {ctx.ledger.path} holds no PASS of step {VERIFY_STEP} in apply mode for "
                f"{ctx.row.legacy_slug}{seen}; run step 5 in apply mode until it passes")
    try:
        cut = CutOver.from_evidence(run.evidence, ctx.row.legacy_slug)
    except EvidenceError as exc:
        return f"evidence: {exc}"
    if cut.has_changes or cut.plan.any:
        return f"evidence: step 5's recorded run {cut.run_id} planned changes ({cut.plan})"
    return None


def readers_problem(ctx: StepContext) -> str | None:
    """Environments (known to this batch's ledger) whose configuration still reads this one's legacy state.

    Their `terraform_remote_state` sources read this environment through the atlas backend: step 0 saw it
    in their legacy state, or their step 5 found it in their configuration and could not repoint it (the
    source's workspace held no state yet). Deleting it would break their plans, until their step 5 has
    repointed the source to the migrated workspace (step 5's evidence lists what each still reads) or they
    are gone themselves.
    """
    readers, unreadable = [], []
    slug = ctx.row.legacy_slug
    for env in sorted({run.environment for run in ctx.ledger.history()} - {slug}):
        try:
            inventory = ctx.ledger.latest(env, StateReaders.STEP)
            # not inventoried here, or its inventory still running (it records nothing until it ends): no say
            listed = (inventory is not None and inventory.status != "running"
                      and slug in StateReaders.from_evidence(inventory.evidence, env).reads_state_of)
            cut_over = ctx.ledger.passed(env, VERIFY_STEP, "apply")
            # once cut over, its configuration as pushed says: what step 5 left reading the legacy host,
            # whatever step 0 saw in its state (a source never applied is in the configuration only)
            reading = (slug in CutOver.from_evidence(cut_over.evidence, env).still_reads_legacy
                       if cut_over is not None else listed)
            if not reading:
                continue
        except EvidenceError as exc:
            unreadable.append(str(exc))
            continue
        org, _, name = env.partition("/")
        if ctx.legacy.find_environment(org, name) is None:
            continue
        readers.append(env)
    problems = []
    if readers:
        problems.append(f"readers: {', '.join(readers)} still read this environment's state through "
                        f"terraform_remote_state; their step 5 repoints that source to the migrated workspace, "
                        f"run it first")
    if unreadable:
        # Whether another environment still reads this state cannot be told: refuse rather than guess.
        problems.append("readers: cannot tell who still reads this state: " + "; ".join(unreadable))
    return "; ".join(problems) or None


def _legacy_problems(env: dict[str, Any]) -> list[str]:
    run = env.get("current_run") or {}
    if run:
        return [f"legacy run {run.get('id')} is in progress ({run.get('status')}); wait for it to finish"]
    return []


def _step3_sha256(ctx: StepContext) -> str | None:
    run = ctx.ledger.passed(ctx.row.legacy_slug, MIGRATE_STEP, "apply")
    if run is None:
        return None
    try:
        return MigratedState.from_evidence(run.evidence, ctx.row.legacy_slug).legacy_sha256
    except EvidenceError as exc:
        raise StepError(f"step 6 refused, nothing changed ({ctx.row.legacy_slug} is not deleted): {exc}") from exc


def check_ready(ctx: StepContext) -> str:
    """Refuse, naming everything missing, before the gate asks anything.

    Checks step 5's evidence in the ledger, a legacy run in progress, and, in a batch, the confirmation
    parameter (interactively the button asks for it next).

    Returns:
        One line saying what the deletion rests on.

    Raises:
        StepError: something is missing; the message lists all of it. Nothing was changed.
    """
    missing = [problem for problem in (_evidence_problem(ctx), readers_problem(ctx)) if problem]
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    if env is not None:
        missing += _legacy_problems(env)
    wanted = phrase("delete", ctx.row.legacy_slug)
    if not ctx.interactive and (ctx.confirm or "").strip() != wanted:
        given = (ctx.confirm or "").strip()
        missing.append(f"confirmation: set confirm = {wanted!r} (or put that line in the batch's confirm file)"
                       + (f"; {given!r} does not name this action and environment" if given else ""))
    if missing:
        raise StepError(f"step 6 refused, nothing changed ({ctx.row.legacy_slug} is not deleted); missing "
                        + "; ".join(missing) + ".")
    run = step5_evidence(ctx)
    assert run is not None
    how = "the confirm parameter" if (ctx.confirm or "").strip() == wanted else "the button below, once you click it"
    return (f"ready: step 5 passed at {run.finished_at} "
            f"(run {CutOver.from_evidence(run.evidence, ctx.row.legacy_slug).run_id}, no changes); "
            f"confirmation by {how}")


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: check step 5's evidence, back up the legacy state a last time, delete."""
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    if env is None:
        return plan_frame([{"object": "legacy environment", "name": ctx.row.legacy_slug, "action": "none",
                            "detail": "already deleted"}])
    rows: list[dict[str, Any]] = []
    run = step5_evidence(ctx)
    problem = _evidence_problem(ctx)
    if problem:
        # Plan mode may run before step 5 did: say what apply would wait for (apply refuses until then).
        rows.append({"object": "step 5 evidence", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": problem.removeprefix("evidence: ") + " (apply refuses until then)"})
    else:
        assert run is not None
        cut = CutOver.from_evidence(run.evidence, ctx.row.legacy_slug)  # read once already by _evidence_problem
        rows.append({"object": "step 5 evidence", "name": ctx.row.legacy_slug, "action": "adopt",
                     "detail": f"PASS at {run.finished_at}: run {cut.run_id} of commit {cut.commit[:12]}, plan "
                               f"{cut.plan.add} to add, {cut.plan.change} to change, {cut.plan.destroy} to destroy"})
    for problem in _legacy_problems(env):
        rows.append({"object": "legacy run", "name": ctx.row.legacy_slug, "action": "refuse", "detail": problem})
    state = ctx.legacy.get_state(ctx.row.legacy_org, ctx.row.legacy_env)
    if state is None:
        rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": "the legacy environment has no state: nothing to back up"})
    else:
        parsed = TerraformState.from_bytes(state.data)
        step3 = _step3_sha256(ctx)
        if step3 and step3 != parsed.sha256:
            rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "refuse",
                         "detail": f"the legacy state changed since step 3's backup (sha256 {step3[:16]}... -> "
                                   f"{parsed.sha256[:16]}..., serial {parsed.serial}): migrate it again first"})
        else:
            compared = "same sha256 as step 3's backup" if step3 else "step 3's sha256 not in this ledger: recorded anew"
            rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "create",
                         "detail": f"serial {parsed.serial}, sha256 {parsed.sha256[:16]}... ({compared})"})
    rows.append({"object": "legacy environment", "name": ctx.row.legacy_slug, "action": "delete",
                 "detail": f"with its state, variables and runs (gated: {phrase('delete', ctx.row.legacy_slug)})"})
    return plan_frame(rows)


def apply(ctx: StepContext) -> pd.DataFrame:
    """Final backup, compare with step 3's, delete, read back.

    Called by the gate once the deletion is confirmed. Idempotent: an environment already gone is
    reported, not deleted again.

    Returns:
        A table of what was done (final backup file and sha256, deletion).

    Raises:
        StepError: step 5's evidence is missing, a legacy run is in progress, the legacy state changed
            since step 3, or the environment is still there after the DELETE. Nothing was deleted
            unless the message says so.
    """
    columns = ["object", "name", "result"]
    # The plan's answers, read a moment ago in a batch (in JupyterLab every cell reads afresh).
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    if env is None:
        return pd.DataFrame([{"object": "legacy environment", "name": ctx.row.legacy_slug,
                              "result": "already deleted"}], columns=columns)
    problems = [p for p in (_evidence_problem(ctx), readers_problem(ctx)) if p] + _legacy_problems(env)
    if problems:
        raise StepError(f"step 6 refused, nothing changed ({ctx.row.legacy_slug} is not deleted); missing "
                        + "; ".join(problems) + ".")
    done = []
    state = ctx.legacy.get_state(ctx.row.legacy_org, ctx.row.legacy_env)
    if state is not None:
        record = backup(ctx, state, label=BACKUP_LABEL)
        step3 = _step3_sha256(ctx)
        if step3 and step3 != record["sha256"]:
            raise StepError(f"step 6 refused, nothing deleted: the legacy state changed since step 3's backup "
                            f"(sha256 {step3} then, {record['sha256']} now, serial {record['serial']}); the workspace "
                            f"may not hold the latest state. Migrate it again (step 3), verify (step 5), then delete.")
        record["matches_step3"] = step3 == record["sha256"] if step3 else None
        summary_file = ctx.state_dir / f"{BACKUP_LABEL}.json"
        summary_file.write_text(json.dumps(record, indent=2) + "\n")
        os.chmod(summary_file, 0o600)
        done.append({"object": "final backup", "name": record["file"],
                     "result": f"sha256 {record['sha256']}"
                               + (" = step 3's backup" if step3 else " (recorded anew: step 3's not in this ledger)")})
    ctx.legacy.delete_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    if ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env) is not None:
        raise StepError(f"the legacy host accepted the DELETE but still shows {ctx.row.legacy_slug}; check it by hand.")
    done.append({"object": "legacy environment", "name": ctx.row.legacy_slug, "result": "deleted"})
    return pd.DataFrame(done, columns=columns)


def final_backup(ctx: StepContext) -> dict[str, Any] | None:
    """The final backup's record (file, serial, sha256, matches_step3) in this audit trail, or None."""
    path = ctx.state_dir / f"{BACKUP_LABEL}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verify(ctx: StepContext) -> StepResult:
    """The legacy host no longer knows the environment.

    Interactively, before the button was clicked, this fails with "waiting for your confirmation".
    """
    env = ctx.legacy.find_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    decision = recorded_decision(ctx.ledger, ctx.row.legacy_slug, ctx.step, after_row=ctx.started_row_id)
    run = step5_evidence(ctx)
    record = final_backup(ctx)
    evidence: dict[str, Any] = {
        "deleted": env is None, "confirmation": decision,
        "step5_run_id": run.evidence.get("run_id") if run else None,
        "step5_commit": run.evidence.get("commit") if run else None,
        "final_backup": record}
    if env is not None:
        if ctx.interactive and decision is None:
            return StepResult(False, "waiting for your confirmation: click the button above, then run this cell again "
                                     f"({ctx.row.legacy_slug} still exists)", evidence)
        return StepResult(False, f"{ctx.row.legacy_slug} still exists on the legacy host", evidence)
    backed = (f"final backup sha256 {record['sha256'][:16]}..." if record
              else "no final backup in this audit trail (deleted earlier)")
    who = f"; confirmed by {decision['operator']} via {decision['via']} at {decision['decided_at']}" if decision else ""
    return StepResult(True, f"{ctx.row.legacy_slug} is gone from the legacy host ({backed}){who}", evidence)
