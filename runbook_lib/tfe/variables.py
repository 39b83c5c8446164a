"""Workspace variables."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from runbook_lib.http import create_or_adopt
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.tfe.base import API, TfeBase


class VariablesApi(TfeBase):
    """Workspace variables (``/workspaces/:id/vars``)."""

    def list_variables(self, workspace_id: str) -> Iterator[Resource]:
        """Yield the workspace's variables (sensitive values come back as None)."""
        return self._list(f"/workspaces/{_seg(workspace_id)}/vars", reuse=True)

    def create_variable(self, workspace_id: str, key: str, value: str | None, *, category: str = "terraform",
                        hcl: bool = False, sensitive: bool = False, description: str | None = None) -> Resource:
        """Create a workspace variable; on an ambiguous outcome adopt one with the same key and category.

        Args:
            workspace_id: ``ws-...``.
            key, value: the variable (a sensitive value is write-only on the server).
            category: ``terraform`` or ``env``.
            hcl, sensitive, description: as the API.

        Raises:
            ValidationError: refused (e.g. key already exists in that category).
        """
        doc = document("vars", {"key": key, "value": value, "category": category, "hcl": hcl,
                                "sensitive": sensitive, "description": description})

        def read_back() -> Resource | None:
            return next((v for v in self.list_variables(workspace_id)
                         if v.get("key") == key and v.get("category") == category), None)

        return create_or_adopt(lambda: self._send("POST", f"/workspaces/{_seg(workspace_id)}/vars", doc),
                               read_back)

    def update_variable(self, workspace_id: str, variable_id: str, attributes: Mapping[str, Any]) -> Resource:
        """PATCH a variable's attributes (``value``, ``sensitive``, ``hcl``...)."""
        return self._send("PATCH", f"/workspaces/{_seg(workspace_id)}/vars/{_seg(variable_id)}",
                          document("vars", attributes, id_=variable_id))  # type: ignore[return-value]

    def delete_variable(self, workspace_id: str, variable_id: str) -> bool:
        """DELETE a variable.

        Returns:
            True if deleted now, False if it was already gone.
        """
        response = self.session.request("DELETE", API + f"/workspaces/{_seg(workspace_id)}/vars/{_seg(variable_id)}",
                                        ok=(404,))
        return response.status_code != 404
