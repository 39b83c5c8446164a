"""What the operator sees: verdict banners, readable tables, diffs, gates that wait, refusals as sentences."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from runbook_lib import display, gates
from runbook_lib.context import StepContext, StepResult
from runbook_lib.errors import StepError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow

pytestmark = pytest.mark.unit

STEP = "06_delete_legacy_environment"
SLUG = "acme-legacy/web"


def _pretty(obj) -> str:
    from IPython.lib.pretty import pretty

    return pretty(obj)


@pytest.mark.parametrize("passed, summary, kind, colour", [
    (True, "web is gone", "pass", "#2e7d32"),
    (False, "web still exists", "fail", "#c62828"),
    (True, "apply would refuse: step 5 evidence: no PASS of step 05 (apply refuses until then)", "would-refuse",
     "#f9a825"),
    (False, "apply would refuse: workspace acme/web: holds another lineage", "plan-refused", "#c62828"),
    (True, "6 environments, 4 ready; mapping written to m.csv; not ready: acme-legacy/db (locked)", "attention",
     "#f9a825"),
])
def test_step_result_is_a_banner_not_a_repr(passed, summary, kind, colour):
    result = StepResult(passed, summary, {"run_id": "run-1", "plan": {"add": 0}})
    page = result._repr_html_()
    assert f"runbook-{kind}" in page and colour in page and summary in page
    assert "<details" in page and "run-1" in page  # evidence folded away, but there
    text = _pretty(result)
    assert text == f"{display.LABELS[kind]}: {summary}"
    assert "StepResult(" not in text and "'" not in text


def test_note_and_diff_have_no_quoted_repr():
    assert _pretty(display.note("plan mode: nothing was changed")) == "plan mode: nothing was changed"
    instructions = display.markdown("1. In legacy TFE, open **Integrations**")
    assert _pretty(instructions) == "1. In legacy TFE, open **Integrations**"
    assert instructions._repr_markdown_() == "1. In legacy TFE, open **Integrations**"
    patch = "--- a/main.tf\n+++ b/main.tf\n@@ -1,3 +1,3 @@\n-    name = \"acme-legacy/web\"\n+    name = \"acme/web\"\n"
    shown = display.diff(patch)
    page = shown._repr_html_()
    assert "background:#e6ffed" in page and "background:#ffeef0" in page  # added green, removed red
    assert "&quot;acme/web&quot;" in page
    assert _pretty(shown) == patch
    assert "no change" in display.diff("")._repr_html_()


def test_table_wraps_text_blanks_nan_shortens_lineage_and_highlights_not_ready():
    frame = pd.DataFrame([
        {"environment": "acme-legacy/web", "lineage": "56389aa6-1ddc-9949-2cba-b14235e075f0", "ready": False,
         "reason": "locked by alice: unlock it in the legacy UI, then run the preflight again " * 3, "serial": math.nan},
        {"environment": "acme-legacy/db", "lineage": None, "ready": True, "reason": "ready", "serial": 4},
    ])
    shown = display.table(frame, highlight="ready", index="environment")
    page = shown._repr_html_()
    assert "object at 0x" not in _pretty(shown) and "acme-legacy/web" in _pretty(shown)
    assert "NaN" not in _pretty(shown) and "None" not in _pretty(shown)
    assert ">acme-legacy/web<" in page and "index_name" in page  # environment is the index
    assert "56389aa6...<" in page and "56389aa6-1ddc-9949-2cba-b14235e075f0" in page  # short, full in tooltip
    assert "nan" not in page.lower().replace("nan;", "") and "None" not in page
    assert "white-space: pre-wrap" in page
    import re

    amber = " ".join(sel for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", page) if "#fff3cd" in body)
    assert "_row0_col0" in amber and "_row0_col3" in amber and "_row1_" not in amber  # the not-ready row's cells
    assert ">4<" in page
    assert ("locked by alice: unlock it in the legacy UI, then run the preflight again " * 3).strip() in page
    assert display.table(None) is None
    note = display.note("x")
    assert display.table(note) is note


def _ctx(tmp_path, interactive=True, confirm="") -> StepContext:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ctx = StepContext(step=STEP, row=MappingRow("acme-legacy", "web", "acme", "web"), mode="apply", settings=None,
                      audit_dir=tmp_path, ledger=ledger, interactive=interactive, confirm=confirm, operator="alice")
    ctx._row_id = ctx.started_row_id = ledger.start(SLUG, STEP, "apply")
    return ctx


def _steps():
    state = {"deleted": False}

    def apply(ctx):
        state["deleted"] = True
        return pd.DataFrame([{"object": "legacy environment", "result": "deleted"}])

    def verify(ctx):
        return StepResult(state["deleted"], "gone" if state["deleted"] else "still there", {"deleted": state["deleted"]})

    return state, apply, verify


def test_a_waiting_gate_is_neither_raised_nor_failed_and_the_click_finishes_the_step(tmp_path):
    ctx = _ctx(tmp_path)
    state, apply, verify = _steps()
    plan = pd.DataFrame([{"object": "legacy environment", "action": "delete"}])
    applied = ctx.gate("delete", plan, apply, verify)
    assert isinstance(applied, gates.PendingGate) and not state["deleted"]
    result = ctx.verdict(plan, verify, applied)
    assert isinstance(result, gates.Waiting) and "waiting for you" in applied.status.value
    assert ctx.conclude(result) is result  # shows the status; raises nothing
    assert [r.status for r in ctx.ledger.history()] == ["running"]  # open, not failed
    assert display.evidence(result) is applied.evidence_view

    applied.typed.value = SLUG  # deleting asks for the environment's name first
    applied.button.click()
    assert state["deleted"]
    rows = {(r.step, r.action): r.status for r in ctx.ledger.history()}
    assert rows == {(STEP, "run"): "passed", (STEP, "confirm"): "passed"}
    assert "runbook-pass" in applied.status.value and "runbook-waiting" not in applied.status.value
    assert "deleted" in applied.evidence_view.value
    # The cells, run again after the click, show the click's verdict without recording it twice.
    again = ctx.verdict(plan, verify, applied)
    assert again is applied.result and ctx.conclude(again) is again
    assert len(ctx.ledger.history()) == 2


def test_a_refusal_at_the_click_is_recorded_as_refused_not_left_running(tmp_path):
    ctx = _ctx(tmp_path)

    def apply(ctx):
        raise StepError("step 6 refused, nothing changed: the legacy state changed since step 3; migrate it again")

    applied = ctx.gate("delete", None, apply, lambda c: StepResult(True, "unused"))
    applied.typed.value = SLUG
    applied.click()
    row = ctx.ledger.latest(SLUG, STEP)
    assert row.status == "refused" and "migrate it again" in row.error
    assert "runbook-refused" in applied.status.value and "migrate it again" in applied.status.value


def test_batch_gate_runs_at_once_with_the_exact_phrase(tmp_path):
    ctx = _ctx(tmp_path, interactive=False, confirm=f"delete {SLUG}")
    state, apply, verify = _steps()
    applied = ctx.gate("delete", None, apply, verify)
    assert isinstance(applied, pd.DataFrame) and state["deleted"]
    result = ctx.verdict(None, verify, applied)
    assert ctx.conclude(result).passed
    assert ctx.ledger.latest(SLUG, STEP).status == "passed"


def test_refusal_in_a_cell_is_one_sentence_and_a_ledger_row(tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        ctx = _ctx(tmp_path)
        display.attach(ctx)
        shell.user_ns["StepError"] = StepError
        outcome = shell.run_cell("raise StepError('step 6 refused, nothing changed; missing step 5 PASS: run step 5')")
        assert isinstance(outcome.error_in_exec, StepError)  # the cell still fails (papermill stops there)
        shown = capsys.readouterr()
        text = shown.out + shown.err
        assert "REFUSED" in text and "run step 5" in text and "(recorded in the ledger as refused)" in text
        assert "Traceback" not in text and "<module>" not in text
        row = ctx.ledger.latest(SLUG, STEP)
        assert row.status == "refused" and "run step 5" in row.error
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def test_plan_verdict_says_apply_would_refuse_when_an_earlier_step_must_run_first():
    from runbook_lib.steps import plan_frame, plan_verdict

    waits = plan_frame([{"object": "step 5 evidence", "name": "o/e", "action": "none",
                         "detail": "no PASS of step 05_commit_and_verify (apply refuses until then)"},
                        {"object": "legacy environment", "name": "o/e", "action": "delete", "detail": "gated"}])
    result = plan_verdict(waits)
    assert result.passed and result.summary.startswith("apply would refuse: step 5 evidence o/e: no PASS")
    assert display.verdict_kind(result.passed, result.summary) == "would-refuse"
    fine = plan_verdict(plan_frame([{"object": "legacy vcs link", "name": "o/e", "action": "none",
                                     "detail": "already unlinked"}]))
    assert fine.passed and fine.summary.startswith("plan: 1 none")
    refused = plan_verdict(plan_frame([{"object": "state", "name": "o/e", "action": "refuse", "detail": "lineage"}]))
    assert not refused.passed and display.verdict_kind(refused.passed, refused.summary) == "plan-refused"


def test_live_status_prints_outside_a_kernel_and_verify_words(capsys):
    progress = display.live_status()
    progress("waiting for the run of commit abc in ws-1 (up to 900 s)")
    progress("[    0 s] run-1: pending")
    assert capsys.readouterr().out.splitlines()[-1] == "[    0 s] run-1: pending"
    result = StepResult(True, "workspace ws-1 holds the legacy state", {
        "lineage": "lin-1", "legacy_serial": 4, "workspace_serial": 4, "resources": 2, "identical_bytes": True,
        "legacy_sha256": "ab" * 32}, table=pd.DataFrame(columns=["address", "difference"]))
    words = _pretty(display.state_match(result))
    assert words == "matched: lineage lin-1, serial 4, 2 resources identical, byte for byte (sha256 abababababababab...)"
    assert "<table" not in display.state_match(result)._repr_html_()  # no empty table with headers
    five = StepResult(True, "run run-1 planned no changes", {"run_id": "run-1", "has_changes": False,
                                                             "plan": {"add": 0, "change": 0, "destroy": 0},
                                                             "plan_lines": ["null_resource.a: Refreshing state...",
                                                                            "No changes. Infrastructure is up-to-date."]},
                      table=pd.DataFrame(columns=["address", "action"]))
    shown = display.plan_evidence(five)
    assert _pretty(shown).splitlines()[0] == "Plan: 0 to add, 0 to change, 0 to destroy (no changes)"
    assert "No changes. Infrastructure is up-to-date." in shown._repr_html_() and "<table" not in shown._repr_html_()


def test_a_batch_gate_without_its_confirmation_is_recorded_as_waiting_not_failed(tmp_path):
    ctx = _ctx(tmp_path, interactive=False)
    state, apply, verify = _steps()
    plan = pd.DataFrame([{"object": "legacy environment", "action": "delete"}])
    applied = ctx.gate("delete", plan, apply, verify, ask=lambda c: f"Delete {SLUG} in the legacy UI.")
    result = ctx.verdict(plan, verify, applied)
    assert result.waits_for_operator and not result.passed and not state["deleted"]
    assert ctx.conclude(result) is result  # no StepError: waiting is not a failure
    row = ctx.ledger.latest(SLUG, STEP)
    assert row.status == "waiting" and f"delete {SLUG}" in row.error and "runbook-waiting" in result._repr_html_()
