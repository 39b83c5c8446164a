"""Pure rules of the team mapping (names, inventory cells, member diffs), without servers."""

from __future__ import annotations

import pytest

from runbook_lib import teams
from runbook_lib.errors import NotFoundError, StepError
from runbook_lib.jsonapi import Resource

APP_PROD = [{"name": "auditors", "access": "read", "members": ["carol", "dave"]},
            {"name": "developers", "access": "write", "members": ["alice", "bob"]}]


def test_inventory_cell_round_trips():
    cell = teams.describe(APP_PROD)
    assert cell == "auditors:read[carol,dave]; developers:write[alice,bob]"
    assert teams.parse_described(cell) == APP_PROD
    assert teams.parse_described("") == [] and teams.parse_described(float("nan")) == []
    assert teams.parse_described(teams.describe([{"name": "empty", "access": "admin", "members": []}])) == [
        {"name": "empty", "access": "admin", "members": []}]


@pytest.mark.parametrize("name, valid", [("developers", True), ("ops_team-2", True), ("release.managers", False),
                                         ("has space", False), ("", False)])
def test_team_names_the_new_host_accepts(name, valid):
    problem = teams.name_problem(name)
    assert (problem is None) == valid
    if not valid:
        assert "skip_teams" in problem


def test_mapping_summary_says_create_adopt_refuse_or_left_alone():
    legacy = APP_PROD + [{"name": "release.managers", "access": "write", "members": []},
                         {"name": "owners", "access": "admin", "members": ["operator"]}]
    summary = teams.mapping_summary(legacy, existing={"developers"})
    assert summary == ("auditors (read): create; developers (write): adopt; release.managers (write): refuse "
                       "(invalid name); owners (admin): left alone")
    assert "release.managers (write): left alone" in teams.mapping_summary(legacy, set(), {"release.managers"})


def test_member_diff_names_missing_and_extra_members():
    m = teams.TeamMapping("developers", "write", ["alice", "bob"], existing_members=["alice", "carol"])
    assert m.missing == ["bob"] and m.extra == ["carol"]
    report = teams._member_diff(m, "report")
    assert "lacks legacy members bob (not changed)" in report and "existing_team_members" in report
    assert "(apply adds those with an account)" in teams._member_diff(m, "add")
    assert teams._member_diff(teams.TeamMapping("x", "read", ["a"], existing_members=["a"]), "report").startswith(
        "exists with the same members")


class _Tfe:
    def __init__(self, names=None):
        self.names, self.calls = names, 0

    def list_teams(self, org):
        self.calls += 1
        if self.names is None:
            raise NotFoundError("no such organization")
        return iter(Resource(id=f"team-{n}", type="teams", attributes={"name": n}) for n in self.names)


def test_mapping_cell_reads_each_organization_once_and_tolerates_a_missing_one():
    cell = APP_PROD
    known: dict = {}
    tfe = _Tfe(["developers"])
    assert teams.mapping_cell(tfe, "acme", cell, known) == "auditors (read): create; developers (write): adopt"
    teams.mapping_cell(tfe, "acme", cell, known)
    assert tfe.calls == 1
    assert teams.mapping_cell(_Tfe(None), "new", cell, {}) == "auditors (read): create; developers (write): create"
    assert teams.mapping_cell(tfe, "acme", [], known) == ""


def test_the_legacy_teams_are_the_mappings_and_unknown_teams_refuse():
    from types import SimpleNamespace

    from runbook_lib.mapping import MappingRow

    def ctx(cell):
        row = MappingRow("acme-legacy", "web.prod", "acme", "web-prod", teams=cell)
        return SimpleNamespace(row=row, facts_missing=lambda *c: "the mapping does not say teams" if cell == "?" else None)
    assert teams.legacy_teams(ctx("ops:admin[alice]; auditors:read[]")) == [
        {"name": "ops", "access": "admin", "members": ["alice"]}, {"name": "auditors", "access": "read", "members": []}]
    assert teams.legacy_teams(ctx("")) == []
    with pytest.raises(StepError, match="does not say teams.*migrate_teams = False"):
        teams.legacy_teams(ctx("?"))


def test_summary_shows_the_teams_step_2_proved():
    from types import SimpleNamespace

    from runbook_lib import summary

    evidence = {"teams": {"developers": {"access": "write", "members": ["alice", "bob"], "not_members": []},
                          "auditors": {"access": "read", "members": ["carol"], "not_members": ["dave"]}}}
    passed = {"02_create_workspaces": SimpleNamespace(status="passed", evidence=evidence, finished_at="t")}
    failed = {"02_create_workspaces": SimpleNamespace(status="failed", evidence={"teams": {}}, finished_at="t")}
    facts = summary.environment_evidence(passed, "acme/app-prod")
    assert facts["teams"] == evidence["teams"]
    assert "teams" not in summary.environment_evidence(failed, "acme/app-prod")
    assert (teams.summary_cell(facts["teams"])
            == "auditors read (carol; not members: dave); developers write (alice, bob)")
    page = summary._environment("acme-legacy/app-prod", {"evidence": facts})
    assert "not members: dave" in page and "developers write (alice, bob)" in page
