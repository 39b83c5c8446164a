"""The runbook's catalog: its step names, the actions the ledger records, and each step's options.

Every other module takes these names from here, so a step is renamed in one place and a misspelled
name is an AttributeError at import rather than a ledger query that silently finds nothing.

- Step names are the notebooks' file names without ``.ipynb`` (``STEPS``, in order).
- A ledger row's ``action`` says what the row records for its step: the step's own run (``RUN``), an
  operator's confirmation of a gated action (``CONFIRM``), or step 5's way back (``RECOVER``).
- Each step's options are a frozen dataclass of typed defaults (see `StepOptions`); `StepContext.create`
  builds it from the notebook's parameters and refuses a name the step does not know.
"""

from __future__ import annotations

#: Step names, one per notebook.
PREFLIGHT = "00_preflight_inventory"
CREATE_ORGANIZATION = "01_create_organization"
CREATE_WORKSPACES = "02_create_workspaces"
MIGRATE_STATE = "03_migrate_state"
DISABLE_LEGACY_VCS = "04_disable_legacy_vcs"
COMMIT_AND_VERIFY = "05_commit_and_verify"
DELETE_LEGACY_ENVIRONMENT = "06_delete_legacy_environment"
STEPS: tuple[str, ...] = (PREFLIGHT, CREATE_ORGANIZATION, CREATE_WORKSPACES, MIGRATE_STATE, DISABLE_LEGACY_VCS,
                          COMMIT_AND_VERIFY, DELETE_LEGACY_ENVIRONMENT)

#: What a ledger row records for its step (its ``action`` column).
RUN = "run"          # the step ran (plan or apply) and ended with this status
CONFIRM = "confirm"  # an operator confirmed the step's gated action (evidence: who, when, what, how)
RECOVER = "recover"  # step 5's way back was taken (evidence: what it undid)
LEDGER_ACTIONS: tuple[str, ...] = (RUN, CONFIRM, RECOVER)

#: Gated actions: what an operator confirms, in the words of the confirmation ("delete <org>/<env>").
UNLINK = "unlink"
DELETE = "delete"
FORCE = "force"
GATE_ACTIONS: tuple[str, ...] = (DELETE, UNLINK, FORCE)
#: The action each gated step asks to confirm (see runbook_lib.gates).
GATED_ACTIONS: dict[str, str] = {DISABLE_LEGACY_VCS: UNLINK, DELETE_LEGACY_ENVIRONMENT: DELETE}
