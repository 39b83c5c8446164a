"""Who may touch a migrated workspace: the legacy environment's teams, their members and access, carried over.

HashiCorp's own importer of 2018 (a workspace created with `migration-environment`) created the legacy
environment's teams in the new organization where no team of that name existed, added their members, and
gave each team the same access level on the workspace (2018 workspaces.html.md). The runbook does the same
in step 2, through the documented teams, team-membership and team-access APIs. Which teams the legacy
environment had is the operator's word (the mapping's `teams` column): the legacy API never showed teams.
The rules:

- **Names.** A legacy team maps to the new team of the same name. A name the new API refuses (only
  letters, digits, `-` and `_`; teams.html.md) is refused, never rewritten: two teams must not merge
  silently. `skip_teams` leaves named teams out.
- **Created or adopted.** A team that does not exist is created and gets the legacy members that have an
  account on the new host; those without one are listed, never invented (an invitation is that person's
  decision). A team that exists is adopted as it is: its members are compared, not changed, unless
  `existing_team_members = "add"` (add the legacy members it lacks). A team that has members the legacy
  team did not have would give them access to the workspace, so it is refused unless
  `existing_team_members` is `"keep"` or `"add"`.
- **Access.** Each team gets the legacy level (`read`, `write`, `admin`: the same words on both products)
  on the workspace. A team that already has another level there is refused (change it by hand).
- **owners.** The new owners team already administers every workspace; a legacy `owners` team is shown
  and left alone (membership of the owners team is never the runbook's decision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runbook_lib import catalog
from runbook_lib.context import StepContext, StepResult
from runbook_lib.errors import NotFoundError, StepError
from runbook_lib.jsonapi import Resource

OWNERS = "owners"
LEVELS = ("read", "write", "admin")
EXISTING_MEMBER_POLICIES = catalog.EXISTING_MEMBER_POLICIES
_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class TeamMapping:
    """What step 2 would do for one legacy team of one environment.

    Attributes:
        name, access, members: the legacy team (members: legacy usernames).
        action: `create`, `adopt`, `refuse` or `none` (left alone).
        detail: why, in one sentence.
        team: the new team when it exists.
        existing_members: its members' usernames (adopted teams).
        access_action: `create`, `adopt`, `refuse` or `none` for the team's access on the workspace.
        access_id: the existing team-workspaces row, when there is one.
    """

    name: str
    access: str
    members: list[str]
    action: str = "create"
    detail: str = ""
    team: Resource | None = None
    existing_members: list[str] = field(default_factory=list)
    access_action: str = "create"
    access_detail: str = ""
    access_id: str | None = None

    @property
    def missing(self) -> list[str]:
        """Legacy members not in the existing team."""
        return [m for m in self.members if m not in self.existing_members]

    @property
    def extra(self) -> list[str]:
        """Members of the existing team who were not members of the legacy team."""
        return [m for m in self.existing_members if m not in self.members]


def enabled(ctx: StepContext) -> bool:
    """Whether step 2 carries teams over (`migrate_teams`, default True)."""
    return ctx.options.migrate_teams


def legacy_teams(ctx: StepContext) -> list[dict[str, Any]]:
    """The teams with access to the legacy environment, as the mapping names them: [{name, access, members}].

    The legacy product kept teams in its UI only (no documented endpoint), so the operator writes them into the
    mapping's `teams` column (`name:access[member,...]`).

    Raises:
        StepError: the mapping does not say (`?`).
    """
    missing = ctx.facts_missing("teams")
    if missing:
        raise StepError(f"{missing}; or set migrate_teams = False and grant access by hand.")
    return [{"name": t.name, "access": t.access, "members": list(t.members)} for t in ctx.row.team_list]


def describe(teams: list[dict[str, Any]]) -> str:
    """One inventory cell: `auditors:read[carol,dave]; developers:write[alice,bob]`."""
    return "; ".join(f"{t['name']}:{t['access']}[{','.join(t.get('members') or [])}]" for t in teams)


def name_problem(name: str) -> str | None:
    """Why a legacy team name cannot be a new team's name, or None."""
    if not _VALID_NAME.match(name or ""):
        return (f"team name {name!r} is invalid on the new host (only letters, digits, '-' and '_'); rename the "
                f"legacy team, or leave it out with skip_teams and grant its access by hand")
    return None


def mapping_summary(teams: list[dict[str, Any]], existing: set[str], skip: set[str] = frozenset()) -> str:
    """One mapping cell: which new teams would be created, adopted or refused (`developers: adopt; ...`)."""
    parts = []
    for t in teams:
        if t["name"] in skip or t["name"] == OWNERS:
            verdict = "left alone"
        elif name_problem(t["name"]):
            verdict = "refuse (invalid name)"
        else:
            verdict = "adopt" if t["name"] in existing else "create"
        parts.append(f"{t['name']} ({t['access']}): {verdict}")
    return "; ".join(parts)


def _skip(ctx: StepContext) -> set[str]:
    return {n.strip() for n in ctx.options.skip_teams.split(",") if n.strip()}


def plan_teams(ctx: StepContext, ws: Resource | None) -> list[TeamMapping]:
    """Read what the new organization and workspace hold; decide each legacy team's action.

    Two reads: the organization's teams with their members (one listing, `include=users`) and the
    workspace's team access.

    Raises:
        StepError: the mapping does not name the environment's teams.
    """
    policy = ctx.options.existing_team_members  # one of EXISTING_MEMBER_POLICIES (StepContext.create checked it)
    legacy = legacy_teams(ctx)
    found = _existing_teams(ctx) if legacy else {}
    access = {a.rel("team"): a for a in ctx.tfe.list_team_access(ws.id)} if ws is not None and legacy else {}
    skip = _skip(ctx)
    plans = []
    for t in legacy:
        m = TeamMapping(t["name"], t["access"], sorted(t.get("members") or []))
        plans.append(m)
        if t["name"] in skip:
            m.action, m.detail, m.access_action = "none", "left out by skip_teams", "none"
            continue
        if t["name"] == OWNERS:
            m.action, m.access_action = "none", "none"
            m.detail = "the new owners team already administers every workspace; its members are not changed"
            continue
        problem = name_problem(t["name"]) or (None if t["access"] in LEVELS else
                                              f"legacy access level {t['access']!r} is not one of {', '.join(LEVELS)}")
        if problem:
            m.action, m.detail, m.access_action = "refuse", problem, "none"
            continue
        m.team, m.existing_members = found.get(t["name"], (None, []))
        if m.team is None:
            m.action = "create"
            m.detail = (f"members to add: {', '.join(m.members) or '(none)'}; those without an account on the new "
                        f"host are listed, not invited")
        else:
            m.action = "adopt"
            m.detail = _member_diff(m, policy)
            if m.extra and policy == "report":
                m.action = "refuse"
            held = access.get(m.team.id)
            if held is not None:
                m.access_id = held.id
                if held.get("access") == m.access:
                    m.access_action, m.access_detail = "adopt", f"already {m.access}"
                else:
                    m.access_action = "refuse"
                    m.access_detail = (f"the team already has {held.get('access')!r} on the workspace, the legacy "
                                       f"level is {m.access!r}; change it by hand")
        if m.access_action == "create":
            m.access_detail = f"grant {m.access}"
    return plans


def _existing_teams(ctx: StepContext) -> dict[str, tuple[Resource, list[str]]]:
    """The new organization's teams by name, with their members (none when step 1 has not created the
    organization yet)."""
    try:
        return ctx.tfe.teams_with_members(ctx.row.new_org)
    except NotFoundError:
        return {}


def _member_diff(m: TeamMapping, policy: str) -> str:
    if not m.missing and not m.extra:
        return f"exists with the same members ({', '.join(m.members) or 'none'})"
    parts = []
    if m.missing:
        parts.append(f"lacks legacy members {', '.join(m.missing)}" +
                     (" (apply adds those with an account)" if policy == "add" else " (not changed)"))
    if m.extra:
        parts.append(f"has members the legacy team did not have: {', '.join(m.extra)}" +
                     ("; they would gain access: set existing_team_members = 'keep' or 'add' to accept, or fix the "
                      "team" if policy == "report" else " (kept)"))
    return "exists and differs: " + "; ".join(parts)


def plan_rows(plans: list[TeamMapping], workspace_slug: str) -> list[dict[str, Any]]:
    """Step 2's plan rows for the teams (object `team`) and their access (object `team access`)."""
    rows = []
    for m in plans:
        rows.append({"object": "team", "name": m.name, "action": m.action, "detail": m.detail})
        if m.action in ("create", "adopt"):
            rows.append({"object": "team access", "name": f"{m.name} on {workspace_slug}",
                         "action": m.access_action, "detail": m.access_detail})
    return rows


def _add_members(ctx: StepContext, team_id: str, usernames: list[str]) -> tuple[list[str], list[str]]:
    """Add each user alone, so one without an account does not keep the others out.

    Returns:
        (added, without an account on the new host)
    """
    added, absent = [], []
    for name in usernames:
        try:
            ctx.tfe.add_team_members(team_id, [name])
            added.append(name)
        except NotFoundError:
            absent.append(name)
    return added, absent


def apply_teams(ctx: StepContext, ws: Resource, plans: list[TeamMapping] | None = None) -> list[dict[str, Any]]:
    """Create or adopt each team, add its members, grant its access on the workspace.

    Args:
        plans: what `plan_teams` decided for this workspace before the step's first write (read again when
            not given).

    Raises:
        StepError: the plan refuses a team or its access; nothing was changed.
    """
    plans = plan_teams(ctx, ws) if plans is None else plans
    refused = [f"team {m.name}: {m.detail if m.action == 'refuse' else m.access_detail}"
               for m in plans if "refuse" in (m.action, m.access_action)]
    if refused:
        raise StepError("teams refused, nothing changed: " + "; ".join(refused))
    policy = ctx.options.existing_team_members
    done = []
    for m in plans:
        if m.action == "none":
            continue
        if m.team is None:
            m.team = ctx.tfe.create_team(ctx.row.new_org, m.name, adopt_existing=True)
            if m.team.adopted:
                m.existing_members = ctx.tfe.team_members(m.team.id)
            done.append({"object": "team", "name": m.name, "result": "adopted" if m.team.adopted else "created"})
            to_add = m.missing
        else:
            done.append({"object": "team", "name": m.name, "result": "adopted"})
            to_add = m.missing if policy == "add" else []
        if to_add:
            added, absent = _add_members(ctx, m.team.id, to_add)
            if added:
                done.append({"object": "team members", "name": m.name, "result": "added " + ", ".join(added)})
            if absent:
                done.append({"object": "team members", "name": m.name,
                             "result": "no account on the new host (invite them yourself): " + ", ".join(absent)})
        if m.access_action == "create":
            ctx.tfe.grant_team_access(m.team.id, ws.id, m.access)
            done.append({"object": "team access", "name": f"{m.name} on {ws.id}", "result": f"granted {m.access}"})
    return done


def verify_teams(ctx: StepContext, ws: Resource) -> tuple[StepResult | None, dict[str, Any]]:
    """Read every mapped team's access on the workspace back.

    Returns:
        (a failing StepResult or None when every team has its level, evidence {team: {access, members,
        without_account}}).
    """
    legacy = legacy_teams(ctx)
    skip = _skip(ctx)
    wanted = [t for t in legacy if t["name"] not in skip and t["name"] != OWNERS]
    if not wanted:
        return None, {}
    teams = ctx.tfe.teams_with_members(ctx.row.new_org, fresh=True)  # one listing: teams and members
    held = {a.rel("team"): a.get("access") for a in ctx.tfe.list_team_access(ws.id, fresh=True)}
    evidence, problems = {}, []
    for t in wanted:
        team, members = teams.get(t["name"], (None, []))
        level = held.get(team.id) if team is not None else None
        evidence[t["name"]] = {"access": level, "members": members,
                               "not_members": [m for m in t.get("members") or [] if m not in members]}
        if team is None:
            problems.append(f"team {t['name']} does not exist")
        elif level != t["access"]:
            problems.append(f"team {t['name']} has {level or 'no'} access, the legacy level is {t['access']}")
    if problems:
        return StepResult(False, "team access differs from the legacy environment: " + "; ".join(problems),
                          {"teams": evidence}), evidence
    return None, evidence


def parse_described(cell: Any) -> list[dict[str, Any]]:
    """The teams back from an inventory cell written by `describe` (empty for an empty or missing cell)."""
    if not isinstance(cell, str) or not cell.strip() or "[" not in cell:
        return []
    out = []
    for part in cell.split("; "):
        head, _, members = part.partition("[")
        name, _, access = head.rpartition(":")
        out.append({"name": name, "access": access, "members": [m for m in members.rstrip("]").split(",") if m]})
    return out


def mapping_cell(tfe: Any, new_org: str, legacy: list[dict[str, Any]], known: dict[str, set[str]]) -> str:
    """The mapping's `teams` cell: each legacy team created, adopted, refused or left alone in `new_org`.

    Args:
        legacy: the environment's teams ({name, access, ...}; `MappingRow.team_list`).
        known: team names per new organization already read (filled here: one list per organization).
    """
    if not legacy:
        return ""
    if new_org not in known:
        try:
            known[new_org] = {t.get("name") for t in tfe.list_teams(new_org)}
        except NotFoundError:
            known[new_org] = set()  # the organization does not exist yet: step 1 creates it
    return mapping_summary(legacy, known[new_org])


def summary_cell(evidence: dict[str, Any] | None) -> str:
    """A batch summary cell from step 2's team evidence: `auditors read (carol; no account: dave)`."""
    parts = []
    for name, facts in sorted((evidence or {}).items()):
        members = ", ".join(facts.get("members") or []) or "no members"
        absent = facts.get("not_members") or []
        parts.append(f"{name} {facts.get('access') or 'no access'} ({members}"
                     + (f"; not members: {', '.join(absent)})" if absent else ")"))
    return "; ".join(parts)
