"""Which legacy runs step 5 counts as started by or after its push (the proof that step 4 unlinked VCS)."""

from __future__ import annotations

from types import SimpleNamespace

from runbook_lib.steps.commit_verify import legacy_runs_after_push

PUSHED = "2026-11-29T13:10:47.900+00:00"


class _Legacy:
    def __init__(self, runs):
        self.runs = runs

    def find_environment(self, org, env):
        return {"name": env}

    def list_runs(self, org, env):
        return self.runs


def _ctx(runs):
    return SimpleNamespace(legacy=_Legacy(runs), row=SimpleNamespace(legacy_org="acme-legacy", legacy_env="net"))


def _run(run_id, created, sha="a" * 40):
    return {"id": run_id, "status": "applied", "commit_sha": sha, "created_at": created}


def test_a_run_listed_before_the_push_is_not_after_it_even_in_the_same_second():
    earlier = _run("run-old", "2026-11-29T13:10:47.022Z")  # same second as the push, listed before it
    # pushed_at as records made before milliseconds have it
    record = {"commit": "c" * 40, "pushed_at": "2026-11-29T13:10:47+00:00", "legacy_runs_before": ["run-old"],
              "adopted": False}
    assert legacy_runs_after_push(_ctx([earlier]), record) == []


def test_a_new_run_a_later_one_and_one_of_the_pushed_commit_are_counted():
    record = {"commit": "c" * 40, "pushed_at": PUSHED, "legacy_runs_before": ["run-old"], "adopted": False}
    runs = [_run("run-old", "2026-11-29T13:10:40.000Z"), _run("run-new", "2026-11-29T13:10:48.000Z"),
            _run("run-early-new", "2026-11-29T13:10:47.500Z")]
    assert [r["id"] for r in legacy_runs_after_push(_ctx(runs), record)] == ["run-new", "run-early-new"]


def test_an_adopted_push_has_no_list_so_timestamps_and_the_commit_decide():
    record = {"commit": "c" * 40, "pushed_at": "2026-11-29T13:10:47+00:00", "legacy_runs_before": [],
              "adopted": True}
    runs = [_run("run-a", "2026-11-29T13:10:46.000Z"), _run("run-b", "2026-11-29T13:10:47.100Z"),
            _run("run-c", "2026-11-29T13:00:00.000Z", sha="c" * 40)]
    assert [r["id"] for r in legacy_runs_after_push(_ctx(runs), record)] == ["run-b", "run-c"]
