"""Evidence between steps is written and read through one type; a missing or renamed key refuses step 6."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from runbook_lib.errors import StepError
from runbook_lib.evidence import (CutOver, EvidenceError, MigratedState, PlanCounts, StateReaders, join_slugs,
                                  split_slugs)
from runbook_lib.ledger import Ledger
from runbook_lib.mapping import MappingRow
from runbook_lib.steps import decommission

TARGET = "acme-legacy/network"  # the environment step 6 would delete
READER = "acme-legacy/web"  # an environment whose configuration read TARGET's state


class _Legacy:
    """Every environment still exists and none has a run in progress."""

    def find_environment(self, org, name):
        return {"name": name}


def _cut_over(still_reads=()):
    return CutOver("run-abc", "0" * 40, False, PlanCounts(0, 0, 0), tuple(still_reads)).to_evidence()


def _ctx(tmp_path, *, reader_inventory, reader_cut_over=None):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record(TARGET, "05_commit_and_verify", "apply", "passed", evidence=_cut_over())
    ledger.record(READER, "00_preflight_inventory", "apply", "passed", evidence=reader_inventory)
    if reader_cut_over is not None:
        ledger.record(READER, "05_commit_and_verify", "apply", "passed", evidence=reader_cut_over)
    org, _, env = TARGET.partition("/")
    return SimpleNamespace(row=MappingRow(org, env, "acme", env), ledger=ledger, legacy=_Legacy(),
                           interactive=False, confirm=f"delete {TARGET}")


def test_each_record_reads_back_what_was_written():
    assert StateReaders.from_evidence(StateReaders((TARGET,)).to_evidence(), READER).reads_state_of == (TARGET,)
    assert MigratedState.from_evidence(MigratedState("a" * 64).to_evidence(), TARGET).legacy_sha256 == "a" * 64
    cut = CutOver.from_evidence(_cut_over([TARGET]), READER)
    assert cut.still_reads_legacy == (TARGET,) and not cut.plan.any and cut.run_id == "run-abc"
    assert split_slugs(join_slugs([TARGET, READER])) == (TARGET, READER) and split_slugs("") == ()


def test_step6_is_ready_once_the_reader_was_repointed(tmp_path):
    ctx = _ctx(tmp_path, reader_inventory=StateReaders((TARGET,)).to_evidence(), reader_cut_over=_cut_over())
    assert decommission.check_ready(ctx).startswith("ready: step 5 passed")


def test_step6_refuses_while_a_reader_still_reads_the_state(tmp_path):
    ctx = _ctx(tmp_path, reader_inventory=StateReaders((TARGET,)).to_evidence(),
               reader_cut_over=_cut_over([TARGET]))
    with pytest.raises(StepError, match=f"readers: {READER} still read"):
        decommission.check_ready(ctx)


def test_step6_refuses_for_a_reader_its_inventory_missed_but_its_cut_over_left_reading(tmp_path):
    # a terraform_remote_state source never applied is in the configuration, not the state: step 0 lists
    # nothing, step 5 could not repoint it (the source's workspace held no state yet) and says so
    ctx = _ctx(tmp_path, reader_inventory=StateReaders(()).to_evidence(), reader_cut_over=_cut_over([TARGET]))
    with pytest.raises(StepError, match=f"readers: {READER} still read"):
        decommission.check_ready(ctx)


def test_step6_refuses_when_the_cut_over_key_is_missing(tmp_path):
    renamed = _cut_over([TARGET])
    renamed["still_reading_legacy"] = renamed.pop("still_reads_legacy")  # a renamed key, as an older ledger may hold
    ctx = _ctx(tmp_path, reader_inventory=StateReaders((TARGET,)).to_evidence(), reader_cut_over=renamed)
    with pytest.raises(StepError) as info:
        decommission.check_ready(ctx)
    message = str(info.value)
    assert "cannot tell who still reads this state" in message and "lacks still_reads_legacy" in message
    assert "run step 05_commit_and_verify again" in message and "nothing changed" in message


def test_step6_refuses_when_the_inventory_key_is_missing(tmp_path):
    ctx = _ctx(tmp_path, reader_inventory={"lineage": "x"}, reader_cut_over=_cut_over())
    with pytest.raises(StepError, match="00_preflight_inventory's evidence for acme-legacy/web lacks reads_state_of"):
        decommission.check_ready(ctx)


def test_step6_refuses_when_its_own_step5_evidence_lacks_a_key(tmp_path):
    ctx = _ctx(tmp_path, reader_inventory=StateReaders(()).to_evidence())
    evidence = _cut_over()
    del evidence["plan"]
    ctx.ledger.record(TARGET, "05_commit_and_verify", "apply", "passed", evidence=evidence)
    with pytest.raises(StepError, match="05_commit_and_verify's evidence for acme-legacy/network lacks plan"):
        decommission.check_ready(ctx)


def test_readers_joined_into_one_string_are_refused():
    with pytest.raises(EvidenceError, match="not a list of environment names"):
        StateReaders.from_evidence({"reads_state_of": TARGET}, READER)


def test_step3_digest_of_the_wrong_shape_is_refused():
    with pytest.raises(EvidenceError, match="not a sha256"):
        MigratedState.from_evidence({"legacy_sha256": "abc"}, TARGET)


def test_a_push_record_without_the_remote_state_is_refused_not_read_as_none(tmp_path):
    import json

    from runbook_lib.steps import commit_verify

    record = {"commit": "c" * 40, "branch": "master", "repo": "acme/app", "backend_target": "remote",
              "pushed_at": "2026-12-01T12:00:00+00:00", "legacy_baseline": None, "adopted": False,
              "remote_state": {"repointed": []}}  # still_reads_legacy missing: unknown, not "none"
    (tmp_path / commit_verify.PUSH_RECORD).write_text(json.dumps(record))
    result = commit_verify.verify(SimpleNamespace(audit_dir=tmp_path))
    assert not result.passed and "lacks remote_state.still_reads_legacy" in result.summary
    assert "run step 5 in apply mode again" in result.summary


def test_the_link_record_is_read_strictly(tmp_path):
    import json

    from runbook_lib.evidence import VcsLink
    from runbook_lib.steps import legacy_vcs

    ctx = SimpleNamespace(audit_dir=tmp_path, ledger=Ledger(tmp_path / "ledger.sqlite"),
                          row=MappingRow("acme-legacy", "web", "acme", "web"))
    path = tmp_path / legacy_vcs.LINK_RECORD
    path.write_text(json.dumps({"vcs": VcsLink("acme/app", "main", "").to_evidence()}))
    assert legacy_vcs.previous_link(ctx) == {"repo": "acme/app", "branch": "main", "working_directory": ""}
    path.write_text(json.dumps({"link": {"repo": "acme/app"}}))  # renamed: the link is not where it is read
    with pytest.raises(EvidenceError, match="lacks repo, branch, working_directory"):
        legacy_vcs.previous_link(ctx)
