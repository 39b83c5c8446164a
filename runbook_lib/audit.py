"""The audit trail: layout, manifest with checksums, HTML copies; the archive's modules build on it.

Layout of one batch (see README "Audit trail"):

    runs/<batch-id>/
      manifest.json          versions, operator, host, parameters (no secrets), outcomes, sha256 of every file
      ledger.sqlite          every step run (runbook_lib.ledger)
      summary.html           the auditor's page, a view of the manifest (runbook_lib.summary)
      INDEX.md               where each answer lives, for auditors (runbook_lib.auditor_index; written by archive)
      <org>__<env>/NN_<step>.ipynb (+ .html)   the executed notebooks
      <org>__<env>/state/    legacy state backups (mode 0600; left out of archives unless asked)

Not evidence, never listed nor archived: JupyterLab's `.ipynb_checkpoints/`, the batch's `.locks/`, SQLite's
`-wal`/`-shm` journals. Symbolic links are never followed (`symlinks` names them; `archive` refuses them).

Packing and scanning an archive is `runbook_lib.archive_writer`, reading one back `runbook_lib.archive_reader`,
post-run edits `runbook_lib.evidence_edits`; `archive`, `verify_archive`, `ArchiveResult` and `VerifyProblem`
are reachable from here too.

Every file here is written whole or not at all (`atomic_write`: a temporary name, then a rename), owner-only;
a read-only folder or a full disk is one sentence naming the folder (`folder_error`).
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import os
import platform
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

from runbook_lib import __version__, git
from runbook_lib.catalog import RUN
from runbook_lib.errors import AuditError
from runbook_lib.secrets import all_tokens_in_use, scan_bytes

MANIFEST = "manifest.json"
STATE_DIR = "state"
INDEX = "INDEX.md"
#: Folders in a batch that hold no evidence: JupyterLab's autosaves and the batch's own locks.
NOT_EVIDENCE = frozenset({".ipynb_checkpoints", ".locks"})
#: What `archive` and `verify_archive` are, here as before they had modules of their own.
_ARCHIVE_NAMES = {"archive": "archive_writer", "ArchiveResult": "archive_writer",
                  "verify_archive": "archive_reader", "VerifyProblem": "archive_reader"}


def __getattr__(name: str) -> Any:
    if name in _ARCHIVE_NAMES:
        import importlib

        return getattr(importlib.import_module(f"runbook_lib.{_ARCHIVE_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: errno values that mean "this folder cannot take the write": read-only, no permission, full, over quota.
_FOLDER_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_folder_problem(exc: BaseException) -> bool:
    """Whether an error means the folder cannot be written (read-only, no permission, disk full)."""
    return isinstance(exc, OSError) and exc.errno in _FOLDER_ERRNOS


def folder_error(exc: OSError, folder: str | Path) -> AuditError:
    """One sentence naming the folder and the fix, for an `is_folder_problem` error."""
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    why = "the disk is full (or over quota)" if full else "it is read-only or not writable by you"
    fix = "free space there" if full else "make it writable"
    return AuditError(f"cannot write to {folder}: {why}; {fix} or choose another folder (--out), then run the same "
                      f"command again (nothing half-written was kept).")


def private_dir(path: str | Path) -> Path:
    """Create a folder (and its parents) and make it readable by its owner only (0700).

    Raises:
        AuditError: it cannot be created or changed (read-only, full, not yours).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        if not is_folder_problem(exc):
            raise
        raise folder_error(exc, path.parent if not path.exists() else path) from exc
    return path


def check_writable(folder: str | Path) -> None:
    """Prove a folder takes a write (a small probe file, written, synced and removed) before any work.

    Raises:
        AuditError: read-only, not writable, or full.
    """
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        if not is_folder_problem(exc):
            raise
        raise folder_error(exc, folder) from exc


def atomic_write(path: str | Path, data: bytes | str, *, mode: int = 0o600) -> Path:
    """Write a file whole or not at all: a temporary name in the same folder, synced, then renamed.

    A crash, a full disk or a read-only folder never leaves a half-written file under the real name.

    Raises:
        AuditError: the folder is read-only or full (one sentence naming it); the temporary file is removed.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if not is_folder_problem(exc):
            raise
        raise folder_error(exc, path.parent) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if not is_folder_problem(exc):
            raise
        raise folder_error(exc, path.parent) from exc
    return path


def restrict_tree(folder: str | Path) -> None:
    """Make every file under a folder owner-only (0600) and every folder 0700."""
    folder = Path(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


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


def _walk(batch_dir: Path) -> Iterator[tuple[str, os.DirEntry]]:
    """Every entry under a batch (relative POSIX path, entry), links not followed, non-evidence folders skipped."""
    pending = [batch_dir]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(batch_dir).as_posix()
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in NOT_EVIDENCE:
                        pending.append(Path(entry.path))
                    continue
                yield rel, entry


def _files(batch_dir: Path) -> list[str]:
    """The batch's evidence files: regular files only (a link is never followed), less the manifest and journals."""
    return sorted(rel for rel, entry in _walk(batch_dir)
                  if entry.is_file(follow_symlinks=False) and entry.name != MANIFEST
                  and not entry.name.endswith(("-wal", "-shm")))


def symlinks(batch_dir: str | Path) -> dict[str, str]:
    """Symbolic links inside a batch folder: relative path -> where each points (as written in the link)."""
    batch_dir = Path(batch_dir)
    return {rel: os.readlink(entry.path) for rel, entry in sorted(_walk(batch_dir)) if entry.is_symlink()}


def runbook_commit() -> str | None:
    """The git commit of the runbook's own checkout, when it runs from one."""
    return git.head_or_none(Path(__file__).resolve().parent)


def notebook_to_html(notebook_path: str | Path) -> Path:
    """Write an HTML copy beside an executed notebook (inputs kept: they are part of the evidence)."""
    import nbformat

    notebook_path = Path(notebook_path)
    body, _ = _html_exporter().from_notebook_node(nbformat.read(notebook_path, as_version=4))
    return atomic_write(notebook_path.with_suffix(".html"), body)


_EXPORTERS = threading.local()


#: Highlighted and cleaned cell sources an exporter keeps (a batch converts the same step notebooks
#: over and over: only parameters and outputs differ between environments).
HTML_FILTER_CACHE = 4096
#: Cell metadata that records an execution (when, how long), left out of what a highlighted input is remembered by.
EXECUTION_RECORDS = frozenset({"papermill", "execution"})


def _html_exporter() -> Any:
    """One nbconvert exporter per thread, kept: a new one compiles its templates again (a third of a
    copy's CPU time). Not shared between threads: its preprocessors are objects with settings of their own.

    Its two costliest filters, both pure functions of their arguments, remember their answers: `clean_html`
    (bleach parses and re-serializes each cell's highlighted input: half the template's time) and
    `highlight_code` (pygments). The page is what nbconvert writes, byte for byte (tested against a new
    `HTMLExporter`); what remains is the template itself and nbconvert's BeautifulSoup pass over the page
    (two thirds of what is left: parsing and writing the whole page again to add `tabindex` and `alt`).
    """
    exporter = getattr(_EXPORTERS, "html", None)
    if exporter is None:
        exporter = _EXPORTERS.html = _memo_exporter()
    return exporter


def _memo_exporter() -> Any:
    import functools

    from nbconvert import HTMLExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.strings import clean_html

    @functools.lru_cache(maxsize=HTML_FILTER_CACHE)
    def clean(text: str) -> str:
        return clean_html(text)

    def clean_memo(element: Any) -> str:
        return clean(element.decode() if isinstance(element, bytes) else str(element))

    highlighters: dict[str | None, Any] = {}

    @functools.lru_cache(maxsize=HTML_FILTER_CACHE)
    def highlight(lexer: str | None, source: str, language: str | None, metadata: str) -> str:
        if lexer not in highlighters:
            highlighters[lexer] = Highlight2HTML(pygments_lexer=lexer, parent=exporter)
        return highlighters[lexer](source, language, json.loads(metadata))

    class HighlightMemo:
        """nbconvert's `highlight_code` filter for the notebook being converted (its lexer is set per notebook).

        Remembered by the cell's source and metadata, less the records of its execution (papermill's and
        Jupyter's timings: different in every executed copy, never a matter of highlighting)."""

        lexer: str | None = None

        def __call__(self, source: str, language: str | None = None, metadata: Any = None) -> str:
            kept = None if metadata is None else {k: v for k, v in metadata.items() if k not in EXECUTION_RECORDS}
            return highlight(self.lexer, source, language, json.dumps(kept, sort_keys=True, default=str))

    highlighter = HighlightMemo()

    class MemoHTMLExporter(HTMLExporter):
        def from_notebook_node(self, nb: Any, resources: Any = None, **kw: Any) -> Any:
            # the lexer nbconvert itself picks for a notebook (HTMLExporter.from_notebook_node)
            langinfo = nb.metadata.get("language_info", {})
            highlighter.lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            return super().from_notebook_node(nb, resources, **kw)

    # Filters given at construction win over nbconvert's defaults, and `from_notebook_node` takes its
    # `highlight_code` from them instead of making a new one per notebook.
    # optimistic_validation: nbformat checks the notebook once, after the preprocessors, not after each
    # of its twelve (a tenth of a copy's time; a copy is of a notebook papermill has just written).
    exporter = MemoHTMLExporter(filters={"clean_html": clean_memo, "highlight_code": highlighter},
                                optimistic_validation=True)
    return exporter


def write_manifest(batch_dir: str | Path, *, parameters: Mapping[str, Any], outcomes: Mapping[str, Any],
                   started_at: str, finished_at: str, refreshed: str | None = None,
                   facts: Mapping[str, Any] | None = None) -> Path:
    """Write `manifest.json` for a batch: who, where, what version, parameters, outcomes, sha256 per file.

    Written whole or not at all (`atomic_write`), readable by its owner only.

    Args:
        refreshed: why `archive` rewrote it after the batch (an interrupted batch), recorded as is.
        facts: the batch's evidence (mode, steps, environments: see `runbook_lib.summary.batch_facts`),
            added at the manifest's top level; `summary.html` is rendered from them.

    Raises:
        AuditError: the parameters contain a token (parameters must carry variable names, not values).
    """
    batch_dir = Path(batch_dir)
    params_text = json.dumps(parameters, sort_keys=True, default=str)
    if scan_bytes(params_text.encode(), "parameters", all_tokens_in_use(parameters)):
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
        **({"refreshed": refreshed} if refreshed else {}),
    }
    for key, value in (facts or {}).items():
        manifest.setdefault(key, value)  # the facts add to the manifest; they never replace its own keys
    return atomic_write(batch_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def outcomes_from_ledger(ledger_path: str | Path) -> dict[str, dict[str, str]]:
    """environment -> step -> latest status, from a batch's ledger (confirmations left out)."""
    from runbook_lib.ledger import Ledger

    matrix: dict[str, dict[str, str]] = {}
    for run in Ledger(ledger_path).history():
        if run.action != RUN:  # confirmations and recoveries are not a step's outcome
            continue
        matrix.setdefault(run.environment, {})[run.step] = run.status
    return matrix


def _checkpoint_ledger(batch_dir: Path) -> None:
    """Fold a ledger's write-ahead log into ledger.sqlite, so the file archived holds every row."""
    import sqlite3

    ledger = batch_dir / "ledger.sqlite"
    if not (ledger.is_file() and ledger.with_name(ledger.name + "-wal").exists()):
        return
    try:
        db = sqlite3.connect(ledger, timeout=30)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise AuditError(f"cannot fold the ledger's journal into {ledger} ({exc}): the folder is read-only, full, "
                         f"or a batch still writes to it; make it writable or wait for the batch, then archive "
                         f"again.") from exc


def stale_reasons(batch_dir: str | Path) -> list[str]:
    """Why a batch's manifest no longer describes its files (empty: it does).

    A batch interrupted or killed after its last manifest (or before its first) leaves files and ledger
    rows the manifest does not list, or lists with other checksums.
    """
    batch_dir = Path(batch_dir)
    try:
        listed = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8")).get("files")
    except FileNotFoundError:
        return [f"there is no {MANIFEST}"]
    except (ValueError, AttributeError):
        return [f"its {MANIFEST} cannot be read"]
    if not isinstance(listed, dict):
        return [f"its {MANIFEST} lists no files"]
    reasons = []
    no_evidence = sorted(rel for rel in listed if NOT_EVIDENCE & set(rel.split("/")))
    if no_evidence:  # an older version listed locks and JupyterLab's autosaves
        reasons.append(f"it lists {', '.join(no_evidence[:3])}, which is no evidence")
        listed = {rel: meta for rel, meta in listed.items() if rel not in no_evidence}
    present = set(_files(batch_dir))
    added, missing = sorted(present - set(listed)), sorted(set(listed) - present)
    changed = sorted(rel for rel in present & set(listed)
                     if not isinstance(listed[rel], dict) or listed[rel].get("sha256") != sha256_file(batch_dir / rel))
    for label, names in (("not listed", added), ("changed since", changed), ("gone since", missing)):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            reasons.append(f"{', '.join(names[:3])}{more} {label} the manifest was written")
    return reasons
