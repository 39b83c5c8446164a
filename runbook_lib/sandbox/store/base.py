"""The sandbox's state, common part: SQLite under the data directory, plain dict rows, rules enforced here.

Like moto's `models.py`: handlers parse and serialise, the store decides. Every rule that can refuse a
request (lock held by someone else, serial going backwards, a taken name) raises a `SandboxError`
subclass from here, and because the server runs each request inside one `Store.tx()` transaction, a
refused request rolls back: it changes nothing, and the request log records `changes = 0` for it.

One connection guarded by a re-entrant lock (WAL journal): simple, restart-safe, and fast enough for
a few thousand small requests a second. The run worker (`sandbox/runner.py`) uses the same `tx()`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from runbook_lib.sandbox import errors

_ALNUM = string.ascii_letters + string.digits
FINAL_RUN_STATUSES = ("planned_and_finished", "applied", "errored", "discarded", "canceled", "force_canceled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, username TEXT UNIQUE NOT NULL, email TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, description TEXT NOT NULL,
    token_sha256 TEXT UNIQUE NOT NULL, value TEXT NOT NULL, created_at TEXT NOT NULL);
-- legacy (/api/v1)
CREATE TABLE IF NOT EXISTS legacy_orgs (name TEXT PRIMARY KEY, email TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS legacy_members (
    org TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (org, user_id));
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, terraform_version TEXT NOT NULL,
    vcs_repo TEXT, vcs_branch TEXT, vcs_working_directory TEXT,
    locked INTEGER NOT NULL DEFAULT 0, locked_by TEXT, lock_reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS legacy_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT, env_id TEXT NOT NULL, serial INTEGER NOT NULL, lineage TEXT,
    md5 TEXT NOT NULL, body BLOB NOT NULL, run_id TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS legacy_states_env ON legacy_states (env_id, id);
CREATE TABLE IF NOT EXISTS legacy_vars (
    env_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, category TEXT NOT NULL,
    hcl INTEGER NOT NULL DEFAULT 0, sensitive INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (env_id, key, category));
CREATE TABLE IF NOT EXISTS legacy_config_versions (
    env_id TEXT NOT NULL, version INTEGER NOT NULL, metadata TEXT NOT NULL, upload_token TEXT,
    tarball BLOB, created_at TEXT NOT NULL, PRIMARY KEY (env_id, version));
CREATE TABLE IF NOT EXISTS legacy_runs (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL, status TEXT NOT NULL, commit_sha TEXT, message TEXT,
    source TEXT NOT NULL, is_destroy INTEGER NOT NULL DEFAULT 0, has_changes INTEGER NOT NULL DEFAULT 0,
    plan_log TEXT, created_by TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS legacy_runs_env ON legacy_runs (env_id, created_at);
-- new TFE (/api/v2)
CREATE TABLE IF NOT EXISTS organizations (
    name TEXT PRIMARY KEY, external_id TEXT UNIQUE NOT NULL, email TEXT NOT NULL, created_at TEXT NOT NULL,
    session_timeout INTEGER NOT NULL DEFAULT 20160, session_remember INTEGER NOT NULL DEFAULT 20160,
    default_execution_mode TEXT NOT NULL DEFAULT 'remote', default_agent_pool_id TEXT,
    default_project_id TEXT);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS agent_pools (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS org_members (
    org TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (org, user_id));
CREATE TABLE IF NOT EXISTS oauth_clients (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT, service_provider TEXT NOT NULL, http_url TEXT,
    api_url TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_tokens (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, uid TEXT NOT NULL, token_sha256 TEXT,
    service_provider_user TEXT, has_ssh_key INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    execution_mode TEXT NOT NULL, auto_apply INTEGER NOT NULL, terraform_version TEXT NOT NULL,
    working_directory TEXT NOT NULL DEFAULT '', queue_all_runs INTEGER NOT NULL DEFAULT 0,
    speculative_enabled INTEGER NOT NULL DEFAULT 1, file_triggers_enabled INTEGER NOT NULL DEFAULT 1,
    trigger_prefixes TEXT NOT NULL DEFAULT '[]', source_name TEXT, source_url TEXT,
    migration_environment TEXT,
    vcs_identifier TEXT, vcs_branch TEXT, vcs_oauth_token_id TEXT, vcs_ingress_submodules INTEGER,
    locked INTEGER NOT NULL DEFAULT 0, locked_by_user TEXT, locked_by_run TEXT, lock_reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS state_versions (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, seq INTEGER NOT NULL, serial INTEGER NOT NULL,
    lineage TEXT, md5 TEXT NOT NULL, status TEXT NOT NULL, state BLOB, json_state BLOB,
    json_state_outputs TEXT, terraform_version TEXT, state_version INTEGER, run_id TEXT,
    created_by TEXT, upload_token TEXT, json_upload_token TEXT, download_token TEXT NOT NULL,
    json_download_token TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS state_versions_ws ON state_versions (workspace_id, seq);
CREATE TABLE IF NOT EXISTS vars (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    description TEXT, category TEXT NOT NULL, hcl INTEGER NOT NULL, sensitive INTEGER NOT NULL,
    created_at TEXT NOT NULL, UNIQUE (workspace_id, key, category));
CREATE TABLE IF NOT EXISTS configuration_versions (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL,
    speculative INTEGER NOT NULL, auto_queue_runs INTEGER NOT NULL, upload_token TEXT,
    tarball BLOB, ingress TEXT, created_at TEXT NOT NULL, provisional INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, configuration_version_id TEXT, status TEXT NOT NULL,
    message TEXT, source TEXT NOT NULL, is_destroy INTEGER NOT NULL, plan_only INTEGER NOT NULL,
    auto_apply INTEGER NOT NULL, has_changes INTEGER NOT NULL DEFAULT 0, created_by TEXT,
    status_timestamps TEXT NOT NULL, created_at TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS runs_ws ON runs (workspace_id, created_at);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, run_id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
    has_changes INTEGER NOT NULL DEFAULT 0, additions INTEGER NOT NULL DEFAULT 0,
    changes INTEGER NOT NULL DEFAULT 0, destructions INTEGER NOT NULL DEFAULT 0,
    imports INTEGER NOT NULL DEFAULT 0, log TEXT, json_output BLOB, json_download_token TEXT NOT NULL,
    log_token TEXT NOT NULL, status_timestamps TEXT NOT NULL);
-- a run's apply (applies.mdx): created with its run; `confirmed_by` is who confirmed it (run.mdx `confirmed-by`)
CREATE TABLE IF NOT EXISTS applies (
    id TEXT PRIMARY KEY, run_id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
    additions INTEGER NOT NULL DEFAULT 0, changes INTEGER NOT NULL DEFAULT 0,
    destructions INTEGER NOT NULL DEFAULT 0, imports INTEGER NOT NULL DEFAULT 0, log TEXT,
    log_token TEXT NOT NULL, confirmed_by TEXT, status_timestamps TEXT NOT NULL);
-- a run's comments (comments.mdx) and its events (go-tfe `run_event.go`): each comment is one `commented` event
CREATE TABLE IF NOT EXISTS comments (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, body TEXT NOT NULL, created_by TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_events (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, action TEXT NOT NULL, description TEXT, actor_id TEXT,
    comment_id TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS run_events_run ON run_events (run_id, created_at);
-- the redacted JSON plan the cloud backend renders (plan JSON + provider schemas), per plan
CREATE TABLE IF NOT EXISTS plan_redacted (plan_id TEXT PRIMARY KEY, body BLOB NOT NULL);
-- archivist-style capability URLs: the token in the URL is the authorisation (no bearer needed)
CREATE TABLE IF NOT EXISTS blobs (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, owner_id TEXT NOT NULL, direction TEXT NOT NULL);
-- the run worker: the runs the sandbox executes (seeded history is never executed)
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, apply_log TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, token_name TEXT, username TEXT, changes INTEGER NOT NULL, fault TEXT,
    duration_ms REAL NOT NULL);
-- teams (see store/teams.py): legacy teams are sandbox-defined; new ones follow the teams API docs
CREATE TABLE IF NOT EXISTS legacy_teams (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS legacy_team_members (
    team_id TEXT NOT NULL, username TEXT NOT NULL, PRIMARY KEY (team_id, username));
CREATE TABLE IF NOT EXISTS legacy_team_access (
    team_id TEXT NOT NULL, env_id TEXT NOT NULL, access TEXT NOT NULL, PRIMARY KEY (team_id, env_id));
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (org, name));
CREATE TABLE IF NOT EXISTS team_members (
    team_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (team_id, user_id));
CREATE TABLE IF NOT EXISTS team_workspaces (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, workspace_id TEXT NOT NULL, access TEXT NOT NULL,
    created_at TEXT NOT NULL, UNIQUE (team_id, workspace_id));
"""

# Tables reset() empties; users, tokens and meta survive so addresses and tokens stay valid.
_DATA_TABLES = ("legacy_orgs", "legacy_members", "environments", "legacy_states", "legacy_vars",
                "legacy_config_versions", "legacy_runs", "organizations", "projects", "agent_pools", "org_members",
                "oauth_clients",
                "oauth_tokens", "workspaces", "state_versions", "vars", "configuration_versions", "runs",
                "plans", "applies", "plan_redacted", "blobs", "request_log", "run_jobs", "comments", "run_events")


_VIA_WORKSPACE = "JOIN workspaces w ON w.id = x.workspace_id"
# How a row of the new API reaches the organization whose members may see it:
# table -> (joins from `x`, the owning organization's column, the key column).
_OWNED_THROUGH = {
    "organizations": ("", "x.name", "name"),
    "oauth_clients": ("", "x.org", "id"),
    "projects": ("", "x.org", "id"),
    "agent_pools": ("", "x.org", "id"),
    "oauth_tokens": ("JOIN oauth_clients c ON c.id = x.client_id", "c.org", "id"),
    "workspaces": ("", "x.org", "id"),
    "state_versions": (_VIA_WORKSPACE, "w.org", "id"),
    "configuration_versions": (_VIA_WORKSPACE, "w.org", "id"),
    "runs": (_VIA_WORKSPACE, "w.org", "id"),
    "plans": ("JOIN runs r ON r.id = x.run_id JOIN workspaces w ON w.id = r.workspace_id", "w.org", "id"),
    "applies": ("JOIN runs r ON r.id = x.run_id JOIN workspaces w ON w.id = r.workspace_id", "w.org", "id"),
    "comments": ("JOIN runs r ON r.id = x.run_id JOIN workspaces w ON w.id = r.workspace_id", "w.org", "id"),
    "run_events": ("JOIN runs r ON r.id = x.run_id JOIN workspaces w ON w.id = r.workspace_id", "w.org", "id"),
}


#: The description of the token the sandbox's runs present (`runner.Runner.run_token`).
RUN_TOKEN = "per-run token (sandbox runs)"


def now_iso() -> str:
    """Current UTC time as ISO 8601 with milliseconds and `Z`, the way TFE writes timestamps."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id(prefix: str, length: int = 16) -> str:
    """A TFE-looking identifier: `ws-` + 16 random letters and digits."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_token_value() -> str:
    """A token in the shape real TFE issues: `<14 chars>.atlasv1.<67 chars>`."""
    return (f"{''.join(secrets.choice(_ALNUM) for _ in range(14))}.atlasv1."
            f"{''.join(secrets.choice(_ALNUM) for _ in range(67))}")


def md5_hex(data: bytes) -> str:
    """Hex MD5, as TFE state versions carry it."""
    return hashlib.md5(data).hexdigest()  # noqa: S324 - a content checksum, required by the protocol


def md5_b64(data: bytes) -> str:
    """Base64 MD5, as the legacy `Content-MD5` header carries it."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324


def parse_state(data: bytes) -> dict[str, Any]:
    """Serial, lineage, terraform_version and format version of a state file.

    Raises:
        UnprocessableError: the bytes are not a JSON object with an integer serial.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.UnprocessableError(f"state is not valid JSON: {exc}", pointer="/data/attributes/state") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("serial"), int):
        raise errors.UnprocessableError("state has no integer serial", pointer="/data/attributes/state")
    return {"serial": doc["serial"], "lineage": doc.get("lineage") or None,
            "terraform_version": doc.get("terraform_version"), "version": doc.get("version"), "doc": doc}


def _b(value: Any) -> int:
    return 1 if value else 0


def visible_row(table: str, what: str) -> Callable[..., dict[str, Any]]:
    """A store method `get_<thing>(key, user)`: the row of `table` (`what`, for its docstring) when the user
    belongs to the organization that owns it (`_OWNED_THROUGH` says how); NotFoundError when it is missing
    or foreign, which the API does not tell apart."""
    def get(self: "StoreBase", key: str, user: dict[str, Any]) -> dict[str, Any]:
        return self._visible(table, key, user)
    get.__doc__ = f"{what} the user can see.\n\nRaises:\n    NotFoundError: missing or foreign.\n"
    return get


def row_by_id(table: str, what: str) -> Callable[..., dict[str, Any] | None]:
    """A store method `<thing>_by_id(id)`: the row of `table` with that id, without access checks, or None
    (`what` says who may skip the checks, for its docstring)."""
    def find(self: "StoreBase", row_id: str) -> dict[str, Any] | None:
        return self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
    find.__doc__ = f"{what}, or None."
    return find


class StoreBase:
    """SQLite-backed store of both APIs' objects.

    Args:
        path: the database file (created with its tables if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self.path.chmod(0o600)
        # Called (inside the creating transaction's thread, after commit) for every new run; the run
        # worker subscribes here. Arguments: ("legacy"|"tfe", run_id).
        self.run_listeners: list[Callable[[str, str], None]] = []
        self._pending_run_events: list[tuple[str, str]] = []
        self.closed = False

    def close(self) -> None:
        """Close the database connection (later request-log writes are skipped, not errors)."""
        with self._lock:
            self.closed = True
            self._conn.close()

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator["StoreBase"]:
        """One transaction (re-entrant): all of it commits, or, on any exception, none of it.

        Yields:
            The store itself.
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                    self._pending_run_events.clear()
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")
                events, self._pending_run_events = self._pending_run_events, []
        if outer:
            for kind, run_id in events:
                for listener in list(self.run_listeners):
                    listener(kind, run_id)

    def total_changes(self) -> int:
        """Rows changed by this connection since it opened (the server diffs it per request)."""
        return self._conn.total_changes

    def _q(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def _one(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def _visible(self, table: str, key: str, user: dict[str, Any], *, columns: str = "x.*") -> dict[str, Any]:
        """The row of `table` keyed `key` when `user` belongs to the organization that owns it.

        Raises:
            NotFoundError: missing or foreign (the API does not tell them apart).
        """
        joins, org, key_column = _OWNED_THROUGH[table]
        row = self._one(f"SELECT {columns} FROM {table} x {joins} JOIN org_members m ON m.org = {org} "
                        f"WHERE x.{key_column} = ? AND m.user_id = ?", (key, user["id"]))
        if row is None:
            raise errors.NotFoundError()
        return row

    def _x(self, sql: str, params: tuple | list = ()) -> int:
        with self.tx():
            return self._conn.execute(sql, params).rowcount

    def _insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._x(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
        return row

    def _update(self, table: str, key: str, key_value: Any, fields: dict[str, Any]) -> None:
        if not fields:
            return
        sets = ", ".join(f"{col} = ?" for col in fields)
        self._x(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*fields.values(), key_value])

    def reset(self) -> None:
        """Remove every object of both APIs (users, tokens and meta stay, so tokens keep working)."""
        with self.tx():
            for table in _DATA_TABLES:
                self._conn.execute(f"DELETE FROM {table}")

    # --- meta -------------------------------------------------------------------------------------

    def find_meta(self, key: str, default: str | None = None) -> str | None:
        """A value of the sandbox's own bookkeeping (admin secret digest, seed marker)."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Set a bookkeeping value."""
        self._x("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- users and tokens -------------------------------------------------------------------------

    def create_user(self, username: str, email: str) -> dict[str, Any]:
        """Create a user, or return the existing one of that name."""
        existing = self.find_user(username)
        if existing:
            return existing
        return self._insert("users", {"id": new_id("user-"), "username": username, "email": email,
                                      "created_at": now_iso()})

    def find_user(self, username: str) -> dict[str, Any] | None:
        """The user of that name, or None."""
        return self._one("SELECT * FROM users WHERE username = ?", (username,))

    def find_user_by_id(self, user_id: str) -> dict[str, Any] | None:
        """The user with that id, or None."""
        return self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    def create_token(self, user_id: str, description: str) -> str:
        """Issue an API token (User Settings > Tokens) and return its value.

        Only its SHA-256 is used for look-ups; the value is kept so the sandbox can write `sandbox.env`
        again after a restart (the data directory is private to the rehearsal).
        """
        value = new_token_value()
        self._insert("tokens", {"id": new_id("at-"), "user_id": user_id, "description": description,
                                "token_sha256": hashlib.sha256(value.encode()).hexdigest(), "value": value,
                                "created_at": now_iso()})
        return value

    def token_for(self, username: str) -> str | None:
        """The first token value of a user (for `sandbox.env`), or None; the runs' token is not a user's."""
        row = self._one("SELECT t.value FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.username = ? "
                        "AND t.description != ? ORDER BY t.created_at, t.id LIMIT 1", (username, RUN_TOKEN))
        return row["value"] if row else None

    def authenticate(self, value: str) -> dict[str, Any] | None:
        """The user (plus `token_id`, `token_name`) a token value belongs to, or None."""
        digest = hashlib.sha256(value.encode()).hexdigest()
        return self._one("SELECT u.*, t.id AS token_id, t.description AS token_name FROM tokens t "
                         "JOIN users u ON u.id = t.user_id WHERE t.token_sha256 = ?", (digest,))

    def org_name_taken(self, name: str) -> bool:
        """Organization names are global across the legacy and the new product (seed step 1)."""
        return bool(self._one("SELECT 1 FROM legacy_orgs WHERE lower(name) = lower(?) UNION "
                              "SELECT 1 FROM organizations WHERE lower(name) = lower(?)", (name, name)))


    # --- request log --------------------------------------------------------------------------------

    def log_request(self, *, method: str, path: str, status: int, token_name: str | None, username: str | None,
                    changes: int, fault: str | None, duration_ms: float) -> None:
        """Append one request to the log (never a token value: only the token's description)."""
        with self._lock:
            if self.closed:
                return  # a connection thread finishing while the server stops: nothing left to log into
            self._x("INSERT INTO request_log (ts, method, path, status, token_name, username, changes, fault, "
                    "duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), method, path, status, token_name, username, changes, fault, duration_ms))

    def request_log(self, *, since_id: int = 0, method: str | None = None, path_prefix: str | None = None,
                    status: int | None = None, username: str | None = None, limit: int = 10000) -> list[dict[str, Any]]:
        """Logged requests with id greater than `since_id`, oldest first, filtered."""
        sql = "SELECT * FROM request_log WHERE id > ?"
        params: list[Any] = [since_id]
        for col, value in (("method", method), ("status", status), ("username", username)):
            if value is not None:
                sql += f" AND {col} = ?"
                params.append(value)
        if path_prefix:
            sql += " AND substr(path, 1, ?) = ?"
            params += [len(path_prefix), path_prefix]
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return self._q(sql, params)

    def last_request_id(self) -> int:
        """Id of the newest logged request (0 when none): a bookmark for `request_log(since_id=...)`."""
        row = self._one("SELECT MAX(id) AS id FROM request_log")
        return int(row["id"] or 0) if row else 0



def _valid_legacy_name(name: str) -> bool:
    return bool(name) and len(name) <= 50 and all(c in _ALNUM + "-_." for c in name)


def _valid_ws_name(name: str, limit: int = 90) -> bool:
    return isinstance(name, str) and 0 < len(name) <= limit and all(c in _ALNUM + "-_" for c in name)


def _check_ws_name(name: Any) -> None:
    if name is None or name == "":
        raise errors.UnprocessableError("Name can't be blank", pointer="/data/attributes/name")
    if not isinstance(name, str) or not _valid_ws_name(name):
        raise errors.UnprocessableError("Name is invalid: only letters, numbers, -, and _ are allowed, "
                                        "at most 90 characters", pointer="/data/attributes/name")


def atlas_serial_allows(current: dict[str, Any], serial: int, digest: str) -> bool:
    """The atlas state endpoint's rule for a PUT against the current state: True to store it; False for the
    same serial and bytes again (an idempotent retry, stored once).

    The rule is Terraform 0.11's own test host (`backend/atlas/state_client_test.go`, `fakeAtlas.handler`):
    a conflict is "the same serial and another md5"; any other PUT is stored, a lower serial included.
    Neither that code nor the 2018 legacy API pages show a 412, so the sandbox answers none.

    Raises:
        LegacyMd5ConflictError: 409, the same serial with other content.
    """
    if serial == current["serial"]:
        if current["md5"] == digest:
            return False
        raise errors.LegacyMd5ConflictError()
    return True
