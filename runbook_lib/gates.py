"""Confirmation gates: one mechanism for every action that needs the operator's word.

Steps 4 and 6 are actions the legacy host has no API for: the operator unlinks the VCS integration, or deletes
the environment, in the legacy UI, and then says so here; the step then proves what it can from the documented
endpoints. The confirmation is the operator's statement "I did it" (`unlink <org>/<env>`, `delete <org>/<env>`):

- In a batch (papermill, `interactive = False`), a gate passes only when the `confirm` parameter
  names this action and this environment exactly, e.g. ``confirm = "delete acme-legacy/web.prod"``.
  Without it the step stops as WAITING (`AwaitingOperator`: not a failure), showing where to act; the
  operator acts, adds the line to the batch's confirm file and runs the batch again. A confirmation that
  names another action or environment (a typo) is refused (GateError).
- Interactively (JupyterLab), a gate shows where to act and a button that says it is done; deleting also
  asks the operator to type the environment's name first (as destructive actions in well-known tools do).
  (An exact `confirm` parameter also passes interactively: the operator typed it.)

Either way the decision (who, when, what, how) is printed into the notebook's output and recorded in
the ledger before the action runs, so the evidence exists even if the action then fails.

A notebook gates its apply with one call, ``applied = ctx.gate("unlink", plan, step.apply, step.verify)``
(`StepContext.gate`, which uses `step_gate`), then ``ctx.verdict(plan, step.verify, applied)`` and
``ctx.conclude(result)``; in plan mode the gate answers with a note and nothing runs. Interactively the
click finishes the step: while the button waits, the verdict cells show a WAITING status (neither raised
nor recorded as failed: the step's ledger row stays open); the click runs the action, the step's verify
and its verdict (ledger row finished), and the status updates in place, so no cell has to be run again.
"""

from __future__ import annotations

import getpass
import html
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from runbook_lib.catalog import CONFIRM, DELETE, GATE_ACTIONS, UNLINK
from runbook_lib.errors import GateError

ACTIONS = GATE_ACTIONS
#: What the button says once the operator has acted in the legacy UI (other actions: "Confirm: <phrase>").
DONE = {UNLINK: "Done: I unlinked {target} in the legacy UI", DELETE: "Done: I deleted {target} in the legacy UI"}


@dataclass(frozen=True)
class Decision:
    """A recorded confirmation."""

    action: str
    target: str
    operator: str
    decided_at: str
    via: str  # "parameter" or "button"

    def as_evidence(self) -> dict[str, str]:
        return asdict(self)


def phrase(action: str, target: str) -> str:
    """The exact text that confirms `action` on `target` (e.g. "delete acme-legacy/web.prod")."""
    return f"{action} {target}"


def check(action: str, target: str, confirm: str | None, *, operator: str | None = None) -> Decision:
    """Pass a gate from a parameter, or refuse.

    Args:
        action: one of ACTIONS.
        target: what it acts on, e.g. "acme-legacy/web.prod".
        confirm: the operator's confirmation text (the notebook's `confirm` parameter).
        operator: who confirms (default: the OS user running the kernel).

    Returns:
        The Decision.

    Raises:
        GateError: `confirm` is empty or does not name exactly this action and target.
    """
    if action not in ACTIONS:
        raise GateError(f"unknown gated action {action!r}; gated actions are {', '.join(ACTIONS)}.")
    expected = phrase(action, target)
    given = (confirm or "").strip()
    if not given:
        raise GateError(f"not confirmed: this step will {expected}; to allow it in a batch, set the parameter "
                        f"confirm = {expected!r} (or put that line in the batch's confirm file).")
    if given != expected:
        raise GateError(f"wrong confirmation {given!r}: this step will {expected}; the confirmation must be "
                        f"exactly {expected!r}.")
    return Decision(action, target, operator or getpass.getuser(),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), "parameter")


def _record(decision: Decision, ledger: Any, environment: str | None, step: str | None, mode: str) -> None:
    print(f"CONFIRMED: {decision.operator} confirmed '{phrase(decision.action, decision.target)}' "
          f"via {decision.via} at {decision.decided_at}")
    if ledger is not None and environment and step:
        ledger.record(environment, step, mode, "passed", action=CONFIRM, evidence=decision.as_evidence())


def instructions_html(text: str) -> str:
    """The little markdown instructions use (paragraphs, `**bold**`, `` `code` ``), as HTML; everything escaped
    first, so a name from a host or a file cannot become markup."""
    import re

    out = []
    for para in (p for p in text.strip().split("\n\n") if p.strip()):
        escaped = html.escape(para)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
        escaped = re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
        out.append(f"<p>{escaped}</p>")
    return "".join(out)


class AwaitingOperator:
    """A gate in a batch without the operator's confirmation: the step waits for their hand (not a failure).

    Attributes:
        action, target: what is waited for.
        instructions: where and how to act (markdown), then how to say it is done.
    """

    def __init__(self, action: str, target: str, instructions: str) -> None:
        self.action, self.target, self.instructions = action, target, instructions
        self.summary = (f"waiting for you: {instructions.strip()} Then add the line '{phrase(action, target)}' to the "
                        f"batch's confirm file and run the batch again.")

    def _repr_html_(self) -> str:
        from runbook_lib.display import banner_html

        return banner_html("waiting", self.summary)


class PendingGate:
    """An interactive gate waiting for the operator's click; `outcome` holds the action's result after it.

    Attributes:
        decision: set when the button was clicked.
        outcome: what `run` returned.
        error: the exception `run` raised, if any.
    """

    def __init__(self, action: str, target: str, summary: Any, run: Callable[..., Any], args: Sequence[Any],
                 ledger: Any, environment: str | None, step: str | None, mode: str,
                 operator: str | None, then: Callable[[], Any] | None = None, instructions: str = "") -> None:
        self.action, self.target, self.summary = action, target, summary
        self.instructions = instructions
        self._run, self._args = run, tuple(args)
        self._ledger, self._environment, self._step, self._mode = ledger, environment, step, mode
        self._operator = operator
        self._then = then
        self.decision: Decision | None = None
        self.outcome: Any = None
        self.error: BaseException | None = None
        self.result: Any = None  # what `then` returned (the step's concluded verdict)
        self.widget = self._build()

    @property
    def confirmed(self) -> bool:
        return self.decision is not None

    def _build(self):
        import ipywidgets as widgets

        text = phrase(self.action, self.target)
        label = DONE.get(self.action, "Confirm: {target}").format(target=self.target if self.action in DONE else text)
        self.button = widgets.Button(description=label, button_style="danger", layout=widgets.Layout(width="auto"),
                                     tooltip=text)
        self.output = widgets.Output()
        self.button.on_click(self.click)
        # The step's status, shown by the verdict cells too (one widget, every view updates in place).
        self.status = widgets.HTML(self._waiting_html())
        self.evidence_view = widgets.HTML("<i>no evidence yet: the step waits for your confirmation (the button "
                                          "above)</i>")
        if self.instructions:
            header = widgets.HTML(instructions_html(self.instructions) + "<p>Nothing happens here until you click.</p>")
        else:
            header = widgets.HTML(f"<b>This will {html.escape(text)}.</b> Read what will happen, then click to "
                                  f"proceed. Nothing happens until you click.")
        parts = [header]
        if self.summary is not None:
            # What will happen, beside the button that does it (the operator may have scrolled past the plan).
            shown = widgets.Output()
            with shown:
                from IPython.display import display

                from runbook_lib.display import table

                display(table(self.summary))
            parts.append(shown)
        self.typed = None
        if self.action == DELETE:
            # Deleting asks for the environment's name first, as GitHub's delete dialog asks for owner/name.
            self.button.disabled = True
            self.typed = widgets.Text(placeholder=self.target, description="Type the name:",
                                      style={"description_width": "initial"}, layout=widgets.Layout(width="50%"))
            self.typed.observe(self._typed_changed, names="value")
            parts.append(self.typed)
        return widgets.VBox([*parts, self.button, self.output])

    def _typed_changed(self, change: Any) -> None:
        if self.decision is None:
            self.button.disabled = (change.get("new") or "").strip() != self.target

    def click(self, _button: Any = None) -> None:
        """What the button does: record the decision, then run the action once."""
        if self.decision is not None:
            return
        if self.typed is not None and self.typed.value.strip() != self.target:
            return  # the name was not typed (the button is disabled until it is)
        self.button.disabled = True
        self.decision = Decision(self.action, self.target, self._operator or getpass.getuser(),
                                 datetime.now(timezone.utc).isoformat(timespec="seconds"), "button")
        with self.output:
            _record(self.decision, self._ledger, self._environment, self._step, self._mode)
            try:
                self.outcome = self._run(*self._args)
                print(f"DONE: {phrase(self.action, self.target)}")
            except Exception as exc:  # shown to the operator in the widget, and kept for the verify cell
                self.error = exc
                print(f"FAILED: {type(exc).__name__}: {exc}")
            self._finish()

    def _waiting_html(self) -> str:
        from runbook_lib.display import banner_html

        how = ("do what the box above says in the legacy UI, then click the button" if self.action in DONE
               else f"click 'Confirm: {phrase(self.action, self.target)}' above")
        return banner_html("waiting", f"waiting for you: {how}. Nothing has been changed by this step; it then "
                                      "finishes by itself (proof, verdict, ledger).")

    def _finish(self) -> None:
        """After the action: the step's verify and verdict (`then`), shown in the status in place."""
        if self._then is None:
            return
        from runbook_lib.display import REFUSAL_ERRORS, banner_html, evidence, verdict_kind

        try:
            self.result = self._then(self.error)
        except Exception as exc:  # the verdict's own FAIL (already in the ledger) or a refusal: show it
            refused = self.error is not None and type(self.error).__name__ in REFUSAL_ERRORS
            self.status.value = banner_html("refused" if refused else "fail", str(exc))
            return
        self.result.concluded_by_gate = True  # the verdict cell shows it without recording it twice
        self.status.value = banner_html(verdict_kind(self.result.passed, self.result.summary), self.result.summary,
                                        self.result.evidence, title=f"{self._step} {self._environment}")
        self.evidence_view.value = evidence(self.result).html

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def recorded_decision(ledger: Any, environment: str, step: str, *, after_row: int | None = None) -> dict[str, Any] | None:
    """The latest confirmation recorded for `step` on `environment` (who, when, what, how), or None.

    A verify cell run after the button was clicked uses it to put the decision into the notebook's
    output (what a widget printed is not cell output).

    Args:
        after_row: count only decisions recorded after this ledger row (the step run's own start), so
            an earlier run's confirmation is not taken for this one's.
    """
    if ledger is None:
        return None
    row = ledger.latest(environment, step, action=CONFIRM)
    if row is None or row.status != "passed" or (after_row is not None and row.id < after_row):
        return None
    return dict(row.evidence)


def guard(action: str, target: str, *, confirm: str | None, interactive: bool, run: Callable[..., Any],
          args: Sequence[Any] = (), summary: Any = None, ledger: Any = None, environment: str | None = None,
          step: str | None = None, mode: str = "apply", operator: str | None = None,
          then: Callable[[BaseException | None], Any] | None = None, instructions: str = "") -> Any:
    """Run `run(*args)` only once the action is confirmed.

    Args:
        action, target: what is gated (see `phrase`).
        confirm: the `confirm` parameter; an exact phrase passes at once, in batch and interactively.
        interactive: True in JupyterLab (show a button), False in a batch.
        run, args: the action (for an operator's action in the legacy UI: what records and proves it).
        summary: shown above the button (a DataFrame of what will happen).
        ledger, environment, step, mode: where the decision is recorded.
        operator: who decides (default: the OS user).
        then: interactively, called after the clicked action with its error (or None); it finishes the step.
        instructions: where and how the operator acts (markdown); with them a batch without the confirmation
            waits (`AwaitingOperator`) instead of refusing.

    Returns:
        `run`'s result when confirmed by parameter; a PendingGate (displayed as the button) interactively; an
        `AwaitingOperator` in a batch that has no confirmation yet for an operator's action.

    Raises:
        GateError: the confirmation names another action or environment; or, in a batch, an action without
            instructions is not confirmed (nothing ran).
    """
    if confirm or (not interactive and not instructions):
        decision = check(action, target, confirm, operator=operator)
        _record(decision, ledger, environment, step, mode)
        return run(*args)
    if not interactive:
        return AwaitingOperator(action, target, instructions)
    return PendingGate(action, target, summary, run, args, ledger, environment, step, mode, operator, then,
                       instructions)


class Waiting:
    """A step's verdict while its gate waits for the click: shows the gate's live status, records nothing."""

    passed = False
    waiting = True

    def __init__(self, gate: PendingGate) -> None:
        self.gate = gate
        self.summary = (f"waiting for your confirmation: click 'Confirm: {phrase(gate.action, gate.target)}' above")
        self.evidence: dict[str, Any] = {}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.gate.status)


def step_gate(ctx: Any, action: str, plan: Any, apply: Callable[[Any], Any], verify: Callable[[Any], Any],
              ask: Callable[[Any], str] | None = None) -> Any:
    """A notebook's gated apply: `apply(ctx)` once confirmed, and, interactively, the click finishes the step.

    Args:
        ctx: the StepContext (its confirm, interactive, ledger, step, operator).
        action: the gated action ("delete", "unlink").
        plan: the step's plan table, shown beside the button.
        apply, verify: the step's functions.
        ask: the step's instructions for the operator (`ask(ctx)`, markdown), for an action done by hand.

    Returns:
        What `apply` returned (confirmed by parameter), the PendingGate (the button), or AwaitingOperator.

    Raises:
        GateError: the confirmation names another action or environment (nothing ran).
    """
    def then(error: BaseException | None) -> Any:
        if error is not None:
            from runbook_lib.display import record_refusal

            record_refusal(ctx, error)  # the refusal is the step's outcome: its row is not left running
            raise error
        return ctx.conclude(ctx.verdict(plan, verify))

    return guard(action, ctx.row.legacy_slug, confirm=ctx.confirm, interactive=ctx.interactive, run=apply,
                 args=(ctx,), summary=plan, ledger=ctx.ledger, environment=ctx.row.legacy_slug, step=ctx.step,
                 mode=ctx.mode, operator=ctx.operator, then=then, instructions=str(ask(ctx)) if ask else "")
