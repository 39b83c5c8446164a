"""The sandbox's run lifecycle: one transition function over run.mdx's status table (store/runs.py).

The store is used directly (SQLite in a temporary directory, no server): these are the rules every
handler and the run worker go through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.store.runs import (CANCELABLE_STATUSES, DISCARDABLE_STATUSES, FINAL_STATUSES, RUN_STATUSES,
                                            RUN_TRANSITIONS, status_timestamp_key)

# go-tfe v1.90.0 `run.go`, type RunStatus: every value it declares (run.mdx lists the same).
GO_TFE_RUN_STATUSES = {
    "applied", "applying", "apply_queued", "canceled", "confirmed", "cost_estimated", "cost_estimating", "discarded",
    "errored", "fetching", "fetching_completed", "pending", "planned", "planned_and_finished", "planned_and_saved",
    "planning", "plan_queued", "policy_checked", "policy_checking", "policy_override", "policy_soft_failed",
    "post_plan_awaiting_decision", "post_plan_completed", "post_plan_running", "pre_apply_running",
    "pre_apply_completed", "pre_plan_completed", "pre_plan_running", "queuing", "queuing_apply"}
# run.mdx also lists `force_canceled` (go-tfe has `force-canceled-at` among the status timestamps).
DOCUMENTED_RUN_STATUSES = GO_TFE_RUN_STATUSES | {"force_canceled"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture
def user(store: Store) -> dict:
    return store.create_user("operator", "operator@example.com")


@pytest.fixture
def ws(store: Store, user: dict) -> dict:
    store.create_organization("acme", "ops@acme.example", user)
    return store.create_workspace("acme", {"name": "app", "terraform-version": "1.2.3"}, user)


def test_every_documented_status_is_known_and_final_ones_have_no_way_out():
    assert set(RUN_STATUSES) == DOCUMENTED_RUN_STATUSES
    assert set(RUN_TRANSITIONS) | FINAL_STATUSES == set(RUN_STATUSES)
    for status in FINAL_STATUSES:
        assert status not in RUN_TRANSITIONS
    for targets in RUN_TRANSITIONS.values():
        assert targets <= set(RUN_STATUSES)
    assert DISCARDABLE_STATUSES.isdisjoint({"planning", "applying"})  # cancel those instead
    assert "pending" in DISCARDABLE_STATUSES  # run.html.md "Discard a Run": "pending" runs too
    assert {"pending", "planning", "applying"} <= CANCELABLE_STATUSES
    assert CANCELABLE_STATUSES & DISCARDABLE_STATUSES == {"pending"} and CANCELABLE_STATUSES.isdisjoint(FINAL_STATUSES)


def test_a_transition_the_docs_do_not_allow_is_refused_and_changes_nothing(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    with pytest.raises(errors.ConflictError, match="a pending run cannot become applied"):
        store.transition_run(run["id"], "applied")
    assert store.run_by_id(run["id"])["status"] == "pending"
    store.transition_run(run["id"], "planning")
    store.transition_run(run["id"], "planned_and_finished")
    with pytest.raises(errors.ConflictError):
        store.transition_run(run["id"], "planning")  # a final status is final
    with pytest.raises(ValueError):
        store.transition_run(run["id"], "no_such_status")
    with pytest.raises(ValueError):
        store.update_run(run["id"], status="planning")  # statuses change only through transition_run


def test_only_from_makes_it_a_compare_and_set(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    with pytest.raises(errors.ConflictError):
        store.transition_run(run["id"], "canceled", only_from=("planning",))
    assert store.transition_run(run["id"], "canceled", only_from=("pending",))["status"] == "canceled"


def test_status_timestamps_use_go_tfe_keys(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    store.transition_run(run["id"], "planning")
    after = store.transition_run(run["id"], "planned_and_finished")
    stamps = json.loads(after["status_timestamps"])
    assert {"pending-at", "plan-queueable-at", "planning-at", "planned-and-finished-at"} <= set(stamps)
    assert status_timestamp_key("post_plan_awaiting_decision") == "post-plan-awaiting-decision-at"


def test_a_working_run_locks_its_workspace_and_releases_it_when_it_ends(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    assert not store.workspace_by_id(ws["id"])["locked"]  # a queued run holds nothing
    store.transition_run(run["id"], "planning")
    locked = store.workspace_by_id(ws["id"])
    assert locked["locked"] and locked["locked_by_run"] == run["id"] and locked["locked_by_user"] is None
    with pytest.raises(errors.ConflictError, match="is locked by Run"):
        store.unlock_workspace(locked, user)
    store.transition_run(run["id"], "planned")  # waiting for confirmation still holds it
    assert store.workspace_by_id(ws["id"])["locked_by_run"] == run["id"]
    store.transition_run(run["id"], "discarded")
    released = store.workspace_by_id(ws["id"])
    assert not released["locked"] and released["locked_by_run"] is None


def test_a_run_does_not_take_or_release_a_lock_a_user_holds(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    store.lock_workspace(ws, user, "migration")
    store.transition_run(run["id"], "planning")
    store.transition_run(run["id"], "errored")
    held = store.workspace_by_id(ws["id"])
    assert held["locked"] and held["locked_by_user"] == user["id"] and held["locked_by_run"] is None


def test_restart_recovery_is_the_only_way_back_to_pending(store: Store, user: dict, ws: dict):
    run = store.create_run(ws, user, cv_id=None, message="m")
    store.transition_run(run["id"], "planning")
    with pytest.raises(errors.ConflictError):
        store.transition_run(run["id"], "pending")
    assert store.transition_run(run["id"], "pending", restart=True)["status"] == "pending"
    assert not store.workspace_by_id(ws["id"])["locked"]  # the re-queued run gave its lock back
