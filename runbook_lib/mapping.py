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

Besides the four naming columns it carries the facts about each environment that the legacy API does not
give (`FACT_COLUMNS`): the legacy host documented only the states list, the state, and the latest
configuration version's `metadata` and non-sensitive Terraform variables; the rest was in its UI. The
survey (notebook 00) fills what the host shows (Terraform version from the state, repository and branch from
the configuration's `remote_slug` and `git_branch`) and writes `?` where only the operator can know (the
working directory, sensitive and environment variables, teams: read them off the environment's pages in the
legacy UI). `?` means "not known yet" and stops the steps that need the fact; an empty cell means "none"
(no repository, the repository's root, no such variables, no teams).

- `vcs_repo`: `org/repo`; `vcs_branch`: empty for the repository's default branch; `working_directory`: a
  relative path, empty for the root.
- `sensitive_variables`: names separated by `;`, `env:NAME` for an environment variable. Their values never
  go into the file: step 2 takes each from `$TFE_RUNBOOK_VAR__<workspace>__<NAME>` (`secret_variable`;
  scoped to one workspace, so no value reaches another environment) or leaves it for the operator to enter.
- `env_variables`: non-sensitive environment variables as `NAME=value`, separated by `;` (a value holding
  `;` cannot be written here: enter that variable in the workspace by hand).
- `teams`: `name:access[member,member]; ...` with access `read`, `write` or `admin`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

from runbook_lib.errors import MappingError

UNKNOWN = "?"
WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,90}$")
ORGANIZATION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
LEGACY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
MAX_WORKSPACE_NAME = 90
_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")
NAME_COLUMNS = ("legacy_org", "legacy_env", "new_org", "workspace")
FACT_COLUMNS = ("terraform_version", "vcs_repo", "vcs_branch", "working_directory", "sensitive_variables",
                "env_variables", "teams")
CSV_COLUMNS = NAME_COLUMNS + FACT_COLUMNS
_TF_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPO = re.compile(r"^[^/\s]+/[^/\s]+$")
_TEAM = re.compile(r"^([A-Za-z0-9_.\- ]+):(read|write|admin)\[([^\]]*)\]$")
SECRET_PREFIX = "TFE_RUNBOOK_VAR_"


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
class Variable:
    """A variable the legacy API does not show: named in the mapping (`sensitive_variables`, `env_variables`).

    Attributes:
        key, category: the name, `terraform` or `env`.
        sensitive: True for a sensitive variable (its value comes from the operator's environment).
        value: a non-sensitive environment variable's value, as the mapping gives it (None when sensitive).
    """

    key: str
    category: str
    sensitive: bool
    value: str | None = None


@dataclass(frozen=True)
class Team:
    """A legacy team with access to the environment, as the mapping names it."""

    name: str
    access: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class MappingRow:
    """One legacy environment, the workspace it moves to, and the facts about it the legacy API does not give.

    The fact fields hold the CSV text (`UNKNOWN`, "?", until someone says; see the module docstring); the
    properties parse it.
    """

    legacy_org: str
    legacy_env: str
    new_org: str
    workspace: str
    terraform_version: str = UNKNOWN
    vcs_repo: str = UNKNOWN
    vcs_branch: str = UNKNOWN
    working_directory: str = UNKNOWN
    sensitive_variables: str = UNKNOWN
    env_variables: str = UNKNOWN
    teams: str = UNKNOWN

    @property
    def legacy_slug(self) -> str:
        return f"{self.legacy_org}/{self.legacy_env}"

    @property
    def workspace_slug(self) -> str:
        return f"{self.new_org}/{self.workspace}"

    def unknown(self, *columns: str) -> list[str]:
        """The fact columns (of `columns`, default all) still `?`."""
        return [c for c in (columns or FACT_COLUMNS) if getattr(self, c).strip() == UNKNOWN]

    @property
    def hidden_variables(self) -> list[Variable]:
        """The sensitive and the environment variables the mapping names (see `fact_problems` for syntax)."""
        out = []
        for name in _items(self.sensitive_variables):
            category, _, key = name.rpartition(":")
            out.append(Variable(key.strip(), "env" if category.strip() == "env" else "terraform", True))
        for item in _items(self.env_variables):
            key, _, value = item.partition("=")
            out.append(Variable(key.strip(), "env", False, value))
        return out

    @property
    def team_list(self) -> list[Team]:
        """The teams the mapping names, in its order."""
        out = []
        for item in _items(self.teams):
            found = _TEAM.match(item)
            if found:
                members = tuple(m.strip() for m in found.group(3).split(",") if m.strip())
                out.append(Team(found.group(1).strip(), found.group(2), members))
        return out


def _items(cell: str) -> list[str]:
    """The `;`-separated items of a fact cell (none for `?` or empty)."""
    if cell.strip() in ("", UNKNOWN):
        return []
    return [part.strip() for part in cell.split(";") if part.strip()]


def fact_problems(row: MappingRow) -> list[str]:
    """What is malformed in a row's fact columns (`?` is not a problem here: it is "not known yet")."""
    issues = []
    repo = row.vcs_repo.strip()
    if repo not in ("", UNKNOWN) and not _REPO.match(repo):
        issues.append(f"vcs_repo {repo!r} is not org/repo")
    wd = row.working_directory.strip()
    if wd not in ("", UNKNOWN) and (wd.startswith("/") or ".." in wd.split("/")):
        issues.append(f"working_directory {wd!r} must be a relative path inside the repository")
    for name in _items(row.sensitive_variables):
        category, _, key = name.rpartition(":")
        pattern = _ENV_VAR_NAME if category.strip() == "env" else _TF_VAR_NAME
        if category.strip() not in ("", "env") or not pattern.match(key.strip()):
            issues.append(f"sensitive_variables: {name!r} is not a variable name (write NAME, or env:NAME for an "
                          f"environment variable)")
    for item in _items(row.env_variables):
        key, equals, _ = item.partition("=")
        if not equals or not _ENV_VAR_NAME.match(key.strip()):
            issues.append(f"env_variables: {item!r} is not NAME=value")
    for item in _items(row.teams):
        if not _TEAM.match(item):
            issues.append(f"teams: {item!r} is not name:access[member,...] with access read, write or admin")
    return issues


def secret_variable(row: MappingRow, key: str, prefix: str = SECRET_PREFIX) -> str:
    """The environment variable that holds a sensitive value for this row's workspace:
    `TFE_RUNBOOK_VAR__<workspace>__<key>`, the workspace's `-` written as `_` (a shell cannot export a name
    with `-`). One value per workspace: a value meant for one environment never reaches another."""
    return f"{prefix.rstrip('_')}__{row.workspace.replace('-', '_')}__{key}"


def propose(legacy_org: str, legacy_envs: Iterable[str], new_org: str) -> list[MappingRow]:
    """Default mapping rows: same organization target, workspace names by `workspace_name_for`."""
    return [MappingRow(legacy_org, env, new_org, workspace_name_for(env)) for env in legacy_envs]


def problems(rows: Iterable[MappingRow]) -> dict[str, list[str]]:
    """Per legacy environment slug, what is wrong with its row (empty list: fine).

    Checks: organization and environment name syntax, workspace name validity, duplicate legacy
    environments, collisions (two environments, one workspace of one organization, or one name for their
    secret variables), and the syntax of the fact columns (`fact_problems`).
    """
    rows = list(rows)
    found: dict[str, list[str]] = {r.legacy_slug: [] for r in rows}
    targets: dict[tuple[str, str], list[str]] = {}
    stems: dict[str, list[MappingRow]] = {}
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
        issues += fact_problems(row)
        targets.setdefault((row.new_org, row.workspace.lower()), []).append(row.legacy_slug)
        stems.setdefault(row.workspace.replace("-", "_"), []).append(row)
    for (org, _), slugs in targets.items():
        if len(slugs) > 1:
            for slug in slugs:
                others = ", ".join(s for s in slugs if s != slug)
                found[slug].append(f"collides with {others} on one workspace name in {org}; "
                                   f"give one of them another workspace name")
    for stem, same in stems.items():
        if len({r.workspace for r in same}) > 1:  # one workspace name is a collision, flagged above
            for row in same:
                others = ", ".join(r.legacy_slug for r in same if r.workspace != row.workspace)
                found[row.legacy_slug].append(f"its workspace shares the names of the variables that hold sensitive "
                                              f"values (TFE_RUNBOOK_VAR__{stem}__*) with {others}; give one of them "
                                              f"another workspace name")
    return found


def merge(existing: Iterable[MappingRow], proposed: Iterable[MappingRow]) -> list[MappingRow]:
    """A survey's rows merged into a mapping the operator may have edited: nothing they wrote is lost.

    An environment already in `existing` keeps its row (names and facts); only its `?` facts take the
    survey's value where the survey has one. New environments are added; environments the survey no
    longer lists keep their rows (the operator removes them).
    """
    by_slug = {row.legacy_slug: row for row in proposed}
    out = []
    for row in existing:
        fresh = by_slug.pop(row.legacy_slug, None)
        if fresh is not None:
            filled = {c: getattr(fresh, c) for c in row.unknown() if getattr(fresh, c) != UNKNOWN}
            row = replace(row, **filled)
        out.append(row)
    return out + list(by_slug.values())


#: How a cell begins that a spreadsheet would run as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows as text (OWASP's rule for CSV injection).

    A value that begins like a formula (`=`, `+`, `-`, `@`, a tab, a carriage return) gets a leading `'`,
    which spreadsheets take as "this cell is text" and do not show; so does a value that already begins
    with quotes before such a character, so that `csv_value` gives every value back exactly.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.lstrip("'").startswith(FORMULA_STARTS) else text


def csv_value(cell: str) -> str:
    """The value `csv_cell` wrote: one leading `'` taken off a cell that begins like a formula behind it."""
    return cell[1:] if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS) else cell


def unusable_names(rows: Iterable[MappingRow]) -> dict[str, str]:
    """Rows whose legacy names cannot name an environment in the runbook's requests (not a legacy name, a
    path segment such as `..`), by slug, with the reason: `read_csv` would refuse them, and no edit of
    the mapping can fix a name the legacy host gave."""
    found = {}
    for row in rows:
        for name in (row.legacy_org, row.legacy_env):
            problem = (None if LEGACY_NAME.match(name) else f"{name!r} is not a legacy name (letters, digits, "
                       f"'-', '_', '.')") or path_segment_problem(name)
            if problem:
                found[row.legacy_slug] = problem
                break
    return found


def write_csv(rows: Iterable[MappingRow], path: str | Path | None = None) -> str:
    """Write the mapping as CSV (to `path` if given); returns the CSV text.

    Every cell is written so a spreadsheet shows it as text (`csv_cell`), whatever its column. Names are
    checked here as `read_csv` checks them: a row whose legacy names cannot be used (`unusable_names`) is
    left out, so the file the survey writes is one `read_csv` accepts; the survey lists such an
    environment as not ready, with the reason. Workspace names and collisions stay for the operator to
    edit.
    """
    rows = list(rows)
    unusable = unusable_names(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        if row.legacy_slug not in unusable:
            record = asdict(row)
            writer.writerow([csv_cell(record[column]) for column in CSV_COLUMNS])
    text = buffer.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def facts_for(row: MappingRow, path: str | Path) -> MappingRow:
    """`row` with the facts the mapping file at `path` holds for its legacy environment.

    Only that environment's line is read and checked (a batch checks the whole file when it starts; a step
    of a 5,000-row estate must not parse 5,000 rows).

    Returns:
        The file's row for `row.legacy_slug`; `row` itself (facts unknown) when there is no file or no line.

    Raises:
        MappingError: the file cannot be read, the line is malformed, or it maps the environment to another
            workspace than `row` names.
    """
    path = Path(path)
    if not path.is_file():
        return row
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            for record in reader:
                values = {k.strip(): csv_value((v or "").strip()) for k, v in record.items() if k is not None}
                if values.get("legacy_org") != row.legacy_org or values.get("legacy_env") != row.legacy_env:
                    continue
                found = MappingRow(**{c: values.get(c, "") for c in NAME_COLUMNS},
                                   **{c: values[c] if c in header else UNKNOWN for c in FACT_COLUMNS})
                break
            else:
                return row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MappingError(f"cannot read the mapping file {path}: {exc}.") from exc
    if found.workspace_slug != row.workspace_slug:
        raise MappingError(f"the mapping file {path} maps {row.legacy_slug} to {found.workspace_slug}, not "
                           f"{row.workspace_slug}: set the workspace parameter to match, or edit the mapping.")
    issues = fact_problems(found)
    if issues:
        raise MappingError(f"the mapping file {path} has problems in the line of {row.legacy_slug}: "
                           + "; ".join(issues) + ".")
    return found


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
        missing = [c for c in NAME_COLUMNS if c not in header]
        if missing and set(NAME_COLUMNS) <= {f.strip().strip('"') for f in text.partition("\n")[0].split(";")}:
            raise MappingError("the mapping CSV is separated by semicolons (a spreadsheet's regional CSV setting), "
                               "not commas; save it as comma-separated CSV UTF-8 and run again.")
        if missing:
            raise MappingError(f"the mapping CSV lacks the column(s) {', '.join(missing)}; "
                               f"its header must be: {','.join(CSV_COLUMNS)}.")
        # A mapping written before the fact columns existed reads with every fact unknown ("?").
        rows, errors, line_of = [], [], {}
        for record in reader:
            line_number = reader.line_num  # physical line (a quoted cell may span lines)
            values = {k.strip(): csv_value((v or "").strip()) for k, v in record.items() if k is not None}
            if [values.get(c, "") for c in NAME_COLUMNS] == list(NAME_COLUMNS):
                errors.append(f"line {line_number} repeats the header (two files pasted together?); remove it")
                continue
            empty = [c for c in NAME_COLUMNS if not values.get(c)]
            if empty:
                errors.append(f"line {line_number}: empty {', '.join(empty)}")
                continue
            row = MappingRow(**{c: values[c] for c in NAME_COLUMNS},
                             **{c: values[c] if c in header else UNKNOWN for c in FACT_COLUMNS})
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
