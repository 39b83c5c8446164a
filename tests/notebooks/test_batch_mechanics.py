"""The batch runner's mechanics with small real notebooks: order, resume, retries, evidence, locks.

The notebooks here are made by the test and follow the runbook's protocol (StepContext.create ...
conclude); their behaviour is steered by files in a control folder, so a step can fail once and pass
on the retry, as a real step does after the operator fixes the cause.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from runbook_lib import audit
from runbook_lib.batch import BatchRunner, acquire_locks, select_steps
from runbook_lib.errors import LedgerError, RunbookError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow

STEPS = ["00_alpha", "01_beta", "02_gamma"]
BODY = """
import pathlib
from runbook_lib.context import StepContext, StepResult
ctx = StepContext.create(step=STEP, legacy_org=legacy_org, legacy_env=legacy_env, new_org=new_org,
                         workspace=workspace, mode=mode, audit_root=audit_root, ledger_path=ledger_path,
                         batch_id=batch_id, interactive=interactive, confirm=confirm)
control = pathlib.Path(control_dir)
marker = control / f"{legacy_env}-{STEP}.fail"
(control / f"{legacy_env}-{STEP}.ran").open("a").write("x")
if (control / f"{legacy_env}-{STEP}.crash").exists():
    raise RuntimeError("simulated crash before the verdict")
transient = control / f"{legacy_env}-{STEP}.transient"
if transient.exists():
    transient.unlink()
    from runbook_lib.errors import ServerError
    raise ServerError("GET /api/v2/x answered 503 Service Unavailable")
ctx.conclude(StepResult(not marker.exists(), "simulated step", {"confirm": confirm}))
"""


def _make_notebooks(folder: Path) -> None:
    for step in STEPS:
        params = nbformat.v4.new_code_cell(
            'legacy_org = ""\nlegacy_env = ""\nnew_org = ""\nworkspace = ""\nmode = "plan"\naudit_root = ""\n'
            'ledger_path = ""\nbatch_id = "interactive"\ninteractive = True\nconfirm = ""\ncontrol_dir = ""')
        params.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {step}"), params,
            nbformat.v4.new_code_cell(f"STEP = {step!r}\n" + BODY)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{step}.ipynb")


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("TFE_RUNBOOK_LOCK_DIR", str(tmp_path / "locks"))  # this test's own environment locks
    notebooks = tmp_path / "nb"
    control = tmp_path / "control"
    notebooks.mkdir()
    control.mkdir()
    _make_notebooks(notebooks)
    rows = [MappingRow("acme-legacy", "a", "acme", "a"), MappingRow("acme-legacy", "b.x", "acme", "b-x")]
    return notebooks, control, rows, tmp_path / "runs"


def _runner(setup, **kw):
    notebooks, control, rows, out = setup
    defaults = dict(mode="apply", out=out, batch_id="b1", jobs=2, parameters={"control_dir": str(control)},
                    notebooks_dir=notebooks, steps=STEPS)
    defaults.update(kw)
    steps = defaults.pop("steps")
    return BatchRunner(rows, steps, **defaults)


def test_full_batch_then_resume_skips_everything(setup):
    notebooks, control, rows, out = setup
    result = _runner(setup).run()
    assert result.ok
    assert [(o.environment, o.step, o.status) for o in result.outcomes] == [
        (r.legacy_slug, s, "passed") for r in rows for s in STEPS]
    env_dir = out / "b1" / "acme-legacy__b.x"
    assert (env_dir / "01_beta.ipynb").is_file() and (env_dir / "01_beta.html").is_file()
    manifest = json.loads((out / "b1" / "manifest.json").read_text())
    assert manifest["files"]["acme-legacy__b.x/01_beta.ipynb"]["sha256"] == audit.sha256_file(env_dir / "01_beta.ipynb")
    ledger = Ledger(out / "b1" / "ledger.sqlite")
    row = ledger.latest("acme-legacy/b.x", "01_beta")
    assert row.notebook_path == "acme-legacy__b.x/01_beta.ipynb" and row.notebook_sha256

    again = _runner(setup).run()
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert (control / "a-00_alpha.ran").read_text() == "x"  # ran exactly once over two batch runs


def test_failure_blocks_successors_and_retry_resumes(setup):
    notebooks, control, rows, out = setup
    (control / "a-01_beta.fail").touch()
    result = _runner(setup).run()
    assert not result.ok
    statuses = {(o.environment, o.step): o.status for o in result.outcomes}
    assert statuses[("acme-legacy/a", "00_alpha")] == "passed"
    assert statuses[("acme-legacy/a", "01_beta")] == "failed"
    assert statuses[("acme-legacy/a", "02_gamma")] == "blocked"
    assert statuses[("acme-legacy/b.x", "02_gamma")] == "passed"
    failed = next(o for o in result.outcomes if o.status == "failed")
    assert "StepError" in failed.error and failed.notebook.endswith("01_beta.ipynb")

    (control / "a-01_beta.fail").unlink()
    retry = _runner(setup).run()
    statuses = {(o.environment, o.step): o.status for o in retry.outcomes}
    assert statuses[("acme-legacy/a", "00_alpha")] == "skipped"
    assert statuses[("acme-legacy/a", "01_beta")] == "passed"
    assert statuses[("acme-legacy/a", "02_gamma")] == "passed"
    assert (control / "a-00_alpha.ran").read_text() == "x"
    # The failed attempt's notebook is kept as evidence beside the passing one.
    assert (out / "b1" / "acme-legacy__a" / "01_beta.attempt-1.ipynb").is_file()


def test_crash_before_verdict_is_recorded_as_failure(setup):
    notebooks, control, rows, out = setup
    (control / "a-00_alpha.crash").touch()
    result = _runner(setup, steps=STEPS[:1]).run()
    outcome = next(o for o in result.outcomes if o.environment == "acme-legacy/a")
    assert outcome.status == "failed" and "simulated crash" in outcome.error
    row = Ledger(out / "b1" / "ledger.sqlite").latest("acme-legacy/a", "00_alpha")
    assert row.status == "failed" and "simulated crash" in row.error


def test_second_batch_on_same_environment_refused(setup):
    notebooks, control, rows, out = setup
    held = acquire_locks(["acme-legacy/a"])  # held by a batch with another --out
    try:
        with pytest.raises(LedgerError, match="another batch is working on acme-legacy/a"):
            _runner(setup).run()
    finally:
        held.release()
    assert not (control / "a-00_alpha.ran").exists() and not (control / "b.x-00_alpha.ran").exists()


def test_step_selection():
    steps = ["s0", "s1", "s2", "s3"]
    assert select_steps("0-3", steps) == steps
    assert select_steps("1,3", steps) == ["s1", "s3"]
    assert select_steps("2-", steps) == ["s2", "s3"]
    for bad in ("9", "x", "", "3-1"):
        with pytest.raises(RunbookError):
            select_steps(bad, steps)


def test_unknown_parameter_is_refused(setup):
    with pytest.raises(RunbookError, match="unknown notebook parameter.*migraton_path"):
        _runner(setup, parameters={"control_dir": "x", "migraton_path": "cli"})


def test_transient_api_error_is_retried_and_other_failures_are_not(setup):
    notebooks, control, rows, out = setup
    (control / "a-01_beta.transient").touch()
    (control / "b.x-01_beta.fail").touch()
    seen = []
    result = _runner(setup, on_step=seen.append).run()
    statuses = {(o.environment, o.step): o.status for o in result.outcomes}
    assert statuses[("acme-legacy/a", "01_beta")] == "passed"
    assert statuses[("acme-legacy/a", "02_gamma")] == "passed"
    assert statuses[("acme-legacy/b.x", "01_beta")] == "failed"  # a verification failure: not retried
    retries = [(o.environment, o.step, o.error_type) for o in seen if o.status == "retrying"]
    assert retries == [("acme-legacy/a", "01_beta", "ServerError")]
    assert (control / "b.x-01_beta.ran").read_text() == "x"
    assert (out / "b1" / "acme-legacy__a" / "01_beta.attempt-1.ipynb").is_file()


def test_phases_keep_cut_over_and_deletion_behind_every_migration():
    from runbook_lib.batch import STEPS, phase_of

    assert [phase_of(s) for s in STEPS] == [0, 0, 0, 0, 1, 1, 2]
