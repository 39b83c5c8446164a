"""Step 6: the operator deletes the legacy environment in the legacy UI, after the final backup; the step proves it.

The seed: "Once the new workspace configuration is verified it is safe to delete the legacy
environment." Verified means, here, a PASS of step 05_commit_and_verify for this environment in the
ledger (the workspace's run for the pushed commit planned no changes, and the legacy host did not react to
the push). The legacy host has no API to delete an environment; its UI does (the environment's settings page).

In this order, stopping with nothing changed at the first problem:

1. `check_ready`: the ledger holds step 5's PASS (its evidence: run id, commit, plan counts), and no
   environment of the batch still reads this one's state;
2. `take_final_backup`: the legacy state goes to the audit trail once more (mode 0600) and its sha256 is
   compared with step 3's backup from the ledger: when they differ, the legacy state moved after it was
   migrated and the workspace may not hold the latest one: refused. The states list is read too, to know
   how many environments the token saw before the deletion;
3. the gate (action ``delete``): the operator deletes the environment in the legacy UI and says so (in
   JupyterLab the button, after typing the environment's name; in a batch the line ``delete <LEGACY_ORG>/<ENV>``
   in the confirm file, else the step stops as WAITING). The runbook never deletes it itself;
4. `apply` and `verify` prove the deletion by positive signals only, because a legacy 404 alone means
   "missing or not visible to this token": the state read answers 404, AND the organization's states list no
   longer has the environment, AND the same token still sees the organization (its user read works, and
   another environment is listed now or the list held this one before). A state that still answers means the
   operator has not deleted it yet (WAITING); any other gap fails the step, naming what could not be proven.

On the native path (the host's own import) the host copies the legacy state history in the background and
shows no status to users (upgrade guide, Step 4); the plan says so, since deleting first loses that history.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pandas as pd

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import NotFoundError, StepError
from runbook_lib.evidence import CutOver, EvidenceError, MigratedState, StateReaders
from runbook_lib.gates import phrase, recorded_decision
from runbook_lib.legacy import NOT_FOUND
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
    repointed the source to the migrated workspace (step 5's evidence lists what each still reads) or their
    own step 6 has proven them deleted.
    """
    readers, unreadable = [], []
    slug = ctx.row.legacy_slug
    for env in sorted({run.environment for run in ctx.ledger.history()} - {slug}):
        if env.endswith("/" + catalog.ALL_ENVIRONMENTS):
            continue  # step 0's survey of the whole organization: not an environment, it reads no state
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
        if ctx.ledger.passed(env, catalog.DELETE_LEGACY_ENVIRONMENT, "apply") is not None:
            continue  # its own step 6 proved it deleted: it reads nothing any more
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


def _step3_sha256(ctx: StepContext) -> str | None:
    run = ctx.ledger.passed(ctx.row.legacy_slug, MIGRATE_STEP, "apply")
    if run is None:
        return None
    try:
        return MigratedState.from_evidence(run.evidence, ctx.row.legacy_slug).legacy_sha256
    except EvidenceError as exc:
        raise StepError(f"step 6 refused, nothing changed ({ctx.row.legacy_slug} is not deleted): {exc}") from exc


def check_ready(ctx: StepContext) -> str:
    """Refuse, naming everything missing, before the final backup and the gate.

    Returns:
        One line saying what the deletion rests on.

    Raises:
        StepError: step 5's evidence is missing, or another environment still reads this state. Nothing was
            changed.
    """
    missing = [problem for problem in (_evidence_problem(ctx), readers_problem(ctx)) if problem]
    if missing:
        raise StepError(f"step 6 refused, nothing changed ({ctx.row.legacy_slug} is not deleted); missing "
                        + "; ".join(missing) + ".")
    run = step5_evidence(ctx)
    assert run is not None
    return (f"ready: step 5 passed at {run.finished_at} "
            f"(run {CutOver.from_evidence(run.evidence, ctx.row.legacy_slug).run_id}, no changes)")


def ask(ctx: StepContext) -> str:
    """Where and how the operator deletes the environment (markdown)."""
    return (f"**Delete {ctx.row.legacy_slug} in the legacy UI**: open `{ctx.legacy_page('settings')}`, section "
            f"“Delete environment”, type its name and delete it. The final backup is in this step's "
            f"audit trail (above).\n\nThen say it is done: type `{ctx.row.legacy_slug}` below and click the "
            f"button, or in a batch add the line `{phrase('delete', ctx.row.legacy_slug)}` to the confirm file. "
            f"The step then proves the deletion from the legacy host.")


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: check step 5's evidence, back up the legacy state a last time, wait for the
    operator's deletion in the UI, prove it."""
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
    readers = readers_problem(ctx)
    if readers:
        rows.append({"object": "readers", "name": ctx.row.legacy_slug, "action": "refuse", "detail": readers})
    record = final_backup(ctx)
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env)
    if record is not None:
        rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "adopt",
                     "detail": f"taken at {record['taken_at']}: serial {record['serial']}, sha256 "
                               f"{record['sha256'][:16]}..."})
    elif read.state is None:
        rows.append({"object": "final backup", "name": ctx.row.legacy_slug,
                     "action": "none" if ctx.options.accept_no_final_backup else "refuse",
                     "detail": f"the legacy state answers {read.found} and no final backup is recorded: "
                               + ("accepted (accept_no_final_backup); step 3's backup is the last copy"
                                  if ctx.options.accept_no_final_backup else
                                  "deleted before step 6 could back it up? Then step 3's backup is the last copy: "
                                  "set accept_no_final_backup = True to accept that")})
    else:
        parsed = TerraformState.from_bytes(read.state.data)
        step3 = _step3_sha256(ctx)
        if step3 and step3 != parsed.sha256:
            rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "refuse",
                         "detail": f"the legacy state changed since step 3's backup (sha256 {step3[:16]}... -> "
                                   f"{parsed.sha256[:16]}..., serial {parsed.serial}): migrate it again first"})
        else:
            compared = "same sha256 as step 3's backup" if step3 else "step 3's sha256 not in this ledger: recorded anew"
            rows.append({"object": "final backup", "name": ctx.row.legacy_slug, "action": "create",
                         "detail": f"serial {parsed.serial}, sha256 {parsed.sha256[:16]}... ({compared})"})
    if _native(ctx):
        rows.append({"object": "state history", "name": ctx.row.workspace_slug, "action": "none",
                     "detail": "the host's import copies the legacy state history in the background and shows no "
                               "status to users (upgrade guide, Step 4): if you need that history, ask your TFE "
                               "administrators (Migrations admin page) before you delete; it cannot be known here"})
    rows.append({"object": "legacy environment", "name": ctx.row.legacy_slug, "action": "delete",
                 "detail": f"you delete it in the legacy UI ({ctx.legacy_page('settings')}) after the final backup, "
                           f"then confirm ({phrase('delete', ctx.row.legacy_slug)}); the step proves it is gone"})
    return plan_frame(rows)


def _native(ctx: StepContext) -> bool:
    """Whether step 2 created the workspace through the host's import (its recorded options say)."""
    run = ctx.ledger.passed(ctx.row.legacy_slug, catalog.MIGRATE_STATE, "apply")
    return bool(run is not None and run.evidence.get("migration_path") == "native")


def take_final_backup(ctx: StepContext) -> pd.DataFrame:
    """Back the legacy state up a last time, compare it with step 3's, and note how many environments the
    states list shows (the deletion proof's "the list held it before").

    Idempotent: once taken, the backup is kept (the operator may delete the environment right after it).

    Returns:
        A table of what was done.

    Raises:
        StepError: the legacy state changed since step 3, or it cannot be read and no backup exists (unless
            `accept_no_final_backup`). Nothing was deleted.
    """
    columns = ["object", "name", "result"]
    record = final_backup(ctx)
    if record is not None:
        return pd.DataFrame([{"object": "final backup", "name": record["file"],
                              "result": f"taken at {record['taken_at']}, sha256 {record['sha256']}"}], columns=columns)
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env, fresh=True)
    if read.state is None:
        if ctx.options.accept_no_final_backup:
            return pd.DataFrame([{"object": "final backup", "name": ctx.row.legacy_slug,
                                  "result": f"none: the state answers {read.found}; accepted (step 3's backup is the "
                                            f"last copy)"}], columns=columns)
        raise StepError(f"step 6 refused, nothing changed: the legacy state of {ctx.row.legacy_slug} answers "
                        f"{read.found} ({read.url}) and no final backup was taken. If it was deleted before step 6 "
                        f"could back it up, step 3's backup is the last copy: set accept_no_final_backup = True to "
                        f"accept that.")
    record = backup(ctx, read.state, label=BACKUP_LABEL)
    step3 = _step3_sha256(ctx)
    if step3 and step3 != record["sha256"]:
        raise StepError(f"step 6 refused, nothing deleted: the legacy state changed since step 3's backup "
                        f"(sha256 {step3} then, {record['sha256']} now, serial {record['serial']}); the workspace "
                        f"may not hold the latest state. Migrate it again (step 3), verify (step 5), then delete.")
    listed = ctx.legacy.environments_with_state(ctx.row.legacy_org)
    record.update(matches_step3=step3 == record["sha256"] if step3 else None,
                  listed_before=len(listed), was_listed=ctx.row.legacy_env in listed)
    summary_file = ctx.state_dir / f"{BACKUP_LABEL}.json"
    summary_file.write_text(json.dumps(record, indent=2) + "\n")
    os.chmod(summary_file, 0o600)
    return pd.DataFrame([{"object": "final backup", "name": record["file"],
                          "result": f"sha256 {record['sha256']}"
                                    + (" = step 3's backup" if step3 else " (recorded anew: step 3's not in this ledger)")},
                         {"object": "states list", "name": ctx.row.legacy_org,
                          "result": f"{len(listed)} environments listed, {ctx.row.legacy_env} among them"
                                    if record["was_listed"] else f"{len(listed)} environments listed, not "
                                                                 f"{ctx.row.legacy_env}"}], columns=columns)


def final_backup(ctx: StepContext) -> dict[str, Any] | None:
    """The final backup's record (file, serial, sha256, matches_step3, listed_before) in this audit trail, or None."""
    path = ctx.state_dir / f"{BACKUP_LABEL}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def deletion_proof(ctx: StepContext, *, fresh: bool = True) -> dict[str, Any]:
    """Read the three signals of a deletion from the legacy host (see the module docstring).

    While the state still answers, the deletion has not happened: the list and the user are not read. `fresh`
    False lets a verify reuse what its apply has just read (the same step, seconds before); polls read afresh.

    Returns:
        {"state": what the state read found, "listed": still in the states list (None: the list answered 404),
        "others": how many other environments are listed, "organization_visible": the user read of the
        organization answered, plus "proven" (all signals, and this audit trail saw the environment: its final
        backup listed it or step 3 passed), "still_there" (the state still answers) and "unproven" (what is
        missing).
    """
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env, fresh=fresh)
    record = final_backup(ctx) or {}
    if read.found != NOT_FOUND:
        return {"state": read.found, "listed": None, "others": None, "organization_visible": None,
                "listed_before": record.get("listed_before"), "still_there": True, "proven": False,
                "unproven": [f"the legacy host still serves its state ({read.found})"]}
    try:
        names: list[str] | None = ctx.legacy.environments_with_state(ctx.row.legacy_org, fresh=fresh)
    except NotFoundError:
        names = None  # the list itself answers 404: the organization is not visible to the token
    try:
        ctx.legacy.get_user(ctx.row.legacy_org, fresh=fresh)
        visible = True
    except NotFoundError:
        visible = False
    others = len([n for n in names or [] if n != ctx.row.legacy_env])
    listed_before = bool(record.get("was_listed")) and int(record.get("listed_before") or 0) > 0
    facts: dict[str, Any] = {"state": read.found, "listed": None if names is None else ctx.row.legacy_env in names,
                             "others": others, "organization_visible": visible,
                             "listed_before": record.get("listed_before")}
    unproven = []
    if names is None:
        unproven.append(f"the organization's states list answers 404, so it cannot show that {ctx.row.legacy_env} "
                        f"left it")
    elif facts["listed"]:
        unproven.append("the organization's states list still has it")
    # A 404 for an environment nothing here ever saw is no deletion: the final backup saw it listed, or step 3
    # backed its state up (the final backup may be missing when accepted).
    if not (record.get("was_listed") or ctx.ledger.passed(ctx.row.legacy_slug, MIGRATE_STEP, "apply")):
        unproven.append(f"nothing in this audit trail shows that {ctx.row.legacy_slug} existed (no final backup that "
                        f"listed it, no PASS of step {MIGRATE_STEP}), so its 404 may mean it never did")
    if not visible:
        unproven.append(f"the token no longer sees organization {ctx.row.legacy_org} (its user read answers 404), so "
                        f"a 404 for the environment proves nothing")
    if names is not None and not others and not listed_before:
        unproven.append("the states list is empty and no earlier list of this step showed the environment, so an "
                        "empty list may only mean the token sees nothing")
    facts["unproven"] = unproven
    facts["proven"] = not unproven
    return facts


def _wait_for_deletion(ctx: StepContext, facts: dict[str, Any], *, clock: Any = time.monotonic,
                       sleep: Any = time.sleep) -> dict[str, Any]:
    """Read the deletion's signals again every few seconds, for up to `wait_for_deletion` seconds, while the
    operator deletes in the UI (a batch announces the environments as their final backups are taken)."""
    deadline = clock() + ctx.options.wait_for_deletion
    print(f"waiting up to {ctx.options.wait_for_deletion} s for {ctx.row.legacy_slug} to be deleted in the legacy UI "
          f"({ctx.legacy_page('settings')})", flush=True)
    while facts.get("still_there") and clock() < deadline:
        sleep(min(3.0, max(0.0, deadline - clock())))
        facts = deletion_proof(ctx)
    return facts


def apply(ctx: StepContext) -> pd.DataFrame:
    """After the operator's confirmation that they deleted it: read the deletion's signals (verify judges them).

    Returns:
        A table of what the legacy host answers now.
    """
    facts = deletion_proof(ctx)
    if facts.get("still_there"):
        return pd.DataFrame([{"object": "state read", "name": ctx.row.legacy_slug,
                              "result": f"{facts['state']}: it still exists (the list and the organization are read "
                                        f"once it answers 404)"}], columns=["object", "name", "result"])
    rows = [{"object": "state read", "name": ctx.row.legacy_slug, "result": facts["state"]},
            {"object": "states list", "name": ctx.row.legacy_org,
             "result": ("404: not visible" if facts["listed"] is None else "still lists it" if facts["listed"]
                        else "does not list it") + f"; {facts['others']} others"},
            {"object": "organization", "name": ctx.row.legacy_org,
             "result": "visible to the token" if facts["organization_visible"] else "404: not visible"}]
    return pd.DataFrame(rows, columns=["object", "name", "result"])


def verify(ctx: StepContext) -> StepResult:
    """The legacy environment is gone, proven by positive signals; WAITING while its state still answers."""
    decision = recorded_decision(ctx.ledger, ctx.row.legacy_slug, ctx.step, after_row=ctx.started_row_id)
    run = step5_evidence(ctx)
    record = final_backup(ctx)
    facts = deletion_proof(ctx, fresh=False)  # what apply has just read, when it ran in this step
    if facts.get("still_there") and decision is not None and ctx.options.wait_for_deletion:
        facts = _wait_for_deletion(ctx, facts)
    evidence: dict[str, Any] = {
        "deleted": facts["proven"], "proof": facts, "confirmation": decision,
        "step5_run_id": run.evidence.get("run_id") if run else None,
        "step5_commit": run.evidence.get("commit") if run else None,
        "final_backup": record, "native_history": "unknown (not shown to users)" if _native(ctx) else None}
    if facts.get("still_there"):
        if ctx.interactive and decision is None:
            return StepResult(False, "waiting for your confirmation: delete it in the legacy UI, then type its name "
                                     "and click the button above", evidence)
        return StepResult(False, f"{ctx.row.legacy_slug} still exists on the legacy host (its state answers): delete "
                                 f"it in the legacy UI ({ctx.legacy_page('settings')}), then run the step again",
                          evidence, waits_for_operator=True)
    if not facts["proven"]:
        return StepResult(False, f"the deletion of {ctx.row.legacy_slug} is not proven: " + "; ".join(facts["unproven"]),
                          evidence)
    backed = (f"final backup sha256 {record['sha256'][:16]}..." if record
              else "no final backup (accepted: step 3's backup is the last copy)")
    who = f"; deleted by {decision['operator']} (confirmed via {decision['via']} at {decision['decided_at']})" \
        if decision else ""
    return StepResult(True, f"{ctx.row.legacy_slug} is gone from the legacy host: its state answers 404, the states "
                            f"list no longer has it ({facts['others']} others listed) and the token still sees "
                            f"{ctx.row.legacy_org} ({backed}){who}", evidence)
