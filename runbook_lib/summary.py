"""The auditor's page of a batch: `summary.html`, a view of `manifest.json`.

`write_batch_evidence` (called by the batch runner at the end of every run) collects the facts of the
batch from the ledger and the audit trail into the manifest, then renders `summary.html` from the
manifest alone (`render`), so the page can hold nothing the manifest does not. The facts:

- who ran it (operator, host, runbook version and git commit), when, in which mode;
- per environment and step: outcome, start, finish, duration, the executed notebook and its HTML copy;
- per environment, the evidence itself: the legacy state's serial, lineage and sha256 and the migrated
  state's, and whether they are identical; the workspace and its id; the verifying run, its commit and
  "no changes"; the legacy VCS unlink; the deletion time, the confirmation text and who gave it; the
  state backups' checksums, written to `<org>__<env>/backups.sha256` (the backups themselves stay out of
  the archive: they may hold the infrastructure's secrets).

The page is one self-contained HTML file (inline CSS, the timeline as inline SVG: no script, no
download, it prints as it shows) readable at 1400 px.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from runbook_lib import catalog
from runbook_lib.catalog import RUN

SUMMARY = "summary.html"
BACKUP_CHECKSUMS = "backups.sha256"
STEP_OUTCOME_COLOURS = {"passed": "#c8e6c9", "failed": "#ffcdd2", "refused": "#ffe0b2",
                        "skipped": "#e0e0e0", "running": "#fff9c4"}
BAR_COLOURS = {"passed": "#43a047", "failed": "#e53935", "refused": "#fb8c00", "skipped": "#9e9e9e",
               "running": "#fdd835"}


def write_summary_html(batch_dir: str | Path, matrix: Mapping[str, Mapping[str, str]], steps: Iterable[str],
                       title: str = "Migration batch") -> Path:
    """Write a bare `summary.html`: one row per environment, one column per step, coloured by outcome.

    For a batch directory without a ledger; a batch's own page comes from `write_batch_evidence`.

    Args:
        matrix: environment -> step -> status (passed, failed, refused, skipped, running, or absent).
        steps: column order.
    """
    steps = list(steps)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in steps)
    rows = []
    for environment in sorted(matrix):
        cells = []
        for step in steps:
            status = matrix[environment].get(step, "")
            colour = STEP_OUTCOME_COLOURS.get(status, "#ffffff")
            cells.append(f'<td style="background:{colour}">{html.escape(status or "-")}</td>')
        rows.append(f"<tr><th>{html.escape(environment)}</th>{''.join(cells)}</tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;"
            "padding:4px 8px}</style></head><body>"
            f"<h1>{html.escape(title)}: {html.escape(Path(batch_dir).name)}</h1>"
            f"<table><tr><th>environment</th>{head}</tr>{''.join(rows)}</table></body></html>\n")
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
            "error": run.error}


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
        facts["verifying_run"] = {"run_id": five.get("run_id"), "commit": five.get("commit"),
                                  "run_commit": five.get("run_commit"), "plan": plan,
                                  "no_changes": five.get("has_changes") is False,
                                  "legacy_runs_after_push": len(five.get("legacy_runs_after_push") or [])}
    if "vcs" in four:
        previous = four.get("previous_vcs") or {}
        decision = four.get("confirmation") or {}
        facts["vcs_unlink"] = {"unlinked": not four.get("vcs"), "previous_repo": previous.get("repo"),
                               "at": runs[catalog.DISABLE_LEGACY_VCS].finished_at, "via": four.get("unlink_via"),
                               "confirmed_by": decision.get("operator"), "confirmed_via": decision.get("via")}
    if "deleted" in six:
        decision = six.get("confirmation") or {}
        final = six.get("final_backup") or {}
        facts["deletion"] = {
            "deleted": bool(six.get("deleted")), "at": runs[catalog.DELETE_LEGACY_ENVIRONMENT].finished_at,
            "confirmation_text": f"{decision['action']} {decision['target']}" if decision.get("action") else None,
            "confirmed_by": decision.get("operator"), "confirmed_via": decision.get("via"),
            "confirmed_at": decision.get("decided_at"), "final_backup_sha256": final.get("sha256"),
            "final_backup_matches_step3": final.get("matches_step3")}
    return facts


def batch_facts(batch_dir: str | Path, *, ledger_path: str | Path, steps: Iterable[str], mode: str,
                workspaces: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest's view of a batch: mode, steps, and per environment its steps and evidence.

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
    for run in Ledger(ledger_path).history():
        if run.mode == mode and run.action == RUN and run.step in steps:
            latest.setdefault(run.environment, {})[run.step] = run  # history is oldest first: the last wins
    environments = {}
    for environment in sorted(set(latest) | set(workspaces or {})):
        runs = latest.get(environment, {})
        checksums, backups = write_backup_checksums(batch_dir, environment)
        evidence = environment_evidence(runs, (workspaces or {}).get(environment))
        evidence["backups"] = {"checksums": checksums, "files": backups}
        environments[environment] = {"steps": {s: _step_facts(batch_dir, r) for s, r in runs.items()},
                                     "evidence": evidence}
    return {"mode": mode, "steps": steps, "environments": environments}


def write_batch_evidence(batch_dir: str | Path, *, ledger_path: str | Path, steps: Iterable[str], mode: str,
                         workspaces: Mapping[str, str], parameters: Mapping[str, Any],
                         outcomes: Mapping[str, Any], started_at: str, finished_at: str,
                         refreshed: str | None = None) -> Path:
    """Write the batch's `manifest.json` with its facts, then `summary.html` rendered from that manifest.

    Both are written whole or not at all (`audit.atomic_write`); `refreshed` says why `archive` rewrote
    them after the batch (see `audit.refresh_manifest`).

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

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _time(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def _short_step(step: str) -> str:
    number, _, name = step.partition("_")
    return f"{number} {name.replace('_', ' ')}"


def _matrix(manifest: Mapping[str, Any]) -> str:
    steps = manifest.get("steps") or []
    head = "".join(f"<th>{_e(_short_step(s))}</th>" for s in steps)
    rows = []
    for environment, data in manifest.get("environments", {}).items():
        cells = []
        for step in steps:
            fact = (data.get("steps") or {}).get(step)
            if not fact:
                cells.append("<td class='st-none'>-</td>")
                continue
            label = f"{fact['status']}" + (f" &middot; {fact['duration_s']:.1f} s" if fact.get("duration_s") else "")
            link = (f"<a href='{_e(fact['html'])}'>{label}</a>" if fact.get("html") else label)
            tip = _e(fact.get("error") or f"{fact.get('started_at')} to {fact.get('finished_at')}")
            cells.append(f"<td class='st-{_e(fact['status'])}' title='{tip}'>{link}</td>")
        rows.append(f"<tr><th scope='row'><a href='#env-{_e(environment)}'>{_e(environment)}</a></th>"
                    f"{''.join(cells)}</tr>")
    return (f"<table class='matrix'><thead><tr><th>environment</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _timeline(manifest: Mapping[str, Any]) -> str:
    """Environments down, time across, one bar per step run (its outcome's colour, its step number)."""
    bars = []
    for environment, data in manifest.get("environments", {}).items():
        for step, fact in (data.get("steps") or {}).items():
            start, end = _time(fact.get("started_at")), _time(fact.get("finished_at"))
            if start and end:
                bars.append((environment, step, start, end, fact.get("status")))
    if not bars:
        return "<p>No step has finished: no timeline.</p>"
    origin = min(b[2] for b in bars)
    span = max((max(b[3] for b in bars) - origin).total_seconds(), 1.0)
    names = list(manifest.get("environments", {}))
    label_w, width, row_h = 230, 1340, 22
    height = row_h * len(names) + 30
    scale = (width - label_w - 10) / span
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='timeline' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='timeline of the batch'>"]
    for i, name in enumerate(names):
        y = i * row_h
        parts.append(f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end' font-size='12'>{_e(name)}</text>")
        parts.append(f"<line x1='{label_w}' x2='{width - 10}' y1='{y + row_h}' y2='{y + row_h}' stroke='#eee'/>")
    for environment, step, start, end, status in bars:
        y = names.index(environment) * row_h + 3
        x = label_w + (start - origin).total_seconds() * scale
        w = max((end - start).total_seconds() * scale, 2)
        seconds = (end - start).total_seconds()
        parts.append(f"<g><title>{_e(environment)} {_e(step)}: {_e(status)}, {seconds:.1f} s</title>"
                     f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{row_h - 6}' rx='2' "
                     f"fill='{BAR_COLOURS.get(status, '#90a4ae')}'/>"
                     + (f"<text x='{x + w / 2:.1f}' y='{y + 12}' text-anchor='middle' font-size='10' fill='#fff'>"
                        f"{_e(step[:2])}</text>" if w > 16 else "") + "</g>")
    axis_y = row_h * len(names) + 14
    ticks = 6
    for k in range(ticks + 1):
        x = label_w + (width - label_w - 10) * k / ticks
        anchor = "end" if k == ticks else "middle"
        parts.append(f"<text x='{x:.1f}' y='{axis_y}' text-anchor='{anchor}' font-size='11' fill='#555'>"
                     f"+{span * k / ticks:.0f} s</text>")
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    return "".join(f"<span style='background:{colour}'></span>{status}" for status, colour in BAR_COLOURS.items())


def _fact_rows(rows: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)


def _yes(value: Any, yes: str = "yes", no: str = "NO") -> str:
    if value is None:
        return "<span class='missing'>not recorded</span>"
    return f"<span class='ok'>{yes}</span>" if value else f"<span class='bad'>{no}</span>"


def _environment(environment: str, data: Mapping[str, Any]) -> str:
    ev = data.get("evidence") or {}
    ws, state, run = ev.get("workspace") or {}, ev.get("state"), ev.get("verifying_run")
    unlink, deletion, backups = ev.get("vcs_unlink"), ev.get("deletion"), ev.get("backups") or {}
    rows: list[tuple[str, Any]] = [("workspace", f"{_e(ws.get('name'))} <code>{_e(ws.get('id'))}</code>")]
    if "teams" in ev:
        from runbook_lib.teams import summary_cell

        rows.append(("teams", _e(summary_cell(ev["teams"]) or "none on the legacy environment")))
    if state:
        legacy, migrated = state.get("legacy") or {}, state.get("migrated") or {}
        rows += [("legacy state", f"serial {_e(legacy.get('serial'))}, lineage <code>{_e(legacy.get('lineage'))}"
                                  f"</code>, sha256 <code class='hash'>{_e(legacy.get('sha256'))}</code>"),
                 ("migrated state", f"serial {_e(migrated.get('serial'))}, lineage <code>"
                                    f"{_e(migrated.get('lineage'))}</code>, sha256 <code class='hash'>"
                                    f"{_e(migrated.get('sha256'))}</code> (state version "
                                    f"<code>{_e(migrated.get('state_version'))}</code>)"),
                 ("identical", _yes(state.get("identical"), "yes, byte for byte", "no (same lineage and resources)")
                  + f"; {_e(state.get('resources'))} resources")]
    else:
        rows.append(("state", "<span class='missing'>step 3 has not passed in apply mode</span>"))
    if run:
        plan = run.get("plan") or {}
        rows += [("verifying run", f"<code>{_e(run.get('run_id'))}</code> of commit <code>{_e(run.get('commit'))}</code>"
                                   + ("" if run.get("run_commit") == run.get("commit") else
                                      f" <span class='bad'>(run planned {_e(run.get('run_commit'))})</span>")),
                 ("plan", _yes(run.get("no_changes"), "no changes", "CHANGES")
                  + f" ({_e(plan.get('add', 0))} to add, {_e(plan.get('change', 0))} to change, "
                    f"{_e(plan.get('destroy', 0))} to destroy); legacy runs after the push: "
                    f"{_e(run.get('legacy_runs_after_push'))}")]
    else:
        rows.append(("verifying run", "<span class='missing'>step 5 has not passed in apply mode</span>"))
    if unlink:
        rows.append(("legacy VCS unlink", _yes(unlink.get("unlinked"), "unlinked", "STILL LINKED")
                     + f" from {_e(unlink.get('previous_repo'))} at {_e(unlink.get('at'))} (via {_e(unlink.get('via'))}"
                       f", confirmed by {_e(unlink.get('confirmed_by'))} via {_e(unlink.get('confirmed_via'))})"))
    else:
        rows.append(("legacy VCS unlink", "<span class='missing'>step 4 has not passed in apply mode</span>"))
    if deletion:
        rows += [("legacy environment", _yes(deletion.get("deleted"), "deleted", "NOT DELETED")
                  + f" at {_e(deletion.get('at'))}"),
                 ("confirmation", f"\u201c{_e(deletion.get('confirmation_text'))}\u201d by "
                                  f"{_e(deletion.get('confirmed_by'))} via {_e(deletion.get('confirmed_via'))} "
                                  f"at {_e(deletion.get('confirmed_at'))}"),
                 ("final backup", f"sha256 <code class='hash'>{_e(deletion.get('final_backup_sha256'))}</code>; same as "
                                  f"step 3's: {_yes(deletion.get('final_backup_matches_step3'))}")]
    else:
        rows.append(("legacy environment", "<span class='missing'>step 6 has not passed in apply mode: not deleted</span>"))
    if backups.get("checksums"):
        listed = "".join(f"<li><code>{_e(b['file'])}</code> serial {_e(b.get('serial'))}, sha256 "
                         f"<code class='hash'>{_e(b['sha256'])}</code>"
                         + ("" if b["sha256"] == b.get("recorded_sha256") else
                            " <span class='bad'>differs from its record</span>") + "</li>"
                         for b in backups.get("files") or [])
        rows.append(("state backups", f"<a href='{_e(backups['checksums'])}'>{_e(backups['checksums'])}</a> "
                                      f"(the backups stay out of the archive)<ul>{listed}</ul>"))
    return (f"<section class='env' id='env-{_e(environment)}'><h3>{_e(environment)}</h3>"
            f"<table class='facts'>{_fact_rows(rows)}</table></section>")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1360px;color:#222;
 font-size:14px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
.who th{background:#f5f5f5;width:170px}
.matrix td,.matrix th[scope=row]{white-space:nowrap} .matrix a{color:inherit}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.st-passed{background:#c8e6c9} .st-failed{background:#ffcdd2} .st-refused{background:#ffe0b2}
.st-skipped{background:#e0e0e0} .st-running{background:#fff9c4} .st-none{color:#999}
.facts{width:100%} .facts th{width:170px;background:#fafafa} .facts ul{margin:4px 0;padding-left:18px}
code{font-size:12px} .hash{word-break:break-all}
.ok{color:#1b5e20;font-weight:600} .bad{color:#b71c1c;font-weight:700} .missing{color:#8d6e00}
.verdict{padding:8px 12px;border-left:6px solid;margin:8px 0}
.verdict.good{background:#e8f5e9;border-color:#2e7d32} .verdict.bad{background:#ffebee;border-color:#c62828}
@media print{body{margin:0;max-width:none;font-size:11px} a{color:inherit;text-decoration:none}
 .env{break-inside:avoid} svg.timeline{max-width:100%;height:auto}}
"""


def render(manifest: Mapping[str, Any]) -> str:
    """The summary page of a manifest written by `write_batch_evidence` (pure: same manifest, same page)."""
    runbook = manifest.get("runbook") or {}
    environments = manifest.get("environments") or {}
    steps = manifest.get("steps") or []
    complete = [e for e, d in environments.items()
                if all(((d.get("steps") or {}).get(s) or {}).get("status") == "passed" for s in steps)]
    verdict = (f"<div class='verdict good'>All {len(environments)} environments passed every step.</div>"
               if environments and len(complete) == len(environments) else
               f"<div class='verdict bad'>{len(complete)} of {len(environments)} environments passed every step; "
               f"not complete: {_e(', '.join(e for e in environments if e not in complete))}.</div>")
    started, finished = _time(manifest.get("started_at")), _time(manifest.get("finished_at"))
    took = f" ({(finished - started).total_seconds():.0f} s)" if started and finished else ""
    who = _fact_rows([
        ("batch", f"<b>{_e(manifest.get('batch'))}</b>, mode <b>{_e(manifest.get('mode'))}</b>"),
        ("run by", f"{_e(manifest.get('operator'))} on {_e(manifest.get('host'))}"),
        ("runbook", f"tfe-runbook {_e(runbook.get('version'))}, commit <code>{_e(runbook.get('git_commit'))}</code>"
                    f" (Python {_e(manifest.get('python'))})"),
        ("when", f"{_e(manifest.get('started_at'))} to {_e(manifest.get('finished_at'))}{took}"),
        ("evidence", "<code>manifest.json</code> (this page is a view of it; sha256 of every file), "
                     "<code>ledger.sqlite</code>"),
    ])
    sections = "".join(_environment(e, d) for e, d in environments.items())
    if manifest.get("mode") == "plan":
        sections = ("<p>A plan batch changes nothing: each step only read and said what apply would do (its "
                    "notebook, linked above). The evidence below fills in with an apply batch.</p>" + sections)
    title = f"Migration batch {manifest.get('batch')}"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>{verdict}"
            f"<table class='who'>{who}</table>"
            f"<h2>Environments &times; steps</h2><p>Each cell links to the step's executed notebook; its duration "
            f"beside the outcome.</p>{_matrix(manifest)}"
            f"<h2>Timeline</h2><p class='legend'>Each step's run as the ledger timed it, from the batch's first step;"
            f" the step's number on the wider bars.{_legend()}</p>{_timeline(manifest)}"
            f"<h2>Evidence per environment</h2>{sections}</body></html>\n")
