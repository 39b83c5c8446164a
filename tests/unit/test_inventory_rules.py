"""Pure rules of the inventory and of step 3's decision, without servers."""

from __future__ import annotations

import json

import pytest

from runbook_lib.inventory import STATE_404, readiness, remote_state_reads
from runbook_lib.tfe import HeldState
from runbook_lib.state import TerraformState
from runbook_lib.steps.state_migration import _decide

READY_ROW = {"state_serial": 4, "lineage": "L1", "legacy_state": "read", "terraform_version": "0.11.11",
             "vcs_repo": "a/b", "vcs_branch": "", "working_directory": "", "sensitive_variables": "",
             "env_variables": "", "teams": ""}


@pytest.mark.parametrize("row, issues, exists, lineage, ready, reason", [
    (READY_ROW, [], False, None, True, "ready"),
    (READY_ROW, ["collides with x"], False, None, False, "collides with x"),
    ({**READY_ROW, "state_serial": None, "legacy_state": "none (204)"}, [], False, None, False, "no state"),
    ({**READY_ROW, "state_serial": None, "legacy_state": STATE_404}, [], False, None, False,
     "does not exist or the token cannot see it"),
    ({**READY_ROW, "working_directory": "?", "teams": "?"}, [], False, None, False,
     "the mapping does not say working_directory, teams"),
    (READY_ROW, [], True, "L2", False, "another lineage (L2)"),
    (READY_ROW, [], True, "L1", True, "already holds this lineage"),
    (READY_ROW, [], True, None, True, "exists without state"),
])
def test_readiness(row, issues, exists, lineage, ready, reason):
    got_ready, got_reason = readiness(row, issues, exists, lineage)
    assert got_ready is ready and reason in got_reason


def test_remote_state_reads_v3_and_v4():
    v3 = {"version": 3, "serial": 1, "lineage": "x", "modules": [{"path": ["root"], "resources": {
        "data.terraform_remote_state.net": {"type": "terraform_remote_state", "primary": {"attributes": {
            "backend": "atlas", "config.%": "1", "config.name": "acme-legacy/network-prod"}}},
        "data.terraform_remote_state.s3": {"type": "terraform_remote_state", "primary": {"attributes": {
            "backend": "s3", "config.name": "ignored"}}}}}]}
    v4 = {"version": 4, "serial": 1, "lineage": "x", "resources": [{
        "mode": "data", "type": "terraform_remote_state", "name": "net", "instances": [{"attributes": {
            "backend": "atlas", "config": {"value": {"name": "acme-legacy/db"}, "type": ["object", {}]}}}]}]}
    assert remote_state_reads(json.dumps(v3).encode()) == ["acme-legacy/network-prod"]
    assert remote_state_reads(json.dumps(v4).encode()) == ["acme-legacy/db"]
    assert remote_state_reads(b"") == [] and remote_state_reads(b"{not json") == []


def test_remote_state_reads_the_block_form_terraform_0_11_writes():
    # `config { name = ... }` (a block, not `config = {...}`): Terraform 0.11.11 writes it as a set, its
    # element keyed by a hash (as in the rehearsal seed's app-prod state, written by the real binary)
    v3 = {"version": 3, "serial": 1, "lineage": "x", "modules": [{"path": ["root"], "resources": {
        "data.terraform_remote_state.network": {"type": "terraform_remote_state", "primary": {"attributes": {
            "backend": "atlas", "config.#": "1", "config.2816885322.name": "acme-legacy/network-prod",
            "environment": "default", "vpc_id": "42241528801222545"}}}}}]}
    assert remote_state_reads(json.dumps(v3).encode()) == ["acme-legacy/network-prod"]


@pytest.fixture()
def legacy_state(fixtures_dir):
    return TerraformState.from_bytes((fixtures_dir / "states" / "v3.tfstate").read_bytes())


def _held(*, lineage, serial, md5):
    """What a workspace holds, as read from its downloaded state bytes."""
    return HeldState("sv-1", serial, lineage, md5, b"{}")


def test_decide_create_adopt_refuse(legacy_state):
    s = legacy_state
    assert _decide(s, None)[0] == "create"
    assert _decide(s, _held(lineage=s.lineage, serial=s.serial, md5=s.md5))[0] == "adopt"
    assert _decide(s, _held(lineage=s.lineage, serial=s.serial + 3, md5="other"))[0] == "adopt"
    assert _decide(s, _held(lineage=s.lineage, serial=s.serial - 1, md5="other"))[0] == "create"
    action, detail = _decide(s, _held(lineage="someone-else", serial=1, md5="x"))
    assert action == "refuse" and "another lineage" in detail


@pytest.mark.parametrize("serial_delta", [-1, 0, 5])
def test_decide_refuses_a_foreign_lineage_whatever_the_serials(legacy_state, serial_delta):
    s = legacy_state
    action, _ = _decide(s, _held(lineage="someone-else", serial=s.serial + serial_delta, md5=s.md5))
    assert action == "refuse"
    # A held state without any lineage is not this environment's either.
    assert _decide(s, _held(lineage=None, serial=s.serial + serial_delta, md5="x"))[0] == "refuse"


def test_readiness_treats_empty_table_cells_as_absent():
    row = {**READY_ROW, "configuration_version": float("nan"), "vcs_branch": float("nan")}
    ready, reason = readiness(row, [], False, None)
    assert ready and reason.startswith("ready;") and "legacy UI" in reason  # locks and runs: the UI only


def test_a_404_state_is_never_ready_whatever_else_is_known():
    ready, reason = readiness({**READY_ROW, "legacy_state": STATE_404, "state_serial": 4}, [], False, None)
    assert not ready and "answered 404" in reason
