"""What an operator sees in JupyterLab (and in the executed notebooks' HTML copies).

Every object a notebook cell shows goes through here, so no cell output is a Python repr:

- `banner_html` / `banner_text`: a step's verdict as a green (PASS), red (FAIL, REFUSED) or amber (WAITING,
  apply would refuse) banner with the evidence folded away (`StepResult._repr_html_` uses it);
- `note`: one plain line (plan mode's "nothing was changed"), `markdown`, `diff` (a coloured unified diff);
- `table`: a DataFrame readable at 1400 px (long text wraps instead of being cut off, blanks not NaN);
- `evidence`: a step's evidence as a folded key/value list;
- `attach(ctx)`: a refusal (`StepError`, `GateError` and the runbook's other errors) raised in a cell shows as
  one red box with the sentence that names the reason and the fix, instead of a traceback, and the step's
  ledger row is finished as refused (or failed), never left "running". The cell still fails, so a batch
  (papermill) stops there and records the failure.

Plain text (`text/plain`) is kept beside every HTML form: it is what a terminal, the ledger and a scan of
the executed notebooks read.
"""

from __future__ import annotations

import html
import json
from typing import Any, Mapping

#: Banner colours (background, border, text) by verdict kind.
COLOURS = {"pass": ("#e8f5e9", "#2e7d32", "#1b5e20"), "fail": ("#ffebee", "#c62828", "#b71c1c"),
           "refused": ("#ffebee", "#c62828", "#b71c1c"), "waiting": ("#fff8e1", "#f9a825", "#6d4c00"),
           "would-refuse": ("#fff8e1", "#f9a825", "#6d4c00"), "attention": ("#fff8e1", "#f9a825", "#6d4c00"),
           "plan-refused": ("#ffebee", "#c62828", "#b71c1c")}
LABELS = {"pass": "PASS", "fail": "FAIL", "refused": "REFUSED", "waiting": "WAITING",
          "would-refuse": "PLAN (apply waits for an earlier step)", "attention": "PASS, WITH ENVIRONMENTS NOT READY",
          "plan-refused": "PLAN: APPLY WOULD REFUSE"}
#: Errors shown as "REFUSED" (the step declined to act; nothing further was changed); others as "FAILED".
REFUSAL_ERRORS = ("StepError", "GateError")


def verdict_kind(passed: bool, summary: str) -> str:
    """The banner kind of a verdict: pass; would-refuse (plan mode: "apply would refuse: ..." because an
    earlier step must run first, or a survey that found environments not ready); plan-refused (plan mode:
    apply would refuse what exists); fail."""
    if summary.startswith("apply would refuse"):
        return "would-refuse" if passed else "plan-refused"
    if passed:
        return "attention" if "; not ready: " in summary else "pass"
    return "fail"


def _value_html(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, indent=2, sort_keys=True, default=str)
        return f"<pre style='margin:0;white-space:pre-wrap'>{html.escape(text)}</pre>"
    return html.escape("" if value is None else str(value))


def evidence_html(evidence: Mapping[str, Any] | None) -> str:
    """A two-column table of evidence keys and values (nested values as indented JSON)."""
    if not evidence:
        return "<i>no evidence recorded</i>"
    rows = "".join(f"<tr><th style='text-align:left;vertical-align:top;padding:2px 8px'>{html.escape(str(k))}</th>"
                   f"<td style='text-align:left;padding:2px 8px'>{_value_html(v)}</td></tr>"
                   for k, v in evidence.items())
    return f"<table style='border-collapse:collapse'>{rows}</table>"


def banner_html(kind: str, summary: str, evidence: Mapping[str, Any] | None = None, *, title: str = "") -> str:
    """A verdict banner: the label and summary on one line, the evidence folded below it."""
    background, border, colour = COLOURS[kind]
    head = (f"<div style='font-weight:600;color:{colour}'>{html.escape(LABELS[kind])}"
            f"{(' ' + html.escape(title)) if title else ''}: <span style='font-weight:400'>"
            f"{html.escape(summary)}</span></div>")
    folded = ""
    if evidence:
        folded = (f"<details style='margin-top:4px'><summary style='cursor:pointer'>evidence</summary>"
                  f"{evidence_html(evidence)}</details>")
    return (f"<div class='runbook-verdict runbook-{kind}' style='background:{background};border-left:6px solid "
            f"{border};padding:8px 12px;margin:4px 0;white-space:normal'>{head}{folded}</div>")


def banner_text(kind: str, summary: str, title: str = "") -> str:
    """The banner as one plain line, e.g. "PASS: 03_migrate_state acme-legacy/web: ..."."""
    return f"{LABELS[kind]}{(' ' + title) if title else ''}: {summary}"


class _Shown:
    """Something with an HTML form and a plain-text form (never a Python repr)."""

    def __init__(self, text: str, html_text: str) -> None:
        self.text, self.html = text, html_text

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text)

    def __str__(self) -> str:
        return self.text


def note(text: str) -> _Shown:
    """One grey line of information (e.g. "plan mode: nothing was changed")."""
    return _Shown(text, f"<div style='color:#555;font-style:italic'>{html.escape(text)}</div>")


class _Markdown:
    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text)


def markdown(text: str) -> _Markdown:
    """Markdown shown as such (its plain-text form is the text itself, not a quoted string or object repr)."""
    return _Markdown(str(text))


def diff(text: str) -> _Shown:
    """A unified diff coloured line by line (added green, removed red, hunks blue); "(no change)" when empty."""
    text = str(text)
    if not text.strip():
        return note("(no change: the branch already has it)")
    lines = []
    for line in text.splitlines():
        style = ("background:#e6ffed;color:#22863a" if line.startswith("+") and not line.startswith("+++") else
                 "background:#ffeef0;color:#b31d28" if line.startswith("-") and not line.startswith("---") else
                 "color:#6f42c1" if line.startswith("@@") else
                 "font-weight:600" if line.startswith(("+++", "---", "diff ")) else "")
        lines.append(f"<div style='{style}'>{html.escape(line) or '&nbsp;'}</div>")
    return _Shown(text, "<div class='runbook-diff' style='font-family:monospace;white-space:pre;"
                        f"border:1px solid #ddd;padding:4px;overflow-x:auto'>{''.join(lines)}</div>")


def evidence(result: Any) -> _Shown:
    """A step result's evidence, folded (its summary is in the verdict banner)."""
    if getattr(result, "waiting", False):
        return result.gate.evidence_view  # filled in place once the click has verified the step
    data = getattr(result, "evidence", None) or {}
    text = "\n".join(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}" for k, v in data.items())
    return _Shown(text or "no evidence recorded",
                  f"<details><summary style='cursor:pointer'>evidence ({len(data)} facts)</summary>"
                  f"{evidence_html(data)}</details>")


def _cell(value: Any) -> str:
    """A cell as text: blank for None/NaN, whole floats without ".000000" (pandas turns int columns with a
    blank into floats)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _short(value: Any) -> Any:
    text = "" if value is None else str(value)
    return text[:8] + "..." if len(text) > 12 else value


def table(frame: Any, *, highlight: str | None = None, index: str | None = None) -> Any:
    """A DataFrame for reading at 1400 px: text wraps (never cut off), blanks for NaN/None, lineages
    shortened to 8 characters with the full value in a tooltip.

    Args:
        frame: the DataFrame; anything else (None, a note, a pending gate) is returned as it is.
        highlight: a boolean column; rows where it is False get an amber background (e.g. "ready").
        index: a column to use as the index (e.g. "environment").
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        return frame
    if index is not None and index in frame.columns:
        frame = frame.set_index(index)
    # Headers wrap at spaces, not underscores: a wide inventory then fits 1400 px.
    frame = frame.rename(columns=lambda c: str(c).replace("_", " "))
    highlight = highlight.replace("_", " ") if highlight else highlight
    frame = frame.astype(object).where(frame.notna(), None)
    shortened = [c for c in frame.columns if "lineage" in str(c)]
    tips = None
    if shortened and len(frame):
        tips = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for column in shortened:
            tips[column] = frame[column].map(lambda v: "" if v is None else str(v))
    styler = frame.style.format(_cell).set_table_styles(
        [{"selector": "th", "props": "text-align:left"}, {"selector": "tbody th", "props": "white-space:nowrap"}]
        # a wide table (the inventory has 14 columns) in a smaller font, its cells breaking long ids
        + ([{"selector": "", "props": "font-size:11.5px"},
            {"selector": "td", "props": "word-break:break-word;padding:2px 4px"}] if len(frame.columns) > 10 else [])).set_properties(**{"white-space": "pre-wrap", "text-align": "left",
                                                             "vertical-align": "top"})
    if highlight is not None and highlight in frame.columns:
        def _row_style(row: Any) -> list[str]:
            bad = row[highlight] is False or row[highlight] == False  # noqa: E712 (numpy bools)
            return ["background-color:#fff3cd" if bad else ""] * len(row)

        styler = styler.apply(_row_style, axis=1)
    if shortened:
        styler = styler.format(_short, subset=shortened, na_rep="").set_properties(
            subset=shortened, **{"white-space": "nowrap", "word-break": "normal"})  # "d6626cf1..." on one line
        if tips is not None:
            styler = styler.set_tooltips(tips)
    # Plain text beside the HTML is the table itself (a Styler's own is "<...Styler object at 0x...>").
    plain = frame.map(_cell) if hasattr(frame, "map") else frame.applymap(_cell)
    return _Shown(plain.to_string(), styler.to_html())


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
        html_text = (f"<div class='runbook-progress' style='font-family:monospace;padding:2px 6px;"
                     f"border-left:4px solid #1565c0;background:#e3f2fd'>{html.escape(latest)}"
                     + (f"<div style='color:#555;font-size:90%'>{html.escape(' -> '.join(self._steps()))}</div>"
                        if len(self.lines) > 2 else "") + "</div>")
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


def state_match(result: Any) -> Any:
    """Step 3's verify in words: what matched between the legacy and the migrated state, then the
    differences (if any) as a table."""
    ev = getattr(result, "evidence", None) or {}
    if "legacy_serial" not in ev:
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
                      f"<div>{html.escape(words)}</div>{table(table_)._repr_html_()}")
    kind = "pass" if getattr(result, "passed", False) else "fail"
    label = "matched" if kind == "pass" else "compared"
    return _Shown(f"{label}: {words}", f"<div style='color:{COLOURS[kind][2]}'><b>{label}:</b> "
                                       f"{html.escape(words)}</div>")


def plan_evidence(result: Any) -> Any:
    """Step 5's verify in words: terraform's plan summary line, terraform's own plan lines (folded), and
    the resource changes as a table only when there are any."""
    ev = getattr(result, "evidence", None) or {}
    plan = ev.get("plan")
    if not plan:
        return note(getattr(result, "summary", "") or "no plan read")
    headline = (f"Plan: {plan.get('add', 0)} to add, {plan.get('change', 0)} to change, "
                f"{plan.get('destroy', 0)} to destroy" + (" (no changes)" if not ev.get("has_changes") else ""))
    lines = ev.get("plan_lines") or []
    folded = (f"<details><summary style='cursor:pointer'>terraform's plan output ({len(lines)} lines, run "
              f"{html.escape(str(ev.get('run_id')))})</summary><pre style='white-space:pre-wrap'>"
              f"{html.escape(chr(10).join(lines))}</pre></details>") if lines else ""
    table_ = getattr(result, "table", None)
    pending = table_ is not None and len(table_) and ev.get("has_changes")
    colour = COLOURS["fail" if ev.get("has_changes") else "pass"][2]
    return _Shown("\n".join([headline, *lines]),
                  f"<div style='color:{colour}'><b>{html.escape(headline)}</b></div>{folded}"
                  + (table(table_)._repr_html_() if pending else ""))
