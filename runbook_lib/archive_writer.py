"""Packing a batch into `<batch>.tar.gz` (with `<batch>.tar.gz.sha256`), for auditors.

What `archive` guarantees:

- **Nothing secret goes in.** Every file is scanned, from the very bytes packed, for every token the batch
  could see, for token- and credential-shaped strings, and for credentials inside URLs (userinfo, as in
  `https://oauth2:<password>@gitlab.example.com`); one finding refuses the whole archive, naming the file
  and never the value.
- **Nothing edited after the run goes in unsaid.** A file that differs from what the batch recorded for it
  (`runbook_lib.evidence_edits`) refuses the archive; `accept_edits` keeps it, and the manifest's
  `edited_after_run` (shown in `summary.html` and the INDEX) says which file, what the record was and what changed.
- **Only the batch's own regular files.** A symbolic link anywhere in the batch folder is named and refused;
  `.ipynb_checkpoints/` and `.locks/` are left out; state backups too, unless asked for.
- **The same batch gives the same bytes.** Members in a fixed order (manifest, INDEX, then by path), each with
  the batch's end as its time, mode 0600, owner 0 and no owner names; the gzip header carries the same time
  and no file name. A checksum then means the same thing across copies and re-archives.
- **No half-archive is left readable.** The archive is written as `.<batch>.tar.gz.partial`, created 0600,
  verified, then renamed; one left by a killed run is removed by the next (which holds a lock on the batch
  folder, so two archives of one batch never run at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from runbook_lib import audit, summary
from runbook_lib.audit import INDEX, MANIFEST
from runbook_lib.errors import AuditError
from runbook_lib.secrets import SecretFinding, all_tokens_in_use, scan_bytes

#: A URL's scheme and userinfo (`scheme://userinfo@host`): the authority ends at the first / ? # or space.
_URL_USERINFO = re.compile(rb"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,30})://([^\s/?#@\"'<>\\]+)@[A-Za-z0-9\[]")
#: Schemes where a user name alone is a credential (a token given as the user, as GitHub and GitLab accept).
_TOKEN_AS_USER_SCHEMES = ("http", "https", "ftp", "ftps")
SUMMARY = "summary.html"
MEMBER_MODE = 0o600


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    sha256: str
    files: int
    excluded_state_backups: int
    refreshed: str | None = None  # why the manifest was rewritten from the ledger first, if it was
    removed_partial: bool = False  # a half-written archive of an earlier, killed run was removed
    accepted_edits: tuple[Any, ...] = field(default=())  # evidence_edits.Edit, kept by accept_edits


def url_credentials(data: bytes, where: str) -> list[SecretFinding]:
    """Credentials inside URLs: a password in the userinfo (`user:secret@`) on any scheme, or a user name
    alone on http(s)/ftp(s), where it is how tokens are passed. SSH's `git@host` is a user name, not a secret."""
    findings = []
    for match in _URL_USERINFO.finditer(data):
        scheme, userinfo = match.group(1).lower().decode("ascii"), match.group(2)
        if b":" in userinfo or scheme.rpartition("+")[2] in _TOKEN_AS_USER_SCHEMES:
            findings.append(SecretFinding(where, match.start(2), "credential in a URL"))
    return findings


def scan(data: bytes, where: str, tokens: Iterable[str]) -> list[SecretFinding]:
    """Everything `archive` refuses to pack: tokens in use, token and credential shapes, credentials in URLs."""
    return sorted([*scan_bytes(data, where, tokens), *url_credentials(data, where)], key=lambda f: f.offset)


def _refuse_secrets(findings: list[SecretFinding]) -> None:
    if findings:
        where = ", ".join(sorted({f"{f.where} ({f.kind})" for f in findings}))
        raise AuditError(f"refusing to archive: secrets found in {where}; remove them and re-run the archive "
                         f"(nothing was written).")


def _manifest(batch_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _write_manifest(batch_dir: Path, manifest: Mapping[str, Any]) -> None:
    audit.atomic_write(batch_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": audit.sha256_file(path), "size": path.stat().st_size, "state_backup": False}


@contextlib.contextmanager
def _exclusive(batch_dir: Path) -> Iterator[None]:
    """Hold a lock on the batch folder itself for the whole archive (released by the kernel if killed)."""
    fd = os.open(batch_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AuditError(f"another `tfe-runbook archive` of {batch_dir} is running; wait for it to end, then "
                             f"run this one again if still needed.") from None
        yield
    finally:
        os.close(fd)


def _refuse_links(batch_dir: Path) -> None:
    links = audit.symlinks(batch_dir)
    if links:
        rel, target = next(iter(links.items()))
        more = f" (and {len(links) - 1} more: {', '.join(list(links)[1:4])})" if len(links) > 1 else ""
        raise AuditError(f"{batch_dir / rel} is a symbolic link (to {target}){more}: an archive holds the batch's "
                         f"own files only, never what a link points to; put the file itself there or remove the "
                         f"link, then archive again (nothing was written).")


def _batch_time(manifest: Mapping[str, Any]) -> int:
    """The time every member and the gzip header carry: the batch's end (or start), as the manifest says."""
    for key in ("finished_at", "started_at"):
        with contextlib.suppress(TypeError, ValueError):
            stamp = datetime.fromisoformat(str(manifest.get(key)))
            return max(int((stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()), 0)
    return 0


def _record_edits(batch_dir: Path, edits: list[Any], previous: list[Any]) -> None:
    """Add accepted edits to the manifest's `edited_after_run` and draw summary.html again from it."""
    from runbook_lib import summary

    manifest = _manifest(batch_dir)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    recorded = [*previous, *({**e.fact(), "accepted_at": now, "accepted_by": getpass.getuser()} for e in edits)]
    if manifest.get("edited_after_run") == recorded:
        return
    manifest["edited_after_run"] = recorded
    if isinstance(manifest.get("steps"), list) and manifest.get("mode"):  # a batch's manifest: its page shows them
        audit.atomic_write(batch_dir / SUMMARY, summary.render(manifest))
        manifest["files"][SUMMARY] = _file_entry(batch_dir / SUMMARY)
    _write_manifest(batch_dir, manifest)


def _write_index(batch_dir: Path, archive_name: str) -> None:
    """Write INDEX.md from the manifest when it says something else, and list it in the manifest."""
    from runbook_lib.auditor_index import render_index

    manifest = _manifest(batch_dir)
    page = render_index(manifest, archive_name).encode("utf-8")
    index = batch_dir / INDEX
    if not (index.is_file() and index.read_bytes() == page):
        audit.atomic_write(index, page)
    entry = _file_entry(index)
    if manifest.get("files", {}).get(INDEX) != entry:
        manifest.setdefault("files", {})[INDEX] = entry
        _write_manifest(batch_dir, manifest)


def _refuse_edits(batch_dir: Path, edits: list[Any]) -> None:
    said = "; ".join(e.sentence() for e in edits[:3]) + (f"; and {len(edits) - 3} more" if len(edits) > 3 else "")
    raise AuditError(f"refusing to archive {batch_dir}: evidence changed after the run ({said}); put back the "
                     f"file the run wrote (or run its step again), or archive with --accept-edits to keep the edit, "
                     f"which manifest.json, INDEX.md and summary.html then show (nothing was written).")


def archive(batch_dir: str | Path, *, include_state: bool = False, extra_tokens: Iterable[str] = (),
            accept_edits: bool = False) -> ArchiveResult:
    """Pack a batch into `<batch>.tar.gz` beside it, with `<batch>.tar.gz.sha256` (see the module's docstring).

    A manifest older than the batch's files or ledger (an interrupted or killed batch) is first rewritten
    from the ledger (`summary.refresh_manifest`); the reason is kept in it and in the result. The INDEX is
    written from the manifest. The archive is verified before it is kept.

    Args:
        batch_dir: `runs/<batch-id>` written by `tfe-runbook run`.
        include_state: also pack the legacy state backups (they may hold secrets of the infrastructure).
        extra_tokens: more secret values to look for.
        accept_edits: keep files changed after the run, recording each in the manifest.

    Raises:
        AuditError: not a batch folder, a symbolic link in it, a secret found (the message names the file,
            never the secret), evidence edited after the run (without `accept_edits`), files changing while
            packed (the batch still runs), another archive of it running, or a folder that cannot be
            written; nothing is left under the archive's name.
    """
    batch_dir = Path(batch_dir)
    if batch_dir.is_symlink():
        raise AuditError(f"{batch_dir} is a symbolic link (to {os.readlink(batch_dir)}); archive the batch folder "
                         f"itself, where `tfe-runbook run` wrote it.")
    if not batch_dir.is_dir():
        raise AuditError(f"{batch_dir} is not a folder; archive a batch folder written by `tfe-runbook run` "
                         f"(runs/<batch>).")
    if not (batch_dir / MANIFEST).is_file() and not (batch_dir / "ledger.sqlite").is_file():
        raise AuditError(f"{batch_dir} has no {MANIFEST} and no ledger.sqlite; archive a batch folder written by "
                         f"`tfe-runbook run` (runs/<batch>).")
    target = batch_dir.parent / f"{batch_dir.name}.tar.gz"
    partial = target.with_name(f".{target.name}.partial")
    with _exclusive(batch_dir):
        removed = False
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # under the lock, a partial archive is one a killed run left behind
            removed = True
        _refuse_links(batch_dir)
        audit._checkpoint_ledger(batch_dir)
        return _pack(batch_dir, target, partial, include_state, extra_tokens, accept_edits, removed)


def _pack(batch_dir: Path, target: Path, partial: Path, include_state: bool, extra_tokens: Iterable[str],
          accept_edits: bool, removed: bool) -> ArchiveResult:
    from runbook_lib.evidence_edits import find_edits

    before = _manifest(batch_dir)
    params = before.get("parameters") if isinstance(before.get("parameters"), dict) else {}
    tokens = [*all_tokens_in_use(params), *[t for t in extra_tokens if t]]
    files = audit._files(batch_dir)
    excluded = [m for m in files if audit._is_state_backup(m) and not include_state]
    # Scanned before anything is written (a stale manifest is only rewritten for a clean batch).
    _refuse_secrets([f for rel in [MANIFEST, *files] if rel not in excluded and (batch_dir / rel).is_file()
                     for f in scan((batch_dir / rel).read_bytes(), rel, tokens)])
    previous = [e for e in before.get("edited_after_run") or [] if isinstance(e, dict)]
    known = {(e.get("file"), e.get("sha256")) for e in previous}
    edits = [e for e in find_edits(batch_dir, files) if (e.file, e.sha256) not in known]
    if edits and not accept_edits:
        _refuse_edits(batch_dir, edits)
    reasons = audit.stale_reasons(batch_dir)
    refreshed = None
    if reasons:
        summary.refresh_manifest(batch_dir, reasons)
        refreshed = "; ".join(reasons)
    if edits or (previous and _manifest(batch_dir).get("edited_after_run") != previous):
        _record_edits(batch_dir, edits, previous)
    _write_index(batch_dir, target.name)
    manifest = _manifest(batch_dir)
    listed: Mapping[str, Any] = manifest.get("files", {})
    members = [MANIFEST, INDEX, *(m for m in audit._files(batch_dir) if m != INDEX and m not in excluded)]
    unlisted = [m for m in members if m != MANIFEST and m not in listed]
    if unlisted:
        raise AuditError(f"{batch_dir} changed while it was archived ({unlisted[0]} appeared): a batch is still "
                         f"writing to it; wait for it to end, then run `tfe-runbook archive {batch_dir}` again.")
    mtime = _batch_time(manifest)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask: it holds the batch's evidence
        try:
            with os.fdopen(fd, "wb") as raw:
                _write_tar(raw, batch_dir, members, listed, tokens, mtime)
                raw.flush()
                os.fsync(raw.fileno())
            from runbook_lib.archive_reader import verify_archive

            problems = verify_archive(partial, require_sidecar=False, name=target.name)
            if problems:
                raise AuditError(f"the archive of {batch_dir} did not verify ({problems[0].path}: "
                                 f"{problems[0].problem}); nothing was kept: run `tfe-runbook archive {batch_dir}` "
                                 f"again once no batch writes to it.")
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
    except OSError as exc:
        if not audit.is_folder_problem(exc):
            raise
        raise audit.folder_error(exc, batch_dir.parent) from exc
    digest = audit.sha256_file(target)
    audit.atomic_write(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n", mode=0o644)
    return ArchiveResult(target, digest, len(members), len(excluded), refreshed, removed, tuple(edits))


def _write_tar(raw: Any, batch_dir: Path, members: list[str], listed: Mapping[str, Any], tokens: list[str],
               mtime: int) -> None:
    """The tar stream: fixed order, times, modes and owners; a gzip header with that time and no name."""
    findings: list[SecretFinding] = []
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in members:
            data = (batch_dir / rel).read_bytes()  # scanned, checked and packed: the same bytes
            findings += scan(data, rel, tokens)
            if rel != MANIFEST and hashlib.sha256(data).hexdigest() != listed[rel].get("sha256"):
                raise AuditError(f"{rel} changed while {batch_dir} was archived: a batch is still writing "
                                 f"to it; wait for it to end, then run `tfe-runbook archive {batch_dir}` again.")
            info = tarfile.TarInfo(f"{batch_dir.name}/{rel}")
            info.size, info.mtime, info.mode = len(data), mtime, MEMBER_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    _refuse_secrets(findings)
