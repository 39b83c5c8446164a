"""Notebooks against the seeded sandbox: all of them under nbval with their defaults (plan mode: no write);
00-03 as papermill batches in apply mode (04-06: test_runbook_04_06.py).

The seeded sandbox is shared by the session, so each batch migrates into an organization of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import nbformat
import pytest

from runbook_lib.batch import STEPS, BatchRunner
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import propose, write_csv
from runbook_lib.rehearsal import operator_rows
from runbook_lib.settings import Settings
from runbook_lib.state import TerraformState
from runbook_lib.tfe import TfeClient

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def test_nbval_default_parameters_change_nothing(notebooks_copy, rehearsal, seeded_sandbox):
    # The operator's part of the mapping (what the legacy UI shows), written where the notebooks read it; the
    # survey of notebook 00 merges what the host shows into it and keeps these facts.
    mapping_csv = notebooks_copy / "runs" / "interactive" / "mapping.csv"
    mapping_csv.parent.mkdir(parents=True)
    write_csv(operator_rows(seeded_sandbox, propose("acme-legacy", ["network-prod"], "acme")), mapping_csv)
    mark = seeded_sandbox.log_mark()
    paths = [str(notebooks_copy / f"{step}.ipynb") for step in STEPS]  # every notebook, 00-06
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", *paths], cwd=notebooks_copy, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
    writes = [r for r in seeded_sandbox.request_log(since=mark) if r["method"] in WRITES or r["changes"]]
    assert writes == [], "plan mode must not write"


def _batch(tmp_path, rehearsal, envs, org, batch_id, sandbox, **params):
    rows = operator_rows(sandbox, propose("acme-legacy", envs, org))
    return BatchRunner(rows, STEPS[:4], mode="apply", out=tmp_path / "runs", batch_id=batch_id, jobs=2,
                       parameters={**rehearsal, **params}).run()


def _tfe() -> TfeClient:
    return TfeClient(Settings.from_env(), read_only=True)


def test_a_1x_workspace_for_a_011_state_is_refused_before_anything_is_created(tmp_path, rehearsal, seeded_sandbox):
    # Terraform 0.14+ refuse a state written before 0.13 at init (the sandbox runs real terraform on the
    # stored bytes, as TFE does): step 2 says so in the batch, and no workspace is created.
    org = f"mig-{uuid.uuid4().hex[:8]}"
    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ["app-prod"], org))
    result = BatchRunner(rows, STEPS[:3], mode="apply", out=tmp_path / "runs", batch_id="tf1", jobs=1,
                         parameters={**rehearsal, "terraform_version": "1.15.5"}).run()
    assert result.matrix() == {"acme-legacy/app-prod": {STEPS[0]: "passed", STEPS[1]: "passed", STEPS[2]: "failed"}}
    [failed] = [o for o in result.outcomes if o.status == "failed"]
    assert "Terraform 1.15.5 cannot read this state" in failed.error and "0.13 upgrade" in failed.error
    assert list(_tfe().list_workspaces(org)) == []


@pytest.mark.parametrize("path, envs, version", [
    ("api", ["network-prod", "web.prod"], ""),          # Terraform 0.11 workspaces, state uploaded by API
    ("cli", ["dns-prod", "monitoring-prod"], ""),       # the guide's own 3.a-3.e with Terraform 0.11.11
])
def test_apply_batch_then_rerun_changes_nothing(tmp_path, rehearsal, seeded_sandbox, path, envs, version):
    org = f"mig-{uuid.uuid4().hex[:8]}"
    result = _batch(tmp_path, rehearsal, envs, org, "first", seeded_sandbox, migration_path=path, terraform_version=version,
                    accept_empty_sensitive=True)
    assert result.ok, result.frame().to_string()

    tfe = _tfe()
    ledger = Ledger(tmp_path / "runs" / "first" / "ledger.sqlite")
    for env in envs:
        ws = tfe.get_workspace(org, env.replace(".", "-"))
        assert ws.get("locked") is True
        assert ws.get("terraform-version") == (version or "0.11.11")
        evidence = ledger.passed(f"acme-legacy/{env}", "03_migrate_state").evidence
        assert evidence["lineage"] == TerraformState.from_bytes(tfe.download_state(tfe.current_state_version(ws.id))).lineage
        assert evidence["identical_bytes"] is (path == "api")
        backup = tmp_path / "runs" / "first" / f"acme-legacy__{env}" / "state"
        files = list(backup.glob("*.tfstate"))
        assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"

    # The same command again: every step is skipped, nothing is sent.
    mark = seeded_sandbox.log_mark()
    again = _batch(tmp_path, rehearsal, envs, org, "first", seeded_sandbox, migration_path=path, terraform_version=version,
                   accept_empty_sensitive=True)
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert seeded_sandbox.request_log(since=mark) == []

    # A new batch runs every notebook again: each step adopts what exists and writes nothing.
    mark = seeded_sandbox.log_mark()
    rerun = _batch(tmp_path, rehearsal, envs, org, "second", seeded_sandbox, migration_path=path, terraform_version=version,
                   accept_empty_sensitive=True)
    assert rerun.ok, rerun.frame().to_string()
    writes = [f"{r['method']} {r['path']}" for r in seeded_sandbox.request_log(since=mark)
              if r["method"] in WRITES or r["changes"]]
    assert writes == []
    executed = nbformat.read(tmp_path / "runs" / "second" / f"acme-legacy__{envs[0]}" / "03_migrate_state.ipynb", 4)
    assert "adopt" in json.dumps(executed.cells[-1].outputs) or any(
        "adopt" in json.dumps(c.get("outputs", [])) for c in executed.cells)
