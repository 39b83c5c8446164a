"""Evidence changed after the run: which files of a batch differ from what the batch recorded, and how.

An executed notebook is vouched for by the ledger: the batch records each notebook's sha256 when its step
ends (`Ledger.attach_notebook`), and an earlier attempt moved aside (`NN_step.attempt-K.ipynb`) keeps the
sha256 of its own run. A notebook whose bytes no ledger row recorded was edited after its run. The one
exception is a run cut short before the batch recorded its notebook (a batch killed right after a step):
then the step's latest ledger row began after the manifest was written, and that notebook is the batch's.

An HTML copy is vouched for by its notebook: the copy the manifest lists, or, when the manifest lists it
otherwise or not at all, the page its notebook renders to now (`audit.notebook_to_html`'s exporter,
byte for byte). Any other file the manifest lists (a push record, a state backup) must be as listed, unless
the batch worked on that environment after the manifest was written (a resumed batch that was interrupted).
Files the batch derives again itself are never edits: the manifest, the summary, the INDEX, ledgers and
the backups' checksum lists. Evidence removed counts too: a notebook the ledger recorded whose bytes no file
of its step holds any more, or a file the manifest listed, gone while the batch did not work there (state
backups excepted: they may be removed once archived).

What changed is shown for notebooks and HTML copies, cell by cell, from the page the run left and the
page the file renders to now; for other files only the checksums are known.
"""

from __future__ import annotations

import difflib
import hashlib
import html.parser
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from runbook_lib import audit

#: Files the batch writes again from other evidence: a change in them is the batch's own.
DERIVED = frozenset({audit.MANIFEST, "summary.html", audit.INDEX, "backups.sha256"})
_ATTEMPT = re.compile(r"\.attempt-\d+$")
#: How much of a change is shown: cells, lines per cell, characters per line.
SHOWN_CELLS, SHOWN_LINES, SHOWN_WIDTH = 5, 6, 160


@dataclass(frozen=True)
class Edit:
    """One file that differs from what the batch recorded for it (never its content beyond `what`).

    Attributes:
        file: its path in the batch folder.
        change: "changed" (differs from the record), "added" (no record of it at all) or "removed" (recorded,
            and gone).
        recorded_sha256: the sha256 the batch recorded (None when "added").
        sha256: its sha256 now (None when "removed").
        recorded_by: where the record is: "ledger", "manifest" or "notebook" (an HTML copy's notebook).
        what: what changed, a few lines (cell by cell for notebooks and HTML copies); may be empty.
    """

    file: str
    change: str
    recorded_sha256: str | None
    sha256: str | None
    recorded_by: str
    what: tuple[str, ...] = field(default=())

    def fact(self) -> dict[str, Any]:
        """The manifest's record of an accepted edit (`edited_after_run`)."""
        return {"file": self.file, "change": self.change, "recorded_sha256": self.recorded_sha256,
                "sha256": self.sha256, "recorded_by": self.recorded_by, "what": list(self.what)}

    def sentence(self) -> str:
        record = {"ledger": "the ledger recorded when its step ended", "manifest": "the manifest listed",
                  "notebook": "its notebook renders to"}[self.recorded_by]
        if self.change == "removed":
            return f"{self.file}, which {'the ledger recorded' if self.recorded_by == 'ledger' else record}, is gone"
        return (f"{self.file} was added after the run" if self.change == "added"
                else f"{self.file} differs from what {record}")


def _stamp(value: str | None) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return stamp.replace(tzinfo=timezone.utc) if stamp and stamp.tzinfo is None else stamp


def _canonical(rel: str) -> str:
    """`env/NN_step.attempt-2.ipynb` -> `env/NN_step.ipynb` (the name its run recorded)."""
    path = Path(rel)
    return path.with_name(_ATTEMPT.sub("", path.stem) + path.suffix).as_posix()


class _Cells(html.parser.HTMLParser):
    """The text of each notebook cell in an nbconvert page (`div.jp-Cell`), styles and scripts left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[list[str]] = []
        self._depth = 0  # div depth inside the current cell (0: outside any cell)
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        if tag != "div":
            return
        if self._depth:
            self._depth += 1
        elif "jp-Cell" in (dict(attrs).get("class") or "").split():
            self.cells.append([])
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(self._skip - 1, 0)
        elif tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth and not self._skip:
            self.cells[-1].append(data)


def page_cells(page: str) -> list[list[str]]:
    """Each cell's lines of text in an nbconvert page (blank lines dropped)."""
    parser = _Cells()
    parser.feed(page)
    parser.close()
    return [[line.strip() for line in "".join(cell).splitlines() if line.strip()] for cell in parser.cells]


def _clip(line: str) -> str:
    return line if len(line) <= SHOWN_WIDTH else line[:SHOWN_WIDTH - 3] + "..."


def cell_changes(before: str, after: str) -> tuple[str, ...]:
    """What changed between two nbconvert pages of one notebook, cell by cell (a few lines each)."""
    old, new = page_cells(before), page_cells(after)
    lines: list[str] = []
    changed = [i for i in range(max(len(old), len(new)))
               if (old[i] if i < len(old) else None) != (new[i] if i < len(new) else None)]
    for i in changed[:SHOWN_CELLS]:
        if i >= len(old):
            lines.append(f"cell {i + 1}: added")
        elif i >= len(new):
            lines.append(f"cell {i + 1}: removed")
        else:
            diff = [d for d in difflib.ndiff(old[i], new[i]) if d[:1] in "-+"]
            lines += [f"cell {i + 1}: {_clip(d)}" for d in diff[:SHOWN_LINES]]
            if len(diff) > SHOWN_LINES:
                lines.append(f"cell {i + 1}: and {len(diff) - SHOWN_LINES} more lines")
    if len(changed) > SHOWN_CELLS:
        lines.append(f"and {len(changed) - SHOWN_CELLS} more cells")
    return tuple(lines)


def _render(notebook: Path) -> str:
    import nbformat

    return audit._html_exporter().from_notebook_node(nbformat.read(notebook, as_version=4))[0]


class _Record:
    """What the batch recorded: the manifest's listing and when it was written, and the ledger's runs
    (indexed once: a batch of thousands of environments has tens of thousands of runs)."""

    def __init__(self, listed: Mapping[str, Any], written: datetime | None, runs: Iterable[Any]) -> None:
        self.listed, self.written = listed, written
        self._shas: dict[str, list[str]] = {}
        self._started: dict[tuple[str | None, str | None], datetime] = {}
        for run in runs:
            if run.notebook_path and run.notebook_sha256:
                self._shas.setdefault(run.notebook_path, []).append(run.notebook_sha256)
            started = _stamp(run.started_at)
            if started is None:
                continue
            folder = audit.env_dirname(run.environment)
            for key in ((folder, run.step), (folder, None), (None, None)):
                if key not in self._started or started > self._started[key]:
                    self._started[key] = started

    def recorded_notebooks(self) -> dict[str, list[str]]:
        """Every notebook inside the batch folder the ledger recorded: path -> checksums, oldest first."""
        return {rel: shas for rel, shas in self._shas.items()
                if not rel.startswith("/") and ".." not in rel.split("/")}

    def notebook_shas(self, rel: str) -> list[str]:
        """The checksums the ledger recorded for a notebook's runs, oldest first."""
        return self._shas.get(rel, [])

    def worked_on_since(self, folder: str | None, step: str | None = None) -> bool:
        """Whether the batch started work after the manifest was written: in an environment's folder (any, for
        None) and step (any, for None)."""
        if self.written is None:
            return True  # no manifest yet: everything is the batch's first record
        started = self._started.get((folder, step))
        return started is not None and started >= self.written

    def listed_sha(self, rel: str) -> str | None:
        meta = self.listed.get(rel)
        return meta.get("sha256") if isinstance(meta, dict) else None


def _record(batch_dir: Path) -> _Record:
    from runbook_lib.ledger import Ledger

    manifest_path = batch_dir / audit.MANIFEST
    listed: Mapping[str, Any] = {}
    written = None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = manifest.get("files") if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else {}
        # The ledger keeps milliseconds: the manifest's time is taken at the same grain, rounded down.
        mtime_ms = os.stat(manifest_path).st_mtime_ns // 1_000_000
        written = datetime.fromtimestamp(mtime_ms / 1000, tz=timezone.utc)
    except (OSError, ValueError):
        pass
    ledger = batch_dir / "ledger.sqlite"
    return _Record(listed, written, Ledger(ledger).history() if ledger.is_file() else [])


def _is_derived(rel: str) -> bool:
    name = Path(rel).name
    return name in DERIVED or name.endswith(".sqlite")


def find_edits(batch_dir: str | Path, files: Iterable[str]) -> list[Edit]:
    """The files of a batch that differ from what the batch recorded for them (see the module's docstring).

    Args:
        batch_dir: the batch folder.
        files: the files to judge (relative paths: what `archive` would pack).

    Returns:
        One `Edit` per file, in the order given; empty when every file is as recorded.
    """
    batch_dir = Path(batch_dir)
    record = _record(batch_dir)
    files = list(files)
    present = set(files)
    edits: list[Edit] = []
    notebook_edits: dict[str, Edit] = {}
    for rel in files:
        if rel.endswith(".ipynb"):
            edit = _notebook_edit(batch_dir, rel, record)
            if edit:
                notebook_edits[rel] = edit
    for rel in files:
        if rel in notebook_edits:
            edits.append(notebook_edits[rel])
        elif rel.endswith(".html") and Path(rel).with_suffix(".ipynb").as_posix() in present:
            edit = _copy_edit(batch_dir, rel, record, notebook_edits.get(Path(rel).with_suffix(".ipynb").as_posix()))
            if edit:
                edits.append(edit)
        elif not rel.endswith(".ipynb") and not _is_derived(rel):
            edit = _file_edit(batch_dir, rel, record)
            if edit:
                edits.append(edit)
    replaced = {(_canonical(e.file), e.recorded_sha256) for e in notebook_edits.values()}
    return edits + _removed(batch_dir, files, record, replaced)


def _removed(batch_dir: Path, files: list[str], record: _Record, replaced: set[tuple[str, str | None]]) -> list[Edit]:
    """Evidence gone after the run: a notebook the ledger recorded (no file of its step holds those bytes any
    more), or a file the manifest listed, while the batch did not work on that environment. State backups may
    be removed once archived (they may hold the infrastructure's secrets) and are not judged."""
    kept: dict[str, set[str]] = {}
    for rel in files:
        if rel.endswith(".ipynb"):
            kept.setdefault(_canonical(rel), set()).add(audit.sha256_file(batch_dir / rel))
    removed = []
    for rel, shas in sorted(record.recorded_notebooks().items()):
        folder, _, name = rel.partition("/")
        if record.worked_on_since(folder, Path(name).stem):
            continue
        removed += [Edit(rel, "removed", sha, None, "ledger") for sha in dict.fromkeys(shas)
                    if sha not in kept.get(rel, set()) and (rel, sha) not in replaced]
    present = set(files)
    for rel in sorted(set(record.listed) - present):
        if rel.endswith(".ipynb") and record.notebook_shas(rel) or _is_derived(rel) or audit._is_state_backup(rel) \
                or audit.NOT_EVIDENCE & set(rel.split("/")):
            continue
        if not record.worked_on_since(rel.partition("/")[0] if "/" in rel else None):
            removed.append(Edit(rel, "removed", record.listed_sha(rel), None, "manifest"))
    return removed


def _notebook_edit(batch_dir: Path, rel: str, record: _Record) -> Edit | None:
    sha = audit.sha256_file(batch_dir / rel)
    recorded = record.notebook_shas(_canonical(rel))
    if sha in recorded:
        return None
    folder, _, name = _canonical(rel).partition("/")
    listed = record.listed_sha(rel)
    if not recorded:
        # No run recorded this notebook's checksum: a batch cut short, or a notebook the ledger knows by
        # its step only (an older batch). The manifest's listing or a later run vouches for it.
        if listed == sha or record.worked_on_since(folder, Path(name).stem):
            return None
        return Edit(rel, "changed" if listed else "added", listed, sha, "manifest")
    page = batch_dir / Path(rel).with_suffix(".html")
    what: tuple[str, ...] = ()
    if page.is_file() and record.listed_sha(page.relative_to(batch_dir).as_posix()) == audit.sha256_file(page):
        what = cell_changes(page.read_text(encoding="utf-8", errors="replace"), _render(batch_dir / rel))
    elif page.is_file():
        what = ("what changed cannot be shown: its HTML copy changed too, so no copy of the run is left",)
    return Edit(rel, "changed", recorded[-1], sha, "ledger", what)


def _copy_edit(batch_dir: Path, rel: str, record: _Record, notebook_edit: Edit | None) -> Edit | None:
    sha = audit.sha256_file(batch_dir / rel)
    listed = record.listed_sha(rel)
    if listed == sha:
        return None  # the copy the run left (an edit of its notebook is the notebook's)
    if notebook_edit is not None:
        return Edit(rel, "changed" if listed else "added", listed, sha, "manifest",
                    ("its notebook was edited too, so the copy of the run is not known",))
    page = (batch_dir / rel).read_text(encoding="utf-8", errors="replace")
    expected = _render(batch_dir / Path(rel).with_suffix(".ipynb"))
    if page == expected:
        return None  # the copy of a notebook the batch recorded, written after the manifest
    return Edit(rel, "changed", hashlib.sha256(expected.encode("utf-8")).hexdigest(), sha, "notebook",
                cell_changes(expected, page))


def _file_edit(batch_dir: Path, rel: str, record: _Record) -> Edit | None:
    sha = audit.sha256_file(batch_dir / rel)
    listed = record.listed_sha(rel)
    if listed == sha or record.worked_on_since(rel.partition("/")[0] if "/" in rel else None):
        return None
    return Edit(rel, "changed" if listed else "added", listed, sha, "manifest")
