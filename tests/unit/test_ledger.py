from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from runbook_lib.errors import LedgerError
from runbook_lib.ledger import Ledger

TOKEN = "AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa0987654321"


def test_start_finish_and_latest(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite", batch_id="b1")
    row = ledger.start("acme-legacy/web", "03_migrate_state", "apply")
    assert ledger.get(row).status == "running"
    ledger.finish(row, "passed", evidence={"serial": 7, "sha256": "ab"}, notebook_path="x.ipynb", notebook_sha256="cd")
    latest = ledger.latest("acme-legacy/web", "03_migrate_state")
    assert latest.status == "passed" and latest.evidence == {"serial": 7, "sha256": "ab"}
    assert latest.duration_s is not None and latest.duration_s >= 0
    assert ledger.passed("acme-legacy/web", "03_migrate_state").id == row
    assert ledger.passed("acme-legacy/web", "03_migrate_state", mode="plan") is None


def test_later_failure_revokes_pass(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.record("o/e", "05_commit_and_verify", "apply", "passed")
    ledger.record("o/e", "05_commit_and_verify", "apply", "failed", error="plan has changes")
    assert ledger.passed("o/e", "05_commit_and_verify") is None
    assert [r.status for r in ledger.history("o/e")] == ["passed", "failed"]


def test_refuses_token_in_evidence_or_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TFE_TOKEN", TOKEN)
    ledger = Ledger(tmp_path / "l.sqlite")
    row = ledger.start("o/e", "01", "apply")
    with pytest.raises(LedgerError, match="token"):
        ledger.finish(row, "passed", evidence={"note": f"used {TOKEN}"})
    with pytest.raises(LedgerError, match="token"):
        ledger.finish(row, "failed", error=f"401 with {TOKEN}")
    raw = (tmp_path / "l.sqlite").read_bytes()
    assert TOKEN.encode() not in raw
    # A token-shaped string that is not the one in use is refused too.
    monkeypatch.delenv("TFE_TOKEN")
    with pytest.raises(LedgerError):
        ledger.finish(row, "passed", evidence={"note": "other 1234567.atlasv1.abcdefghijklmnopqrstuv"})


def test_unknown_status_and_row(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    row = ledger.start("o/e", "01", "plan")
    with pytest.raises(LedgerError, match="unknown final status"):
        ledger.finish(row, "ok")
    with pytest.raises(LedgerError, match="no step run"):
        ledger.get(999)


def test_corrupt_ledger_is_a_clear_error(tmp_path):
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot be opened"):
        Ledger(path)


def _writer(path: str, n: int, worker: int) -> None:
    ledger = Ledger(path, batch_id=f"w{worker}")
    for i in range(n):
        ledger.record(f"o/env-{worker}", f"step-{i}", "apply", "passed", evidence={"i": i})


def test_parallel_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "l.sqlite")
    Ledger(path)
    procs = [multiprocessing.Process(target=_writer, args=(path, 40, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM step_runs WHERE status='passed'").fetchone()[0]
    assert count == 120


def test_frame_has_one_row_per_run(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.record("o/a", "00", "plan", "passed")
    ledger.record("o/b", "00", "plan", "failed", error="x")
    frame = ledger.frame()
    assert list(frame["environment"]) == ["o/a", "o/b"]
    assert list(frame["status"]) == ["passed", "failed"]
