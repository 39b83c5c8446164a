"""Step 4: disable the legacy environment's VCS integration, so the push of step 5 runs only in the workspace.

The seed: "Before committing and pushing the backend change to VCS, the legacy environment webhook must
be disabled to prevent the configuration from running in both the legacy environment and the new
workspace." Unlinking is gated (`runbook_lib.gates`, action ``unlink``): a batch needs
``confirm = "unlink <LEGACY_ORG>/<ENV>"``, an operator in JupyterLab clicks the button.

How, by the `unlink_via` parameter:

- ``api`` (default): ``DELETE /api/v1/environments/<org>/<env>/vcs``. That endpoint is one of the
  legacy product's UI-only ones (see `runbook_lib.legacy`); when the host does not offer it, apply
  stops, changing nothing, and names the UI path below.
- ``ui``: the operator follows the seed's UI path (`UI_PATH`) and then confirms; apply only checks
  that the legacy host now reports no VCS link.

Before unlinking, the link (repository, branch, working directory) is written to the audit trail and
into the step's evidence, so step 5's recovery can put it back. Apply refuses, changing nothing,
until the workspace holds the migrated state (steps 2 and 3): unlinking earlier would leave the
configuration running nowhere.

Verify: the legacy environment reports no VCS link. That a push then starts no legacy run is proven
in step 5, which pushes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import ApiError, NotFoundError, StepError
from runbook_lib.evidence import VcsLink
from runbook_lib.gates import recorded_decision
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame

VIA = catalog.UNLINK_VIA
#: The seed's own words for unlinking in the legacy UI (step 4).
UI_PATH = ("In legacy TFE, go to the Environment settings page and go to \u201cIntegrations\u201d. In the "
           "\u201cVersion Control Integration\u201d section click \u201cUnlink\u201d.")
LINK_RECORD = "04_legacy_vcs_link.json"


class Instructions(str):
    """Markdown text that a notebook renders as such."""

    def _repr_markdown_(self) -> str:
        return str(self)


def ui_instructions(ctx: StepContext) -> Instructions:
    """What the operator does by hand when the legacy host offers no unlink API (markdown).

    Returns:
        The seed's UI path for this environment, and what to do afterwards.
    """
    how = ("This step unlinks through the API (`unlink_via = 'api'`); if the legacy host does not offer that, "
           "it stops and you unlink by hand:\n\n" if ctx.options.unlink_via == "api" else "")
    return Instructions(
        how + f"**Unlink {ctx.row.legacy_slug} by hand.** Sign in to the legacy host ({ctx.settings.address('legacy')}), "
        f"open the environment **{ctx.row.legacy_slug}**. {UI_PATH}\n\n"
        f"Then confirm below (batch: `confirm = \"unlink {ctx.row.legacy_slug}\"`); the step checks that "
        f"the legacy host reports no VCS link any more.")


def _describe(vcs: dict[str, Any]) -> str:
    return (f"{vcs.get('repo')} (branch {vcs.get('branch') or '(default)'}, working directory "
            f"{vcs.get('working_directory') or '(root)'})")


def _workspace_ready(ctx: StepContext) -> tuple[str, str]:
    """(action, detail) for the workspace row: adopt when it holds the migrated state, else what is missing."""
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    if ws is None:
        return "none", (f"{ctx.row.workspace_slug} does not exist yet: steps 02 and 03 first "
                        f"(apply refuses until the workspace holds the state)")
    current = ctx.tfe.state_version_of(ws)
    if current is None:
        return "none", (f"{ws.id} holds no state yet: step {catalog.MIGRATE_STATE} first "
                        f"(apply refuses until the workspace holds the state)")
    return "adopt", f"{ws.id} holds the migrated state (serial {current.get('serial')})"


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: unlink the legacy environment's VCS link (or nothing, when already unlinked)."""
    env = ctx.legacy.get_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    action, detail = _workspace_ready(ctx)
    rows: list[dict[str, Any]] = [{"object": "workspace", "name": ctx.row.workspace_slug, "action": action,
                                   "detail": detail}]
    vcs = env.get("vcs") or {}
    if not vcs:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": "already unlinked: a push starts no legacy run"})
    elif ctx.options.unlink_via == "api":
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "update",
                     "detail": f"unlink {_describe(vcs)} through the API (gated: unlink {ctx.row.legacy_slug})"})
    else:
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "update",
                     "detail": f"the operator unlinks {_describe(vcs)} in the legacy UI, then confirms: {UI_PATH}"})
    return plan_frame(rows)


def _save_link(ctx: StepContext, vcs: dict[str, Any]) -> None:
    """Keep the link in the audit trail before removing it: step 5's recovery re-links from it."""
    path = ctx.audit_dir / LINK_RECORD
    link = VcsLink(vcs["repo"], vcs.get("branch"), vcs.get("working_directory"))  # read back by previous_link
    path.write_text(json.dumps({"environment": ctx.row.legacy_slug, "vcs": link.to_evidence()}, indent=2) + "\n")
    os.chmod(path, 0o600)


def previous_link(ctx: StepContext) -> dict[str, Any] | None:
    """The VCS link the legacy environment had before step 4 (to re-link it when step 5 fails).

    Sources, best first: the link step 4 wrote into this environment's audit trail; step 4's evidence
    in the ledger; the workspace's own VCS link (step 2 copied it from the environment and verified it).

    Returns:
        ``{"repo", "branch", "working_directory"}``, or None when no source knows it.

    Raises:
        EvidenceError: a recorded link lacks one of those keys.
    """
    path = ctx.audit_dir / LINK_RECORD
    if path.is_file():
        # Read strictly: a record without its link is a fault to name, not a reason to guess another source.
        return VcsLink.from_evidence(json.loads(path.read_text()).get("vcs"), str(path)).to_evidence()
    run = ctx.ledger.passed(ctx.row.legacy_slug, VcsLink.STEP, "apply")
    if run is not None and run.evidence.get("previous_vcs"):
        return VcsLink.from_evidence(run.evidence["previous_vcs"],
                                     f"step {VcsLink.STEP}'s evidence in {ctx.ledger.path}").to_evidence()
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    repo = (ws.get("vcs-repo") or {}) if ws is not None else {}
    if repo.get("identifier"):
        return {"repo": repo["identifier"], "branch": repo.get("branch") or "master",
                "working_directory": ws.get("working-directory") or ""}
    return None


def apply(ctx: StepContext) -> pd.DataFrame:
    """Unlink the legacy environment's VCS integration (api), or check the operator did (ui).

    Returns:
        A table of what was done.

    Raises:
        StepError: the workspace does not hold the state yet; the host offers no unlink API; on the UI
            path, the environment is still linked. Nothing was changed.
    """
    action, detail = _workspace_ready(ctx)
    if action != "adopt":
        raise StepError(f"step 4 refused, nothing changed: workspace {detail}.")
    env = ctx.legacy.get_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    vcs = env.get("vcs") or {}
    if not vcs:
        return pd.DataFrame([{"object": "legacy vcs link", "name": ctx.row.legacy_slug,
                              "result": "already unlinked"}], columns=["object", "name", "result"])
    _save_link(ctx, vcs)
    if ctx.options.unlink_via == "ui":
        raise StepError(f"{ctx.row.legacy_slug} is still linked to {_describe(vcs)}. {UI_PATH} Then run this "
                        f"cell again.")
    try:
        after = ctx.legacy.unlink_vcs(ctx.row.legacy_org, ctx.row.legacy_env)
    except NotFoundError as exc:
        # The environment exists (read above), so a 404 here means the host has no unlink endpoint.
        raise StepError(f"the legacy host offers no VCS unlink API ({exc}); nothing was changed. Unlink by hand: "
                        f"{UI_PATH} Then run the step with unlink_via = 'ui'.") from exc
    except ApiError as exc:
        if exc.status != 405:
            raise
        raise StepError(f"the legacy host does not allow unlinking through its API ({exc}); nothing was changed. "
                        f"Unlink by hand: {UI_PATH} Then run the step with unlink_via = 'ui'.") from exc
    if after.get("vcs"):
        raise StepError(f"the legacy host answered the unlink but still reports {_describe(after['vcs'])}; "
                        f"unlink by hand: {UI_PATH}")
    return pd.DataFrame([{"object": "legacy vcs link", "name": ctx.row.legacy_slug,
                          "result": f"unlinked {_describe(vcs)}"}], columns=["object", "name", "result"])


def verify(ctx: StepContext) -> StepResult:
    """The legacy host reports no VCS link for the environment.

    Interactively, before the button was clicked, this fails with "waiting for your confirmation".
    """
    env = ctx.legacy.get_environment(ctx.row.legacy_org, ctx.row.legacy_env)
    decision = recorded_decision(ctx.ledger, ctx.row.legacy_slug, ctx.step, after_row=ctx.started_row_id)
    evidence: dict[str, Any] = {"vcs": env.get("vcs"), "previous_vcs": previous_link(ctx),
                                "unlink_via": ctx.options.unlink_via, "confirmation": decision}
    vcs = env.get("vcs") or {}
    if vcs:
        if ctx.interactive and decision is None:
            return StepResult(False, "waiting for your confirmation: click the button above, then run this cell again "
                                     f"({ctx.row.legacy_slug} is still linked to {vcs.get('repo')})", evidence)
        return StepResult(False, f"{ctx.row.legacy_slug} is still linked to {_describe(vcs)}: a push would start a "
                                 f"legacy run", evidence)
    who = f"; confirmed by {decision['operator']} via {decision['via']} at {decision['decided_at']}" if decision else ""
    return StepResult(True, f"{ctx.row.legacy_slug} reports no VCS link: a push starts no legacy run (proven in "
                            f"step 5){who}", evidence)
