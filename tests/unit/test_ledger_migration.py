"""A ledger written before the `action` column (confirmations and recoveries as `<step>/confirm`,
`<step>/recover` in the step column) is migrated on open and reads as it did."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from runbook_lib import audit, catalog, gates, summary
from runbook_lib.ledger import FORMAT, Ledger

pytestmark = pytest.mark.unit

ENV = "acme-legacy/web"
# The schema of the first ledgers, as they were created (no action column, user_version 0).
OLD_COLUMNS = ("id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL, environment TEXT NOT NULL, "
               "step TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, "
               "finished_at TEXT, duration_s REAL, evidence TEXT NOT NULL DEFAULT '{}', error TEXT, "
               "notebook_path TEXT, notebook_sha256 TEXT, operator TEXT NOT NULL, host TEXT NOT NULL")
OLD_SCHEMA = (f"CREATE TABLE step_runs ({OLD_COLUMNS});\n"
              "CREATE INDEX step_runs_env_step ON step_runs (environment, step, id);\n")
DECISION = '{"action": "delete", "decided_at": "2026-12-01T10:00:00+00:00", "operator": "alice", ' \
           '"target": "acme-legacy/web", "via": "parameter"}'
# (step column as written then, status, evidence)
OLD_ROWS = [
    ("03_migrate_state", "passed", '{"legacy_sha256": "' + "a" * 64 + '", "workspace_id": "ws-1"}'),
    ("05_commit_and_verify", "failed", "{}"),
    ("05_commit_and_verify/recover", "passed", '{"commit": "c0ffee", "done": []}'),
    ("05_commit_and_verify", "passed", '{"run_id": "run-9", "has_changes": false}'),
    ("06_delete_legacy_environment/confirm", "passed", DECISION),
    ("06_delete_legacy_environment", "passed", '{"deleted": true, "confirmation": ' + DECISION + '}'),
]


def _old_ledger(path):
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for i, (step, status, evidence) in enumerate(OLD_ROWS):
        db.execute("INSERT INTO step_runs (batch_id, environment, step, mode, status, started_at, finished_at, "
                   "duration_s, evidence, operator, host) VALUES ('b-1', ?, ?, 'apply', ?, ?, ?, 1.0, ?, 'alice', 'h')",
                   (ENV, step, status, f"2026-12-01T10:00:0{i}.000+00:00", f"2026-12-01T10:00:0{i}.500+00:00",
                    evidence))
    db.commit()
    db.close()
    return path


def _dump(path):
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump()), db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_an_old_ledger_opens_migrated_and_reads_as_before(tmp_path):
    path = _old_ledger(tmp_path / "ledger.sqlite")
    # What the readers made of the old file (they skipped the suffixed rows by name).
    before = {"outcomes": {ENV: {"03_migrate_state": "passed", "05_commit_and_verify": "passed",
                                 "06_delete_legacy_environment": "passed"}}}

    ledger = Ledger(path)
    rows = ledger.history()
    assert [(r.step, r.action, r.status) for r in rows] == [
        ("03_migrate_state", "run", "passed"), ("05_commit_and_verify", "run", "failed"),
        ("05_commit_and_verify", "recover", "passed"), ("05_commit_and_verify", "run", "passed"),
        ("06_delete_legacy_environment", "confirm", "passed"), ("06_delete_legacy_environment", "run", "passed")]
    assert _dump(path)[1] == FORMAT
    # Readers: the audit's outcome matrix, the summary's facts, the gate's recorded decision, step 6's check.
    assert audit.outcomes_from_ledger(path) == before["outcomes"]
    facts = summary.batch_facts(tmp_path, ledger_path=path, steps=catalog.STEPS, mode="apply")
    steps = facts["environments"][ENV]["steps"]
    assert {s: f["status"] for s, f in steps.items()} == before["outcomes"][ENV]
    assert facts["environments"][ENV]["evidence"]["deletion"]["confirmed_by"] == "alice"
    assert gates.recorded_decision(ledger, ENV, catalog.DELETE_LEGACY_ENVIRONMENT)["via"] == "parameter"
    assert ledger.passed(ENV, catalog.COMMIT_AND_VERIFY).evidence["run_id"] == "run-9"
    assert ledger.latest(ENV, catalog.COMMIT_AND_VERIFY, action=catalog.RECOVER).evidence["commit"] == "c0ffee"
    assert ledger.latest(ENV, catalog.DELETE_LEGACY_ENVIRONMENT).action == "run"  # a confirmation is not a run


def test_a_second_open_changes_nothing_and_takes_no_write_lock(tmp_path):
    path = _old_ledger(tmp_path / "ledger.sqlite")
    Ledger(path)
    migrated = _dump(path)
    # Another process holds the write lock: an open that tried to write would wait for it (30 s).
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        again = Ledger(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started < 5
    assert _dump(path) == migrated
    assert len(again.history()) == len(OLD_ROWS)


def _open(path: str, barrier) -> None:
    barrier.wait(10)
    Ledger(path)


def test_kernels_opening_an_old_ledger_together_migrate_it_once(tmp_path):
    path = _old_ledger(tmp_path / "ledger.sqlite")
    expected_dir = tmp_path / "alone"
    expected_dir.mkdir()
    alone = _old_ledger(expected_dir / "ledger.sqlite")
    Ledger(alone)
    barrier = multiprocessing.Barrier(4)
    procs = [multiprocessing.Process(target=_open, args=(str(path), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert _dump(path) == _dump(alone)


def test_a_new_ledger_records_actions_in_their_column(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.record(ENV, catalog.DISABLE_LEGACY_VCS, "apply", "passed", action=catalog.CONFIRM)
    run = ledger.record(ENV, catalog.DISABLE_LEGACY_VCS, "apply", "passed")
    assert ledger.latest(ENV, catalog.DISABLE_LEGACY_VCS).id == run
    assert [r.action for r in ledger.history()] == ["confirm", "run"]
    assert "action" in ledger.frame().columns
    with pytest.raises(Exception, match="unknown ledger action 'undo'"):
        ledger.start(ENV, catalog.DISABLE_LEGACY_VCS, "apply", action="undo")


def test_threads_of_one_process_open_a_fresh_ledger_together(tmp_path):
    path = tmp_path / "l.sqlite"
    errors = []

    def open_it():
        try:
            Ledger(path).record(ENV, catalog.PREFLIGHT, "plan", "passed")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(Ledger(path).history()) == 6
