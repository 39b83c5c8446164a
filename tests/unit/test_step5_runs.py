"""Step 5's view of runs (runbook_lib/steps/runs.py): who holds a lock, the runs list's budget, the statuses.

A fake TFE client and a fake clock: the schedule of reads is what is checked.
"""

from __future__ import annotations

import pytest

from runbook_lib.jsonapi import Resource
from runbook_lib.steps import runs as step_runs
from runbook_lib.steps.runs import (CANCELABLE_STATUSES, DISCARDABLE_STATUSES, DONE_STATUSES, FAILED_STATUSES,
                                    LIST_MIN_INTERVAL, lock_holder, wait_for_run)

# run.mdx "Run States" (go-tfe run.go): every status a run can show.
ALL_STATUSES = {
    "pending", "fetching", "fetching_completed", "pre_plan_running", "pre_plan_completed", "queuing", "plan_queued",
    "planning", "planned", "cost_estimating", "cost_estimated", "policy_checking", "policy_override",
    "policy_soft_failed", "policy_checked", "post_plan_running", "post_plan_completed", "post_plan_awaiting_decision",
    "planned_and_saved", "confirmed", "queuing_apply", "apply_queued", "pre_apply_running", "pre_apply_completed",
    "applying", "applied", "planned_and_finished", "discarded", "errored", "canceled", "force_canceled"}


def _ws(locked: bool, kind: str | None = None, ident: str | None = None) -> Resource:
    data = {"type": kind, "id": ident} if kind else None
    raw = {"relationships": {"locked-by": {"data": data}}}
    return Resource("ws-1", "workspaces", {"locked": locked}, {"locked-by": ident}, raw=raw)


def test_lock_holder_reads_locked_by_not_just_locked():
    assert lock_holder(_ws(False)) is None
    assert lock_holder(_ws(True, "runs", "run-1")) == ("runs", "run-1")
    assert lock_holder(_ws(True, "users", "user-1")) == ("users", "user-1")
    assert lock_holder(_ws(True, "teams", "team-1")) == ("teams", "team-1")


def test_every_status_is_either_awaited_or_an_end():
    # Anything not done is waited through; every status the docs list is one or the other.
    assert DONE_STATUSES <= ALL_STATUSES
    assert set(FAILED_STATUSES) <= DONE_STATUSES
    assert {"errored", "canceled", "policy_soft_failed"} <= set(FAILED_STATUSES)
    assert "planned_and_finished" in DONE_STATUSES and "planned_and_finished" not in FAILED_STATUSES
    for working in ("post_plan_running", "policy_checking", "cost_estimating", "plan_queued", "fetching"):
        assert working not in DONE_STATUSES
    # Recovery: discard only what is paused; cancel what still works.
    assert DISCARDABLE_STATUSES.isdisjoint(CANCELABLE_STATUSES)
    assert "planning" in CANCELABLE_STATUSES and "planning" not in DISCARDABLE_STATUSES
    assert {"planned", "policy_override"} <= DISCARDABLE_STATUSES


class FakeTfe:
    def __init__(self, clock, statuses, appear_at=0.0):
        self.clock, self.statuses, self.appear_at = clock, statuses, appear_at
        self.list_reads: list[float] = []
        self.run_reads = 0

    def _run(self):
        status = [s for at, s in self.statuses if at <= self.clock()][-1]
        return Resource("run-1", "runs", {"status": status}, {"configuration-version": "cv-1"})

    def list_runs(self, workspace_id):
        self.list_reads.append(self.clock())
        return iter([self._run()] if self.clock() >= self.appear_at else [])

    def get_run(self, run_id):
        self.run_reads += 1
        return self._run()

    def ingress_attributes(self, cv_id):
        return Resource("ia", "ingress-attributes", {"commit-sha": "abc"})


@pytest.fixture
def clock():
    now = [0.0]

    def tick():
        return now[0]

    def sleep(seconds):
        assert seconds > 0
        now[0] += seconds

    tick.sleep = sleep
    return tick


def test_the_runs_list_is_read_sparingly_then_the_run_by_id(clock):
    tfe = FakeTfe(clock, [(0, "pending"), (50, "planning"), (55, "post_plan_running"), (60, "policy_checking"),
                          (65, "planned_and_finished")], appear_at=45)
    run = wait_for_run(tfe, "ws-1", "abc", timeout=300, interval=0.5, max_interval=3, progress=lambda _: None,
                       clock=clock, sleep=clock.sleep)
    assert run.get("status") == "planned_and_finished"  # waited through post_plan_* and policy_* statuses
    gaps = [b - a for a, b in zip(tfe.list_reads, tfe.list_reads[1:])]
    assert all(gap >= LIST_MIN_INTERVAL for gap in gaps)
    assert len(tfe.list_reads) <= 30 * (45 / 60) and len(tfe.list_reads) < 25  # within 30 a minute
    assert tfe.list_reads[-1] >= 45 and tfe.run_reads >= 4  # found once, then polled by id


@pytest.mark.parametrize("status", ["errored", "canceled", "policy_soft_failed"])
def test_a_failed_run_ends_the_wait(clock, status):
    tfe = FakeTfe(clock, [(0, "planning"), (3, status)])
    assert wait_for_run(tfe, "ws-1", "abc", timeout=60, progress=lambda _: None, clock=clock,
                        sleep=clock.sleep).get("status") == status
    assert status in step_runs.FAILED_STATUSES


# --- verify names the end of a run that proves nothing --------------------------------------------------------

class _VerifyTfe:
    def __init__(self, status):
        self.status = status

    def get_workspace(self, org, name):
        return Resource("ws-1", "workspaces", {"terraform-version": "1.2.3"})

    def list_runs(self, workspace_id):
        return iter([Resource("run-1", "runs", {"status": self.status}, {"configuration-version": "cv-1"})])

    def ingress_attributes(self, cv_id):
        return Resource("ia", "ingress-attributes", {"commit-sha": "c" * 40})


class _NoLegacy:
    def find_environment(self, org, env):
        return None


@pytest.mark.parametrize("status, words", [("canceled", "was canceled"), ("discarded", "was discarded"),
                                           ("policy_soft_failed", "failed a Sentinel policy")])
def test_verify_fails_by_name_on_a_run_that_proves_nothing(tmp_path, status, words):
    import json
    from types import SimpleNamespace

    from runbook_lib.steps import commit_verify

    (tmp_path / commit_verify.PUSH_RECORD).write_text(json.dumps({
        "commit": "c" * 40, "branch": "master", "repo": "acme/app", "backend_target": "remote",
        "pushed_at": "2026-12-01T12:00:00+00:00", "legacy_runs_before": [], "adopted": False,
        "remote_state": {"repointed": [], "still_reads_legacy": []}}))
    ctx = SimpleNamespace(audit_dir=tmp_path, tfe=_VerifyTfe(status), legacy=_NoLegacy(),
                          row=SimpleNamespace(new_org="acme", workspace="app", legacy_org="acme-legacy",
                                              legacy_env="app"))
    result = commit_verify.verify(ctx)
    assert not result.passed and f"run run-1 {words}" in result.summary and "proves nothing" in result.summary
    assert result.evidence["run_status"] == status
