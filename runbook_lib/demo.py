"""The rehearsal demo: the whole runbook, in apply mode, against a freshly seeded sandbox.

What `make demo` (`tfe-runbook demo`) does, printing each part as it goes:

1. starts a sandbox seeded with a legacy organization (HTTPS with its own test CA), serving the legacy API
   as the host documented it, and the legacy web UI;
2. runs the preflight inventory for the whole organization and writes the mapping CSV: what the host shows
   filled in, `?` where only the operator can know;
3. plays the operator: writes those facts into the mapping (working directories, sensitive and environment
   variable names, teams: what the legacy UI shows), unlocks the locked environment on its settings page,
   waits for the legacy run in progress, and sets the sensitive values in
   `$TFE_RUNBOOK_VAR__<workspace>__<KEY>` (rehearsal values; the legacy host never reveals them);
4. runs notebooks 00-06 for every environment through papermill (`tfe-runbook run`'s engine). Step 4 and
   step 6 stop as WAITING: the operator (the demo) unlinks, then deletes, each environment in the legacy
   UI by the same form posts a browser sends, adds the line to the confirm file, and runs the batch again;
   each step then proves what it can. It prints which teams each workspace got; then HashiCorp's own Python
   SDK (pytfe, when installed) reads every workspace back: unlocked, the legacy lineage and outputs, its
   newest run planned no changes;
5. archives the audit trail (after the secret scan) and verifies the archive's checksums.

It ends with every environment migrated and verified, the legacy estate deleted, and the archive
verified; or it says which environment and step did not pass and where its notebook is.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from runbook_lib import audit, mapping, teams
from runbook_lib.batch import STEPS, BatchResult, BatchRunner, StepOutcome
from runbook_lib.sandbox import Sandbox
from runbook_lib.rehearsal import (NEW_ORG, batch_environ, batch_parameters, clear_blockers, operator_rows,
                                   read_back_with_pytfe, run_with_operator, sensitive_values)
from runbook_lib.steps import preflight


@dataclass
class DemoResult:
    batch: BatchResult
    archive: audit.ArchiveResult | None
    problems: list[audit.VerifyProblem]
    seconds: float
    #: `rehearsal.read_back_with_pytfe` rows (None: pytfe is not installed, so the second opinion was not asked)
    read_back: list[dict] | None = None

    @property
    def ok(self) -> bool:
        agreed = self.read_back is None or all(row["agrees"] for row in self.read_back)
        return self.batch.ok and self.archive is not None and not self.problems and agreed


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run_demo(out: str | Path = "runs", environments: int = 8, jobs: int = 2) -> DemoResult:
    """Run the demo (see the module docstring).

    Args:
        out: folder for the sandbox's data and the batch's audit trail.
        environments: how many legacy environments the sandbox is seeded with (6 or more shows every
            special case: a period in a name, a lock, a run in progress, a remote-state reader, ...).
        jobs: environments migrated in parallel.
    """
    started = time.monotonic()
    out = Path(out).resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    batch_id = f"demo-{stamp}"
    _say(f"1. Starting a rehearsal sandbox seeded with {environments} legacy environments")
    with Sandbox(out / f"sandbox-{stamp}", seed=environments, tls=True) as sandbox:
        os.environ.update(batch_environ(sandbox.env))
        print(f"sandbox at {sandbox.address} (variables in {sandbox.env_file}, mode 0600)")
        org = sandbox.legacy_org

        _say("2. Preflight inventory of the legacy organization")
        report = preflight.survey(legacy_org=org, new_org=NEW_ORG, audit_root=str(out / batch_id / "_survey"),
                                  mapping_csv=str(out / f"{batch_id}-mapping.csv"))
        print(report.checks.to_string(index=False))
        print(report.mapping.to_string(index=False))
        report.conclude()

        _say("3. The operator's part: the facts the legacy API does not show, blockers, sensitive values")
        csv = Path(report.mapping_csv)
        rows = operator_rows(sandbox, mapping.read_csv(csv))
        mapping.write_csv(rows, csv)
        print(f"{csv}: working directories, sensitive and environment variable names and teams written in "
              f"(read off the legacy UI, {sandbox.env['SANDBOX_LEGACY_UI']})")
        for line in clear_blockers(sandbox, rows):
            print(line)
        secrets = sensitive_values(sandbox, rows)
        os.environ.update(secrets)
        print("sensitive variables from " + ", ".join(f"${name}" for name in sorted(secrets)))

        _say(f"4. Running notebooks 00-06 for {len(rows)} environments, {jobs} at a time (apply mode); the operator "
             f"unlinks and deletes in the legacy UI when steps 04 and 06 wait for it")
        confirm_file = out / f"{batch_id}-confirm.txt"
        confirm_file.write_text("# the operator's confirmations: a line once each action is done in the legacy UI\n")

        def progress(outcome: StepOutcome) -> None:
            line = f"{outcome.status.upper():8} {outcome.environment:32} {outcome.step} ({outcome.seconds:.1f}s)"
            if outcome.error and outcome.status != "waiting":
                line += f"\n         {outcome.error}\n         executed notebook: {outcome.notebook}"
            print(line, flush=True)

        def runner(lines: list[str]) -> BatchRunner:
            return BatchRunner(rows, STEPS, mode="apply", out=out, batch_id=batch_id, jobs=jobs,
                               parameters=batch_parameters(sandbox.env), confirm_lines=lines, on_step=progress)

        runs = run_with_operator(sandbox, runner, confirm_file, say=lambda text: _say(f"4b. {text}"))
        result = runs[-1]
        frame = result.frame()
        print(frame.pivot(index="environment", columns="step", values="status").fillna("-").to_string())
        manifest = json.loads((result.batch_dir / audit.MANIFEST).read_text(encoding="utf-8"))
        facts = manifest.get("environments") or {}
        granted = {env: teams.summary_cell(data["evidence"]["teams"]) for env, data in facts.items()
                   if "teams" in (data.get("evidence") or {})}
        print("teams with access to the new workspaces (also in summary.html):\n  "
              + "\n  ".join(f"{env}: {cell}" for env, cell in sorted(granted.items())))
        read_back = None
        if result.ok:
            _say("4c. A second opinion: HashiCorp's Python SDK (pytfe) reads every workspace back")
            try:
                read_back = read_back_with_pytfe(sandbox, result.batch_dir, manifest)
            except ModuleNotFoundError:
                print("pytfe is not installed (pip install '.[test]'): this second opinion was skipped")
            else:
                print(pd.DataFrame(read_back).to_string(index=False))

    _say("5. Archiving the audit trail and verifying it")
    archived, problems = None, []
    if result.ok:
        archived = audit.archive(result.batch_dir)
        problems = audit.verify_archive(archived.path)
        print(f"archive {archived.path} ({archived.files} files; state backups left out: "
              f"{archived.excluded_state_backups}); verify: {'OK' if not problems else problems}")
    seconds = time.monotonic() - started
    print(f"\nsummary: {result.batch_dir / 'summary.html'}\nwall time: {seconds:.0f}s", flush=True)
    return DemoResult(result, archived, problems, seconds, read_back)


def main_exit_code(result: DemoResult) -> int:
    if not result.ok:
        print("demo did not complete: see the failed steps above", file=sys.stderr)
    return 0 if result.ok else 1
