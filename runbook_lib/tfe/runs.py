"""Runs, their plans (log and JSON output) and configuration versions."""

from __future__ import annotations

from typing import Any, Iterator

from runbook_lib.errors import ApiError
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.tfe.base import API, TfeBase

FINAL_RUN_STATUSES = frozenset({"planned_and_finished", "applied", "errored", "discarded", "canceled",
                                "force_canceled", "policy_soft_failed"})


class RunsApi(TfeBase):
    """Runs (``/runs``, ``/workspaces/:id/runs``), plans and configuration versions."""

    def list_runs(self, workspace_id: str, *, statuses: list[str] | None = None) -> Iterator[Resource]:
        """Yield the workspace's runs, newest first.

        Args:
            statuses: ``filter[status]`` values (``["planning", "planned"]``).
        """
        params = {"filter[status]": ",".join(statuses)} if statuses else None
        return self._list(f"/workspaces/{_seg(workspace_id)}/runs", params)

    def current_run(self, workspace_id: str) -> tuple[Resource | None, str | None]:
        """The workspace's current run and the commit it plans, in one fresh workspace read.

        Reads ``include=current_run.configuration_version.ingress_attributes`` (go-tfe `workspace.go`
        WSCurrentrunConfigVerIngress): not the runs list, which has a budget of its own (30 reads a
        minute). A run queued behind another one is not yet current (run-states.mdx `pending`).

        Returns:
            ``(run, commit_sha)``: ``(None, None)`` without a current run; the sha is None for a run of
            an uploaded configuration.
        """
        ws = self._get(f"/workspaces/{_seg(workspace_id)}",
                       {"include": "current_run.configuration_version.ingress_attributes"}, fresh=True)
        run_id = ws.rel("current-run")
        if not run_id:
            return None, None
        included = {(r.type, r.id): r for r in ws.included}
        run = included.get(("runs", run_id)) or self.get_run(run_id)  # a host may leave an include out
        cv_id = run.rel("configuration-version")
        if not cv_id:
            return run, None
        cv = included.get(("configuration-versions", cv_id))
        ingress_id = cv.rel("ingress-attributes") if cv is not None else None
        ingress = included.get(("ingress-attributes", ingress_id)) if ingress_id else None
        if ingress is None and (cv is None or ingress_id):
            ingress = self.ingress_attributes(cv_id)
        return run, (ingress.get("commit-sha") if ingress is not None else None)

    def queued_runs(self, workspace_id: str) -> list[tuple[Resource, str | None]]:
        """The workspace's runs still queued (`pending`), newest first, each with the commit it plans, in one
        runs-list read (``filter[status]=pending``, ``include=configuration_version.ingress_attributes``: run.mdx
        "List Runs in a Workspace"); the sha is None for a run of an uploaded configuration."""
        out = []
        for run in self._list(f"/workspaces/{_seg(workspace_id)}/runs",
                              {"filter[status]": "pending", "include": "configuration_version.ingress_attributes"}):
            included = {(r.type, r.id): r for r in run.included}
            cv_id = run.rel("configuration-version")
            cv = included.get(("configuration-versions", cv_id)) if cv_id else None
            ingress_id = cv.rel("ingress-attributes") if cv is not None else None
            ingress = included.get(("ingress-attributes", ingress_id)) if ingress_id else None
            if ingress is None and cv_id and (cv is None or ingress_id):
                ingress = self.ingress_attributes(cv_id)  # a host that left the include out
            out.append((run, ingress.get("commit-sha") if ingress is not None else None))
        return out

    def get_run(self, run_id: str) -> Resource:
        """GET a run (status, has-changes, relationships plan/apply/configuration-version)."""
        return self._get(f"/runs/{_seg(run_id)}")

    def create_run(self, workspace_id: str, *, message: str | None = None, plan_only: bool | None = None,
                   is_destroy: bool | None = None, auto_apply: bool | None = None,
                   configuration_version_id: str | None = None) -> Resource:
        """Queue a run.

        Runs have no unique key, so an ambiguous outcome (5xx, lost connection) is not adopted: the error is
        raised and the caller checks `list_runs` before queueing again.

        Raises:
            ConflictError: the workspace is locked; ValidationError: refused.
        """
        doc = document("runs", {"message": message, "plan-only": plan_only, "is-destroy": is_destroy,
                                "auto-apply": auto_apply},
                       {"workspace": ("workspaces", workspace_id),
                        "configuration-version": (("configuration-versions", configuration_version_id)
                                                  if configuration_version_id else None)})
        return self._send("POST", "/runs", doc)  # type: ignore[return-value]

    def discard_run(self, run_id: str, comment: str = "") -> None:
        """Discard a run that waits for confirmation (``planned``) or is queued, so it can never apply.

        Raises:
            ConflictError: the run cannot be discarded any more (applied, or already final).
        """
        self._send("POST", f"/runs/{_seg(run_id)}/actions/discard", {"comment": comment} if comment else None)

    def plan_log(self, plan: Resource) -> str:
        """The plan's log (plain text, as terraform printed it) from its signed ``log-read-url``.

        Raises:
            ApiError: the plan has no log URL yet, or the download failed.
        """
        url = plan.get("log-read-url")
        if not url:
            raise ApiError(f"plan {plan.id} has no log-read-url yet (status {plan.get('status')!r}).")
        response = self.session.request("GET", url, signed=True, headers={"Accept": "text/plain"})
        return response.content.decode("utf-8", errors="replace")

    def ingress_attributes(self, configuration_version_id: str) -> Resource | None:
        """The VCS facts of a configuration version (``commit-sha``, ``branch``, ``identifier``,
        ``commit-message``), or None when it came from an upload rather than a VCS push."""
        return self._find(f"/configuration-versions/{_seg(configuration_version_id)}/ingress-attributes", reuse=True)

    def get_plan(self, plan_id: str) -> Resource:
        """GET a plan (has-changes, resource-additions/changes/destructions, status, log-read-url)."""
        return self._get(f"/plans/{_seg(plan_id)}")

    def plan_json(self, plan_id: str | None = None, *, run_id: str | None = None) -> dict[str, Any] | None:
        """Return a plan's JSON output (``terraform show -json``), following the 307 to its download URL.

        Args:
            plan_id: ``plan-...``; or
            run_id: ``run-...`` (uses ``/runs/:id/plan/json-output``).

        Returns:
            The decoded plan JSON, or None while the plan is not finished (204).

        Raises:
            NotFoundError: no such plan; ApiError: the download failed.
        """
        path = f"/plans/{_seg(plan_id)}/json-output" if plan_id else f"/runs/{_seg(run_id or '')}/plan/json-output"
        # plans.mdx: the answer is a temporary redirect to a signed link (another host on HCP Terraform).
        response = self.session.request("GET", API + path, headers={"Accept": "application/json"},
                                        signed_redirect=True)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def cancel_run(self, run_id: str, comment: str = "") -> None:
        """Cancel a run that is still queued, planning or applying (run.mdx "Cancel a Run": a working run is
        canceled; only a paused one can be discarded).

        Raises:
            ConflictError: the run is paused or final (discard a paused one instead).
        """
        self._send("POST", f"/runs/{_seg(run_id)}/actions/cancel", {"comment": comment} if comment else None)

    def create_configuration_version(self, workspace_id: str, *, auto_queue_runs: bool = True,
                                     speculative: bool = False) -> Resource:
        """Create a configuration version (answer carries ``upload-url``). Not adopted on ambiguity."""
        doc = document("configuration-versions", {"auto-queue-runs": auto_queue_runs, "speculative": speculative})
        return self._send("POST", f"/workspaces/{_seg(workspace_id)}/configuration-versions", doc)  # type: ignore[return-value]

    def get_configuration_version(self, configuration_version_id: str) -> Resource:
        """GET a configuration version (status pending/uploaded/errored)."""
        return self._get(f"/configuration-versions/{_seg(configuration_version_id)}")

    def upload_configuration(self, configuration_version: Resource, tar_gz: bytes) -> None:
        """PUT a .tar.gz of the configuration to the version's ``upload-url`` (signed; no token sent).

        Raises:
            ApiError: no upload URL, or the upload failed.
        """
        url = configuration_version.get("upload-url")
        if not url:
            raise ApiError(f"configuration version {configuration_version.id} has no upload-url "
                           f"(status {configuration_version.get('status')!r}).")
        self._put_blob(url, tar_gz)
