"""What an operator meets in a batch, with small real notebooks in real kernels: a step that waits for them,
a resumed batch whose passed step lost its notebook, the manifest of a batch run several times, the
confirm file in the trail, live progress in the CLI and in `status` from a second process, and an estate of
5,000 environments under ``ulimit -n 1024``.

The notebooks follow the runbook's protocol (StepContext.create ... conclude) and are steered by files in
a control folder, as in test_batch_mechanics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from runbook_lib import audit
from runbook_lib.batch import BatchRunner
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow

STEPS = ["00_alpha", "01_beta", "02_gamma"]
BODY = """
import pathlib, time
from IPython.display import display
from runbook_lib.context import StepContext, StepResult
ctx = StepContext.create(step=STEP, legacy_org=legacy_org, legacy_env=legacy_env, new_org=new_org,
                         workspace=workspace, mode=mode, audit_root=audit_root, ledger_path=ledger_path,
                         batch_id=batch_id, interactive=interactive, confirm=confirm)
control = pathlib.Path(control_dir)
(control / f"{legacy_env}-{STEP}.ran").open("a").write("x")
slow = control / f"{legacy_env}-{STEP}.slow"
if slow.exists():  # a wait with a live status line, as step 5 shows a run's status
    (control / f"{legacy_env}-{STEP}.started").touch()
    line = display({"text/plain": "run-1: pending"}, raw=True, display_id=True)
    for status in ("planning", "planned"):
        time.sleep(float(slow.read_text() or 1))
        line.update({"text/plain": f"run-1: {status}"}, raw=True)
if (control / f"{legacy_env}-{STEP}.wait").exists():
    ctx.ledger.finish(ctx.started_row_id, "waiting",
                      evidence={"instruction": f"unlink {legacy_env} in the legacy UI, then run the batch again"})
else:
    ctx.conclude(StepResult(True, "simulated step", {}))
"""


def _make_notebooks(folder: Path) -> None:
    for step in STEPS:
        params = nbformat.v4.new_code_cell(
            'legacy_org = ""\nlegacy_env = ""\nnew_org = ""\nworkspace = ""\nmode = "plan"\naudit_root = ""\n'
            'ledger_path = ""\nbatch_id = "interactive"\ninteractive = True\nconfirm = ""\ncontrol_dir = ""')
        params.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {step}"), params,
                                             nbformat.v4.new_code_cell(f"STEP = {step!r}\n" + BODY)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{step}.ipynb")


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("TFE_RUNBOOK_LOCK_DIR", str(tmp_path / "locks"))
    notebooks, control = tmp_path / "nb", tmp_path / "control"
    notebooks.mkdir()
    control.mkdir()
    _make_notebooks(notebooks)
    rows = [MappingRow("acme-legacy", "a", "acme", "a"), MappingRow("acme-legacy", "b", "acme", "b")]
    return notebooks, control, rows, tmp_path / "runs"


def _runner(setup, **kw):
    notebooks, control, rows, out = setup
    options = dict(mode="apply", out=out, batch_id="b1", jobs=2, parameters={"control_dir": str(control)},
                   notebooks_dir=notebooks)
    options.update(kw)
    return BatchRunner(options.pop("rows", rows), options.pop("steps", STEPS), **options)


def test_a_step_waiting_for_the_operator_blocks_its_environment_without_failing(setup):
    notebooks, control, rows, out = setup
    (control / "a-01_beta.wait").touch()
    result = _runner(setup).run()
    statuses = {(o.environment, o.step): (o.status, o.error) for o in result.outcomes}
    assert statuses[("acme-legacy/a", "01_beta")] == ("waiting", "unlink a in the legacy UI, then run the batch again")
    assert statuses[("acme-legacy/a", "02_gamma")] == ("blocked", "step 01_beta waits for the operator")
    assert statuses[("acme-legacy/b", "02_gamma")][0] == "passed"
    assert result.exit_code == 3 and result.counts() == {"passed": 4, "waiting": 1, "blocked": 1}

    (control / "a-01_beta.wait").unlink()  # the operator acted
    again = _runner(setup).run()
    assert again.exit_code == 0
    assert [(o.step, o.status) for o in again.outcomes if o.environment == "acme-legacy/a"] == [
        ("00_alpha", "skipped"), ("01_beta", "passed"), ("02_gamma", "passed")]


def test_a_passed_step_without_its_notebook_runs_again_and_every_pass_has_one(setup):
    notebooks, control, rows, out = setup
    _runner(setup).run()
    lost = out / "b1" / "acme-legacy__a" / "01_beta.ipynb"
    lost.unlink()  # as when a kernel outlived its killed batch and recorded PASS
    seen = []
    again = _runner(setup, on_step=seen.append).run()
    assert [(o.step, o.status) for o in again.outcomes if o.environment == "acme-legacy/a"] == [
        ("00_alpha", "skipped"), ("01_beta", "passed"), ("02_gamma", "skipped")]
    assert [(o.environment, o.step) for o in seen if o.status == "rerun"] == [("acme-legacy/a", "01_beta")]
    assert (control / "a-01_beta.ran").read_text() == "xx" and lost.is_file()
    ledger = Ledger(out / "b1" / "ledger.sqlite")
    for run in ledger.history():
        if run.status == "passed":
            assert run.notebook_path and (out / "b1" / run.notebook_path).is_file(), run
    manifest = json.loads((out / "b1" / "manifest.json").read_text())
    assert manifest["files"]["acme-legacy__a/01_beta.ipynb"]["sha256"] == audit.sha256_file(lost)


def test_the_manifest_covers_every_run_and_keeps_the_confirm_file(setup, tmp_path):
    notebooks, control, rows, out = setup
    (control / "b-02_gamma.wait").touch()
    confirm = tmp_path / "confirm.txt"
    confirm.write_text("# reviewed by the change board\ndelete acme-legacy/b\n")
    first = _runner(setup, confirm_file=confirm).run()
    (control / "b-02_gamma.wait").unlink()
    time.sleep(1.1)  # the runs' seconds differ
    _runner(setup, parameters={"control_dir": str(control)}, jobs=1).run()
    manifest = json.loads((out / "b1" / "manifest.json").read_text())
    runs = manifest["runs"]
    assert [run["ended"] for run in runs] == ["completed", "completed"]
    assert manifest["started_at"] == first.started_at < runs[1]["started_at"]
    assert runs[0]["jobs"] == 2 and runs[1]["jobs"] == 1
    assert runs[0]["parameters"] == runs[1]["parameters"] == {"control_dir": str(control)}
    copy = runs[0]["confirm_file"]
    assert copy["copy"] == "confirm.run-1.txt" and copy["source"] == str(confirm.resolve()) and copy["lines"] == 1
    assert (out / "b1" / "confirm.run-1.txt").read_bytes() == confirm.read_bytes()
    assert copy["sha256"] == audit.sha256_file(confirm) == manifest["files"]["confirm.run-1.txt"]["sha256"]
    assert "confirm_file" not in runs[1]
    assert manifest["who"] == {"accounts": [], "commit_authors": {}}  # no host check for these notebooks


def test_live_progress_reaches_the_cli_and_status_in_a_second_process(setup):
    notebooks, control, rows, out = setup
    (control / "a-01_beta.slow").write_text("1.5")
    lines = []
    statuses = []

    def on_progress(environment, step, line):
        lines.append((environment, step, line))
        if line.endswith("planning"):  # a second terminal asks while the step waits
            statuses.append(subprocess.run([sys.executable, "-m", "runbook_lib.cli", "status", str(out / "b1")],
                                           capture_output=True, text=True, timeout=60))

    result = _runner(setup, rows=rows[:1], on_progress=on_progress).run()
    assert result.ok
    assert [line for env, step, line in lines if step == "01_beta"] == ["run-1: pending", "run-1: planning",
                                                                         "run-1: planned"]
    status = statuses[0]
    assert status.returncode == 0, status.stderr
    assert "): running" in status.stdout
    assert "running: acme-legacy/a 01_beta for" in status.stdout and status.stdout.rstrip().count("\n") >= 3
    assert "run-1: pending" in status.stdout or "run-1: planning" in status.stdout


ESTATE = """
import os, resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from runbook_lib.batch import BatchRunner
from runbook_lib.mapping import MappingRow
rows = [MappingRow("acme-legacy", f"env-{i:04d}", "acme", f"env-{i:04d}") for i in range(5000)]
started = time.monotonic()
result = BatchRunner(rows, ["00_alpha"], mode="apply", out=sys.argv[1], batch_id="estate", jobs=24,
                     parameters={"control_dir": sys.argv[2]}, notebooks_dir=sys.argv[3]).run()
print(len(result.outcomes), sorted(result.counts().items()), round(time.monotonic() - started, 1),
      len(os.listdir("/proc/self/fd")), flush=True)
"""


def test_an_estate_of_five_thousand_environments_resumes_under_ulimit_1024(setup):
    notebooks, control, rows, out = setup
    # The estate's step 0 has passed everywhere (with its notebook): the resumed batch takes every lock, reads
    # the ledger once, skips every step and writes the evidence, all with 1,024 descriptors.
    import sqlite3

    batch = out / "estate"
    Ledger(batch / "ledger.sqlite", batch_id="estate")
    rows = []
    for i in range(5000):
        slug = f"acme-legacy/env-{i:04d}"
        folder = batch / audit.env_dirname(slug)
        folder.mkdir(parents=True)
        (folder / "00_alpha.ipynb").write_text("{}")
        rows.append(("estate", slug, "00_alpha", "apply", "passed", "2026-12-01T00:00:00.000+00:00",
                     "2026-12-01T00:00:01.000+00:00", f"{audit.env_dirname(slug)}/00_alpha.ipynb", "0" * 64, "op", "h"))
    with sqlite3.connect(batch / "ledger.sqlite") as db:  # one transaction for the estate's earlier passes
        db.executemany("INSERT INTO step_runs (batch_id, environment, step, mode, status, started_at, finished_at, "
                       "notebook_path, notebook_sha256, operator, host) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", ESTATE, str(out), str(control), str(notebooks)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes, counts, seconds, descriptors = done.stdout.split(" ", 1)[0], *done.stdout.rsplit(" ", 2)[-3:]
    print(f"5,000 environments resumed in {seconds} s with {descriptors.strip()} descriptors open at the end")
    assert outcomes == "5000" and "('skipped', 5000)" in done.stdout
    assert json.loads((batch / "manifest.json").read_text())["runs"][0]["environments"] == 5000
