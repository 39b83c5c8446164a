"""Notebooks 04-06: nbval with their defaults (no write), and papermill batches 00-06 in apply mode.

The batches unlink, push and delete legacy environments, so they run against a seeded sandbox of this
module's own; the nbval check reads the shared session sandbox only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.ledger import Ledger
from runbook_lib.legacy import LegacyClient
from runbook_lib.mapping import propose
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import batch_parameters
from runbook_lib.settings import Settings
from sandbox_fixtures import make_1x_ready, sandbox_in_environ

LEGACY_ORG = "acme-legacy"


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A seeded sandbox for the batches, its variables (plus VCS token and git base) in os.environ."""
    with sandbox_in_environ(tmp_path_factory.mktemp("sandbox-nb-4-6"), seed=6) as sb:
        yield sb


def _batch(out: Path, sandbox: Sandbox, envs: list[str], batch_id: str, *, steps=STEPS, confirm: list[str] = (),
           **params) -> "BatchResult":  # noqa: F821
    confirm_file = out / f"{batch_id}.confirm"
    confirm_file.write_text("# operator's confirmations\n" + "\n".join(confirm) + "\n")
    from runbook_lib.batch import read_confirm_file

    from runbook_lib.batch import declared_parameters

    parameters = {**batch_parameters(sandbox.env), "accept_empty_sensitive": True, "wait_timeout": 180, **params}
    # The runner refuses parameters no selected notebook declares (a typo guard): pass only the declared ones.
    declared = set().union(*(declared_parameters(Path(__file__).resolve().parents[2] / "notebooks" / f"{s}.ipynb")
                             for s in steps))
    parameters = {k: v for k, v in parameters.items() if k in declared}
    return BatchRunner(propose(LEGACY_ORG, envs, "acme"), steps, mode="apply", out=out, batch_id=batch_id, jobs=2,
                       parameters=parameters, confirm_lines=read_confirm_file(confirm_file)).run()


def _outputs(notebook: Path) -> str:
    nb = nbformat.read(notebook, 4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def _legacy() -> LegacyClient:
    return LegacyClient(Settings.from_env(), read_only=True)


def test_batch_00_06_both_terraform_generations(tmp_path, own_sandbox):
    # Terraform 0.11 workspaces, atlas target: one without a backend in git, one reading another's state.
    envs = ["web.prod", "app-prod"]
    result = _batch(tmp_path, own_sandbox, envs, "gen011", backend_target="atlas",
                    confirm=[f"unlink {LEGACY_ORG}/{e}" for e in envs] + [f"delete {LEGACY_ORG}/{e}" for e in envs])
    assert result.ok, result.frame().to_string()
    ledger = Ledger(tmp_path / "gen011" / "ledger.sqlite")
    for env in envs:
        assert _legacy().find_environment(LEGACY_ORG, env) is None
        five = ledger.passed(f"{LEGACY_ORG}/{env}", "05_commit_and_verify").evidence
        assert five["plan"] == {"add": 0, "change": 0, "destroy": 0} and five["run_commit"] == five["commit"]
        six = ledger.passed(f"{LEGACY_ORG}/{env}", "06_delete_legacy_environment").evidence
        assert six["final_backup"]["matches_step3"] is True and six["confirmation"]["via"] == "parameter"
        executed = tmp_path / "gen011" / f"{LEGACY_ORG}__{env}"
        assert "CONFIRMED" in _outputs(executed / "06_delete_legacy_environment.ipynb")
        assert "runbook-diff" in _outputs(executed / "05_commit_and_verify.ipynb")  # the coloured diff

    # Terraform 1.x workspace, cloud block (the configuration made 1.x-ready first).
    make_1x_ready("network-prod")
    result = _batch(tmp_path, own_sandbox, ["network-prod"], "gen1x", backend_target="cloud",
                    terraform_version="1.15.5",
                    confirm=[f"unlink {LEGACY_ORG}/network-prod", f"delete {LEGACY_ORG}/network-prod"])
    assert result.ok, result.frame().to_string()
    five = Ledger(tmp_path / "gen1x" / "ledger.sqlite").passed(f"{LEGACY_ORG}/network-prod",
                                                               "05_commit_and_verify").evidence
    assert five["plan_source"] == "json" and five["terraform_version"] == "1.15.5"
    assert _legacy().find_environment(LEGACY_ORG, "network-prod") is None


def test_batch_gates_refuse_and_drift_blocks_deletion(tmp_path, own_sandbox):
    env = "dns-prod"  # its sensitive dns_api_key is created empty, so the workspace's plan differs: drift
    slug = f"{LEGACY_ORG}/{env}"
    # No confirmation for step 4: the gate stops the batch there, and the executed notebook says why.
    first = _batch(tmp_path, own_sandbox, [env], "noconfirm", steps=STEPS[:6])
    status = {o.step: o.status for o in first.outcomes}
    assert status["03_migrate_state"] == "passed" and status["04_disable_legacy_vcs"] == "failed"
    assert status["05_commit_and_verify"] == "blocked"
    four = tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "04_disable_legacy_vcs.ipynb"
    assert "GateError" in _outputs(four) and f"confirm = 'unlink {slug}'" in _outputs(four)
    assert _legacy().get_environment(LEGACY_ORG, env)["vcs"] is not None

    # Confirmed: step 4 passes, step 5 fails on the drift, step 6 is blocked.
    second = _batch(tmp_path, own_sandbox, [env], "noconfirm", confirm=[f"unlink {slug}", f"delete {slug}"])
    status = {o.step: o.status for o in second.outcomes}
    assert status["04_disable_legacy_vcs"] == "passed" and status["05_commit_and_verify"] == "failed"
    assert status["06_delete_legacy_environment"] == "blocked"
    five = _outputs(tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "05_commit_and_verify.ipynb")
    assert "shows changes" in five and "The way back" in five and "re-link acme-legacy/dns" in five

    # Step 6 on its own, confirmed: refused for want of step 5's PASS; no DELETE is sent.
    mark = own_sandbox.log_mark()
    third = _batch(tmp_path, own_sandbox, [env], "noconfirm", steps=[STEPS[6]], confirm=[f"delete {slug}"])
    assert [o.status for o in third.outcomes] == ["failed"]
    six = _outputs(tmp_path / "noconfirm" / f"{LEGACY_ORG}__{env}" / "06_delete_legacy_environment.ipynb")
    assert "no PASS of step 05_commit_and_verify" in six
    assert [r for r in own_sandbox.request_log(since=mark) if r["method"] == "DELETE"] == []
    assert _legacy().find_environment(LEGACY_ORG, env) is not None
