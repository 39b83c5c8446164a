"""Regenerate `documented_parameters.json`: every query parameter and request-body key the API documentation
lists for each `/api/v2` route the sandbox serves.

The pages are hashicorp/terraform-docs-common `website/docs/cloud-docs/api-docs/<page>.mdx` at commit fe7f84b7
(the last before the repository was archived), read from a clone (the `fetch` tool's mirror by default). For
each route below, the section of its page is cut out (from its `## ` heading to the next) and the rows of its
"Query Parameters" and "Request Body" tables are kept: the first column's key, nothing else. Facts only; no
text is copied. A request-body key is kept as the table writes it (`data.attributes.name`,
`data.relationships.project.data.id`, `comment`).

    python tests/conformance/extract_documented_parameters.py [/path/to/terraform-docs-common]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "documented_parameters.json"
DEFAULT_CLONE = Path("/work/.mirror/hashicorp+terraform-docs-common/repo")
COMMIT = "fe7f84b7"
PAGES = "website/docs/cloud-docs/api-docs"

#: route (method and the sandbox's path template, as `runbook_lib/sandbox/routes.py` writes it) -> (page, the
#: `## ` heading of its section). Routes no page documents (go-tfe or Terraform only) are in `UNDOCUMENTED`.
SECTIONS: dict[str, tuple[str, str]] = {
    "GET /api/v2/account/details": ("account", "Get your account details"),
    "GET /api/v2/organizations": ("organizations", "List Organizations"),
    "POST /api/v2/organizations": ("organizations", "Create an Organization"),
    "GET /api/v2/organizations/<org>": ("organizations", "Show an Organization"),
    "PATCH /api/v2/organizations/<org>": ("organizations", "Update an Organization"),
    "DELETE /api/v2/organizations/<org>": ("organizations", "Destroy an Organization"),
    "GET /api/v2/organizations/<org>/entitlement-set": ("organizations", "Show the Entitlement Set"),
    "GET /api/v2/organizations/<org>/runs": ("run", "List Runs in an Organization"),
    "GET /api/v2/organizations/<org>/projects": ("projects", "List projects"),
    "POST /api/v2/organizations/<org>/projects": ("projects", "Create a Project"),
    "GET /api/v2/projects/<project_id>": ("projects", "Show project"),
    "DELETE /api/v2/projects/<project_id>": ("projects", "Delete a project"),
    "POST /api/v2/organizations/<org>/agent-pools": ("agents", "Create an Agent Pool"),
    "GET /api/v2/agent-pools/<pool_id>": ("agents", "Show an Agent Pool"),
    "DELETE /api/v2/agent-pools/<pool_id>": ("agents", "Delete an Agent Pool"),
    "GET /api/v2/organizations/<org>/oauth-clients": ("oauth-clients", "List OAuth Clients"),
    "POST /api/v2/organizations/<org>/oauth-clients": ("oauth-clients", "Create an OAuth Client"),
    "GET /api/v2/oauth-clients/<client_id>": ("oauth-clients", "Show an OAuth Client"),
    "DELETE /api/v2/oauth-clients/<client_id>": ("oauth-clients", "Destroy an OAuth Client"),
    "GET /api/v2/oauth-clients/<client_id>/oauth-tokens": ("oauth-tokens", "List OAuth Tokens"),
    "GET /api/v2/oauth-tokens/<token_id>": ("oauth-tokens", "Show an OAuth Token"),
    "GET /api/v2/organizations/<org>/workspaces": ("workspaces", "List workspaces"),
    "POST /api/v2/organizations/<org>/workspaces": ("workspaces", "Create a Workspace"),
    "GET /api/v2/organizations/<org>/workspaces/<name>": ("workspaces", "Show workspace"),
    "GET /api/v2/workspaces/<ws_id>": ("workspaces", "Show workspace"),
    "PATCH /api/v2/organizations/<org>/workspaces/<name>": ("workspaces", "Update a Workspace"),
    "PATCH /api/v2/workspaces/<ws_id>": ("workspaces", "Update a Workspace"),
    "DELETE /api/v2/organizations/<org>/workspaces/<name>": ("workspaces", "Force Delete a workspace"),
    "DELETE /api/v2/workspaces/<ws_id>": ("workspaces", "Force Delete a workspace"),
    "POST /api/v2/organizations/<org>/workspaces/<name>/actions/safe-delete": ("workspaces", "Safe Delete a workspace"),
    "POST /api/v2/workspaces/<ws_id>/actions/safe-delete": ("workspaces", "Safe Delete a workspace"),
    "POST /api/v2/workspaces/<ws_id>/actions/lock": ("workspaces", "Lock a workspace"),
    "POST /api/v2/workspaces/<ws_id>/actions/unlock": ("workspaces", "Unlock a workspace"),
    "POST /api/v2/workspaces/<ws_id>/actions/force-unlock": ("workspaces", "Force Unlock a workspace"),
    "GET /api/v2/workspaces/<ws_id>/relationships/tags": ("workspaces", "List workspace tags"),
    "POST /api/v2/workspaces/<ws_id>/relationships/tags": ("workspaces", "Add flat string tags to a workspace"),
    "DELETE /api/v2/workspaces/<ws_id>/relationships/tags": ("workspaces", "Remove tags from workspace"),
    "GET /api/v2/workspaces/<ws_id>/vars": ("workspace-variables", "List Variables"),
    "POST /api/v2/workspaces/<ws_id>/vars": ("workspace-variables", "Create a Variable"),
    "PATCH /api/v2/workspaces/<ws_id>/vars/<var_id>": ("workspace-variables", "Update Variables"),
    "DELETE /api/v2/workspaces/<ws_id>/vars/<var_id>": ("workspace-variables", "Delete Variables"),
    "POST /api/v2/workspaces/<ws_id>/state-versions": ("state-versions", "Create a State Version"),
    "GET /api/v2/state-versions": ("state-versions", "List State Versions for a Workspace"),
    "GET /api/v2/workspaces/<ws_id>/current-state-version": ("state-versions",
                                                             "Fetch the Current State Version for a Workspace"),
    "GET /api/v2/state-versions/<sv_id>": ("state-versions", "Show a State Version"),
    "GET /api/v2/state-versions/<sv_id>/outputs": ("state-version-outputs", "List State Version Outputs"),
    "GET /api/v2/state-version-outputs/<output_id_>": ("state-version-outputs", "Show a State Version Output"),
    "GET /api/v2/workspaces/<ws_id>/current-state-version-outputs": (
        "state-version-outputs", "Show Current State Version Outputs for a Workspace"),
    "GET /api/v2/workspaces/<ws_id>/configuration-versions": ("configuration-versions",
                                                              "List Configuration Versions"),
    "POST /api/v2/workspaces/<ws_id>/configuration-versions": ("configuration-versions",
                                                               "Create a Configuration Version"),
    "GET /api/v2/configuration-versions/<cv_id>": ("configuration-versions", "Show a Configuration Version"),
    "GET /api/v2/configuration-versions/<cv_id>/download": ("configuration-versions", "Download Configuration Files"),
    "GET /api/v2/configuration-versions/<cv_id>/ingress-attributes": (
        "configuration-versions", "Show a Configuration Version's Commit Information"),
    "GET /api/v2/workspaces/<ws_id>/runs": ("run", "List Runs in a Workspace"),
    "POST /api/v2/runs": ("run", "Create a Run"),
    "GET /api/v2/runs/<run_id>": ("run", "Get run details"),
    "POST /api/v2/runs/<run_id>/actions/apply": ("run", "Apply a Run"),
    "POST /api/v2/runs/<run_id>/actions/discard": ("run", "Discard a Run"),
    "POST /api/v2/runs/<run_id>/actions/cancel": ("run", "Cancel a Run"),
    "POST /api/v2/runs/<run_id>/actions/force-cancel": ("run", "Forcefully cancel a run"),
    "GET /api/v2/plans/<plan_id>": ("plans", "Show a plan"),
    "GET /api/v2/plans/<plan_id>/json-output": ("plans", "Retrieve the JSON execution plan"),
    "GET /api/v2/runs/<run_id>/plan/json-output": ("plans", "Retrieve the JSON execution plan"),
    "GET /api/v2/applies/<apply_id>": ("applies", "Show an apply"),
    "GET /api/v2/runs/<run_id>/comments": ("comments", "List Comments for a Run"),
    "POST /api/v2/runs/<run_id>/comments": ("comments", "Create Comment"),
    "GET /api/v2/comments/<comment_id>": ("comments", "Show a Comment"),
    "GET /api/v2/organizations/<org>/teams": ("teams", "List teams"),
    "POST /api/v2/organizations/<org>/teams": ("teams", "Create a Team"),
    "GET /api/v2/teams/<team_id>": ("teams", "Show Team Information"),
    "PATCH /api/v2/teams/<team_id>": ("teams", "Update a Team"),
    "DELETE /api/v2/teams/<team_id>": ("teams", "Delete a Team"),
    "POST /api/v2/teams/<team_id>/relationships/users": ("team-members", "Add a User to Team (With user ID)"),
    "DELETE /api/v2/teams/<team_id>/relationships/users": ("team-members", "Delete a User from Team (With user ID)"),
    # the page's second half, "Legacy team tokens API reference", is the one-token-per-team API
    "POST /api/v2/teams/<team_id>/authentication-token": ("team-tokens", "Generate a new team token#2"),
    "GET /api/v2/teams/<team_id>/authentication-token": ("team-tokens", "Show a team token#2"),
    "DELETE /api/v2/teams/<team_id>/authentication-token": ("team-tokens", "Delete the team token"),
    "GET /api/v2/team-workspaces": ("team-access", "List Team Access to a Workspace"),
    "POST /api/v2/team-workspaces": ("team-access", "Add Team Access to a Workspace"),
    "GET /api/v2/team-workspaces/<access_id>": ("team-access", "Show a Team Access relationship"),
    "PATCH /api/v2/team-workspaces/<access_id>": ("team-access", "Update Team Access to a Workspace"),
    "DELETE /api/v2/team-workspaces/<access_id>": ("team-access", "Remove Team Access to a Workspace"),
}
#: GET routes of a sub-resource: their page's "Available Related Resources" are the main resource's, not theirs.
NO_PAGE_INCLUDES = {"GET /api/v2/organizations/<org>/entitlement-set", "GET /api/v2/workspaces/<ws_id>/relationships/tags",
                    "GET /api/v2/configuration-versions/<cv_id>/download",
                    "GET /api/v2/configuration-versions/<cv_id>/ingress-attributes"}
#: A route whose body table says "`data.attributes`: ... the properties described under <another route>".
SAME_ATTRIBUTES_AS = {"PATCH /api/v2/workspaces/<ws_id>/vars/<var_id>": "POST /api/v2/workspaces/<ws_id>/vars"}
#: Routes the sandbox serves that no API page documents, with where their parameters come from instead.
UNDOCUMENTED = {
    "GET /api/v2/ping": "go-tfe `tfe.go` (the client's version check)",
    "GET /api/v2/organizations/<org>/capacity": "go-tfe `organization.go` ReadCapacity",
    "GET /api/v2/organizations/<org>/runs/queue": "go-tfe `organization.go` ReadRunQueue (ReadRunQueueOptions)",
    "GET /api/v2/organizations/<org>/oauth-tokens": "go-tfe `oauth_token.go` (no organization-wide list in the "
                                                   "docs; the sandbox answers the organization's tokens)",
    "GET /api/v2/workspaces/<ws_id>/state-versions": "go-tfe `state_version.go` (the workspace's own list)",
    "GET /api/v2/workspaces/<ws_id>/vars/<var_id>": "go-tfe `variable.go` Read",
    "GET /api/v2/runs/<run_id>/plan": "go-tfe `plan.go` (a run's plan)",
    "GET /api/v2/plans/<plan_id>/json-output-redacted": "Terraform `internal/cloud/backend_common.go` readRedactedPlan",
    "GET /api/v2/runs/<run_id>/apply": "go-tfe `apply.go` (a run's apply)",
    "GET /api/v2/runs/<run_id>/run-events": "go-tfe `run_event.go` List (RunEventListOptions)",
    "GET /api/v2/run-events/<event_id>": "go-tfe `run_event.go` Read (RunEventReadOptions)",
}
_HEADING = re.compile(r"^## (.+?)\s*$", re.M)
_SUBHEADING = re.compile(r"^### (.+?)\s*$", re.M)
_ROW_KEY = re.compile(r"^\|\s*`([^`]+)`")
_INCLUDE = re.compile(r"^[-*] `([a-z_.\-]+)`", re.M)


def _page(clone: Path, page: str) -> str:
    return subprocess.run(["git", "-C", str(clone), "show", f"{COMMIT}:{PAGES}/{page}.mdx"], check=True,
                          capture_output=True, text=True).stdout


def _section(text: str, heading: str) -> str:
    """The text under a `## ` heading (`Heading#2`: its second occurrence on the page)."""
    heading, _, nth = heading.partition("#")
    matches = list(_HEADING.finditer(text))
    hits = [i for i, found in enumerate(matches) if found.group(1) == heading]
    if len(hits) < int(nth or 1):
        raise SystemExit(f"section {heading!r} not found")
    i = hits[int(nth or 1) - 1]
    end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
    return text[matches[i].end():end]


def _table_keys(block: str) -> list[str]:
    keys = []
    for line in block.splitlines():
        found = _ROW_KEY.match(line.strip())
        if found and found.group(1) not in keys:
            keys.append(found.group(1))
    return keys


def _subsections(section: str) -> dict[str, str]:
    parts = list(_SUBHEADING.finditer(section))
    return {m.group(1): section[m.end():(parts[i + 1].start() if i + 1 < len(parts) else len(section))]
            for i, m in enumerate(parts)}


def _related(text: str) -> list[str]:
    """The include values of a page's "Available Related Resources" (a list or a table; `##` or `###`)."""
    found = re.search(r"^#{2,3} Available Related Resources\s*$", text, re.M)
    if not found:
        return []
    end = _HEADING.search(text, found.end())
    block = text[found.end():end.start() if end else len(text)]
    return list(dict.fromkeys(_INCLUDE.findall(block) + [k for k in _table_keys(block) if k != "Resource Name"]))


def extract(clone: Path) -> dict:
    pages: dict[str, str] = {}
    routes = {}
    for route, (page, heading) in SECTIONS.items():
        text = pages.setdefault(page, _page(clone, page))
        section = _section(text, heading)
        subs = _subsections(section)
        query = [k for name, block in subs.items() if name.lower().startswith("query parameters")
                 for k in _table_keys(block)]
        # a request body's keys: its "Request Body" tables, and `data.` keys of any other table of the section
        # (team-access.mdx lists PATCH's attributes beside the path parameter)
        body = [k for name, block in subs.items() if name.lower().startswith("request body") for k in _table_keys(block)]
        if not route.startswith("GET "):  # a GET's `data.` tables describe its answer
            body += [k for k in _table_keys(section) if k.startswith("data.") and k not in body]
        includes = _related(text) if route.startswith("GET ") and route not in NO_PAGE_INCLUDES else []
        routes[route] = {"page": f"{page}.mdx", "section": heading, "query": query, "body": body,
                         "includes": includes}
    for route, other in SAME_ATTRIBUTES_AS.items():
        routes[route]["body"] = [k for k in routes[route]["body"] if k != "data.attributes"] + [
            k for k in routes[other]["body"] if k.startswith("data.attributes.")]
    return {"source": "hashicorp/terraform-docs-common", "commit": COMMIT, "pages": PAGES,
            "note": "query and request-body keys per route; regenerate with extract_documented_parameters.py",
            "routes": routes, "undocumented": UNDOCUMENTED}


def main() -> None:
    clone = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CLONE
    FIXTURE.write_text(json.dumps(extract(clone), indent=1) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
