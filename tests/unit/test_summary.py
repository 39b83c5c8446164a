"""summary.html is a view of manifest.json, whose facts come from the ledger and the audit trail."""

from __future__ import annotations

import json
import os

from runbook_lib import audit, summary
from runbook_lib.ledger import Ledger

ENV = "acme-legacy/web"
STEPS = ["03_migrate_state", "05_commit_and_verify", "06_delete_legacy_environment"]
SHA = "a" * 64


def _batch(tmp_path):
    batch = tmp_path / "runs" / "b-1"
    env_dir = batch / audit.env_dirname(ENV)
    (env_dir / "state").mkdir(parents=True)
    state = env_dir / "state" / "backup-serial4-abc.tfstate"
    state.write_bytes(b'{"version": 3, "serial": 4}')
    os.chmod(state, 0o600)
    digest = audit.sha256_file(state)
    (env_dir / "state" / "backup-serial4-abc.json").write_text(json.dumps(
        {"file": "x", "serial": 4, "lineage": "lin-1", "sha256": digest, "taken_at": "20261201T000000Z"}))
    for step in STEPS:
        (env_dir / f"{step}.ipynb").write_text("{}")
        (env_dir / f"{step}.html").write_text("<p>executed</p>")
    ledger = Ledger(batch / "ledger.sqlite", batch_id="b-1")
    evidence = {
        "03_migrate_state": {"workspace_id": "ws-1", "state_version": "sv-1", "lineage": "lin-1", "legacy_serial": 4,
                             "workspace_serial": 4, "legacy_sha256": digest, "workspace_sha256": digest,
                             "identical_bytes": True, "resources": 2},
        "05_commit_and_verify": {"run_id": "run-9", "commit": "c0ffee", "run_commit": "c0ffee", "has_changes": False,
                                 "plan": {"add": 0, "change": 0, "destroy": 0}, "legacy_runs_after_push": []},
        "06_delete_legacy_environment": {"deleted": True, "final_backup": {"sha256": digest, "matches_step3": True},
                                         "confirmation": {"action": "delete", "target": ENV, "operator": "alice",
                                                          "via": "parameter", "decided_at": "2026-12-01T10:00:00+00:00"}},
    }
    ledger.record(ENV, "05_commit_and_verify", "apply", "failed", error="plan shows changes")  # an earlier try
    for step in STEPS:
        row = ledger.record(ENV, step, "apply", "passed", evidence=evidence[step])
        ledger.attach_notebook(row, f"{audit.env_dirname(ENV)}/{step}.ipynb", "0" * 64)
    return batch, ledger, digest


def test_manifest_holds_the_facts_and_the_page_is_their_render(tmp_path):
    batch, ledger, digest = _batch(tmp_path)
    summary.write_batch_evidence(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply",
                                 workspaces={ENV: "acme/web"}, parameters={"mode": "apply"},
                                 outcomes={ENV: {s: "passed" for s in STEPS}}, started_at="2026-12-01T09:00:00+00:00",
                                 finished_at="2026-12-01T10:00:05+00:00")
    manifest = json.loads((batch / "manifest.json").read_text())
    page = (batch / "summary.html").read_text()
    assert page == summary.render(manifest)
    assert manifest["files"]["summary.html"]["sha256"] == audit.sha256_file(batch / "summary.html")
    env = manifest["environments"][ENV]
    assert env["steps"]["05_commit_and_verify"]["status"] == "passed"  # the latest row wins over the failed try
    assert env["steps"]["03_migrate_state"]["html"] == "acme-legacy__web/03_migrate_state.html"
    ev = env["evidence"]
    assert ev["workspace"] == {"name": "acme/web", "id": "ws-1"}
    assert ev["state"]["legacy"] == {"serial": 4, "lineage": "lin-1", "sha256": digest} and ev["state"]["identical"]
    assert ev["verifying_run"]["run_id"] == "run-9" and ev["verifying_run"]["no_changes"] is True
    assert ev["deletion"]["confirmation_text"] == f"delete {ENV}" and ev["deletion"]["confirmed_by"] == "alice"
    assert "vcs_unlink" not in ev and "step 4 has not passed" in page  # a missing fact is said, not invented
    checksums = batch / ev["backups"]["checksums"]
    assert checksums.read_text() == f"{digest}  state/backup-serial4-abc.tfstate\n"
    assert "acme-legacy__web/backups.sha256" in manifest["files"]  # archived with the batch; the state is not
    assert manifest["files"]["acme-legacy__web/state/backup-serial4-abc.tfstate"]["state_backup"] is True
    for text in ("run-9", "c0ffee", "ws-1", digest, "\u201cdelete acme-legacy/web\u201d by alice via parameter",
                 "no changes", "mode <b>apply</b>", "(3605 s)", "<svg"):
        assert text in page, text
    assert 'href="acme-legacy__web/state/' not in page and "href='acme-legacy__web/state/" not in page


def test_a_failed_step_and_a_changed_backup_show_in_red(tmp_path):
    batch, ledger, digest = _batch(tmp_path)
    ledger.record(ENV, "06_delete_legacy_environment", "apply", "refused", error="not confirmed")
    (batch / audit.env_dirname(ENV) / "state" / "backup-serial4-abc.tfstate").write_bytes(b"changed")
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply")
    manifest = {"batch": "b-1", "steps": STEPS, **facts}
    page = summary.render(manifest)
    assert "class='st-refused' title='not confirmed'" in page
    assert "0 of 1 environments passed every step; not complete: acme-legacy/web" in page
    assert "step 6 has not passed in apply mode: not deleted" in page and "differs from its record" in page


def test_a_plan_batch_shows_no_invented_evidence(tmp_path):
    batch = tmp_path / "runs" / "plan"
    batch.mkdir(parents=True)
    ledger = Ledger(batch / "ledger.sqlite")
    for step in STEPS:
        ledger.record(ENV, step, "plan", "passed", evidence={"plan": {"create": 1}})
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="plan")
    evidence = facts["environments"][ENV]["evidence"]
    assert set(evidence) == {"workspace", "backups"}
    page = summary.render({"batch": "plan", **facts})
    assert "A plan batch changes nothing" in page and "step 3 has not passed" in page and "serial ," not in page
