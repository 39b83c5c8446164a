"""The gate is one call on the context: `ctx.gate(action, plan, apply, verify)`; plan mode answers for itself."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest

from runbook_lib import catalog, gates
from runbook_lib.context import StepContext
from runbook_lib.errors import ConfigError, GateError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow
from runbook_lib.results import StepResult

pytestmark = pytest.mark.unit

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
SLUG = "acme-legacy/web"


def _ctx(tmp_path, step=catalog.DISABLE_LEGACY_VCS, mode="apply", interactive=True, confirm=""):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ctx = StepContext(step=step, row=MappingRow("acme-legacy", "web", "acme", "web"), mode=mode, settings=None,
                      audit_dir=tmp_path, ledger=ledger, interactive=interactive, confirm=confirm, operator="alice")
    ctx._row_id = ctx.started_row_id = ledger.start(SLUG, step, mode)
    return ctx


def _step():
    calls = []

    def apply(ctx):
        calls.append("apply")
        return pd.DataFrame([{"object": "legacy vcs link", "result": "unlinked"}])

    def verify(ctx):
        calls.append("verify")
        return StepResult(True, "no VCS link", {"vcs": None})

    return calls, apply, verify


PLAN = pd.DataFrame([{"object": "legacy vcs link", "name": SLUG, "action": "delete", "detail": ""}])


def test_plan_mode_gates_nothing_and_says_so(tmp_path):
    ctx = _ctx(tmp_path, mode="plan")
    calls, apply, verify = _step()
    applied = ctx.gate("unlink", PLAN, apply, verify)
    assert "plan mode: nothing gated, nothing changed" in str(applied) and calls == []
    result = ctx.verdict(PLAN, verify, applied)
    assert result.passed and calls == []  # plan mode: whether apply would refuse anything, not verify
    assert ctx.conclude(result).passed
    assert [(r.action, r.status) for r in ctx.ledger.history()] == [("run", "passed")]


def test_a_batch_confirmed_by_parameter_runs_at_once_and_records_the_decision(tmp_path):
    ctx = _ctx(tmp_path, interactive=False, confirm=f"unlink {SLUG}")
    calls, apply, verify = _step()
    applied = ctx.gate("unlink", PLAN, apply, verify)
    assert isinstance(applied, pd.DataFrame) and calls == ["apply"]
    assert ctx.conclude(ctx.verdict(PLAN, verify, applied)).passed and calls == ["apply", "verify"]
    assert [(r.action, r.status) for r in ctx.ledger.history()] == [("run", "passed"), ("confirm", "passed")]


def test_a_batch_without_confirmation_refuses_and_runs_nothing(tmp_path):
    ctx = _ctx(tmp_path, interactive=False)
    calls, apply, verify = _step()
    with pytest.raises(GateError, match=f"confirm = 'unlink {SLUG}'"):
        ctx.gate("unlink", PLAN, apply, verify)
    assert calls == []


def test_interactively_the_verdict_waits_and_the_click_finishes_the_step(tmp_path):
    ctx = _ctx(tmp_path)
    calls, apply, verify = _step()
    applied = ctx.gate("unlink", PLAN, apply, verify)
    assert isinstance(applied, gates.PendingGate) and calls == []
    waiting = ctx.verdict(PLAN, verify, applied)
    assert isinstance(waiting, gates.Waiting) and ctx.conclude(waiting) is waiting
    assert [r.status for r in ctx.ledger.history()] == ["running"]
    applied.click()
    assert calls == ["apply", "verify"]
    again = ctx.verdict(PLAN, verify, applied)
    assert again is applied.result and ctx.conclude(again) is again and calls == ["apply", "verify"]
    assert sorted((r.action, r.status) for r in ctx.ledger.history()) == [("confirm", "passed"), ("run", "passed")]


def test_the_wrong_action_for_the_step_is_refused(tmp_path):
    ctx = _ctx(tmp_path)
    calls, apply, verify = _step()
    with pytest.raises(ConfigError, match="step 04_disable_legacy_vcs is gated by 'unlink', not 'delete'"):
        ctx.gate("delete", PLAN, apply, verify)
    assert calls == []


def test_an_apply_cell_runs_only_in_apply_mode(tmp_path):
    calls, apply, _ = _step()
    planning = _ctx(tmp_path / "p", step=catalog.MIGRATE_STATE, mode="plan")
    assert str(planning.apply(apply)) == "plan mode: nothing was changed" and calls == []
    assert str(planning.apply(apply, otherwise="plan mode: nothing will be deleted")).endswith("deleted")
    applying = _ctx(tmp_path / "a", step=catalog.MIGRATE_STATE)
    assert isinstance(applying.apply(apply), pd.DataFrame) and calls == ["apply"]
    assert str(applying.apply(lambda ctx: "ready: step 5 passed")) == "ready: step 5 passed"  # text: a note


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_branches_on_the_mode(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert "if ctx.applying" not in cell.source, cell.source
            assert "gates." not in cell.source, "a gate is one call on the context: ctx.gate(...)"


@pytest.mark.parametrize("step, action", sorted(catalog.GATED_ACTIONS.items()))
def test_each_gated_notebook_gates_its_own_action(step, action):
    nb = nbformat.read(next(p for p in NOTEBOOKS if p.stem == step), as_version=4)
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'ctx.gate("{action}", plan,' in sources
