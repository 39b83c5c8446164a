"""Step 5's view of runs (runbook_lib/steps/runs.py): who holds a lock, finding and awaiting the run of a push
(backoff polling with a timeout, a line per status change, no busy loop; the runs list's budget), the statuses.

A fake TFE client and a fake clock: the schedule of reads is what is checked.
"""

from __future__ import annotations

import pytest

from runbook_lib.errors import StepError
from runbook_lib.jsonapi import Resource
from runbook_lib.steps import runs as step_runs
from runbook_lib.steps.runs import (CANCELABLE_STATUSES, DISCARDABLE_STATUSES, DONE_STATUSES, FAILED_STATUSES,
                                    LATE_FRACTION, LIST_AFTER, LIST_INTERVAL, lock_holder, locate_run, wait_for_run)

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
    assert {"planned", "policy_override", "pending"} <= DISCARDABLE_STATUSES  # a queued run is discarded


class FakeTfe:
    """One run of commit ``abc``: in the runs list from `appear_at`, the workspace's current run from
    `current_at` (a run queued behind another one is listed but not current), over an older current run."""

    def __init__(self, clock, statuses, appear_at=0.0, current_at=None):
        self.clock, self.statuses, self.appear_at = clock, statuses, appear_at
        self.current_at = appear_at if current_at is None else current_at
        self.list_reads: list[float] = []
        self.workspace_reads = 0
        self.run_reads = 0

    def _run(self):
        status = [s for at, s in self.statuses if at <= self.clock()][-1]
        return Resource("run-1", "runs", {"status": status}, {"configuration-version": "cv-1"})

    def list_runs(self, workspace_id):
        self.list_reads.append(self.clock())
        return iter([self._run()] if self.clock() >= self.appear_at else [])

    def current_run(self, workspace_id):
        self.workspace_reads += 1
        if self.clock() >= self.current_at:
            return self._run(), "abc"
        return Resource("run-0", "runs", {"status": "applied"}, {"configuration-version": "cv-0"}), "old"

    def get_run(self, run_id):
        self.run_reads += 1
        return self._run() if run_id == "run-1" else Resource(run_id, "runs", {"status": "applied"},
                                                               {"configuration-version": "cv-0"})

    def ingress_attributes(self, cv_id):
        return Resource("ia", "ingress-attributes", {"commit-sha": "abc" if cv_id == "cv-1" else "old"})


@pytest.fixture
def clock():
    now = [0.0]
    sleeps = []

    def tick():
        return now[0]

    def sleep(seconds):
        assert seconds > 0, "no busy loop"
        sleeps.append(seconds)
        now[0] += seconds

    tick.sleep = sleep
    tick.sleeps = sleeps
    return tick


def test_the_current_run_finds_the_push_without_the_runs_list(clock):
    tfe = FakeTfe(clock, [(0, "plan_queued"), (3, "planning"), (8, "planned_and_finished")], appear_at=2)
    run = wait_for_run(tfe, "ws-1", "abc", timeout=300, interval=0.5, max_interval=3, progress=lambda _: None,
                       clock=clock, sleep=clock.sleep)
    assert run.id == "run-1" and run.get("status") == "planned_and_finished"
    assert tfe.list_reads == []  # the runs list (30 reads a minute) was never needed
    assert tfe.workspace_reads >= 2 and tfe.run_reads >= 2  # current run until found, then by id


def test_a_run_queued_behind_another_is_found_in_the_list_sparingly(clock):
    # listed at 20 s, current (another run finished) only at 50 s: the list finds it first
    tfe = FakeTfe(clock, [(0, "pending"), (50, "planning"), (55, "post_plan_running"), (60, "policy_checking"),
                          (65, "planned_and_finished")], appear_at=20, current_at=50)
    run = wait_for_run(tfe, "ws-1", "abc", timeout=300, interval=0.5, max_interval=3, progress=lambda _: None,
                       clock=clock, sleep=clock.sleep)
    assert run.get("status") == "planned_and_finished"  # waited through post_plan_* and policy_* statuses
    assert tfe.list_reads and tfe.list_reads[0] >= LIST_AFTER
    assert all(b - a >= LIST_INTERVAL for a, b in zip(tfe.list_reads, tfe.list_reads[1:]))
    assert tfe.list_reads[-1] >= 20 and len(tfe.list_reads) <= 2  # found in the list, then read by id
    assert tfe.run_reads >= 4


def test_waits_with_growing_pauses_and_reports_each_change(clock):
    tfe = FakeTfe(clock, [(0, "pending"), (5, "planning"), (90, "planned_and_finished")], appear_at=2)
    lines = []
    run = wait_for_run(tfe, "ws-1", "abc", timeout=120, interval=1, max_interval=8, progress=lines.append,
                       clock=clock, sleep=clock.sleep)
    assert run.id == "run-1" and run.get("status") == "planned_and_finished"
    assert [line.split(": ")[-1] for line in lines[1:]] == ["no run yet", "pending", "planning", "planned_and_finished"]
    assert max(clock.sleeps) == 8 == clock.sleeps[-1] and clock.sleeps[2] < 8  # backoff, capped
    assert tfe.workspace_reads + tfe.run_reads + len(tfe.list_reads) < 30  # two dozen polls in a minute and a half


@pytest.mark.parametrize("plan_seconds", [3, 12, 20, 21.5, 45, 180])
def test_the_end_of_a_plan_is_seen_late_by_at_most_a_share_of_its_duration(clock, plan_seconds):
    tfe = FakeTfe(clock, [(0, "planning"), (plan_seconds, "planned_and_finished")])
    run = wait_for_run(tfe, "ws-1", "abc", timeout=600, interval=1, max_interval=15, progress=lambda _: None,
                       clock=clock, sleep=clock.sleep)
    assert run.get("status") == "planned_and_finished"
    late = clock() - plan_seconds
    assert 0 <= late <= max(1.0, LATE_FRACTION * plan_seconds) + 1e-9
    polls = tfe.workspace_reads + tfe.run_reads
    # the price: about a dozen polls until the pauses reach their cap (x1.6 backoff alone: 6), then one per 15 s;
    # a plan of 20 s stays within the 10 polls per awaited run the README promises
    assert polls <= 14 + max(0, plan_seconds - 40) / 15
    assert plan_seconds > 21.5 or polls <= 10


def test_times_out_with_a_clear_message(clock):
    tfe = FakeTfe(clock, [(0, "pending")])
    with pytest.raises(StepError, match=r"run run-1 is still pending after 30 s; run the step again"):
        wait_for_run(tfe, "ws-1", "abc", timeout=30, progress=lambda _: None, clock=clock, sleep=clock.sleep)
    assert sum(clock.sleeps) <= 30.01


def test_no_run_for_the_commit(clock):
    tfe = FakeTfe(clock, [(0, "pending")], appear_at=10_000)
    with pytest.raises(StepError, match="no run of commit abc appeared"):
        wait_for_run(tfe, "ws-1", "abc", timeout=20, progress=lambda _: None, clock=clock, sleep=clock.sleep)


def test_locate_run_trusts_a_recorded_id_only_for_its_commit(clock):
    tfe = FakeTfe(clock, [(0, "planned")])
    assert locate_run(tfe, "ws-1", "abc", "run-1").id == "run-1" and tfe.workspace_reads == 0
    # an id that names a run of another commit: looked for afresh (current run here)
    assert locate_run(tfe, "ws-1", "abc", "run-0").id == "run-1" and tfe.workspace_reads == 1
    assert tfe.list_reads == []
    # a recorded run that ended gives way to a newer current run of the same commit (one read more)
    again = FakeTfe(clock, [(0, "planned")])
    again.get_run = lambda run_id: Resource(run_id, "runs", {"status": "errored"}, {"configuration-version": "cv-1"})
    assert locate_run(again, "ws-1", "abc", "run-0").id == "run-1" and again.workspace_reads == 1
    late = FakeTfe(clock, [(0, "pending")], appear_at=0, current_at=10_000)
    assert locate_run(late, "ws-1", "abc").id == "run-1" and len(late.list_reads) == 1


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

    def current_run(self, workspace_id):
        return Resource("run-1", "runs", {"status": self.status}, {"configuration-version": "cv-1"}), "c" * 40

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
        "pushed_at": "2026-12-01T12:00:00+00:00", "legacy_baseline": None, "adopted": False,
        "remote_state": {"repointed": [], "still_reads_legacy": []}}))
    ctx = SimpleNamespace(audit_dir=tmp_path, tfe=_VerifyTfe(status), legacy=_NoLegacy(),
                          row=SimpleNamespace(new_org="acme", workspace="app", legacy_org="acme-legacy",
                                              legacy_env="app"))
    result = commit_verify.verify(ctx)
    assert not result.passed and f"run run-1 {words}" in result.summary and "proves nothing" in result.summary
    assert result.evidence["run_status"] == status
