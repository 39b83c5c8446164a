from __future__ import annotations

import pytest

from runbook_lib import mapping
from runbook_lib.errors import MappingError
from runbook_lib.mapping import MappingRow


@pytest.mark.parametrize("legacy, expected", [
    ("web.prod", "web-prod"), ("network-prod", "network-prod"), ("a_b.c.d", "a_b-c-d"), ("x", "x")])
def test_naming_rule(legacy, expected):
    assert mapping.workspace_name_for(legacy) == expected
    assert mapping.workspace_name_problem(expected) is None


def test_long_and_invalid_names_flagged_not_truncated():
    assert "91 characters" in mapping.workspace_name_problem("a" * 91)
    assert "'.'" in mapping.workspace_name_problem("web.prod")
    assert mapping.workspace_name_problem("a" * 90) is None


def test_collision_flagged_on_both_rows():
    rows = mapping.propose("acme-legacy", ["web.prod", "web-prod", "db"], "acme")
    found = mapping.problems(rows)
    assert found["acme-legacy/db"] == []
    assert "collides with acme-legacy/web-prod" in found["acme-legacy/web.prod"][0]
    assert "collides with acme-legacy/web.prod" in found["acme-legacy/web-prod"][0]


def test_csv_roundtrip(tmp_path):
    rows = mapping.propose("acme-legacy", ["web.prod", "db"], "acme")
    path = tmp_path / "mapping.csv"
    mapping.write_csv(rows, path)
    assert mapping.read_csv(path) == rows
    assert path.read_text().splitlines()[0] == "legacy_org,legacy_env,new_org,workspace"


@pytest.mark.parametrize("text, message", [
    ("legacy_org,legacy_env,new_org\nacme-legacy,db,acme\n", "lacks the column"),
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,db,acme,\n", "line 2: empty workspace"),
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,db,acme,db.x\n", "line 2 (acme-legacy/db)"),
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,a,acme,w\nacme-legacy,b,acme,W\n", "collides"),
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,a,acme,w\nacme-legacy,a,acme,v\n",
     "line 3 (acme-legacy/a) repeats line 2 with other values; keep one row per environment."),
    ("legacy_org,legacy_env,new_org,workspace\n", "no rows"),
    ("legacy_org,legacy_env,new_org,workspace\nacme legacy,a,acme,w\n", "not a legacy"),
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,a,ac.me,w\n", "new organization"),
])
def test_bad_csv_refused_whole(text, message):
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mapping.read_csv(text)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(MappingError, match="cannot read the mapping file"):
        mapping.read_csv(tmp_path / "nope.csv")


def test_row_slugs():
    row = MappingRow("acme-legacy", "web.prod", "acme", "web-prod")
    assert row.legacy_slug == "acme-legacy/web.prod" and row.workspace_slug == "acme/web-prod"


HEADER = "legacy_org,legacy_env,new_org,workspace\n"


@pytest.mark.parametrize("org, env", [("acme-legacy", ".."), ("acme-legacy", "."), ("..", "web"), ("acme-legacy", "...")])
def test_names_a_url_would_normalise_are_refused(org, env):
    with pytest.raises(MappingError, match="a path segment a URL would normalise away"):
        mapping.read_csv(f"{HEADER}{org},{env},acme,web\n")


def test_a_second_header_line_is_one_sentence():
    with pytest.raises(MappingError, match=r"line 3 repeats the header \(two files pasted together\?\); remove it\.$"):
        mapping.read_csv(f"{HEADER}acme-legacy,web,acme,web\n{HEADER}")


def test_an_identical_duplicate_row_names_both_lines_once():
    with pytest.raises(MappingError) as caught:
        mapping.read_csv(f"{HEADER}acme-legacy,web,acme,web\nacme-legacy,db,acme,db\nacme-legacy,web,acme,web\n")
    message = str(caught.value)
    assert message.endswith("line 4 (acme-legacy/web) repeats line 2; keep one row per environment.")
    assert "collides" not in message and message.count("acme-legacy/web") == 1


def test_a_file_that_is_not_utf8_is_one_sentence(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes((HEADER + "acme-legacy,caf\u00e9,acme,cafe\n").encode("latin-1"))
    with pytest.raises(MappingError, match=r"is not UTF-8 text \(byte \d+ cannot be read\): save it as UTF-8") as caught:
        mapping.read_csv(path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
