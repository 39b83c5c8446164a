"""Reading an archive back: `verify_archive` checks one that `archive` wrote, without trusting it.

The archive is read once, as a stream, and nothing in it is extracted or held whole:

- its `.sha256` sidecar must give the archive's checksum and its own file name, and that name must be
  `<batch>.tar.gz` for the batch the archive holds (its one top folder and its manifest's `batch`): a
  genuine archive of another batch, renamed, fails (and so does its signature's claim: see `signing`);
- every member must be a regular file at a plain path inside the batch's folder: links (symbolic or
  hard), devices, folders, absolute paths, `..`, a name given twice are refused before anything is read,
  since `tar xzf` would turn them into files the manifest never checked;
- the manifest comes first; every later member is hashed in chunks, and one larger than its manifest entry
  is refused at its header, unread; the archive may not hold more bytes than its manifest lists (plus the
  tar format's own), so a small archive that inflates to gigabytes stops there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from runbook_lib.audit import MANIFEST, sha256_file
from runbook_lib.errors import AuditError

#: The largest manifest read (an estate of 5,000 environments writes about 60 MB).
MAX_MANIFEST = 128 << 20
#: Bytes the tar format may add per member beyond its data (header, long-name records, padding), and at its end.
MEMBER_OVERHEAD, END_OVERHEAD = 8 << 10, 64 << 10
CHUNK = 1 << 20
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.DIRTYPE: "a folder",
          tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO",
          tarfile.CONTTYPE: "a contiguous file", tarfile.GNUTYPE_SPARSE: "a sparse file"}


@dataclass(frozen=True)
class VerifyProblem:
    path: str
    problem: str  # "changed", "missing", "unexpected", "archive checksum", "no sidecar", "archive name", "batch"
    detail: str = ""


class _TooMuch(Exception):
    """The stream gave more bytes than the manifest allows."""


class _Capped(io.RawIOBase):
    """A reader that refuses to give more than `limit` bytes in all (the limit can be raised or lowered)."""

    def __init__(self, source: Any, limit: int) -> None:
        self._source, self.limit, self.given = source, limit, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.given
        data = self._source.read(room + 1 if size is None or size < 0 else min(size, room + 1))
        self.given += len(data)
        if self.given > self.limit:
            raise _TooMuch()
        return data


def _malformed(archive_path: Path, why: str) -> AuditError:
    return AuditError(f"{archive_path} is not an archive written by `tfe-runbook archive`: {why}.")


def _unsafe(archive_path: Path, member: tarfile.TarInfo, why: str,
            rule: str = "holds regular files inside its batch folder only") -> AuditError:
    return AuditError(f"{archive_path} is refused: its member {member.name!r} {why}; an archive written by "
                      f"`tfe-runbook archive` {rule} (do not extract it).")


def _check_member(archive_path: Path, member: tarfile.TarInfo) -> None:
    if member.type not in _REGULAR:
        kind = _KINDS.get(member.type, f"of tar type {member.type!r}")
        target = f" to {member.linkname!r}" if member.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        raise _unsafe(archive_path, member, f"is {kind}{target}, not a regular file")
    name = member.name
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _unsafe(archive_path, member, "is an absolute path or holds a backslash or control character")
    if ".." in name.split("/") or posixpath.normpath(name) != name:
        raise _unsafe(archive_path, member, "is not a plain path (it holds '..', '.' or an empty segment)")


def _sidecar_problems(archive_path: Path, name: str, require_sidecar: bool) -> list[VerifyProblem]:
    sidecar = archive_path.with_name(archive_path.name + ".sha256")
    if not sidecar.is_file():
        return [VerifyProblem(sidecar.name, "no sidecar")] if require_sidecar else []
    words = sidecar.read_text(encoding="utf-8", errors="replace").split()
    if not words:
        return [VerifyProblem(sidecar.name, "archive checksum", "it is empty")]
    problems = []
    if sha256_file(archive_path) != words[0]:
        problems.append(VerifyProblem(archive_path.name, "archive checksum"))
    named = words[1].lstrip("*") if len(words) > 1 else None
    if named != name:
        problems.append(VerifyProblem(sidecar.name, "archive name",
                                      f"it vouches for {named!r}, not for this archive's name {name!r}"))
    return problems


def verify_archive(archive_path: str | Path, *, require_sidecar: bool = True,
                   name: str | None = None) -> list[VerifyProblem]:
    """Check an archive against its `.sha256` sidecar and every file in it against the manifest inside.

    Args:
        require_sidecar: a missing ``<archive>.sha256`` is a problem ("no sidecar"); when False it is
            skipped, and only the files inside are checked against the manifest inside (which a replaced
            archive with a consistent manifest would pass).
        name: the archive's file name to hold it to (default: its name on disk); `archive` checks its
            temporary file under the name it will have.

    Returns:
        The problems found, one per file; empty when the archive is intact. State backups that were
        left out on purpose are not problems.

    Raises:
        AuditError: not a readable archive, not one `tfe-runbook archive` writes (no single top folder,
            no manifest first, a manifest of another shape), a member that is not a regular file at a plain
            path inside the batch folder, a member larger than its manifest entry, or more data than the
            manifest lists; one sentence.
    """
    archive_path = Path(archive_path)
    name = name or archive_path.name
    problems = _sidecar_problems(archive_path, name, require_sidecar)
    try:
        with open(archive_path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            capped = _Capped(unzipped, MAX_MANIFEST + END_OVERHEAD)
            with tarfile.open(fileobj=capped, mode="r|") as tar:
                problems += _members(archive_path, name, tar, capped)
    except _TooMuch:
        raise AuditError(f"{archive_path} is refused: it holds more data than its manifest lists (or a manifest "
                         f"larger than {MAX_MANIFEST >> 20} MB); it was not read further.") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise AuditError(f"{archive_path} is not a readable archive ({type(exc).__name__}: {exc}).") from None
    return problems


def _hash(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    digest = hashlib.sha256()
    handle = tar.extractfile(member)
    for chunk in iter(lambda: handle.read(CHUNK), b"") if handle else ():
        digest.update(chunk)
    return digest.hexdigest()


def _listing(archive_path: Path, manifest: Any) -> Mapping[str, Any]:
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not all(
            isinstance(m, dict) and isinstance(m.get("sha256"), str) and isinstance(m.get("size"), int)
            and m["size"] >= 0 for m in listed.values()):
        raise _malformed(archive_path, f"its {MANIFEST} is not a manifest (a \"files\" object of sha256 and size "
                                       f"entries was expected)")
    return listed


def _place(archive_path: Path, member: tarfile.TarInfo) -> tuple[str, str]:
    """A safe member's top folder and its path inside it; refuses an unsafe member or one outside any folder."""
    _check_member(archive_path, member)
    top, sep, rel = member.name.partition("/")
    if not sep or not rel:
        raise _malformed(archive_path, f"{member.name} is not inside the batch's folder")
    return top, rel


def _members(archive_path: Path, name: str, tar: tarfile.TarFile, capped: _Capped) -> list[VerifyProblem]:
    members: Iterator[tarfile.TarInfo] = iter(tar)
    first = next(members, None)
    if first is None:
        raise _malformed(archive_path, "it is empty")
    top, rel = _place(archive_path, first)
    if rel != MANIFEST:
        raise _malformed(archive_path, f"it holds no {top}/{MANIFEST} as its first member (`archive` writes it "
                                       f"first)")
    if first.size > MAX_MANIFEST:
        raise _malformed(archive_path, f"its {MANIFEST} is larger than {MAX_MANIFEST >> 20} MB")
    handle = tar.extractfile(first)
    try:
        manifest = json.load(io.BytesIO(handle.read() if handle else b""))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [VerifyProblem(MANIFEST, "changed")]
    listed = _listing(archive_path, manifest)
    # From here on the stream may give no more than the files listed and the tar format's own bytes.
    capped.limit = capped.given + sum(m["size"] + MEMBER_OVERHEAD for m in listed.values()) + END_OVERHEAD
    problems = []
    if manifest.get("batch") != top or name != f"{top}.tar.gz":
        problems.append(VerifyProblem(name, "batch", f"the file {name!r} holds batch {top!r} (its manifest says "
                                                     f"{manifest.get('batch')!r}); {top}.tar.gz was expected"))
    seen: dict[str, str] = {}
    for member in members:
        head, rel = _place(archive_path, member)
        if head != top:
            raise _malformed(archive_path, f"it holds 2 top folders or more ({top}, {head}), one batch folder was "
                                           f"expected")
        if rel in seen or rel == MANIFEST:
            raise _unsafe(archive_path, member, "is in it twice (extracting it keeps the last one)")
        meta = listed.get(rel)
        if meta is None:
            seen[rel] = ""
            problems.append(VerifyProblem(rel, "unexpected"))
            continue
        if member.size > meta["size"]:
            raise _unsafe(archive_path, member, f"is {member.size} bytes where its manifest lists {meta['size']}, "
                                                f"so it was not read", "holds each file at the size its manifest lists")
        seen[rel] = _hash(tar, member)
        if seen[rel] != meta["sha256"]:
            problems.append(VerifyProblem(rel, "changed"))
    for rel, meta in sorted(listed.items()):
        if rel not in seen and not meta.get("state_backup"):
            problems.append(VerifyProblem(rel, "missing"))
    return sorted(problems, key=lambda p: (p.problem not in ("archive checksum", "archive name", "batch"), p.path))
