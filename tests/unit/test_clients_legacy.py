"""LegacyClient against scripted /api/v1 answers shaped as docs/legacy-api-contract.md describes."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from runbook_lib import errors
from runbook_lib.http import ReadOnlyError, RetryPolicy
from runbook_lib.legacy import LegacyClient
from runbook_lib.settings import Settings
from test_clients_fake_server import TOKEN, FakeServer, Received, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)
STATE = json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": 12, "lineage": "aa-bb",
                    "modules": [{"path": ["root"], "outputs": {}, "resources": {}}]}).encode()
ENV = {"username": "acme-legacy", "name": "web.prod", "slug": "acme-legacy/web.prod", "terraform_version": "0.11.11",
       "locked": False, "locked_by": None, "lock_reason": None,
       "vcs": {"repo": "acme-legacy/web", "branch": "master", "working_directory": ""}, "current_run": None}


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


def test_a_404_state_is_no_state_only_when_the_environment_exists():
    """Terraform 0.11 reads a 404 on the state endpoint as "no state"; the environment endpoint decides."""
    def app(req: Received) -> Reply:
        if req.path.startswith("/api/v1/terraform/state/"):
            return Reply(404, {"errors": ["not found"]})
        if req.path == "/api/v1/environments/acme-legacy/empty":
            return Reply(200, {"environment": {**ENV, "name": "empty"}})
        return Reply(404, {"errors": ["not found"]})
    with FakeServer(app) as srv:
        assert client(srv).get_state("acme-legacy", "empty") is None
        with pytest.raises(errors.NotFoundError):
            client(srv).get_state("acme-legacy", "nope")


def test_get_state_survives_5xx_and_drops():
    with FakeServer(lambda r: Reply(200, STATE, {"Content-MD5": b64md5(STATE)})) as srv:
        srv.then(Reply(502), Reply(drop=True), Reply(503, headers={"Retry-After": "0"}))
        assert client(srv).get_state("acme-legacy", "web.prod").serial == 12
        assert srv.count() == 4


def test_unknown_environment_is_not_found_naming_the_variable():
    with FakeServer(lambda r: Reply(404, {"errors": ["not found"]}, {"Content-Type": "application/json"})) as srv:
        # the state endpoint's 404 is ambiguous; the environment endpoint's 404 is the answer reported
        with pytest.raises(errors.NotFoundError, match=r"GET /api/v1/environments/acme-legacy/nope answered "
                                                       r"404 Not Found: not found .*\$ATLAS_TOKEN"):
            client(srv).get_state("acme-legacy", "nope")


def test_put_state_sends_content_md5():
    with FakeServer(lambda r: Reply(200, {})) as srv:
        assert client(srv).put_state("acme", "web", STATE) is True
        req = srv.received[0]
    assert req.method == "PUT" and req.body == STATE
    assert req.headers["Content-MD5"] == b64md5(STATE) and req.headers["Content-Type"] == "application/json"


def test_put_state_retried_after_it_landed_reads_back_instead_of_failing():
    # The first PUT is stored but its answer is lost (503); the retry meets 412 "serial not greater".
    stored = {}

    def app(req: Received) -> Reply:
        if req.method == "PUT":
            if stored:
                return Reply(412, {"errors": ["Serial The serial provided in the state file is not greater than "
                                              "the serial currently known remotely"]})
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


def test_list_environments_pages_until_total_pages():
    def app(req: Received) -> Reply:
        page = int(req.query["page"][0])
        envs = [dict(ENV, name=f"e{page}-{i}") for i in range(100 if page < 3 else 5)]
        return Reply(200, {"environments": envs, "meta": {"page": page, "total_pages": 3, "total_count": 205}})
    with FakeServer(app) as srv:
        envs = list(client(srv).list_environments("acme-legacy"))
        assert len(envs) == 205 and srv.count() == 3
        assert srv.received[0].path == "/api/v1/environments/acme-legacy"


def test_list_states_stops_on_a_short_page():
    def app(req: Received) -> Reply:
        page = int(req.query["page"][0])
        n = 20 if page == 1 else 3
        return Reply(200, {"states": [{"updated_at": "2018-01-01T00:00:00Z",
                                       "environment": {"username": "acme", "name": f"e{page}-{i}"}} for i in range(n)]})
    with FakeServer(app) as srv:
        assert len(list(client(srv).list_states("acme"))) == 23
        assert srv.received[0].query == {"username": ["acme"], "page": ["1"]} and srv.count() == 2


def test_environment_calls_use_the_contract_paths():
    def app(req: Received) -> Reply:
        if req.path.endswith("/variables") and req.method == "GET":
            return Reply(200, {"variables": [{"key": "region", "value": "eu", "category": "terraform",
                                              "hcl": False, "sensitive": False}]})
        if req.path.endswith("/runs"):
            return Reply(200, {"runs": [{"id": "run-1", "status": "planned_and_finished"}]})
        if req.path.endswith("/versions/latest"):
            return Reply(200, {"version": {"version": 6, "metadata": {}, "tf_vars": [], "variables": {}}})
        if req.path.startswith("/api/v1/user/"):
            return Reply(200, {"user": {"username": "ops", "email": "ops@example.com"}})
        if req.path.endswith("/vcs") and req.method == "DELETE":
            return Reply(200, {"environment": dict(ENV, vcs=None)})
        if req.path.endswith("/vcs"):
            return Reply(200, {"environment": ENV})
        if req.path.endswith("/lock"):
            return Reply(200, dict(ENV, locked=True))
        if req.method == "DELETE":
            return Reply(200, {"success": True})
        if req.method in ("PUT", "POST"):
            return Reply(200, {"success": True})
        return Reply(200, {"environment": ENV})
    with FakeServer(app) as srv:
        legacy = client(srv)
        assert legacy.get_environment("acme-legacy", "web.prod")["slug"] == "acme-legacy/web.prod"
        assert legacy.get_variables("acme-legacy", "web.prod")[0]["key"] == "region"
        legacy.put_variables("acme-legacy", "web.prod", {"region": "eu", "old": ""})
        assert legacy.unlink_vcs("acme-legacy", "web.prod")["vcs"] is None
        assert legacy.link_vcs("acme-legacy", "web.prod", "acme-legacy/web")["vcs"]["repo"] == "acme-legacy/web"
        assert legacy.list_runs("acme-legacy", "web.prod")[0]["id"] == "run-1"
        assert legacy.lock("acme-legacy", "web.prod", "migrating")["locked"] is True
        assert legacy.trigger_plan("acme-legacy", "web.prod") == {"success": True}
        assert legacy.latest_configuration_version("acme-legacy", "web.prod")["version"] == 6
        assert legacy.get_user("ops")["email"] == "ops@example.com"
        assert legacy.delete_environment("acme-legacy", "web.prod") is True
        got = [(r.method, r.path) for r in srv.received]
    base = "/api/v1/environments/acme-legacy/web.prod"
    assert got == [("GET", base), ("GET", base + "/variables"), ("PUT", base + "/variables"),
                   ("DELETE", base + "/vcs"), ("PUT", base + "/vcs"), ("GET", base + "/runs"),
                   ("POST", base + "/lock"), ("POST", base + "/plan"),
                   ("GET", "/api/v1/terraform/configurations/acme-legacy/web.prod/versions/latest"),
                   ("GET", "/api/v1/user/ops"), ("DELETE", base)]
    assert srv.received[2].json() == {"variables": {"region": "eu", "old": ""}}
    assert srv.received[4].json() == {"vcs": {"repo": "acme-legacy/web", "branch": "master", "working_directory": ""}}
    assert srv.received[7].json() == {"destroy": False}


def test_delete_of_a_gone_environment_is_false_and_find_is_none():
    with FakeServer(lambda r: Reply(404, {"errors": ["not found"]})) as srv:
        legacy = client(srv)
        assert legacy.delete_environment("acme", "gone") is False
        assert legacy.find_environment("acme", "gone") is None


def test_lock_ambiguity_is_read_back_and_conflict_raised():
    with FakeServer(lambda r: Reply(200, {"environment": dict(ENV, locked=True)})) as srv:
        srv.then(Reply(503))
        assert client(srv).lock("acme-legacy", "web.prod")["locked"] is True
        assert srv.count("POST") == 1 and srv.count("GET") == 1
        srv.then(Reply(409, {"errors": ["environment is already locked"]}))
        with pytest.raises(errors.ConflictError, match="environment is already locked"):
            client(srv).lock("acme-legacy", "web.prod")


def test_trigger_plan_is_never_retried():
    with FakeServer(lambda r: Reply(200, {"success": True})) as srv:
        srv.then(Reply(drop=True))
        with pytest.raises(errors.TransportError):
            client(srv).trigger_plan("acme", "web")
        assert srv.count("POST") == 1


def test_read_only_legacy_client():
    with FakeServer(lambda r: Reply(200, {"environment": ENV})) as srv:
        legacy = client(srv, read_only=True)
        legacy.get_environment("acme-legacy", "web.prod")
        for write in (lambda: legacy.put_state("a", "b", STATE), lambda: legacy.unlink_vcs("a", "b"),
                      lambda: legacy.delete_environment("a", "b"), lambda: legacy.lock("a", "b")):
            with pytest.raises(ReadOnlyError):
                write()
        assert srv.count() == 1
