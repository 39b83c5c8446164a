"""LegacyClient against scripted /api/v1 answers shaped as the legacy host documented them (docs/legacy-api-contract.md)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from runbook_lib import errors
from runbook_lib.http import ReadOnlyError, RetryPolicy
from runbook_lib.legacy import NOT_FOUND, LegacyClient, configuration_variables
from runbook_lib.settings import Settings
from test_clients_fake_server import TOKEN, FakeServer, Received, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)
STATE = json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": 12, "lineage": "aa-bb",
                    "modules": [{"path": ["root"], "outputs": {}, "resources": {}}]}).encode()


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def client(srv: FakeServer, **kwargs) -> LegacyClient:
    settings = Settings(legacy_address=srv.url, environ={"ATLAS_TOKEN": TOKEN}, connect_timeout=2, read_timeout=3)
    return LegacyClient(settings, retry=FAST, **kwargs)


def test_get_state_checks_content_md5_and_reads_identity():
    with FakeServer(lambda r: Reply(200, STATE, {"Content-MD5": b64md5(STATE)})) as srv:
        state = client(srv).get_state("acme-legacy", "web.prod")
        req = srv.received[0]
    assert state.data == STATE and state.md5 == hashlib.md5(STATE).hexdigest()
    assert (state.serial, state.lineage, state.version, state.terraform_version) == (12, "aa-bb", 3, "0.11.11")
    assert req.path == "/api/v1/terraform/state/acme-legacy/web.prod" and req.query == {"atlas_run_id": [""]}
    assert req.headers["X-Atlas-Token"] == TOKEN and "Authorization" not in req.headers
    assert "modules" not in repr(state)  # state bytes never printed


def test_get_state_md5_mismatch_is_a_clear_error():
    with FakeServer(lambda r: Reply(200, STATE[:-10], {"Content-MD5": b64md5(STATE)})) as srv:
        with pytest.raises(errors.TransportError, match=r"state download from .*/web.prod failed its md5 check"):
            client(srv).get_state("acme-legacy", "web.prod")


@pytest.mark.parametrize("reply", [Reply(204), Reply(200, b"")])
def test_no_state_is_none(reply):
    with FakeServer(lambda r: reply) as srv:
        assert client(srv).get_state("acme-legacy", "empty") is None


def test_a_404_state_is_reported_as_not_found_never_as_no_state_or_gone():
    """A legacy 404 is "missing or not visible to this token" (index.html.md): never "no state", never "gone"."""
    with FakeServer(lambda r: Reply(404, {"errors": ["not found"]})) as srv:
        legacy = client(srv)
        read = legacy.read_state("acme-legacy", "maybe")
        assert (read.found, read.state) == (NOT_FOUND, None)
        with pytest.raises(errors.NotFoundError, match=r"does not exist or \$ATLAS_TOKEN cannot see it .*proves "
                                                       r"neither"):
            legacy.get_state("acme-legacy", "maybe")
        assert srv.count() == 2 and all(r.path.startswith("/api/v1/terraform/state/") for r in srv.received)


def test_get_state_survives_5xx_and_drops():
    with FakeServer(lambda r: Reply(200, STATE, {"Content-MD5": b64md5(STATE)})) as srv:
        srv.then(Reply(502), Reply(drop=True), Reply(503, headers={"Retry-After": "0"}))
        assert client(srv).get_state("acme-legacy", "web.prod").serial == 12
        assert srv.count() == 4


def test_put_state_sends_content_md5():
    with FakeServer(lambda r: Reply(200, {})) as srv:
        assert client(srv).put_state("acme", "web", STATE) is True
        req = srv.received[0]
    assert req.method == "PUT" and req.body == STATE
    assert req.headers["Content-MD5"] == b64md5(STATE) and req.headers["Content-Type"] == "application/json"


def test_put_state_retried_after_it_landed_reads_back_instead_of_failing():
    # The first PUT is stored but its answer is lost (503); the retry meets a 409 (a host that refuses the
    # same state twice); the state read back is ours, so the upload stands.
    stored = {}

    def app(req: Received) -> Reply:
        if req.method == "PUT":
            if stored:
                return Reply(409, {"errors": ["Md5 The MD5 hash of the state provided does not match what is "
                                              "currently known for the same serial number"], "success": False})
            stored["data"] = req.body
            return Reply(503)
        return Reply(200, stored["data"], {"Content-MD5": b64md5(stored["data"])})
    with FakeServer(app) as srv:
        assert client(srv).put_state("acme", "web", STATE) is False
        assert srv.count("PUT") == 2 and srv.count("GET") == 1


def test_put_state_real_conflict_is_raised():
    other = STATE.replace(b"aa-bb", b"cc-dd")
    md5_error = {"errors": ["Md5 The MD5 hash of the state provided does not match what is currently known for "
                            "the same serial number"], "success": False}

    def app(req: Received) -> Reply:
        return Reply(409, md5_error) if req.method == "PUT" else Reply(200, other)
    with FakeServer(app) as srv:
        with pytest.raises(errors.ConflictError, match="Md5 The MD5 hash") as info:
            client(srv).put_state("acme", "web", STATE)
    assert info.value.status == 409 and info.value.errors == md5_error["errors"]


def test_list_states_stops_on_a_short_page():
    def app(req: Received) -> Reply:
        page = int(req.query["page"][0])
        n = 20 if page == 1 else 3
        return Reply(200, {"states": [{"updated_at": "2018-01-01T00:00:00Z",
                                       "environment": {"username": "acme", "name": f"e{page}-{i}"}} for i in range(n)]})
    with FakeServer(app) as srv:
        assert len(list(client(srv).list_states("acme"))) == 23
        assert srv.received[0].query == {"username": ["acme"], "page": ["1"]} and srv.count() == 2


def test_the_documented_calls_use_the_documented_paths_and_bodies():
    def app(req: Received) -> Reply:
        if req.path.endswith("/versions/latest"):
            return Reply(200, {"version": {"version": 6, "metadata": {"git_branch": "master"},
                                           "tf_vars": [{"key": "region", "value": "eu", "hcl": False}],
                                           "variables": {"region": "eu"}}})
        if req.path.startswith("/api/v1/user/"):
            return Reply(200, {"username": "acme-legacy", "avatar_url": "x", "profile_html": "", "boxes": []})
        if req.path.endswith("/versions"):
            return Reply(201, {"version": 7, "upload_path": "https://binstore/x", "token": "t"})
        if req.path.endswith("/variables"):
            return Reply(200, b"")  # environments.html.md: an empty body
        return Reply(200, {"success": True})
    with FakeServer(app) as srv:
        legacy = client(srv)
        legacy.put_variables("acme-legacy", "web.prod", {"region": "eu", "old": ""})
        assert legacy.trigger_plan("acme-legacy", "web.prod") == {"success": True}
        version = legacy.latest_configuration_version("acme-legacy", "web.prod")
        assert version["version"] == 6 and configuration_variables(version) == [
            {"key": "region", "value": "eu", "category": "terraform", "hcl": False, "sensitive": False}]
        assert legacy.create_configuration_version("acme-legacy", "web.prod", {"git_branch": "main"})["version"] == 7
        assert legacy.get_user("acme-legacy")["username"] == "acme-legacy"  # the object itself, not wrapped
        got = [(r.method, r.path) for r in srv.received]
    base = "/api/v1/environments/acme-legacy/web.prod"
    assert got == [("PUT", base + "/variables"), ("POST", base + "/plan"),
                   ("GET", "/api/v1/terraform/configurations/acme-legacy/web.prod/versions/latest"),
                   ("POST", "/api/v1/terraform/configurations/acme-legacy/web.prod/versions"),
                   ("GET", "/api/v1/user/acme-legacy")]
    assert srv.received[0].json() == {"variables": {"region": "eu", "old": ""}}
    assert srv.received[1].json() == {"destroy": False}
    assert srv.received[3].json() == {"version": {"metadata": {"git_branch": "main"}}}


def test_a_404_configuration_version_is_none_not_proof():
    with FakeServer(lambda r: Reply(404, {"errors": ["not found"]})) as srv:
        assert client(srv).latest_configuration_version("acme", "gone") is None
        assert configuration_variables(None) == []


def test_environments_with_state_are_the_states_list_of_that_organization():
    def app(req: Received) -> Reply:
        return Reply(200, {"states": [{"environment": {"username": "acme", "name": "b"}},
                                      {"environment": {"username": "acme", "name": "a"}},
                                      {"environment": {"username": "other", "name": "c"}}]})
    with FakeServer(app) as srv:
        assert client(srv).environments_with_state("acme") == ["a", "b"]


def test_trigger_plan_is_never_retried():
    with FakeServer(lambda r: Reply(200, {"success": True})) as srv:
        srv.then(Reply(drop=True))
        with pytest.raises(errors.TransportError):
            client(srv).trigger_plan("acme", "web")
        assert srv.count("POST") == 1


def test_read_only_legacy_client():
    with FakeServer(lambda r: Reply(200, STATE, {"Content-MD5": b64md5(STATE)})) as srv:
        legacy = client(srv, read_only=True)
        legacy.get_state("acme-legacy", "web.prod")
        for write in (lambda: legacy.put_state("a", "b", STATE), lambda: legacy.put_variables("a", "b", {"k": "v"}),
                      lambda: legacy.trigger_plan("a", "b"),
                      lambda: legacy.create_configuration_version("a", "b", {})):
            with pytest.raises(ReadOnlyError):
                write()
        assert srv.count() == 1


def test_the_client_has_no_method_for_what_the_host_did_in_its_ui():
    for name in ("list_environments", "get_environment", "find_environment", "get_variables", "unlink_vcs",
                 "link_vcs", "list_runs", "lock", "unlock", "get_teams", "delete_environment"):
        assert not hasattr(LegacyClient, name), name
