"""Client of the new Terraform Enterprise API (``/api/v2``), the calls a migration needs.

Thin by design: each method is one documented endpoint (or a create plus its read-back), and answers are
`runbook_lib.jsonapi.Resource` objects that keep the API's attributes as sent. Retries, rate limiting,
timeouts, TLS and error mapping are the transport's (`runbook_lib.http`).

Creates are POSTs and are never retried blindly: an ambiguous outcome (5xx, connection lost) is resolved by
reading back and adopting what exists (``resource.adopted`` is then True).

One module per resource, as go-tfe has one file per resource: `organizations` (with entitlements and OAuth),
`workspaces` (with locks), `state_versions`, `variables`, `runs` (with plans and configuration versions),
`teams`; `base` holds the plumbing they share. `TfeClient` is all of them together, and every name the rest
of the runbook imports from ``runbook_lib.tfe`` is importable from here.
"""

from __future__ import annotations

from runbook_lib.tfe.base import API, FINALIZE_TIMEOUT, JSONAPI, StateVersionPendingError
from runbook_lib.tfe.organizations import OrganizationsApi
from runbook_lib.tfe.runs import FINAL_RUN_STATUSES, RunsApi
from runbook_lib.tfe.state_versions import HeldState, StateVersionsApi
from runbook_lib.tfe.teams import TeamsApi
from runbook_lib.tfe.variables import VariablesApi

__all__ = ["TfeClient", "HeldState", "StateVersionPendingError", "FINAL_RUN_STATUSES", "FINALIZE_TIMEOUT", "API",
           "JSONAPI"]


class TfeClient(OrganizationsApi, StateVersionsApi, VariablesApi, RunsApi, TeamsApi):
    """The new TFE API: JSON:API, the token as ``Authorization: Bearer`` (`ApiClient` builds the session)."""
