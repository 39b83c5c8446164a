"""`jsontext.load_json`: the one reader of handed-over JSON text (plans, states)."""

import json

import pytest

from runbook_lib.errors import PlanError, StateError
from runbook_lib.jsontext import load_json


@pytest.mark.parametrize("data", ["", "  \n", b"", b"\t"])
def test_blank_input_raises_the_empty_message(data):
    with pytest.raises(StateError, match=r"^nothing here$"):
        load_json(data, StateError, empty="nothing here", invalid="bad ({where})")


def test_malformed_json_names_where_and_keeps_the_parser_error():
    with pytest.raises(PlanError) as info:
        load_json('{"a": 1,\n  "b": }', PlanError, empty="e", invalid="not JSON ({where}); fetch it again.")
    assert str(info.value) == "not JSON (Expecting value at line 2 column 8); fetch it again."
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


def test_any_json_value_is_returned_for_the_caller_to_check():
    assert load_json(b'{"a": [1, null]}', StateError, empty="e", invalid="i") == {"a": [1, None]}
    assert load_json("[]", PlanError, empty="e", invalid="i") == []


def test_undecodable_bytes_are_left_to_the_caller():
    with pytest.raises(UnicodeDecodeError):
        load_json(b'{"a": "\xc3\x28"}', StateError, empty="e", invalid="i")
