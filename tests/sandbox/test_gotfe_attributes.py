"""Conformance: every attribute the sandbox answers with is one the real API answers with.

The reference is go-tfe's response structs at a pinned tag, plus the few attributes the API documentation's
sample responses show that go-tfe does not decode (each with its page) (`tests/conformance/gotfe_attributes.json`, made by
`tests/conformance/extract_gotfe_attributes.py` from `../shared/conformance/go-tfe/src.tar.xz`). An attribute
the sandbox sends that go-tfe does not read would let the runbook rely on something a real TFE never says.
"""

from __future__ import annotations

import hashlib
import json
import base64
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import Api, create_workspace, doc
from vcs_helpers import new_org_with_vcs

from runbook_lib.sandbox import Sandbox

FIXTURE = Path(__file__).resolve().parents[1] / "conformance" / "gotfe_attributes.json"
REFERENCE = json.loads(FIXTURE.read_text())
TYPES = sorted(REFERENCE["types"])


def _collect(seen: dict[str, set[str]], answer: Any) -> None:
    body = answer.json()
    for resource in ([body["data"]] if isinstance(body.get("data"), dict) else body.get("data") or []) + \
            (body.get("included") or []):
        seen.setdefault(resource["type"], set()).update((resource.get("attributes") or {}).keys())


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Attribute names per type, from one of each answer the runbook and go-tfe read."""
    seen: dict[str, set[str]] = {}
    with Sandbox(tmp_path_factory.mktemp("gotfe-attrs"), rate_limit=None) as sb:
        api = Api(sb)
        org, token_id = new_org_with_vcs(api)
        for path in (f"/api/v2/organizations/{org}", f"/api/v2/organizations/{org}/oauth-clients"):
            _collect(seen, api.get(path))
        client_id = api.get(f"/api/v2/organizations/{org}/oauth-clients").json()["data"][0]["id"]
        _collect(seen, api.get(f"/api/v2/oauth-clients/{client_id}/oauth-tokens"))
        _collect(seen, api.get(f"/api/v2/oauth-tokens/{token_id}"))
        ws = create_workspace(api, org, "conformance", **{"vcs-repo": {"identifier": "acme/app",
                                                                      "oauth-token-id": token_id}})
        api.post(f"/api/v2/workspaces/{ws['id']}/actions/lock", json={})
        state = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 1, "lineage": "l",
                            "outputs": {}, "resources": []}).encode()
        _collect(seen, api.post(f"/api/v2/workspaces/{ws['id']}/state-versions", json=doc(
            "state-versions", serial=1, md5=hashlib.md5(state).hexdigest(), lineage="l",
            state=base64.b64encode(state).decode())))
        _collect(seen, api.post(f"/api/v2/workspaces/{ws['id']}/vars", json=doc(
            "vars", key="region", value="eu", category="terraform")))
        _collect(seen, api.get(f"/api/v2/workspaces/{ws['id']}?include=current-state-version,organization"))
        _collect(seen, api.get(f"/api/v2/organizations/{org}/workspaces"))
        _collect(seen, api.post(f"/api/v2/workspaces/{ws['id']}/configuration-versions",
                                json=doc("configuration-versions", **{"auto-queue-runs": False})))
        sb.run_settings(paused=True)
        run = api.post("/api/v2/runs", json={"data": {"type": "runs", "attributes": {"message": "m"},
                                                      "relationships": {"workspace": {"data": {
                                                          "type": "workspaces", "id": ws["id"]}}}}})
        _collect(seen, run)
        run_id = run.json()["data"]["id"]
        for path in (f"/api/v2/runs/{run_id}", f"/api/v2/runs/{run_id}/plan", f"/api/v2/workspaces/{ws['id']}/runs",
                     f"/api/v2/workspaces/{ws['id']}/current-state-version", f"/api/v2/workspaces/{ws['id']}/vars"):
            _collect(seen, api.get(path))
    return seen


def test_the_fixture_names_its_source_and_every_type():
    assert REFERENCE["source"] == "hashicorp/go-tfe" and REFERENCE["tag"] == "v1.90.0"
    assert "md5" not in REFERENCE["types"]["state-versions"] and "serial" in REFERENCE["types"]["state-versions"]
    assert {"organizations", "workspaces", "state-versions", "vars", "runs", "plans", "configuration-versions",
            "oauth-clients", "oauth-tokens"} == set(TYPES)


def test_every_type_was_answered(answered: dict[str, set[str]]):
    assert set(TYPES) <= set(answered)


@pytest.mark.parametrize("kind", TYPES)
def test_the_sandbox_sends_no_attribute_the_real_api_lacks(answered: dict[str, set[str]], kind: str):
    known = set(REFERENCE["types"][kind]) | set(REFERENCE["documented"].get(kind, {}))
    extra = sorted(answered.get(kind, set()) - known)
    assert extra == [], f"{kind}: neither in go-tfe {REFERENCE['tag']} nor in a documented sample response: {extra}"
