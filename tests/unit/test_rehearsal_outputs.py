"""The read-back compares root outputs across state versions 3 (Terraform 0.11) and 4."""

from __future__ import annotations

import json

from runbook_lib.rehearsal import state_outputs


def test_outputs_of_v3_and_v4_states_compare_by_name_and_value(fixtures_dir):
    v3 = json.loads((fixtures_dir / "states" / "v3.tfstate").read_text())
    v4 = json.loads((fixtures_dir / "states" / "v4_upgraded_from_v3.tfstate").read_text())
    assert state_outputs(v3) and state_outputs(v3) == state_outputs(v4)
    changed = json.loads(json.dumps(v4))
    name = next(iter(changed["outputs"]))
    changed["outputs"][name]["value"] = "something else"
    assert state_outputs(changed) != state_outputs(v3)
    assert state_outputs({"version": 4}) == {} and state_outputs({"version": 3, "modules": []}) == {}
