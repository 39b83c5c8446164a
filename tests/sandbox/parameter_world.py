"""The world `test_every_documented_parameter.py` acts on: the documented parameters per route, a sandbox with one
of each object, and a way to send any route's request with extra parameters (imported by name: tests/sandbox
is on sys.path). The probes are in `parameter_probes.py`."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sandbox_helpers import Api, create_workspace
from vcs_helpers import new_org_with_vcs

from runbook_lib.sandbox import Sandbox, params, routes

FIXTURE = Path(__file__).resolve().parents[1] / "conformance" / "documented_parameters.json"
DOCS = json.loads(FIXTURE.read_text())
PAGE = set(params.PAGE)


def normalise(key: str) -> str | None:
    """A documented request-body key as `params.TAKES` spells it (None: the document's frame, not a key)."""
    if key in ("data.type", "data.id", "data.attributes", "data.relationships", "data[].type"):
        return None
    if key.startswith("data.attributes."):
        return key.removeprefix("data.attributes.")
    if key.startswith("data.relationships."):
        return "relationships." + key.removeprefix("data.relationships.").split(".")[0].removesuffix("[]")
    return key


def documented(route: str) -> list[tuple[str, str]]:
    """(kind, key) of every documented parameter of a route: kind `query`, `body` or `include`."""
    doc = DOCS["routes"].get(route, {})
    out = [("query", k) for k in doc.get("query", [])]
    out += [("body", k) for k in dict.fromkeys(normalise(k) for k in doc.get("body", [])) if k]
    out += [("include", k) for k in doc.get("includes", [])]
    return out


def _served() -> set[str]:
    return {r.key for r in routes.ROUTES if r.template.startswith("/api/v2/")}


# --- the world the probes act on ----------------------------------------------------------------------------

CONFIG = '''variable "greeting" {
  default = "hello"
}

resource "null_resource" "a" {
  triggers = {
    greeting = var.greeting
  }
}

resource "null_resource" "b" {}

output "greeting" {
  value = var.greeting
}
'''


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def jdoc(kind: str, attrs: dict[str, Any] | None = None, rels: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": kind, "attributes": attrs or {}}
    if rels:
        data["relationships"] = rels
    return {"data": data}


def rel(kind: str, ident: str | None) -> dict[str, Any]:
    return {"data": {"type": kind, "id": ident} if ident else None}


@dataclass
class World:
    """The sandbox and the objects every probe reads; `scratch_*` make new ones for probes that change them."""

    sandbox: Sandbox
    api: Api
    org: str
    token_id: str
    ws: dict[str, Any]
    run: dict[str, Any]
    sv: dict[str, Any]
    cv_id: str
    pool_id: str
    client_id: str
    tmp: Path
    store: Any = field(init=False)

    def __post_init__(self) -> None:
        self.store = self.sandbox.store

    def writes_since(self, mark: int) -> int:
        return sum(r["changes"] for r in self.sandbox.request_log(since=mark))

    def scratch_org(self) -> str:
        name = unique("probe-org")
        assert self.api.post("/api/v2/organizations", json=jdoc("organizations", {
            "name": name, "email": "ops@acme.example"})).status_code == 201
        return name

    def scratch_ws(self, **attrs: Any) -> dict[str, Any]:
        return create_workspace(self.api, self.org, unique("ws"), **attrs)

    def scratch_team(self, **attrs: Any) -> dict[str, Any]:
        made = self.api.post(f"/api/v2/organizations/{self.org}/teams", json=jdoc("teams", {"name": unique("team"),
                                                                                        **attrs}))
        assert made.status_code == 201, made.text
        return made.json()["data"]

    def upload(self, ws_id: str, files: dict[str, str] | None = None, **attrs: Any) -> str:
        made = self.api.post(f"/api/v2/workspaces/{ws_id}/configuration-versions", json=jdoc(
            "configuration-versions", {"auto-queue-runs": False, **attrs}))
        assert made.status_code == 201, made.text
        cv = made.json()["data"]
        assert self.api.put(cv["attributes"]["upload-url"], data=tarball(files or {"main.tf": CONFIG})).status_code == 200
        return cv["id"]

    def create_run(self, ws_id: str, cv_id: str | None = None, **attrs: Any) -> dict[str, Any]:
        rels = {"workspace": rel("workspaces", ws_id)}
        if cv_id:
            rels["configuration-version"] = rel("configuration-versions", cv_id)
        made = self.api.post("/api/v2/runs", json=jdoc("runs", attrs, rels))
        assert made.status_code == 201, made.text
        return made.json()["data"]

    def state_version(self, ws_id: str, state: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(state).encode()
        self.api.post(f"/api/v2/workspaces/{ws_id}/actions/lock", json={})
        made = self.api.post(f"/api/v2/workspaces/{ws_id}/state-versions", json=jdoc("state-versions", {
            "serial": state["serial"], "md5": hashlib.md5(body).hexdigest(), "lineage": state["lineage"],
            "state": base64.b64encode(body).decode()}))
        self.api.post(f"/api/v2/workspaces/{ws_id}/actions/unlock", json={})
        assert made.status_code == 201, made.text
        return made.json()["data"]


STATE = {"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "probe-lineage",
         "outputs": {"greeting": {"value": "hi", "type": "string"}, "secret": {"value": "s3", "type": "string",
                                                                              "sensitive": True}},
         "resources": []}


@contextmanager
def make_world(tmp: Path) -> Iterator[World]:
    """A fresh sandbox (runner paused) with an organization, a VCS connection, a workspace with a state version, a
    configuration version and a run, and an agent pool."""
    with Sandbox(tmp / "sandbox", rate_limit=None) as sandbox:
        sandbox.run_settings(paused=True)  # statuses move only when a probe says so
        api = Api(sandbox)
        org, token_id = new_org_with_vcs(api)
        ws = create_workspace(api, org, "probe")
        pool = api.post(f"/api/v2/organizations/{org}/agent-pools", json=jdoc("agent-pools", {"name": "probe-pool"}))
        assert pool.status_code == 201, pool.text
        client_id = api.get(f"/api/v2/organizations/{org}/oauth-clients").json()["data"][0]["id"]
        w = World(sandbox, api, org, token_id, ws, {}, {}, "", pool.json()["data"]["id"], client_id, tmp)
        w.sv = w.state_version(ws["id"], STATE)
        w.cv_id = w.upload(ws["id"])
        w.run = w.create_run(ws["id"], w.cv_id, message="the world's run")
        yield w


# --- sending one route's request ----------------------------------------------------------------------------


def _send(w: World, route: str, *, query: dict[str, str] | None = None, attrs: dict[str, Any] | None = None,
          rels: dict[str, Any] | None = None, top: dict[str, Any] | None = None) -> Any:
    """Send `route`'s request against the world, with these query parameters and body members added to a base
    request the route takes."""
    method, path = route.split(" ", 1)
    attrs, rels, query = dict(attrs or {}), dict(rels or {}), dict(query or {})
    ws = w.ws
    base, kind = BASES.get(route, (None, None))
    values = {"org": w.org, "ws_id": ws["id"], "name": ws["attributes"]["name"], "run_id": w.run["id"],
              "sv_id": w.sv["id"], "cv_id": w.cv_id, "pool_id": w.pool_id, "client_id": w.client_id,
              "project_id": "", "team_id": "", "access_id": "", "var_id": ""}
    if base is not None:
        extra = base(w, values)
        attrs = {**extra.get("attrs", {}), **attrs}
        rels = {**extra.get("rels", {}), **rels}
        query = {**extra.get("query", {}), **query}
    for name, value in values.items():
        path = path.replace(f"<{name}>", value)
    if method == "GET" or kind is None:
        body = None if method in ("GET", "DELETE") and kind is None else {}
        if kind == "plain":
            body = {**attrs, **(top or {})}
        return w.api.request(method, path, params=query, json=body)
    if kind == "list":
        return w.api.request(method, path, params=query, json={"data": attrs["data"]})
    if kind == "plain":
        return w.api.request(method, path, params=query, json={**attrs, **(top or {})})
    return w.api.request(method, path, params=query, json={**jdoc(kind, attrs, rels), **(top or {})})


def _scratch_ws(w: World, values: dict[str, str]) -> dict[str, Any]:
    ws = w.scratch_ws()
    values.update(ws_id=ws["id"], name=ws["attributes"]["name"])
    return {}


def _scratch_org(w: World, values: dict[str, str]) -> dict[str, Any]:
    values["org"] = w.scratch_org()
    return {}


def _scratch_team(w: World, values: dict[str, str]) -> dict[str, Any]:
    values["team_id"] = w.scratch_team()["id"]
    return {}


def _scratch_var(w: World, values: dict[str, str]) -> dict[str, Any]:
    ws = w.scratch_ws()
    made = w.api.post(f"/api/v2/workspaces/{ws['id']}/vars", json=jdoc("vars", {"key": "k", "value": "v",
                                                                              "category": "terraform"}))
    values.update(ws_id=ws["id"], var_id=made.json()["data"]["id"])
    return {}


def _scratch_access(w: World, values: dict[str, str]) -> dict[str, Any]:
    team, ws = w.scratch_team(), w.scratch_ws()
    made = w.api.post("/api/v2/team-workspaces", json=jdoc("team-workspaces", {"access": "read"}, {
        "team": rel("teams", team["id"]), "workspace": rel("workspaces", ws["id"])}))
    values["access_id"] = made.json()["data"]["id"]
    return {}


def _new_run(w: World, values: dict[str, str]) -> dict[str, Any]:
    return {"rels": {"workspace": rel("workspaces", w.ws["id"])}}


#: route -> (how to make its base request: a function that may create scratch objects and returns the base
#: `attrs`/`rels`/`query`, the JSON:API type of its body or "plain"/"list"; None: no body)
BASES: dict[str, tuple[Callable[[World, dict[str, str]], dict[str, Any]] | None, str | None]] = {
    "POST /api/v2/organizations": (lambda w, v: {"attrs": {"name": unique("org"), "email": "ops@acme.example"}},
                                   "organizations"),
    "PATCH /api/v2/organizations/<org>": (_scratch_org, "organizations"),
    "POST /api/v2/organizations/<org>/projects": (lambda w, v: {"attrs": {"name": unique("project")}}, "projects"),
    "POST /api/v2/organizations/<org>/agent-pools": (lambda w, v: {"attrs": {"name": unique("pool")}}, "agent-pools"),
    "POST /api/v2/organizations/<org>/oauth-clients": (lambda w, v: {"attrs": {
        "service-provider": "github_enterprise", "http-url": "https://git.acme.example",
        "api-url": "https://git.acme.example/api/v3", "oauth-token-string": "ghp-probe"}}, "oauth-clients"),
    "POST /api/v2/organizations/<org>/workspaces": (lambda w, v: {"attrs": {"name": unique("ws")}}, "workspaces"),
    "PATCH /api/v2/organizations/<org>/workspaces/<name>": (_scratch_ws, "workspaces"),
    "PATCH /api/v2/workspaces/<ws_id>": (_scratch_ws, "workspaces"),
    "POST /api/v2/workspaces/<ws_id>/actions/lock": (_scratch_ws, "plain"),
    "POST /api/v2/workspaces/<ws_id>/relationships/tags": (
        lambda w, v: {**_scratch_ws(w, v), "attrs": {"data": [{"type": "tags", "attributes": {"name": "t"}}]}}, "list"),
    "DELETE /api/v2/workspaces/<ws_id>/relationships/tags": (
        lambda w, v: {**_scratch_ws(w, v), "attrs": {"data": [{"type": "tags", "attributes": {"name": "t"}}]}}, "list"),
    "POST /api/v2/workspaces/<ws_id>/vars": (
        lambda w, v: {**_scratch_ws(w, v), "attrs": {"key": "k", "value": "v", "category": "terraform"}}, "vars"),
    "PATCH /api/v2/workspaces/<ws_id>/vars/<var_id>": (_scratch_var, "vars"),
    "POST /api/v2/workspaces/<ws_id>/configuration-versions": (None, "configuration-versions"),
    "GET /api/v2/state-versions": (lambda w, v: {"query": {"filter[organization][name]": w.org,
                                                           "filter[workspace][name]": "probe"}}, None),
    "POST /api/v2/runs": (_new_run, "runs"),
    "POST /api/v2/runs/<run_id>/comments": (lambda w, v: {"attrs": {"body": "a comment"}}, "comments"),
    "POST /api/v2/organizations/<org>/teams": (lambda w, v: {"attrs": {"name": unique("team")}}, "teams"),
    "GET /api/v2/teams/<team_id>": (_scratch_team, None),
    "PATCH /api/v2/teams/<team_id>": (_scratch_team, "teams"),
    "POST /api/v2/teams/<team_id>/relationships/users": (
        lambda w, v: {**_scratch_team(w, v), "attrs": {"data": [{"type": "users", "id": "operator"}]}}, "list"),
    "DELETE /api/v2/teams/<team_id>/relationships/users": (
        lambda w, v: {**_scratch_team(w, v), "attrs": {"data": [{"type": "users", "id": "operator"}]}}, "list"),
    "POST /api/v2/teams/<team_id>/authentication-token": (_scratch_team, "authentication-token"),
    "GET /api/v2/team-workspaces": (lambda w, v: {"query": {"filter[workspace][id]": w.ws["id"]}}, None),
    "POST /api/v2/team-workspaces": (lambda w, v: {"attrs": {"access": "read"}, "rels": {
        "team": rel("teams", w.scratch_team()["id"]), "workspace": rel("workspaces", w.scratch_ws()["id"])}},
        "team-workspaces"),
    "PATCH /api/v2/team-workspaces/<access_id>": (_scratch_access, "team-workspaces"),
}
