"""Legacy (/api/v1) objects: organizations, environments, their state, variables, configurations, runs."""

from __future__ import annotations

import json
import secrets
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (atlas_serial_allows, _b, FINAL_RUN_STATUSES, md5_hex, new_id, now_iso,
                                            parse_state, StoreBase, _valid_legacy_name)


class LegacyStore(StoreBase):
    """Legacy (/api/v1) objects: organizations, environments, their state, variables, configurations, runs."""

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
            LegacyMd5ConflictError: 409, same serial with different content (`atlas_serial_allows`).
        """
        info = parse_state(body)
        digest = md5_hex(body)
        with self.tx():
            current = self.current_legacy_state(env_id)
            if current is not None and not atlas_serial_allows(current, info["serial"], digest):
                return False
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

    def find_legacy_run(self, run_id: str) -> dict[str, Any] | None:
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

