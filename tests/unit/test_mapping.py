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
    assert path.read_text().splitlines()[0] == ",".join(mapping.CSV_COLUMNS)
    assert path.read_text().splitlines()[0].startswith("legacy_org,legacy_env,new_org,workspace,")


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


def test_a_mapping_without_the_fact_columns_reads_with_every_fact_unknown():
    rows = mapping.read_csv("legacy_org,legacy_env,new_org,workspace\nacme-legacy,db,acme,db\n")
    assert rows[0].unknown() == list(mapping.FACT_COLUMNS)


def test_facts_round_trip_and_parse():
    row = mapping.MappingRow("acme-legacy", "dns.prod", "acme", "dns-prod", terraform_version="0.11.11",
                             vcs_repo="acme-legacy/dns", vcs_branch="", working_directory="envs/prod",
                             sensitive_variables="dns_api_key; env:DNS_TOKEN", env_variables="REGION=eu-west=1",
                             teams="ops:admin[alice,bob]; auditors:read[]")
    back = mapping.read_csv(mapping.write_csv([row]))[0]
    assert back == row and back.unknown() == []
    assert [(v.key, v.category, v.sensitive, v.value) for v in back.hidden_variables] == [
        ("dns_api_key", "terraform", True, None), ("DNS_TOKEN", "env", True, None), ("REGION", "env", False, "eu-west=1")]
    assert [(t.name, t.access, t.members) for t in back.team_list] == [("ops", "admin", ("alice", "bob")),
                                                                        ("auditors", "read", ())]
    assert mapping.secret_variable(back, "dns_api_key") == "TFE_RUNBOOK_VAR__dns_prod__dns_api_key"


@pytest.mark.parametrize("column, value, message", [
    ("vcs_repo", "just-a-name", "is not org/repo"),
    ("working_directory", "../elsewhere", "relative path inside"),
    ("sensitive_variables", "x:y", "is not a variable name"),
    ("env_variables", "NOVALUE", "is not NAME=value"),
    ("teams", "ops:owner[a]", "with access read, write or admin"),
])
def test_malformed_facts_are_refused_naming_the_column(column, value, message):
    row = mapping.MappingRow("acme-legacy", "db", "acme", "db", **{column: value})
    with pytest.raises(MappingError, match=f"line 2 \\(acme-legacy/db\\): {column}.*{message}"):
        mapping.read_csv(mapping.write_csv([row]))


def test_two_workspaces_that_share_their_secret_variable_names_are_flagged():
    found = mapping.problems([mapping.MappingRow("a", "x", "n", "web-prod"), mapping.MappingRow("a", "y", "n", "web_prod")])
    assert all("TFE_RUNBOOK_VAR__web_prod__" in found[s][0] for s in ("a/x", "a/y"))


def test_the_survey_never_overwrites_what_the_operator_wrote():
    mine = mapping.MappingRow("a", "x", "n", "my-name", working_directory="d", teams="", vcs_repo="?")
    survey = [mapping.MappingRow("a", "x", "n", "x", vcs_repo="a/x", working_directory="?", terraform_version="0.11.11"),
              mapping.MappingRow("a", "new", "n", "new")]
    merged = mapping.merge([mine], survey)
    assert merged[0].workspace == "my-name" and merged[0].working_directory == "d" and merged[0].teams == ""
    assert merged[0].vcs_repo == "a/x" and merged[0].terraform_version == "0.11.11"  # only its '?' cells filled
    assert [r.legacy_env for r in merged] == ["x", "new"]


def test_facts_for_reads_one_line_and_refuses_another_workspace(tmp_path):
    path = tmp_path / "mapping.csv"
    mapping.write_csv([mapping.MappingRow("a", "x", "n", "x", working_directory="d"),
                       mapping.MappingRow("a", "y", "n", "y")], path)
    assert mapping.facts_for(mapping.MappingRow("a", "x", "n", "x"), path).working_directory == "d"
    assert mapping.facts_for(mapping.MappingRow("a", "z", "n", "z"), path).unknown() == list(mapping.FACT_COLUMNS)
    assert mapping.facts_for(mapping.MappingRow("a", "x", "n", "x"), tmp_path / "none.csv").working_directory == "?"
    with pytest.raises(MappingError, match="maps a/x to n/x, not n/other"):
        mapping.facts_for(mapping.MappingRow("a", "x", "n", "other"), path)
