"""The sandbox's run duration and run capacity (`faults.RunProfile`), the two limits of a real TFE an estate meets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sandbox_helpers import Api
from vcs_helpers import SETTLED, legacy_runs

from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.faults import RunProfile


def test_runs_take_their_time_and_no_more_run_at_once_than_the_capacity(tmp_path: Path):
    profile = RunProfile(run_seconds=2.0, run_jitter=0.1, run_capacity=1, seed=3)
    with Sandbox(tmp_path / "sandbox", seed=2, runs=profile) as sandbox:
        legacy = Api(sandbox, legacy=True)
        envs = [spec.name for spec in sandbox.seeded_environments()]
        before = {env: {r["id"] for r in legacy_runs(sandbox, env)} for env in envs}
        queued = time.monotonic()
        for env in envs:
            assert legacy.post(f"/api/v1/environments/acme-legacy/{env}/plan", data="{}").status_code == 200
        new = {env: next(r["id"] for r in legacy_runs(sandbox, env) if r["id"] not in before[env]) for env in envs}
        most_planning, settled_at = 0, {}
        while len(settled_at) < len(envs):
            assert time.monotonic() - queued < 120, "the runs did not settle"
            statuses = {env: next(r["status"] for r in legacy_runs(sandbox, env) if r["id"] == new[env])
                        for env in envs}
            most_planning = max(most_planning, sum(1 for s in statuses.values() if s == "planning"))
            for env, status in statuses.items():
                if status in SETTLED and env not in settled_at:
                    settled_at[env] = time.monotonic() - queued
            time.sleep(0.1)
    assert most_planning == 1  # capacity 1: the other run stayed pending
    first, second = sorted(settled_at.values())
    assert first >= 1.8 and second >= first + 1.8  # each run took its 2 s (+-10%), one after the other


def test_the_profile_is_checked_and_off_by_default(tmp_path: Path):
    assert RunProfile.load(tmp_path) == RunProfile()
    RunProfile(run_seconds=20, run_jitter=0.2, run_capacity=10).save(tmp_path)
    assert RunProfile.load(tmp_path).run_capacity == 10
    with pytest.raises(ValueError, match="run_jitter"):
        RunProfile(run_jitter=2)
    with pytest.raises(TypeError):
        RunProfile(**{"run_secs": 1})
