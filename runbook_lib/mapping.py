"""The mapping from legacy environments to new workspaces, and its naming rule.

Legacy environment names allow letters, digits, `-`, `_` and `.` (up to 50 characters); new workspace
names allow only letters, digits, `-` and `_` (up to 90). The rule, applied by `workspace_name_for`:

1. Every character outside `[A-Za-z0-9_-]` becomes `-` (so `web.prod` -> `web-prod`).
2. Nothing is truncated: a name that would exceed 90 characters is flagged, not shortened, because a
   shortened name could silently collide with another.
3. Two environments mapping to the same workspace name are flagged as a collision; neither is ready
   until the operator edits the CSV to tell them apart.

The mapping is a CSV an operator can edit (`write_csv` / `read_csv`); `read_csv` validates every row
and refuses the whole file with one sentence per problem, naming the row and the fix.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from runbook_lib.errors import MappingError

WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,90}$")
ORGANIZATION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
LEGACY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
MAX_WORKSPACE_NAME = 90
_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")
CSV_COLUMNS = ("legacy_org", "legacy_env", "new_org", "workspace")


def workspace_name_for(legacy_env: str) -> str:
    """The default workspace name for a legacy environment name (see the module docstring)."""
    return _DISALLOWED.sub("-", legacy_env)


def workspace_name_problem(name: str) -> str | None:
    """Why `name` is not a valid workspace name, or None."""
    if not name:
        return "the workspace name is empty"
    if len(name) > MAX_WORKSPACE_NAME:
        return f"the workspace name has {len(name)} characters (at most {MAX_WORKSPACE_NAME})"
    bad = sorted(set(_DISALLOWED.findall(name)))
    if bad:
        return f"the workspace name contains {''.join(bad)!r} (only letters, digits, '-' and '_' are allowed)"
    return None


def path_segment_problem(name: str) -> str | None:
    """Why a name cannot be one segment of an API path, or None.

    ``.`` and ``..`` (and names of dots only, which some proxies fold the same way) are removed or climb a
    level when a URL is normalised (RFC 3986, 5.2.4): ``/environments/acme/..`` would address another
    resource than the one named. Checked when the mapping is read, before any request.
    """
    if not name.strip():
        return "the name is empty"
    if set(name) == {"."}:
        return f"{name!r} is a path segment a URL would normalise away (use the real name)"
    return None


@dataclass(frozen=True)
class MappingRow:
    """One legacy environment and the workspace it moves to."""

    legacy_org: str
    legacy_env: str
    new_org: str
    workspace: str

    @property
    def legacy_slug(self) -> str:
        return f"{self.legacy_org}/{self.legacy_env}"

    @property
    def workspace_slug(self) -> str:
        return f"{self.new_org}/{self.workspace}"


def propose(legacy_org: str, legacy_envs: Iterable[str], new_org: str) -> list[MappingRow]:
    """Default mapping rows: same organization target, workspace names by `workspace_name_for`."""
    return [MappingRow(legacy_org, env, new_org, workspace_name_for(env)) for env in legacy_envs]


def problems(rows: Iterable[MappingRow]) -> dict[str, list[str]]:
    """Per legacy environment slug, what is wrong with its row (empty list: fine).

    Checks: organization and environment name syntax, workspace name validity, duplicate legacy
    environments, and collisions (two environments, one workspace of one organization).
    """
    rows = list(rows)
    found: dict[str, list[str]] = {r.legacy_slug: [] for r in rows}
    targets: dict[tuple[str, str], list[str]] = {}
    seen: set[str] = set()
    for row in rows:
        issues = found[row.legacy_slug]
        if row.legacy_slug in seen:
            issues.append(f"{row.legacy_slug} appears more than once in the mapping")
        seen.add(row.legacy_slug)
        if not LEGACY_NAME.match(row.legacy_org) or not LEGACY_NAME.match(row.legacy_env):
            issues.append(f"{row.legacy_slug!r} is not a legacy <org>/<env> name")
        elif path_segment_problem(row.legacy_org) or path_segment_problem(row.legacy_env):
            issues.append(f"{row.legacy_slug!r} is not a legacy <org>/<env> name: "
                          f"{path_segment_problem(row.legacy_org) or path_segment_problem(row.legacy_env)}")
        if not ORGANIZATION_NAME.match(row.new_org):
            issues.append(f"new organization {row.new_org!r} is not a valid name (letters, digits, '-', '_')")
        problem = workspace_name_problem(row.workspace)
        if problem:
            issues.append(f"{problem}; edit the workspace column")
        targets.setdefault((row.new_org, row.workspace.lower()), []).append(row.legacy_slug)
    for (org, _), slugs in targets.items():
        if len(slugs) > 1:
            for slug in slugs:
                others = ", ".join(s for s in slugs if s != slug)
                found[slug].append(f"collides with {others} on one workspace name in {org}; "
                                   f"give one of them another workspace name")
    return found


def write_csv(rows: Iterable[MappingRow], path: str | Path | None = None) -> str:
    """Write the mapping as CSV (to `path` if given); returns the CSV text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    text = buffer.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def read_csv(path_or_text: str | Path) -> list[MappingRow]:
    """Read and validate a mapping CSV (a path, or the CSV text itself).

    Raises:
        MappingError: missing columns, empty cells, or any row problem (see `problems`); the
            message lists every problem with its line number. Nothing is returned partially.
    """
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text):
        path = Path(path_or_text)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise MappingError(f"cannot read the mapping file {path}: {exc.strerror}.") from exc
        except UnicodeDecodeError as exc:
            raise MappingError(f"the mapping file {path} is not UTF-8 text (byte {exc.start} cannot be read): save "
                               f"it as UTF-8 (CSV UTF-8 in a spreadsheet) and run again.") from None
    else:
        text = str(path_or_text)
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing and set(CSV_COLUMNS) <= {f.strip().strip('"') for f in text.partition("\n")[0].split(";")}:
            raise MappingError("the mapping CSV is separated by semicolons (a spreadsheet's regional CSV setting), "
                               "not commas; save it as comma-separated CSV UTF-8 and run again.")
        if missing:
            raise MappingError(f"the mapping CSV lacks the column(s) {', '.join(missing)}; "
                               f"its header must be: {','.join(CSV_COLUMNS)}.")
        rows, errors, line_of = [], [], {}
        for record in reader:
            line_number = reader.line_num  # physical line (a quoted cell may span lines)
            values = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
            if [values.get(c, "") for c in CSV_COLUMNS] == list(CSV_COLUMNS):
                errors.append(f"line {line_number} repeats the header (two files pasted together?); remove it")
                continue
            empty = [c for c in CSV_COLUMNS if not values.get(c)]
            if empty:
                errors.append(f"line {line_number}: empty {', '.join(empty)}")
                continue
            row = MappingRow(**{f.name: values[f.name] for f in fields(MappingRow)})
            if row.legacy_slug in line_of:
                same = "" if row in rows else " with other values"
                errors.append(f"line {line_number} ({row.legacy_slug}) repeats line {line_of[row.legacy_slug]}{same}; "
                              f"keep one row per environment")
                continue
            line_of[row.legacy_slug] = line_number
            rows.append(row)
    except csv.Error as exc:
        raise MappingError(f"the mapping CSV is malformed: {exc}.") from exc
    for slug, issues in problems(rows).items():
        errors += [f"line {line_of[slug]} ({slug}): {issue}" for issue in issues]
    if errors:
        raise MappingError("the mapping CSV has problems, nothing was done: " + "; ".join(errors) + ".")
    if not rows:
        raise MappingError("the mapping CSV has no rows; write one with the inventory notebook (00).")
    return rows
