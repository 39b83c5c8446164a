"""The legacy API (/api/v1) as the legacy host documented it, and nothing else by default.

Sources (docs/legacy-api-contract.md): the 2018 legacy API pages (hashicorp/terraform-website 98a35d246) and
Terraform 0.11.11's atlas backend. The endpoints an earlier sandbox invented for UI-only actions are served only
under the explicitly named `site-adapter` profile (the last test here names it).
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sandbox_helpers import Api

from runbook_lib.sandbox import Sandbox

#: What the legacy product did in its UI only: not served by the documented profile.
UI_ONLY = [("GET", "/api/v1/environments/acme-legacy"), ("GET", "/api/v1/environments/acme-legacy/web.prod"),
           ("GET", "/api/v1/environments/acme-legacy/web.prod/variables"),
           ("DELETE", "/api/v1/environments/acme-legacy/web.prod/vcs"),
           ("PUT", "/api/v1/environments/acme-legacy/web.prod/vcs"),
           ("POST", "/api/v1/environments/acme-legacy/web.prod/lock"),
           ("POST", "/api/v1/environments/acme-legacy/web.prod/unlock"),
           ("GET", "/api/v1/environments/acme-legacy/web.prod/runs"),
           ("GET", "/api/v1/environments/acme-legacy/web.prod/teams"),
           ("DELETE", "/api/v1/environments/acme-legacy/web.prod")]


def _state(serial: int, lineage: str = "lin-legacy") -> bytes:
    return json.dumps({"version": 3, "terraform_version": "0.11.11", "serial": serial, "lineage": lineage,
                       "modules": [{"path": ["root"], "outputs": {}, "resources": {}, "depends_on": []}]},
                      indent=4).encode()


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# --- reading the seeded estate ----------------------------------------------------------------------------

def test_the_ui_only_endpoints_are_not_served_and_change_nothing(seeded_sandbox: Sandbox, legacy: Api):
    mark = seeded_sandbox.log_mark()
    for method, path in UI_ONLY:
        answer = legacy.request(method, path, json={})
        assert answer.status_code == 404 and answer.json() == {"errors": ["not found"]}, (method, path)
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))
    # the environment is there all the same: the documented state endpoint serves it
    assert legacy.get("/api/v1/terraform/state/acme-legacy/web.prod").status_code == 200


def test_state_get_with_content_md5_and_list(legacy: Api):
    answer = legacy.get("/api/v1/terraform/state/acme-legacy/network-prod?atlas_run_id=")
    assert answer.status_code == 200
    assert answer.headers["Content-MD5"] == _md5(answer.content)
    assert json.loads(answer.content)["terraform_version"] == "0.11.11"
    states = legacy.get("/api/v1/terraform/state?username=acme-legacy&page=1").json()["states"]
    assert len(states) == 10 and {"username": "acme-legacy", "name": "web.prod"} in [s["environment"] for s in states]
    assert set(states[0]) == {"updated_at", "environment"}  # states.html.md's shape, no page count
    assert legacy.get("/api/v1/terraform/state?username=acme-legacy&page=2").json() == {"states": []}
    assert legacy.get("/api/v1/terraform/state/acme-legacy/no-such-env").status_code == 404


def test_the_latest_configuration_version_shows_non_sensitive_terraform_variables_only(legacy: Api):
    version = legacy.get("/api/v1/terraform/configurations/acme-legacy/dns-prod/versions/latest").json()["version"]
    assert set(version) == {"version", "metadata", "tf_vars", "variables"}
    assert version["metadata"] == {"git_branch": "master", "remote_type": "github", "remote_slug": "acme-legacy/dns",
                                   "commit_sha": version["metadata"]["commit_sha"]}
    # dns-prod also has the sensitive `dns_api_key` and the env variable DNS_PROVIDER_TOKEN: neither is shown
    assert version["tf_vars"] == [{"key": "environment", "value": "production", "hcl": False},
                                  {"key": "zone", "value": "acme.example", "hcl": False}]
    assert version["variables"] == {"environment": "production", "zone": "acme.example"}
    network = legacy.get("/api/v1/terraform/configurations/acme-legacy/network-prod/versions/latest").json()
    assert "AWS_DEFAULT_REGION" not in json.dumps(network)  # an environment variable: UI only


def test_a_user_and_an_organization_are_answered_unwrapped_and_a_foreign_organization_is_404(seeded_sandbox, legacy):
    user = legacy.get("/api/v1/user/operator").json()
    assert user["username"] == "operator" and "user" not in user and user["boxes"] == []  # users.html.md's sample
    assert legacy.get("/api/v1/user/acme-legacy").json()["username"] == "acme-legacy"
    assert legacy.get("/api/v1/user/outsider-legacy").status_code == 404  # not a member: not visible
    assert legacy.get("/api/v1/user/nobody-at-all").status_code == 404


def test_auth_and_foreign_organizations(seeded_sandbox: Sandbox):
    mark = seeded_sandbox.log_mark()
    for token in ("", "bogus"):
        answer = Api(seeded_sandbox, token, legacy=True).get("/api/v1/terraform/state/acme-legacy/web.prod")
        assert answer.status_code == 401 and answer.json() == {"errors": ["requires auth"]}
    # a bearer token is not how the legacy API authenticates
    assert Api(seeded_sandbox).get("/api/v1/terraform/state?username=acme-legacy").status_code == 401
    outsider = Api(seeded_sandbox, seeded_sandbox.outsider_token, legacy=True)
    for path in ("/api/v1/terraform/state/acme-legacy/web.prod", "/api/v1/terraform/state?username=acme-legacy",
                 "/api/v1/terraform/configurations/acme-legacy/web.prod/versions/latest"):
        answer = outsider.get(path)
        assert answer.status_code == 404 and answer.json() == {"errors": ["not found"]}, path
    put = outsider.put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(99))
    assert put.status_code == 404
    assert all(r["changes"] == 0 for r in seeded_sandbox.request_log(since=mark))


# --- changing things (own sandbox) -----------------------------------------------------------------------

def test_state_endpoint_rules_are_terraform_011s(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    legacy = Api(sandbox, legacy=True)
    path = "/api/v1/terraform/state/acme-legacy/svc?atlas_run_id="
    assert legacy.get(path).status_code == 404
    first = _state(2)
    ok = legacy.put(path, data=first, headers={"Content-MD5": _md5(first), "Content-Type": "application/json"})
    assert ok.status_code == 200  # a PUT to a new name in your organization creates the environment
    assert legacy.put(path, data=first).status_code == 200  # identical: accepted, nothing new
    mark = sandbox.log_mark()
    assert legacy.put(path, data=_state(3), headers={"Content-MD5": base64.b64encode(b"x" * 16).decode()}
                      ).status_code == 400
    assert legacy.put(path, data=b"not a state").status_code == 422
    conflict = legacy.put(path, data=_state(2, lineage="other"))  # the same serial, another md5
    assert conflict.status_code == 409 and conflict.json()["success"] is False
    assert all(r["changes"] == 0 for r in sandbox.request_log(since=mark))
    # Terraform's own test host (state_client_test.go) stores a lower serial: no 412 exists
    assert legacy.put(path, data=_state(1)).status_code == 200
    assert json.loads(legacy.get(path).content)["serial"] == 1
    assert legacy.delete(path).status_code == 200
    assert legacy.get(path).status_code == 204  # the environment remains, without state


def test_variables_put_answers_an_empty_body_and_plan_needs_a_configuration(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    sandbox.run_settings(paused=True)  # queued runs stay pending: this checks the queueing, not the worker
    legacy = Api(sandbox, legacy=True)
    legacy.put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(1))
    base = "/api/v1/environments/acme-legacy/web.prod"
    env_id = sandbox.store.find_environment("acme-legacy", "web.prod")["id"]
    sandbox.store.set_legacy_var(env_id, "secret", "s3", sensitive=True)
    answer = legacy.put(f"{base}/variables", json={"variables": {"size": "3", "secret": "s4"}})
    assert answer.status_code == 200 and answer.content == b""  # environments.html.md: "(empty body)"
    values = {v["key"]: v for v in sandbox.store.list_legacy_vars(env_id)}
    assert values["size"]["value"] == "3" and values["secret"]["value"] == "s4" and values["secret"]["sensitive"]
    assert legacy.put(f"{base}/variables", json={"variables": ["not", "a", "map"]}).status_code == 422
    # runs.html.md: "Requires a configuration version to be present on the environment [...] will otherwise 404"
    assert legacy.post(f"{base}/plan", json={"destroy": False}).status_code == 404
    created = legacy.post("/api/v1/terraform/configurations/acme-legacy/web.prod/versions",
                          json={"version": {"metadata": {"git_branch": "main"}}})
    assert created.status_code == 201 and created.json()["version"] == 1
    assert legacy.post(f"{base}/plan", json={"destroy": False}).json() == {"success": True}
    assert sandbox.store.current_legacy_run(env_id)["status"] == "pending"


def test_no_429_on_the_legacy_api_whatever_the_rate_or_the_injected_bursts(fresh_sandbox: Sandbox):
    """The legacy host documented no rate limit and Terraform 0.11's atlas backend does not retry a 429."""
    sandbox = fresh_sandbox
    legacy = Api(sandbox, legacy=True, retry_429=False)
    legacy.put("/api/v1/terraform/state/acme-legacy/svc", data=_state(1))
    sandbox.set_rate_limit(2)
    sandbox.set_faults(burst_rate=1.0, burst_length=50, seed=3)
    try:
        statuses = {legacy.get("/api/v1/terraform/state/acme-legacy/svc").status_code for _ in range(40)}
        new_api = Api(sandbox, retry_429=False).get("/api/v2/organizations").status_code
    finally:
        sandbox.clear_faults()
    assert statuses == {200} and new_api == 429  # the new API still meets them


def test_read_only_member_gets_403_on_writes(fresh_sandbox: Sandbox):
    sandbox = fresh_sandbox
    Api(sandbox, legacy=True).put("/api/v1/terraform/state/acme-legacy/ro", data=_state(1))
    auditor = sandbox.store.create_user("auditor", "auditor@acme.example")
    sandbox.store.add_legacy_member("acme-legacy", auditor["id"], "read")
    reader = Api(sandbox, sandbox.store.create_token(auditor["id"], "auditor-api-token"), legacy=True)
    assert reader.get("/api/v1/terraform/state/acme-legacy/ro").status_code == 200
    refused = reader.put("/api/v1/terraform/state/acme-legacy/ro", data=_state(2))
    assert refused.status_code == 403 and refused.json() == {"errors": ["invalid auth"]}
    assert reader.put("/api/v1/environments/acme-legacy/ro/variables", json={"variables": {"a": "b"}}
                      ).status_code == 403


# --- the site-adapter profile: only when named -------------------------------------------------------------

@pytest.fixture
def adapter_sandbox(tmp_path):
    with Sandbox(tmp_path / "adapter", legacy_profile="site-adapter") as sandbox:
        yield sandbox


def test_the_site_adapter_profile_serves_the_undocumented_endpoints_only_when_named(adapter_sandbox: Sandbox):
    sandbox = adapter_sandbox
    assert sandbox.env["SANDBOX_LEGACY_PROFILE"] == "site-adapter"
    sandbox.run_settings(paused=True)
    legacy = Api(sandbox, legacy=True)
    legacy.put("/api/v1/terraform/state/acme-legacy/web.prod", data=_state(1))
    base = "/api/v1/environments/acme-legacy/web.prod"
    assert legacy.get("/api/v1/environments/acme-legacy").json()["meta"]["total_count"] == 1
    assert legacy.post(f"{base}/lock", json={"reason": "migration"}).json()["locked"] is True
    assert legacy.put(f"{base}/vcs", json={"vcs": {"repo": "acme-legacy/web"}}).json()["environment"]["vcs"]["repo"] \
        == "acme-legacy/web"
    assert legacy.delete(f"{base}/vcs").json()["environment"]["vcs"] is None
    assert legacy.get(f"{base}/teams").json() == {"teams": []}
    assert legacy.delete(base).json() == {"success": True}
    assert legacy.get("/api/v1/terraform/state/acme-legacy/web.prod").status_code == 404
