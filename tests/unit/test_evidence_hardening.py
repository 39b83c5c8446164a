"""Evidence that cannot go stale or leak: private files, a lock that outlives the work, whole writes,
archives of interrupted batches that verify, and verify's own refusals."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import stat
import tarfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from runbook_lib import audit, mapping
from runbook_lib.batch import STEPS, BatchRunner, StepOutcome, acquire_locks
from runbook_lib.cli import main as cli_main
from runbook_lib.errors import AuditError, LedgerError
from runbook_lib.ledger import Ledger

ROWS = mapping.propose("acme-legacy", ["web"], "acme")


@pytest.fixture(autouse=True)
def own_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("TFE_RUNBOOK_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("ATLAS_ADDRESS", "https://legacy.example.com")


class FakeStepRunner(BatchRunner):
    """Runs no notebook: each step writes an 'executed notebook' as papermill would and a ledger row; with a
    gate, each step first waits for it (a step that is running)."""

    gate: threading.Event | None = None

    def _run_step(self, row, step, ledger):
        if self.gate is not None:
            self.entered.set()
            self.gate.wait(20)
        self.ran.append(step)
        target = self.batch_dir / audit.env_dirname(row.legacy_slug) / f"{step}.ipynb"
        target.write_text("{}")  # the process umask decides its mode, as for papermill's write
        ledger.record(row.legacy_slug, step, self.mode, "passed")
        return StepOutcome(row.legacy_slug, step, "passed")


def fake(tmp_path: Path, out: str = "runs", batch_id: str = "b", **kw) -> FakeStepRunner:
    runner = FakeStepRunner(ROWS, STEPS[:2], mode="apply", out=tmp_path / out, batch_id=batch_id, check_hosts=False,
                            **kw)
    runner.entered = threading.Event()
    runner.ran = []
    return runner


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_batch_folder_is_0700_and_every_file_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        result = fake(tmp_path).run()
    finally:
        os.umask(old)
    assert _mode(result.batch_dir) == 0o700
    assert _mode(result.batch_dir / "acme-legacy__web") == 0o700
    files = [p for p in result.batch_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"ledger.sqlite", "manifest.json", "summary.html", "00_preflight_inventory.ipynb"}
    assert {oct(_mode(p)) for p in files} == {oct(0o600)}
    assert os.umask(0o022) == 0o022  # the process umask is given back


def test_ledger_is_created_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        Ledger(tmp_path / "l" / "ledger.sqlite")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "l" / "ledger.sqlite") == 0o600


def test_lock_holds_across_output_folders(tmp_path):
    first = fake(tmp_path, out="runs-a")
    first.gate = threading.Event()
    worker = threading.Thread(target=first.run)
    worker.start()
    try:
        assert first.entered.wait(20)
        with pytest.raises(LedgerError, match="another batch is working on acme-legacy/web .*whatever its --out"):
            fake(tmp_path, out="runs-b").run()
        assert not (tmp_path / "runs-b" / "b").exists()  # refused before anything was written
    finally:
        first.gate.set()
        worker.join(30)
    fake(tmp_path, out="runs-b").run()  # released once the first batch ended


def _held(environment: str) -> bool:
    try:
        acquire_locks([environment]).release()
    except LedgerError:
        return True
    return False


def test_lock_is_released_only_when_the_work_stopped_even_after_a_second_ctrl_c(tmp_path, capsys):
    runner = fake(tmp_path)
    runner.gate = threading.Event()
    lock = "acme-legacy/web"
    seen: list[bool] = []

    def ctrl_c() -> None:  # a real SIGINT to the main thread, as a terminal sends it
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def operator() -> None:
        runner.entered.wait(20)
        time.sleep(0.3)  # the main thread is now waiting for the step
        ctrl_c()
        time.sleep(0.3)
        seen.append(_held(lock))
        ctrl_c()  # the impatient second Ctrl-C
        time.sleep(0.3)
        seen.append(_held(lock))
        runner.gate.set()  # the running step ends

    helper = threading.Thread(target=operator)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    helper.join(30)
    assert seen == [True, True]
    assert not _held(lock)
    assert runner.ran == ["00_preflight_inventory"]  # the step after the interrupted one never started
    assert "waiting for the running steps to end" in capsys.readouterr().err


def test_read_only_output_folder_is_one_sentence_naming_it(tmp_path, monkeypatch):
    real_mkstemp = audit.tempfile.mkstemp

    def read_only(*args, **kwargs):
        if str(tmp_path / "runs") in str(kwargs.get("dir", "")):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(audit.tempfile, "mkstemp", read_only)
    with pytest.raises(AuditError) as caught:
        fake(tmp_path).run()
    message = str(caught.value)
    assert message.startswith(f"cannot write to {tmp_path / 'runs' / 'b'}: it is read-only") and message.count(". ") == 0
    assert not (tmp_path / "runs" / "b" / "ledger.sqlite").exists()


def test_full_disk_leaves_no_half_written_file(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    target.write_text('{"complete": true}')
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "fsync", full)
    with pytest.raises(AuditError, match=f"cannot write to {tmp_path}: the disk is full"):
        audit.atomic_write(target, "x" * 10000)
    monkeypatch.setattr(audit.os, "fsync", real_fsync)
    assert target.read_text() == '{"complete": true}' and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_ledger_in_a_read_only_folder_is_one_sentence(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("runbook_lib.ledger.os.open", read_only)
    with pytest.raises(LedgerError, match=f"cannot write the ledger in {tmp_path}"):
        Ledger(tmp_path / "ledger.sqlite")


# -- archive and verify --------------------------------------------------------------------------------------------

def test_archive_of_an_interrupted_batch_refreshes_the_manifest_and_verifies(tmp_path, capsys):
    result = fake(tmp_path).run()
    batch = result.batch_dir
    # The batch is resumed and killed: a new notebook and a ledger row after the last manifest.
    Ledger(batch / "ledger.sqlite", batch_id="b").record("acme-legacy/web", "02_create_workspaces", "apply", "failed")
    (batch / "acme-legacy__web" / "02_create_workspaces.ipynb").write_text("{}")
    assert audit.stale_reasons(batch)
    assert cli_main(["archive", str(batch)]) == 0
    out = capsys.readouterr().out
    assert "rewritten from the ledger" in out
    manifest = json.loads((batch / "manifest.json").read_text())
    assert manifest["outcomes"]["acme-legacy/web"]["02_create_workspaces"] == "failed"
    assert "02_create_workspaces.ipynb" in manifest["refreshed"]
    archive = tmp_path / "runs" / "b.tar.gz"
    assert audit.verify_archive(archive) == []
    assert cli_main(["verify", str(archive)]) == 0


def test_verify_without_sidecar_fails_unless_told_and_then_says_what_it_skipped(tmp_path, capsys):
    result = audit.archive(fake(tmp_path).run().batch_dir)
    sidecar = result.path.with_name(result.path.name + ".sha256")
    sidecar.unlink()
    assert cli_main(["verify", str(result.path)]) == 1
    assert f"{sidecar} is missing" in capsys.readouterr().err
    assert cli_main(["verify", str(result.path), "--no-sidecar"]) == 0
    assert "NOT checked: the archive's own checksum" in capsys.readouterr().out


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("members, words", [
    ({"manifest.json": b"{}"}, "is not inside the batch's folder"),
    ({"a/manifest.json": b"[1, 2]"}, "is not a manifest"),
    ({"a/manifest.json": b'{"files": {"x": "abc"}}'}, "is not a manifest"),
    ({"a/manifest.json": b'{"files": {}}', "b/x": b"1"}, "2 top folders"),
    ({"a/x": b"1"}, "holds no a/manifest.json"),
])
def test_malformed_archive_is_one_sentence(tmp_path, capsys, members, words):
    archive = _tar(tmp_path / "bad.tar.gz", members)
    assert cli_main(["verify", str(archive), "--no-sidecar"]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("variable, parameters", [
    ("GH_PAT", {"vcs_token_var": "GH_PAT"}),                    # named by a *_token_var parameter
    ("TFE_RUNBOOK_VAR_db_password", {}),                        # a sensitive variable's value
    ("MYPFX_api_key", {"sensitive_var_prefix": "MYPFX_"}),      # under the batch's own prefix
])
def test_archive_scan_knows_every_secret_the_batch_could_see(tmp_path, monkeypatch, variable, parameters):
    secret = "s3cr3t-value-" + variable.lower()
    monkeypatch.setenv(variable, secret)
    batch = tmp_path / "runs" / "b"
    (batch / "acme-legacy__web").mkdir(parents=True)
    (batch / "acme-legacy__web" / "02_create_workspaces.html").write_text(f"<pre>value: {secret}</pre>")
    audit.write_manifest(batch, parameters=parameters, outcomes={}, started_at="", finished_at="")
    with pytest.raises(AuditError, match=r"secrets found in acme-legacy__web/02_create_workspaces.html \(token in use\)"):
        audit.archive(batch)
    assert not (tmp_path / "runs" / "b.tar.gz").exists()
