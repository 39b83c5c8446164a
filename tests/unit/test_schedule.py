"""The batch's order across environments (runbook_lib/schedule.py): cut over once the states read are
migrated, delete once every reader is cut over, and phase by phase where nobody said who reads what."""

from __future__ import annotations

import pytest

from runbook_lib.schedule import CUT_OVER, DELETE, MIGRATE, Schedule

pytestmark = pytest.mark.unit

ENVS = ["o/a", "o/b", "o/c"]
ALL = [MIGRATE, CUT_OVER, DELETE]


def _schedule(reads, environments=ENVS, phases=ALL):
    asked = []

    def lookup(env):
        asked.append(env)
        return reads.get(env)
    plan = Schedule(environments, phases, lookup)
    plan.asked = asked
    return plan


def _run(plan, *pairs):
    for pair in pairs:
        plan.start(*pair)
        plan.finish(*pair)


def test_without_step_0_evidence_the_batch_runs_phase_by_phase():
    plan = _schedule({})
    assert plan.ready() == [(e, MIGRATE) for e in ENVS]
    _run(plan, ("o/a", MIGRATE), ("o/b", MIGRATE))
    assert plan.ready() == [("o/c", MIGRATE)]  # nobody is cut over while c still migrates
    _run(plan, ("o/c", MIGRATE), ("o/a", CUT_OVER), ("o/b", CUT_OVER))
    assert plan.ready() == [("o/c", CUT_OVER)]  # nobody is deleted while c may still read them
    _run(plan, ("o/c", CUT_OVER))
    assert plan.ready() == [(e, DELETE) for e in ENVS]


def test_a_cut_over_waits_only_for_the_states_it_reads():
    plan = _schedule({"o/a": {"o/b"}, "o/b": set(), "o/c": set()})
    _run(plan, ("o/a", MIGRATE), ("o/c", MIGRATE))
    # c reads nobody: cut over while b still migrates; a reads b: waits for b's migration
    assert plan.ready() == [("o/c", CUT_OVER), ("o/b", MIGRATE)]
    _run(plan, ("o/b", MIGRATE))
    assert ("o/a", CUT_OVER) in plan.ready()


def test_a_deletion_waits_for_every_reader_cut_over_and_for_readers_not_yet_known():
    plan = _schedule({"o/a": {"o/b"}, "o/b": set(), "o/c": set()})
    _run(plan, ("o/b", MIGRATE), ("o/c", MIGRATE), ("o/b", CUT_OVER), ("o/c", CUT_OVER))
    # a has not migrated: whom it reads is unknown, so neither b nor c may be deleted yet
    assert plan.ready() == [("o/a", MIGRATE)]
    _run(plan, ("o/a", MIGRATE))
    # a reads b: c may go, b waits until a is cut over
    assert plan.ready() == [("o/a", CUT_OVER), ("o/c", DELETE)]
    _run(plan, ("o/a", CUT_OVER))
    assert set(plan.ready()) == {("o/a", DELETE), ("o/b", DELETE), ("o/c", DELETE)}


def test_later_phases_first_and_at_most_the_free_slots():
    plan = _schedule({e: set() for e in ENVS})
    _run(plan, ("o/a", MIGRATE))
    assert plan.ready() == [("o/a", CUT_OVER), ("o/b", MIGRATE), ("o/c", MIGRATE)]
    assert plan.ready(limit=1) == [("o/a", CUT_OVER)]
    plan.start("o/a", CUT_OVER)
    assert ("o/a", CUT_OVER) not in plan.ready() and plan.running() == 1


def test_cut_overs_take_free_slots_before_deletions():
    envs = [f"o/{i}" for i in range(6)]
    plan = Schedule(envs, [MIGRATE, CUT_OVER, DELETE], reads=lambda e: frozenset(), caps={CUT_OVER: 2})
    _run(plan, *[(e, MIGRATE) for e in envs])
    _run(plan, *[(e, CUT_OVER) for e in envs[:2]])
    # two deletions and four cut-overs are ready (two within the cap): the cut-overs come first
    assert plan.ready() == [("o/2", CUT_OVER), ("o/3", CUT_OVER), ("o/0", DELETE), ("o/1", DELETE)]
    assert plan.ready(limit=2) == [("o/2", CUT_OVER), ("o/3", CUT_OVER)]


def test_a_resumed_batch_without_the_migrate_phase_uses_the_ledger_or_waits_for_everyone():
    known = _schedule({"o/a": set(), "o/b": set(), "o/c": set()}, phases=[CUT_OVER, DELETE])
    assert known.ready() == [(e, CUT_OVER) for e in ENVS]
    _run(known, ("o/a", CUT_OVER))
    assert ("o/a", DELETE) in known.ready()  # nobody reads a
    unknown = _schedule({}, phases=[CUT_OVER, DELETE])
    _run(unknown, ("o/a", CUT_OVER), ("o/b", CUT_OVER))
    assert unknown.ready() == [("o/c", CUT_OVER)]


def test_done_when_every_phase_of_every_environment_finished():
    plan = _schedule({}, environments=["o/a"], phases=[MIGRATE])
    assert not plan.done()
    _run(plan, ("o/a", MIGRATE))
    assert plan.done() and plan.ready() == []


def test_a_capped_phase_leaves_the_other_slots_to_the_others():
    # cut-overs mostly wait for the host's runs: capped, they cannot take every slot from the migrations
    envs = [f"o/{i}" for i in range(5)]
    plan = _schedule({e: set() for e in envs}, environments=envs)
    plan.caps = {CUT_OVER: 2}
    _run(plan, *[(e, MIGRATE) for e in envs[:3]])
    assert plan.ready() == [("o/0", CUT_OVER), ("o/1", CUT_OVER), ("o/3", MIGRATE), ("o/4", MIGRATE)]
    plan.start("o/0", CUT_OVER)
    plan.start("o/1", CUT_OVER)
    assert plan.ready(limit=3) == [("o/3", MIGRATE), ("o/4", MIGRATE)]  # o/2 waits for a cut-over slot
    plan.finish("o/0", CUT_OVER)
    assert plan.ready(limit=1) == [("o/2", CUT_OVER)]


def test_capped_migrations_let_the_first_environments_through_sooner():
    # the host's rate limit carries so many migrations: more at once only share it, and the first
    # environments reach their cut-over (and the host's run slots) later
    envs = [f"o/{i}" for i in range(5)]
    plan = _schedule({e: set() for e in envs}, environments=envs)
    plan.caps = {MIGRATE: 2, CUT_OVER: 2}
    assert plan.ready() == [("o/0", MIGRATE), ("o/1", MIGRATE)]
    _run(plan, ("o/0", MIGRATE))
    plan.start("o/1", MIGRATE)
    assert plan.ready() == [("o/0", CUT_OVER), ("o/2", MIGRATE)]
