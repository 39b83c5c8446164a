"""Terraform plans as a table of resource changes, and the "no changes" verdict the runbook gates on.

Terraform 1.x: the JSON of `terraform show -json <planfile>`. Terraform 0.11 has no JSON plan, so its
plan text (with or without colors) is parsed into the same table and cross-checked against its own
summary line. Anything that cannot be read for certain raises PlanError: a plan that cannot be
understood is never taken as "no changes".

Table columns (`CHANGE_COLUMNS`), one row per resource instance (and per deposed object):
    address          `module.child.null_resource.b`, `null_resource.counted[1]`
    action           create | update | delete | replace | read | no-op | forget
    module, mode, type, name, index
    provider         local name (`null`, `terraform`; 0.11 text: inferred from the type, as 0.11 did)
    provider_address as terraform reports it (1.x only)
    action_reason    terraform's reason (`replace_because_cannot_update`, `replace_because_tainted`,
                     `replace_by_request`, `read_because_config_unknown`, ...); 0.11 markers map to the same
    replace_paths    attributes forcing a replacement, `triggers` (1.x only)
    previous_address where a moved resource was (1.x only)
    deposed          the change is to a deposed object
    importing        the change imports the object (1.x only)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from runbook_lib.errors import PlanError
from runbook_lib.jsontext import load_json

CHANGE_COLUMNS = ["address", "action", "module", "mode", "type", "name", "index", "provider", "provider_address",
                  "action_reason", "replace_paths", "previous_address", "deposed", "importing"]
# Actions that leave infrastructure and state as they are: the "no changes" verdict ignores them.
QUIET_ACTIONS = frozenset({"no-op", "read"})
_ACTIONS = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("forget",): "forget",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = (r"(?P<address>(?P<module>(?:module\.[A-Za-z0-9_-]+\.)*)(?P<data>data\.)?"
            r"(?P<type>[A-Za-z0-9_-]+)\.(?P<name>[A-Za-z0-9_-]+)(?:\[(?P<index>\d+)\])?)")
# 0.11 resource header: "  + addr", "  ~ addr", "  - addr", " <= data.addr", "-/+ addr (new resource required)",
# each optionally followed by " (tainted)" / " (deposed)" markers.
_V011_LINE = re.compile(r"^\s*(?P<symbol>-/\+|\+/-|<=|\+|-|~)\s+" + _ADDRESS +
                        r"(?P<markers>(?:\s+\((?:tainted|deposed|new resource required)\))*)\s*$")
_V011_SYMBOLS = {"+": "create", "-": "delete", "~": "update", "<=": "read", "-/+": "replace", "+/-": "replace"}
_SUMMARY = re.compile(r"^\s*Plan: (\d+) to add, (\d+) to change, (\d+) to destroy\.", re.MULTILINE)
_NO_CHANGES = re.compile(r"^\s*No changes\. (?:Infrastructure is up-to-date|Your infrastructure matches "
                         r"the configuration)\.", re.MULTILINE)
_ACTIONS_HEADER = re.compile(r"^\s*Terraform will perform the following actions:\s*$", re.MULTILINE)
_ERROR_LINE = re.compile(r"^\s*Error[: ]", re.MULTILINE)


@dataclass(frozen=True, eq=False)
class Plan:
    """A parsed plan.

    Attributes:
        changes: DataFrame of resource changes (`CHANGE_COLUMNS`), no-op and read rows included.
        source: "json" (Terraform 1.x `show -json`) or "text" (Terraform 0.11 plan output).
        additions: resources to add, as terraform counts them (a replacement is one add and one destroy).
        changes_count: resources to change in place.
        destructions: resources to destroy.
        terraform_version: the terraform that made the plan (JSON only; None for text).
        output_changes: names of root outputs whose value changes (JSON only); not part of `has_changes`,
            as Terraform itself still reports such a plan's infrastructure as unchanged.
        complete: False when terraform said the plan is partial (more changes would follow an apply).
    """

    changes: pd.DataFrame
    source: str
    additions: int
    changes_count: int
    destructions: int
    terraform_version: str | None = None
    output_changes: tuple[str, ...] = ()
    complete: bool = True

    @property
    def has_changes(self) -> bool:
        """Whether applying the plan would change anything: any action but no-op and read, any import,
        or an incomplete plan (a partial plan never proves "no changes")."""
        if not self.complete:
            return True
        if self.changes.empty:
            return False
        return bool((~self.changes["action"].isin(QUIET_ACTIONS) | self.changes["importing"]).any())

    @property
    def pending(self) -> pd.DataFrame:
        """Only the rows that change something (not no-op, not read)."""
        mask = ~self.changes["action"].isin(QUIET_ACTIONS) | self.changes["importing"]
        return self.changes[mask].reset_index(drop=True)

    @property
    def summary(self) -> str:
        """The counts as Terraform prints them, e.g. `Plan: 1 to add, 0 to change, 1 to destroy.`"""
        return f"Plan: {self.additions} to add, {self.changes_count} to change, {self.destructions} to destroy."

    def __repr__(self) -> str:
        return (f"Plan(source={self.source!r}, has_changes={self.has_changes}, additions={self.additions}, "
                f"changes_count={self.changes_count}, destructions={self.destructions}, rows={len(self.changes)})")


def parse_plan(data: str | bytes) -> Plan:
    """Parse either kind of plan: JSON (when it starts with `{`) or Terraform 0.11 text.

    Args:
        data: `terraform show -json` output, or 0.11 plan text.

    Returns:
        The parsed plan.

    Raises:
        PlanError: see `parse_plan_json` and `parse_plan_text`.
    """
    text = _as_text(data)
    if text.lstrip().startswith("{"):
        return parse_plan_json(text)
    return parse_plan_text(text)


def read_plan(path: str) -> Plan:
    """Read a plan file (`.json` from `show -json`, anything else as 0.11 text) and parse it.

    Args:
        path: the file.

    Returns:
        The parsed plan.

    Raises:
        PlanError: unreadable file, or a plan that cannot be parsed.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PlanError(f"cannot read the plan file {path!r}: {exc.strerror}.") from exc
    return parse_plan(data)


# ----------------------------------------------------------------------------------------------------------
# Terraform 1.x JSON

def parse_plan_json(data: str | bytes) -> Plan:
    """Parse the JSON of `terraform show -json <planfile>` (Terraform 0.12 and later).

    Args:
        data: the JSON text or bytes.

    Returns:
        The plan; `changes` holds one row per entry of `resource_changes`.

    Raises:
        PlanError: empty, not JSON, not a plan (e.g. a state's JSON), an unsupported format version,
            an errored plan, or an entry with an unknown list of actions.
    """
    doc = load_json(_as_text(data), PlanError,
                    empty="the plan JSON is empty; run `terraform show -json <planfile>` and pass its output.",
                    invalid="the plan is not valid JSON ({where}); it is probably truncated: "
                            "run `terraform show -json <planfile>` again.")
    if not isinstance(doc, dict):
        raise PlanError(f"the plan JSON is a {type(doc).__name__}, not an object; it is not `terraform show -json` "
                        "output of a plan.")
    version = doc.get("format_version")
    if not isinstance(version, str):
        raise PlanError("the JSON has no 'format_version', so it is not `terraform show -json` output; "
                        "pass the JSON of a saved plan file.")
    if version.split(".", 1)[0] != "1":
        raise PlanError(f"plan JSON format version {version} is not supported (only 1.x); "
                        "use a Terraform 0.12-1.x binary to show the plan.")
    if "planned_values" not in doc and "resource_changes" not in doc:
        raise PlanError("the JSON is a state, not a plan (no 'planned_values' or 'resource_changes'); "
                        "run `terraform show -json` on the saved plan file, not on the state.")
    if doc.get("errored") is True:
        raise PlanError("terraform reports that this plan errored, so its list of changes is incomplete; "
                        "fix the error shown by `terraform plan` and plan again.")
    # Terraform omits resource_changes when the configuration has no resources at all.
    entries = doc.get("resource_changes")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise PlanError("the plan's 'resource_changes' is not a list; the JSON is not a valid plan.")
    rows = [_json_row(position, entry) for position, entry in enumerate(entries)]
    frame = _frame(rows)
    outputs = doc.get("output_changes")
    outputs = {} if outputs is None else outputs
    if not isinstance(outputs, dict):
        raise PlanError("the plan's 'output_changes' is not an object; the JSON is not a valid plan.")
    output_changes = tuple(sorted(name for name, change in outputs.items()
                                  if isinstance(change, dict) and _output_changes(change)))
    additions, changes_count, destructions = _counts(frame)
    return Plan(changes=frame, source="json", additions=additions, changes_count=changes_count,
                destructions=destructions, terraform_version=doc.get("terraform_version"),
                output_changes=output_changes, complete=doc.get("complete", True) is not False)


def _json_row(position: int, entry: Any) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
        raise PlanError(f"resource change #{position} of the plan has no 'address'; the JSON is not a valid plan.")
    address = entry["address"]
    change = entry.get("change")
    actions = change.get("actions") if isinstance(change, dict) else None
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise PlanError(f"the plan's change of {address} has no list of 'actions'; the JSON is not a valid plan.")
    action = _ACTIONS.get(tuple(actions))
    if action is None:
        raise PlanError(f"the plan's change of {address} has actions {actions}, which this runbook does not know; "
                        "refusing to guess whether it changes anything.")
    provider_address = entry.get("provider_name")
    replace_paths = change.get("replace_paths")
    return {
        "address": address,
        "action": action,
        "module": entry.get("module_address") or "",
        "mode": entry.get("mode"),
        "type": entry.get("type"),
        "name": entry.get("name"),
        "index": entry.get("index"),
        "provider": provider_address.rsplit("/", 1)[-1] if isinstance(provider_address, str) else None,
        "provider_address": provider_address,
        "action_reason": entry.get("action_reason"),
        "replace_paths": _paths(replace_paths) if replace_paths else None,
        "previous_address": entry.get("previous_address"),
        "deposed": bool(entry.get("deposed")),
        "importing": change.get("importing") is not None,
    }


def _paths(paths: Any) -> str:
    """Render replace_paths ([["triggers"], ["tags", "Name"]]) as `triggers, tags.Name`."""
    rendered = []
    for path in paths if isinstance(paths, list) else [paths]:
        steps = path if isinstance(path, list) else [path]
        rendered.append(".".join(str(step) for step in steps))
    return ", ".join(rendered)


def _output_changes(change: dict) -> bool:
    actions = change.get("actions")
    return isinstance(actions, list) and tuple(actions) not in (("no-op",), ("read",))


# ----------------------------------------------------------------------------------------------------------
# Terraform 0.11 text

def parse_plan_text(text: str | bytes) -> Plan:
    """Parse the plan text Terraform 0.11 prints (`terraform plan`, with or without `-no-color`).

    The per-resource lines (`+`, `-`, `~`, `-/+`, `<=`, with `(new resource required)`, `(tainted)`,
    `(deposed)`) become the table; their counts must agree with the `Plan: X to add, Y to change,
    Z to destroy.` line, or there must be none and the text must say `No changes. Infrastructure is
    up-to-date.` (Terraform 1.x's `No changes. Your infrastructure matches the configuration.` is accepted
    too; any other 1.x plan text is refused, as its resource lines differ: use `parse_plan_json`).

    Args:
        text: the plan output (str, or bytes in UTF-8); ANSI color codes are removed first.

    Returns:
        The plan (source "text").

    Raises:
        PlanError: empty text, no summary and no "No changes." sentence (e.g. an error instead of a plan),
            both at once, several summaries, or resource lines that disagree with the summary.
    """
    clean = _ANSI.sub("", _as_text(text)).replace("\r\n", "\n")
    if not clean.strip():
        raise PlanError("the plan text is empty; pass the full output of `terraform plan`.")
    summaries = _SUMMARY.findall(clean)
    no_changes = _NO_CHANGES.search(clean) is not None
    if len(summaries) > 1:
        raise PlanError(f"the text holds {len(summaries)} plan summaries; pass the output of one `terraform plan`.")
    if summaries and no_changes:
        raise PlanError("the text says both 'No changes.' and 'Plan: ...'; pass the output of one `terraform plan`.")
    if not summaries and not no_changes:
        hint = (" it reports an error instead: fix it and plan again." if _ERROR_LINE.search(clean)
                else " it may be truncated or not a plan: pass the full output of `terraform plan`.")
        raise PlanError("the plan text has neither a 'Plan: X to add, Y to change, Z to destroy.' line nor "
                        "'No changes. Infrastructure is up-to-date.';" + hint)
    rows = _text_rows(clean)
    frame = _frame(rows)
    derived = _counts(frame)
    if no_changes:
        if derived != (0, 0, 0):
            count = len(frame)
            raise PlanError(f"the text says 'No changes.' but lists {count} resource "
                            f"change{'' if count == 1 else 's'}; it is not the output of one `terraform plan`.")
        return Plan(changes=frame, source="text", additions=0, changes_count=0, destructions=0)
    stated = tuple(int(n) for n in summaries[0])
    if stated != derived:
        raise PlanError(f"the plan summary says {stated[0]} to add, {stated[1]} to change, {stated[2]} to destroy, "
                        f"but its resource lines add up to {derived[0]}, {derived[1]}, {derived[2]}; the text is "
                        "incomplete or not from Terraform 0.11: use `show -json` for 0.12 and later.")
    return Plan(changes=frame, source="text", additions=stated[0], changes_count=stated[1], destructions=stated[2])


def _text_rows(clean: str) -> list[dict]:
    # Resource lines only appear after this header; before it, the legend ("  + create") looks like one.
    header = _ACTIONS_HEADER.search(clean)
    if header is None:
        return []
    body = clean[header.end():]
    summary = _SUMMARY.search(body)
    if summary is not None:
        body = body[:summary.start()]
    rows = []
    for line in body.splitlines():
        match = _V011_LINE.match(line)
        if match is None:
            continue
        markers = match.group("markers")
        action = _V011_SYMBOLS[match.group("symbol")]
        reason = None
        if action == "replace":
            reason = "replace_because_tainted" if "(tainted)" in markers else "replace_because_cannot_update"
        type_ = match.group("type")
        index = match.group("index")
        rows.append({
            "address": match.group("address"),
            "action": action,
            "module": match.group("module").rstrip("."),
            "mode": "data" if match.group("data") else "managed",
            "type": type_,
            "name": match.group("name"),
            "index": int(index) if index is not None else None,
            # 0.11 names no provider in a plan; it picked the provider by the type's prefix, and so does this.
            "provider": type_.split("_", 1)[0],
            "provider_address": None,
            "action_reason": reason,
            "replace_paths": None,
            "previous_address": None,
            "deposed": "(deposed)" in markers,
            "importing": False,
        })
    return rows


# ----------------------------------------------------------------------------------------------------------
# Shared

def _as_text(data: str | bytes) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(f"the plan is not UTF-8 text (undecodable byte at offset {exc.start}); "
                            "pass terraform's output as it was printed.") from exc
    if isinstance(data, str):
        return data
    raise PlanError(f"a plan must be given as text or bytes, not {type(data).__name__}.")


def _frame(rows: list[dict]) -> pd.DataFrame:
    # Built column by column with explicit dtypes: object columns keep None as None (not NaN) and int and
    # string (for_each) index keys as they are; the flags stay bool even when there are no rows.
    columns = {name: pd.Series([row[name] for row in rows], dtype=object) for name in CHANGE_COLUMNS}
    for flag in ("deposed", "importing"):
        columns[flag] = pd.Series([row[flag] for row in rows], dtype=bool)
    return pd.DataFrame(columns, columns=CHANGE_COLUMNS)


def _counts(frame: pd.DataFrame) -> tuple[int, int, int]:
    """(add, change, destroy) as Terraform counts them: a replacement is one add and one destroy."""
    actions = frame["action"].value_counts()
    replace = int(actions.get("replace", 0))
    return (int(actions.get("create", 0)) + replace, int(actions.get("update", 0)),
            int(actions.get("delete", 0)) + replace)
