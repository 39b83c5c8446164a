"""TfeClient against a small scripted /api/v2 on a real local socket: creates that read back, state
upload/download, plans, configuration uploads, listing 2,000 workspaces in 20 requests."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from runbook_lib import errors
from runbook_lib.http import ReadOnlyError, RetryPolicy
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient
from test_clients_fake_server import TOKEN, FakeServer, Received, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)
STATE = json.dumps({"version": 4, "terraform_version": "0.11.11", "serial": 7,
                    "lineage": "3d2c-lineage", "outputs": {}, "resources": []}).encode()


def _ws(name: str, i: int = 1, **attrs) -> dict:
    return {"id": f"ws-{i}", "type": "workspaces", "attributes": {"name": name, "locked": False, **attrs},
            "relationships": {"organization": {"data": {"id": "acme", "type": "organizations"}}}}


def not_found() -> Reply:
    return Reply(404, {"errors": [{"status": "404", "title": "not found"}]})


class FakeTfe:
    """Just enough of /api/v2 for the client tests; state kept in dicts."""

    def __init__(self, workspaces: int = 0) -> None:
        self.workspaces = {f"w{i:04d}": _ws(f"w{i:04d}", i) for i in range(workspaces)}
        self.orgs: dict[str, dict] = {}
        self.state_versions: list[dict] = []
        self.blobs: dict[str, bytes] = {}
        self.base = ""

    def _finalize(self, sv: dict) -> None:
        sv["attributes"].update({"status": "finalized", "hosted-state-upload-url": None,
                                 "hosted-json-state-upload-url": None,
                                 "hosted-state-download-url": f"{self.base}/_archivist/down/{sv['id']}?sig=y"})

    def __call__(self, req: Received) -> Reply:
        p, m = req.path, req.method
        if m == "GET" and p == "/api/v2/ping":
            return Reply(204, headers={"TFP-API-Version": "2.5", "TFP-AppName": "Terraform Enterprise",
                                       "X-TFE-Version": "v202401-1", "X-RateLimit-Limit": "30"})
        if match := re.fullmatch(r"/api/v2/organizations/acme/workspaces", p):
            if m == "POST":
                name = req.json()["data"]["attributes"]["name"]
                if name in self.workspaces:
                    return Reply(422, {"errors": [{"status": "422", "title": "invalid attribute",
                                                   "detail": "Name has already been taken"}]})
                self.workspaces[name] = _ws(name, len(self.workspaces) + 1)
                return Reply(201, {"data": self.workspaces[name]})
            number, size = int(req.query["page[number]"][0]), int(req.query["page[size]"][0])
            names = sorted(self.workspaces)
            pages = max(1, -(-len(names) // size))
            return Reply(200, {"data": [self.workspaces[n] for n in names[(number - 1) * size:number * size]],
                               "meta": {"pagination": {"current-page": number, "total-pages": pages,
                                                       "next-page": number + 1 if number < pages else None,
                                                       "total-count": len(names)}}})
        if match := re.fullmatch(r"/api/v2/organizations/acme/workspaces/([^/]+)", p):
            ws = self.workspaces.get(match.group(1))
            return Reply(200, {"data": ws}) if ws else not_found()
        if match := re.fullmatch(r"/api/v2/workspaces/(ws-\d+)(/.*)?", p):
            ws = next((w for w in self.workspaces.values() if w["id"] == match.group(1)), None)
            if ws is None:
                return not_found()
            rest = match.group(2) or ""
            if rest == "" and m == "GET":
                return Reply(200, {"data": ws})
            if rest == "/actions/lock":
                if ws["attributes"]["locked"]:
                    return Reply(409, {"errors": [{"status": "409", "title": "conflict",
                                                   "detail": "Workspace already locked"}]})
                ws["attributes"]["locked"] = True
                return Reply(200, {"data": ws})
            if rest == "/current-state-version":
                done = [s for s in self.state_versions if s["attributes"]["status"] == "finalized"]
                return Reply(200, {"data": done[-1]}) if done else not_found()
            if rest == "/state-versions" and m == "POST":
                attrs = req.json()["data"]["attributes"]
                sv_id = f"sv-{len(self.state_versions) + 1}"
                # As the real API answers: no md5 or lineage; upload URLs while pending, the download
                # URL once finalized (state-versions.mdx).
                sv = {"id": sv_id, "type": "state-versions", "attributes": {
                    "serial": attrs["serial"],
                    "status": "pending", "hosted-state-upload-url": f"{self.base}/_archivist/up/{sv_id}?sig=x",
                    "hosted-json-state-upload-url": f"{self.base}/_archivist/upjson/{sv_id}?sig=x",
                    "hosted-state-download-url": None}}
                if "state" in attrs:
                    self.blobs[sv_id] = base64.b64decode(attrs["state"])
                    self._finalize(sv)
                self.state_versions.append(sv)
                return Reply(201, {"data": sv})
        if match := re.fullmatch(r"/_archivist/(up|upjson|down)/(sv-\d+)", p):
            kind, sv_id = match.groups()
            sv = next(s for s in self.state_versions if s["id"] == sv_id)
            if kind == "down":
                return Reply(200, self.blobs[sv_id], {"Content-Type": "application/octet-stream"})
            self.blobs[sv_id if kind == "up" else sv_id + ".json"] = req.body
            if kind == "up":
                self._finalize(sv)
            return Reply(200)
        if match := re.fullmatch(r"/api/v2/state-versions/(sv-\d+)", p):
            sv = next((s for s in self.state_versions if s["id"] == match.group(1)), None)
            return Reply(200, {"data": sv}) if sv else not_found()
        if p == "/api/v2/state-versions":
            svs = list(reversed(self.state_versions))
            return Reply(200, {"data": svs, "meta": {"pagination": {"current-page": 1, "next-page": None}}})
        if match := re.fullmatch(r"/api/v2/organizations/([^/]+)", p):
            org = self.orgs.get(match.group(1))
            return Reply(200, {"data": org}) if org else not_found()
        if p == "/api/v2/organizations" and m == "POST":
            name = req.json()["data"]["attributes"]["name"]
            self.orgs[name] = {"id": name, "type": "organizations", "attributes": {"name": name}}
            return Reply(201, {"data": self.orgs[name]})
        return not_found()


@pytest.fixture()
def tfe_server():
    app = FakeTfe()
    with FakeServer(app) as srv:
        app.base = srv.url
        srv.tfe = app
        yield srv


def client(srv: FakeServer, **kwargs) -> TfeClient:
    settings = Settings(tfe_address=srv.url, environ={"TFE_TOKEN": TOKEN}, connect_timeout=2, read_timeout=3)
    return TfeClient(settings, retry=FAST, **kwargs)


def test_listing_2000_workspaces_takes_20_requests():
    with FakeServer(FakeTfe(workspaces=2000)) as srv:
        names = [ws["name"] for ws in client(srv).list_workspaces("acme")]
        assert len(names) == 2000 == len(set(names))
        assert srv.count("GET", "/api/v2/organizations/acme/workspaces") == 20
        assert {r.query["page[size]"][0] for r in srv.received} == {"100"}


def test_ping_reads_the_headers(tfe_server):
    tfe = client(tfe_server)
    assert tfe.ping() == {"api_version": "2.5", "app_name": "Terraform Enterprise", "tfe_version": "v202401-1",
                          "rate_limit": 30.0}
    assert tfe.session.rate_limiter.rate == pytest.approx(27.0)
    sent = tfe_server.received[-1].headers
    assert sent["Authorization"] == f"Bearer {TOKEN}" and sent["Accept"] == "application/vnd.api+json"


def test_create_workspace_sends_jsonapi_and_name_taken_is_conflict_or_adopted(tfe_server):
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web", {"execution-mode": "remote", "auto-apply": False,
                                              "terraform-version": None})
    assert ws.id == "ws-1" and not ws.adopted
    post = tfe_server.received[-1]
    assert post.headers["Content-Type"] == "application/vnd.api+json"
    assert post.json() == {"data": {"type": "workspaces", "attributes": {
        "name": "web", "execution-mode": "remote", "auto-apply": False}}}
    with pytest.raises(errors.ConflictError, match="already exists") as info:
        tfe.create_workspace("acme", "web")
    assert info.value.status == 422 and "Name has already been taken" in json.dumps(info.value.errors)
    again = tfe.create_workspace("acme", "web", adopt_existing=True)
    assert again.adopted and again.id == ws.id
    assert tfe_server.count("POST") == 3


@pytest.mark.parametrize("fault", [Reply(503, {"errors": [{"title": "gateway"}]}), Reply(drop=True)])
def test_create_that_may_have_happened_is_read_back_and_adopted(tfe_server, fault):
    app = tfe_server.tfe

    def created_then_failed(req: Received) -> Reply:
        real = app(req)  # the server did the work ...
        return fault      # ... and the answer was lost
    tfe_server.app = lambda req: created_then_failed(req) if req.method == "POST" else app(req)
    ws = client(tfe_server).create_workspace("acme", "web")
    assert ws.adopted and ws["name"] == "web"
    assert tfe_server.count("POST") == 1  # read back, never posted twice


def test_create_that_did_not_happen_is_sent_again_after_the_read_back(tfe_server):
    tfe_server.then(Reply(503, {"errors": [{"title": "maintenance"}]}))
    ws = client(tfe_server).create_workspace("acme", "web")
    assert not ws.adopted and ws["name"] == "web"
    assert tfe_server.count("POST") == 2  # the second only after a read-back proved the first did nothing


def test_create_that_never_happens_raises_after_three_proven_failures(tfe_server):
    app = tfe_server.tfe
    tfe_server.app = lambda req: Reply(503, {"errors": [{"title": "maintenance"}]}) if req.method == "POST" else app(req)
    with pytest.raises(errors.ServerError, match="maintenance"):
        client(tfe_server).create_workspace("acme", "web")
    assert tfe_server.count("POST") == 3 and "web" not in tfe_server.tfe.workspaces


def test_create_organization_adopts_visible_existing(tfe_server):
    tfe = client(tfe_server)
    assert not tfe.create_organization("acme", "ops@example.com").adopted
    tfe_server.then(Reply(422, {"errors": [{"status": "422", "detail": "Name has already been taken"}]}))
    assert tfe.create_organization("acme", "ops@example.com").adopted
    assert tfe.find_organization("nope") is None


def test_lock_conflict_and_find_and_current_state_none(tfe_server):
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    assert tfe.lock_workspace(ws.id, "migration")["locked"] is True
    assert tfe_server.received[-1].json() == {"reason": "migration"}
    with pytest.raises(errors.ConflictError, match="Workspace already locked"):
        tfe.lock_workspace(ws.id)
    assert tfe.find_workspace("acme", "nope") is None
    assert tfe.current_state_version(ws.id) is None


def test_push_state_uploads_to_hosted_url_without_token_then_downloads_with_md5(tfe_server):
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    sv = tfe.push_state(ws.id, STATE, json_state=b'{"format_version":"1.0"}')
    assert sv["status"] == "finalized" and sv["serial"] == 7 and "md5" not in sv.attributes
    post = next(r for r in tfe_server.received if r.method == "POST" and r.path.endswith("/state-versions"))
    assert post.json()["data"]["attributes"] == {"serial": 7, "md5": hashlib.md5(STATE).hexdigest(),
                                                 "lineage": "3d2c-lineage"}
    puts = [r for r in tfe_server.received if r.method == "PUT"]
    assert [p.path.split("/")[2] for p in puts] == ["up", "upjson"]
    assert all("Authorization" not in p.headers and p.headers["Content-Type"] == "application/octet-stream"
               for p in puts)
    assert tfe_server.tfe.blobs["sv-1"] == STATE
    current = tfe.current_state_version(ws.id)
    assert current.id == sv.id and tfe.download_state(current) == STATE


def test_push_state_falls_back_to_inline_when_the_host_asks(tfe_server):
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    tfe_server.then(Reply(422, {"errors": [{"status": "422", "title": "invalid",
                                            "detail": "param is missing or the value is empty: state"}]}))
    sv = tfe.push_state(ws.id, STATE)
    assert sv["status"] == "finalized"
    last_post = [r for r in tfe_server.received if r.method == "POST"][-1]
    assert base64.b64decode(last_post.json()["data"]["attributes"]["state"]) == STATE


@pytest.mark.parametrize("state, downloads", [(None, False), (STATE, True)], ids=["awaiting-upload", "inline"])
def test_state_version_create_ambiguity_is_read_back(tfe_server, state, downloads):
    """A 502 after the host stored the version: the client adopts it instead of creating a second one.

    A state-version answer has no md5, so a version created with its state inline is proved "ours" by
    downloading its bytes; one created without the state is the newest of our serial awaiting its upload.
    """
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    app = tfe_server.tfe
    tfe_server.app = lambda r: (app(r), Reply(502))[1] if r.path.endswith("/state-versions") and r.method == "POST" \
        else app(r)
    sv = tfe.create_state_version(ws.id, serial=7, md5=hashlib.md5(STATE).hexdigest(), lineage="x", state=state)
    assert sv.adopted and sv.id == "sv-1"
    assert tfe_server.count("POST", f"/api/v2/workspaces/{ws.id}/state-versions") == 1
    assert any(r.path == "/_archivist/down/sv-1" for r in tfe_server.received) is downloads


def test_download_md5_mismatch_is_a_clear_error(tfe_server):
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    sv = tfe.push_state(ws.id, STATE)
    tfe_server.tfe.blobs[sv.id] = STATE[:-5]  # truncated in transit
    with pytest.raises(errors.TransportError, match="failed its md5 check") as info:
        tfe.download_state(sv, expected_md5=hashlib.md5(STATE).hexdigest())
    assert "sig=" not in str(info.value) and "sv-1?" not in str(info.value)


def test_not_a_state_is_refused_before_sending(tfe_server):
    with pytest.raises(errors.StateError):
        client(tfe_server).push_state("ws-1", b"not json")
    assert tfe_server.count() == 0


def test_plan_json_follows_the_redirect_and_204_is_none():
    plan = {"format_version": "1.2", "resource_changes": []}

    def app(req: Received) -> Reply:
        if req.path == "/api/v2/plans/plan-1/json-output":
            return Reply(307, headers={"Location": "/_archivist/plan-json/abc?sig=1"})
        if req.path == "/_archivist/plan-json/abc":
            return Reply(200, plan, {"Content-Type": "application/json"})
        if req.path == "/api/v2/runs/run-2/plan/json-output":
            return Reply(204)
        return not_found()
    with FakeServer(app) as srv:
        tfe = client(srv)
        assert tfe.plan_json("plan-1") == plan
        assert tfe.plan_json(run_id="run-2") is None
        with pytest.raises(errors.NotFoundError):
            tfe.plan_json("plan-9")
        srv.then(Reply(307, headers={"Location": "/_archivist/v1/object/CAPABILITY"}), Reply(404))
        with pytest.raises(errors.NotFoundError) as info:  # an expired link is not quoted whole
            tfe.plan_json("plan-1")
        assert "CAPABILITY" not in str(info.value) and info.value.url.endswith("/_archivist/...")


def test_configuration_upload_is_sent_without_token():
    def app(req: Received) -> Reply:
        if req.method == "POST":
            return Reply(201, {"data": {"id": "cv-1", "type": "configuration-versions", "attributes": {
                "status": "pending", "upload-url": f"http://127.0.0.1:{srv.port}/_archivist/cv/abc"}}})
        return Reply(200)
    with FakeServer(app) as srv:
        tfe = client(srv)
        cv = tfe.create_configuration_version("ws-1", auto_queue_runs=False)
        tfe.upload_configuration(cv, b"\x1f\x8b tarball")
        put = srv.received[-1]
        assert put.method == "PUT" and put.body == b"\x1f\x8b tarball" and "Authorization" not in put.headers
        assert srv.received[0].json()["data"]["attributes"] == {"auto-queue-runs": False, "speculative": False}


def test_runs_variables_and_filters_go_to_the_documented_paths():
    with FakeServer(lambda r: Reply(201 if r.method == "POST" else 200,
                                    {"data": [] if r.method == "GET" else {"id": "x", "type": "t"}})) as srv:
        tfe = client(srv)
        list(tfe.list_runs("ws-1", statuses=["planning", "planned"]))
        tfe.create_run("ws-1", message="migrate", plan_only=True)
        tfe.create_variable("ws-1", "region", "eu-west-1", category="env")
        tfe.update_variable("ws-1", "var-1", {"value": "x"})
        assert tfe.delete_variable("ws-1", "var-1") is True
        got = [(r.method, r.path) for r in srv.received]
        assert got == [("GET", "/api/v2/workspaces/ws-1/runs"), ("POST", "/api/v2/runs"),
                       ("POST", "/api/v2/workspaces/ws-1/vars"), ("PATCH", "/api/v2/workspaces/ws-1/vars/var-1"),
                       ("DELETE", "/api/v2/workspaces/ws-1/vars/var-1")]
        assert srv.received[0].query["filter[status]"] == ["planning,planned"]
        assert srv.received[1].json()["data"]["relationships"] == {"workspace": {"data": {"type": "workspaces",
                                                                                           "id": "ws-1"}}}
        assert srv.received[2].json()["data"]["attributes"] == {
            "key": "region", "value": "eu-west-1", "category": "env", "hcl": False, "sensitive": False}


def test_read_only_client_reads_but_never_writes(tfe_server):
    tfe = client(tfe_server, read_only=True)
    tfe.ping()
    for write in (lambda: tfe.create_workspace("acme", "web"), lambda: tfe.lock_workspace("ws-1"),
                  lambda: tfe.update_workspace("ws-1", {"auto-apply": False}), lambda: tfe.delete_workspace("ws-1"),
                  lambda: tfe.push_state("ws-1", STATE), lambda: tfe.create_organization("acme", "a@b.c")):
        with pytest.raises(ReadOnlyError):
            write()
    assert tfe_server.count() == 1 and TOKEN not in repr(tfe)


def test_every_mutating_request_carries_the_jsonapi_content_type_and_delete_is_safe():
    """TFE answers 415 to a POST/PATCH/DELETE without it, body or not (go-tfe commit d107af1c)."""
    with FakeServer(lambda r: Reply(204)) as srv:
        tfe = client(srv)
        tfe.delete_workspace("ws-1")
        tfe.force_delete_workspace("ws-1")
        tfe._send("PATCH", "/workspaces/ws-1", {"data": {"type": "workspaces", "attributes": {}}})
        tfe._send("POST", "/workspaces/ws-1/actions/force-unlock")
        tfe._put_blob(f"{srv.url}/_archivist/up/sv-1?sig=x", b"{}")
        sent = [(r.method, r.path, r.headers.get("Content-Type")) for r in srv.received]
    assert sent == [("POST", "/api/v2/workspaces/ws-1/actions/safe-delete", "application/vnd.api+json"),
                    ("DELETE", "/api/v2/workspaces/ws-1", "application/vnd.api+json"),
                    ("PATCH", "/api/v2/workspaces/ws-1", "application/vnd.api+json"),
                    ("POST", "/api/v2/workspaces/ws-1/actions/force-unlock", "application/vnd.api+json"),
                    ("PUT", "/_archivist/up/sv-1", "application/octet-stream")]


def test_ambiguous_inline_create_does_not_adopt_another_state_of_the_same_serial(tfe_server):
    """The read-back downloads the version of our serial and finds other bytes: not ours, the error stands."""
    tfe = client(tfe_server)
    ws = tfe.create_workspace("acme", "web")
    app = tfe_server.tfe
    tfe_server.tfe.blobs["sv-1"] = STATE + b" "
    tfe_server.tfe.state_versions.clear()
    tfe_server.tfe.state_versions.append({"id": "sv-1", "type": "state-versions", "attributes": {
        "serial": 7, "status": "finalized", "hosted-state-download-url": f"{app.base}/_archivist/down/sv-1?sig=y"}})
    tfe_server.app = lambda r: Reply(502) if r.path.endswith("/state-versions") and r.method == "POST" else app(r)
    with pytest.raises(errors.ServerError):
        tfe.create_state_version(ws.id, serial=7, md5=hashlib.md5(STATE).hexdigest(), lineage="x", state=STATE)
    assert any(r.path == "/_archivist/down/sv-1" for r in tfe_server.received)  # judged by its bytes


def _current_run_host(*, include: bool):
    """A workspace whose current run plans commit `abc`; with or without the `included` resources."""
    ws = {"id": "ws-1", "type": "workspaces", "attributes": {},
          "relationships": {"current-run": {"data": {"type": "runs", "id": "run-1"}}}}
    run = {"id": "run-1", "type": "runs", "attributes": {"status": "planning"},
           "relationships": {"configuration-version": {"data": {"type": "configuration-versions", "id": "cv-1"}}}}
    cv = {"id": "cv-1", "type": "configuration-versions", "attributes": {},
          "relationships": {"ingress-attributes": {"data": {"type": "ingress-attributes", "id": "ia-1"}}}}
    ingress = {"id": "ia-1", "type": "ingress-attributes", "attributes": {"commit-sha": "abc"}}

    def app(req: Received) -> Reply:
        if req.path == "/api/v2/workspaces/ws-1":
            return Reply(200, {"data": ws, **({"included": [run, cv, ingress]} if include else {})})
        if req.path == "/api/v2/runs/run-1":
            return Reply(200, {"data": run})
        if req.path == "/api/v2/configuration-versions/cv-1/ingress-attributes":
            return Reply(200, {"data": ingress})
        return not_found()
    return app


@pytest.mark.parametrize("include, requests", [(True, 1), (False, 3)])
def test_current_run_and_its_commit_in_one_workspace_read(include, requests):
    with FakeServer(_current_run_host(include=include)) as srv:
        run, sha = client(srv).current_run("ws-1")
        assert (run.id, run.get("status"), sha) == ("run-1", "planning", "abc")
        assert len(srv.received) == requests  # a host that leaves the include out costs two reads more
        first = srv.received[0]
        assert first.path == "/api/v2/workspaces/ws-1"
        assert first.query["include"] == ["current_run.configuration_version.ingress_attributes"]
        assert all("/runs" not in r.path or r.path == "/api/v2/runs/run-1" for r in srv.received)  # never the list
