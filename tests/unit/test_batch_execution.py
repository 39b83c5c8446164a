"""The batch's execution plumbing that needs no kernel: background HTML copies, kernel modes, cache scope."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from runbook_lib import audit, batch
from runbook_lib.context import StepContext
from runbook_lib.errors import RunbookError
from runbook_lib.mapping import MappingRow


class SlowHtml:
    """Stands in for nbconvert: each copy waits for `release`, and writes a file so its order is seen."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[str] = []

    def __call__(self, path: Path) -> Path:
        self.release.wait(10)
        if path.name.startswith("bad"):
            raise ValueError(f"cannot convert {path.name}")
        target = Path(path).with_suffix(".html")
        target.write_text("html")
        self.written.append(path.name)
        return target


def test_html_copies_are_bounded_and_drained(tmp_path, monkeypatch):
    slow = SlowHtml()
    monkeypatch.setattr(audit, "notebook_to_html", slow)
    copies = batch.HtmlCopies(max_pending=2, processes=False)
    copies.submit(tmp_path / "a.ipynb")
    copies.submit(tmp_path / "b.ipynb")
    third = threading.Thread(target=copies.submit, args=(tmp_path / "c.ipynb",))
    third.start()
    time.sleep(0.3)
    assert third.is_alive()  # a third copy waits for a slot: at most two are pending
    assert slow.written == []  # and nothing was written on the caller's thread
    slow.release.set()
    third.join(5)
    copies.settle(tmp_path / "a.ipynb")
    assert (tmp_path / "a.html").is_file()
    copies.drain()
    assert slow.written == ["a.ipynb", "b.ipynb", "c.ipynb"]


def test_a_failed_html_copy_is_raised_by_drain(tmp_path, monkeypatch):
    slow = SlowHtml()
    slow.release.set()
    monkeypatch.setattr(audit, "notebook_to_html", slow)
    copies = batch.HtmlCopies(processes=False)
    copies.submit(tmp_path / "bad.ipynb")
    copies.submit(tmp_path / "good.ipynb")
    with pytest.raises(ValueError, match="bad.ipynb"):
        copies.drain()
    assert slow.written == ["good.ipynb"]  # one failure does not stop the other copies


def test_html_copies_are_written_by_a_process_of_their_own(tmp_path):
    import nbformat

    notebook = tmp_path / "00_step.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('evidence')")]), notebook)
    copies = batch.HtmlCopies()
    copies.submit(notebook)
    copies.submit(tmp_path / "missing.ipynb")
    copies.settle(notebook)
    assert "evidence" in (tmp_path / "00_step.html").read_text()
    # below the steps' priority: they get the CPU first on a busy machine
    worker = next(iter(copies._pool._processes.values()))
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + batch.HTML_NICENESS)
    with pytest.raises(FileNotFoundError):
        copies.drain()


def test_kernel_mode_is_checked(tmp_path):
    with pytest.raises(RunbookError, match="--kernels must be warm or fresh"):
        batch.BatchRunner([MappingRow("o", "e", "n", "e")], ["00_preflight_inventory"], mode="plan",
                          out=tmp_path, batch_id="b", kernels="lukewarm")


def test_kernel_faults_are_transient_and_timeouts_are_not():
    assert {"DeadKernelError", "KernelFaultError"} <= set(batch.TRANSIENT_ERRORS)
    assert "CellTimeoutError" not in batch.TRANSIENT_ERRORS


def _ctx(tmp_path: Path, env: str) -> StepContext:
    return StepContext.create(step="02_create_workspaces", legacy_org="acme-legacy", legacy_env=env, new_org="acme",
                              audit_root=str(tmp_path), interactive=False,
                              legacy_address="http://127.0.0.1:9", tfe_address="http://127.0.0.1:9")


def test_read_reuse_is_scoped_to_one_step_context_and_the_rate_budget_is_not(tmp_path):
    # Two environments' steps, one after the other in one warm kernel: what the first read may not
    # answer the second; the host's rate budget (per token, not per notebook) is the one thing shared.
    first, second = _ctx(tmp_path, "web"), _ctx(tmp_path, "db")
    for name in ("tfe", "legacy"):
        a, b = getattr(first, name).session, getattr(second, name).session
        a.memo.put(("GET", "http://127.0.0.1:9/api/v2/workspaces/x"), object())
        assert b.memo is not a.memo and len(b.memo) == 0
        assert b.rate_limiter is a.rate_limiter


def test_jobs_auto_follows_the_host_rate_limit_and_the_machine():
    roomy = dict(cores=2, available_mb=16000)
    # 27/s budget at 2.7 requests/s per migrating environment, and 16 cut-overs (a TFE's default run capacity
    # of 10, and the time a cut-over spends outside its run)
    wide = batch.choose_jobs(100, 30.0, cores=4, available_mb=16000)
    assert (wide.jobs, wide.by_rate, wide.migrating, wide.cut_overs) == (26, 10, 10, 16)
    assert "at most 10 of them migrating and 16 cutting over" in wide.describe()
    assert batch.choose_jobs(100, 30.0, cores=1, available_mb=16000).jobs == 13  # then the CPU bound (13 kernels per core)
    assert batch.choose_jobs(100, 30.0, **roomy).cut_overs == 16
    few = batch.choose_jobs(4, 30.0, **roomy)
    assert (few.jobs, few.cut_overs) == (4, 4)  # never more than the environments
    assert batch.choose_jobs(100, 30.0, cores=2, available_mb=1000).jobs == 2  # memory: 250 MB per kernel
    silent = batch.choose_jobs(100, None, **roomy)
    assert silent.rate_limit == 30.0 and silent.rate_source == "default" and "default" in silent.describe()
    slow = batch.choose_jobs(100, 1.0, **roomy)
    assert (slow.jobs, slow.cut_overs) == (2, 1)  # cut-overs ask requests too: no more than the rate carries
    ten = batch.choose_jobs(100, 10.0, **roomy)  # 9/s budget: 3 migrating, cut-overs at most half of it
    assert (ten.migrating, ten.cut_overs, ten.jobs) == (3, 5, 8)
    assert ten.caps() == {batch.MIGRATE: 3, batch.CUT_OVER: 5}
    assert batch.JobsChoice(4, 4, 30.0, "host", 2, 9, 9, cut_overs=2).caps() == {batch.CUT_OVER: 2}  # 0: no cap


def test_a_step_waiting_for_a_kernel_when_the_batch_is_interrupted_never_starts(tmp_path):
    from runbook_lib.ledger import Ledger

    row = MappingRow("o", "e", "n", "e")
    runner = batch.BatchRunner([row], ["00_preflight_inventory"], mode="plan", out=tmp_path, batch_id="b", jobs=1)
    given_back = []

    class Pool:  # Ctrl-C arrives while this worker waits for a kernel start slot
        def take(self):
            runner._stopping.set()
            return "kernel"

        def give_back(self, kernel, healthy):
            given_back.append((kernel, healthy))

    runner._pool = Pool()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    outcome = runner._run_step(row, "00_preflight_inventory", ledger)
    assert (outcome.status, outcome.error) == ("blocked", "the batch was interrupted")
    assert given_back == [("kernel", True)] and ledger.history() == []  # nothing ran, nothing recorded


def test_jobs_must_be_a_number_or_auto(tmp_path):
    with pytest.raises(RunbookError, match="--jobs must be a number or auto"):
        batch.BatchRunner([MappingRow("o", "e", "n", "e")], ["00_preflight_inventory"], mode="plan",
                          out=tmp_path, batch_id="b", jobs="many")


def test_jobs_auto_asks_an_unreachable_host_nothing_and_takes_the_default(monkeypatch):
    monkeypatch.setenv("TFE_TOKEN", "x" * 20)
    assert batch.host_rate_limit({"tfe_address": "http://127.0.0.1:9"}) is None
