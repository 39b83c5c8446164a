"""Notebooks 04-06 as papermill batches 00-06 in apply mode, with the operator's part played in the legacy UI.

The batches push, and the operator unlinks and deletes legacy environments in the sandbox's legacy UI
(`rehearsal.run_with_operator`: steps 04 and 06 wait, the operator acts and confirms, the batch runs again), so
they run against a seeded sandbox of this module's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from runbook_lib.batch import STEPS, BatchRunner, declared_parameters
from runbook_lib.ledger import Ledger
from runbook_lib.legacy import NOT_FOUND, LegacyClient
from runbook_lib.mapping import propose
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import LegacyUi, batch_parameters, operator_rows, run_with_operator
from runbook_lib.settings import Settings
from sandbox_fixtures import make_1x_ready, sandbox_in_environ, upgrade_legacy_state

LEGACY_ORG = "acme-legacy"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A seeded sandbox for the batches, its variables (plus VCS token and git base) in os.environ."""
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-nb-4-6"), seed=6) as sb:
        yield sb


def _runner(out: Path, sandbox: Sandbox, envs: list[str], batch_id: str, *, steps=STEPS, **params):
    """A function of the confirm file's lines that makes the batch's runner (the same batch each time)."""
    parameters = {**batch_parameters(sandbox.env), "accept_empty_sensitive": True, "wait_timeout": 180, **params}
    # The runner refuses parameters no selected notebook declares (a typo guard): pass only the declared ones.
    declared = set().union(*(declared_parameters(NOTEBOOKS / f"{s}.ipynb") for s in steps))
    parameters = {k: v for k, v in parameters.items() if k in declared}
    rows = operator_rows(sandbox, propose(LEGACY_ORG, envs, "acme"))
    return lambda lines: BatchRunner(rows, steps, mode="apply", out=out, batch_id=batch_id, jobs=2,
                                     parameters=parameters, confirm_lines=lines)


def _outputs(notebook: Path) -> str:
    nb = nbformat.read(notebook, 4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def _legacy() -> LegacyClient:
    return LegacyClient(Settings.from_env(), read_only=True)


def test_batch_00_06_both_terraform_generations(tmp_path, own_sandbox):
    # Terraform 0.11 workspaces, atlas target: one without a backend in git, one reading another's state.
    envs = ["web.prod", "app-prod"]
    confirm = tmp_path / "gen011.confirm"
    runs = run_with_operator(own_sandbox, _runner(tmp_path, own_sandbox, envs, "gen011", backend_target="atlas"),
                             confirm)
    assert [sorted({o.status for o in r.outcomes if o.step in ("04_disable_legacy_vcs",
                                                                "06_delete_legacy_environment")}) for r in runs] \
        == [["blocked", "waiting"], ["passed", "waiting"], ["passed", "skipped"]]
    assert runs[-1].ok, runs[-1].frame().to_string()
    assert sorted(confirm.read_text().split("\n")[-5:-1]) == sorted(
        [f"unlink {LEGACY_ORG}/{e}" for e in envs] + [f"delete {LEGACY_ORG}/{e}" for e in envs])
    ledger = Ledger(tmp_path / "gen011" / "ledger.sqlite")
    for env in envs:
        assert _legacy().read_state(LEGACY_ORG, env).found == NOT_FOUND
        five = ledger.passed(f"{LEGACY_ORG}/{env}", "05_commit_and_verify").evidence
        assert five["plan"] == {"add": 0, "change": 0, "destroy": 0} and five["run_commit"] == five["commit"]
        six = ledger.passed(f"{LEGACY_ORG}/{env}", "06_delete_legacy_environment").evidence
        assert six["final_backup"]["matches_step3"] is True and six["confirmation"]["via"] == "parameter"
        assert six["proof"]["proven"] is True
        executed = tmp_path / "gen011" / f"{LEGACY_ORG}__{env}"
        assert "CONFIRMED" in _outputs(executed / "06_delete_legacy_environment.ipynb")
        assert "runbook-diff" in _outputs(executed / "05_commit_and_verify.ipynb")  # the coloured diff
        waited = [p for p in executed.glob("04_disable_legacy_vcs*.ipynb") if "WAITING" in _outputs(p)]
        assert waited, "the first run's step 4 notebook, which waited for the operator, is kept"

    # Terraform 1.x workspace, cloud block (the configuration made 1.x-ready first).
    make_1x_ready(own_sandbox, "network-prod")
    upgrade_legacy_state(own_sandbox, "network-prod")  # the 0.13 upgrade, before 1.x can read the state
    runs = run_with_operator(own_sandbox, _runner(tmp_path, own_sandbox, ["network-prod"], "gen1x",
                                                  backend_target="cloud", terraform_version="1.15.5"),
                             tmp_path / "gen1x.confirm")
    assert runs[-1].ok, runs[-1].frame().to_string()
    five = Ledger(tmp_path / "gen1x" / "ledger.sqlite").passed(f"{LEGACY_ORG}/network-prod",
                                                               "05_commit_and_verify").evidence
    assert five["plan_source"] == "json" and five["terraform_version"] == "1.15.5"
    assert _legacy().read_state(LEGACY_ORG, "network-prod").found == NOT_FOUND


def test_batch_waits_for_the_operator_and_drift_blocks_deletion(tmp_path, own_sandbox):
    env = "dns-prod"  # its sensitive dns_api_key is created empty, so the workspace's plan differs: drift
    slug = f"{LEGACY_ORG}/{env}"
    make = _runner(tmp_path, own_sandbox, [env], "noconfirm", steps=STEPS[:6])
    # No confirmation for step 4: the step waits for the operator (not a failure), and its notebook says where.
    first = make([]).run()
    status = {o.step: o.status for o in first.outcomes}
    assert status["03_migrate_state"] == "passed" and status["04_disable_legacy_vcs"] == "waiting"
    assert status["05_commit_and_verify"] == "blocked" and not first.ok
    four = _outputs(tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "04_disable_legacy_vcs.ipynb")
    assert "WAITING" in four and f"unlink {slug}" in four and "Integrations" in four and "GateError" not in four
    assert own_sandbox.store.find_environment(LEGACY_ORG, env)["vcs_repo"] is not None  # nothing was unlinked

    # The operator unlinks in the UI and confirms: step 4 passes, step 5 fails on the drift.
    LegacyUi.for_sandbox(own_sandbox).unlink(LEGACY_ORG, env)
    second = _runner(tmp_path, own_sandbox, [env], "noconfirm")([f"unlink {slug}", f"delete {slug}"]).run()
    status = {o.step: o.status for o in second.outcomes}
    assert status["04_disable_legacy_vcs"] == "passed" and status["05_commit_and_verify"] == "failed"
    assert status["06_delete_legacy_environment"] == "blocked"
    five = _outputs(tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "05_commit_and_verify.ipynb")
    assert "shows changes" in five and "The way back" in five and "you re-link it in the legacy UI" in five

    # Step 6 on its own, confirmed: refused for want of step 5's PASS; nothing deleted, no backup taken.
    mark = own_sandbox.log_mark()
    third = _runner(tmp_path, own_sandbox, [env], "noconfirm", steps=[STEPS[6]])([f"delete {slug}"]).run()
    assert [o.status for o in third.outcomes] == ["failed"]
    six = _outputs(tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "06_delete_legacy_environment.ipynb")
    assert "no PASS of step 05_commit_and_verify" in six
    assert [r for r in own_sandbox.request_log(since=mark) if r["method"] in ("DELETE", "PUT", "PATCH")] == []
    assert _legacy().read_state(LEGACY_ORG, env).state is not None
