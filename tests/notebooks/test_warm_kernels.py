"""Warm kernels: notebooks that share a kernel cannot see each other, and faults replace the kernel.

The first tests use small notebooks made here that follow the runbook's protocol (StepContext.create ...
conclude) and try to leak into the next notebook (a name, the working directory, an environment
variable, a warnings filter); the last runs the runbook's own notebooks for two environments in one warm
kernel and in fresh kernels and compares ledger and evidence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from runbook_lib.batch import BatchRunner
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow, propose

PARAMS = ('legacy_org = ""\nlegacy_env = ""\nnew_org = ""\nworkspace = ""\nmode = "plan"\naudit_root = ""\n'
          'ledger_path = ""\nbatch_id = "interactive"\ninteractive = True\nconfirm = ""\ncontrol_dir = ""')
HEAD = """
import json, os, pathlib, warnings
from runbook_lib.context import StepContext, StepResult
ctx = StepContext.create(step=STEP, legacy_org=legacy_org, legacy_env=legacy_env, new_org=new_org,
                         workspace=workspace, mode=mode, audit_root=audit_root, ledger_path=ledger_path,
                         batch_id=batch_id, interactive=interactive, confirm=confirm)
control = pathlib.Path(control_dir)
"""
# Records what this notebook found (before changing anything), then leaves every kind of trace behind.
SNOOP = """
seen = {"pid": os.getpid(), "leaked_name": "LEAKED" in dir(), "cwd": os.getcwd(),
        "variable": os.environ.get("WARM_TEST_VARIABLE"), "batch_variable": os.environ.get("WARM_TEST_BATCH"),
        "ignore_filters": sum(1 for f in warnings.filters if f[0] == "ignore" and f[2] is UserWarning)}
(control / f"{legacy_env}-{STEP}.json").write_text(json.dumps(seen))
LEAKED = "from " + legacy_env
os.chdir("/")
os.environ["WARM_TEST_VARIABLE"] = legacy_env
os.environ.pop("WARM_TEST_BATCH", None)
warnings.simplefilter("ignore", UserWarning)
"""
CRASH = """
marker = control / f"{legacy_env}-{STEP}.kill"
if marker.exists():
    marker.unlink()
    import signal
    os.kill(os.getpid(), signal.SIGKILL)
hang = control / f"{legacy_env}-{STEP}.hang"
if hang.exists():
    import time
    time.sleep(120)
"""
VERDICT = 'ctx.conclude(StepResult(True, "done", {"pid": os.getpid()}))'


def _notebook(folder: Path, step: str, *cells: str) -> None:
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(f"STEP = {step!r}\n" + HEAD),
                                         *[nbformat.v4.new_code_cell(c) for c in cells]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{step}.ipynb")


@pytest.fixture()
def folders(tmp_path):
    notebooks, control = tmp_path / "nb", tmp_path / "control"
    notebooks.mkdir()
    control.mkdir()
    return notebooks, control, tmp_path / "runs"


ROWS = [MappingRow("acme-legacy", "a", "acme", "a"), MappingRow("acme-legacy", "b", "acme", "b")]


def test_a_notebook_sees_nothing_of_the_one_before_it(folders, monkeypatch):
    notebooks, control, out = folders
    steps = ["00_first", "01_second"]
    for step in steps:
        _notebook(notebooks, step, SNOOP, VERDICT)
    monkeypatch.setenv("WARM_TEST_BATCH", "given by the batch")
    runner = BatchRunner(ROWS, steps, mode="apply", out=out, batch_id="w", jobs=1, notebooks_dir=notebooks,
                         parameters={"control_dir": str(control)}, kernels="warm")
    result = runner.run()
    assert result.ok, result.outcomes
    assert runner.kernel_stats == {"started": 1, "discarded": 0}
    seen = {p.stem: json.loads(p.read_text()) for p in control.glob("*.json")}
    assert len(seen) == 4 and len({s["pid"] for s in seen.values()}) == 1  # all four in one kernel
    for name, found in seen.items():
        assert found["leaked_name"] is False, name
        assert found["cwd"] == os.getcwd(), name
        assert found["variable"] is None, name
        assert found["batch_variable"] == "given by the batch", name
        assert found["ignore_filters"] == 0, name
    for path in out.glob("w/*/*.ipynb"):
        nb = json.loads(path.read_text())
        counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
        assert counts == list(range(1, len(counts) + 1)), path  # counted from 1 in every notebook
        assert not nb["metadata"]["papermill"]["exception"] and nb["metadata"]["papermill"]["duration"] > 0
        assert (path.with_suffix(".html")).is_file()


def test_a_killed_kernel_is_replaced_and_the_step_run_again(folders):
    notebooks, control, out = folders
    steps = ["00_first", "01_second"]
    for step in steps:
        _notebook(notebooks, step, CRASH, VERDICT)
    (control / "a-00_first.kill").touch()
    seen = []
    runner = BatchRunner(ROWS, steps, mode="apply", out=out, batch_id="k", jobs=1, notebooks_dir=notebooks,
                         parameters={"control_dir": str(control)}, kernels="warm", on_step=seen.append)
    result = runner.run()
    assert result.ok, [(o.step, o.error) for o in result.outcomes]
    assert [(o.environment, o.step, o.error_type) for o in seen if o.status == "retrying"] == [
        ("acme-legacy/a", "00_first", "DeadKernelError")]
    assert runner.kernel_stats == {"started": 2, "discarded": 1}
    assert (out / "k" / "acme-legacy__a" / "00_first.attempt-1.ipynb").is_file()  # the dead attempt's evidence


def test_a_timeout_stops_only_its_own_step(folders):
    notebooks, control, out = folders
    _notebook(notebooks, "00_first", CRASH, VERDICT)
    (control / "a-00_first.hang").touch()
    runner = BatchRunner(ROWS, ["00_first"], mode="apply", out=out, batch_id="t", jobs=1, notebooks_dir=notebooks,
                         parameters={"control_dir": str(control)}, kernels="warm", execution_timeout=5)
    result = runner.run()
    status = {o.environment: (o.status, o.error_type) for o in result.outcomes}
    assert status["acme-legacy/a"] == ("failed", "CellTimeoutError")  # not a kernel fault: not retried
    assert status["acme-legacy/b"] == ("passed", None)  # ran in a new kernel, not behind the hung cell
    assert runner.kernel_stats == {"started": 2, "discarded": 1}
    assert Ledger(out / "t" / "ledger.sqlite").latest("acme-legacy/a", "00_first").status == "failed"


def _comparable(ledger: Ledger, batch_dir: Path) -> list[tuple]:
    """Ledger rows without what differs between any two runs (ids, times, host, the notebooks' bytes, the
    batch's own folder, e.g. in the path of its mapping)."""
    return [(r.environment, r.step, r.mode, r.status,
             json.dumps(r.evidence, sort_keys=True).replace(str(batch_dir), "<batch>"), r.error, r.notebook_path)
            for r in ledger.history()]


def test_two_environments_in_one_warm_kernel_match_fresh_kernels(tmp_path, rehearsal, notebooks_copy, seeded_sandbox):
    from runbook_lib.batch import STEPS
    from runbook_lib.rehearsal import operator_rows

    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ["network-prod", "web.prod"], "warm-compare"))
    ledgers = {}
    for kernels in ("fresh", "warm"):
        runner = BatchRunner(rows, STEPS[:4], mode="plan", out=tmp_path / kernels, batch_id="p", jobs=1,
                             notebooks_dir=notebooks_copy, parameters=rehearsal, kernels=kernels)
        result = runner.run()
        assert result.ok, [(o.environment, o.step, o.error) for o in result.outcomes]
        ledgers[kernels] = Ledger(runner.ledger_path)
    assert runner.kernel_stats == {"started": 1, "discarded": 0}
    assert list(runner.rate_budget_dir.glob("*.bucket"))  # the kernels spent the batch's shared budget
    warm, fresh = _comparable(ledgers["warm"], tmp_path / "warm" / "p"), _comparable(ledgers["fresh"],
                                                                                      tmp_path / "fresh" / "p")
    assert warm == fresh and len(warm) == 8


def test_a_warm_notebook_is_written_at_its_start_and_end_and_sparsely_between(folders, monkeypatch):
    import papermill.engines

    from runbook_lib import kernels

    notebooks, control, out = folders
    quick = [f"x{i} = {i}" for i in range(12)]
    _notebook(notebooks, "00_first", *quick, "import time\ntime.sleep(1.5)", *quick, VERDICT)
    writes = []
    real_write = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), real_write(nb, path)))
    monkeypatch.setattr(kernels, "SAVE_EVERY", 1.0)
    runner = BatchRunner(ROWS[:1], ["00_first"], mode="apply", out=out, batch_id="s", jobs=1,
                         notebooks_dir=notebooks, parameters={"control_dir": str(control)}, kernels="warm")
    assert runner.run().ok
    # papermill alone writes before and after each of the 28 cells (58 writes); here: the start, once
    # after the long cell (more than SAVE_EVERY since the start), the end
    assert 3 <= len(writes) <= 4, len(writes)
    nb = json.loads((out / "s" / "acme-legacy__a" / "00_first.ipynb").read_text())
    statuses = [c["metadata"]["papermill"]["status"] for c in nb["cells"]]
    assert statuses == ["completed"] * len(nb["cells"]) and nb["metadata"]["papermill"]["duration"] > 1.5
