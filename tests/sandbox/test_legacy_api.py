"""The legacy API (/api/v1) exactly as docs/legacy-api-contract.md describes it."""

from __future__ import annotations

import base64
import hashlib
import json

from sandbox_helpers import Api

from runbook_lib.sandbox import Sandbox

ENV_KEYS = {"username", "name", "slug", "terraform_version", "locked", "locked_by", "lock_reason", "vcs",
            "current_run", "created_at", "updated_at"}


def _state(serial: int, lineage: str = "lin-legacy") -> bytes:
    return json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": serial, "lineage": lineage,
                       "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]},
                      indent=4).encode()


# --- reading the seeded estate ----------------------------------------------------------------------------

def test_environments_list_and_read(seeded_sandbox: Sandbox, legacy: Api):
    listed = legacy.get("/api/v1/environments/acme-legacy")
    assert listed.status_code == 200
    body = listed.json()
    assert body["meta"] == {"page": 1, "total_pages": 1, "total_count": 10}
    envs = {e["name"]: e for e in body["environments"]}
    assert all(set(e) == ENV_KEYS for e in envs.values())
    web = envs["web.prod"]
    assert web["slug"] == "acme-legacy/web.prod" and web["terraform_version"] == "0.11.11"
    assert web["vcs"] == {"repo": "acme-legacy/web", "branch": "master", "working_directory": ""}
    assert envs["network-prod"]["vcs"]["working_directory"] == "network/prod"
    assert envs["app-staging"]["current_run"]["status"] == "planning"
    assert envs["db-prod"]["locked"] is True and envs["db-prod"]["locked_by"] == "operator"
    assert envs["web.prod"]["current_run"] is None and envs["web.prod"]["locked"] is False
    one = legacy.get("/api/v1/environments/acme-legacy/web.prod").json()
    assert one == {"environment": web}


def test_state_get_with_content_md5_and_list(legacy: Api):
    answer = legacy.get("/api/v1/terraform/state/acme-legacy/network-prod?atlas_run_id=")
    assert answer.status_code == 200
    assert answer.headers["Content-MD5"] == base64.b64encode(hashlib.md5(answer.content).digest()).decode()
    assert json.loads(answer.content)["terraform_version"] == "0.11.11"
    states = legacy.get("/api/v1/terraform/state?username=acme-legacy&page=1").json()["states"]
    assert len(states) == 10 and {"username": "acme-legacy", "name": "web.prod"} in [s["environment"] for s in states]
    assert legacy.get("/api/v1/terraform/state/acme-legacy/no-such-env").status_code == 404


def test_variables_runs_config_version_user(legacy: Api):
    variables = legacy.get("/api/v1/environments/acme-legacy/dns-prod/variables").json()["variables"]
    by_key = {v["key"]: v for v in variables}
    assert by_key["dns_api_key"] == {"key": "dns_api_key", "value": None, "category": "terraform", "hcl": False,
                                     "sensitive": True}
    assert by_key["DNS_PROVIDER_TOKEN"]["value"] is None and by_key["DNS_PROVIDER_TOKEN"]["category"] == "env"
    assert by_key["zone"]["value"] == "acme.example"
    runs = legacy.get("/api/v1/environments/acme-legacy/app-staging/runs").json()["runs"]
    assert [r["status"] for r in runs] == ["planning", "applied"]
    assert set(runs[0]) == {"id", "status", "commit_sha", "message", "created_at", "has_changes"}
    version = legacy.get("/api/v1/terraform/configurations/acme-legacy/app-staging/versions/latest").json()["version"]
    assert version["version"] == 1 and version["metadata"]["branch"] == "staging"
    assert version["metadata"]["commit_sha"] == runs[0]["commit_sha"]
    assert legacy.get("/api/v1/user/operator").json() == {"user": {"username": "operator",
                                                                    "email": "operator@acme.example"}}


def test_auth_and_foreign_organizations(seeded_sandbox: Sandbox):
    mark = seeded_sandbox.log_mark()
    for token in ("", "bogus"):
        answer = Api(seeded_sandbox, token, legacy=True).get("/api/v1/terraform/state/acme-legacy/web.prod")
        assert answer.status_code == 401 and answer.json() == {"errors": ["requires auth"]}
    # a bearer token is not how the legacy API authenticates
    assert Api(seeded_sandbox).get("/api/v1/environments/acme-legacy").status_code == 401
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token, legacy=True)
    for path in ("/api/v1/terraform/state/acme-legacy/web.prod", "/api/v1/environments/acme-legacy",
                 "/api/v1/environments/acme-legacy/web.prod/variables"):
        answer = outsider.get(path)
        assert answer.status_code == 404 and answer.json() == {"errors": ["not found"]}
    put = outsider.put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(99))
    assert put.status_code == 404
    operator = Api(seeded_sandbox, legacy=True)
    assert operator.get("/api/v1/environments/outsider-legacy/private-env").status_code == 404
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))


# --- changing things (own sandbox) -----------------------------------------------------------------------

def test_state_endpoint_rules(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    legacy = Api(sandbox, legacy=True)
    path = "/api/v1/terraform/state/acme-legacy/svc?atlas_run_id="
    assert legacy.get(path).status_code == 404
    first = _state(1)
    ok = legacy.put(path, data=first, headers={"Content-MD5": base64.b64encode(hashlib.md5(first).digest()).decode(),
                                               "Content-Type": "application/json"})
    assert ok.status_code == 200  # a PUT to a new name in your organization creates the environment
    assert legacy.get("/api/v1/environments/acme-legacy/svc").status_code == 200
    assert legacy.put(path, data=first).status_code == 200  # identical: accepted, nothing new
    mark = sandbox.log_mark()
    bad_md5 = legacy.put(path, data=_state(2), headers={"Content-MD5": base64.b64encode(b"x" * 16).decode()})
    assert bad_md5.status_code == 400
    assert legacy.put(path, data=b"not a state").status_code == 422
    assert legacy.put(path, data=_state(0)).status_code == 412
    assert legacy.put(path, data=_state(1, lineage="other")).status_code == 409
    assert all(r["changes"] == 0 for r in sandbox.request_log(since=mark))
    assert legacy.get(path).content == first
    assert legacy.put(path, data=_state(2)).status_code == 200
    assert json.loads(legacy.get(path).content)["serial"] == 2
    assert legacy.delete(path).status_code == 200
    assert legacy.get(path).status_code == 204  # the environment remains, without state


def test_read_only_member_gets_403_on_writes(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    Api(sandbox, legacy=True).put("/api/v1/terraform/state/acme-legacy/ro", data=_state(1))
    auditor = sandbox.store.create_user("auditor", "auditor@acme.example")
    sandbox.store.add_legacy_member("acme-legacy", auditor["id"], "read")
    reader = Api(sandbox, sandbox.store.create_token(auditor["id"], "auditor-api-token"), legacy=True)
    assert reader.get("/api/v1/terraform/state/acme-legacy/ro").status_code == 200
    refused = reader.put("/api/v1/terraform/state/acme-legacy/ro", data=_state(2))
    assert refused.status_code == 403 and refused.json() == {"errors": ["invalid auth"]}
    assert reader.delete("/api/v1/environments/acme-legacy/ro").status_code == 403


def test_lock_vcs_variables_plan_delete(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    sandbox.run_settings(paused=True)  # queued runs stay pending: this test checks the queueing, not the worker
    legacy = Api(sandbox, legacy=True)
    legacy.put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(1))
    base = "/api/v1/environments/acme-legacy/web.prod"

    locked = legacy.post(f"{base}/lock", json={"reason": "migration"})
    assert locked.status_code == 200 and locked.json()["locked"] is True and locked.json()["lock_reason"] == "migration"
    again = legacy.post(f"{base}/lock", json={"reason": "x"})
    assert again.status_code == 409 and again.json() == {"errors": ["environment is already locked"]}
    colleague = sandbox.store.create_user("colleague", "c@acme.example")
    sandbox.store.add_legacy_member("acme-legacy", colleague["id"], "admin")
    other = Api(sandbox, sandbox.store.create_token(colleague["id"], "colleague-api-token"), legacy=True)
    assert other.post(f"{base}/unlock").status_code == 409
    assert legacy.post(f"{base}/unlock").json()["locked"] is False
    assert legacy.post(f"{base}/unlock").status_code == 200  # idempotent

    linked = legacy.put(f"{base}/vcs", json={"vcs": {"repo": "acme-legacy/web", "branch": "main",
                                                     "working_directory": "envs/prod"}})
    assert linked.json()["environment"]["vcs"] == {"repo": "acme-legacy/web", "branch": "main",
                                                   "working_directory": "envs/prod"}
    invalid = legacy.put(f"{base}/vcs", json={"vcs": {"repo": "no-slash"}})
    assert invalid.status_code == 422 and "repo" in invalid.json()["errors"]
    assert legacy.delete(f"{base}/vcs").json()["environment"]["vcs"] is None
    assert legacy.delete(f"{base}/vcs").status_code == 200  # idempotent

    sandbox.store.set_legacy_var(sandbox.store.find_environment("acme-legacy", "web.prod")["id"], "secret", "s3",
                                 sensitive=True)
    assert legacy.put(f"{base}/variables", json={"variables": {"size": "3", "secret": "s4"}}).json() == {"success": True}
    by_key = {v["key"]: v for v in legacy.get(f"{base}/variables").json()["variables"]}
    assert by_key["size"]["value"] == "3" and by_key["secret"] == {"key": "secret", "value": None,
                                                                   "category": "terraform", "hcl": False,
                                                                   "sensitive": True}
    legacy.put(f"{base}/variables", json={"variables": {"size": ""}})
    assert [v["key"] for v in legacy.get(f"{base}/variables").json()["variables"]] == ["secret"]
    assert legacy.put(f"{base}/variables", json={"variables": ["not", "a", "map"]}).status_code == 422

    announced: list[tuple[str, str]] = []
    sandbox.store.run_listeners.append(lambda kind, run_id: announced.append((kind, run_id)))
    assert legacy.post(f"{base}/plan", json={"destroy": False}).json() == {"success": True}
    runs = legacy.get(f"{base}/runs").json()["runs"]
    assert runs[0]["status"] == "pending" and announced == [("legacy", runs[0]["id"])]
    assert legacy.get(base).json()["environment"]["current_run"] == {"id": runs[0]["id"], "status": "pending"}

    assert legacy.delete(base).json() == {"success": True}
    for path in (base, f"{base}/runs", f"{base}/variables", "/api/v1/terraform/state/acme-legacy/web.prod"):
        assert legacy.get(path).status_code == 404, path
