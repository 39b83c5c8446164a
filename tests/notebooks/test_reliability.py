"""Proof under faults and crashes (issue 10): the whole runbook, apply mode, against misbehaving servers.

- A batch of 10 environments with fault injection on (10% 5xx, 429 bursts, 2% dropped connections,
  50 ms latency) ends with every environment verified, nothing duplicated, and every workspace holding
  exactly its legacy backup.
- The batch killed with SIGKILL at 10 fixed points across steps 2-6 (mid-upload and around the push
  among them), resumed each time, ends complete with the same guarantees.
- The sandbox restarted in the middle of a batch likewise.

The operator's part (unlinking and deleting in the legacy UI) is played alongside each batch by
`rehearsal.OperatorAlongside`, with the confirm lines given up front and step 6's `wait_for_deletion`.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from runbook_lib.batch import GATED_ACTIONS, STEPS, BatchRunner
from runbook_lib.legacy import NOT_FOUND, LegacyClient
from runbook_lib.mapping import MappingRow, propose, write_csv
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import (OperatorAlongside, batch_environ, batch_parameters, clear_blockers,
                                   operator_rows, sensitive_values)
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient
from sandbox_fixtures import start_batch_cli, step_running


def _start(tmp_path: Path, seed: int, monkeypatch) -> Sandbox:
    sandbox = Sandbox(tmp_path / "sandbox", seed=seed, tls=True).start()
    for name, value in batch_environ(sandbox.env).items():
        monkeypatch.setenv(name, value)
    rows = _rows(sandbox, [s.name for s in sandbox.seeded_environments()], "any")
    for line in clear_blockers(sandbox, rows):
        print(line)
    for name, value in sensitive_values(sandbox, rows).items():
        monkeypatch.setenv(name, value)
    return sandbox


def _rows(sandbox: Sandbox, envs: list[str], org: str) -> list[MappingRow]:
    """The mapping rows with the facts the operator read off the legacy UI."""
    return operator_rows(sandbox, propose(sandbox.legacy_org, envs, org))


def _params(sandbox: Sandbox) -> dict[str, str]:
    return {**batch_parameters(sandbox.env), "wait_for_deletion": "120"}


def _confirmations(rows: list[MappingRow]) -> list[str]:
    return [f"{action} {row.legacy_slug}" for row in rows for action in GATED_ACTIONS.values()]


def _assert_migrated(batch_dir: Path, rows: list[MappingRow]) -> None:
    """Every environment: one workspace, one finalized state version equal to its backup, no duplicate
    variable, no legacy environment left."""
    tfe = TfeClient(Settings.from_env(), read_only=True)
    legacy = LegacyClient(Settings.from_env(), read_only=True)
    org = rows[0].new_org
    assert sorted(ws.get("name") for ws in tfe.list_workspaces(org)) == sorted(r.workspace for r in rows)
    for row in rows:
        ws = tfe.get_workspace(org, row.workspace)
        versions = [v for v in tfe.list_state_versions(org, row.workspace) if v.get("status") != "pending"]
        assert len(versions) == 1, f"{row.legacy_slug}: {len(versions)} state versions"
        backups = sorted((batch_dir / f"{row.legacy_org}__{row.legacy_env}" / "state").glob("backup-*.tfstate"))
        assert len(backups) == 1, backups
        assert tfe.download_state(tfe.current_state_version(ws.id)) == backups[0].read_bytes()
        keys = [(v.get("key"), v.get("category")) for v in tfe.list_variables(ws.id)]
        assert len(keys) == len(set(keys)), keys
        assert legacy.read_state(row.legacy_org, row.legacy_env).found == NOT_FOUND


def test_full_batch_under_faults(tmp_path, monkeypatch):
    sandbox = _start(tmp_path, 10, monkeypatch)
    try:
        rows = _rows(sandbox, [s.name for s in sandbox.seeded_environments()], "faulty-acme")
        sandbox.set_faults(error_rate=0.10, burst_rate=0.02, burst_length=3, drop_rate=0.02, latency_ms=50,
                           seed=20261129)
        mark = sandbox.log_mark()
        with OperatorAlongside(sandbox, rows, tmp_path / "runs" / "faults"):
            result = BatchRunner(rows, STEPS, mode="apply", out=tmp_path / "runs", batch_id="faults", jobs=2,
                                 parameters=_params(sandbox), confirm_lines=_confirmations(rows)).run()
        faulted = [r for r in sandbox.request_log(since=mark) if r["fault"]]
        sandbox.clear_faults()
        assert result.ok, result.frame().to_string()
        kinds = {r["fault"] for r in faulted}
        assert {"5xx", "drop"} <= kinds or len(kinds) >= 2, kinds  # the faults really happened
        _assert_migrated(result.batch_dir, rows)
    finally:
        sandbox.stop()


# Kill points: (description, step that must be running, predicate over one request-log row). Each is the next
# one awaited after a resume; the batch runs one environment at a time.
KILL_POINTS = [
    ("step 2: workspace created, not yet locked", "02_create_workspaces",
     lambda r: r["method"] == "POST" and r["path"].endswith("/workspaces")),
    ("step 2: locked, not yet linked", "02_create_workspaces",
     lambda r: r["method"] == "POST" and r["path"].endswith("/actions/lock")),
    ("step 2: first variable created", "02_create_workspaces",
     lambda r: r["method"] == "POST" and r["path"].endswith("/vars")),
    ("step 3: state version created, bytes not uploaded", "03_migrate_state",
     lambda r: r["method"] == "POST" and r["path"].endswith("/state-versions")),
    ("step 3: bytes uploaded, not read back", "03_migrate_state",
     lambda r: r["method"] == "PUT" and "/_archivist/" in r["path"]),
    ("step 4: the legacy baseline read", "04_disable_legacy_vcs",
     lambda r: r["method"] == "GET" and r["path"].endswith("/versions/latest")),
    ("step 5: pushed, workspace unlocked", "05_commit_and_verify",
     lambda r: r["method"] == "POST" and r["path"].endswith("/actions/unlock")),
    ("step 5: waiting for the run", "05_commit_and_verify",
     lambda r: r["method"] == "GET" and ("/api/v2/runs/" in r["path"] or r["path"].endswith("/runs"))),
    ("step 6: final backup read", "06_delete_legacy_environment",
     lambda r: r["method"] == "GET" and r["path"].startswith("/api/v1/terraform/state/")),
    ("step 6: the operator deleted it in the legacy UI", "06_delete_legacy_environment",
     lambda r: r["method"] == "POST" and r["path"].endswith("/settings/delete")),
]


def _cli(tmp_path: Path, csv: Path, confirm: Path, params: dict[str, str]):
    return start_batch_cli(tmp_path / "runs", csv, params, batch="crash", confirm_file=confirm)


def test_sigkill_at_ten_points_then_resume(tmp_path, monkeypatch):
    sandbox = _start(tmp_path, 2, monkeypatch)
    try:
        rows = _rows(sandbox, ["network-prod", "web.prod"], f"crash-{uuid.uuid4().hex[:6]}")
        csv, confirm = tmp_path / "mapping.csv", tmp_path / "confirm.txt"
        write_csv(rows, csv)
        confirm.write_text("\n".join(_confirmations(rows)) + "\n")
        params = _params(sandbox)
        batch_dir = tmp_path / "runs" / "crash"
        # Every request takes 100 ms, so the batch cannot get past a kill point before the kill lands.
        sandbox.set_faults(latency_ms=100)
        killed = []
        operator = OperatorAlongside(sandbox, rows, batch_dir).__enter__()
        for label, step, hit in KILL_POINTS:
            mark = sandbox.log_mark()
            proc = _cli(tmp_path, csv, confirm, params)
            deadline = time.monotonic() + 180
            while True:
                if step_running(batch_dir, step):
                    rows_seen = sandbox.request_log(since=mark)
                    if any(hit(r) for r in rows_seen):
                        break
                else:
                    mark = sandbox.log_mark()  # only requests made while the step runs count
                if proc.poll() is not None:
                    pytest.fail(f"the batch ended before '{label}':\n{proc.stdout.read()[-3000:]}")
                assert time.monotonic() < deadline, f"never reached '{label}'"
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            hit_row = next(r for r in rows_seen if hit(r))
            killed.append(label)
            print(f"killed at {label}: {hit_row['method']} {hit_row['path']}")
        sandbox.clear_faults()
        final = _cli(tmp_path, csv, confirm, params)
        output, _ = final.communicate(timeout=600)
        operator.__exit__(None, None, None)
        assert final.returncode == 0, output[-4000:]
        assert len(killed) == 10
        _assert_migrated(batch_dir, rows)
    finally:
        sandbox.stop()


def test_sandbox_restart_mid_batch(tmp_path, monkeypatch):
    sandbox = _start(tmp_path, 2, monkeypatch)
    try:
        rows = _rows(sandbox, ["network-prod", "web.prod"], "restart-acme")
        csv, confirm = tmp_path / "mapping.csv", tmp_path / "confirm.txt"
        write_csv(rows, csv)
        confirm.write_text("\n".join(_confirmations(rows)) + "\n")
        mark = sandbox.log_mark()
        operator = OperatorAlongside(sandbox, rows, tmp_path / "runs" / "crash").__enter__()
        proc = _cli(tmp_path, csv, confirm, _params(sandbox))
        deadline = time.monotonic() + 180
        while not any(r["method"] == "POST" and r["path"].endswith("/state-versions")
                      for r in sandbox.request_log(since=mark)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        sandbox.restart()  # same port and data; requests in flight fail, the batch must cope
        output, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:  # a step that met the restart failed: the same command resumes it
            again = _cli(tmp_path, csv, confirm, _params(sandbox))
            output, _ = again.communicate(timeout=600)
            assert again.returncode == 0, output[-4000:]
        operator.__exit__(None, None, None)
        _assert_migrated(tmp_path / "runs" / "crash", rows)
    finally:
        sandbox.stop()
