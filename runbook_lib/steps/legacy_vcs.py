"""Step 4: the operator unlinks the legacy environment's VCS integration in the legacy UI; the step records it.

The seed: "Before committing and pushing the backend change to VCS, the legacy environment webhook must
be disabled to prevent the configuration from running in both the legacy environment and the new
workspace." The legacy host has no API for it; the seed itself says where: "go to the Environment
settings page and go to 'Integrations'. In the 'Version Control Integration' section click 'Unlink'."

- `plan`: the workspace must hold the migrated state (steps 2 and 3 first: unlinking earlier would leave the
  configuration running nowhere); the link the mapping names; where to click.
- The gate (action ``unlink``): in JupyterLab the instructions and a button "Done: I unlinked ..."; in a batch
  the step stops as WAITING until the batch's confirm file holds ``unlink <LEGACY_ORG>/<ENV>``, the operator's
  statement that they have unlinked it. The runbook never clicks in the legacy UI itself.
- `apply` (once confirmed): writes the link the mapping names into the audit trail (the way back re-links
  from it) and records a baseline of what the legacy host shows now through its documented endpoints: the
  latest configuration version's number and the state's md5 and serial (`evidence.LegacyBaseline`).
- `verify`: the confirmation and the baseline are recorded. That is all it can say: no documented endpoint
  shows a VCS link. Step 5 proves the unlink: after its push, the legacy host must show the same
  configuration version and the same state (a linked environment ingresses the push as a new version).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import StepError
from runbook_lib.evidence import EvidenceError, LegacyBaseline, VcsLink
from runbook_lib.gates import phrase, recorded_decision
from runbook_lib.legacy import NOT_FOUND, not_visible
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame

#: The seed's own words for unlinking in the legacy UI (step 4).
UI_PATH = ("go to the Environment settings page and go to \u201cIntegrations\u201d. In the \u201cVersion Control "
           "Integration\u201d section click \u201cUnlink\u201d")
LINK_RECORD = "04_legacy_vcs_link.json"
BASELINE_RECORD = "04_legacy_baseline.json"


class Instructions(str):
    """Markdown text that a notebook renders as such."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _link(ctx: StepContext) -> dict[str, str] | None:
    """The VCS link the mapping names ({repo, branch, working_directory}), None when it names no repository."""
    repo = ctx.row.vcs_repo.strip()
    if not repo or repo == "?":
        return None
    return {"repo": repo, "branch": ctx.row.vcs_branch.strip(),
            "working_directory": ctx.row.working_directory.strip()}


def _describe(vcs: dict[str, Any]) -> str:
    return (f"{vcs.get('repo')} (branch {vcs.get('branch') or '(default)'}, working directory "
            f"{vcs.get('working_directory') or '(root)'})")


def ask(ctx: StepContext) -> Instructions:
    """Where and how the operator unlinks (markdown): the seed's UI path, with this environment's page."""
    link = _link(ctx)
    what = f" (the mapping says it is linked to {_describe(link)})" if link else ""
    return Instructions(
        f"**Unlink {ctx.row.legacy_slug} in the legacy UI**{what}: sign in to the legacy host, open "
        f"`{ctx.legacy_page('integrations')}` (or {UI_PATH}).\n\n"
        f"Say it is done with the button below, or in a batch with the line `{phrase('unlink', ctx.row.legacy_slug)}` "
        f"in the confirm file. Step 5 then proves it: after its push the legacy host must show no new configuration "
        f"version and no state change.")


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
    """What apply would do: wait for the operator's unlink in the UI, then record the link and a baseline."""
    action, detail = _workspace_ready(ctx)
    rows: list[dict[str, Any]] = [{"object": "workspace", "name": ctx.row.workspace_slug, "action": action,
                                   "detail": detail}]
    link = _link(ctx)
    if ctx.row.vcs_repo.strip() == "?":
        rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "none",
                     "detail": "the mapping does not say which repository it is linked to ('?'); the way back "
                               "after a failed step 5 needs it: write it into the mapping"})
    rows.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug, "action": "update",
                 "detail": (f"you unlink {_describe(link)} in the legacy UI" if link else
                            "you check in the legacy UI that no repository is linked (the mapping names none)")
                           + f": {ctx.legacy_page('integrations')}; then confirm "
                             f"({phrase('unlink', ctx.row.legacy_slug)})"})
    rows.append({"object": "baseline", "name": ctx.row.legacy_slug, "action": "create",
                 "detail": "the latest configuration version and the state's md5, for step 5 to prove that a push "
                           "starts nothing on the legacy host"})
    return plan_frame(rows)


def _save_link(ctx: StepContext, vcs: dict[str, Any]) -> None:
    """Keep the link in the audit trail: step 5's way back asks the operator to re-link from it."""
    path = ctx.audit_dir / LINK_RECORD
    link = VcsLink(vcs["repo"], vcs.get("branch"), vcs.get("working_directory"))  # read back by previous_link
    path.write_text(json.dumps({"environment": ctx.row.legacy_slug, "vcs": link.to_evidence()}, indent=2) + "\n")
    os.chmod(path, 0o600)


def take_baseline(ctx: StepContext) -> LegacyBaseline:
    """What the legacy host shows now: the latest configuration version's number, the state's md5 and serial.

    Raises:
        StepError: the state answers 404 (missing, or not visible to the token) or holds nothing: a baseline
            that cannot tell "unchanged" from "unreadable" would prove nothing.
    """
    read = ctx.legacy.read_state(ctx.row.legacy_org, ctx.row.legacy_env, fresh=True)
    if read.found == NOT_FOUND:
        why = not_visible(ctx.row.legacy_slug, read.url, ctx.settings.legacy_token_var)
        raise StepError(f"step 4 cannot record a baseline: {why}.")
    if read.state is None:
        raise StepError(f"step 4 cannot record a baseline: {ctx.row.legacy_slug} answers 204 (no state), yet step 3 "
                        f"migrated one; check the environment in the legacy UI.")
    cv = ctx.legacy.latest_configuration_version(ctx.row.legacy_org, ctx.row.legacy_env)
    return LegacyBaseline((cv or {}).get("version"), read.state.md5, read.state.serial,
                          datetime.now(timezone.utc).isoformat(timespec="seconds"))


def apply(ctx: StepContext) -> pd.DataFrame:
    """After the operator's confirmation: record the link the mapping names and the legacy host's baseline.

    Returns:
        A table of what was recorded.

    Raises:
        StepError: the workspace does not hold the state yet, or no baseline can be read. Nothing was changed.
    """
    action, detail = _workspace_ready(ctx)
    if action != "adopt":
        raise StepError(f"step 4 refused, nothing recorded: workspace {detail}.")
    done = []
    link = _link(ctx)
    if link:
        _save_link(ctx, link)
        done.append({"object": "legacy vcs link", "name": ctx.row.legacy_slug,
                     "result": f"recorded for the way back: {_describe(link)}"})
    base = take_baseline(ctx)
    path = ctx.audit_dir / BASELINE_RECORD
    path.write_text(json.dumps(base.to_evidence(), indent=2) + "\n")
    os.chmod(path, 0o600)
    done.append({"object": "baseline", "name": ctx.row.legacy_slug,
                 "result": f"configuration version {base.configuration_version or 'none'}, state serial "
                           f"{base.state_serial}, md5 {base.state_md5}"})
    return pd.DataFrame(done, columns=["object", "name", "result"])


def recorded_baseline(ctx: StepContext) -> LegacyBaseline | None:
    """Step 4's baseline for this environment: from its PASS in the ledger, else the audit trail's record.

    Raises:
        EvidenceError: a recorded baseline lacks a key or is malformed.
    """
    run = ctx.ledger.passed(ctx.row.legacy_slug, LegacyBaseline.STEP, "apply")
    if run is not None and "state_md5" in run.evidence:
        return LegacyBaseline.from_evidence(run.evidence, ctx.row.legacy_slug)
    path = ctx.audit_dir / BASELINE_RECORD
    if path.is_file():
        return LegacyBaseline.from_evidence(json.loads(path.read_text()), ctx.row.legacy_slug)
    return None


def previous_link(ctx: StepContext) -> dict[str, Any] | None:
    """The VCS link the legacy environment had before step 4 (for the way back after a failed step 5).

    Sources, best first: the link step 4 wrote into this environment's audit trail; step 4's evidence
    in the ledger; the mapping; the workspace's own VCS link (step 2 copied it from the mapping).

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
    link = _link(ctx)
    if link:
        return link
    ws = ctx.tfe.find_workspace(ctx.row.new_org, ctx.row.workspace)
    repo = (ws.get("vcs-repo") or {}) if ws is not None else {}
    if repo.get("identifier"):
        return {"repo": repo["identifier"], "branch": repo.get("branch") or "",
                "working_directory": ws.get("working-directory") or ""}
    return None


def verify(ctx: StepContext) -> StepResult:
    """The operator's confirmation and the baseline are recorded (step 5 proves the unlink itself)."""
    decision = recorded_decision(ctx.ledger, ctx.row.legacy_slug, ctx.step, after_row=ctx.started_row_id)
    path = ctx.audit_dir / BASELINE_RECORD
    try:
        base = LegacyBaseline.from_evidence(json.loads(path.read_text()), ctx.row.legacy_slug) \
            if path.is_file() else None
    except EvidenceError as exc:
        return StepResult(False, str(exc))
    link = _link(ctx)
    evidence: dict[str, Any] = {"previous_vcs": link, "confirmation": decision,
                                **(base.to_evidence() if base else {})}
    if decision is None:
        if ctx.interactive:
            return StepResult(False, "waiting for your confirmation: unlink in the legacy UI, then click the button "
                                     "above", evidence)
        return StepResult(False, f"no confirmation that {ctx.row.legacy_slug} was unlinked is recorded", evidence)
    if base is None:
        return StepResult(False, f"no baseline of {ctx.row.legacy_slug} was recorded; run the step again", evidence)
    return StepResult(True, f"{decision['operator']} confirmed at {decision['decided_at']} that {ctx.row.legacy_slug} "
                            f"is unlinked in the legacy UI (via {decision['via']}); baseline: configuration version "
                            f"{base.configuration_version or 'none'}, state serial {base.state_serial}. Not proven "
                            f"yet: step 5 proves it after its push", evidence)
