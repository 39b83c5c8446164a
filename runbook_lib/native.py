"""The host's own import as a third state path (`migration_path = "native"`).

HashiCorp's 2018 product imported a legacy environment itself when a workspace was created with the
`migration-environment` attribute (`<org>/<env>`): it copied the variables, created the environment's
teams with their members and access levels, copied the latest state and the VCS ingress settings
(workspaces.html.md of 2018, hashicorp/terraform-website). On this path step 2 creates the workspace that
way and the host does the copying; the runbook still plans, locks the workspace, backs the legacy state up
(step 3) and proves the result exactly as on the other paths: lineage, serial and resources of the state,
every variable, the VCS settings and every team's access.

The runbook asks before it relies on it, and refuses with one sentence naming the `api` path when:
- the legacy environments are not on the installation that holds the new organization: the import reads the
  environment from the host's own legacy side. One installation means ATLAS_ADDRESS and TFE_ADDRESS name the
  same host, or the 2018 SaaS pair: legacy environments at atlas.hashicorp.com, the new product at
  app.terraform.io (the upgrade guide's own hosts: "https://atlas.hashicorp.com/api/v1/..." in the legacy API
  pages, "https://app.terraform.io/api/v2/..." in batch.html.md);
- the token's user is not a member of the new organization's owners team (the import "can only be done
  with a user token" of "a member of the owners team in both the legacy organization and the new
  organization"); the legacy side of that rule has no documented read, so the host's own refusal is
  turned into the same one sentence.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from runbook_lib.context import StepContext
from runbook_lib.errors import NotFoundError, StepError, ValidationError
from runbook_lib.jsonapi import Resource

NATIVE = "native"
_USE_API = "use migration_path = 'api'"


#: The 2018 SaaS: legacy environments and the new product were one installation under two host names.
SAAS_PAIR = frozenset({"atlas.hashicorp.com", "app.terraform.io"})


def one_installation(legacy: str, new: str) -> bool:
    """Whether two addresses are one installation: the same scheme, host and port, or the 2018 SaaS pair."""
    a, b = urlsplit(legacy.lower()), urlsplit(new.lower())
    if (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port):
        return True
    return a.scheme == b.scheme == "https" and {a.hostname, b.hostname} == SAAS_PAIR and not a.port and not b.port


def requested(ctx: StepContext) -> bool:
    """Whether this run takes the host's own import."""
    return ctx.options.migration_path == NATIVE


def unsupported(ctx: StepContext) -> str | None:
    """Why the new host cannot import this environment itself, in one sentence; None when it can."""
    legacy, new = ctx.settings.address("legacy").lower(), ctx.settings.address("tfe").lower()
    if not one_installation(legacy, new):
        return (f"the new host cannot import {ctx.row.legacy_slug} itself: the legacy environments are on {legacy}, "
                f"not on the installation of the new organization ({new}); {_USE_API}")
    try:
        owners = ctx.tfe.find_team(ctx.row.new_org, "owners")
    except NotFoundError:
        return None  # the organization does not exist yet: step 1 creates it with you as its owner
    try:
        me = ctx.tfe.account().get("username")
    except NotFoundError:
        me = None
    if owners is None or me is None or me not in ctx.tfe.team_members(owners.id):
        return (f"the host's import needs a user token of a member of the owners team of {ctx.row.new_org} "
                f"(and of {ctx.row.legacy_org}); ${ctx.settings.tfe_token_var} is not one: {_USE_API}, or use an "
                f"owner's user token")
    return None


def plan_rows(ctx: StepContext, ws: Resource | None) -> list[dict[str, Any]]:
    """Step 2's plan rows for the native path (empty on the other paths)."""
    if not requested(ctx):
        return []
    if ws is not None:
        return [{"object": "host import", "name": ctx.row.legacy_slug, "action": "none",
                 "detail": "the workspace exists already, so the host cannot import into it; step 3 proves the "
                           "state it holds"}]
    reason = unsupported(ctx)
    if reason:
        return [{"object": "host import", "name": ctx.row.legacy_slug, "action": "refuse", "detail": reason}]
    return [{"object": "host import", "name": ctx.row.legacy_slug, "action": "create",
             "detail": "the host creates the workspace with migration-environment and copies the variables, "
                       "teams, members, access levels, state and VCS settings, and locks the legacy environment; "
                       "the runbook then locks the workspace and proves. The host refuses while a legacy run is in "
                       f"progress or another user holds its lock: check in the legacy UI first "
                       f"({ctx.legacy_page('changes/runs')})"}]


def create(ctx: StepContext, attributes: dict[str, Any], vcs_repo: dict[str, Any] | None) -> Resource:
    """Create the workspace through the host's import.

    Raises:
        StepError: the host refused the import (nothing was created).
    """
    attrs = {**attributes, "migration-environment": f"{ctx.row.legacy_org}/{ctx.row.legacy_env}"}
    # Linked with `queue-all-runs` the host would ingest the branch head and queue a run at once (workspaces.mdx),
    # and that run would hold the workspace's lock before step 2 locks it: created without it, step 2 locks first
    # and then turns it on, which queues nothing.
    attrs.pop("queue-all-runs", None)
    if vcs_repo:
        attrs["vcs-repo"] = vcs_repo
    try:
        return ctx.tfe.create_workspace(ctx.row.new_org, ctx.row.workspace, attrs, adopt_existing=True)
    except ValidationError as exc:
        detail = "; ".join(str(e.get("detail") if isinstance(e, dict) else e) for e in (exc.errors or [])) or str(exc)
        if "run in progress" in detail or "locked by" in detail:
            fix = (f"wait for the legacy run, or ask whoever locked it to unlock it, in the legacy UI "
                   f"({ctx.legacy_page('settings')}), then run step 2 again")
        else:
            fix = f"{_USE_API}, or use a user token of an owner of both organizations"
        raise StepError(f"the new host refused to import {ctx.row.legacy_slug} ({detail}): {fix}. Nothing was "
                        f"created.") from exc


def missing_state(ctx: StepContext) -> str:
    """Step 3's refusal when the host's import left the workspace without the legacy state."""
    return (f"the workspace {ctx.row.workspace_slug} does not hold the legacy state the host's import should have "
            f"copied (it existed before step 2, or the import left it out); nothing was uploaded: {_USE_API}.")
