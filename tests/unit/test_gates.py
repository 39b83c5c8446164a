from __future__ import annotations

import pytest

from runbook_lib import gates
from runbook_lib.errors import GateError
from runbook_lib.ledger import Ledger


def test_exact_phrase_passes_and_runs_once(tmp_path, capsys):
    ledger = Ledger(tmp_path / "l.sqlite")
    calls = []
    result = gates.guard("delete", "acme-legacy/web", confirm="delete acme-legacy/web", interactive=False,
                         run=calls.append, args=("ran",), ledger=ledger, environment="acme-legacy/web",
                         step="06_delete_legacy_environment")
    assert calls == ["ran"] and result is None
    assert "CONFIRMED" in capsys.readouterr().out
    row = ledger.latest("acme-legacy/web", "06_delete_legacy_environment", action="confirm")
    assert row.status == "passed" and row.evidence["via"] == "parameter"
    assert row.evidence["action"] == "delete" and row.evidence["target"] == "acme-legacy/web"


@pytest.mark.parametrize("confirm, message", [
    ("", "not confirmed"),
    (None, "not confirmed"),
    ("delete acme-legacy/other", "wrong confirmation"),
    ("yes", "wrong confirmation"),
    ("DELETE acme-legacy/web", "wrong confirmation"),
])
def test_batch_refuses_without_exact_phrase_and_runs_nothing(confirm, message):
    calls = []
    with pytest.raises(GateError, match=message) as info:
        gates.guard("delete", "acme-legacy/web", confirm=confirm, interactive=False, run=calls.append, args=(1,))
    assert calls == []
    assert "'delete acme-legacy/web'" in str(info.value)


def test_interactive_wrong_phrase_still_refuses():
    with pytest.raises(GateError):
        gates.guard("unlink", "o/e", confirm="unlink o/x", interactive=True, run=print)


def test_interactive_waits_for_click_then_runs_and_records(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    calls = []
    pending = gates.guard("delete", "o/e", confirm="", interactive=True, run=calls.append, args=("x",),
                          ledger=ledger, environment="o/e", step="06")
    assert isinstance(pending, gates.PendingGate)
    assert calls == [] and not pending.confirmed
    assert ledger.history() == []
    pending.click()  # deleting: nothing happens before the environment's name is typed
    assert calls == [] and not pending.confirmed and pending.button.disabled
    pending.typed.value = "o/x"
    assert pending.button.disabled
    pending.typed.value = "o/e"
    assert not pending.button.disabled
    pending.button.click()
    pending.button.click()  # a double click does not run twice
    assert calls == ["x"] and pending.confirmed and pending.decision.via == "button"
    assert pending.button.disabled
    assert [(r.step, r.action) for r in ledger.history()] == [("06", "confirm")]


def test_interactive_failure_is_kept_for_verification():
    def boom():
        raise RuntimeError("legacy host said no")

    pending = gates.guard("delete", "o/e", confirm=None, interactive=True, run=boom)
    pending.typed.value = "o/e"
    pending.click()
    assert isinstance(pending.error, RuntimeError) and pending.outcome is None


def test_unknown_action_refused():
    with pytest.raises(GateError, match="unknown gated action"):
        gates.check("drop", "o/e", "drop o/e")


def test_an_unlink_gate_says_the_operator_has_done_it_and_needs_no_typed_name():
    pending = gates.guard("unlink", "o/e", confirm="", interactive=True, run=lambda: None,
                          instructions="**Unlink o/e** in the legacy UI")
    assert pending.typed is None and not pending.button.disabled
    assert pending.button.description == "Done: I unlinked o/e in the legacy UI"


def test_a_batch_without_the_confirmation_waits_for_the_operator_and_runs_nothing():
    calls = []
    waiting = gates.guard("delete", "o/e", confirm="", interactive=False, run=calls.append, args=("x",),
                          instructions="Delete <o/e> in the legacy UI.")
    assert isinstance(waiting, gates.AwaitingOperator) and calls == []
    assert "delete o/e" in waiting.summary and "confirm file" in waiting.summary
    assert "&lt;o/e&gt;" in waiting._repr_html_() and "<o/e>" not in waiting._repr_html_()  # host text escaped


def test_a_batch_confirmation_for_another_environment_is_refused_not_waited_on():
    with pytest.raises(GateError, match="wrong confirmation"):
        gates.guard("delete", "o/e", confirm="delete o/x", interactive=False, run=print, instructions="x")


def test_instructions_render_as_escaped_html():
    assert gates.instructions_html("**a <b>**\n\n`c&d`") == "<p><b>a &lt;b&gt;</b></p><p><code>c&amp;d</code></p>"
