"""Step 1: create (or adopt) the new organization and its VCS connection.

Organization names are globally unique: a name that exists but the token cannot see is someone
else's, and the step stops with that sentence. One the token can see is adopted. VCS access is an
OAuth client of the new organization for the provider the legacy environments use; its OAuth token
id is what step 2 links workspaces with. The provider's personal access token comes from the
environment variable named by the `vcs_token_var` parameter, never from the notebook.
"""

from __future__ import annotations

import os

import pandas as pd
from filelock import FileLock

from runbook_lib import catalog
from runbook_lib.context import StepContext
from runbook_lib.errors import ConfigError, StepError, ValidationError
from runbook_lib.jsonapi import Resource
from runbook_lib.results import StepResult
from runbook_lib.steps import plan_frame, refusals



def find_vcs_client(ctx: StepContext, *, fresh: bool = False) -> Resource | None:
    """The organization's OAuth client for the configured provider and URL, if there is one.

    Args:
        fresh: read the list now (under the creation lock: another kernel may just have created it).
    """
    for client in ctx.tfe.list_oauth_clients(ctx.row.new_org, fresh=fresh):
        if (client.get("service-provider") == ctx.options.vcs_service_provider
                and client.get("http-url") == ctx.options.vcs_http_url):
            return client
    return None


def vcs_token_id(ctx: StepContext) -> str:
    """The OAuth token id that workspaces link their repository with (used by step 2).

    The organization's VCS connection for `vcs_http_url` when that parameter is given, otherwise its
    only VCS connection.

    Raises:
        StepError: no VCS connection yet (step 1 not applied), several and none chosen, or no token.
    """
    clients = list(ctx.tfe.list_oauth_clients(ctx.row.new_org))
    wanted = ctx.options.vcs_http_url  # steps 1 and 2 both declare it
    if wanted:
        clients = [c for c in clients if c.get("http-url") == wanted]
    if not clients:
        raise StepError(f"{ctx.row.new_org} has no VCS connection{' to ' + wanted if wanted else ''}; "
                        f"run step {catalog.CREATE_ORGANIZATION} in apply mode first.")
    if len(clients) > 1:
        raise StepError(f"{ctx.row.new_org} has {len(clients)} VCS connections "
                        f"({', '.join(str(c.get('http-url')) for c in clients)}); set the vcs_http_url parameter "
                        f"to the one its repositories live on.")
    client = clients[0]
    listed = client.rel("oauth-tokens")  # the client's answer names its tokens: no second request
    if isinstance(listed, list) and listed and listed[0]:
        return listed[0]
    token = next(iter(ctx.tfe.list_oauth_tokens(client.id)), None)
    if token is None:
        raise StepError(f"the VCS connection {client.id} of {ctx.row.new_org} has no OAuth token; "
                        f"reconnect it (step 01) with a valid ${ctx.options.vcs_token_var}.")
    return token.id


def plan(ctx: StepContext) -> pd.DataFrame:
    """What apply would do: create or adopt the organization and its VCS connection."""
    org = ctx.tfe.find_organization(ctx.row.new_org)
    rows = [{"object": "organization", "name": ctx.row.new_org, "action": "adopt" if org else "create",
             "detail": "visible to the token: adopt it" if org else "does not exist (or is someone else's)"}]
    client = find_vcs_client(ctx) if org else None
    rows.append({"object": "vcs connection", "name": ctx.options.vcs_http_url,
                 "action": "adopt" if client else "create",
                 "detail": f"OAuth client {client.id}" if client else
                 f"{ctx.options.vcs_service_provider} with the token in ${ctx.options.vcs_token_var}"})
    if not (client or os.environ.get(ctx.options.vcs_token_var)):
        rows[-1].update(action="refuse", detail=f"${ctx.options.vcs_token_var} is not set: it must hold the VCS "
                                                f"provider's access token")
    if not org and not ctx.options.organization_email:
        rows[0].update(action="refuse", detail="set the organization_email parameter (the new owner's email)")
    return plan_frame(rows)


def apply(ctx: StepContext) -> pd.DataFrame:
    """Create or adopt the organization and the VCS connection.

    Raises:
        StepError: the name is taken by someone else's organization, or the plan refuses.
    """
    planned = plan(ctx)
    refused = refusals(planned)
    if refused:
        raise StepError("step 1 refused, nothing changed: " + "; ".join(refused))
    # Environments of one batch run this step in parallel kernels; an OAuth client has no unique name the
    # server would enforce, so the organization and its VCS connection are made under a lock beside the
    # batch's ledger.
    lock_dir = ctx.ledger.path.parent / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"vcs-connection-{ctx.row.new_org}.lock"), timeout=120):
        org = _organization_or_create(ctx)
        client, client_action = _vcs_client_or_create(ctx, new_org=not org.adopted)
    return pd.DataFrame([
        {"object": "organization", "name": org.id, "result": "adopted" if org.adopted else "created"},
        {"object": "vcs connection", "name": client.id, "result": client_action}])


def _organization_or_create(ctx: StepContext) -> Resource:
    try:
        org = ctx.tfe.find_organization(ctx.row.new_org)
        if org is not None:
            org.adopted = True
            return org
        return ctx.tfe.create_organization(ctx.row.new_org, ctx.options.organization_email, adopt_existing=True)
    except ValidationError as exc:
        raise StepError(f"the organization name {ctx.row.new_org!r} is not available ({exc}); organization names "
                        f"are globally unique: choose another new_org.") from exc


def _vcs_client_or_create(ctx: StepContext, *, new_org: bool) -> tuple[Resource, str]:
    """The VCS connection, adopted or created; called under the batch's lock for the organization.

    Args:
        new_org: the organization was created by this call's own POST a moment ago (not adopted after an
            ambiguous answer): it has no VCS connection, and no other kernel of the batch can add one while
            the lock is held, so the list is not read.
    """
    # One seen a moment ago is adopted; "none" is read again now, under the lock, before creating one
    # (another kernel of the batch may just have created it).
    client = None if new_org else find_vcs_client(ctx) or find_vcs_client(ctx, fresh=True)
    if client is None:
        token = os.environ.get(ctx.options.vcs_token_var, "")
        if not token:
            raise ConfigError(f"set ${ctx.options.vcs_token_var} to the VCS provider's access token.")
        client = ctx.tfe.create_oauth_client(ctx.row.new_org, service_provider=ctx.options.vcs_service_provider,
                                             http_url=ctx.options.vcs_http_url, api_url=ctx.options.vcs_api_url,
                                             oauth_token_string=token, name=ctx.options.vcs_client_name)
        return client, "adopted" if client.adopted else "created"
    return client, "adopted"


def verify(ctx: StepContext) -> StepResult:
    """The organization answers (with its entitlements) and has a VCS connection with a token."""
    org = ctx.tfe.find_organization(ctx.row.new_org)
    if org is None:
        return StepResult(False, f"organization {ctx.row.new_org} does not exist or the token cannot see it")
    entitlements = ctx.tfe.entitlements(ctx.row.new_org)
    try:
        token_id = vcs_token_id(ctx)
    except StepError as exc:
        return StepResult(False, str(exc))
    return StepResult(True, f"organization {org.id} with VCS token {token_id}",
                      {"organization": org.id, "oauth_token_id": token_id, "vcs_http_url": ctx.options.vcs_http_url,
                       "operations": entitlements.get("operations")})


def recorded_vcs_token_id(ctx: StepContext) -> str | None:
    """The VCS token step 1 proved for this environment's organization (its evidence in this ledger), when it
    chose it by the same `vcs_http_url`; None otherwise (then `vcs_token_id` asks the host). Linking with it is
    its check: the host refuses a token that is gone, and nothing else is changed by that refusal."""
    passed = ctx.ledger.passed(ctx.row.legacy_slug, catalog.CREATE_ORGANIZATION, "apply")
    evidence = passed.evidence if passed else {}
    if (evidence.get("oauth_token_id") and "vcs_http_url" in evidence
            and evidence["vcs_http_url"] == ctx.options.vcs_http_url):
        return str(evidence["oauth_token_id"])
    return None
