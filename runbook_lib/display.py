"""What an operator sees in JupyterLab (and in the executed notebooks' HTML copies).

Every object a notebook cell shows goes through here, so no cell output is a Python repr:

- `banner_html` / `banner_text`: a step's verdict as a green (PASS), blue (PLAN OK: plan mode, nothing was
  done or verified), red (FAIL, REFUSED, apply would refuse) or amber (WAITING, apply waits for an earlier
  step) banner with the evidence folded away (`StepResult._repr_html_` uses it);
- `note`: one plain line (plan mode's "nothing was changed"), `markdown`, `diff` (a coloured unified diff);
- `table`: a DataFrame readable at 1,400 px: plain HTML with inline styles (it reads the same untrusted),
  no row numbers, text wrapped by words, nothing cut off, and the columns that would not fit shown in a
  line below each row;
- `evidence`: a step's evidence as a folded key/value list;
- `attach(ctx)`: a refusal (`StepError`, `GateError` and the runbook's other errors) raised in a cell shows as
  one red box with the sentence that names the reason and the fix, instead of a traceback, and the step's
  ledger row is finished as refused (or failed), never left "running". The cell still fails, so a batch
  (papermill) stops there and records the failure.

Plan mode has its own words: a plan verdict reads "PLAN OK: apply would ..." or "apply would refuse: ...",
never PASS; only the plan of a real run may say "no changes" (`plan_evidence`). The ledger records a
plan that found nothing to refuse as "passed" (the batch runs the next step on it); every display derives
its words from the mode (`outcome_label`).

All HTML comes from the templates in `runbook_lib.templates` (autoescaped: text from a host, a file or a
parameter never becomes markup). Plain text (`text/plain`) is kept beside every HTML form: it is what a
terminal, the ledger and a scan of the executed notebooks read.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from runbook_lib.templates import fragment, href, render

#: Banner colours (background, border, text) by verdict kind.
COLOURS = {"pass": ("#e8f5e9", "#2e7d32", "#1b5e20"), "fail": ("#ffebee", "#c62828", "#b71c1c"),
           "refused": ("#ffebee", "#c62828", "#b71c1c"), "waiting": ("#fff8e1", "#f9a825", "#6d4c00"),
           "would-refuse": ("#fff8e1", "#f9a825", "#6d4c00"), "attention": ("#fff8e1", "#f9a825", "#6d4c00"),
           "plan-refused": ("#ffebee", "#c62828", "#b71c1c"), "plan-ok": ("#e3f2fd", "#1565c0", "#0d47a1")}
LABELS = {"pass": "PASS", "fail": "FAIL", "refused": "REFUSED", "waiting": "WAITING",
          "would-refuse": "PLAN (apply waits for an earlier step)", "attention": "PASS, WITH ENVIRONMENTS NOT READY",
          "plan-refused": "PLAN: APPLY WOULD REFUSE", "plan-ok": "PLAN OK"}
#: Errors shown as "REFUSED" (the step declined to act; nothing further was changed); others as "FAILED".
REFUSAL_ERRORS = ("StepError", "GateError")
#: How a plan verdict that finds something apply would refuse begins (`results.plan_verdict`).
WOULD_REFUSE = "apply would refuse"


def verdict_kind(passed: bool, summary: str, planned: bool = False) -> str:
    """The banner kind of a verdict.

    Args:
        passed: the verdict passed (in plan mode: apply would refuse nothing).
        summary: its sentence.
        planned: it is a plan's verdict (plan mode: nothing was done, nothing verified).

    Returns:
        "would-refuse" (a plan: apply would refuse until an earlier step has run), "plan-refused" (a plan:
        apply would refuse what exists), "plan-ok" (a plan with nothing to refuse), "attention" (a survey
        that found environments not ready), "pass" or "fail".
    """
    if summary.startswith(WOULD_REFUSE):
        return "would-refuse" if passed else "plan-refused"
    if planned:
        return "plan-ok" if passed else "plan-refused"
    if passed:
        return "attention" if "; not ready: " in summary else "pass"
    return "fail"


def outcome_label(status: str, mode: str, error: str | None = None) -> str:
    """A step's ledger status in the words of its mode, for the CLI and the summary.

    In apply mode the status itself ("passed", "failed", ...). In plan mode nothing was done or verified:
    "passed" reads "plan ok" and a plan that found something apply would refuse "would refuse".
    """
    if mode != "plan":
        return status
    if status == "passed":
        return "plan ok"
    if status == "failed" and (error or "").startswith(WOULD_REFUSE):
        return "would refuse"
    return status


def banner_html(kind: str, summary: str, evidence: Mapping[str, Any] | None = None, *, title: str = "") -> str:
    """A verdict banner: the label and summary on one line, the evidence folded below it."""
    return render("banner.html.j2", kind=kind, colours=COLOURS[kind], label=LABELS[kind], title=title,
                  summary=summary, evidence=evidence_table(evidence) if evidence else None)


def banner_text(kind: str, summary: str, title: str = "") -> str:
    """The banner as one plain line, e.g. "PASS: 03_migrate_state acme-legacy/web: ..."."""
    return f"{LABELS[kind]}{(' ' + title) if title else ''}: {summary}"


def evidence_table(evidence: Mapping[str, Any] | None) -> Any:
    """A two-column table of evidence keys and values (nested values as indented JSON), as markup."""
    rows = [(str(k), "" if v is None else (v if isinstance(v, (dict, list)) else str(v)), isinstance(v, (dict, list)))
            for k, v in (evidence or {}).items()]
    return fragment("evidence.html.j2", rows=rows)


def evidence_html(evidence: Mapping[str, Any] | None) -> str:
    """`evidence_table` as a string."""
    return str(evidence_table(evidence))


class _Shown:
    """Something with an HTML form and a plain-text form (never a Python repr)."""

    def __init__(self, text: str, html_text: str) -> None:
        self.text, self.html = text, str(html_text)

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text)

    def __str__(self) -> str:
        return self.text


def note(text: str) -> _Shown:
    """One grey line of information (e.g. "plan mode: nothing was changed")."""
    return _Shown(text, render("note.html.j2", text=text))


class _Markdown(_Shown):
    """Markdown rendered to HTML here, raw HTML in it escaped and links other than http(s) disarmed (mistune),
    so a host's text inside it stays text; its plain-text form is the markdown itself."""

    def __init__(self, text: str) -> None:
        import mistune

        super().__init__(text, mistune.create_markdown(escape=True)(text))


def markdown(text: str) -> _Shown:
    """Markdown shown as such (its plain-text form is the text itself, not a quoted string or object repr)."""
    return _Markdown(str(text))


def _diff_style(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return "background:#e6ffed;color:#22863a"
    if line.startswith("-") and not line.startswith("---"):
        return "background:#ffeef0;color:#b31d28"
    if line.startswith("@@"):
        return "color:#6f42c1"
    return "font-weight:600" if line.startswith(("+++", "---", "diff ")) else ""


def diff(text: str) -> _Shown:
    """A unified diff coloured line by line (added green, removed red, hunks purple); "(no change)" when empty."""
    text = str(text)
    if not text.strip():
        return note("(no change: the branch already has it)")
    return _Shown(text, render("diff.html.j2", lines=[(_diff_style(line), line) for line in text.splitlines()]))


def evidence(result: Any) -> _Shown:
    """A step result's evidence, folded (its summary is in the verdict banner)."""
    if getattr(result, "waiting", False):
        return result.gate.evidence_view  # filled in place once the click has verified the step
    data = getattr(result, "evidence", None) or {}
    text = "\n".join(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}" for k, v in data.items())
    return _Shown(text or "no evidence recorded",
                  render("folded_evidence.html.j2", count=len(data), table=evidence_table(data)))


# --- tables ------------------------------------------------------------------------------------------------

#: What a table may take across, in pixels: JupyterLab's output area in a 1,400 px window with its file
#: browser open is about 950 px wide (measured in Chromium, JupyterLab 4).
TABLE_WIDTH = 900
#: Pixels per character at the table's font size (an average of the sans-serif at 12 px), and per cell's padding.
_CHAR_PX, _PAD_PX = 7.0, 16
#: A column wraps to about this many characters before it asks for more width.
_WRAP_CHARS = 28
#: Columns shown in a typewriter font (identifiers a reader compares character by character).
_MONO = ("lineage", "sha256", "commit", "serial")


def _cell(value: Any) -> str:
    """A cell as text: blank for None/NaN, whole floats without ".000000" (pandas turns int columns with a
    blank into floats), booleans as yes/no."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _width(label: str, texts: list[str]) -> float:
    """The width a column asks for: its longest word, or its text wrapped at `_WRAP_CHARS` characters."""
    words = [w for t in [label, *texts] for w in t.split()] or [""]
    longest_word = max(len(w) for w in words)
    longest = max([len(t) for t in texts] or [0])
    return max(longest_word, min(longest, _WRAP_CHARS)) * _CHAR_PX + _PAD_PX


def _details_columns(columns: list[str], texts: dict[str, list[str]], fixed: set[str], budget: float) -> list[str]:
    """The trailing columns (beyond `fixed`) that go below each row so that the rest fits `budget` pixels."""
    labels = {c: c.replace("_", " ") for c in columns}
    widths = {c: _width(labels[c], texts[c]) for c in columns}
    folded: list[str] = []
    for column in reversed(columns):
        if sum(w for c, w in widths.items() if c not in folded) <= budget:
            break
        if column not in fixed:
            folded.insert(0, column)
    return folded


def table(frame: Any, *, highlight: str | None = None, index: str | None = None,
          details: list[str] | None = None, width: int = TABLE_WIDTH) -> Any:
    """A DataFrame for reading at 1,400 px, untrusted or not: a plain HTML table with inline styles, text
    wrapped by words (never cut off, lineages in full), blanks for NaN/None, no row numbers.

    Args:
        frame: the DataFrame; anything else (None, a note, a pending gate) is returned as it is.
        highlight: a boolean column; rows where it is False get an amber background (e.g. "ready").
        index: a column to show first, as the row's name (e.g. "environment").
        details: columns to show in a line below each row instead of their own column; None: the trailing
            columns that would take the table past `width` pixels (the index and `highlight` stay).
        width: the pixels the table may take.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        return frame
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()  # a meaningful index is a column like the others
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if index in columns:
        columns = [index] + [c for c in columns if c != index]
    records = frame.to_dict("records")
    texts = {c: [_cell(r[c]) for r in records] for c in columns}
    fixed = {c for c in (index, highlight) if c}
    folded = [c for c in details if c in columns] if details is not None else \
        _details_columns(columns, texts, fixed, width)
    shown = [c for c in columns if c not in folded]
    rows = []
    for i, record in enumerate(records):
        bad = highlight in columns and (record[highlight] is False or record[highlight] == False)  # noqa: E712
        rows.append({"cells": [texts[c][i] for c in shown], "background": "#fff3cd" if bad else "transparent",
                     "details": [(c.replace("_", " "), texts[c][i]) for c in folded if texts[c][i]]})
    spec = [{"label": c.replace("_", " "), "index": c == index, "mono": any(m in c for m in _MONO),
             "nowrap": c == index or any(m in c for m in _MONO)} for c in shown]
    html_text = render("table.html.j2", columns=spec, rows=rows,
                       font_size="12px" if len(columns) > 8 else "13px")
    plain = pd.DataFrame({c: texts[c] for c in columns}, columns=columns)
    return _Shown(plain.to_string(index=False) if len(plain) else ", ".join(columns) + " (no rows)", html_text)


# --- refusals ----------------------------------------------------------------------------------------------

def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def record_refusal(ctx: Any, exc: BaseException) -> str:
    """Finish the step's open ledger row as refused (StepError, GateError) or failed (other errors).

    Returns:
        The status recorded ("refused"/"failed"), or "" when no row was open (the verdict already
        recorded this run's outcome).
    """
    row_id = getattr(ctx, "_row_id", None)
    if row_id is None:
        return ""
    status = "refused" if type(exc).__name__ in REFUSAL_ERRORS else "failed"
    ctx._row_id = None
    ctx.ledger.finish(row_id, status, error=str(exc))
    return status


def refusal_line(exc: BaseException, status: str) -> str:
    """The one line a refusal shows: "REFUSED: <reason and fix>" (ANSI red, as JupyterLab shows errors)."""
    if status:
        label = "REFUSED" if status == "refused" else "FAILED"
    elif f": {WOULD_REFUSE}" in str(exc) and " failed for " in str(exc):  # a plan's verdict: its own words
        label = LABELS["plan-refused"]
    else:  # no row was open: the verdict cell's own FAIL (already recorded), or a cell run again later
        label = "FAIL" if " failed for " in str(exc) else (
            "REFUSED" if type(exc).__name__ in REFUSAL_ERRORS else "FAILED")
    recorded = f" (recorded in the ledger as {status})" if status else ""
    return f"\x1b[1;31m{label}\x1b[0m: {exc}{recorded}"


def attach(ctx: Any) -> None:
    """Show the runbook's errors raised in this notebook as one red box and record them (see module doc).

    Outside IPython (a plain script) nothing changes.
    """
    shell = _shell()
    if shell is None:
        return
    from runbook_lib.errors import RunbookError

    def handler(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
        # The cell still ends in error (papermill stops a batch on it) with one sentence, not a traceback:
        # JupyterLab draws an error output as a red box.
        stb = [refusal_line(value, record_refusal(ctx, value))]
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((RunbookError,), handler)


# --- waits -------------------------------------------------------------------------------------------------

class LiveStatus:
    """A progress callback (`progress(line)`) that keeps one status line updated in place in JupyterLab.

    Each call replaces the line (the latest status, after the earlier ones: "pending -> planning"), so a
    long wait shows where it is without a scroll of lines; outside IPython each line is printed, as the
    CLI does. The executed notebook of a batch keeps the final line.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._handle: Any = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if _shell() is None or not hasattr(_shell(), "kernel"):
            print(line, flush=True)
            return
        from IPython.display import display as show

        latest = self.lines[-1]
        html_text = render("progress.html.j2", latest=latest,
                           steps=" -> ".join(self._steps()) if len(self.lines) > 2 else "")
        shown = _Shown(latest, html_text)
        if self._handle is None:
            self._handle = show(shown, display_id=True)
        else:
            self._handle.update(shown)

    def _steps(self) -> list[str]:
        return [line.split(": ", 1)[-1] for line in self.lines[1:]]


def live_status() -> LiveStatus:
    """A progress callback for waits (see LiveStatus)."""
    return LiveStatus()


# --- what steps 3 and 5 proved -----------------------------------------------------------------------------

def _planned(result: Any) -> bool:
    return bool(getattr(result, "planned", False))


def state_match(result: Any) -> Any:
    """Step 3's verify in words: what matched between the legacy and the migrated state, then the
    differences (if any) as a table."""
    ev = getattr(result, "evidence", None) or {}
    if _planned(result) or "legacy_serial" not in ev:
        return note(getattr(result, "summary", "") or "nothing compared")
    same_serial = ev.get("legacy_serial") == ev.get("workspace_serial")
    words = (f"lineage {ev.get('lineage')}, serial {ev.get('legacy_serial')}"
             + ("" if same_serial else f" (workspace {ev.get('workspace_serial')})")
             + f", {ev.get('resources')} resources "
             + ("identical, byte for byte (sha256 " + str(ev.get("legacy_sha256"))[:16] + "...)"
                if ev.get("identical_bytes") else "compared one by one"))
    table_ = getattr(result, "table", None)
    if table_ is not None and len(table_):
        return _Shown(words + "\n" + table_.to_string(),
                      render("state_match.html.j2", words=words, table=fragment_of(table(table_))))
    kind = "pass" if getattr(result, "passed", False) else "fail"
    label = "matched" if kind == "pass" else "compared"
    return _Shown(f"{label}: {words}",
                  render("state_match.html.j2", words=words, table=None, label=label, colour=COLOURS[kind][2]))


#: What plan mode says where step 5's verify would show the run's plan.
NO_RUN_IN_PLAN_MODE = ("plan mode: no commit was pushed and no run was started, so there is no plan to show; "
                       "apply would push the commit, unlock the workspace, wait for the run and pass only if "
                       "Terraform plans nothing to change")


def plan_evidence(result: Any) -> Any:
    """Step 5's verify in words: Terraform's plan summary line, Terraform's own plan lines (monospace,
    folded), and the resource changes as a table only when there are any.

    Only a run's plan read by verify says "no changes"; a plan-mode verdict (which counts what apply would
    do, not what Terraform planned) says that no run was started.
    """
    ev = getattr(result, "evidence", None) or {}
    plan = ev.get("plan")
    if _planned(result):
        return note(NO_RUN_IN_PLAN_MODE)
    if not (plan and ev.get("run_id") and isinstance(ev.get("has_changes"), bool)):
        return note(getattr(result, "summary", "") or "no plan read")
    headline = (f"Plan: {plan.get('add', 0)} to add, {plan.get('change', 0)} to change, "
                f"{plan.get('destroy', 0)} to destroy" + ("" if ev["has_changes"] else " (no changes)"))
    lines = ev.get("plan_lines") or []
    table_ = getattr(result, "table", None)
    pending = table_ is not None and len(table_) and ev["has_changes"]
    colour = COLOURS["fail" if ev["has_changes"] else "pass"][2]
    changes = fragment_of(table(table_)) if pending else ""
    return _Shown("\n".join([headline, *lines]),
                  render("plan_evidence.html.j2", colour=colour, headline=headline, run_id=ev.get("run_id"),
                         run_url=href(ev.get("run_url")), lines=lines, changes=changes))


def fragment_of(shown: Any) -> Any:
    """A shown object's HTML as markup a template embeds as it is (it was rendered from a template)."""
    from markupsafe import Markup

    return Markup(shown._repr_html_())
