"""The sandbox's state: SQLite under the data directory, plain dict rows, rules enforced here.

Like moto's `models.py`: handlers parse and serialise, the store decides. Every rule that can refuse a
request (lock held by someone else, serial going backwards, a taken name) raises a `SandboxError`
subclass from here, and because the server runs each request inside one `Store.tx()` transaction, a
refused request rolls back: it changes nothing, and the request log records `changes = 0` for it.

One connection guarded by a re-entrant lock (WAL journal): simple, restart-safe, and fast enough for
a few thousand small requests a second. A later run worker (issue 4) uses the same `tx()`.
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
    name TEXT PRIMARY KEY, external_id TEXT UNIQUE NOT NULL, email TEXT NOT NULL, created_at TEXT NOT NULL);
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
    tarball BLOB, ingress TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, configuration_version_id TEXT, status TEXT NOT NULL,
    message TEXT, source TEXT NOT NULL, is_destroy INTEGER NOT NULL, plan_only INTEGER NOT NULL,
    auto_apply INTEGER NOT NULL, has_changes INTEGER NOT NULL DEFAULT 0, created_by TEXT,
    status_timestamps TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_ws ON runs (workspace_id, created_at);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, run_id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
    has_changes INTEGER NOT NULL DEFAULT 0, additions INTEGER NOT NULL DEFAULT 0,
    changes INTEGER NOT NULL DEFAULT 0, destructions INTEGER NOT NULL DEFAULT 0,
    imports INTEGER NOT NULL DEFAULT 0, log TEXT, json_output BLOB, json_download_token TEXT NOT NULL,
    log_token TEXT NOT NULL, status_timestamps TEXT NOT NULL);
-- archivist-style capability URLs: the token in the URL is the authorisation (no bearer needed)
CREATE TABLE IF NOT EXISTS blobs (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, owner_id TEXT NOT NULL, direction TEXT NOT NULL);
-- the run worker (issue 4): the runs the sandbox executes (seeded history is never executed)
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, apply_log TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, token_name TEXT, username TEXT, changes INTEGER NOT NULL, fault TEXT,
    duration_ms REAL NOT NULL);
"""

# Tables reset() empties; users, tokens and meta survive so addresses and tokens stay valid.
_DATA_TABLES = ("legacy_orgs", "legacy_members", "environments", "legacy_states", "legacy_vars",
                "legacy_config_versions", "legacy_runs", "organizations", "org_members", "oauth_clients",
                "oauth_tokens", "workspaces", "state_versions", "vars", "configuration_versions", "runs",
                "plans", "blobs", "request_log", "run_jobs")


_VIA_WORKSPACE = "JOIN workspaces w ON w.id = x.workspace_id"
# How a row of the new API reaches the organization whose members may see it:
# table -> (joins from `x`, the owning organization's column, the key column).
_OWNED_THROUGH = {
    "organizations": ("", "x.name", "name"),
    "oauth_clients": ("", "x.org", "id"),
    "oauth_tokens": ("JOIN oauth_clients c ON c.id = x.client_id", "c.org", "id"),
    "workspaces": ("", "x.org", "id"),
    "state_versions": (_VIA_WORKSPACE, "w.org", "id"),
    "configuration_versions": (_VIA_WORKSPACE, "w.org", "id"),
    "runs": (_VIA_WORKSPACE, "w.org", "id"),
    "plans": ("JOIN runs r ON r.id = x.run_id JOIN workspaces w ON w.id = r.workspace_id", "w.org", "id"),
}


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


class Store:
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
        # worker of issue 4 subscribes here. Arguments: ("legacy"|"tfe", run_id).
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
    def tx(self) -> Iterator["Store"]:
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

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value of the sandbox's own bookkeeping (admin secret digest, seed marker)."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Set a bookkeeping value."""
        self._x("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- users and tokens -------------------------------------------------------------------------

    def create_user(self, username: str, email: str) -> dict[str, Any]:
        """Create a user, or return the existing one of that name."""
        existing = self.get_user(username)
        if existing:
            return existing
        return self._insert("users", {"id": new_id("user-"), "username": username, "email": email,
                                      "created_at": now_iso()})

    def get_user(self, username: str) -> dict[str, Any] | None:
        """The user of that name, or None."""
        return self._one("SELECT * FROM users WHERE username = ?", (username,))

    def user_by_id(self, user_id: str) -> dict[str, Any] | None:
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
        """The first token value of a user (for `sandbox.env`), or None."""
        row = self._one("SELECT t.value FROM tokens t JOIN users u ON u.id = t.user_id WHERE u.username = ? "
                        "ORDER BY t.created_at, t.id LIMIT 1", (username,))
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

    # --- legacy organizations and environments ----------------------------------------------------

    def create_legacy_org(self, name: str, email: str = "") -> dict[str, Any]:
        """Create a legacy organization (sandbox bootstrap and seed only; the legacy API cannot)."""
        existing = self._one("SELECT * FROM legacy_orgs WHERE name = ?", (name,))
        if existing:
            return existing
        if self.org_name_taken(name):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        return self._insert("legacy_orgs", {"name": name, "email": email, "created_at": now_iso()})

    def add_legacy_member(self, org: str, user_id: str, role: str = "admin") -> None:
        """Make a user a member of a legacy organization (`role`: admin, write or read)."""
        self._x("INSERT OR REPLACE INTO legacy_members (org, user_id, role) VALUES (?, ?, ?)", (org, user_id, role))

    def legacy_role(self, org: str, user_id: str) -> str | None:
        """The user's role in a legacy organization, or None when not a member (or no such org)."""
        row = self._one("SELECT role FROM legacy_members WHERE org = ? AND user_id = ?", (org, user_id))
        return row["role"] if row else None

    def legacy_org_exists(self, org: str) -> bool:
        """Whether a legacy organization of that name exists."""
        return bool(self._one("SELECT 1 FROM legacy_orgs WHERE name = ?", (org,)))

    def require_legacy_access(self, org: str, user: dict[str, Any], *, write: bool = False) -> None:
        """Raise unless the user may read (or write) the legacy organization.

        Raises:
            NotFoundError: not a member (foreign organizations are indistinguishable from missing ones).
            ForbiddenError: a read-only member asked to write.
        """
        role = self.legacy_role(org, user["id"])
        if role is None:
            raise errors.NotFoundError()
        if write and role == "read":
            raise errors.ForbiddenError("read-only access to this organization")

    def create_environment(self, org: str, name: str, *, terraform_version: str = "0.11.11",
                           vcs: dict[str, str] | None = None, created_at: str | None = None) -> dict[str, Any]:
        """Create a legacy environment.

        Raises:
            UnprocessableError: the name is invalid (legacy: letters, digits, `-`, `_`, `.`; <= 50) or taken.
        """
        if not _valid_legacy_name(name):
            raise errors.UnprocessableError("Name is invalid", pointer="/name")
        if self._one("SELECT 1 FROM environments WHERE org = ? AND name = ?", (org, name)):
            raise errors.UnprocessableError("has already been taken", pointer="/name")
        stamp = created_at or now_iso()
        vcs = vcs or {}
        return self._insert("environments", {
            "id": new_id("env-"), "org": org, "name": name, "terraform_version": terraform_version,
            "vcs_repo": vcs.get("repo"), "vcs_branch": vcs.get("branch"),
            "vcs_working_directory": vcs.get("working_directory"), "locked": 0, "locked_by": None,
            "lock_reason": None, "created_at": stamp, "updated_at": stamp})

    def find_environment(self, org: str, name: str) -> dict[str, Any] | None:
        """The environment, or None."""
        return self._one("SELECT * FROM environments WHERE org = ? AND name = ?", (org, name))

    def get_environment(self, org: str, name: str, user: dict[str, Any], *, write: bool = False) -> dict[str, Any]:
        """The environment, checking the user's access.

        Raises:
            NotFoundError: no such environment, or a foreign organization.
            ForbiddenError: read-only member asked to write.
        """
        self.require_legacy_access(org, user, write=write)
        env = self.find_environment(org, name)
        if env is None:
            raise errors.NotFoundError()
        return env

    def list_environments(self, org: str) -> list[dict[str, Any]]:
        """The organization's environments by name."""
        return self._q("SELECT * FROM environments WHERE org = ? ORDER BY name", (org,))

    def update_environment(self, env_id: str, **fields: Any) -> None:
        """Change environment columns (and its updated_at)."""
        fields["updated_at"] = now_iso()
        self._update("environments", "id", env_id, fields)

    def set_environment_vcs(self, env_id: str, vcs: dict[str, str] | None) -> None:
        """Link (dict with repo, branch, working_directory) or unlink (None) an environment's VCS."""
        vcs = vcs or {}
        self.update_environment(env_id, vcs_repo=vcs.get("repo"), vcs_branch=vcs.get("branch"),
                                vcs_working_directory=vcs.get("working_directory") if vcs else None)

    def lock_environment(self, env: dict[str, Any], user: dict[str, Any], reason: str) -> None:
        """Lock an environment.

        Raises:
            ConflictError: it is already locked (by anyone).
        """
        if env["locked"]:
            raise errors.ConflictError("environment is already locked")
        self.update_environment(env["id"], locked=1, locked_by=user["username"], lock_reason=reason)

    def unlock_environment(self, env: dict[str, Any], user: dict[str, Any]) -> None:
        """Unlock an environment (unlocking an unlocked one is a no-op).

        Raises:
            ConflictError: it is locked by another user.
        """
        if not env["locked"]:
            return
        if env["locked_by"] != user["username"]:
            raise errors.ConflictError("environment is locked by another user")
        self.update_environment(env["id"], locked=0, locked_by=None, lock_reason=None)

    def delete_environment(self, env_id: str) -> None:
        """Delete an environment with its states, variables, configuration versions and runs."""
        with self.tx():
            for table in ("legacy_states", "legacy_vars", "legacy_config_versions", "legacy_runs"):
                self._x(f"DELETE FROM {table} WHERE env_id = ?", (env_id,))
            self._x("DELETE FROM environments WHERE id = ?", (env_id,))

    # --- legacy state -----------------------------------------------------------------------------

    def current_legacy_state(self, env_id: str) -> dict[str, Any] | None:
        """The environment's newest state row (serial, lineage, md5, body), or None."""
        return self._one("SELECT * FROM legacy_states WHERE env_id = ? ORDER BY id DESC LIMIT 1", (env_id,))

    def put_legacy_state(self, env_id: str, body: bytes, *, run_id: str | None = None) -> bool:
        """Store a state as the atlas backend PUTs it, by the legacy rules.

        Returns:
            True when a new state was stored, False when it was identical to the current one.

        Raises:
            UnprocessableError: the body is not a state.
            LegacySerialError: 412, serial lower than the current one.
            LegacyMd5ConflictError: 409, same serial with different content.
        """
        info = parse_state(body)
        digest = md5_hex(body)
        with self.tx():
            current = self.current_legacy_state(env_id)
            if current is not None:
                if info["serial"] < current["serial"]:
                    raise errors.LegacySerialError()
                if info["serial"] == current["serial"]:
                    if current["md5"] == digest:
                        return False
                    raise errors.LegacyMd5ConflictError()
            self._insert("legacy_states", {"env_id": env_id, "serial": info["serial"], "lineage": info["lineage"],
                                           "md5": digest, "body": body, "run_id": run_id or None,
                                           "created_at": now_iso()})
            self.update_environment(env_id)
        return True

    def delete_legacy_state(self, env_id: str) -> None:
        """Remove an environment's state (all versions), as the atlas backend's DELETE does."""
        self._x("DELETE FROM legacy_states WHERE env_id = ?", (env_id,))

    def list_legacy_states(self, org: str) -> list[dict[str, Any]]:
        """Environments of the organization that have a state, with the time of the newest one."""
        return self._q("SELECT e.org, e.name, MAX(s.created_at) AS updated_at FROM environments e "
                       "JOIN legacy_states s ON s.env_id = e.id WHERE e.org = ? GROUP BY e.id ORDER BY e.name",
                       (org,))

    # --- legacy variables, configuration versions, runs -------------------------------------------

    def list_legacy_vars(self, env_id: str) -> list[dict[str, Any]]:
        """The environment's variables, by category then key."""
        return self._q("SELECT * FROM legacy_vars WHERE env_id = ? ORDER BY category DESC, key", (env_id,))

    def set_legacy_var(self, env_id: str, key: str, value: str, *, category: str = "terraform",
                       hcl: bool = False, sensitive: bool | None = None) -> None:
        """Set a variable; an empty value removes it (the documented legacy behaviour).

        `sensitive=None` keeps the flag of an existing variable (a PUT of values never un-hides one).
        """
        with self.tx():
            existing = self._one("SELECT * FROM legacy_vars WHERE env_id = ? AND key = ? AND category = ?",
                                 (env_id, key, category))
            if value == "":
                self._x("DELETE FROM legacy_vars WHERE env_id = ? AND key = ? AND category = ?",
                        (env_id, key, category))
                return
            if sensitive is None:
                sensitive = bool(existing and existing["sensitive"])
            self._x("INSERT OR REPLACE INTO legacy_vars (env_id, key, value, category, hcl, sensitive) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (env_id, key, value, category, _b(hcl), _b(sensitive)))

    def latest_legacy_config_version(self, env_id: str) -> dict[str, Any] | None:
        """The newest configuration version row, or None."""
        return self._one("SELECT * FROM legacy_config_versions WHERE env_id = ? ORDER BY version DESC LIMIT 1",
                         (env_id,))

    def create_legacy_config_version(self, env_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Add the next configuration version (tarball uploaded later through its upload token)."""
        with self.tx():
            latest = self.latest_legacy_config_version(env_id)
            row = {"env_id": env_id, "version": (latest["version"] + 1) if latest else 1,
                   "metadata": json.dumps(metadata), "upload_token": secrets.token_urlsafe(24),
                   "tarball": None, "created_at": now_iso()}
            self._insert("legacy_config_versions", row)
            self._insert("blobs", {"token": row["upload_token"], "kind": "legacy-cv",
                                   "owner_id": f"{env_id}:{row['version']}", "direction": "upload"})
        return row

    def upload_legacy_configuration(self, env_id: str, version: int, tarball: bytes) -> None:
        """Store the tarball uploaded for a legacy configuration version."""
        self._x("UPDATE legacy_config_versions SET tarball = ? WHERE env_id = ? AND version = ?",
                (tarball, env_id, version))

    def create_legacy_run(self, env_id: str, *, status: str = "pending", source: str = "api",
                          commit_sha: str | None = None, message: str = "", is_destroy: bool = False,
                          has_changes: bool = False, created_by: str | None = None,
                          created_at: str | None = None) -> dict[str, Any]:
        """Record a run of a legacy environment; new pending runs are announced to run listeners."""
        stamp = created_at or now_iso()
        row = {"id": new_id("run-"), "env_id": env_id, "status": status, "commit_sha": commit_sha,
               "message": message, "source": source, "is_destroy": _b(is_destroy), "has_changes": _b(has_changes),
               "plan_log": None, "created_by": created_by, "created_at": stamp, "updated_at": stamp}
        with self.tx():
            self._insert("legacy_runs", row)
            if status == "pending":
                self._pending_run_events.append(("legacy", row["id"]))
        return row

    def list_legacy_runs(self, env_id: str) -> list[dict[str, Any]]:
        """The environment's runs, newest first."""
        return self._q("SELECT * FROM legacy_runs WHERE env_id = ? ORDER BY created_at DESC, rowid DESC", (env_id,))

    def get_legacy_run(self, run_id: str) -> dict[str, Any] | None:
        """One legacy run, or None."""
        return self._one("SELECT * FROM legacy_runs WHERE id = ?", (run_id,))

    def update_legacy_run(self, run_id: str, **fields: Any) -> None:
        """Change a legacy run (for the run worker: status, has_changes, plan_log)."""
        fields["updated_at"] = now_iso()
        self._update("legacy_runs", "id", run_id, fields)

    def current_legacy_run(self, env_id: str) -> dict[str, Any] | None:
        """The newest run that has not reached a final status, or None."""
        marks = ",".join("?" for _ in FINAL_RUN_STATUSES)
        return self._one(f"SELECT * FROM legacy_runs WHERE env_id = ? AND status NOT IN ({marks}) "
                         "ORDER BY created_at DESC, rowid DESC LIMIT 1", (env_id, *FINAL_RUN_STATUSES))

    # --- new organizations and OAuth ---------------------------------------------------------------

    def create_organization(self, name: str, email: str, owner: dict[str, Any]) -> dict[str, Any]:
        """Create an organization owned by `owner`.

        Raises:
            UnprocessableError: invalid name, or the name is taken (by a new or a legacy organization).
        """
        if not name or not _valid_ws_name(name, 40):
            raise errors.UnprocessableError("Name is invalid", pointer="/data/attributes/name")
        if self.org_name_taken(name):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        row = self._insert("organizations", {"name": name, "external_id": new_id("org-"), "email": email,
                                             "created_at": now_iso()})
        self.add_org_member(name, owner["id"], "owners")
        return row

    def add_org_member(self, org: str, user_id: str, role: str = "owners") -> None:
        """Make a user a member of a new organization."""
        self._x("INSERT OR REPLACE INTO org_members (org, user_id, role) VALUES (?, ?, ?)", (org, user_id, role))

    def get_organization(self, name: str, user: dict[str, Any]) -> dict[str, Any]:
        """The organization, if the user is a member.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("organizations", name, user)

    def list_organizations(self, user: dict[str, Any]) -> list[dict[str, Any]]:
        """Organizations the user belongs to, by name."""
        return self._q("SELECT o.* FROM organizations o JOIN org_members m ON m.org = o.name "
                       "WHERE m.user_id = ? ORDER BY o.name", (user["id"],))

    def create_oauth_client(self, org: str, *, service_provider: str, name: str | None, http_url: str | None,
                            api_url: str | None, token_string: str | None) -> dict[str, Any]:
        """Create an OAuth client (VCS connection) and, given a token string, its OAuth token."""
        row = self._insert("oauth_clients", {"id": new_id("oc-"), "org": org, "name": name,
                                             "service_provider": service_provider, "http_url": http_url,
                                             "api_url": api_url, "created_at": now_iso()})
        if token_string:
            self._insert("oauth_tokens", {
                "id": new_id("ot-"), "client_id": row["id"], "uid": str(secrets.randbelow(10**8)),
                "token_sha256": hashlib.sha256(token_string.encode()).hexdigest(),
                "service_provider_user": "sandbox-vcs-user", "has_ssh_key": 0, "created_at": now_iso()})
        return row

    def get_oauth_client(self, client_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """An OAuth client of one of the user's organizations.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("oauth_clients", client_id, user)

    def list_oauth_clients(self, org: str) -> list[dict[str, Any]]:
        """The organization's OAuth clients, oldest first."""
        return self._q("SELECT * FROM oauth_clients WHERE org = ? ORDER BY created_at, id", (org,))

    def list_oauth_tokens(self, client_id: str) -> list[dict[str, Any]]:
        """An OAuth client's tokens."""
        return self._q("SELECT * FROM oauth_tokens WHERE client_id = ? ORDER BY created_at, id", (client_id,))

    def get_oauth_token(self, token_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """An OAuth token (with its client's `org`) of one of the user's organizations.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("oauth_tokens", token_id, user, columns="x.*, c.org, c.service_provider")

    def oauth_token_client(self, token_id: str) -> dict[str, Any] | None:
        """The OAuth client (service_provider, http_url) behind an OAuth token, without access checks."""
        return self._one("SELECT c.* FROM oauth_tokens t JOIN oauth_clients c ON c.id = t.client_id "
                         "WHERE t.id = ?", (token_id,))

    # --- workspaces -------------------------------------------------------------------------------

    def create_workspace(self, org: str, attrs: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Create a workspace from parsed attributes (see `tfe_api._workspace_attrs`).

        Raises:
            UnprocessableError: missing/invalid/taken name, or an OAuth token of another organization.
        """
        name = attrs.get("name")
        _check_ws_name(name)
        if self._one("SELECT 1 FROM workspaces WHERE org = ? AND name = ?", (org, name)):
            raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
        vcs = attrs.get("vcs-repo")
        if vcs:
            self._check_vcs(org, vcs, user)
        stamp = now_iso()
        row = {
            "id": new_id("ws-"), "org": org, "name": name, "description": attrs.get("description"),
            "execution_mode": attrs.get("execution-mode") or "remote",
            "auto_apply": _b(attrs.get("auto-apply", False)),
            "terraform_version": attrs.get("terraform-version") or "latest",
            "working_directory": attrs.get("working-directory") or "",
            "queue_all_runs": _b(attrs.get("queue-all-runs", False)),
            "speculative_enabled": _b(attrs.get("speculative-enabled", True)),
            "file_triggers_enabled": _b(attrs.get("file-triggers-enabled", True)),
            "trigger_prefixes": json.dumps(attrs.get("trigger-prefixes") or []),
            "source_name": attrs.get("source-name"), "source_url": attrs.get("source-url"),
            "migration_environment": attrs.get("migration-environment"),
            "vcs_identifier": vcs.get("identifier") if vcs else None,
            "vcs_branch": (vcs.get("branch") or "") if vcs else None,
            "vcs_oauth_token_id": vcs.get("oauth-token-id") if vcs else None,
            "vcs_ingress_submodules": _b(vcs.get("ingress-submodules")) if vcs else None,
            "locked": 0, "locked_by_user": None, "locked_by_run": None, "lock_reason": None,
            "created_at": stamp, "updated_at": stamp}
        return self._insert("workspaces", row)

    def _check_vcs(self, org: str, vcs: dict[str, Any], user: dict[str, Any]) -> None:
        if not vcs.get("identifier"):
            raise errors.UnprocessableError("Identifier can't be blank", pointer="/data/attributes/vcs-repo/identifier")
        token_id = vcs.get("oauth-token-id")
        if not token_id:
            raise errors.UnprocessableError("Oauth token can't be blank",
                                            pointer="/data/attributes/vcs-repo/oauth-token-id")
        try:
            token = self.get_oauth_token(token_id, user)
        except errors.NotFoundError:
            token = None
        if token is None or token["org"] != org:
            raise errors.UnprocessableError("Oauth token not found", pointer="/data/attributes/vcs-repo/oauth-token-id")

    def get_workspace(self, ws_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A workspace by id, if the user belongs to its organization.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("workspaces", ws_id, user)

    def find_workspace(self, org: str, name: str) -> dict[str, Any] | None:
        """A workspace by organization and name, without access checks, or None."""
        return self._one("SELECT * FROM workspaces WHERE org = ? AND name = ?", (org, name))

    def get_workspace_by_name(self, org: str, name: str, user: dict[str, Any]) -> dict[str, Any]:
        """A workspace by organization and name.

        Raises:
            NotFoundError: missing or foreign.
        """
        self.get_organization(org, user)
        row = self.find_workspace(org, name)
        if row is None:
            raise errors.NotFoundError()
        return row

    def list_workspaces(self, org: str, search: str | None = None) -> list[dict[str, Any]]:
        """The organization's workspaces by name; `search` matches a substring of the name."""
        if search:
            return self._q("SELECT * FROM workspaces WHERE org = ? AND instr(lower(name), lower(?)) > 0 "
                           "ORDER BY name", (org, search))
        return self._q("SELECT * FROM workspaces WHERE org = ? ORDER BY name", (org,))

    def update_workspace(self, ws: dict[str, Any], attrs: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH's attributes; `vcs-repo: null` unlinks VCS.

        Raises:
            UnprocessableError: invalid or taken new name, or a bad VCS link.
        """
        fields: dict[str, Any] = {}
        if "name" in attrs and attrs["name"] != ws["name"]:
            _check_ws_name(attrs["name"])
            if self.find_workspace(ws["org"], attrs["name"]):
                raise errors.UnprocessableError("Name has already been taken", pointer="/data/attributes/name")
            fields["name"] = attrs["name"]
        simple = {"description": "description", "execution-mode": "execution_mode",
                  "terraform-version": "terraform_version", "working-directory": "working_directory",
                  "source-name": "source_name", "source-url": "source_url"}
        for attr, col in simple.items():
            if attr in attrs:
                fields[col] = attrs[attr] if attrs[attr] is not None else ("" if col == "working_directory" else None)
        for attr, col in {"auto-apply": "auto_apply", "queue-all-runs": "queue_all_runs",
                          "speculative-enabled": "speculative_enabled",
                          "file-triggers-enabled": "file_triggers_enabled"}.items():
            if attr in attrs:
                fields[col] = _b(attrs[attr])
        if "trigger-prefixes" in attrs:
            fields["trigger_prefixes"] = json.dumps(attrs["trigger-prefixes"] or [])
        if "vcs-repo" in attrs:
            vcs = attrs["vcs-repo"]
            if vcs is None:
                fields.update(vcs_identifier=None, vcs_branch=None, vcs_oauth_token_id=None,
                              vcs_ingress_submodules=None)
            else:
                merged = {"identifier": ws["vcs_identifier"], "oauth-token-id": ws["vcs_oauth_token_id"],
                          "branch": ws["vcs_branch"], "ingress-submodules": ws["vcs_ingress_submodules"]}
                merged.update({k: v for k, v in vcs.items()})
                self._check_vcs(ws["org"], merged, user)
                fields.update(vcs_identifier=merged["identifier"], vcs_branch=merged.get("branch") or "",
                              vcs_oauth_token_id=merged["oauth-token-id"],
                              vcs_ingress_submodules=_b(merged.get("ingress-submodules")))
        if fields:
            fields["updated_at"] = now_iso()
            self._update("workspaces", "id", ws["id"], fields)
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]

    def delete_workspace(self, ws_id: str) -> None:
        """Delete a workspace and everything that belongs to it."""
        with self.tx():
            run_ids = [r["id"] for r in self._q("SELECT id FROM runs WHERE workspace_id = ?", (ws_id,))]
            for run_id in run_ids:
                self._x("DELETE FROM plans WHERE run_id = ?", (run_id,))
            for table in ("runs", "state_versions", "vars", "configuration_versions"):
                self._x(f"DELETE FROM {table} WHERE workspace_id = ?", (ws_id,))
            self._x("DELETE FROM workspaces WHERE id = ?", (ws_id,))

    def lock_workspace(self, ws: dict[str, Any], user: dict[str, Any], reason: str) -> dict[str, Any]:
        """Lock a workspace for a user.

        Raises:
            ConflictError: already locked (by anyone, the way real TFE answers).
        """
        if ws["locked"]:
            raise errors.ConflictError("Unable to lock workspace. The workspace is already locked.")
        self._update("workspaces", "id", ws["id"], {"locked": 1, "locked_by_user": user["id"],
                                                    "lock_reason": reason or "", "updated_at": now_iso()})
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]

    def unlock_workspace(self, ws: dict[str, Any], user: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Unlock a workspace; `force` also releases another user's lock (force-unlock).

        Raises:
            ConflictError: not locked, or (without force) locked by another user or a run; the text
                is what go-tfe matches ("is locked by User/Run").
        """
        if not ws["locked"]:
            raise errors.ConflictError("Unable to unlock workspace. The workspace is not locked.")
        if not force:
            if ws["locked_by_run"]:
                raise errors.ConflictError(f"Unable to unlock workspace. The workspace is locked by Run "
                                           f"{ws['locked_by_run']}.")
            if ws["locked_by_user"] != user["id"]:
                holder = self.user_by_id(ws["locked_by_user"] or "")
                raise errors.ConflictError("Unable to unlock workspace. The workspace is locked by User "
                                           f"{holder['username'] if holder else 'unknown'}.")
        self._update("workspaces", "id", ws["id"], {"locked": 0, "locked_by_user": None, "locked_by_run": None,
                                                    "lock_reason": None, "updated_at": now_iso()})
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws["id"],))  # type: ignore[return-value]

    # --- state versions -----------------------------------------------------------------------------

    def current_state_version(self, ws_id: str) -> dict[str, Any] | None:
        """The newest finalized state version of a workspace, or None."""
        return self._one("SELECT * FROM state_versions WHERE workspace_id = ? AND status = 'finalized' "
                         "ORDER BY seq DESC LIMIT 1", (ws_id,))

    def list_state_versions(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's state versions, newest first."""
        return self._q("SELECT * FROM state_versions WHERE workspace_id = ? ORDER BY seq DESC", (ws_id,))

    def get_state_version(self, sv_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A state version of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("state_versions", sv_id, user)

    def create_state_version(self, ws: dict[str, Any], user: dict[str, Any], *, serial: int, md5: str,
                             lineage: str | None, state: bytes | None, json_state: bytes | None = None,
                             json_state_outputs: str | None = None, force: bool = False,
                             run_id: str | None = None, require_lock: bool = True) -> tuple[dict[str, Any], bool]:
        """Create a state version by the new API's rules.

        Args:
            ws: the workspace row.
            user: the uploader.
            serial, md5, lineage: as declared by the client (md5 hex of the raw state bytes).
            state: the raw state bytes when sent inline; None for a hosted upload later.
            force: skip lineage and serial checks (Terraform sends it when migrating).
            require_lock: the workspace must be locked by `user` (False only for the legacy endpoint,
                which is checked by `put_workspace_state_legacy`).

        Returns:
            (row, created): `created` is False when an identical state (same serial and md5) was current.

        Raises:
            ConflictError: not locked by the uploader; lineage mismatch; serial lower; same serial with
                another md5.
            UnprocessableError: inline state whose md5 or content does not match the declaration.
        """
        if require_lock and not (ws["locked"] and ws["locked_by_user"] == user["id"]):
            raise errors.ConflictError("The workspace must be locked by the current user to create a state version.")
        info = None
        if state is not None:
            if md5_hex(state) != md5:
                raise errors.UnprocessableError("md5 does not match the state provided", pointer="/data/attributes/md5")
            info = parse_state(state)
            if info["serial"] != serial:
                raise errors.UnprocessableError("serial does not match the state provided",
                                                pointer="/data/attributes/serial")
        with self.tx():
            current = self.current_state_version(ws["id"])
            if current is not None and not force:
                if lineage and current["lineage"] and lineage != current["lineage"]:
                    raise errors.ConflictError("The lineage provided in the state file does not match the value "
                                               "currently known remotely.")
                if serial < current["serial"]:
                    raise errors.ConflictError("The serial provided in the state file is not greater than the "
                                               "serial currently known remotely.")
                if serial == current["serial"]:
                    if current["md5"] == md5:
                        return current, False
                    raise errors.ConflictError("The MD5 hash of the state provided does not match what is "
                                               "currently known for the same serial number.")
            last = self._one("SELECT MAX(seq) AS seq FROM state_versions WHERE workspace_id = ?", (ws["id"],))
            row = {"id": new_id("sv-"), "workspace_id": ws["id"], "seq": (last["seq"] or 0) + 1 if last else 1,
                   "serial": serial, "lineage": lineage or (info["lineage"] if info else None), "md5": md5,
                   "status": "finalized" if state is not None else "pending", "state": state,
                   "json_state": json_state, "json_state_outputs": json_state_outputs,
                   "terraform_version": info["terraform_version"] if info else None,
                   "state_version": info["version"] if info else None, "run_id": run_id, "created_by": user["id"],
                   "upload_token": None if state is not None else secrets.token_urlsafe(24),
                   "json_upload_token": secrets.token_urlsafe(24),
                   "download_token": secrets.token_urlsafe(24), "json_download_token": secrets.token_urlsafe(24),
                   "created_at": now_iso()}
            self._insert("state_versions", row)
            for token, kind, direction in ((row["upload_token"], "state", "upload"),
                                           (row["json_upload_token"], "json-state", "upload"),
                                           (row["download_token"], "state", "download"),
                                           (row["json_download_token"], "json-state", "download")):
                if token:
                    self._insert("blobs", {"token": token, "kind": kind, "owner_id": row["id"], "direction": direction})
            self._update("workspaces", "id", ws["id"], {"updated_at": now_iso()})
        return row, True

    def put_workspace_state_legacy(self, ws: dict[str, Any], user: dict[str, Any], body: bytes) -> bool:
        """A PUT on the legacy state endpoint naming a new workspace (seed step 3.d-3.e).

        Accepted when the workspace is unlocked or locked by the same user. Legacy status codes, since
        the atlas backend reads them: 412 for a serial going backwards, 409 for md5/lineage conflicts.

        Returns:
            True when a new state version was created.

        Raises:
            ConflictError: locked by someone else, or lineage differs.
            LegacySerialError, LegacyMd5ConflictError: as for a legacy environment.
        """
        if ws["locked"] and (ws["locked_by_user"] != user["id"] or ws["locked_by_run"]):
            raise errors.ConflictError("workspace is locked by another user")
        info = parse_state(body)
        digest = md5_hex(body)
        with self.tx():
            current = self.current_state_version(ws["id"])
            if current is not None:
                if info["serial"] < current["serial"]:
                    raise errors.LegacySerialError()
                if info["serial"] == current["serial"]:
                    if current["md5"] == digest:
                        return False
                    raise errors.LegacyMd5ConflictError()
                if info["lineage"] and current["lineage"] and info["lineage"] != current["lineage"]:
                    raise errors.ConflictError("Lineage The lineage provided in the state file does not match "
                                               "the value currently known remotely")
            self.create_state_version(ws, user, serial=info["serial"], md5=digest, lineage=info["lineage"],
                                      state=body, force=True, require_lock=False)
        return True

    def state_version_bytes(self, sv_id: str, *, json_state: bool = False) -> bytes | None:
        """The raw (or JSON) state bytes of a state version, or None when not uploaded."""
        row = self._one("SELECT state, json_state FROM state_versions WHERE id = ?", (sv_id,))
        if row is None:
            return None
        return row["json_state" if json_state else "state"]

    def blob(self, token: str) -> dict[str, Any] | None:
        """The archivist object a capability token names (kind, owner_id, direction), or None."""
        return self._one("SELECT * FROM blobs WHERE token = ?", (token,))

    def upload_state(self, sv_id: str, kind: str, data: bytes) -> None:
        """Store the bytes PUT to a hosted upload URL; the raw state finalizes the version.

        Raises:
            UnprocessableError: md5 of the raw state differs from the declared md5, or it is not a state.
            ConflictError: the raw state was already uploaded.
        """
        with self.tx():
            sv = self._one("SELECT * FROM state_versions WHERE id = ?", (sv_id,))
            if sv is None:
                raise errors.NotFoundError()
            if kind == "json-state":
                self._update("state_versions", "id", sv_id, {"json_state": data})
                return
            if sv["state"] is not None:
                raise errors.ConflictError("state already uploaded for this state version")
            if md5_hex(data) != sv["md5"]:
                raise errors.UnprocessableError("md5 of the uploaded state does not match the state version")
            info = parse_state(data)
            self._update("state_versions", "id", sv_id, {
                "state": data, "status": "finalized", "terraform_version": info["terraform_version"],
                "state_version": info["version"], "lineage": sv["lineage"] or info["lineage"]})

    # --- variables ------------------------------------------------------------------------------

    def list_vars(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's variables, oldest first."""
        return self._q("SELECT * FROM vars WHERE workspace_id = ? ORDER BY created_at, id", (ws_id,))

    def get_var(self, ws_id: str, var_id: str) -> dict[str, Any]:
        """One variable of a workspace.

        Raises:
            NotFoundError: missing.
        """
        row = self._one("SELECT * FROM vars WHERE workspace_id = ? AND id = ?", (ws_id, var_id))
        if row is None:
            raise errors.NotFoundError()
        return row

    def create_var(self, ws_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Create a variable.

        Raises:
            UnprocessableError: blank or invalid key, bad category, key taken in that category.
        """
        key = attrs.get("key")
        if not key:
            raise errors.UnprocessableError("Key can't be blank", pointer="/data/attributes/key")
        category = attrs.get("category")
        if category not in ("terraform", "env"):
            raise errors.UnprocessableError("Category must be one of: terraform, env",
                                            pointer="/data/attributes/category")
        if self._one("SELECT 1 FROM vars WHERE workspace_id = ? AND key = ? AND category = ?", (ws_id, key, category)):
            raise errors.UnprocessableError("Key has already been taken", pointer="/data/attributes/key")
        return self._insert("vars", {"id": new_id("var-"), "workspace_id": ws_id, "key": key,
                                     "value": "" if attrs.get("value") is None else str(attrs["value"]),
                                     "description": attrs.get("description"), "category": category,
                                     "hcl": _b(attrs.get("hcl")), "sensitive": _b(attrs.get("sensitive")),
                                     "created_at": now_iso()})

    def update_var(self, var: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
        """Update a variable; a sensitive variable cannot be made non-sensitive (as in real TFE).

        Raises:
            UnprocessableError: un-hiding a sensitive variable, or a key already taken.
        """
        fields: dict[str, Any] = {}
        if "sensitive" in attrs:
            if var["sensitive"] and not attrs["sensitive"]:
                raise errors.UnprocessableError("Sensitive variables cannot be made non-sensitive",
                                                pointer="/data/attributes/sensitive")
            fields["sensitive"] = _b(attrs["sensitive"])
        if "key" in attrs and attrs["key"] != var["key"]:
            if not attrs["key"]:
                raise errors.UnprocessableError("Key can't be blank", pointer="/data/attributes/key")
            if self._one("SELECT 1 FROM vars WHERE workspace_id = ? AND key = ? AND category = ?",
                         (var["workspace_id"], attrs["key"], var["category"])):
                raise errors.UnprocessableError("Key has already been taken", pointer="/data/attributes/key")
            fields["key"] = attrs["key"]
        if "value" in attrs:
            fields["value"] = "" if attrs["value"] is None else str(attrs["value"])
        for attr in ("description",):
            if attr in attrs:
                fields[attr] = attrs[attr]
        if "hcl" in attrs:
            fields["hcl"] = _b(attrs["hcl"])
        self._update("vars", "id", var["id"], fields)
        return self.get_var(var["workspace_id"], var["id"])

    def delete_var(self, var_id: str) -> None:
        """Delete a variable."""
        self._x("DELETE FROM vars WHERE id = ?", (var_id,))

    # --- configuration versions, runs, plans -------------------------------------------------------

    def create_configuration_version(self, ws_id: str, *, auto_queue_runs: bool = True, speculative: bool = False,
                                     source: str = "tfe-api", ingress: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a configuration version awaiting its tarball upload."""
        row = {"id": new_id("cv-"), "workspace_id": ws_id, "status": "pending", "source": source,
               "speculative": _b(speculative), "auto_queue_runs": _b(auto_queue_runs),
               "upload_token": secrets.token_urlsafe(24), "tarball": None,
               "ingress": json.dumps(ingress) if ingress else None, "created_at": now_iso()}
        with self.tx():
            self._insert("configuration_versions", row)
            self._insert("blobs", {"token": row["upload_token"], "kind": "cv", "owner_id": row["id"],
                                   "direction": "upload"})
        return row

    def get_configuration_version(self, cv_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A configuration version of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("configuration_versions", cv_id, user)

    def list_configuration_versions(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's configuration versions, newest first."""
        return self._q("SELECT * FROM configuration_versions WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC",
                       (ws_id,))

    def upload_configuration(self, cv_id: str, tarball: bytes) -> None:
        """Store an uploaded configuration tarball; the version becomes `uploaded`."""
        self._update("configuration_versions", "id", cv_id, {"tarball": tarball, "status": "uploaded"})

    def create_run(self, ws: dict[str, Any], user: dict[str, Any] | None, *, cv_id: str | None, message: str,
                   is_destroy: bool = False, plan_only: bool = False, auto_apply: bool | None = None,
                   source: str = "tfe-api", status: str = "pending") -> dict[str, Any]:
        """Create a run and its plan; a pending run is announced to the run listeners after commit.

        A run in a locked workspace stays pending (queued), as in real TFE.
        """
        stamp = now_iso()
        run = {"id": new_id("run-"), "workspace_id": ws["id"], "configuration_version_id": cv_id, "status": status,
               "message": message, "source": source, "is_destroy": _b(is_destroy), "plan_only": _b(plan_only),
               "auto_apply": _b(ws["auto_apply"] if auto_apply is None else auto_apply), "has_changes": 0,
               "created_by": user["id"] if user else None,
               "status_timestamps": json.dumps({f"{status}-at": stamp}), "created_at": stamp}
        plan = {"id": new_id("plan-"), "run_id": run["id"], "status": "pending", "has_changes": 0, "additions": 0,
                "changes": 0, "destructions": 0, "imports": 0, "log": None, "json_output": None,
                "json_download_token": secrets.token_urlsafe(24), "log_token": secrets.token_urlsafe(24),
                "status_timestamps": json.dumps({"queued-at": stamp})}
        with self.tx():
            self._insert("runs", run)
            self._insert("plans", plan)
            self._insert("blobs", {"token": plan["json_download_token"], "kind": "plan-json", "owner_id": plan["id"],
                                   "direction": "download"})
            self._insert("blobs", {"token": plan["log_token"], "kind": "plan-log", "owner_id": plan["id"],
                                   "direction": "download"})
            if status == "pending":
                self._pending_run_events.append(("tfe", run["id"]))
        return run

    def get_run(self, run_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A run of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("runs", run_id, user)

    def run_by_id(self, run_id: str) -> dict[str, Any] | None:
        """A run without access checks (run worker), or None."""
        return self._one("SELECT * FROM runs WHERE id = ?", (run_id,))

    def list_runs(self, ws_id: str, statuses: list[str] | None = None) -> list[dict[str, Any]]:
        """A workspace's runs, newest first, optionally only those in `statuses`."""
        if statuses:
            marks = ",".join("?" for _ in statuses)
            return self._q(f"SELECT * FROM runs WHERE workspace_id = ? AND status IN ({marks}) "
                           "ORDER BY created_at DESC, rowid DESC", (ws_id, *statuses))
        return self._q("SELECT * FROM runs WHERE workspace_id = ? ORDER BY created_at DESC, rowid DESC", (ws_id,))

    def update_run(self, run_id: str, status: str | None = None, **fields: Any) -> None:
        """Change a run (run worker): a new status is stamped into status-timestamps."""
        with self.tx():
            run = self.run_by_id(run_id)
            if run is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(run["status_timestamps"])
                stamps[f"{status}-at"] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("runs", "id", run_id, fields)

    def plan_for_run(self, run_id: str) -> dict[str, Any] | None:
        """The plan of a run, or None."""
        return self._one("SELECT * FROM plans WHERE run_id = ?", (run_id,))

    def get_plan(self, plan_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A plan of a run the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        return self._visible("plans", plan_id, user)

    def plan_by_id(self, plan_id: str) -> dict[str, Any] | None:
        """A plan without access checks, or None."""
        return self._one("SELECT * FROM plans WHERE id = ?", (plan_id,))

    def update_plan(self, plan_id: str, status: str | None = None, **fields: Any) -> None:
        """Change a plan (run worker): status, has_changes, counts, log, json_output."""
        with self.tx():
            plan = self.plan_by_id(plan_id)
            if plan is None:
                raise errors.NotFoundError()
            if status:
                stamps = json.loads(plan["status_timestamps"])
                stamps[f"{status}-at"] = now_iso()
                fields.update(status=status, status_timestamps=json.dumps(stamps))
            self._update("plans", "id", plan_id, fields)

    def configuration_tarball(self, cv_id: str) -> bytes | None:
        """The uploaded tarball of a configuration version (run worker), or None."""
        row = self._one("SELECT tarball FROM configuration_versions WHERE id = ?", (cv_id,))
        return row["tarball"] if row else None

    # --- run worker (issue 4): look-ups without access checks, and the job table ------------------------

    def workspace_by_id(self, ws_id: str) -> dict[str, Any] | None:
        """A workspace without access checks (run worker, webhook), or None."""
        return self._one("SELECT * FROM workspaces WHERE id = ?", (ws_id,))

    def environment_by_id(self, env_id: str) -> dict[str, Any] | None:
        """A legacy environment without access checks (run worker), or None."""
        return self._one("SELECT * FROM environments WHERE id = ?", (env_id,))

    def workspaces_linked_to(self, identifier: str) -> list[dict[str, Any]]:
        """Workspaces (of any organization) whose VCS repository is `identifier`, oldest first."""
        return self._q("SELECT * FROM workspaces WHERE vcs_identifier = ? ORDER BY created_at, id", (identifier,))

    def environments_linked_to(self, repo: str) -> list[dict[str, Any]]:
        """Legacy environments whose VCS link is `repo` (`org/repo`), by name; unlinked ones are not."""
        return self._q("SELECT * FROM environments WHERE vcs_repo = ? ORDER BY org, name", (repo,))

    def add_run_job(self, kind: str, run_id: str) -> None:
        """Mark a run as one the run worker executes (`kind`: "legacy" or "tfe"); idempotent."""
        stamp = now_iso()
        self._x("INSERT OR IGNORE INTO run_jobs (run_id, kind, state, apply_log, created_at, updated_at) "
                "VALUES (?, ?, 'queued', NULL, ?, ?)", (run_id, kind, stamp, stamp))

    def run_job(self, run_id: str) -> dict[str, Any] | None:
        """The run worker's job row of a run, or None (a run the sandbox does not execute)."""
        return self._one("SELECT * FROM run_jobs WHERE run_id = ?", (run_id,))

    def run_jobs(self, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """Job rows in the given states, oldest first."""
        marks = ",".join("?" for _ in states)
        return self._q(f"SELECT * FROM run_jobs WHERE state IN ({marks}) ORDER BY created_at, rowid", states)

    def set_run_job(self, run_id: str, **fields: Any) -> None:
        """Change a job row (state, apply_log)."""
        fields["updated_at"] = now_iso()
        self._update("run_jobs", "run_id", run_id, fields)

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
