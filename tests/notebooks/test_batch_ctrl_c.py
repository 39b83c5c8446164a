"""Ctrl-C the way an operator meets it: `tfe-runbook run` in a terminal (tmux), the key sent with send-keys,
the screen read with capture-pane.

- Once: the batch says at once which running step it waits for, that step ends and keeps its executed
  notebook, nothing else starts, exit status 130, no traceback; the same command then finishes the batch,
  and every passed step has its notebook (the manifest covers both runs).
- Twice: the second Ctrl-C says which step it abandons, the batch ends within seconds, and the abandoned
  step is recorded as failed with its (partial) notebook.

The seeded sandbox answers `/api/v1/environments` slowly here (latency injection), so step 0 is still
running when the keys arrive.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runbook_lib.mapping import propose, write_csv
from runbook_lib.rehearsal import batch_environ, operator_rows, sensitive_values

ENVS = ["network-prod", "web.prod"]
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")


class Terminal:
    """One tmux session running a shell script; `screen()` is what the operator sees."""

    def __init__(self, tmp: Path, command: list[str], environ: dict[str, str]) -> None:
        self.name = f"op-{uuid.uuid4().hex[:8]}"
        script = tmp / f"{self.name}.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environ.items())
        script.write_text(f"{exports}cd {shlex.quote(str(tmp))}\n{shlex.join(command)}\necho \"exit=$?\"\nsleep 600\n")
        script.chmod(0o700)
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "220", "-y", "60", f"bash {script}"],
                       check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-500", "-t", self.name],
                              capture_output=True, text=True, check=True).stdout

    def ctrl_c(self) -> float:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "C-c"], check=True)
        return time.monotonic()

    def wait_for(self, words: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while words not in self.screen():
            assert time.monotonic() < deadline, f"{words!r} never showed:\n{self.screen()}"
            time.sleep(0.02)
        return time.monotonic()

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _running(ledger: Path) -> list[tuple[str, str]]:
    if not ledger.exists():
        return []
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT environment, step FROM step_runs WHERE status = 'running'").fetchall()
    except sqlite3.OperationalError:
        return []


@pytest.fixture()
def batch(tmp_path, seeded_sandbox):
    org = f"ctrlc-{uuid.uuid4().hex[:8]}"
    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ENVS, org))  # with the facts the legacy UI shows
    write_csv(rows, tmp_path / "mapping.csv")
    environ = {**batch_environ(seeded_sandbox.env), **sensitive_values(seeded_sandbox, rows),
               "TFE_RUNBOOK_LOCK_DIR": str(tmp_path / "locks"),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    terminals: list[Terminal] = []

    def start(*args: str) -> Terminal:
        command = [sys.executable, "-m", "runbook_lib.cli", "run", "--mapping", "mapping.csv", "--jobs", "1",
                   "--batch", "b", *args]
        terminals.append(Terminal(tmp_path, command, environ))
        return terminals[-1]

    seeded_sandbox.set_faults(latency_ms=900, path_prefix="/api/v1/")
    try:
        yield start, tmp_path / "runs" / "b", environ
    finally:
        seeded_sandbox.clear_faults()
        for terminal in terminals:
            terminal.close()


def _wait_running(terminal: Terminal, ledger: Path, timeout: float = 120) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while not _running(ledger):
        assert time.monotonic() < deadline and "exit=" not in terminal.screen(), terminal.screen()
        time.sleep(0.05)
    return _running(ledger)[0]


def test_one_ctrl_c_waits_for_the_running_step_and_the_rerun_finishes(batch, seeded_sandbox):
    start, folder, environ = batch
    terminal = start("--mode", "apply", "--steps", "0-1")
    environment, step = _wait_running(terminal, folder / "ledger.sqlite")
    sent = terminal.ctrl_c()
    shown = terminal.wait_for("stopping after:", 10)
    terminal.wait_for("exit=", 120)
    screen = terminal.screen()
    print(f"Ctrl-C to 'stopping after': {shown - sent:.3f} s")
    assert shown - sent < 1.0
    assert f"stopping after: {environment} {step[:2]} (" in screen
    assert "exit=130" in screen and "interrupted" in screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen and "BrokenProcessPool" not in screen
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        rows = db.execute("SELECT environment, step, status, notebook_path FROM step_runs").fetchall()
    assert [(e, s, st) for e, s, st, _ in rows] == [(environment, step, "passed")]  # nothing else started
    assert rows[0][3] and (folder / rows[0][3]).is_file()  # the step that was running kept its notebook

    seeded_sandbox.clear_faults()
    again = subprocess.run([sys.executable, "-m", "runbook_lib.cli", "run", "--mapping", "mapping.csv", "--jobs", "1",
                            "--batch", "b", "--mode", "apply",
                            "--steps", "0-1", "--progress", "plain"], cwd=folder.parent.parent, env=environ,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"SKIPPED  {environment} {step}" in again.stderr
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        passed = db.execute("SELECT notebook_path FROM step_runs WHERE status = 'passed'").fetchall()
    assert len(passed) == len(ENVS) * 2 and all(p and (folder / p).is_file() for p, in passed)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [run["ended"] for run in manifest["runs"]] == ["interrupted", "completed"]
    assert manifest["started_at"] <= manifest["runs"][0]["started_at"]
    assert [a["which"] for a in manifest["who"]["accounts"]] == ["tfe", "legacy"]


def test_a_second_ctrl_c_abandons_the_running_step_at_once(batch, seeded_sandbox):
    start, folder, environ = batch
    seeded_sandbox.set_faults(latency_ms=3000, path_prefix="/api/v1/")
    terminal = start("--mode", "plan", "--steps", "0-1")
    environment, step = _wait_running(terminal, folder / "ledger.sqlite")
    time.sleep(0.5)
    terminal.ctrl_c()
    terminal.wait_for("stopping after:", 10)
    sent = terminal.ctrl_c()
    shown = terminal.wait_for(f"abandoning {environment} {step[:2]} (", 10)
    ended = terminal.wait_for("exit=", 60)
    screen = terminal.screen()
    print(f"second Ctrl-C to 'abandoning': {shown - sent:.3f} s; to the end of the batch: {ended - sent:.1f} s")
    assert shown - sent < 1.0 and ended - sent < 20
    assert "exit=130" in screen and "Traceback" not in screen and "Kernel died" not in screen
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        status, error, notebook = db.execute(
            "SELECT status, error, notebook_path FROM step_runs WHERE environment = ? AND step = ?",
            (environment, step)).fetchone()
    assert status == "failed" and error.startswith("abandoned by a second Ctrl-C") and (folder / notebook).is_file()
