"""Step 0: the preflight inventory, for one environment (in a batch) or the whole legacy organization.

With `legacy_env` set it checks that this environment is ready to migrate (tokens, hosts, TLS, its
state, locks, runs, the target workspace) and passes only if it is. With `legacy_env` empty it
surveys the whole legacy organization, proposes the mapping by the naming rule, writes it as an
editable CSV, and passes when the hosts answered (not-ready environments are listed with reasons).
It reads only, in either mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runbook_lib import catalog, inventory, mapping, teams
from runbook_lib.context import StepContext, StepResult, record_verdict
from runbook_lib.errors import ConfigError
from runbook_lib.evidence import StateReaders, split_slugs
from runbook_lib.ledger import Ledger
from runbook_lib.legacy import LegacyClient
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient

STEP = catalog.PREFLIGHT


@dataclass
class PreflightReport:
    """The three inventory tables and the verdict."""

    checks: pd.DataFrame
    environments: pd.DataFrame
    mapping: pd.DataFrame
    result: StepResult
    mapping_csv: str | None = None
    _ctx: Any = field(default=None, repr=False)
    _ledger: Any = field(default=None, repr=False)
    _row_id: int | None = None
    _label: str = ""
    _mode: str = "plan"

    def conclude(self) -> StepResult:
        """Print PASS/FAIL, record it, raise StepError on FAIL (as every step's last cell does)."""
        if self._ctx is not None:
            return self._ctx.conclude(self.result)
        return record_verdict(self._ledger, self._row_id, STEP, self._label, self._mode, self.result)


def survey(*, legacy_org: str, legacy_env: str = "", new_org: str, workspace: str = "", mode: str = "plan",
           audit_root: str = "runs/interactive", ledger_path: str = "", batch_id: str = "interactive",
           legacy_token_var: str = "ATLAS_TOKEN", tfe_token_var: str = "TFE_TOKEN", ca_bundle: str = "",
           mapping_csv: str = "", interactive: bool = True, **_ignored: Any) -> PreflightReport:
    """Run the preflight for one environment, or for the whole organization when `legacy_env` is "".

    Args:
        legacy_org, legacy_env, new_org, workspace: what to check ("" legacy_env: every environment).
        mode: ignored beyond being recorded: the preflight only reads.
        audit_root, ledger_path, batch_id: where the outcome is recorded.
        legacy_token_var, tfe_token_var, ca_bundle: settings (token variable NAMES).
        mapping_csv: where the organization-wide survey writes the proposed mapping
            (default `<audit_root>/mapping.csv`).
        interactive: False in a batch (the survey's reads are then reused within it, see `StepContext`).

    Returns:
        The report; call `.conclude()` last.
    """
    if not legacy_org or not new_org:
        raise ConfigError("set the parameters legacy_org and new_org.")
    if legacy_env:
        ctx = StepContext.create(step=STEP, legacy_org=legacy_org, legacy_env=legacy_env, new_org=new_org,
                                 workspace=workspace, mode=mode, audit_root=audit_root, ledger_path=ledger_path,
                                 batch_id=batch_id, legacy_token_var=legacy_token_var, tfe_token_var=tfe_token_var,
                                 ca_bundle=ca_bundle, interactive=interactive)
        settings, legacy, tfe = ctx.settings, ctx.legacy, ctx.tfe
        rows = [ctx.row]
    else:
        ctx = None
        settings = Settings.from_env(legacy_token_var=legacy_token_var, tfe_token_var=tfe_token_var,
                                     ca_bundle=ca_bundle)
        legacy, tfe = LegacyClient(settings, read_only=True), TfeClient(settings, read_only=True)
        rows = []
    root = Path(audit_root)
    ledger = None if ctx else Ledger(ledger_path or root / "ledger.sqlite", batch_id=batch_id)
    label = f"{legacy_org}/{legacy_env or '*'}"
    row_id = None if ctx else ledger.start(label, STEP, mode)

    checks = inventory.preflight_checks(settings, legacy_org, legacy=legacy, tfe=tfe, legacy_env=legacy_env,
                                        workspace=(ctx.row.new_org, ctx.row.workspace) if ctx else None)
    failed_checks = checks[~checks["ok"]]
    # Plain HTTP is acceptable only for a local rehearsal; it is shown, and fails only the TLS rows.
    blocking = failed_checks[~failed_checks["check"].str.endswith("TLS")
                             | ~failed_checks["detail"].str.contains("plain HTTP")]
    environments = pd.DataFrame(columns=inventory.ENVIRONMENT_COLUMNS)
    table = pd.DataFrame()
    csv_path = None
    if blocking.empty:
        environments = inventory.legacy_environments(legacy, legacy_org, [legacy_env] if legacy_env else None)
        if not legacy_env:
            names = [e.split("/", 1)[1] for e in environments["environment"]]
            rows = mapping.propose(legacy_org, names, new_org)
            csv_path = mapping_csv or str(root / "mapping.csv")
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            mapping.write_csv(rows, csv_path)
        table = inventory.mapping_frame(rows, environments, tfe)
    if not blocking.empty:
        result = StepResult(False, "preflight checks failed: " + "; ".join(blocking["detail"]),
                            {"checks_failed": list(blocking["check"])})
    elif legacy_env:
        verdict = table.iloc[0]
        env_row = environments.iloc[0].to_dict()
        evidence = {"state_serial": _plain(env_row["state_serial"]), "lineage": env_row["lineage"],
                    "resources": _plain(env_row["resources"]), "vcs_repo": env_row["vcs_repo"],
                    "workspace": verdict["workspace"], "ready": bool(verdict["ready"]),
                    **StateReaders(split_slugs(env_row["reads_state_of"])).to_evidence(),
                    "teams": teams.parse_described(env_row.get("teams")), "team_mapping": verdict["teams"]}
        result = StepResult(bool(verdict["ready"]), verdict["reason"], evidence)
    else:
        ready = int(table["ready"].sum())
        not_ready = [f"{r['environment']} ({r['reason']})" for r in table.to_dict("records") if not r["ready"]]
        result = StepResult(True, f"{len(table)} environments, {ready} ready; mapping written to {csv_path}"
                            + (f"; not ready: {'; '.join(not_ready)}" if not_ready else ""),
                            {"environments": len(table), "ready": ready, "mapping_csv": csv_path,
                             "not_ready": not_ready})
    return PreflightReport(checks, environments, table, result, csv_path, ctx, ledger, row_id, label, mode)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python (for JSON evidence)."""
    return value.item() if hasattr(value, "item") else value



