"""What a runbook step works with: one environment's mapping row, settings, clients, ledger, audit dir.

A notebook builds it from its parameters (`StepContext.create(step=..., **parameters)`), passes it to
the step's `plan`, `apply` and `verify`, and ends with `ctx.conclude(result)`, which prints the PASS or
FAIL line, records the outcome in the ledger, and raises on FAIL so a batch sees the failure.

The step's own parameters become `ctx.options`, the step's frozen dataclass from `runbook_lib.catalog`
(`ctx.options.wait_timeout`): `create` refuses an option the step does not declare, naming it and the
step's options, and converts text to the declared type, before anything is written.

In plan mode the clients are read-only: any write raises before a request is sent.

In a batch (``interactive=False``), reads are reused within a step (see `runbook_lib.http.ReadMemo`):
what the plan looked up (the environment, the workspace, its state version, variables) serves the
apply and the verify for up to `READ_REUSE_SECONDS`, until the step writes anything (every write
forgets them all) or changes something outside the clients (terraform, a git push: the step calls
`forget_reads`). Checks that must see the present (the legacy state just before it is uploaded, the
environment before it is deleted) read it again regardless. In JupyterLab every cell reads afresh: the
operator may have changed something by hand between two cells.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runbook_lib import gates
from runbook_lib.audit import env_dirname
from runbook_lib.catalog import ALL_ENVIRONMENTS, GATED_ACTIONS, StepOptions, options_of
from runbook_lib.errors import ConfigError, MappingError, StepError
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow, facts_for, workspace_name_for, workspace_name_problem
from runbook_lib.results import StepResult, plan_verdict  # StepResult re-exported: notebooks import it from here
from runbook_lib.settings import Settings

MODES = ("plan", "apply")
#: The ledger status of a step that needs the operator's hand (`StepResult.waits_for_operator`).
WAITING = "waiting"
#: The mapping file in a batch (or `audit_root`) folder: the survey writes it, a batch copies its mapping there.
MAPPING_FILE = "mapping.csv"
#: How long a step may act on what it read instead of reading it again (a plan reviewed for longer is
#: read again by the apply). Writes and outside changes end the reuse at once.
READ_REUSE_SECONDS = 60.0


@dataclass
class StepContext:
    """Everything a step needs for one environment.

    Attributes:
        step: the step's name, e.g. "03_migrate_state".
        row: the mapping row (legacy environment -> workspace).
        mode: "plan" (reads only) or "apply".
        settings: hosts, token variable names, CA bundle.
        audit_dir: this environment's folder of the audit trail.
        ledger: where outcomes are recorded.
        options: the step's options (`catalog.options_of(step)`: migration path, backend target, timeouts, ...).
        mapping_path: the mapping file the row's facts come from (`row` holds what its line says: repository,
            working directory, the variables and teams the legacy API does not show; `?` where unknown).
        confirm: the confirmation text for gated actions ("" when none).
        interactive: True in JupyterLab (gates show a button), False in a batch.
        operator: who runs the step.
    """

    step: str
    row: MappingRow
    mode: str
    settings: Settings
    audit_dir: Path
    ledger: Ledger
    options: StepOptions = field(default_factory=StepOptions)
    mapping_path: Path | None = None
    confirm: str = ""
    interactive: bool = True
    operator: str = field(default_factory=getpass.getuser)
    _row_id: int | None = None
    started_row_id: int | None = None  # the ledger row `create` opened (gates' decisions after it are this run's)

    @classmethod
    def create(cls, *, step: str, legacy_org: str, legacy_env: str, new_org: str, workspace: str = "",
               mode: str = "plan", audit_root: str = "runs/interactive", ledger_path: str = "",
               batch_id: str = "interactive", legacy_token_var: str = "ATLAS_TOKEN", tfe_token_var: str = "TFE_TOKEN",
               legacy_address: str = "", tfe_address: str = "", ca_bundle: str = "", confirm: str = "",
               interactive: bool = True, operator: str = "", **options: Any) -> "StepContext":
        """Build a context from notebook parameters and record that the step started.

        Args:
            step: the step's name.
            legacy_org, legacy_env: the legacy environment ("" for a step that surveys the whole
                organization, step 0: the row's environment and workspace are then `catalog.ALL_ENVIRONMENTS`).
            new_org: the new organization.
            workspace: the workspace name ("" applies the mapping rule to `legacy_env`).
            mode: "plan" or "apply".
            audit_root: the batch folder (`runs/<batch>`); this environment's files go below it.
            ledger_path: the ledger ("" -> `<audit_root>/ledger.sqlite`).
            legacy_token_var, tfe_token_var: NAMES of the variables holding the tokens.
            legacy_address, tfe_address, ca_bundle: override ATLAS_ADDRESS, TFE_ADDRESS, REQUESTS_CA_BUNDLE.
            confirm, interactive, operator: see the class.
            options: the step's own parameters (its `catalog.options_of(step)` fields).

        Raises:
            ConfigError: bad mode, missing names, a workspace name the new API refuses, an option the step
                does not know or a value it refuses (nothing is written then, not even a ledger row).
        """
        # In a notebook, a refusal of the parameters themselves is shown as the one red sentence too (nothing has
        # started, so nothing is recorded); the setup cell's `view.attach(ctx)` then takes over with the ledger.
        from runbook_lib.display import attach

        attach(None)
        if mode not in MODES:
            raise ConfigError(f"mode must be 'plan' or 'apply', not {mode!r}.")
        kind = options_of(step)
        step_options = kind.build(step, options)
        whole_organization = kind.ORGANIZATION_WIDE and not legacy_env and bool(legacy_org and new_org)
        if not (legacy_org and (legacy_env or whole_organization) and new_org):
            raise ConfigError("set the parameters legacy_org, legacy_env and new_org (the environment to migrate "
                              "and the new organization).")
        if whole_organization:
            workspace = legacy_env = ALL_ENVIRONMENTS
        workspace = workspace or workspace_name_for(legacy_env)
        problem = None if whole_organization else workspace_name_problem(workspace)
        if problem:
            raise ConfigError(f"{problem}; set the workspace parameter (or the mapping CSV) to a valid name.")
        settings = Settings.from_env(legacy_token_var=legacy_token_var, tfe_token_var=tfe_token_var,
                                     legacy_address=legacy_address, tfe_address=tfe_address, ca_bundle=ca_bundle)
        row = MappingRow(legacy_org, legacy_env, new_org, workspace)
        root = Path(audit_root)
        mapping_path = Path(getattr(step_options, "mapping_csv", "") or root / MAPPING_FILE)
        if not whole_organization:
            try:
                row = facts_for(row, mapping_path)
            except MappingError as exc:
                raise ConfigError(str(exc)) from None
        # A survey of the whole organization writes into the batch folder, not an environment's.
        audit_dir = root if whole_organization else root / env_dirname(row.legacy_slug)
        audit_dir.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(ledger_path or root / "ledger.sqlite", batch_id=batch_id)
        ctx = cls(step=step, row=row, mode=mode, settings=settings, audit_dir=audit_dir, ledger=ledger,
                  options=step_options, mapping_path=mapping_path, confirm=confirm or "", interactive=bool(interactive),
                  operator=operator or getpass.getuser())
        ctx._row_id = ctx.started_row_id = ledger.start(row.legacy_slug, step, mode)
        print(f"{step} for {row.legacy_slug} -> {row.workspace_slug} in {mode} mode"
              f"{' (reads only: nothing will be changed)' if mode == 'plan' else ''}")
        return ctx

    @property
    def whole_organization(self) -> bool:
        """Whether this context is a survey of the whole legacy organization (step 0 without `legacy_env`)."""
        return self.row.legacy_env == ALL_ENVIRONMENTS

    @property
    def applying(self) -> bool:
        return self.mode == "apply"

    @cached_property
    def legacy(self):
        """The legacy API client (read-only in plan mode)."""
        from runbook_lib.legacy import LegacyClient

        return self._with_memo(LegacyClient(self.settings, read_only=not self.applying))

    @cached_property
    def tfe(self):
        """The new TFE API client (read-only in plan mode)."""
        from runbook_lib.tfe import TfeClient

        return self._with_memo(TfeClient(self.settings, read_only=not self.applying))

    def _with_memo(self, client: Any) -> Any:
        """Give a batch's client a read memo (cells run back to back, nobody acts in between)."""
        from runbook_lib.http import ReadMemo

        if not self.interactive:
            client.session.memo = ReadMemo(READ_REUSE_SECONDS)
        return client

    def forget_reads(self, *which: str) -> None:
        """Read again from here on: something changed outside the clients (terraform ran, a push).

        Args:
            which: the hosts concerned, "legacy" and/or "tfe" (none given: both).
        """
        for name in which or ("legacy", "tfe"):
            client = self.__dict__.get(name)  # only clients already made (cached_property stores them here)
            if client is not None and client.session.memo is not None:
                client.session.memo.clear()

    def legacy_page(self, page: str = "settings") -> str:
        """The URL of this environment's page in the legacy UI (`runbook_lib.legacy.ui_url`)."""
        from runbook_lib.legacy import ui_url

        return ui_url(self.settings.address("legacy"), self.row.legacy_org, self.row.legacy_env, page)

    def facts_missing(self, *columns: str) -> str | None:
        """One sentence when the mapping does not say some of these facts (`?`), else None.

        Args:
            columns: fact columns of the mapping (`mapping.FACT_COLUMNS`; none given: all).
        """
        unknown = self.row.unknown(*columns)
        if not unknown:
            return None
        where = self.mapping_path if self.mapping_path is not None and self.mapping_path.is_file() else None
        source = (f"the mapping {where} does not say" if where else
                  f"there is no mapping with {self.row.legacy_slug} at {self.mapping_path} (write it with notebook 00, "
                  f"or set mapping_csv), so nothing says")
        return (f"{source} {', '.join(unknown)} for {self.row.legacy_slug} ('?'): the legacy API does not show "
                f"{'them' if len(unknown) > 1 else 'it'}; read {'them' if len(unknown) > 1 else 'it'} off the "
                f"environment's pages in the legacy UI ({self.legacy_page('variables')}, .../settings, "
                f".../integrations) and write {'them' if len(unknown) > 1 else 'it'} into the mapping")

    @property
    def state_dir(self) -> Path:
        """Where legacy state backups go (mode 0700 folder, 0600 files)."""
        path = self.audit_dir / "state"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        return path

    def apply(self, action: Any, *, otherwise: str = "plan mode: nothing was changed") -> Any:
        """A notebook's apply cell: `action(self)` in apply mode; in plan mode nothing runs and the note
        `otherwise` says so. A line of text the action returns is shown as a note too.
        """
        from runbook_lib.display import note

        if not self.applying:
            return note(otherwise)
        done = action(self)
        return note(done) if isinstance(done, str) else done

    def gate(self, action: str, plan: Any, apply: Any, verify: Any, ask: Any = None) -> Any:
        """A notebook's gated apply cell, in one call (see `runbook_lib.gates`).

        In plan mode nothing is gated and nothing runs (a note says so). In apply mode `apply(self)` runs
        once the operator confirmed `action` on this environment: by the `confirm` parameter (at once), or
        interactively by the button this returns, whose click also runs `verify` and the verdict, so the
        step finishes by itself; until then `verdict` and `conclude` show WAITING. For an action the
        operator does by hand in the legacy UI, `ask(self)` says where; a batch without the confirmation
        then waits for the operator (`gates.AwaitingOperator`, recorded as WAITING by `conclude`).

        Args:
            action: the gated action, the step's own (`catalog.GATED_ACTIONS`: "unlink" for step 4).
            plan: the step's plan table, shown beside the button.
            apply, verify: the step's functions.
            ask: the step's instructions for the operator (e.g. `legacy_vcs.ask`).

        Returns:
            What `apply` returned, the PendingGate (the button), AwaitingOperator, or the plan-mode note.

        Raises:
            ConfigError: `action` is not the one this step is gated by.
            GateError: the confirmation names another action or environment (nothing ran).
        """
        expected = GATED_ACTIONS.get(self.step)
        if expected is not None and action != expected:
            raise ConfigError(f"step {self.step} is gated by {expected!r}, not {action!r}.")
        if not self.applying:
            from runbook_lib.display import note

            return note("plan mode: nothing gated, nothing changed")
        return gates.step_gate(self, action, plan, apply, verify, ask)

    def verdict(self, plan: Any, verify: Any, applied: Any = None) -> Any:
        """The step's result: `verify(self)` after an apply; in plan mode, whether apply would refuse anything.

        After a gate (`applied` is what `gate` returned): WAITING while its button waits (a `gates.Waiting`,
        neither passed nor failed), the click's own verdict once it was clicked, and in a batch a result that
        waits for the operator (`StepResult.waits_for_operator`) when the confirmation is not there yet.
        """
        if isinstance(applied, gates.AwaitingOperator):
            return StepResult(False, applied.summary, {"waiting_for": gates.phrase(applied.action, applied.target)},
                              waits_for_operator=True)
        if isinstance(applied, gates.PendingGate):
            if not applied.confirmed:
                return gates.Waiting(applied)
            if applied.result is not None:
                return applied.result
        if self.applying:
            return verify(self)

        return plan_verdict(plan)

    def conclude(self, result: Any) -> Any:
        """Print the PASS/FAIL line, record it in the ledger, and raise StepError on FAIL.

        Each call records one outcome: the first finishes the row `create` started; a later call (the
        verdict cell run again, e.g. after the operator clicked a gate's button) records a new row, so
        the ledger's latest row for the step is the latest verdict. A gate's WAITING is shown, not
        recorded (the row stays open), and a verdict the gate's click already recorded is shown again.

        Returns:
            The result (for display) when it passed, or the WAITING status.

        Raises:
            StepError: the step failed; the ledger already holds the failure.
        """
        if isinstance(result, gates.Waiting) or getattr(result, "concluded_by_gate", False):
            return result
        # A verdict cell run again (after a gate's button was clicked) is a new outcome: record it too.
        row_id = self._row_id if self._row_id is not None else self.ledger.start(self.row.legacy_slug, self.step,
                                                                                    self.mode)
        self._row_id = None
        return record_verdict(self.ledger, row_id, self.step, self.row.legacy_slug, self.mode, result)


def record_verdict(ledger: Ledger, row_id: int, step: str, label: str, mode: str, result: StepResult) -> StepResult:
    """Finish a step's ledger row with its verdict, print the PASS/FAIL (or WAITING) line, raise StepError on FAIL.

    Returns:
        The result when it passed, or when it waits for the operator (status `waiting`: not a failure, and
        nothing after it runs until the operator has acted and the step runs again).

    Raises:
        StepError: the step failed; the ledger already holds the failure.
    """
    if result.waits_for_operator:
        ledger.finish(row_id, WAITING, evidence=result.evidence, error=result.summary)
        print(f"WAITING: {step} {label} ({mode}): {result.summary}")
        return result
    ledger.finish(row_id, "passed" if result.passed else "failed", evidence=result.evidence,
                  error=None if result.passed else result.summary)
    print(result.line(f"{step} {label} ({mode})"))  # in its mode's words: PASS, FAIL, PLAN OK, ...
    if not result.passed:
        raise StepError(f"{step} failed for {label}: {result.summary}")
    return result
