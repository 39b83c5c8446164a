"""The audit trail: layout, manifest with checksums, HTML copies, archive and verification.

Layout of one batch (see README "Audit trail"):

    runs/<batch-id>/
      manifest.json          versions, operator, host, parameters (no secrets), outcomes, sha256 of every file
      ledger.sqlite          every step run (runbook_lib.ledger)
      summary.html           the auditor's page, a view of the manifest (runbook_lib.summary)
      <org>__<env>/NN_<step>.ipynb (+ .html)   the executed notebooks
      <org>__<env>/state/    legacy state backups (mode 0600; left out of archives unless asked)

`archive` scans every file it would pack for the tokens in use and for token-shaped strings and
refuses, writing nothing, if it finds one. `verify_archive` recomputes every checksum against the
manifest inside the archive and reports each file that was changed, added or removed.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from runbook_lib import __version__
from runbook_lib.errors import AuditError
from runbook_lib.secrets import scan_bytes, tokens_in_use

MANIFEST = "manifest.json"
STATE_DIR = "state"


def env_dirname(environment: str) -> str:
    """Directory name of an environment `<org>/<env>` in the trail: `<org>__<env>`."""
    org, _, env = environment.partition("/")
    return f"{org}__{env}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (state backups can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_state_backup(relpath: str) -> bool:
    parts = Path(relpath).parts
    return len(parts) >= 3 and parts[1] == STATE_DIR


def _files(batch_dir: Path) -> list[str]:
    return sorted(p.relative_to(batch_dir).as_posix() for p in batch_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not p.name.endswith(("-wal", "-shm")))


def runbook_commit() -> str | None:
    """The git commit of the runbook's own checkout, when it runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def notebook_to_html(notebook_path: str | Path) -> Path:
    """Write an HTML copy beside an executed notebook (inputs kept: they are part of the evidence)."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook_path = Path(notebook_path)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook_path, as_version=4))
    target = notebook_path.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def write_manifest(batch_dir: str | Path, *, parameters: Mapping[str, Any], outcomes: Mapping[str, Any],
                   started_at: str, finished_at: str, facts: Mapping[str, Any] | None = None) -> Path:
    """Write `manifest.json` for a batch: who, where, what version, parameters, outcomes, sha256 per file.

    Args:
        facts: the batch's evidence (mode, steps, environments: see `runbook_lib.summary.batch_facts`),
            added at the manifest's top level; `summary.html` is rendered from them.

    Raises:
        AuditError: the parameters contain a token (parameters must carry variable names, not values).
    """
    batch_dir = Path(batch_dir)
    params_text = json.dumps(parameters, sort_keys=True, default=str)
    if scan_bytes(params_text.encode(), "parameters", tokens_in_use()):
        raise AuditError("the batch parameters contain a token; pass the NAME of its environment variable.")
    files = {}
    for rel in _files(batch_dir):
        path = batch_dir / rel
        files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size, "state_backup": _is_state_backup(rel)}
    manifest = {
        "runbook": {"version": __version__, "git_commit": runbook_commit()},
        "operator": getpass.getuser(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "batch": batch_dir.name,
        "started_at": started_at,
        "finished_at": finished_at,
        "parameters": json.loads(params_text),
        "outcomes": outcomes,
        "files": files,
    }
    for key, value in (facts or {}).items():
        manifest.setdefault(key, value)  # the facts add to the manifest; they never replace its own keys
    target = batch_dir / MANIFEST
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def write_summary_html(batch_dir: str | Path, matrix: Mapping[str, Mapping[str, str]], steps: Iterable[str],
                       title: str = "Migration batch") -> Path:
    """The bare status matrix page; moved to `runbook_lib.summary` (a batch's page: `write_batch_evidence`)."""
    from runbook_lib.summary import write_summary_html as write

    return write(batch_dir, matrix, steps, title)


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    sha256: str
    files: int
    excluded_state_backups: int


def archive(batch_dir: str | Path, *, include_state: bool = False, extra_tokens: Iterable[str] = ()) -> ArchiveResult:
    """Pack a batch into `<batch>.tar.gz` beside it, with `<batch>.tar.gz.sha256`.

    Every file that goes in is first scanned for the tokens in use (ATLAS_TOKEN, TFE_TOKEN and
    `extra_tokens`) and for token-shaped strings; one finding refuses the whole archive.

    Args:
        batch_dir: `runs/<batch-id>` holding a manifest.json.
        include_state: also pack the legacy state backups (they may hold secrets of the infrastructure).

    Raises:
        AuditError: no manifest, or a secret found (the message names file and offset, never the secret).
    """
    batch_dir = Path(batch_dir)
    if not (batch_dir / MANIFEST).is_file():
        raise AuditError(f"{batch_dir} has no {MANIFEST}; archive a batch directory written by `tfe-runbook run`.")
    tokens = [*tokens_in_use(), *[t for t in extra_tokens if t]]
    members = [MANIFEST, *_files(batch_dir)]
    excluded = [m for m in members if _is_state_backup(m) and not include_state]
    members = [m for m in members if m not in excluded]
    findings = []
    for rel in members:
        findings += scan_bytes((batch_dir / rel).read_bytes(), rel, tokens)
    if findings:
        where = ", ".join(sorted({f"{f.where} ({f.kind})" for f in findings}))
        raise AuditError(f"refusing to archive: secrets found in {where}; remove them and re-run the archive "
                         f"(nothing was written).")
    target = batch_dir.parent / f"{batch_dir.name}.tar.gz"
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for rel in members:
            info = tar.gettarinfo(batch_dir / rel, arcname=f"{batch_dir.name}/{rel}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(batch_dir / rel, "rb") as handle:
                tar.addfile(info, handle)
    os.replace(partial, target)
    digest = sha256_file(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    return ArchiveResult(target, digest, len(members), len(excluded))


@dataclass(frozen=True)
class VerifyProblem:
    path: str
    problem: str  # "changed", "missing", "unexpected", "archive checksum"


def verify_archive(archive_path: str | Path) -> list[VerifyProblem]:
    """Recompute every checksum in an archive against its manifest.

    Returns:
        The problems found, one per file; empty when the archive is intact. State backups that were
        left out on purpose are not problems.

    Raises:
        AuditError: not a readable archive, or no manifest inside.
    """
    archive_path = Path(archive_path)
    problems: list[VerifyProblem] = []
    sidecar = archive_path.with_name(archive_path.name + ".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0]
        if sha256_file(archive_path) != expected:
            problems.append(VerifyProblem(archive_path.name, "archive checksum"))
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            contents: dict[str, bytes] = {}
            for member in tar.getmembers():
                if member.isfile():
                    handle = tar.extractfile(member)
                    contents[member.name.split("/", 1)[1]] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AuditError(f"{archive_path} is not a readable archive ({exc}).") from exc
    if MANIFEST not in contents:
        raise AuditError(f"{archive_path} holds no {MANIFEST}; it was not written by `tfe-runbook archive`.")
    try:
        manifest = json.load(io.BytesIO(contents.pop(MANIFEST)))
    except json.JSONDecodeError:
        return [*problems, VerifyProblem(MANIFEST, "changed")]
    listed: Mapping[str, Any] = manifest.get("files", {})
    for rel, meta in sorted(listed.items()):
        if rel not in contents:
            if not meta.get("state_backup"):
                problems.append(VerifyProblem(rel, "missing"))
            continue
        if hashlib.sha256(contents[rel]).hexdigest() != meta.get("sha256"):
            problems.append(VerifyProblem(rel, "changed"))
    for rel in sorted(set(contents) - set(listed)):
        problems.append(VerifyProblem(rel, "unexpected"))
    return problems
