"""State versions of workspaces and their hosted (archivist-style) uploads and downloads."""

from __future__ import annotations

import secrets
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import (StoreBase, md5_hex, new_id, now_iso, parse_state)


class StateStore(StoreBase):
    """State versions of workspaces and their hosted (archivist-style) uploads and downloads."""

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

