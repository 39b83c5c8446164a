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

import difflib
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping, Sequence, get_type_hints

from runbook_lib.errors import ConfigError
from runbook_lib.secrets import refuse_url_credential

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
#: The environment (and workspace) name of a context that surveys the whole legacy organization (step 0
#: without `legacy_env`); its ledger rows read `<org>/*`.
ALL_ENVIRONMENTS = "*"

#: Gated actions: what an operator confirms, in the words of the confirmation ("delete <org>/<env>").
UNLINK = "unlink"
DELETE = "delete"
FORCE = "force"
GATE_ACTIONS: tuple[str, ...] = (DELETE, UNLINK, FORCE)
#: The action each gated step asks to confirm (see runbook_lib.gates).
GATED_ACTIONS: dict[str, str] = {DISABLE_LEGACY_VCS: UNLINK, DELETE_LEGACY_ENVIRONMENT: DELETE}


# --- Each step's options -------------------------------------------------------------------------------------

#: How step 3 moves the state (and step 2 creates the workspace: "native" is the host's own import).
MIGRATION_PATHS = ("api", "cli", "native")
#: The backend blocks step 5 (and step 3's CLI path) can write.
BACKEND_TARGETS = ("atlas", "remote", "cloud")
#: How step 4 removes the legacy VCS link.
#: What step 2 does with a team that already exists with other members.
EXISTING_MEMBER_POLICIES = ("report", "keep", "add")

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class StepOptions:
    """A step's options: subclasses declare each one as a typed field with its default.

    `build` makes one from notebook parameters: a name the step does not declare is refused, an empty value
    (None or "") takes the default, text is converted to the field's type ("false", "240"), and `check`
    refuses a value outside the step's choices. Every refusal is a ConfigError of one sentence.
    """

    #: True for a step that may run for the whole legacy organization (no `legacy_env`).
    ORGANIZATION_WIDE: ClassVar[bool] = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, step: str, given: Mapping[str, Any]) -> "StepOptions":
        """The options of `step` from the parameters `given` (only the step's own options).

        Raises:
            ConfigError: an unknown option, a value that does not fit its type, a URL carrying a credential, or
                one the step refuses.
        """
        known = cls.names()
        unknown = sorted(set(given) - set(known))
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = f"its options are {', '.join(known)}" if known else "it takes no options"
            raise ConfigError(f"step {step} has no option {name!r}{hint}; {takes}.")
        types = get_type_hints(cls)
        values = {name: _convert(step, name, value, types[name]) for name, value in given.items()
                  if value is not None and value != ""}
        for name, value in values.items():
            refuse_url_credential(f"option {name} of step {step}", value)
        options = cls(**values)
        options.check(step)
        return options

    def check(self, step: str) -> None:
        """Refuse values outside the step's choices (subclasses add their rules)."""

    def _choice(self, step: str, name: str, choices: Sequence[str]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)} for step {step}, not {value!r}.")


def _convert(step: str, name: str, value: Any, kind: Any) -> Any:
    """A notebook or CLI parameter as the option's type (papermill may hand over text)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"option {name} of step {step} must be True or False, not {value!r}.")
    if kind in (int, float):
        words = "a whole number" if kind is int else "a number"
        try:
            number = float(str(value).strip()) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise ValueError
            if kind is int and not float(number).is_integer():
                raise ValueError
            return kind(number)
        except (ValueError, OverflowError):
            raise ConfigError(f"option {name} of step {step} must be {words}, not {value!r}.") from None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"option {name} of step {step} must be text, not {value!r}.")


@dataclass(frozen=True)
class PreflightOptions(StepOptions):
    """Step 0: the mapping ("" -> `<audit_root>/mapping.csv`): the organization-wide survey writes it, a
    per-environment run reads that environment's facts from it."""

    ORGANIZATION_WIDE: ClassVar[bool] = True

    mapping_csv: str = ""


@dataclass(frozen=True)
class CreateOrganizationOptions(StepOptions):
    """Step 1: the organization's owner email and its VCS connection (the token's variable NAME)."""

    organization_email: str = ""                       # used only when the organization is created
    vcs_service_provider: str = "github"               # the VCS connection's `service-provider`
    vcs_http_url: str = "https://github.com"
    vcs_api_url: str = "https://api.github.com"
    vcs_token_var: str = "VCS_OAUTH_TOKEN"             # NAME of the variable holding the VCS token
    vcs_client_name: str = "tfe-runbook migration"     # the connection's name when this step creates it


@dataclass(frozen=True)
class CreateWorkspacesOptions(StepOptions):
    """Step 2: the workspace's settings, its variables, its teams, and how it is created."""

    terraform_version: str = ""             # "": the legacy environment's
    sensitive_var_prefix: str = "TFE_RUNBOOK_VAR_"
    accept_empty_sensitive: bool = False
    vcs_http_url: str = ""                   # which VCS connection links the workspace ("": the only one)
    migrate_teams: bool = True
    existing_team_members: str = "report"
    skip_teams: str = ""                     # comma-separated legacy team names
    migration_path: str = "api"
    mapping_csv: str = ""                    # the environment's facts ("" -> <audit_root>/mapping.csv)
    accept_no_configuration: bool = False    # the legacy host shows no configuration version: no variables to copy

    def check(self, step: str) -> None:
        self._choice(step, "existing_team_members", EXISTING_MEMBER_POLICIES)
        self._choice(step, "migration_path", MIGRATION_PATHS)


@dataclass(frozen=True)
class MigrateStateOptions(StepOptions):
    """Step 3: how the state moves, and the tools of the CLI path."""

    migration_path: str = "api"
    cli_target: str = "atlas"      # the CLI path's backend: atlas (remote/cloud are refused, see the step)
    terraform_bin: str = ""        # the CLI path's Terraform 0.11; "": $TFE_RUNBOOK_TERRAFORM, else the bundled 0.11.11
    git_base_url: str = ""         # clone URL prefix; "": $TFE_RUNBOOK_GIT_BASE
    plugin_dir: str = ""           # `terraform init -plugin-dir`: providers without a download

    def check(self, step: str) -> None:
        if self.migration_path not in MIGRATION_PATHS:
            raise ConfigError(f"migration_path must be 'api' or 'cli' (or 'native', the host's own import), "
                              f"not {self.migration_path!r}.")
        self._choice(step, "cli_target", BACKEND_TARGETS)
        if self.migration_path == "cli" and self.cli_target != "atlas":
            raise ConfigError(f"cli_target {self.cli_target!r} is refused for migration_path 'cli': Terraform 1.x "
                              f"gives a state written into an empty workspace a new lineage; use migration_path = "
                              f"'api' (step 5 then switches the backend to remote or cloud).")


@dataclass(frozen=True)
class DisableLegacyVcsOptions(StepOptions):
    """Step 4: the operator unlinks in the legacy UI; the mapping says which link that removes."""

    mapping_csv: str = ""          # the mapping with the environment's facts ("" -> <audit_root>/mapping.csv)


@dataclass(frozen=True)
class CommitAndVerifyOptions(StepOptions):
    """Step 5: the backend change, where it is committed, and the wait for the workspace's run."""

    backend_target: str = "atlas"
    commit_branch: str = ""                  # "": the branch the workspace tracks
    wait_timeout: int = 900                  # seconds
    git_base_url: str = ""
    tfe_hostname: str = ""                   # "": the host of TFE_ADDRESS
    poll_interval: float = 1.0
    poll_max_interval: float = 15.0

    def check(self, step: str) -> None:
        if self.backend_target not in BACKEND_TARGETS:
            raise ConfigError(f"backend_target must be one of {', '.join(BACKEND_TARGETS)}, "
                              f"not {self.backend_target!r}.")
        for name in ("wait_timeout", "poll_interval", "poll_max_interval"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {getattr(self, name)!r}.")


@dataclass(frozen=True)
class DeleteLegacyEnvironmentOptions(StepOptions):
    """Step 6: what it deletes is named by the mapping row and confirmed by the operator, who deletes it in the
    legacy UI after the step's final backup."""

    accept_no_final_backup: bool = False   # the environment went before step 6 could back it up: step 3's is the last
    wait_for_deletion: int = 0             # seconds a confirmed step waits for the deletion to show (0: none)

    def check(self, step: str) -> None:
        if self.wait_for_deletion < 0:
            raise ConfigError(f"wait_for_deletion must be 0 or more seconds, not {self.wait_for_deletion!r}.")


#: Each step's options; a step not listed (a test's own notebook) takes none.
OPTIONS: dict[str, type[StepOptions]] = {
    PREFLIGHT: PreflightOptions,
    CREATE_ORGANIZATION: CreateOrganizationOptions,
    CREATE_WORKSPACES: CreateWorkspacesOptions,
    MIGRATE_STATE: MigrateStateOptions,
    DISABLE_LEGACY_VCS: DisableLegacyVcsOptions,
    COMMIT_AND_VERIFY: CommitAndVerifyOptions,
    DELETE_LEGACY_ENVIRONMENT: DeleteLegacyEnvironmentOptions,
}


def options_of(step: str) -> type[StepOptions]:
    """The options class of `step` (StepOptions, no options, for a step outside the runbook)."""
    return OPTIONS.get(step, StepOptions)


def step_parameters(step: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`parameters` (a batch's, shared by every step) without the options of other steps that `step` does not
    take. Everything else is kept: the context's own parameters, and a name no step knows, which
    `StepContext.create` then refuses."""
    others = {name for kind in OPTIONS.values() for name in kind.names()} - set(options_of(step).names())
    return {k: v for k, v in parameters.items() if k not in others}
