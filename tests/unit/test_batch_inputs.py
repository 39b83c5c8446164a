"""A batch's inputs refused before anything runs, its locks at estate scale, its exit status and its status page.

- option values (`--param migration_path=clii`) are checked against each step's declared choices;
- a confirm-file line that names no row of the mapping is one sentence;
- a semicolon-separated mapping is named as such;
- environment locks: keyed on the normalized legacy address, two spellings of one host refused by name, and
  5,000 environments under ``ulimit -n 1024`` with one descriptor;
- the schedule of 5,000 environments, the exit status with steps waiting for the operator, `status` output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbook_lib import catalog, mapping
from runbook_lib.batch import (STEPS, BatchResult, BatchRunner, StepOutcome, acquire_locks, host_identity,
                               normalized_address)
from runbook_lib.batch.confirmations import check_confirmations, load_confirm_file
from runbook_lib.batch.status import batch_status, render
from runbook_lib.errors import LedgerError, MappingError, RunbookError
from runbook_lib.ledger import Ledger
from runbook_lib.schedule import CUT_OVER, DELETE, MIGRATE, Schedule

ROWS = mapping.propose("acme-legacy", ["web.prod", "dns-prod", "network-prod"], "acme")


@pytest.fixture(autouse=True)
def own_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("TFE_RUNBOOK_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("ATLAS_ADDRESS", "https://legacy.example.com")


@pytest.mark.parametrize("given, words", [
    ({"migration_path": "clii"}, "migration_path must be one of api, cli, native"),
    ({"migration_path": "cli", "cli_target": "cloud"}, "cli_target 'cloud' is refused for migration_path 'cli'"),
    ({"wait_timeout": "0"}, "wait_timeout must be a positive number"),
])
def test_an_option_outside_its_choices_is_refused_before_any_notebook(tmp_path, given, words):
    with pytest.raises(RunbookError) as caught:
        BatchRunner(ROWS, list(STEPS), mode="plan", out=tmp_path, batch_id="b", parameters=given)
    assert str(caught.value).startswith("--param refused before any notebook ran: ") and words in str(caught.value)
    assert not (tmp_path / "b").exists()


def test_options_a_step_accepts_pass(tmp_path):
    runner = BatchRunner(ROWS, list(STEPS), mode="plan", out=tmp_path, batch_id="b",
                         parameters={"migration_path": "native", "wait_timeout": "240"})
    assert runner.parameters == {"migration_path": "native", "wait_timeout": 240}


def test_a_confirm_line_naming_no_row_of_the_mapping_is_one_sentence(tmp_path):
    confirm = tmp_path / "confirm.txt"
    confirm.write_text("# reviewed\ndelete acme-legacy/web.prod\ndelete acme/dns-production\nremove it\n")
    with pytest.raises(RunbookError) as caught:
        BatchRunner(ROWS, list(STEPS), mode="apply", out=tmp_path, batch_id="b", confirm_file=confirm)
    message = str(caught.value)
    assert "line 3 'delete acme/dns-production' names no environment of the mapping" in message
    assert "(did you mean 'delete acme-legacy/dns-prod'?)" in message
    assert "line 4 'remove it' is not '<action> <org>/<env>'" in message
    assert message.count(". ") == 0 and "nothing was run" in message
    assert not (tmp_path / "b").exists()


def test_a_confirm_line_may_name_a_row_left_out_with_env(tmp_path):
    confirm = tmp_path / "confirm.txt"
    confirm.write_text("delete acme-legacy/network-prod\n")
    runner = BatchRunner(ROWS[:1], list(STEPS), mode="apply", out=tmp_path, batch_id="b", confirm_file=confirm,
                         mapping_rows=ROWS)
    assert runner.confirm_lines == ["delete acme-legacy/network-prod"]
    assert runner.confirm.sha256 == load_confirm_file(confirm).sha256


def test_the_help_example_of_the_confirm_file_names_a_real_seed_environment(tmp_path):
    from runbook_lib.cli import build_parser
    from runbook_lib.sandbox import seed

    text = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    example = text.split("like 'delete ", 1)[1].split("'", 1)[0]
    assert example == "acme-legacy/web.prod"
    assert example.split("/")[1] in {spec.name for spec in seed.environment_specs(10)}
    confirm = tmp_path / "confirm.txt"
    confirm.write_text(f"delete {example}\n")
    check_confirmations(load_confirm_file(confirm), mapping.propose("acme-legacy", ["web.prod"], "acme"))


def test_a_semicolon_separated_mapping_is_named_as_such():
    with pytest.raises(MappingError, match="separated by semicolons"):
        mapping.read_csv('"legacy_org";"legacy_env";"new_org";"workspace"\r\nacme-legacy;web;acme;web\r\n')


@pytest.mark.parametrize("spelling, normal", [
    ("https://Atlas.Example.com", "https://atlas.example.com"),
    ("HTTPS://atlas.example.com:443/", "https://atlas.example.com"),
    ("http://atlas.example.com:80", "http://atlas.example.com"),
    ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
    ("https://[::1]:443", "https://[::1]"),
])
def test_the_legacy_address_is_normalized(spelling, normal):
    assert normalized_address(spelling) == normal


def test_one_host_spelled_two_ways_is_one_lock(monkeypatch):
    monkeypatch.setenv("ATLAS_ADDRESS", "https://legacy.example.com")
    held = acquire_locks(["acme-legacy/web"])
    try:
        monkeypatch.setenv("ATLAS_ADDRESS", "HTTPS://Legacy.Example.com:443/")
        with pytest.raises(LedgerError, match="another batch is working on acme-legacy/web .*, whatever its --out"):
            acquire_locks(["acme-legacy/web"])
        acquire_locks(["acme-legacy/db"]).release()  # another environment is free
    finally:
        held.release()
    acquire_locks(["acme-legacy/web"]).release()  # released with its descriptor


def test_localhost_and_its_address_are_refused_naming_the_case(monkeypatch):
    monkeypatch.setenv("ATLAS_ADDRESS", "http://localhost:9443")
    held = acquire_locks(["acme-legacy/web"])
    try:
        monkeypatch.setenv("ATLAS_ADDRESS", "http://127.0.0.1:9443")
        with pytest.raises(LedgerError) as caught:
            acquire_locks(["acme-legacy/web"])
    finally:
        held.release()
    message = str(caught.value)
    assert "another batch is working on acme-legacy/web" in message and "127.0.0.1 port 9443" in message
    assert "like localhost for 127.0.0.1" in message and message.count(". ") == 0
    assert host_identity("http://localhost:9443") == host_identity("http://127.0.0.1:9443/")


FIVE_THOUSAND = """
import os, resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from runbook_lib.batch import acquire_locks
before = len(os.listdir("/proc/self/fd"))
started = time.monotonic()
locks = acquire_locks([f"acme-legacy/env-{i:04d}" for i in range(5000)])
took = time.monotonic() - started
print(before, len(os.listdir("/proc/self/fd")), locks.count, round(took, 3), flush=True)
sys.stdin.readline()  # held until the parent has tried
"""


def test_five_thousand_environments_take_one_descriptor_under_ulimit_1024(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", FIVE_THOUSAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        before, after, count, took = holder.stdout.readline().split()
        assert int(after) - int(before) == 1  # one lock file open, whatever the number of environments
        assert int(count) == 5000  # one byte-range lock per environment
        assert float(took) < 10  # 0.26 s measured
        with pytest.raises(LedgerError, match="acme-legacy/env-4999"):
            acquire_locks(["acme-legacy/other", "acme-legacy/env-4999"])
        acquire_locks(["acme-legacy/other"]).release()
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0, holder.stderr
    acquire_locks(["acme-legacy/env-4999"]).release()  # the holder's end released everything


def test_a_schedule_of_five_thousand_environments_runs_in_seconds():
    envs = [f"o/e{i}" for i in range(5000)]
    plan = Schedule(envs, [MIGRATE, CUT_OVER, DELETE], lambda env: None, caps={MIGRATE: 10, CUT_OVER: 14})
    started, rounds = time.monotonic(), 0
    running: list[tuple[str, int]] = []
    while not plan.done():
        for pair in plan.ready(limit=24 - len(running)):
            plan.start(*pair)
            running.append(pair)
        plan.finish(*running.pop(0))  # the oldest in flight ends
        rounds += 1
    assert rounds == 15000 and time.monotonic() - started < 30  # 1.1 s measured on 2 cores


def test_exit_status_waiting_is_apart_from_failure(tmp_path):
    def result(*statuses: str, interrupted: bool = False) -> BatchResult:
        return BatchResult(tmp_path, [StepOutcome("o/e", f"0{i}_s", status) for i, status in enumerate(statuses)],
                           interrupted=interrupted)

    assert result("passed", "skipped").exit_code == 0
    assert result("passed", "waiting", "blocked").exit_code == 3
    assert result("waiting", "failed").exit_code == 1
    assert result("passed", "blocked", interrupted=True).exit_code == 130
    assert result("passed", "waiting", "blocked").counts() == {"passed": 1, "waiting": 1, "blocked": 1}


def test_status_reads_a_ledger_without_writing_it(tmp_path):
    batch = tmp_path / "runs" / "b"
    ledger = Ledger(batch / "ledger.sqlite", batch_id="b")
    run = ledger.begin_batch_run({"mode": "apply", "steps": list(catalog.STEPS[:6])})
    ledger.record("acme-legacy/web", catalog.PREFLIGHT, "apply", "passed")
    ledger.record("acme-legacy/web", catalog.DISABLE_LEGACY_VCS, "apply", "waiting",
                  evidence={"instruction": "unlink the VCS connection in the legacy UI, then run again"})
    running = ledger.start("acme-legacy/db", catalog.COMMIT_AND_VERIFY, "apply")
    ledger.set_progress("acme-legacy/db", catalog.COMMIT_AND_VERIFY, "[   12 s] run-abc: planning")
    before = (batch / "ledger.sqlite").read_bytes(), (batch / "ledger.sqlite").stat().st_mtime_ns
    text = render(batch_status(batch))
    assert (batch / "ledger.sqlite").read_bytes(), (batch / "ledger.sqlite").stat().st_mtime_ns == before
    assert f"pid {os.getpid()}): running" in text
    assert "running: acme-legacy/db 05_commit_and_verify for 0 s: [   12 s] run-abc: planning" in text
    assert "waiting: acme-legacy/web 04_disable_legacy_vcs: unlink the VCS connection" in text
    assert "steps: 1 passed, 1 running, 1 waiting" in text
    ledger.finish(running, "passed")
    ledger.end_batch_run(run, "completed", {})
    assert ": completed" in render(batch_status(batch)).splitlines()[0]
    with pytest.raises(LedgerError, match="holds no ledger.sqlite"):
        batch_status(tmp_path)


def test_copied_notebooks_keep_edits_unless_forced(tmp_path):
    from runbook_lib.installation import copy_notebooks

    first = copy_notebooks(tmp_path / "work")
    assert len(first.written) == len(catalog.STEPS)
    edited = tmp_path / "work" / f"{catalog.MIGRATE_STATE}.ipynb"
    edited.write_text("{}")
    with pytest.raises(RunbookError, match=f"other versions of {catalog.MIGRATE_STATE}.ipynb.*--force"):
        copy_notebooks(tmp_path / "work")
    assert edited.read_text() == "{}"
    again = copy_notebooks(tmp_path / "work", force=True)
    assert again.written == (f"{catalog.MIGRATE_STATE}.ipynb",) and json.loads(edited.read_text())["cells"]


def test_doctor_names_variables_never_values(tmp_path):
    from runbook_lib.installation import ca_bundle_check, variables_set

    environ = {"TFE_TOKEN": "secret-value-1234567890", "ATLAS_ADDRESS": "https://x", "TFE_RUNBOOK_VAR_db_password": "v"}
    found = variables_set(environ)
    assert found["TFE_TOKEN"] and found["TFE_RUNBOOK_VAR_db_password"] and not found["ATLAS_TOKEN"]
    assert "secret-value" not in repr(found)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    check = ca_bundle_check({"REQUESTS_CA_BUNDLE": str(bundle)})
    assert not check.ok and "holds no PEM certificate" in check.detail
    assert ca_bundle_check({}).ok


def test_doctor_offline_lists_the_installation(capsys, monkeypatch):
    from runbook_lib.cli import main

    monkeypatch.setenv("TFE_TOKEN", "atlasv1-not-shown-anywhere")
    code = main(["doctor", "--offline"])
    out = capsys.readouterr().out
    assert f"{len(catalog.STEPS)} in " in out and "variables set" in out and "TFE_TOKEN" in out
    assert "atlasv1-not-shown" not in out
    assert code in (0, 1)  # 1 only when a terraform generation is missing here
