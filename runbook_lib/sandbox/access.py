"""What a team may do on a workspace: TFE's fixed access levels and custom permissions, as rules.

Sources: permissions.mdx ("General Workspace Permissions", "Fixed Permission Sets": read, plan, write,
admin; "Custom Workspace Permissions"), team-access.mdx (the `runs`, `variables`, `state-versions`,
`sentinel-mocks`, `workspace-locking`, `run-tasks` attributes, their values and defaults; a fixed level is
answered with the permissions it stands for), go-tfe `team_access.go` (AccessType, RunsPermissionType,
VariablesPermissionType, StateVersionsPermissionType, SentinelMocksPermissionType) and `workspace.go`
WorkspacePermissions (the `can-*` flags a workspace answers).

A person's token (an owner, as every user the sandbox seeds) may do everything; a team token may do
what its team's access to the workspace grants, or its organization access (`manage-workspaces`: admin on
every workspace; `read-workspaces`: read). Refusals answer 404, as the API pages list "not found, or user
unauthorized to perform action" for each of these routes; the force delete answers 403 (workspaces.mdx
"Force Delete a workspace").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RUNS = ("read", "plan", "apply")
VARIABLES = ("none", "read", "write")
STATE_VERSIONS = ("none", "read-outputs", "read", "write")
SENTINEL_MOCKS = ("none", "read")
ACCESS_LEVELS = ("read", "plan", "write", "admin", "custom")


@dataclass(frozen=True)
class Grant:
    """One team's permissions on one workspace (team-access.mdx attribute names, `_` for `-`)."""

    runs: str = "read"
    variables: str = "none"
    state_versions: str = "none"
    sentinel_mocks: str = "none"
    workspace_locking: bool = False
    run_tasks: bool = False
    admin: bool = False

    def attributes(self) -> dict[str, Any]:
        """The team-access attributes this grant answers (`state-versions`, ...)."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items() if k != "admin"}

    def union(self, other: "Grant") -> "Grant":
        """The larger of two grants, permission by permission (a team holding two grants has both)."""
        def top(order: tuple[str, ...], a: str, b: str) -> str:
            return a if order.index(a) >= order.index(b) else b
        return Grant(top(RUNS, self.runs, other.runs), top(VARIABLES, self.variables, other.variables),
                     top(STATE_VERSIONS, self.state_versions, other.state_versions),
                     top(SENTINEL_MOCKS, self.sentinel_mocks, other.sentinel_mocks),
                     self.workspace_locking or other.workspace_locking, self.run_tasks or other.run_tasks,
                     self.admin or other.admin)

    # --- what the grant allows (the `can-*` flags of go-tfe WorkspacePermissions) --------------------

    def can(self) -> dict[str, bool]:
        """The workspace's `permissions` for a caller holding this grant."""
        runs = RUNS.index(self.runs)
        state = STATE_VERSIONS.index(self.state_versions)
        return {
            "can-update": self.admin, "can-destroy": self.admin, "can-force-delete": self.admin,
            "can-queue-run": runs >= 1, "can-queue-destroy": runs >= 2, "can-queue-apply": runs >= 2,
            "can-read-variable": self.variables in ("read", "write"), "can-update-variable": self.variables == "write",
            "can-read-state-outputs": state >= 1, "can-read-state-versions": state >= 2,
            "can-create-state-versions": state >= 3, "can-read-run-state-versions": state >= 2,
            "can-lock": self.workspace_locking, "can-unlock": self.workspace_locking,
            "can-force-unlock": self.admin, "can-read-settings": True, "can-manage-tags": self.admin,
            "can-manage-run-tasks": self.run_tasks or self.admin, "can-manage-assessments": self.admin,
            "can-read-assessments": True}

    def run_can(self) -> dict[str, bool]:
        """A run's `permissions` for this caller (run.mdx sample; plan can queue and comment, apply applies)."""
        runs = RUNS.index(self.runs)
        return {"can-apply": runs >= 2, "can-cancel": runs >= 2, "can-comment": runs >= 1,
                "can-discard": runs >= 2, "can-force-execute": runs >= 2, "can-force-cancel": self.admin,
                "can-override-policy-check": self.admin}


#: The fixed levels (permissions.mdx "Fixed Permission Sets"): write adds apply, variable and state writes,
#: locking and Sentinel mocks; admin adds the workspace's settings, team access and deletion.
FIXED = {"read": Grant("read", "read", "read"),
         "plan": Grant("plan", "read", "read"),
         "write": Grant("apply", "write", "write", "read", True, False),
         "admin": Grant("apply", "write", "write", "read", True, True, True)}
EVERYTHING = FIXED["admin"]
#: Custom access's defaults (team-access.mdx "Request Body": runs "read", the others "none"/false).
CUSTOM_DEFAULT = Grant()


def custom_grant(attrs: dict[str, Any]) -> Grant:
    """A custom grant from team-access attributes (defaults where absent); values are checked by the caller."""
    base = asdict(CUSTOM_DEFAULT)
    for key in base:
        if key != "admin" and key.replace("_", "-") in attrs:
            base[key] = attrs[key.replace("_", "-")]
    return Grant(**base)


def check_custom(attrs: dict[str, Any], access: str) -> str | None:
    """Why team-access attributes are refused (None when they are fine): the permission attributes only
    with `custom` ("Can only be used when `access` is `custom`"; the wording is TFE's own, which go-tfe
    `team_access_integration_test.go` Add "with invalid custom options" asserts), each within its
    documented values."""
    given = [k for k in CUSTOM_KEYS if k in attrs]
    if given and access != "custom":
        return (f"{given[0].replace('-', ' ').capitalize()} is read-only when access level is '{access}'; "
                "use the 'custom' access level to set this attribute.")
    for key, values in (("runs", RUNS), ("variables", VARIABLES), ("state-versions", STATE_VERSIONS),
                        ("sentinel-mocks", SENTINEL_MOCKS)):
        if key in attrs and attrs[key] not in values:
            return f"{key} must be one of {', '.join(values)}"
    for key in ("workspace-locking", "run-tasks"):
        if key in attrs and not isinstance(attrs[key], bool):
            return f"{key} must be true or false"
    return None


CUSTOM_KEYS = ("runs", "variables", "state-versions", "sentinel-mocks", "workspace-locking", "run-tasks")

#: What each guarded action needs, by the `can-*` flag it maps to.
NEEDS = {"update": "can-update", "delete": "can-destroy", "force-delete": "can-force-delete",
         "queue-run": "can-queue-run", "queue-apply": "can-queue-apply", "apply": "can-queue-apply",
         "read-variables": "can-read-variable", "write-variables": "can-update-variable",
         "read-state": "can-read-state-versions", "read-outputs": "can-read-state-outputs",
         "write-state": "can-create-state-versions", "lock": "can-lock", "force-unlock": "can-force-unlock",
         "manage-tags": "can-manage-tags", "cancel": "can-queue-apply", "discard": "can-queue-apply",
         "force-cancel": "can-force-unlock"}
