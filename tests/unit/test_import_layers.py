"""The context and the steps share their result types without importing each other."""

from __future__ import annotations

import subprocess
import sys


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(m for m in sys.modules if m.startswith('runbook_lib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_context_does_not_import_the_steps():
    assert not {m for m in _imported_after("runbook_lib.context") if m.startswith("runbook_lib.steps")}


def test_results_import_neither_context_nor_steps():
    loaded = _imported_after("runbook_lib.results")
    assert "runbook_lib.context" not in loaded and not {m for m in loaded if m.startswith("runbook_lib.steps")}


def test_old_import_paths_still_name_the_same_objects():
    from runbook_lib import context, results, steps

    assert context.StepResult is results.StepResult
    assert steps.plan_verdict is results.plan_verdict and steps.plan_frame is results.plan_frame
