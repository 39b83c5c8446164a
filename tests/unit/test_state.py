"""runbook_lib.state against the state files real terraform wrote (tests/fixtures/states)."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import time
from pathlib import Path

import pytest

from runbook_lib.errors import StateError
from runbook_lib.state import (RESOURCE_COLUMNS, TerraformState, check_successor, compare_states, file_digests,
                               read_state, same_lineage)

SECRET_OUTPUT = "fixture-not-a-secret"  # the value of the fixtures' sensitive output
NULL = "null"
V3_RESOURCES = [
    # address, module, mode, type, name, instances, provider
    ("data.null_data_source.x", "", "data", "null_data_source", "x", 1, NULL),
    ("data.null_data_source.y", "", "data", "null_data_source", "y", 1, NULL),
    ("module.child.module.grand.null_resource.c", "module.child.module.grand", "managed", "null_resource", "c", 1,
     NULL),
    ("module.child.null_resource.b", "module.child", "managed", "null_resource", "b", 1, NULL),
    ("null_resource.a", "", "managed", "null_resource", "a", 1, NULL),
    ("null_resource.counted", "", "managed", "null_resource", "counted", 2, NULL),
    ("null_resource.single", "", "managed", "null_resource", "single", 1, NULL),
]
V4_RESOURCES = V3_RESOURCES + [("terraform_data.d", "", "managed", "terraform_data", "d", 1, "terraform")]


@pytest.fixture(scope="module")
def states(fixtures_dir: Path) -> dict[str, TerraformState]:
    return {path.stem: read_state(path) for path in sorted((fixtures_dir / "states").glob("*.tfstate"))}


@pytest.fixture(scope="module")
def raw(fixtures_dir: Path) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted((fixtures_dir / "states").glob("*.tfstate"))}


def _rows(state: TerraformState) -> list[tuple]:
    frame = state.resources_frame()
    return [tuple(row) for row in frame[RESOURCE_COLUMNS[:-1]].itertuples(index=False)]


def _state(doc: dict) -> TerraformState:
    return TerraformState.from_bytes(json.dumps(doc).encode())


# ------------------------------------------------------------------------------------------------ reading

def test_v3_header_digests_and_outputs(states, raw):
    state = states["v3"]
    assert (state.version, state.terraform_version, state.serial) == (3, "0.11.11", 1)
    assert state.lineage == json.loads(raw["v3"])["lineage"] and len(state.lineage) == 36
    assert state.raw == raw["v3"]
    assert state.md5 == hashlib.md5(raw["v3"]).hexdigest()
    assert state.sha256 == hashlib.sha256(raw["v3"]).hexdigest()
    assert state.md5_base64 == base64.b64encode(hashlib.md5(raw["v3"]).digest()).decode()
    assert state.size == len(raw["v3"])
    assert state.outputs == {"o": "val", "l": ["a", "b"], "child_id": state.outputs["child_id"],
                             "secret": SECRET_OUTPUT}
    assert state.outputs["child_id"].isdigit()


def test_v3_resources_modules_counts_and_data_sources(states):
    assert _rows(states["v3"]) == V3_RESOURCES
    assert set(states["v3"].resources_frame()["provider_address"]) == {"provider.null"}
    assert states["v3"].resource_count == 7 and states["v3"].instance_count == 8


def test_v3_instance_keys_count_index_suffixes_and_the_unindexed_count_1(states):
    frame = states["v3"].instances_frame()
    keys = dict(zip(frame["address"], frame["index_key"]))
    assert keys["null_resource.counted[0]"] == 0 and keys["null_resource.counted[1]"] == 1
    # 0.11 stores `count = 1` without an index: "null_resource.single", not "null_resource.single.0".
    assert keys["null_resource.single"] is None
    assert frame.loc[frame["address"] == "data.null_data_source.x", "id"].item() == "static"
    assert not frame["tainted"].any()


def test_v4_resources_have_the_same_addresses_as_v3(states):
    state = states["v4"]
    assert (state.version, state.serial > 0) == (4, True)
    assert state.terraform_version.startswith("1.")
    assert _rows(state) == V4_RESOURCES
    frame = state.instances_frame()
    assert "null_resource.single[0]" in set(frame["address"])
    assert frame.loc[frame["address"] == "null_resource.counted[1]", "index_key"].item() == 1
    assert state.outputs["secret"] == SECRET_OUTPUT and state.outputs["l"] == ["a", "b"]


@pytest.mark.parametrize("name", ["v4_upgraded_from_v3", "v4_refreshed_from_v3"])
def test_011_state_upgraded_by_1x_keeps_addresses_counts_and_lineage(states, name):
    upgraded = states[name]
    assert upgraded.version == 4
    assert upgraded.lineage == states["v3"].lineage
    assert upgraded.serial > states["v3"].serial
    assert _rows(upgraded) == _rows(states["v3"])
    assert set(upgraded.resources_frame()["provider_address"]) == {
        'provider["registry.terraform.io/hashicorp/null"]'}


def test_read_state_equals_from_bytes(fixtures_dir, raw):
    from_file = read_state(fixtures_dir / "states" / "v4.tfstate")
    from_bytes = TerraformState.from_bytes(raw["v4"])
    assert (from_file.md5, from_file.serial, from_file.lineage) == (from_bytes.md5, from_bytes.serial,
                                                                     from_bytes.lineage)
    assert from_file.resources_frame().equals(from_bytes.resources_frame())


def test_frames_are_copies(states):
    frame = states["v4"].resources_frame()
    frame.loc[0, "address"] = "changed"
    assert states["v4"].resources_frame().loc[0, "address"] != "changed"


def test_repr_never_shows_state_content(states):
    for state in states.values():
        text = repr(state)
        assert SECRET_OUTPUT not in text and "triggers" not in text
        assert state.md5 in text and "secret" in text  # output names are shown, values are not


def test_file_digests_stream_matches(raw, states):
    md5, sha256, size = file_digests(io.BytesIO(raw["v3"]), chunk_size=1000)
    assert (md5, sha256, size) == (states["v3"].md5, states["v3"].sha256, len(raw["v3"]))


def test_v4_for_each_keys_and_deposed_and_tainted():
    doc = {"version": 4, "serial": 1, "lineage": "l", "outputs": {}, "resources": [
        {"module": "module.m[\"x\"]", "mode": "managed", "type": "null_resource", "name": "e",
         "provider": 'module.m.provider["registry.terraform.io/hashicorp/null"].west',
         "instances": [
             {"index_key": "a", "attributes": {"id": "1"}, "status": "tainted"},
             {"index_key": "b", "attributes": {"id": "2"}},
             {"index_key": "b", "deposed": "00000001", "attributes": {"id": "old"}},
         ]}]}
    state = _state(doc)
    frame = state.resources_frame()
    assert frame.loc[0, "address"] == 'module.m["x"].null_resource.e'
    assert frame.loc[0, "instances"] == 2  # the deposed object is not a current instance
    assert frame.loc[0, "provider"] == "null.west"
    instances = state.instances_frame()
    assert list(instances["address"]) == ['module.m["x"].null_resource.e["a"]', 'module.m["x"].null_resource.e["b"]']
    assert list(instances["tainted"]) == [True, False]


def test_big_state_is_parsed_quickly():
    resources = [{"mode": "managed", "type": "null_resource", "name": f"r{i}",
                  "provider": 'provider["registry.terraform.io/hashicorp/null"]',
                  "instances": [{"attributes": {"id": str(i), "triggers": {"k": "v" * 200}}}]} for i in range(20000)]
    data = json.dumps({"version": 4, "serial": 1, "lineage": "l", "resources": resources}).encode()
    assert len(data) > 4_000_000
    started = time.perf_counter()
    state = TerraformState.from_bytes(data)
    frame = state.resources_frame()
    assert compare_states(state, state).empty
    elapsed = time.perf_counter() - started
    assert len(frame) == 20000 and frame["instances"].sum() == 20000
    # ~0.1 s here; 55 MB took ~1.2 s. The bound only catches an accidental quadratic.
    assert elapsed < 10, elapsed


# ------------------------------------------------------------------------------------------------ comparing

@pytest.mark.parametrize("a,b", [("v3", "v3"), ("v4", "v4"), ("v3", "v4_upgraded_from_v3"),
                                 ("v3", "v4_refreshed_from_v3"), ("v4_upgraded_from_v3", "v4_refreshed_from_v3"),
                                 ("v4_refreshed_from_v3", "v3")])
def test_equivalent_states_compare_empty(states, a, b):
    diff = compare_states(states[a], states[b])
    assert diff.empty, diff.to_string()
    assert list(diff.columns) == ["address", "difference", "detail"]


def test_states_of_different_applies_differ_in_ids_and_resources(states):
    diff = compare_states(states["v3"], states["v4"]).set_index("address")
    assert diff.loc["terraform_data.d", "difference"] == "extra"
    assert diff.loc["null_resource.a", "detail"] == "instance ids differ"
    assert diff.loc["null_resource.counted", "detail"] == "instance ids differ"
    # data sources have the constant id "static" in both, and 0.11 flatmap is not compared with 1.x JSON
    assert "data.null_data_source.x" not in diff.index


def test_missing_extra_and_instance_count(raw):
    reference = json.loads(raw["v4"])
    copy_ = copy.deepcopy(reference)
    copy_["resources"] = [r for r in copy_["resources"] if r["name"] != "a"]
    counted = next(r for r in copy_["resources"] if r["name"] == "counted")
    counted["instances"] = counted["instances"][:1]
    copy_["resources"].append({"mode": "managed", "type": "null_resource", "name": "new",
                               "provider": reference["resources"][0]["provider"],
                               "instances": [{"attributes": {"id": "9"}}]})
    del copy_["outputs"]["o"]
    copy_["outputs"]["extra_out"] = {"value": "x", "type": "string"}
    diff = compare_states(_state(reference), _state(copy_))
    got = {(row.address, row.difference): row.detail for row in diff.itertuples()}
    assert got == {
        ("null_resource.a", "missing"): "1 instance only in the reference",
        ("null_resource.counted", "changed"): "instances 2 -> 1",
        ("null_resource.new", "extra"): "1 instance not in the reference",
        ("output.extra_out", "extra"): "output not in the reference",
        ("output.o", "missing"): "output only in the reference",
    }


def test_changed_v4_attributes_are_named_never_quoted(raw):
    reference = json.loads(raw["v4"])
    changed = copy.deepcopy(reference)
    target = next(r for r in changed["resources"] if r["name"] == "a")
    target["instances"][0]["attributes"]["triggers"] = {"v": "hunter2-password"}
    changed["outputs"]["secret"]["value"] = "another-secret-value"
    diff = compare_states(_state(reference), _state(changed))
    assert list(diff["address"]) == ["null_resource.a", "output.secret"]
    assert list(diff["difference"]) == ["changed", "changed"]
    assert diff.loc[0, "detail"] == "attributes differ: triggers"
    text = diff.to_string()
    assert "hunter2" not in text and "another-secret" not in text and SECRET_OUTPUT not in text


def test_changed_v3_flatmap_attributes_and_taint(raw):
    reference = json.loads(raw["v3"])
    changed = copy.deepcopy(reference)
    root = changed["modules"][0]["resources"]
    root["null_resource.a"]["primary"]["attributes"]["triggers.v"] = "two"
    root["null_resource.counted.1"]["primary"]["tainted"] = True
    diff = compare_states(_state(reference), _state(changed)).set_index("address")
    assert diff.loc["null_resource.a", "detail"] == "attributes differ: triggers.v"
    assert diff.loc["null_resource.counted", "detail"] == "[1] attributes differ: (tainted)"


def test_changed_ids_across_versions(raw, states):
    upgraded = json.loads(raw["v4_upgraded_from_v3"])
    target = next(r for r in upgraded["resources"] if r["name"] == "b")
    target["instances"][0]["attributes_flat"]["id"] = "123"
    diff = compare_states(states["v3"], _state(upgraded))
    # flatmap on both sides: the attribute comparison names the id too
    assert diff.to_dict("records") == [{"address": "module.child.null_resource.b", "difference": "changed",
                                        "detail": "instance ids differ; attributes differ: id"}]


def test_provider_change_is_reported(raw):
    reference = json.loads(raw["v4"])
    changed = copy.deepcopy(reference)
    next(r for r in changed["resources"] if r["name"] == "a")["provider"] = \
        'provider["registry.terraform.io/hashicorp/random"]'
    diff = compare_states(_state(reference), _state(changed))
    assert diff.to_dict("records") == [{"address": "null_resource.a", "difference": "changed",
                                        "detail": "provider null -> random"}]


# ------------------------------------------------------------------------------------------------ lineage

def test_same_lineage_and_successor(states):
    assert same_lineage(states["v3"], states["v4_upgraded_from_v3"])
    assert not same_lineage(states["v3"], states["v4"])
    check_successor(states["v3"], states["v4_upgraded_from_v3"])
    check_successor(states["v3"], states["v3"])  # the same bytes again is harmless


def test_successor_other_lineage_refused(states):
    with pytest.raises(StateError, match="lineage .* differs from the current"):
        check_successor(states["v3"], states["v4"])


def test_successor_lower_serial_refused(states):
    with pytest.raises(StateError, match=r"serial \d+ is lower than the current serial"):
        check_successor(states["v4_refreshed_from_v3"], states["v3"])


def test_successor_same_serial_other_content_refused(raw):
    doc = json.loads(raw["v4"])
    other = copy.deepcopy(doc)
    other["outputs"]["o"]["value"] = "different"
    with pytest.raises(StateError, match="same serial .* different content"):
        check_successor(_state(doc), _state(other))


# ------------------------------------------------------------------------------------------------ bad input

V4_MINIMAL = {"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "abc", "outputs": {},
              "resources": []}


def _v4(**changes) -> bytes:
    doc = dict(V4_MINIMAL, secret_holder="hunter2-secret-value")
    for key, value in changes.items():
        if value is _DROP:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


_DROP = object()


@pytest.mark.parametrize("data,problem", [
    (b"", "the state is empty"),
    (b"  \n", "the state is empty"),
    (b'{"version": 4, "lineage": "hunter2-secret-value", "ser', "not valid JSON"),
    (b'{"lineage": "\xc3\x28hunter2"}', "not UTF-8 text (undecodable byte at offset 13)"),
    (b"[1, 2]", "JSON list, not an object"),
    (b'"hunter2-secret-value"', "JSON string, not an object"),
    (b'{"foo": 1}', "no 'version' key"),
    (b"{}", "no 'version' key"),
    (_v4(version=2), "state version 2 is not supported"),
    (_v4(version=5), "state version 5 is not supported"),
    (_v4(version="4"), "'version' is not an integer"),
    (_v4(version=True), "'version' is not an integer"),
    (_v4(serial=-1), "serial is negative (-1)"),
    (_v4(serial=_DROP), "no 'serial'"),
    (_v4(serial="7"), "'serial' is not an integer"),
    (_v4(lineage=_DROP), "no 'lineage'"),
    (_v4(lineage=""), "no 'lineage'"),
    (_v4(resources={"a": 1}), "'resources' is not a list"),
    (_v4(resources=[{"mode": "managed", "type": "null_resource"}]), "resource #0 of the state has no 'name'"),
    (_v4(resources=[{"mode": "weird", "type": "t", "name": "n"}]), "mode 'weird'"),
    (_v4(resources=[{"mode": "managed", "type": "t", "name": "n", "instances": {}}]), "'instances' that is not"),
    (_v4(resources=[{"mode": "managed", "type": "t", "name": "n", "instances": [{"attributes": ["hunter2"]}]}]),
     "has attributes that are not an object"),
    (_v4(outputs=[]), "'outputs' is not an object"),
    (_v4(version=3, modules=[{"path": ["root"], "resources": {"t.n": {"primary": {"attributes": []}}}}]),
     "resource 't.n' has 'attributes' that are not an object"),
    (_v4(version=3, modules={}), "no 'modules' list"),
    (_v4(version=3, modules=[{"path": ["child"]}]), "invalid 'path'"),
    (_v4(version=3, modules=[{"path": ["root"], "resources": {"not_an_address": {}}}]),
     "resource key 'not_an_address' is not of the form"),
])
def test_bad_input_raises_state_error_naming_the_problem(data, problem):
    with pytest.raises(StateError) as info:
        TerraformState.from_bytes(data)
    message = str(info.value)
    assert problem in message
    assert "hunter2" not in message
    # one sentence: a single final full stop, no line breaks
    assert message.endswith(".") and "\n" not in message


def test_truncated_real_state_raises(raw):
    with pytest.raises(StateError, match="probably truncated"):
        TerraformState.from_bytes(raw["v3"][: len(raw["v3"]) // 2])


def test_text_instead_of_bytes_is_refused(raw):
    with pytest.raises(StateError, match="must be given as bytes"):
        TerraformState.from_bytes(raw["v4"].decode())  # type: ignore[arg-type]


def test_unreadable_file_raises_state_error(tmp_path):
    with pytest.raises(StateError, match="cannot read the state file"):
        read_state(tmp_path / "missing.tfstate")


def test_unknown_version_names_the_fix():
    with pytest.raises(StateError, match="running Terraform 0.11 once"):
        TerraformState.from_bytes(_v4(version=1))


# -- the header alone ---------------------------------------------------------------------------------------

def test_read_header_agrees_with_the_full_parse_on_every_fixture(states, fixtures_dir: Path):
    from runbook_lib.state import read_header

    for path in sorted((fixtures_dir / "states").glob("*.tfstate")):
        header, full = read_header(path.read_bytes()), states[path.stem]
        assert (header.version, header.terraform_version, header.serial, header.lineage) == (
            full.version, full.terraform_version, full.serial, full.lineage), path.name


def test_read_header_reads_only_the_head_of_a_state_terraform_wrote():
    from runbook_lib.state import read_header

    head = b'{\n    "version": 3,\n    "terraform_version": "0.11.11",\n    "serial": 9,\n    "lineage": "abc",\n'
    # The rest is cut off: a full parse would refuse it, the header is complete.
    header = read_header(head + b'    "modules": [ {"path": ["root"], "resources": {')
    assert (header.version, header.terraform_version, header.serial, header.lineage) == (3, "0.11.11", 9, "abc")
    with pytest.raises(StateError, match="not valid JSON"):
        TerraformState.from_bytes(head + b'    "modules": [')


def test_read_header_falls_back_to_the_whole_document_when_the_members_come_later():
    from runbook_lib.state import read_header

    data = json.dumps({"modules": [], "outputs": {}, "lineage": "l-1", "serial": 4, "version": 3}).encode()
    header = read_header(data)
    assert (header.version, header.serial, header.lineage, header.terraform_version) == (3, 4, "l-1", None)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"[1, 2]", "not an object"),
    (b'{"serial": 1, "lineage": "x", "terraform_version": "1.0.0"}', "no 'version'"),
    (b'{"version": 2, "serial": 1, "lineage": "x", "terraform_version": "0.8.0"}', "not supported"),
    (b'{"version": 4, "terraform_version": "1.0.0", "serial": -1, "lineage": "x"}', "negative"),
    (b'{"version": 4, "terraform_version": "1.0.0", "serial": 1, "lineage": ""}', "no 'lineage'"),
    (b'{"version": 4, "terraform_version": "1.0.0", "serial": 1', "not valid JSON"),
])
def test_read_header_refuses_what_from_bytes_refuses(data, message):
    from runbook_lib.state import read_header

    with pytest.raises(StateError, match=message):
        read_header(data)


def test_read_header_of_50_mb_costs_no_full_parse():
    from runbook_lib.state import read_header

    body = b'{"version": 4, "terraform_version": "1.9.0", "serial": 3, "lineage": "big", "resources": ['
    data = body + b",".join([b'{"mode": "managed", "type": "null_resource", "name": "n", "instances": []}'] *
                            700_000) + b"]}"
    assert len(data) > 50_000_000
    started = time.perf_counter()
    assert read_header(data).serial == 3
    assert time.perf_counter() - started < 0.05  # a full json.loads of this takes seconds
