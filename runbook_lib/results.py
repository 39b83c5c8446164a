"""What a step concludes, and the shape of its plan table.

`StepResult` (a verify's or a refusal's verdict) and the plan helpers (`plan_frame`, `plan_verdict`,
`refusals`) live here, below both `runbook_lib.context` (which records verdicts) and
`runbook_lib.steps` (which produces them), so neither has to import the other to use them. Both still
re-export them: `from runbook_lib.context import StepResult` and `from runbook_lib.steps import
plan_frame` keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class StepResult:
    """What a step's `verify` (or a refusal) concluded.

    Attributes:
        passed: the step's goal is proven from the servers' own answers.
        summary: one sentence for the PASS/FAIL line.
        evidence: facts for the ledger (ids, serials, checksums, counts); never a secret.
        table: an optional DataFrame to show.
        planned: the verdict of a plan (plan mode): it says what apply would do; nothing was done and
            nothing verified, so it is shown as PLAN OK or "apply would refuse", never PASS.
        waits_for_operator: the step needs the operator's hand before it can prove anything (an action in the
            legacy UI, then a confirmation): recorded as WAITING, neither passed nor failed; `summary` says
            what to do.
    """

    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    table: Any = None
    planned: bool = False
    waits_for_operator: bool = False

    @property
    def kind(self) -> str:
        """The verdict's banner kind (`display.verdict_kind`: pass, plan-ok, would-refuse, fail, ...)."""
        from runbook_lib.display import verdict_kind

        if self.waits_for_operator:
            return "waiting"
        return verdict_kind(self.passed, self.summary, self.planned)

    def line(self, title: str = "") -> str:
        """The verdict as one plain line in its mode's words ("PASS: <title>: ...", "PLAN OK: ...")."""
        from runbook_lib.display import LABELS

        return f"{LABELS[self.kind]}: {title + ': ' if title else ''}{self.summary}"

    def _repr_html_(self) -> str:
        """A green (PASS), blue (PLAN OK), red (FAIL, apply would refuse) or amber (apply waits for an
        earlier step) banner, evidence folded."""
        from runbook_lib.display import banner_html

        return banner_html(self.kind, self.summary, self.evidence)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.line())



PLAN_COLUMNS = ["object", "name", "action", "detail"]
#: What a plan row's detail says when apply would refuse until an earlier step has run (action "none").
WAITS_FOR_EARLIER_STEP = "apply refuses until then"


def plan_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A step's plan table: what object, which, what apply would do (create/adopt/update/refuse/none), why."""
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


#: The plan table's actions in the words of "apply would ...", in the order a verdict names them.
_WOULD = {"create": "create", "update": "update", "delete": "delete", "adopt": "adopt", "none": "leave as is"}


def would_do(counts: dict[str, int]) -> str:
    """A plan's action counts as words: "apply would create 2, update 1 and leave 1 as is"."""
    if not counts:
        return "apply would do nothing"
    order = [a for a in _WOULD if a in counts] + sorted(a for a in counts if a not in _WOULD)
    parts = [f"{_WOULD.get(a, a)} {counts[a]}" if a != "none" else f"leave {counts[a]} as is" for a in order]
    return "apply would " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def plan_verdict(frame: pd.DataFrame) -> StepResult:
    """The verdict of a step run in plan mode (`planned`): it says what apply would do, and passes when
    apply would refuse nothing (the batch then runs the next step); nothing was changed or verified.

    Its evidence is the plan's action counts under `would` (never under `plan`, which is what a run's
    plan counted: only a real run's plan may say "no changes").
    """
    refused = refusals(frame)
    counts = {str(k): int(v) for k, v in frame["action"].value_counts().to_dict().items()} if len(frame) else {}
    if refused:
        return StepResult(False, "apply would refuse: " + "; ".join(refused), {"would": counts}, planned=True)
    # Rows that wait for an earlier step (a plan batch runs before anything is applied): apply would refuse
    # now, so the verdict says so, and passes, since the plan itself found nothing wrong.
    waiting = [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records")
               if r["action"] == "none" and WAITS_FOR_EARLIER_STEP in str(r["detail"])]
    if waiting:
        return StepResult(True, "apply would refuse: " + "; ".join(waiting), {"would": counts, "waits": waiting},
                          planned=True)
    return StepResult(True, f"{would_do(counts)}; nothing was changed (plan mode)", {"would": counts}, planned=True)


def refusals(frame: pd.DataFrame) -> list[str]:
    """The details of the plan rows whose action is "refuse"."""
    return [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records") if r["action"] == "refuse"]
