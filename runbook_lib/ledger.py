"""The ledger: a SQLite record of every step run, per environment.

It is what makes a batch resumable (a step already verified is skipped, a failed one is retried) and
what gates the irreversible step (step 6 deletes a legacy environment only when the ledger holds
step 5's PASS for it). Rows never hold a secret: evidence is checked with the secret scanner before
it is written, and a row that would carry a token is refused.

Several processes (papermill kernels of a parallel batch) write to one ledger; SQLite's WAL mode and
a busy timeout make that safe, and each write is one short transaction.

Each row names its step and, in the ``action`` column, what it records for that step (`catalog.RUN`, the
step's own run; `catalog.CONFIRM`, an operator's confirmation; `catalog.RECOVER`, step 5's way back).
Ledgers written before that column existed put the action into the step name (``05_commit_and_verify/
recover``); opening one moves it into the column, once (``PRAGMA user_version`` says the ledger's format,
and the move runs in one exclusive transaction, so two kernels opening it together migrate it once).

A step that needs the operator to act (in the legacy UI) ends ``waiting``: not passed, not failed; the
instruction is in its evidence (``instruction``) or its error text, and running the step again checks whether
the operator acted.

Besides the step runs, a batch records each of its runs (`batch_runs`: when, with which parameters, by
whom, the accounts behind the tokens, the confirm file's checksum, how it ended) and the latest progress
line of each running step (`step_progress`), which `tfe-runbook status` reads from another terminal through
`Ledger.open_readonly`, a connection that never writes.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from runbook_lib.catalog import LEDGER_ACTIONS, RUN
from runbook_lib.errors import LedgerError
from runbook_lib.secrets import scan_bytes, tokens_in_use

STATUSES = ("running", "passed", "failed", "refused", "skipped", "waiting")
#: Statuses a step run may end with.
FINAL_STATUSES = tuple(status for status in STATUSES if status != "running")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    step TEXT NOT NULL,
    mode TEXT NOT NULL,
    action TEXT NOT NULL DEFAULT 'run',
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_s REAL,
    evidence TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    notebook_path TEXT,
    notebook_sha256 TEXT,
    operator TEXT NOT NULL,
    host TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS step_runs_env_step ON step_runs (environment, step, id);
CREATE TABLE IF NOT EXISTS batch_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    ended TEXT,
    facts TEXT NOT NULL DEFAULT '{}',
    operator TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS step_progress (
    environment TEXT NOT NULL,
    step TEXT NOT NULL,
    line TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (environment, step)
);
"""
#: The ledger's format (``PRAGMA user_version``): 0 put a confirmation or recovery into the step name
#: (``<step>/confirm``), 1 has the ``action`` column, 2 the ``batch_runs`` and ``step_progress`` tables.
FORMAT = 2


def _is_folder_problem(exc: sqlite3.Error) -> bool:
    """SQLite's words for a read-only folder or file, or a full disk."""
    text = str(exc).lower()
    return any(words in text for words in ("readonly", "read-only", "disk is full", "unable to open database file",
                                            "disk i/o error"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StepRun:
    """One ledger row: `action` says what it records for `step` (`catalog.LEDGER_ACTIONS`)."""

    id: int
    batch_id: str
    environment: str
    step: str
    action: str
    mode: str
    status: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    evidence: dict[str, Any]
    error: str | None
    notebook_path: str | None
    notebook_sha256: str | None
    operator: str
    host: str


#: Seconds to keep asking for WAL mode while other processes hold the ledger (see `_wal`).
WAL_WAIT = 30.0


def _wal(db: sqlite3.Connection) -> None:
    """Switch a connection's database to write-ahead logging, waiting out other processes.

    Turning a rollback-journal database (an older ledger) into WAL needs it to itself; when several
    processes open it at once (a batch's kernels), SQLite may answer "database is locked" at once, without
    the busy timeout, where waiting could deadlock. Asked again every 50 ms for up to `WAL_WAIT` seconds.
    """
    deadline = time.monotonic() + WAL_WAIT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class Ledger:
    """SQLite ledger at `path` (created with its schema on first use).

    Args:
        path: the database file, usually `runs/<batch>/ledger.sqlite`.
        batch_id: the batch this process records for ("interactive" when run by hand).
    """

    def __init__(self, path: str | Path, batch_id: str = "interactive") -> None:
        self.path = Path(path)
        self.batch_id = batch_id
        self.readonly = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # Created owner-only: the rows show environments, errors and evidence of state. SQLite gives
                # its -wal and -shm files the database file's permissions.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise LedgerError(self._folder_problem(str(exc.strerror or exc))) from exc
        try:
            db = self._connect()
            try:
                self._prepare(db)
            finally:
                db.close()  # never leave a connection open across a fork (kernels, batch workers)
        except sqlite3.DatabaseError as exc:
            if _is_folder_problem(exc):
                raise LedgerError(self._folder_problem(str(exc))) from exc
            raise LedgerError(f"the ledger {self.path} cannot be opened ({exc}); "
                              f"move it aside and resume from the audit trail.") from exc

    @classmethod
    def open_readonly(cls, path: str | Path) -> "Ledger":
        """A ledger opened for reading only, by another process while a batch writes it (`tfe-runbook status`):
        nothing is created, migrated or written, and every connection is read-only (``mode=ro``).

        Raises:
            LedgerError: no ledger there, or one of a format this runbook does not read without migrating.
        """
        ledger = cls.__new__(cls)
        ledger.path, ledger.batch_id, ledger.readonly = Path(path), "", True
        if not ledger.path.is_file():
            raise LedgerError(f"{ledger.path} does not exist; give a batch folder written by `tfe-runbook run` "
                              f"(runs/<batch>).")
        try:
            db = ledger._connect()
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {ledger.path}: {exc}") from exc
        if version < FORMAT:
            raise LedgerError(f"the ledger {ledger.path} is of an older format ({version}); run the batch again (or "
                              f"`tfe-runbook archive`) once to bring it up to date, then ask again.")
        return ledger

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        """Create the schema, or bring an older ledger to FORMAT, in one exclusive transaction.

        Idempotent: the format is read again inside the transaction, so of two processes opening an old
        ledger together the second finds it migrated and changes nothing.
        """
        if db.execute("PRAGMA user_version").fetchone()[0] >= FORMAT:
            return  # the common case: no write lock taken
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] < FORMAT:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                columns = {row[1] for row in db.execute("PRAGMA table_info(step_runs)")}
                if "action" not in columns:
                    db.execute("ALTER TABLE step_runs ADD COLUMN action TEXT NOT NULL DEFAULT 'run'")
                for action in LEDGER_ACTIONS:
                    if action != RUN:  # "<step>/<action>" -> step, action
                        suffix = "/" + action
                        db.execute("UPDATE step_runs SET step = substr(step, 1, length(step) - ?), action = ? "
                                   "WHERE step LIKE ?", (len(suffix), action, "%" + suffix))
                db.execute("CREATE INDEX IF NOT EXISTS step_runs_env_step_action "
                           "ON step_runs (environment, step, action, id)")
                db.execute(f"PRAGMA user_version = {FORMAT}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _folder_problem(self, why: str) -> str:
        return (f"cannot write the ledger in {self.path.parent} ({why}): the folder is read-only or the disk is "
                f"full; make it writable, free space or choose another --out, then run the same command again.")

    def _connect(self) -> sqlite3.Connection:
        if getattr(self, "readonly", False):
            # A reader beside a running batch: WAL lets it read while the batch writes, and it never writes.
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            return db
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            _wal(db)
        except BaseException:
            db.close()
            raise
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, params: tuple) -> int:
        if self.readonly:
            raise LedgerError(f"the ledger {self.path} was opened for reading only.")
        try:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                cursor = db.execute(sql, params)
                db.execute("COMMIT")
                return int(cursor.lastrowid or 0)
            finally:
                db.close()
        except sqlite3.Error as exc:
            if _is_folder_problem(exc):
                raise LedgerError(self._folder_problem(str(exc))) from exc
            raise LedgerError(f"cannot write to the ledger {self.path}: {exc}") from exc

    @staticmethod
    def _checked_json(evidence: dict[str, Any] | None) -> str:
        text = json.dumps(evidence or {}, sort_keys=True, default=str)
        if scan_bytes(text.encode(), "evidence", tokens_in_use()):
            raise LedgerError("refusing to record evidence that contains a token; "
                              "record the name of its environment variable instead.")
        return text

    def start(self, environment: str, step: str, mode: str, *, action: str = RUN) -> int:
        """Record that a step (or one of its actions, see `catalog.LEDGER_ACTIONS`) starts; returns the row id
        to pass to `finish`.

        Raises:
            LedgerError: an unknown action.
        """
        if action not in LEDGER_ACTIONS:
            raise LedgerError(f"unknown ledger action {action!r}; use one of {', '.join(LEDGER_ACTIONS)}.")
        return self._write(
            "INSERT INTO step_runs (batch_id, environment, step, mode, action, status, started_at, operator, host) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (self.batch_id, environment, step, mode, action, _now(), getpass.getuser(), socket.gethostname()))

    def finish(self, row_id: int, status: str, *, evidence: dict[str, Any] | None = None,
               error: str | None = None, notebook_path: str | None = None,
               notebook_sha256: str | None = None) -> None:
        """Record how a started step ended.

        Raises:
            LedgerError: unknown status, unknown row, or evidence/error containing a token.
        """
        if status not in FINAL_STATUSES:
            raise LedgerError(f"unknown final status {status!r}; use one of {', '.join(FINAL_STATUSES)}.")
        if error and scan_bytes(error.encode(), "error", tokens_in_use()):
            raise LedgerError("refusing to record an error text that contains a token.")
        row = self.get(row_id)
        duration = (datetime.now(timezone.utc) - datetime.fromisoformat(row.started_at)).total_seconds()
        self._write(
            "UPDATE step_runs SET status=?, finished_at=?, duration_s=?, evidence=?, error=?, notebook_path="
            "COALESCE(?, notebook_path), notebook_sha256=COALESCE(?, notebook_sha256) WHERE id=?",
            (status, _now(), duration, self._checked_json(evidence), error, notebook_path, notebook_sha256, row_id))

    def record(self, environment: str, step: str, mode: str, status: str, *, action: str = RUN,
               **kwargs: Any) -> int:
        """Start and finish in one call (for outcomes known at once, like a refusal or a confirmation)."""
        row_id = self.start(environment, step, mode, action=action)
        self.finish(row_id, status, **kwargs)
        return row_id

    def attach_notebook(self, row_id: int, notebook_path: str, notebook_sha256: str) -> None:
        """Point a row at its executed notebook (written after the kernel recorded the outcome)."""
        self._write("UPDATE step_runs SET notebook_path=?, notebook_sha256=? WHERE id=?",
                    (notebook_path, notebook_sha256, row_id))

    def get(self, row_id: int) -> StepRun:
        """The row with this id.

        Raises:
            LedgerError: no such row.
        """
        rows = list(self._select("WHERE id=?", (row_id,)))
        if not rows:
            raise LedgerError(f"the ledger {self.path} has no step run {row_id}.")
        return rows[0]

    def _select(self, where: str, params: tuple) -> Iterator[StepRun]:
        try:
            db = self._connect()
            try:
                for row in db.execute(f"SELECT * FROM step_runs {where}", params):
                    data = dict(row)
                    data["evidence"] = json.loads(data["evidence"] or "{}")
                    yield StepRun(**data)
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc

    def history(self, environment: str | None = None) -> list[StepRun]:
        """Every row (runs, confirmations, recoveries: see `StepRun.action`), oldest first, optionally for one
        environment."""
        if environment is None:
            return list(self._select("ORDER BY id", ()))
        return list(self._select("WHERE environment=? ORDER BY id", (environment,)))

    def latest(self, environment: str, step: str, mode: str | None = None, *, action: str = RUN) -> StepRun | None:
        """The most recent finished-or-running row of this environment, step and action (and mode): by default
        the step's own runs, not its confirmations or recoveries."""
        if mode is None:
            rows = list(self._select("WHERE environment=? AND step=? AND action=? ORDER BY id DESC LIMIT 1",
                                     (environment, step, action)))
        else:
            rows = list(self._select("WHERE environment=? AND step=? AND action=? AND mode=? ORDER BY id DESC LIMIT 1",
                                     (environment, step, action, mode)))
        return rows[0] if rows else None

    def passed(self, environment: str, step: str, mode: str = "apply") -> StepRun | None:
        """The latest run of this step if it passed in `mode`, else None (a later failure revokes a pass)."""
        row = self.latest(environment, step, mode)
        return row if row is not None and row.status == "passed" else None

    def latest_runs(self, mode: str | None = None) -> dict[tuple[str, str], StepRun]:
        """Every environment's and step's latest run (action `RUN`, in `mode` when given), in one read: what a
        batch consults for thousands of environments at its start."""
        where = "WHERE action=? " + ("AND mode=? " if mode else "") + "ORDER BY id"
        latest: dict[tuple[str, str], StepRun] = {}
        for row in self._select(where, (RUN, mode) if mode else (RUN,)):
            latest[(row.environment, row.step)] = row
        return latest

    # --- the batch's own runs and progress ----------------------------------------------------------------

    def begin_batch_run(self, facts: dict[str, Any]) -> int:
        """Record that a run of the batch starts (`facts`: parameters, accounts, confirm file...); returns its id.

        Raises:
            LedgerError: the facts contain a token.
        """
        return self._write("INSERT INTO batch_runs (batch_id, started_at, facts, operator, host, pid) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (self.batch_id, _now(), self._checked_json(facts), getpass.getuser(), socket.gethostname(),
                            os.getpid()))

    def end_batch_run(self, run_id: int, ended: str, facts: dict[str, Any]) -> None:
        """Record how a run of the batch ended (``completed`` or ``interrupted``) and its final facts."""
        self._write("UPDATE batch_runs SET finished_at=?, ended=?, facts=? WHERE id=?",
                    (_now(), ended, self._checked_json(facts), run_id))

    def batch_runs(self) -> list[dict[str, Any]]:
        """Every run of the batch, oldest first: id, started_at, finished_at (None: still running, or killed),
        ended, operator, host, pid and its facts."""
        try:
            db = self._connect()
            try:
                rows = db.execute("SELECT * FROM batch_runs ORDER BY id").fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        return [dict(dict(row), facts=json.loads(row["facts"] or "{}")) for row in rows]

    def set_progress(self, environment: str, step: str, line: str) -> None:
        """Keep a running step's latest progress line (a run's status, a wait), for `tfe-runbook status`."""
        if scan_bytes(line.encode(), "progress", tokens_in_use()):
            return  # a progress line is a convenience: one that would carry a token is not kept
        self._write("INSERT INTO step_progress (environment, step, line, at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (environment, step) DO UPDATE SET line=excluded.line, at=excluded.at",
                    (environment, step, line, _now()))

    def progress(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(environment, step) -> (latest progress line, when)."""
        try:
            db = self._connect()
            try:
                return {(r["environment"], r["step"]): (r["line"], r["at"])
                        for r in db.execute("SELECT * FROM step_progress")}
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc

    def frame(self, environment: str | None = None):
        """The history as a pandas DataFrame (evidence as JSON text), for notebooks and summaries."""
        import pandas as pd

        rows = [dict(r.__dict__, evidence=json.dumps(r.evidence, sort_keys=True)) for r in self.history(environment)]
        columns = list(StepRun.__dataclass_fields__)
        return pd.DataFrame(rows, columns=columns)



def batch_run_facts(path: str | Path) -> dict[str, Any]:
    """What a batch's manifest records of its runs, from its ledger (so `archive` rebuilds it the same way).

    Returns:
        ``runs``: every run of the batch, oldest first (when, by whom, how it ended, and its facts: parameters,
        steps, accounts, confirm file); ``who``: the accounts behind the tokens in each run, and the git author
        of each environment's step 5 commit (from step 5's evidence).
    """
    ledger = Ledger(path)
    runs = [{key: run[key] for key in ("started_at", "finished_at", "ended", "operator", "host")} | run["facts"]
            for run in ledger.batch_runs()]
    authors = {}
    for row in ledger.history():
        author = row.evidence.get("commit_author") if row.action == RUN and row.status == "passed" else None
        if author:
            authors[row.environment] = author
    accounts = [run.get("accounts") for run in runs if run.get("accounts")]
    return {"runs": runs, "who": {"accounts": accounts[-1] if accounts else [], "commit_authors": authors}}
