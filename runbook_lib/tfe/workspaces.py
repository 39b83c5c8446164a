"""Workspaces: create, read, update, delete, and their locks."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator, Mapping

from runbook_lib.errors import ApiError
from runbook_lib.http import create_or_adopt
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.tfe.base import API, FINALIZE_TIMEOUT, StateVersionPendingError, TfeBase

#: Every workspace read asks for its current state version in the same answer (one request, not two).
#: The dashed spelling is the one go-tfe sends (`workspace.go` WSCurrentStateVer) and real TFE accepts.
_WITH_STATE = {"include": "current-state-version"}
#: What TFE's unlock refusal says while the latest state version is pending (go-tfe `workspace.go`).
_STILL_PENDING = "latest state version is still pending"


class WorkspacesApi(TfeBase):
    """Workspaces (``/organizations/:org/workspaces``, ``/workspaces/:id``) and their lock actions."""

    # -- workspaces ---------------------------------------------------------------------------------------------

    def list_workspaces(self, organization: str, *, search: str | None = None) -> Iterator[Resource]:
        """Yield the organization's workspaces, 100 a request.

        Args:
            organization: organization name.
            search: ``search[name]`` substring filter.
        """
        params = {"search[name]": search} if search else None
        return self._list(f"/organizations/{_seg(organization)}/workspaces", params)

    def get_workspace(self, organization: str, name: str, *, fresh: bool = False) -> Resource:
        """GET a workspace by organization and name.

        Raises:
            NotFoundError: no such workspace.
        """
        return self._get(f"/organizations/{_seg(organization)}/workspaces/{_seg(name)}", _WITH_STATE, reuse=True,
                         fresh=fresh)

    def find_workspace(self, organization: str, name: str, *, fresh: bool = False) -> Resource | None:
        """Return the workspace, or None when there is none of that name."""
        return self._find(f"/organizations/{_seg(organization)}/workspaces/{_seg(name)}", _WITH_STATE, reuse=True,
                          fresh=fresh)

    def get_workspace_by_id(self, workspace_id: str, *, fresh: bool = False) -> Resource:
        """GET a workspace by id (``ws-...``).

        Raises:
            NotFoundError: no such workspace.
        """
        return self._get(f"/workspaces/{_seg(workspace_id)}", _WITH_STATE, reuse=True, fresh=fresh)

    def create_workspace(self, organization: str, name: str, attributes: Mapping[str, Any] | None = None, *,
                         adopt_existing: bool = False) -> Resource:
        """Create a workspace; resolve an ambiguous outcome by reading back.

        Args:
            organization: organization name.
            name: workspace name.
            attributes: further attributes with the API's names (``execution-mode``, ``auto-apply``,
                ``terraform-version``, ``working-directory``, ``vcs-repo`` {identifier, oauth-token-id,
                branch}, ``source-name``...); None values are left out.
            adopt_existing: when the name is already taken, return the existing workspace
                (``adopted=True``) instead of raising ConflictError. The caller compares it.

        Returns:
            The workspace (``adopted`` True when it was not created by this call).

        Raises:
            ConflictError: the name is taken and ``adopt_existing`` is False.
            ValidationError: refused (invalid name or attribute).
            ServerError, TransportError: ambiguous outcome and no such workspace exists.
        """
        doc = document("workspaces", {"name": name, **dict(attributes or {})})
        return self._create_unique(
            lambda: self._send("POST", f"/organizations/{_seg(organization)}/workspaces", doc),
            lambda: self.find_workspace(organization, name), adopt_existing=adopt_existing,
            what=f"workspace {organization}/{name}")

    def update_workspace(self, workspace_id: str, attributes: Mapping[str, Any]) -> Resource:
        """PATCH a workspace's attributes (idempotent by meaning, so safe to run again).

        Raises:
            ValidationError: refused; NotFoundError: no such workspace.
        """
        return self._send("PATCH", f"/workspaces/{_seg(workspace_id)}",
                          document("workspaces", attributes, id_=workspace_id))  # type: ignore[return-value]

    def delete_workspace(self, workspace_id: str) -> bool:
        """Safe-delete a workspace: the host refuses (409) while it still manages resources (workspaces.mdx
        "Safe Delete a workspace"); use `force_delete_workspace` only for one you mean to lose with its state.

        Returns:
            True if deleted now, False if it was already gone (a retried request answers 404).

        Raises:
            ConflictError: the workspace still manages resources; nothing was deleted.
        """
        response = self.session.request("POST", API + f"/workspaces/{_seg(workspace_id)}/actions/safe-delete",
                                        ok=(404,))
        return response.status_code != 404

    def force_delete_workspace(self, workspace_id: str) -> bool:
        """DELETE a workspace whatever it manages (workspaces.mdx "Force Delete a workspace").

        Returns:
            True if deleted now, False if it was already gone.
        """
        response = self.session.request("DELETE", API + f"/workspaces/{_seg(workspace_id)}", ok=(404,))
        return response.status_code != 404

    def lock_workspace(self, workspace_id: str, reason: str = "Locked by tfe-runbook") -> Resource:
        """Lock a workspace so no run can apply.

        An ambiguous outcome is resolved by reading the workspace back: if it is locked now it is returned
        with ``adopted=True`` (check ``locked-by`` if it matters who holds it).

        Raises:
            ConflictError: already locked (409).
        """
        path = f"/workspaces/{_seg(workspace_id)}/actions/lock"

        def read_back() -> Resource | None:
            ws = self.get_workspace_by_id(workspace_id)
            return ws if ws.get("locked") else None

        return create_or_adopt(lambda: self._send("POST", path, {"reason": reason}),
                               read_back)

    def unlock_workspace(self, workspace_id: str, *, pending_timeout: float = FINALIZE_TIMEOUT,
                         progress: Callable[[str], None] | None = print) -> Resource:
        """Unlock a workspace this token locked (an ambiguous outcome is resolved by reading back).

        While the workspace's latest state version is still pending the host refuses (409, or 503 on
        HCP; workspaces.mdx "Unlock a workspace": retry for a short period): retried every few seconds
        for up to ``pending_timeout`` seconds, with a progress line each time.

        Raises:
            ConflictError: locked by someone else, or not locked.
            StateVersionPendingError: still pending after the bound (its text says what to do).
        """
        deadline = time.monotonic() + pending_timeout
        delay = 0.5
        while True:
            try:
                return self._unlock(workspace_id, "unlock")
            except ApiError as exc:
                if _STILL_PENDING not in str(exc) + json.dumps(getattr(exc, "errors", None) or []):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StateVersionPendingError(
                        f"workspace {workspace_id} cannot be unlocked: its latest state version is still pending "
                        f"after {pending_timeout:.0f}s (the upload never completed or the host is slow to finalize "
                        f"it); check the workspace's state versions, then run the step again.", method=exc.method,
                        url=exc.url, status=exc.status, errors=exc.errors) from exc
                if progress:
                    progress(f"workspace {workspace_id}: latest state version still pending, unlock retried in "
                             f"{min(delay, left):.1f}s")
                time.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)

    def force_unlock_workspace(self, workspace_id: str) -> Resource:
        """Unlock a workspace whoever holds the lock (needs admin permission).

        Raises:
            ConflictError: not locked; AuthError: not allowed.
        """
        return self._unlock(workspace_id, "force-unlock")

    def _unlock(self, workspace_id: str, action: str) -> Resource:
        def read_back() -> Resource | None:
            ws = self.get_workspace_by_id(workspace_id)
            return None if ws.get("locked") else ws

        return create_or_adopt(lambda: self._send("POST", f"/workspaces/{_seg(workspace_id)}/actions/{action}"),
                               read_back)
