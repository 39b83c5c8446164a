"""Plan mode says what apply would do, never what only a run can prove.

Notebook 05 in plan mode, for a workspace that does not exist yet, runs no commit, no push and no run:
none of its outputs may say PASS or "no changes" (only a real run's plan may), and its verdict reads
as a plan's ("PLAN ..."). The same batch step is "plan ok" to the CLI and the summary, never "passed".
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from runbook_lib.catalog import COMMIT_AND_VERIFY, step_parameters

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _outputs(notebook: Path) -> list[str]:
    texts = []
    for cell in nbformat.read(notebook, 4).cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            texts += [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return texts


def test_a_plan_of_step_5_for_a_missing_workspace_claims_no_pass_and_no_changes(rehearsal, new_org, tmp_path):
    import papermill

    executed = tmp_path / f"{COMMIT_AND_VERIFY}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / executed.name), str(executed), progress_bar=False,
        parameters={**step_parameters(COMMIT_AND_VERIFY, rehearsal), "legacy_env": "web.prod", "new_org": new_org,
                    "mode": "plan", "audit_root": str(tmp_path / "runs"), "interactive": False})
    outputs = _outputs(executed)
    shown = "\n".join(outputs)
    assert "does not exist yet" in shown  # the workspace really is missing: the plan says so
    assert "PASS" not in shown and "no changes" not in shown.lower(), [t for t in outputs if "PASS" in t
                                                                       or "no changes" in t.lower()]
    assert "Plan: 0 to add" not in shown and "runbook-pass" not in shown
    assert "no run was started" in shown  # where verify would show the run's plan
    assert "PLAN (apply waits for an earlier step)" in shown  # the verdict, in plan words


@pytest.mark.parametrize("status, error, label", [
    ("passed", None, "plan ok"), ("failed", "apply would refuse: workspace o/w: differs", "would refuse"),
    ("failed", "cell 3: KeyError: 'x'", "failed"), ("refused", "not confirmed", "refused")])
def test_plan_outcomes_have_plan_words(status, error, label):
    from runbook_lib.display import outcome_label

    assert outcome_label(status, "plan", error) == label
    assert outcome_label(status, "apply", error) == status
