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
    ("legacy_org,legacy_env,new_org,workspace\nacme-legacy,a,acme,w\nacme-legacy,a,acme,v\n", "more than once"),
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
