"""What the operator sees: verdict banners, readable tables, diffs, gates that wait, refusals as sentences."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from hostile_markup import live_markup, shown_text

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
    assert "<strong>Integrations</strong>" in instructions._repr_html_()  # rendered here, raw HTML escaped
    patch = "--- a/main.tf\n+++ b/main.tf\n@@ -1,3 +1,3 @@\n-    name = \"acme-legacy/web\"\n+    name = \"acme/web\"\n"
    shown = display.diff(patch)
    page = shown._repr_html_()
    assert "background:#e6ffed" in page and "background:#ffeef0" in page  # added green, removed red
    assert '+    name = "acme/web"' in shown_text(page)
    assert "</div>\n" not in page  # no white space between the lines of a white-space:pre block
    assert _pretty(shown) == patch
    assert "no change" in display.diff("")._repr_html_()


def test_table_is_plain_html_with_inline_styles_full_lineages_and_no_row_numbers():
    lineage = "56389aa6-1ddc-9949-2cba-b14235e075f0"
    reason = "locked by alice: unlock it in the legacy UI, then run the preflight again " * 3
    frame = pd.DataFrame([
        {"environment": "acme-legacy/web", "lineage": lineage, "ready": False, "reason": reason, "serial": math.nan},
        {"environment": "acme-legacy/db", "lineage": None, "ready": True, "reason": "ready", "serial": 4},
    ])
    shown = display.table(frame, highlight="ready", index="environment")
    page = shown._repr_html_()
    text = _pretty(shown)
    assert "object at 0x" not in text and "acme-legacy/web" in text and "NaN" not in text and "None" not in text
    # Untrusted JupyterLab strips <style> elements: everything is inline, nothing in a class or an id.
    assert "<style" not in page and " id=" not in page and "T_" not in page
    cells = [c for c in _cells(page)]
    assert cells[0] == ("th", ["environment", "lineage", "ready", "reason", "serial"])  # no row-number column
    assert cells[1] == ("tr", ["acme-legacy/web", lineage, "no", reason.strip(), ""])  # the lineage in full
    assert cells[2] == ("tr", ["acme-legacy/db", "", "yes", "ready", "4"])
    rows = re.findall(r"<tr style=\"background:([^\"]+)\">", page)
    assert rows == ["#fff3cd", "transparent"]  # the not-ready row is amber, inline
    assert "white-space:pre-wrap;overflow-wrap:break-word" in page and "word-break" not in page  # wraps by words
    assert display.table(None) is None
    note = display.note("x")
    assert display.table(note) is note


def test_a_wide_table_shows_its_last_columns_below_each_row():
    wide = pd.DataFrame([{f"column_{i:02d}": f"value {i} " * 4 for i in range(16)} | {"environment": "o/e"}])
    page = display.table(wide, index="environment")._repr_html_()
    heads, first = _cells(page)[:2]
    assert heads[1][0] == "environment" and len(heads[1]) < 17  # some columns folded away ...
    folded = [f"column_{i:02d}" for i in range(16) if f"column {i:02d}" not in heads[1]]
    assert folded == sorted(folded) and folded[-1] == "column_15"  # ... the trailing ones
    for column in folded:  # ... into the line below the row, with their names
        assert f"{column.replace('_', ' ')}:" in shown_text(page)
    explicit = display.table(wide, index="environment", details=["column_00"])._repr_html_()
    assert "column 00" not in _cells(explicit)[0][1] and "column 00:" in shown_text(explicit)


def _cells(page: str) -> list[tuple[str, list[str]]]:
    """(header or row, its cells' text) for each row of a table page (details lines left out)."""
    from html.parser import HTMLParser

    rows: list[tuple[str, list[str]]] = []

    class Rows(HTMLParser):
        cell: list[str] | None = None
        details = False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append(("tr", []))
            elif tag in ("td", "th"):
                self.details = ("colspan" in dict(attrs))
                self.cell = []
                if tag == "th" and rows and not rows[-1][1] and len(rows) == 1:
                    rows[-1] = ("th", [])

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                if not self.details:
                    rows[-1][1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    Rows(convert_charrefs=True).feed(page)
    return [r for r in rows if r[1]]


def test_no_fragment_lets_a_hosts_text_become_markup():
    payload = "<img src=x onerror=alert(1)>\"><svg onload=alert(2)></style><script>alert(3)</script>"
    result = StepResult(False, payload, {payload: payload, "nested": {"k": [payload]}},
                        table=pd.DataFrame([{"address": payload, "action": payload}]))
    five = StepResult(False, payload, {"run_id": payload, "run_url": "javascript:alert(1)", "has_changes": True,
                                       "plan": {"add": 1, "change": 0, "destroy": 0}, "plan_lines": [payload]},
                      table=pd.DataFrame([{"address": payload, "action": "create"}]))
    three = StepResult(False, payload, {"lineage": payload, "legacy_serial": 1, "workspace_serial": 1,
                                        "resources": payload, "legacy_sha256": payload},
                       table=pd.DataFrame([{"address": payload, "difference": payload}]))
    frame = pd.DataFrame([{payload: payload, "ready": False}]).set_index(pd.Index([payload], name="environment"))
    pages = {"banner": result._repr_html_(), "titled": display.banner_html("fail", payload, {payload: 1}, title=payload),
             "note": display.note(payload)._repr_html_(), "markdown": display.markdown(
                 f"1. {payload} [x](javascript:alert(4))")._repr_html_(),
             "diff": display.diff(f"+{payload}\n-{payload}")._repr_html_(),
             "evidence": display.evidence(result)._repr_html_(), "table": display.table(frame, highlight="ready",
                                                                                       details=["ready"])._repr_html_(),
             "plan": display.plan_evidence(five)._repr_html_(), "state": display.state_match(three)._repr_html_()}
    for name, page in pages.items():
        assert live_markup(page) == [], name
        assert "alert(" in shown_text(page), name  # shown, as text
    assert "javascript:" not in pages["plan"] and "javascript:" not in pages["markdown"]


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


def test_a_plan_that_would_refuse_ends_in_plan_words_not_fail(tmp_path, capsys):
    from runbook_lib.context import record_verdict
    from runbook_lib.steps import plan_frame, plan_verdict

    ledger = Ledger(tmp_path / "ledger.sqlite")
    refused = plan_verdict(plan_frame([{"object": "workspace", "name": "o/w", "action": "refuse",
                                        "detail": "holds another lineage"}]))
    with pytest.raises(StepError) as raised:
        record_verdict(ledger, ledger.start(SLUG, STEP, "plan"), STEP, SLUG, "plan", refused)
    assert capsys.readouterr().out.startswith(f"PLAN: APPLY WOULD REFUSE: {STEP} {SLUG} (plan): apply would refuse:")
    assert display.refusal_line(raised.value, "").startswith("\x1b[1;31mPLAN: APPLY WOULD REFUSE\x1b[0m: ")
    assert ledger.latest(SLUG, STEP).status == "failed"  # the batch stops there, as apply would


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
    assert fine.passed and fine.planned and fine.summary == "apply would leave 1 as is; nothing was changed (plan mode)"
    assert fine.kind == "plan-ok" and _pretty(fine).startswith("PLAN OK: apply would")  # never PASS
    assert "runbook-plan-ok" in fine._repr_html_() and "PASS" not in fine._repr_html_()
    assert fine.evidence == {"would": {"none": 1}}  # not "plan": that is what a run's plan counted
    several = plan_verdict(plan_frame([{"object": o, "name": "n", "action": a, "detail": ""} for o, a in
                                       [("a", "create"), ("b", "create"), ("c", "update"), ("d", "adopt")]]))
    assert several.summary.startswith("apply would create 2, update 1 and adopt 1;")
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
    assert "font-family:monospace" in shown._repr_html_()  # Terraform's own output in Terraform's font


def test_a_plan_never_says_no_changes():
    from runbook_lib.steps import plan_frame, plan_verdict

    # step 5 in plan mode for a workspace that does not exist: the plan counts what apply would do
    planned = plan_verdict(plan_frame([
        {"object": "workspace", "name": "o/w", "action": "none",
         "detail": "does not exist yet: steps 02-04 first (apply refuses until then)"},
        {"object": "run", "name": "o/w", "action": "create", "detail": "the push starts it"}]))
    shown = display.plan_evidence(planned)
    for text in (_pretty(shown), shown._repr_html_(), _pretty(planned), planned._repr_html_()):
        assert "no changes" not in text.lower() and "PASS" not in text and "Plan: 0 to add" not in text
    assert "no run was started" in _pretty(shown)
    # a plan that would refuse nothing at all still says PLAN OK, and that no run was started
    clean = plan_verdict(plan_frame([{"object": "run", "name": "o/w", "action": "create", "detail": "x"}]))
    assert clean.kind == "plan-ok" and "no run was started" in _pretty(display.plan_evidence(clean))
    # and a run's verdict without its plan's facts says its own summary, not a made-up count
    assert _pretty(display.plan_evidence(StepResult(False, "run run-1 is still planning", {"run_id": "run-1"}))) \
        == "run run-1 is still planning"


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
