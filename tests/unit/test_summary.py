"""summary.html is a view of manifest.json, whose facts come from the ledger and the audit trail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from hostile_markup import live_markup, shown_text

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
    cell = _cell_of(page, "06 delete legacy environment")
    assert cell.startswith("refused") and "not confirmed" in cell  # the reason in the cell itself, not a tooltip
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
    # Plan words: nothing "passed" in a plan batch
    text = shown_text(page)
    assert "passed every step" not in text and "passed" not in text.replace("has not passed", "")
    assert "Plan batch: nothing was changed and nothing was verified. In 1 of 1 environments every step's plan " \
           "found nothing apply would refuse." in text
    assert _cell_of(page, "03 migrate state").startswith("plan ok")


def test_a_plan_that_would_refuse_is_named_so(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record(ENV, STEPS[0], "plan", "passed", evidence={"would": {"create": 1}})
    ledger.record(ENV, STEPS[1], "plan", "failed", error="apply would refuse: workspace acme/web: holds another "
                                                         "lineage")
    page = summary.render({"batch": "p", **summary.batch_facts(tmp_path, ledger_path=tmp_path / "ledger.sqlite",
                                                               steps=STEPS, mode="plan")})
    assert _cell_of(page, "05 commit and verify").startswith("would refuse")
    assert "holds another lineage" in _cell_of(page, "05 commit and verify")
    assert "not so: acme-legacy/web" in page


def _cell_of(page: str, step: str, row: int = 0) -> str:
    """The text of the matrix cell of `step` (its column header) in the `row`-th environment."""
    matrix = page[page.index("<table class=\"matrix\""):]
    matrix = matrix[:matrix.index("</table>")]
    heads = [shown_text(h).strip() for h in re.findall(r"<th scope=\"col\"[^>]*>(.*?)</th>", matrix)]
    body = matrix[matrix.index("<tbody>"):]
    rows = body.split("<tr>")[1:]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[row], flags=re.S)
    return " ".join(shown_text(cells[heads.index(step) - 1]).split())


def test_when_covers_every_run_of_a_resumed_batch_and_steps_have_absolute_times(tmp_path):
    batch, ledger, digest = _batch(tmp_path)
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply")
    first = min(r.started_at for r in ledger.history())
    last = max(r.finished_at for r in ledger.history())
    assert facts["ledger"] == {"first_started_at": first, "last_finished_at": last, "step_runs": 4}
    # this run of the batch started after the ledger's first step: a resumed batch
    page = summary.render({"batch": "b-1", **facts, "started_at": "2999-01-01T00:00:00+00:00",
                           "finished_at": "2999-01-01T00:00:10+00:00"})
    text = " ".join(shown_text(page).split())
    assert f"steps ran from {first} to {last}" in text and "4 step runs in the ledger" in text
    assert "this run of the batch: 2999-01-01T00:00:00+00:00 to 2999-01-01T00:00:10+00:00 (10 s)" in text
    run = ledger.latest(ENV, STEPS[0], "apply")
    start = run.started_at[11:19]
    assert start in _cell_of(page, "03 migrate state")  # the step's own start (and end) in its cell


def test_who_the_accounts_every_run_and_the_commits_author(tmp_path):
    batch, ledger, digest = _batch(tmp_path)
    row = ledger.record(ENV, "05_commit_and_verify", "apply", "passed", evidence={
        "run_id": "run-9", "commit": "c0ffee", "run_commit": "c0ffee", "has_changes": False,
        "plan": {"add": 0, "change": 0, "destroy": 0}, "commit_author": "Ann Operator <ann@acme.example>"})
    ledger.attach_notebook(row, f"{audit.env_dirname(ENV)}/05_commit_and_verify.ipynb", "0" * 64)
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply")
    page = summary.render({"batch": "b-1", **facts, "who": {"accounts": [
        {"which": "tfe", "address": "https://tfe.example", "token_var": "TFE_TOKEN", "account": "ann",
         "email": "ann@acme.example"},
        {"which": "legacy", "address": "https://atlas.example", "token_var": "ATLAS_TOKEN", "account": "ann"}]},
        "runs": [{"started_at": "T1", "finished_at": "T2", "operator": "ann", "host": "h", "ended": "interrupted"},
                 {"started_at": "T3", "finished_at": "T4", "operator": "bob", "host": "h", "ended": "completed"}]})
    text = " ".join(shown_text(page).split())
    assert "TFE host https://tfe.example: $TFE_TOKEN is user ann (ann@acme.example)" in text
    assert "legacy host https://atlas.example: $ATLAS_TOKEN accepted (the legacy API does not say whose" in text
    assert "T1 to T2 by ann on h: interrupted" in text and "T3 to T4 by bob on h: completed" in text
    assert "of commit c0ffee by Ann Operator <ann@acme.example>" in text  # escaped, shown as text
    assert "<ann@acme.example>" not in page


@pytest.mark.parametrize("span", [0.4, 1.0, 3.0, 7.5, 15.0, 44.0, 61.0, 150.0, 900.0, 4000.0, 20000.0, 200000.0])
def test_the_timeline_axis_never_repeats_a_label(span):
    ticks = summary.axis_ticks(span)
    labels = [label for _, label in ticks]
    assert len(labels) == len(set(labels)) and 2 <= len(labels) <= 9 or span < 1
    assert labels[0] == "0" and all(t <= span for t, _ in ticks)
    steps = {round(b - a, 6) for (a, _), (b, _) in zip(ticks, ticks[1:])}
    assert len(steps) <= 1  # evenly spaced


def test_each_steps_effective_parameters_come_from_its_executed_notebook(tmp_path):
    import nbformat

    batch = tmp_path / "b"
    env_dir = batch / audit.env_dirname(ENV)
    env_dir.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell('legacy_env = "network-prod"\nmigration_path = "api"\n'
                                                'wait_timeout = 900  # seconds\nflag = False\nlimit: int = 3\n'
                                                'computed = "a" + "b"', metadata={"tags": ["parameters"]})]
    notebook.metadata["papermill"] = {"parameters": {"legacy_env": "web", "migration_path": "cli"}}
    nbformat.write(notebook, env_dir / "03_migrate_state.ipynb")
    ledger = Ledger(batch / "ledger.sqlite")
    row = ledger.record(ENV, "03_migrate_state", "apply", "passed")
    ledger.attach_notebook(row, f"{audit.env_dirname(ENV)}/03_migrate_state.ipynb", "0" * 64)
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply")
    assert facts["step_parameters"] == {"03_migrate_state": {
        "computed": {"values": ['"a" + "b"'], "given": False}, "flag": {"values": [False], "given": False},
        "limit": {"values": [3], "given": False}, "migration_path": {"values": ["cli"], "given": True},
        "wait_timeout": {"values": [900], "given": False}}}  # legacy_env: the mapping's, shown elsewhere
    text = " ".join(shown_text(summary.render({"batch": "b", **facts})).split())
    assert "migration_path = 'cli'" in text and "wait_timeout = 900" in text and "flag = False" in text


def test_the_per_environment_parameters_are_the_ones_the_batch_sets():
    from runbook_lib.batch import BATCH_SET_PARAMETERS

    assert set(summary.PER_ENVIRONMENT_PARAMETERS) == set(BATCH_SET_PARAMETERS)


def test_links_to_the_workspace_and_the_run_on_the_tfe_host(tmp_path):
    batch, ledger, digest = _batch(tmp_path)
    five = dict(ledger.latest(ENV, "05_commit_and_verify", "apply").evidence,
                workspace_url="https://tfe.example.com/app/acme/workspaces/web",
                run_url="https://tfe.example.com/app/acme/workspaces/web/runs/run-9")
    ledger.record(ENV, "05_commit_and_verify", "apply", "passed", evidence=five)
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply",
                                workspaces={ENV: "acme/web"})
    page = summary.render({"batch": "b-1", **facts})
    assert '<a href="https://tfe.example.com/app/acme/workspaces/web">acme/web</a>' in page
    assert '<a href="https://tfe.example.com/app/acme/workspaces/web/runs/run-9"><code>run-9</code></a>' in page
    # a link is never taken from evidence that is not an http(s) URL
    facts["environments"][ENV]["evidence"]["verifying_run"]["url"] = "javascript:alert(1)"
    assert "javascript:" not in summary.render({"batch": "b-1", **facts})


def test_no_value_of_the_manifest_becomes_markup(tmp_path):
    payload = "<img src=x onerror=alert(1)>\"><svg onload=alert(2)></style><script>alert(3)</script>"
    batch, ledger, digest = _batch(tmp_path)
    ledger.record(ENV, "03_migrate_state", "apply", "failed", error=payload)
    facts = summary.batch_facts(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply",
                                workspaces={ENV: payload})

    def poison(value):
        if isinstance(value, dict):
            return {k: poison(v) for k, v in value.items()}
        if isinstance(value, list):
            return [poison(v) for v in value]
        return payload if isinstance(value, str) and not value.startswith(("20", "0")) else value

    environments = {payload: poison(data) for data in facts["environments"].values()}
    for data in environments.values():
        data["steps"]["05_commit_and_verify"]["html"] = "javascript:alert(4)"
    manifest = {**poison({k: v for k, v in facts.items() if k != "environments"}), "environments": environments,
                "steps": STEPS, "batch": payload, "operator": payload, "host": payload, "python": payload,
                "runbook": {"version": payload, "git_commit": payload}, "refreshed": payload,
                "step_parameters": {"03_migrate_state": {payload: {"values": [payload], "given": True}}}}
    page = summary.render(manifest)
    assert live_markup(page) == []
    assert "alert(1)" in shown_text(page) and "javascript:" not in page


def test_the_summary_reads_no_step_logic():
    code = "import sys, runbook_lib.summary; print('\\n'.join(m for m in sys.modules if m.startswith('runbook_lib')))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"runbook_lib.teams", "runbook_lib.context", "runbook_lib.audit"}
    assert not {m for m in loaded if m.startswith("runbook_lib.steps")}
