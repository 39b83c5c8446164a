"""Step 0: the preflight inventory, for one environment (in a batch) or the whole legacy organization.

With `legacy_env` set it checks that this environment is ready to migrate (tokens, hosts, TLS, its
state, the facts the mapping must give, the target workspace) and passes only if it is. With `legacy_env`
empty it surveys the whole legacy organization (the documented states list), proposes the mapping by the
naming rule with what the host shows filled in and `?` where only the operator can know, writes it as an
editable CSV, and passes when the hosts answered (not-ready environments are listed with reasons).
It reads only, in either mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runbook_lib import catalog, inventory, mapping
from runbook_lib.context import StepContext, StepResult
from runbook_lib.errors import ConfigError, MappingError
from runbook_lib.evidence import StateReaders, split_slugs

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

    def conclude(self) -> StepResult:
        """Print PASS/FAIL, record it, raise StepError on FAIL (as every step's last cell does)."""
        return self._ctx.conclude(self.result)


def survey(ctx: StepContext | None = None, **parameters: Any) -> PreflightReport:
    """Run the preflight for one environment, or for the whole organization (`ctx.whole_organization`).

    Args:
        ctx: the step's context (`StepContext.create(step=catalog.PREFLIGHT, ...)`, `legacy_env` "" for the
            whole organization); its `mode` is only recorded: the preflight only reads. Its option
            `mapping_csv` is where the organization-wide survey writes the proposed mapping (default
            `<audit_root>/mapping.csv`).
        parameters: without `ctx`, the parameters to create it with (as a notebook's setup cell would;
            `legacy_env` defaults to "", the whole organization).

    Returns:
        The report; call `.conclude()` last.
    """
    if ctx is None:
        ctx = StepContext.create(step=STEP, **{"legacy_env": "", **parameters})
    elif parameters:
        raise ConfigError(f"pass either a context or its parameters to preflight.survey, not both "
                          f"({', '.join(sorted(parameters))}).")
    settings, legacy, tfe = ctx.settings, ctx.legacy, ctx.tfe
    legacy_org, new_org = ctx.row.legacy_org, ctx.row.new_org
    legacy_env = "" if ctx.whole_organization else ctx.row.legacy_env
    rows = [] if ctx.whole_organization else [ctx.row]
    root = ctx.audit_dir if ctx.whole_organization else ctx.audit_dir.parent
    mapping_csv = ctx.options.mapping_csv

    checks = inventory.preflight_checks(settings, legacy_org, legacy=legacy, tfe=tfe, legacy_env=legacy_env,
                                        workspace=None if ctx.whole_organization else (new_org, ctx.row.workspace))
    failed_checks = checks[~checks["ok"]]
    # Plain HTTP is acceptable only for a local rehearsal; it is shown, and fails only the TLS rows.
    blocking = failed_checks[~failed_checks["check"].str.endswith("TLS")
                             | ~failed_checks["detail"].str.contains("plain HTTP")]
    environments = pd.DataFrame(columns=inventory.ENVIRONMENT_COLUMNS)
    table = pd.DataFrame()
    csv_path = None
    if blocking.empty:
        existing: list[mapping.MappingRow] = []
        if not legacy_env:
            csv_path = mapping_csv or str(root / "mapping.csv")
            if Path(csv_path).is_file():
                # The operator's edits (names, facts) stay; only unknown cells take what the host shows.
                try:
                    existing = mapping.read_csv(csv_path)
                except MappingError as exc:
                    raise ConfigError(f"the survey did not overwrite {csv_path}, which has problems: {exc} Fix it, "
                                      f"or move it aside and run the survey again.") from None
            known = {row.legacy_slug: row for row in existing}
            rows = [known.get(f"{legacy_org}/{name}") or mapping.MappingRow(legacy_org, name, new_org,
                                                                            mapping.workspace_name_for(name))
                    for name in legacy.environments_with_state(legacy_org)]
        environments = inventory.legacy_environments(legacy, legacy_org, rows)
        if not legacy_env:
            rows = mapping.merge(existing, inventory.fill_from_host(rows, environments))
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
                    "configuration_version": _plain(env_row["configuration_version"]),
                    "sources": env_row["sources"], "mapping": str(ctx.mapping_path),
                    **StateReaders(split_slugs(env_row["reads_state_of"])).to_evidence(),
                    "teams": [asdict(t) for t in ctx.row.team_list], "team_mapping": verdict["teams"]}
        result = StepResult(bool(verdict["ready"]), verdict["reason"], evidence)
    else:
        ready = int(table["ready"].sum())
        not_ready = [f"{r['environment']} ({r['reason']})" for r in table.to_dict("records") if not r["ready"]]
        result = StepResult(True, f"{len(table)} environments, {ready} ready; mapping written to {csv_path}"
                            + (f"; not ready: {'; '.join(not_ready)}" if not_ready else ""),
                            {"environments": len(table), "ready": ready, "mapping_csv": csv_path,
                             "not_ready": not_ready})
    return PreflightReport(checks, environments, table, result, csv_path, ctx)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python (for JSON evidence)."""
    return value.item() if hasattr(value, "item") else value



