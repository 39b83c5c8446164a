"""Signed archives: `tfe-runbook archive --sign KEY` and `tfe-runbook verify --allowed-signers FILE`.

Keys are generated in the test (ssh-keygen -t ed25519, no passphrase). The forgery the signature exists
to catch: an archive repacked with a recomputed manifest and a recomputed `.sha256` passes every
checksum, and only the signature shows it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from runbook_lib import audit, signing
from runbook_lib.cli import main

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")]


def _key(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, (tmp_path / f"{name}.pub").read_text().strip()


@pytest.fixture()
def archived(tmp_path: Path) -> Path:
    batch = tmp_path / "runs" / "b-1"
    env = batch / audit.env_dirname("acme-legacy/web")
    env.mkdir(parents=True)
    (env / "06_delete_legacy_environment.html").write_text("<p>PASS: acme-legacy/web is gone</p>")
    audit.write_manifest(batch, parameters={"mode": "apply"}, outcomes={}, started_at="s", finished_at="f")
    return audit.archive(batch).path


def _allowed(tmp_path: Path, *entries: tuple[str, str]) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text("".join(f"{who} {public}\n" for who, public in entries))
    return path


def _forge(archive: Path) -> None:
    """Change a file inside, recompute its manifest entry and the archive's .sha256 (checksums all pass)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    page = next(n for n in members if n.endswith(".html"))
    members[page] = b"<p>PASS: nothing to see</p>"
    manifest_name = next(n for n in members if n.endswith("/manifest.json"))
    manifest = json.loads(members[manifest_name])
    manifest["files"][page.split("/", 1)[1]]["sha256"] = hashlib.sha256(members[page]).hexdigest()
    members[manifest_name] = json.dumps(manifest).encode()
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    signing.checksum_file(archive).write_text(f"{audit.sha256_file(archive)}  {archive.name}\n")


def test_signed_archive_verifies_and_a_recomputed_forgery_does_not(tmp_path, archived, capsys):
    key, public = _key(tmp_path, "operator")
    assert main(["archive", str(archived.parent / "b-1"), "--sign", str(key)]) == 0
    assert signing.signature_file(archived).is_file() and "signed:" in capsys.readouterr().out
    allowed = _allowed(tmp_path, ("alice@acme.example", public))
    assert main(["verify", str(archived), "--allowed-signers", str(allowed)]) == 0
    out = capsys.readouterr().out
    assert "signature valid" in out and "alice@acme.example" in out and "every checksum matches" in out

    _forge(archived)
    assert audit.verify_archive(archived) == []  # the checksums alone are fooled
    assert main(["verify", str(archived), "--allowed-signers", str(allowed)]) == 1
    captured = capsys.readouterr()
    assert "does not match" in captured.out and "not signed by a key in" in captured.err


def test_unsigned_archive_is_reported_and_refused_when_a_signature_is_required(tmp_path, archived, capsys):
    assert main(["verify", str(archived)]) == 0
    assert "unsigned" in capsys.readouterr().out
    _key_path, public = _key(tmp_path, "operator")
    assert main(["verify", str(archived), "--allowed-signers", str(_allowed(tmp_path, ("a", public)))]) == 1
    assert "unsigned" in capsys.readouterr().out


def test_signature_by_another_key_or_namespace_is_invalid(tmp_path, archived):
    mallory, _ = _key(tmp_path, "mallory")
    _, alice_public = _key(tmp_path, "alice")
    allowed = _allowed(tmp_path, ("alice", alice_public))
    signing.sign_archive(archived, mallory)
    assert signing.check_signature(archived, allowed).status == "invalid"

    alice, _ = _key(tmp_path, "alice2")
    allowed = _allowed(tmp_path, ("alice", (tmp_path / "alice2.pub").read_text().strip()))
    signature = signing.signature_file(archived)
    signature.unlink()
    subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(alice), "-n", "git", str(signing.checksum_file(archived))],
                   check=True, capture_output=True)
    check = signing.check_signature(archived, allowed)
    assert check.status == "invalid" and "namespace" in check.detail
    assert signing.check_signature(archived, None).status == "unchecked"


def test_sign_refuses_without_checksum_or_key(tmp_path, archived):
    from runbook_lib.errors import AuditError

    with pytest.raises(AuditError, match="no SSH key"):
        signing.sign_archive(archived, tmp_path / "nope")
    signing.checksum_file(archived).unlink()
    key, _ = _key(tmp_path, "k")
    with pytest.raises(AuditError, match="sha256 is missing"):
        signing.sign_archive(archived, key)
