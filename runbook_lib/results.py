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
        waits_for_operator: the step needs the operator's hand before it can prove anything (an action in the
            legacy UI, then a confirmation): recorded as WAITING, neither passed nor failed; `summary` says
            what to do.
    """

    passed: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    table: Any = None
    waits_for_operator: bool = False

    @property
    def kind(self) -> str:
        """The banner kind (`runbook_lib.display.COLOURS`)."""
        from runbook_lib.display import verdict_kind

        return "waiting" if self.waits_for_operator else verdict_kind(self.passed, self.summary)

    def _repr_html_(self) -> str:
        """A green (PASS), red (FAIL) or amber (WAITING; plan mode: apply would refuse) banner, evidence folded."""
        from runbook_lib.display import banner_html

        return banner_html(self.kind, self.summary, self.evidence)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        from runbook_lib.display import banner_text

        printer.text(banner_text(self.kind, self.summary))



PLAN_COLUMNS = ["object", "name", "action", "detail"]
#: What a plan row's detail says when apply would refuse until an earlier step has run (action "none").
WAITS_FOR_EARLIER_STEP = "apply refuses until then"


def plan_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A step's plan table: what object, which, what apply would do (create/adopt/update/refuse/none), why."""
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def plan_verdict(frame: pd.DataFrame) -> StepResult:
    """The verdict of a step run in plan mode: PASS when apply would refuse nothing; nothing was changed."""
    refused = refusals(frame)
    counts = frame["action"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing to do"
    if refused:
        return StepResult(False, "apply would refuse: " + "; ".join(refused), {"plan": counts})
    # Rows that wait for an earlier step (a plan batch runs before anything is applied): apply would refuse
    # now, so the verdict says so, and passes, since the plan itself found nothing wrong.
    waiting = [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records")
               if r["action"] == "none" and WAITS_FOR_EARLIER_STEP in str(r["detail"])]
    if waiting:
        return StepResult(True, "apply would refuse: " + "; ".join(waiting), {"plan": counts, "waits": waiting})
    return StepResult(True, f"plan: {summary}; nothing was changed (plan mode)", {"plan": counts})


def refusals(frame: pd.DataFrame) -> list[str]:
    """The details of the plan rows whose action is "refuse"."""
    return [f"{r['object']} {r['name']}: {r['detail']}" for r in frame.to_dict("records") if r["action"] == "refuse"]
