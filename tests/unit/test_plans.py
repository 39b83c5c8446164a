"""runbook_lib.plans against the plans real terraform wrote (tests/fixtures/plans)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from runbook_lib.errors import PlanError
from runbook_lib.plans import CHANGE_COLUMNS, Plan, parse_plan, parse_plan_json, parse_plan_text, read_plan

ROOT_CREATES = ["null_resource.a", "null_resource.counted[0]", "null_resource.counted[1]"]
MODULE_CREATES = ["module.child.null_resource.b", "module.child.module.grand.null_resource.c"]

# scenario -> (has_changes, (add, change, destroy), {address: action} of every row that is not a no-op)
EXPECTED_011 = {
    "create": (True, (6, 0, 0), {"data.null_data_source.y": "read",
                                 **{a: "create" for a in ROOT_CREATES + ["null_resource.single"] + MODULE_CREATES}}),
    "noop": (False, (0, 0, 0), {}),
    "replace": (True, (1, 0, 1), {"data.null_data_source.y": "read", "null_resource.a": "replace"}),
    "delete": (True, (0, 0, 1), {"null_resource.counted[1]": "delete"}),
    "tainted": (True, (1, 0, 1), {"null_resource.counted[1]": "replace"}),
}
EXPECTED_1X = {
    "create": (True, (7, 0, 0), {"data.null_data_source.y": "read",
                                 **{a: "create" for a in ROOT_CREATES + ["null_resource.single[0]", "terraform_data.d"]
                                    + MODULE_CREATES}}),
    "noop": (False, (0, 0, 0), {}),
    "update": (True, (0, 1, 0), {"terraform_data.d": "update"}),
    "delete": (True, (0, 0, 1), {"null_resource.counted[1]": "delete"}),
    "replace": (True, (1, 0, 1), {"data.null_data_source.y": "read", "null_resource.a": "replace"}),
    "replace_requested": (True, (1, 0, 1), {"null_resource.counted[0]": "replace"}),
}
ALL_1X_ADDRESSES = {"null_resource.a", "null_resource.counted[0]", "null_resource.counted[1]",
                    "null_resource.single[0]", "terraform_data.d", *MODULE_CREATES}


@pytest.fixture(scope="module")
def plans_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "plans"


def _pending(plan: Plan) -> dict[str, str]:
    rows = plan.changes[plan.changes["action"] != "no-op"]
    return dict(zip(rows["address"], rows["action"]))


def _counts(plan: Plan) -> tuple[int, int, int]:
    return plan.additions, plan.changes_count, plan.destructions


# ------------------------------------------------------------------------------------------------ 0.11 text

@pytest.mark.parametrize("colors", ["", ".ansi"])
@pytest.mark.parametrize("scenario", sorted(EXPECTED_011))
def test_011_text_fixture(plans_dir, scenario, colors):
    text = (plans_dir / f"v011_{scenario}{colors}.txt").read_text()
    plan = parse_plan_text(text)
    has_changes, counts, pending = EXPECTED_011[scenario]
    assert plan.source == "text"
    assert plan.has_changes is has_changes
    assert _counts(plan) == counts
    assert _pending(plan) == pending
    assert list(plan.changes.columns) == CHANGE_COLUMNS
    if has_changes:
        # the summary is Terraform's own line, re-derived from the resource lines
        assert plan.summary in re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_011_rows_carry_module_mode_index_and_provider(plans_dir):
    plan = parse_plan_text((plans_dir / "v011_create.txt").read_text())
    rows = plan.changes.set_index("address")
    assert rows.loc["module.child.module.grand.null_resource.c", "module"] == "module.child.module.grand"
    assert rows.loc["data.null_data_source.y", "mode"] == "data"
    assert rows.loc["data.null_data_source.y", "type"] == "null_data_source"
    assert rows.loc["null_resource.counted[1]", "index"] == 1
    assert rows.loc["null_resource.single", "index"] is None
    assert set(rows["provider"]) == {"null"}
    assert rows["provider_address"].isna().all()


def test_011_replace_reasons_from_markers(plans_dir):
    replaced = parse_plan_text((plans_dir / "v011_replace.txt").read_text()).changes.set_index("address")
    assert replaced.loc["null_resource.a", "action_reason"] == "replace_because_cannot_update"
    assert replaced.loc["data.null_data_source.y", "action_reason"] is None
    tainted = parse_plan_text((plans_dir / "v011_tainted.txt").read_text()).changes.set_index("address")
    assert tainted.loc["null_resource.counted[1]", "action_reason"] == "replace_because_tainted"


# Terraform 0.11 cannot print "~" with the null provider (its only argument forces a new resource),
# so the in-place update and deposed shapes are hand-written after 0.11's command/format/plan.go.
UPDATE_AND_DEPOSED_011 = """\
Refreshing Terraform state in-memory prior to plan...

aws_instance.web: Refreshing state... (ID: i-0abc)

------------------------------------------------------------------------

An execution plan has been generated and is shown below.
Resource actions are indicated with the following symbols:
  ~ update in-place
  - destroy

Terraform will perform the following actions:

  ~ aws_instance.web
      tags.Name: "old" => "new"

  ~ module.net.aws_vpc.main
      enable_dns_support: "false" => "true"

  - aws_instance.web (deposed)

Plan: 0 to add, 2 to change, 1 to destroy.
"""


def test_011_update_in_place_and_deposed():
    plan = parse_plan_text(UPDATE_AND_DEPOSED_011)
    assert _counts(plan) == (0, 2, 1) and plan.has_changes
    assert plan.changes[["address", "action", "deposed"]].values.tolist() == [
        ["aws_instance.web", "update", False],
        ["module.net.aws_vpc.main", "update", False],
        ["aws_instance.web", "delete", True],
    ]
    assert plan.changes.loc[1, "module"] == "module.net"
    assert plan.changes.loc[0, "provider"] == "aws"


def test_011_text_as_bytes_and_crlf(plans_dir):
    data = (plans_dir / "v011_delete.txt").read_bytes().replace(b"\n", b"\r\n")
    assert _pending(parse_plan_text(data)) == {"null_resource.counted[1]": "delete"}


# ------------------------------------------------------------------------------------------------ 1.x JSON

@pytest.mark.parametrize("scenario", sorted(EXPECTED_1X))
def test_1x_json_fixture(plans_dir, scenario):
    plan = parse_plan_json((plans_dir / f"v1_{scenario}.json").read_bytes())
    has_changes, counts, pending = EXPECTED_1X[scenario]
    assert plan.source == "json"
    assert plan.terraform_version.startswith("1.")
    assert plan.has_changes is has_changes
    assert _counts(plan) == counts
    assert _pending(plan) == pending
    managed = plan.changes[plan.changes["mode"] == "managed"]
    assert set(managed["address"]) == ALL_1X_ADDRESSES  # every instance is listed, no-ops included
    assert list(plan.changes.columns) == CHANGE_COLUMNS


def test_1x_noop_lists_every_instance_as_no_op(plans_dir):
    plan = parse_plan_json((plans_dir / "v1_noop.json").read_text())
    assert set(plan.changes["action"]) == {"no-op"}
    assert plan.pending.empty
    assert plan.output_changes == ()


def test_1x_columns_reasons_and_providers(plans_dir):
    replace = parse_plan_json((plans_dir / "v1_replace.json").read_text()).changes.set_index("address")
    assert replace.loc["null_resource.a", "action_reason"] == "replace_because_cannot_update"
    assert replace.loc["null_resource.a", "replace_paths"] == "triggers"
    assert replace.loc["data.null_data_source.y", "action_reason"] == "read_because_config_unknown"
    assert replace.loc["null_resource.counted[1]", "action_reason"] is None
    assert replace.loc["null_resource.counted[1]", "index"] == 1
    assert replace.loc["terraform_data.d", "provider"] == "terraform"
    assert replace.loc["terraform_data.d", "provider_address"] == "terraform.io/builtin/terraform"
    assert replace.loc["module.child.null_resource.b", "module"] == "module.child"
    assert replace.loc["null_resource.a", "provider"] == "null"
    requested = parse_plan_json((plans_dir / "v1_replace_requested.json").read_text()).changes.set_index("address")
    assert requested.loc["null_resource.counted[0]", "action_reason"] == "replace_by_request"
    deleted = parse_plan_json((plans_dir / "v1_delete.json").read_text()).changes.set_index("address")
    assert deleted.loc["null_resource.counted[1]", "action_reason"] == "delete_because_count_index"


def test_1x_output_changes_do_not_count_as_changes(plans_dir):
    create = parse_plan_json((plans_dir / "v1_create.json").read_text())
    assert create.output_changes == ("child_id", "l", "o", "secret")
    doc = json.loads((plans_dir / "v1_noop.json").read_text())
    doc["output_changes"]["o"] = {"actions": ["update"], "before": "val", "after": "other"}
    plan = parse_plan_json(json.dumps(doc))
    assert plan.output_changes == ("o",) and plan.has_changes is False


def _noop_doc(plans_dir: Path) -> dict:
    return json.loads((plans_dir / "v1_noop.json").read_text())


def test_1x_read_only_plan_has_no_changes(plans_dir):
    doc = json.loads((plans_dir / "v1_replace.json").read_text())
    doc["resource_changes"] = [rc for rc in doc["resource_changes"] if rc["change"]["actions"] != ["delete", "create"]]
    plan = parse_plan_json(json.dumps(doc))
    assert "read" in set(plan.changes["action"])
    assert plan.has_changes is False and _counts(plan) == (0, 0, 0)


@pytest.mark.parametrize("actions,expected,counts", [
    (["create", "delete"], "replace", (1, 0, 1)),
    (["forget"], "forget", (0, 0, 0)),
])
def test_1x_create_before_destroy_and_forget(plans_dir, actions, expected, counts):
    doc = _noop_doc(plans_dir)
    doc["resource_changes"][0]["change"]["actions"] = actions
    plan = parse_plan_json(json.dumps(doc))
    assert plan.changes.loc[0, "action"] == expected
    assert plan.has_changes is True and _counts(plan) == counts


def test_1x_import_counts_as_a_change(plans_dir):
    doc = _noop_doc(plans_dir)
    doc["resource_changes"][0]["change"]["importing"] = {"id": "123"}
    plan = parse_plan_json(json.dumps(doc))
    assert plan.changes.loc[0, "importing"] and plan.has_changes is True


def test_1x_incomplete_plan_never_proves_no_changes(plans_dir):
    doc = _noop_doc(plans_dir)
    doc["complete"] = False
    assert parse_plan_json(json.dumps(doc)).has_changes is True


def test_1x_moved_resource_keeps_previous_address(plans_dir):
    doc = _noop_doc(plans_dir)
    doc["resource_changes"][0]["previous_address"] = "null_resource.old"
    plan = parse_plan_json(json.dumps(doc))
    assert plan.changes.loc[0, "previous_address"] == "null_resource.old" and not plan.has_changes


def test_1x_plan_without_resources():
    plan = parse_plan_json('{"format_version": "1.2", "terraform_version": "1.15.5", "planned_values": {}}')
    assert plan.changes.empty and not plan.has_changes and list(plan.changes.columns) == CHANGE_COLUMNS
    assert plan.pending.empty


# ------------------------------------------------------------------------------------------------ dispatch

def test_parse_plan_and_read_plan_pick_the_parser(plans_dir):
    assert parse_plan((plans_dir / "v1_update.json").read_bytes()).source == "json"
    assert parse_plan((plans_dir / "v011_delete.ansi.txt").read_text()).source == "text"
    assert read_plan(str(plans_dir / "v011_noop.txt")).has_changes is False
    assert read_plan(str(plans_dir / "v1_delete.json")).destructions == 1


def test_read_plan_missing_file(tmp_path):
    with pytest.raises(PlanError, match="cannot read the plan file"):
        read_plan(str(tmp_path / "nope.json"))


# ------------------------------------------------------------------------------------------------ bad input

def _mutated(plans_dir: Path, change) -> str:
    doc = copy.deepcopy(_noop_doc(plans_dir))
    change(doc)
    return json.dumps(doc)


BAD_JSON = [
    (lambda d: "", "plan JSON is empty"),
    (lambda d: "   ", "plan JSON is empty"),
    (lambda d: (d / "v1_update.json").read_text()[:500], "not valid JSON"),
    (lambda d: "[]", "is a list, not an object"),
    (lambda d: '{"foo": 1}', "no 'format_version'"),
    (lambda d: '{"format_version": "2.0", "planned_values": {}}', "format version 2.0 is not supported"),
    (lambda d: '{"format_version": "1.0", "terraform_version": "1.15.5", "values": {}}', "is a state, not a plan"),
    (lambda d: _mutated(d, lambda doc: doc.update(errored=True)), "plan errored"),
    (lambda d: _mutated(d, lambda doc: doc.update(resource_changes={})), "'resource_changes' is not a list"),
    (lambda d: _mutated(d, lambda doc: doc["resource_changes"][0].pop("address")), "change #0 of the plan has no"),
    (lambda d: _mutated(d, lambda doc: doc["resource_changes"][2]["change"].pop("actions")),
     "change of null_resource.counted[1] has no list of 'actions'"),
    (lambda d: _mutated(d, lambda doc: doc["resource_changes"][0]["change"].update(actions=["update", "delete"])),
     "actions ['update', 'delete'], which this runbook does not know"),
    (lambda d: b'{"format_version": "\xc3\x28"}', "not UTF-8"),
]


TERRAFORM_1X_TEXT = """\
Terraform will perform the following actions:

  # null_resource.a will be created
  + resource "null_resource" "a" {
      + id = (known after apply)
    }

Plan: 1 to add, 0 to change, 0 to destroy.
"""


def _drop_line(text: str, needle: str) -> str:
    return "\n".join(line for line in text.splitlines() if needle not in line)


BAD_TEXT = [
    (lambda d: "", "plan text is empty"),
    (lambda d: "\x1b[0m\n \n", "plan text is empty"),
    (lambda d: "hello world", "neither a 'Plan: X to add"),
    (lambda d: "\nError: Error refreshing state: 1 error(s) occurred:\n\n* provider.aws: hunter2\n",
     "it reports an error instead"),
    # the output cut off before its summary: never taken as "no changes"
    (lambda d: (d / "v011_create.txt").read_text().split("Plan:")[0], "may be truncated"),
    (lambda d: _drop_line((d / "v011_create.txt").read_text(), "+ null_resource.counted[1]"),
     "summary says 6 to add, 0 to change, 0 to destroy, but its resource lines add up to 5, 0, 0"),
    (lambda d: (d / "v011_replace.txt").read_text().replace("1 to destroy", "2 to destroy"),
     "summary says 1 to add, 0 to change, 2 to destroy"),
    (lambda d: (d / "v011_noop.txt").read_text() + (d / "v011_delete.txt").read_text(),
     "says both 'No changes.' and 'Plan: ...'"),
    (lambda d: (d / "v011_delete.txt").read_text() * 2, "holds 2 plan summaries"),
    (lambda d: (d / "v011_noop.txt").read_text().replace(
        "No changes.", "Terraform will perform the following actions:\n\n  + null_resource.x\n\nNo changes."),
     "says 'No changes.' but lists 1 resource change;"),
    (lambda d: TERRAFORM_1X_TEXT, "use `show -json` for 0.12 and later"),
    (lambda d: b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.parametrize("parse,build,problem", [(parse_plan_json, *case) for case in BAD_JSON]
                         + [(parse_plan_text, *case) for case in BAD_TEXT])
def test_bad_plan_raises_plan_error(plans_dir, parse, build, problem):
    """Either parser refuses with one sentence naming the problem, and never repeats the plan's secrets."""
    with pytest.raises(PlanError) as info:
        parse(build(plans_dir))
    assert problem in str(info.value)
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_non_text_input_is_refused():
    with pytest.raises(PlanError, match="must be given as text or bytes"):
        parse_plan_text(None)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="must be given as text or bytes"):
        parse_plan_json(42)  # type: ignore[arg-type]
