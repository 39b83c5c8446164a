"""`commit_verify.wait_for_run`: backoff polling with a timeout, a line per status change, no busy loop.

Driven by a fake TFE client and a fake clock, so the schedule itself is checked (no server needed).
"""

from __future__ import annotations

import pytest

from runbook_lib.errors import StepError
from runbook_lib.jsonapi import Resource
from runbook_lib.steps.commit_verify import wait_for_run


class FakeTfe:
    """Runs whose status advances as the fake clock moves; the run appears after `appear_at` seconds."""

    def __init__(self, clock, statuses, appear_at=0.0):
        self.clock, self.statuses, self.appear_at = clock, statuses, appear_at
        self.calls = 0

    def _run(self):
        t = self.clock()
        status = [s for at, s in self.statuses if at <= t][-1]
        return Resource("run-1", "runs", {"status": status}, {"configuration-version": "cv-1"})

    def list_runs(self, workspace_id):
        self.calls += 1
        other = Resource("run-0", "runs", {"status": "applied"}, {"configuration-version": "cv-0"})
        return iter(([self._run()] if self.clock() >= self.appear_at else []) + [other])

    def current_run(self, workspace_id):
        self.calls += 1
        if self.clock() >= self.appear_at:
            return self._run(), "abc"
        return Resource("run-0", "runs", {"status": "applied"}, {"configuration-version": "cv-0"}), "old"

    def get_run(self, run_id):
        self.calls += 1
        return self._run()

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

    tick.sleeps = sleeps
    tick.sleep = sleep
    return tick


def test_waits_with_growing_pauses_and_reports_each_change(clock):
    tfe = FakeTfe(clock, [(0, "pending"), (5, "planning"), (30, "planned_and_finished")], appear_at=2)
    lines = []
    run = wait_for_run(tfe, "ws-1", "abc", timeout=120, interval=1, max_interval=8, progress=lines.append,
                       clock=clock, sleep=clock.sleep)
    assert run.id == "run-1" and run.get("status") == "planned_and_finished"
    assert [line.split(": ")[-1] for line in lines[1:]] == ["no run yet", "pending", "planning", "planned_and_finished"]
    assert max(clock.sleeps) == 8 and clock.sleeps[1] > clock.sleeps[0]  # backoff, capped
    assert tfe.calls < 20  # about a dozen polls for half a minute, not a busy loop


def test_times_out_with_a_clear_message(clock):
    tfe = FakeTfe(clock, [(0, "pending")])
    with pytest.raises(StepError, match=r"run run-1 is still pending after 30 s; run the step again"):
        wait_for_run(tfe, "ws-1", "abc", timeout=30, progress=lambda _: None, clock=clock, sleep=clock.sleep)
    assert sum(clock.sleeps) <= 30.01


def test_no_run_for_the_commit(clock):
    tfe = FakeTfe(clock, [(0, "pending")], appear_at=10_000)
    with pytest.raises(StepError, match="no run of commit abc appeared"):
        wait_for_run(tfe, "ws-1", "abc", timeout=20, progress=lambda _: None, clock=clock, sleep=clock.sleep)
