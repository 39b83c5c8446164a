"""The auditor's page of a batch: `summary.html`, a view of `manifest.json`.

`write_batch_evidence` (called by the batch runner at the end of every run) collects the facts of the
batch from the ledger and the audit trail into the manifest, then renders `summary.html` from the
manifest alone (`render`, the template `templates/summary.html.j2`), so the page can hold nothing the
manifest does not. The facts:

- who ran it (operator, host, runbook version and git commit), in which mode, and when: the first and
  last step of the ledger (every run of a resumed batch) beside this run's own start and end;
- per environment and step: outcome (in plan mode "plan ok" or "would refuse", never "passed"), absolute
  start and finish, duration, the failure's reason, the executed notebook and its HTML copy;
- per step, its effective parameters (the notebook's defaults and the values the batch gave), read from
  the executed notebooks;
- per environment, the evidence itself: the legacy state's serial, lineage and sha256 and the migrated
  state's, and whether they are identical; the workspace, its id and its page on the TFE host; the
  verifying run (linked), its commit and "no changes"; the teams step 2 proved; the legacy VCS unlink;
  the deletion time, the confirmation text and who gave it; the state backups' checksums, written to
  `<org>__<env>/backups.sha256` (the backups themselves stay out of the archive: they may hold the
  infrastructure's secrets).

The page is one self-contained HTML file (inline CSS, the timeline as inline SVG: no script, no
download, it prints as it shows) readable at 1400 px. It reads the manifest and nothing of the steps'
logic: every value it prints is escaped by the template, and links pass `templates.href`.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from runbook_lib import catalog
from runbook_lib.catalog import RUN
from runbook_lib.display import outcome_label
from runbook_lib.templates import fragment, render as render_template

SUMMARY = "summary.html"
BACKUP_CHECKSUMS = "backups.sha256"
#: A step's outcome (in its mode's words, `display.outcome_label`) -> its colour on the page.
OUTCOME_COLOURS = {"passed": "#c8e6c9", "plan ok": "#bbdefb", "failed": "#ffcdd2", "would refuse": "#ffcdd2",
                   "refused": "#ffe0b2", "waiting": "#ffecb3", "skipped": "#e0e0e0", "running": "#fff9c4"}
BAR_COLOURS = {"passed": "#43a047", "plan ok": "#1e88e5", "failed": "#e53935", "would refuse": "#e53935",
               "refused": "#fb8c00", "waiting": "#ffb300", "skipped": "#9e9e9e", "running": "#fdd835"}
#: The timeline's legend: an apply batch's outcomes (waiting: for the operator's hand), a plan batch's.
LEGEND = {False: ("passed", "failed", "refused", "waiting", "skipped", "running"),
          True: ("plan ok", "would refuse", "failed", "refused", "skipped", "running")}
#: Kept for callers of the bare page (`write_summary_html`): ledger status -> colour.
STEP_OUTCOME_COLOURS = {k: v for k, v in OUTCOME_COLOURS.items() if k in ("passed", "failed", "refused", "skipped",
                                                                          "running")}
#: Parameters the batch sets per environment and run (`batch.BATCH_SET_PARAMETERS`): the page shows them
#: elsewhere (the mapping's names, the mode, the folders), not among a step's parameters.
PER_ENVIRONMENT_PARAMETERS = ("legacy_org", "legacy_env", "new_org", "workspace", "mode", "audit_root", "ledger_path",
                              "batch_id", "confirm", "interactive")
#: A failed step's reason in its cell of the matrix (the whole of it is in the environment's evidence).
REASON_IN_CELL = 180


def write_summary_html(batch_dir: str | Path, matrix: Mapping[str, Mapping[str, str]], steps: Iterable[str],
                       title: str = "Migration batch") -> Path:
    """Write a bare `summary.html`: one row per environment, one column per step, coloured by outcome.

    For a batch directory without a ledger; a batch's own page comes from `write_batch_evidence`.

    Args:
        matrix: environment -> step -> status (passed, failed, refused, skipped, running, or absent).
        steps: column order.
    """
    steps = list(steps)
    rows = [(environment, [(matrix[environment].get(step, ""),
                            STEP_OUTCOME_COLOURS.get(matrix[environment].get(step, ""), "#ffffff")) for step in steps])
            for environment in sorted(matrix)]
    page = render_template("summary_bare.html.j2", title=title, batch=Path(batch_dir).name, steps=steps, rows=rows)
    target = Path(batch_dir) / SUMMARY
    target.write_text(page, encoding="utf-8")
    return target


# --- facts --------------------------------------------------------------------------------------------------

def _step_facts(batch_dir: Path, run: Any) -> dict[str, Any]:
    notebook = run.notebook_path
    page = str(Path(notebook).with_suffix(".html")) if notebook else None
    return {"status": run.status, "started_at": run.started_at, "finished_at": run.finished_at,
            "duration_s": round(run.duration_s, 2) if run.duration_s is not None else None,
            "notebook": notebook, "html": page if page and (batch_dir / page).is_file() else None,
            "error": run.error, "waits": bool((run.evidence or {}).get("waits"))}


def write_backup_checksums(batch_dir: Path, environment: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Write `<org>__<env>/backups.sha256` (sha256sum format) from the backups' records in `state/`.

    Returns:
        The file's path relative to the batch (None when there are no backups) and the records
        (file, sha256, serial, lineage, taken_at).
    """
    from runbook_lib.audit import STATE_DIR, env_dirname, sha256_file

    env_dir = batch_dir / env_dirname(environment)
    records = []
    for sidecar in sorted((env_dir / STATE_DIR).glob("*.json")):
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        state = sidecar.with_suffix(".tfstate")
        if "sha256" not in record or not state.is_file():
            continue
        # The record says what was written; the file says what is there now: both must agree.
        actual = sha256_file(state)
        records.append({"file": f"{STATE_DIR}/{state.name}", "sha256": actual, "recorded_sha256": record["sha256"],
                        "serial": record.get("serial"), "lineage": record.get("lineage"),
                        "taken_at": record.get("taken_at")})
    if not records:
        return None, []
    target = env_dir / BACKUP_CHECKSUMS
    target.write_text("".join(f"{r['sha256']}  {r['file']}\n" for r in records), encoding="utf-8")
    return target.relative_to(batch_dir).as_posix(), records


def environment_evidence(runs: Mapping[str, Any], workspace: str | None) -> dict[str, Any]:
    """The auditor's facts of one environment from its latest ledger row per step (name -> StepRun)."""
    def ev(step: str) -> dict[str, Any]:
        run = runs.get(step)
        return dict(run.evidence) if run is not None and run.status == "passed" else {}

    two, three, four, five, six = (ev(catalog.CREATE_WORKSPACES), ev(catalog.MIGRATE_STATE),
                                   ev(catalog.DISABLE_LEGACY_VCS), ev(catalog.COMMIT_AND_VERIFY),
                                   ev(catalog.DELETE_LEGACY_ENVIRONMENT))
    facts: dict[str, Any] = {"workspace": {"name": workspace,
                                           "id": two.get("workspace_id") or three.get("workspace_id")}}
    if five.get("workspace_url"):
        facts["workspace"]["url"] = five["workspace_url"]
    if "teams" in two:  # teams step 2 proved on the workspace: name -> access, members, not_members
        facts["teams"] = two["teams"]
    if "legacy_sha256" in three:  # a plan batch's rows hold plan counts only
        facts["state"] = {
            "legacy": {"serial": three.get("legacy_serial"), "lineage": three.get("lineage"),
                       "sha256": three.get("legacy_sha256")},
            "migrated": {"serial": three.get("workspace_serial"), "lineage": three.get("lineage"),
                         "sha256": three.get("workspace_sha256"), "state_version": three.get("state_version")},
            "identical": bool(three.get("identical_bytes")), "resources": three.get("resources")}
    if "run_id" in five:
        plan = five.get("plan") or {}
        after = five.get("legacy_after_push") or {}
        base = after.get("baseline") or {}
        facts["verifying_run"] = {"run_id": five.get("run_id"), "commit": five.get("commit"),
                                  "commit_author": five.get("commit_author"),
                                  "run_commit": five.get("run_commit"), "plan": plan,
                                  "no_changes": five.get("has_changes") is False,
                                  # the proof of step 4's unlink: the legacy host as step 4 left it
                                  "legacy_unchanged": (bool(after) and not after.get("deleted_by_step_6")
                                                       and after.get("configuration_version")
                                                       == base.get("configuration_version")
                                                       and after.get("state_md5") == base.get("state_md5"))
                                  if after else None,
                                  "legacy_configuration_version": after.get("configuration_version"),
                                  "legacy_state_serial": after.get("state_serial")}
        if five.get("run_url"):
            facts["verifying_run"]["url"] = five["run_url"]
    if "state_md5" in four:  # the operator unlinked in the legacy UI; step 4 recorded the baseline
        previous = four.get("previous_vcs") or {}
        decision = four.get("confirmation") or {}
        facts["vcs_unlink"] = {"previous_repo": previous.get("repo"), "at": runs[catalog.DISABLE_LEGACY_VCS].finished_at,
                               "confirmed_by": decision.get("operator"), "confirmed_via": decision.get("via"),
                               "baseline_configuration_version": four.get("configuration_version"),
                               "baseline_state_serial": four.get("state_serial")}
    if "deleted" in six:
        decision = six.get("confirmation") or {}
        final = six.get("final_backup") or {}
        facts["deletion"] = {
            "deleted": bool(six.get("deleted")), "at": runs[catalog.DELETE_LEGACY_ENVIRONMENT].finished_at,
            "confirmation_text": f"{decision['action']} {decision['target']}" if decision.get("action") else None,
            "confirmed_by": decision.get("operator"), "confirmed_via": decision.get("via"),
            "confirmed_at": decision.get("decided_at"), "final_backup_sha256": final.get("sha256"),
            "final_backup_matches_step3": final.get("matches_step3"),
            "proof": {k: (six.get("proof") or {}).get(k) for k in ("state", "listed", "others", "organization_visible")}}
    return facts


def notebook_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """A step's effective parameters from its executed notebook: the defaults of its cell tagged
    `parameters` (literal values; others as their source text) overridden by what papermill injected.

    Returns:
        name -> {"value": ..., "given": whether the batch gave it}; {} when the notebook cannot be read.
    """
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for cell in document.get("cells") or []:
        if cell.get("cell_type") != "code" or "parameters" not in ((cell.get("metadata") or {}).get("tags") or []):
            continue
        source = "".join(cell.get("source") or [])
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                target, value = node.target.id, node.value
            else:
                continue
            try:
                default = ast.literal_eval(value)
            except ValueError:
                default = ast.get_source_segment(source, value)
            found[target] = {"value": default, "given": False}
        break
    given = ((document.get("metadata") or {}).get("papermill") or {}).get("parameters") or {}
    for name, value in given.items():
        found[name] = {"value": value, "given": True}
    return found


def step_parameters(batch_dir: Path, latest: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each step's effective parameters over the batch's environments (see `notebook_parameters`), less
    the ones the batch sets per environment.

    Returns:
        step -> name -> {"values": the distinct values (one when every environment agrees), "given": the
        batch gave it to some environment}.
    """
    by_step: dict[str, dict[str, dict[str, Any]]] = {}
    for runs in latest.values():
        for step, run in runs.items():
            if not run.notebook_path:
                continue
            for name, fact in notebook_parameters(batch_dir / run.notebook_path).items():
                if name in PER_ENVIRONMENT_PARAMETERS:
                    continue
                entry = by_step.setdefault(step, {}).setdefault(name, {"values": [], "given": False})
                if fact["value"] not in entry["values"]:
                    entry["values"].append(fact["value"])
                entry["given"] = entry["given"] or fact["given"]
    return {step: dict(sorted(names.items())) for step, names in sorted(by_step.items())}


def ledger_span(runs: Iterable[Any]) -> dict[str, Any]:
    """When the batch's steps ran, every run of a resumed batch included: the first start, the last end."""
    runs = list(runs)
    starts = [r.started_at for r in runs if r.started_at]
    ends = [r.finished_at for r in runs if r.finished_at]
    return {"first_started_at": min(starts) if starts else None, "last_finished_at": max(ends) if ends else None,
            "step_runs": len(runs)}


def batch_facts(batch_dir: str | Path, *, ledger_path: str | Path, steps: Iterable[str], mode: str,
                workspaces: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest's view of a batch: mode, steps, when, each step's parameters, and per environment its
    steps and evidence.

    Args:
        ledger_path: the batch's ledger.
        steps: the runbook's steps (the page's columns).
        mode: the batch's mode; only rows of this mode count.
        workspaces: legacy environment -> workspace (`<org>/<name>`).
    """
    from runbook_lib.ledger import Ledger

    batch_dir = Path(batch_dir)
    steps = list(steps)
    latest: dict[str, dict[str, Any]] = {}
    ran = []
    for run in Ledger(ledger_path).history():
        if run.mode == mode and run.action == RUN and run.step in steps:
            latest.setdefault(run.environment, {})[run.step] = run  # history is oldest first: the last wins
            ran.append(run)
    environments = {}
    for environment in sorted(set(latest) | set(workspaces or {})):
        runs = latest.get(environment, {})
        checksums, backups = write_backup_checksums(batch_dir, environment)
        evidence = environment_evidence(runs, (workspaces or {}).get(environment))
        evidence["backups"] = {"checksums": checksums, "files": backups}
        environments[environment] = {"steps": {s: _step_facts(batch_dir, r) for s, r in runs.items()},
                                     "evidence": evidence}
    return {"mode": mode, "steps": steps, "environments": environments, "ledger": ledger_span(ran),
            "step_parameters": step_parameters(batch_dir, latest)}


def write_batch_evidence(batch_dir: str | Path, *, ledger_path: str | Path, steps: Iterable[str], mode: str,
                         workspaces: Mapping[str, str], parameters: Mapping[str, Any],
                         outcomes: Mapping[str, Any], started_at: str, finished_at: str,
                         refreshed: str | None = None) -> Path:
    """Write the batch's `manifest.json` with its facts, then `summary.html` rendered from that manifest.

    Both are written whole or not at all (`audit.atomic_write`); `refreshed` says why `archive` rewrote
    them after the batch (see `refresh_manifest`).

    The summary's own checksum is then set in the manifest (the page shows no checksums, so rendering
    it again from the final manifest gives the same bytes).

    Returns:
        The manifest's path.
    """
    from runbook_lib.audit import MANIFEST, atomic_write, sha256_file, write_manifest

    batch_dir = Path(batch_dir)
    from runbook_lib.ledger import batch_run_facts

    facts = batch_facts(batch_dir, ledger_path=ledger_path, steps=steps, mode=mode, workspaces=workspaces)
    facts.update(batch_run_facts(ledger_path))  # every run of the batch, and who (accounts, commit authors)
    target = write_manifest(batch_dir, parameters=parameters, outcomes=outcomes, started_at=started_at,
                            finished_at=finished_at, refreshed=refreshed, facts=facts)
    manifest = json.loads(target.read_text(encoding="utf-8"))
    page = batch_dir / SUMMARY
    atomic_write(page, render(manifest))
    manifest["files"][SUMMARY] = {"sha256": sha256_file(page), "size": page.stat().st_size, "state_backup": False}
    atomic_write(batch_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target


# --- the page -----------------------------------------------------------------------------------------------

def _time(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except (TypeError, ValueError):
        return None


def anchor(environment: str) -> str:
    """The page's id of an environment's section: `env-<org>__<env>` (its folder's name), any character
    outside letters, digits, `.`, `_` and `-` replaced, so no name can shape the page's links."""
    org, _, env = environment.partition("/")
    return "env-" + re.sub(r"[^A-Za-z0-9_.-]", "-", f"{org}__{env}")


def _short_step(step: str) -> str:
    number, _, name = step.partition("_")
    return f"{number} {name.replace('_', ' ')}"


def _seconds(value: float) -> str:
    """A duration for a reader: "42 s", "3 min 5 s", "1 h 2 min"."""
    value = int(round(value))
    if value < 60:
        return f"{value} s"
    if value < 3600:
        return f"{value // 60} min" + (f" {value % 60} s" if value % 60 else "")
    return f"{value // 3600} h" + (f" {value % 3600 // 60} min" if value % 3600 // 60 else "")


def _cell(fact: Mapping[str, Any] | None, mode: str, day: str) -> dict[str, Any] | None:
    """One matrix cell: the outcome in its mode's words, when it ran, how long, why it failed."""
    if not fact:
        return None
    label = outcome_label(str(fact.get("status")), mode, fact.get("error"))
    start, end = _time(fact.get("started_at")), _time(fact.get("finished_at"))
    when = ""
    if start:
        when = start.strftime("%H:%M:%S" if start.date().isoformat() == day else "%Y-%m-%d %H:%M:%S")
        if end:
            when += "\u2013" + end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    reason = fact.get("error") if label not in ("passed", "plan ok") else None
    if reason and len(reason) > REASON_IN_CELL:
        reason = reason[:REASON_IN_CELL].rstrip() + "\u2026"
    return {"label": label, "colour": OUTCOME_COLOURS.get(label, "#ffffff"), "html": fact.get("html"),
            "duration": f"{fact['duration_s']:.1f} s" if fact.get("duration_s") is not None else "", "when": when,
            "reason": reason, "waits": bool(fact.get("waits")) and label == "plan ok"}


#: Tick spacings of the timeline's axis, in seconds: the first that gives at most `_MAX_TICKS` ticks wins.
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_TICKS = 8


def _tick_label(seconds: int) -> str:
    if seconds == 0:
        return "0"
    if seconds % 3600 == 0:
        return f"+{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"+{seconds // 60} min"
    return f"+{seconds} s"


def axis_ticks(span: float) -> list[tuple[float, str]]:
    """The timeline's ticks for `span` seconds: round spacings, every label different ("0", "+5 s", ...)."""
    step = next((s for s in _TICK_STEPS if span / s <= _MAX_TICKS), _TICK_STEPS[-1])
    return [(float(t), _tick_label(t)) for t in range(0, int(span) + 1, step)]


def _timeline(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """Environments down, time across, one bar per step run (its outcome's colour, its step number)."""
    mode = str(manifest.get("mode"))
    bars = []
    for environment, data in (manifest.get("environments") or {}).items():
        for step, fact in (data.get("steps") or {}).items():
            start, end = _time(fact.get("started_at")), _time(fact.get("finished_at"))
            if start and end:
                bars.append((environment, step, start, end, outcome_label(str(fact.get("status")), mode,
                                                                          fact.get("error"))))
    if not bars:
        return None
    origin = min(b[2] for b in bars)
    span = max((max(b[3] for b in bars) - origin).total_seconds(), 1.0)
    names = list(manifest.get("environments") or {})
    label_w, width, row_h = 230, 1340, 22
    scale = (width - label_w - 10) / span
    drawn = []
    for environment, step, start, end, label in bars:
        x = label_w + (start - origin).total_seconds() * scale
        w = max((end - start).total_seconds() * scale, 2)
        drawn.append({"x": f"{x:.1f}", "y": names.index(environment) * row_h + 3, "w": f"{w:.1f}",
                      "mid": f"{x + w / 2:.1f}", "number": step[:2] if w > 16 else "",
                      "colour": BAR_COLOURS.get(label, "#90a4ae"),
                      "title": f"{environment} {step}: {label}, {(end - start).total_seconds():.1f} s"})
    ticks = [{"x": f"{label_w + t * scale:.1f}", "label": text,
              "anchor": "start" if t == 0 else ("end" if label_w + t * scale > width - 40 else "middle")}
             for t, text in axis_ticks(span)]
    return {"width": width, "height": row_h * len(names) + 30, "label_w": label_w, "row_h": row_h,
            "names": [{"name": n, "y": i * row_h} for i, n in enumerate(names)], "bars": drawn, "ticks": ticks,
            "axis_y": row_h * len(names) + 14, "origin": origin.isoformat(timespec="seconds")}


def _verdict(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The page's first sentence, in the batch's mode's words."""
    environments = manifest.get("environments") or {}
    steps = manifest.get("steps") or []
    complete = [e for e, d in environments.items()
                if all(((d.get("steps") or {}).get(s) or {}).get("status") == "passed" for s in steps)]
    missing = [e for e in environments if e not in complete]
    if manifest.get("mode") == "plan":
        text = (f"Plan batch: nothing was changed and nothing was verified. In {len(complete)} of "
                f"{len(environments)} environments every step's plan found nothing apply would refuse")
        return {"kind": "planned" if not missing else "bad", "text": text + (
            f"; not so: {', '.join(missing)}." if missing else ".")}
    if environments and not missing:
        return {"kind": "good", "text": f"All {len(environments)} environments passed every step."}
    waiting = [e for e in missing if any(((environments[e].get("steps") or {}).get(s) or {}).get("status") == "waiting"
                                         for s in steps)]
    text = f"{len(complete)} of {len(environments)} environments passed every step; not complete: {', '.join(missing)}."
    if waiting:
        text += (f" Waiting for your hand in the legacy UI (then the confirm line, and the batch again): "
                 f"{', '.join(waiting)}.")
    return {"kind": "bad", "text": text}


def _when(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """When the batch ran: every step in the ledger (all runs of a resumed batch) and this run's own times."""
    ledger = manifest.get("ledger") or {}
    first, last = _time(ledger.get("first_started_at")), _time(ledger.get("last_finished_at"))
    started, finished = _time(manifest.get("started_at")), _time(manifest.get("finished_at"))
    return {"first": ledger.get("first_started_at"), "last": ledger.get("last_finished_at"),
            "span": _seconds((last - first).total_seconds()) if first and last else "",
            "step_runs": ledger.get("step_runs"),
            "started": manifest.get("started_at"), "finished": manifest.get("finished_at"),
            "took": f"{(finished - started).total_seconds():.0f} s" if started and finished else "",
            "resumed": bool(first and started and first < started)}


def _accounts(manifest: Mapping[str, Any]) -> list[str]:
    """Who the hosts say the tokens are (`who.accounts`, asked once per run of the batch), one line per host."""
    lines = []
    for account in (manifest.get("who") or {}).get("accounts") or []:
        var, name = account.get("token_var"), account.get("account")
        if account.get("which") == "tfe":
            whose = (f"user {name}" + (f" ({account['email']})" if account.get("email") else "")) if name else \
                "a team or organization token (the host names no user)"
            lines.append(f"TFE host {account.get('address')}: ${var} is {whose}")
        else:
            lines.append(f"legacy host {account.get('address')}: ${var} accepted (the legacy API does not say whose "
                         f"token it is)")
    return lines


def _runs(manifest: Mapping[str, Any]) -> list[str]:
    """Every run of the batch (`runs`), oldest first: when, by whom, how it ended."""
    return [f"{run.get('started_at')} to {run.get('finished_at') or '?'} by {run.get('operator')} on "
            f"{run.get('host')}: {run.get('ended')}" for run in manifest.get("runs") or []]


def _parameters(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each step's effective parameters as rows: name, value(s), given by the batch or the default."""
    rows = []
    for step, names in (manifest.get("step_parameters") or {}).items():
        shown = []
        for name, fact in names.items():
            values = [repr(v) for v in fact.get("values") or []]  # as the notebook's Python would write them
            shown.append({"name": name, "values": values, "given": bool(fact.get("given"))})
        rows.append({"step": _short_step(step), "parameters": shown})
    return rows


def _environment_view(environment: str, data: Mapping[str, Any], mode: str = "apply") -> dict[str, Any]:
    """What the environment's section shows, from its manifest entry."""
    ev = data.get("evidence") or {}
    teams = [{"name": name, "access": (facts or {}).get("access") or "no access",
              "members": list((facts or {}).get("members") or []), "absent": list((facts or {}).get("not_members") or [])}
             for name, facts in sorted((ev.get("teams") or {}).items())]
    failures = [{"step": _short_step(step), "label": outcome_label(str(fact.get("status")), mode, fact.get("error")),
                 "reason": fact.get("error")}
                for step, fact in (data.get("steps") or {}).items()
                if fact.get("error") and fact.get("status") not in ("passed",)]
    return {"name": environment, "anchor": anchor(environment), "ev": ev, "teams": teams,
            "has_teams": "teams" in ev, "failures": failures}


def _environment(environment: str, data: Mapping[str, Any], mode: str = "apply") -> str:
    """The evidence section of one environment (HTML)."""
    return str(fragment("summary_environment.html.j2", env=_environment_view(environment, data, mode)))


def _edited(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Files that differ from what the batch recorded, kept by `archive --accept-edits` (`edited_after_run`)."""
    return [{k: e.get(k) for k in ("file", "change", "recorded_sha256", "sha256", "accepted_by", "accepted_at")}
            | {"what": list(e.get("what") or [])} for e in manifest.get("edited_after_run") or [] if isinstance(e, dict)]


def render(manifest: Mapping[str, Any]) -> str:
    """The summary page of a manifest written by `write_batch_evidence` (pure: same manifest, same page)."""
    mode = str(manifest.get("mode"))
    runbook = manifest.get("runbook") or {}
    environments = manifest.get("environments") or {}
    steps = list(manifest.get("steps") or [])
    day = (_time((manifest.get("ledger") or {}).get("first_started_at")) or _time(manifest.get("started_at"))
           or datetime.min).date().isoformat()
    matrix = [{"name": e, "anchor": anchor(e),
               "cells": [_cell((d.get("steps") or {}).get(s), mode, day) for s in steps]}
              for e, d in environments.items()]
    sections = [fragment("summary_environment.html.j2", env=_environment_view(e, d, mode))
                for e, d in environments.items()]
    return render_template(
        "summary.html.j2", title=f"Migration batch {manifest.get('batch')}", mode=mode,
        batch=manifest.get("batch"), verdict=_verdict(manifest), operator=manifest.get("operator"),
        host=manifest.get("host"), accounts=_accounts(manifest), runs=_runs(manifest), runbook=runbook,
        python=manifest.get("python"), when=_when(manifest), day=day,
        steps=[_short_step(s) for s in steps], matrix=matrix, timeline=_timeline(manifest),
        legend=[(label, BAR_COLOURS[label]) for label in LEGEND[mode == "plan"]],
        parameters=_parameters(manifest), sections=sections, refreshed=manifest.get("refreshed"),
        edited=_edited(manifest)) + "\n"


# --- a manifest rewritten after the batch (`tfe-runbook archive` finds it stale) ------------------------------

def refresh_manifest(batch_dir: str | Path, reasons: list[str]) -> Path:
    """Rewrite a stale manifest from the ledger and the files as they are now (`tfe-runbook archive`).

    Parameters, start time and batch facts are kept from the old manifest when there is one; outcomes
    come from the ledger; ``refreshed`` records why.

    Raises:
        AuditError: neither a manifest nor a ledger: not a batch folder.
    """
    from runbook_lib import audit

    batch_dir = Path(batch_dir)
    ledger = batch_dir / "ledger.sqlite"
    try:
        old = json.loads((batch_dir / audit.MANIFEST).read_text(encoding="utf-8"))
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    if not ledger.is_file() and not old:
        raise audit.AuditError(f"{batch_dir} has no {audit.MANIFEST} and no ledger.sqlite; archive a batch folder written by "
                         f"`tfe-runbook run` (runs/<batch>).")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    note = f"rewritten by `tfe-runbook archive` at {now} from the ledger: {'; '.join(reasons)}"
    parameters = old.get("parameters") if isinstance(old.get("parameters"), dict) else {}
    outcomes = audit.outcomes_from_ledger(ledger) if ledger.is_file() else old.get("outcomes") or {}
    started, finished = str(old.get("started_at") or ""), str(old.get("finished_at") or "")
    mode, steps = old.get("mode") or parameters.get("mode"), old.get("steps") or parameters.get("steps")
    if ledger.is_file() and isinstance(mode, str) and isinstance(steps, list):
        # The auditor's facts and the page drawn from them are recomputed from the ledger too, so the
        # refreshed manifest and summary.html never show the evidence of the interrupted moment.
        known = old.get("environments") if isinstance(old.get("environments"), dict) else {}
        workspaces = {env: ((data.get("evidence") or {}).get("workspace") or {}).get("name")
                      for env, data in known.items() if isinstance(data, dict)}
        target = write_batch_evidence(batch_dir, ledger_path=ledger, steps=steps, mode=mode,
                                              workspaces=workspaces, parameters=parameters, outcomes=outcomes,
                                              started_at=started, finished_at=finished, refreshed=note)
    else:
        target = audit.write_manifest(batch_dir, parameters=parameters, outcomes=outcomes, started_at=started,
                                finished_at=finished, refreshed=note)
    _keep_who_ran_it(batch_dir, old)
    return target


#: What the manifest says of who ran the batch and with what: a rewrite by `archive` keeps it as the batch wrote it.
WHO_RAN_IT = ("runbook", "operator", "host", "python")


def _keep_who_ran_it(batch_dir: Path, old: Mapping[str, Any]) -> None:
    """Put back who ran the batch (operator, host, runbook version and commit) after a rewrite by `archive`,
    recording who rewrote it in `refreshed_by`; summary.html is drawn again when it shows them."""
    from runbook_lib import audit

    kept = {key: old[key] for key in WHO_RAN_IT if key in old}
    manifest = json.loads((batch_dir / audit.MANIFEST).read_text(encoding="utf-8"))
    if not kept or all(manifest.get(key) == value for key, value in kept.items()):
        return
    manifest["refreshed_by"] = {key: manifest.get(key) for key in WHO_RAN_IT}
    manifest.update(kept)
    if isinstance(manifest.get("steps"), list) and manifest.get("mode"):
        page = audit.atomic_write(batch_dir / SUMMARY, render(manifest))
        manifest["files"][SUMMARY] = {"sha256": audit.sha256_file(page), "size": page.stat().st_size,
                                              "state_backup": False}
    audit.atomic_write(batch_dir / audit.MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
