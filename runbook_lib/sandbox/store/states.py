"""State versions of workspaces and their hosted (archivist-style) uploads and downloads."""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (atlas_serial_allows, md5_hex, new_id, now_iso, parse_state, StoreBase)


#: Seconds between a hosted upload landing and its state version becoming `finalized` (a real host
#: processes the upload asynchronously: state-versions.mdx "Some of the information ... populated
#: asynchronously"; go-tfe `state_version_integration_test.go` polls until the download URL appears).
#: Overridden per sandbox by `Sandbox(state_finalize_seconds=...)` or the environment variable.
FINALIZE_ENV = "TFE_SANDBOX_STATE_FINALIZE_SECONDS"
DEFAULT_FINALIZE_SECONDS = 0.2


def _default_finalize_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(FINALIZE_ENV, DEFAULT_FINALIZE_SECONDS)))
    except ValueError:
        return DEFAULT_FINALIZE_SECONDS


class StateStore(StoreBase):
    """State versions of workspaces and their hosted (archivist-style) uploads and downloads.

    Status of a state version (state-versions.mdx "State Version Status"):
    - created with the `state` attribute: `finalized` at once ("created with a valid `state` attribute";
      go-tfe's create tests read its download URL straight from the create answer);
    - created without it: `pending` with an upload URL and no download URL, until its bytes are PUT;
    - bytes received by the hosted upload URL: still `pending` (no download URL, the upload URL hidden,
      "once you upload state content, this URL is hidden") for `state_finalize_seconds`, then `finalized`;
    - a pending version that never received its bytes becomes `discarded` when a newer one is created.
    """

    state_finalize_seconds: float = _default_finalize_seconds()
    #: state version id -> monotonic time its upload finalizes (in memory: after a restart an uploaded
    #: version still pending is finalized at the next read).
    _finalize_at: dict[str, float]
    _finalize_guard = threading.Lock()

    # --- state versions -----------------------------------------------------------------------------

    def _finalize_due(self) -> None:
        """Finalize every uploaded state version whose processing delay has passed.

        Reads nothing once a sweep found no upload in processing and none was scheduled since (every
        workspace answer asks for its current state version: listing thousands stays one query each).
        """
        with self._finalize_guard:
            if not hasattr(self, "_finalize_at"):
                self._finalize_at = {}  # first sweep of this store: uploads left pending by a restart
            elif not self._finalize_at:
                return
            due = self._finalize_at
        rows = self._q("SELECT id FROM state_versions WHERE status = 'pending' AND state IS NOT NULL")
        now = time.monotonic()
        for row in rows:
            if due.get(row["id"], 0.0) <= now:
                self._x("UPDATE state_versions SET status = 'finalized' WHERE id = ? AND status = 'pending'",
                        (row["id"],))
                due.pop(row["id"], None)

    def _schedule_finalize(self, sv_id: str) -> None:
        with self._finalize_guard:
            if not hasattr(self, "_finalize_at"):
                self._finalize_at = {}
            self._finalize_at[sv_id] = time.monotonic() + self.state_finalize_seconds

    def latest_state_version(self, ws_id: str) -> dict[str, Any] | None:
        """The newest state version of a workspace whatever its status, or None."""
        self._finalize_due()
        return self._one("SELECT * FROM state_versions WHERE workspace_id = ? AND status != 'discarded' "
                         "ORDER BY seq DESC LIMIT 1", (ws_id,))

    def current_state_version(self, ws_id: str) -> dict[str, Any] | None:
        """The newest finalized state version of a workspace, or None."""
        self._finalize_due()
        return self._one("SELECT * FROM state_versions WHERE workspace_id = ? AND status = 'finalized' "
                         "ORDER BY seq DESC LIMIT 1", (ws_id,))

    def list_state_versions(self, ws_id: str) -> list[dict[str, Any]]:
        """A workspace's state versions, newest first."""
        self._finalize_due()
        self.import_history_due(ws_id)  # type: ignore[attr-defined] # a native import's history (store.migration)
        return self._q("SELECT * FROM state_versions WHERE workspace_id = ? ORDER BY seq DESC", (ws_id,))

    def list_state_versions_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """The state versions a run's apply wrote (applies.mdx `relationships.state-versions`)."""
        return self._q("SELECT id FROM state_versions WHERE run_id = ? ORDER BY seq", (run_id,))

    def get_state_version(self, sv_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """A state version of a workspace the user can see.

        Raises:
            NotFoundError: missing or foreign.
        """
        self._finalize_due()
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
            # A `serial` attribute that differs from the serial inside the state is accepted and the
            # attribute is what the version answers (go-tfe `helper_test.go` createStateVersion sends the
            # fixture state with any serial; `state_version_integration_test.go` asserts the attribute).
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
            # A pending version superseded before its upload is discarded (state-versions.mdx "discarded").
            self._x("UPDATE state_versions SET status = 'discarded' WHERE workspace_id = ? AND status = 'pending' "
                    "AND state IS NULL", (ws["id"],))
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
        the atlas backend reads them: 409 for an md5 conflict at the same serial (`atlas_serial_allows`)
        and for another lineage.

        Returns:
            True when a new state version was created.

        Raises:
            ConflictError: locked by someone else, or lineage differs.
            LegacyMd5ConflictError: as for a legacy environment.
        """
        if ws["locked"] and (ws["locked_by_user"] != user["id"] or ws["locked_by_run"]):
            raise errors.ConflictError("workspace is locked by another user")
        info = parse_state(body)
        digest = md5_hex(body)
        with self.tx():
            current = self.current_state_version(ws["id"])
            if current is not None:
                if not atlas_serial_allows(current, info["serial"], digest):
                    return False
                if info["lineage"] and current["lineage"] and info["lineage"] != current["lineage"]:
                    raise errors.ConflictError("Lineage The lineage provided in the state file does not match "
                                               "the value currently known remotely")
            self.create_state_version(ws, user, serial=info["serial"], md5=digest, lineage=info["lineage"],
                                      state=body, force=True, require_lock=False)
        return True

    def state_version_bytes(self, sv_id: str, *, json_state: bool = False) -> bytes | None:
        """The raw (or JSON) state bytes of a finalized state version, or None (missing or not finalized)."""
        self._finalize_due()
        row = self._one("SELECT state, json_state, status FROM state_versions WHERE id = ?", (sv_id,))
        if row is None or row["status"] != "finalized":
            return None
        return row["json_state" if json_state else "state"]

    def blob(self, token: str) -> dict[str, Any] | None:
        """The archivist object a capability token names (kind, owner_id, direction), or None."""
        return self._one("SELECT * FROM blobs WHERE token = ?", (token,))

    def upload_state(self, sv_id: str, kind: str, data: bytes) -> None:
        """Store the bytes PUT to a hosted upload URL; the version finalizes `state_finalize_seconds` later.

        "You can upload state data once per state version" (state-versions.mdx, attribute
        `hosted-state-upload-url`; the same for JSON state): a second PUT is refused.

        Raises:
            UnprocessableError: md5 of the raw state differs from the declared md5, or it is not a state.
            ConflictError: the raw (or JSON) state was already uploaded, or the version was discarded.
        """
        with self.tx():
            sv = self._one("SELECT * FROM state_versions WHERE id = ?", (sv_id,))
            if sv is None:
                raise errors.NotFoundError()
            if sv["status"] == "discarded":
                raise errors.ConflictError("this state version was discarded: create a new one")
            if kind == "json-state":
                if sv["json_state"] is not None:
                    raise errors.ConflictError("JSON state already uploaded for this state version")
                self._update("state_versions", "id", sv_id, {"json_state": data})
                return
            if sv["state"] is not None:
                raise errors.ConflictError("state already uploaded for this state version")
            if md5_hex(data) != sv["md5"]:
                raise errors.UnprocessableError("md5 of the uploaded state does not match the state version")
            info = parse_state(data)
            self._schedule_finalize(sv_id)  # before the bytes are visible, so no reader finalizes early
            self._update("state_versions", "id", sv_id, {
                "state": data, "terraform_version": info["terraform_version"],
                "state_version": info["version"], "lineage": sv["lineage"] or info["lineage"]})
        if self.state_finalize_seconds <= 0:
            self._finalize_due()

