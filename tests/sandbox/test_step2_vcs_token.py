"""Step 2 links the workspace with the VCS token step 1 proved (its evidence), without reading the organization's
connections again; when that token is gone (the connection was remade since), the host's refusal sends it to
the current one, and the link still happens."""

from __future__ import annotations

from sandbox_fixtures import write_operator_mapping
from sandbox_helpers import Api, doc, step_context

from runbook_lib.steps import organization, workspaces

ENV = "web.prod"


def test_step_2_uses_step_1s_token_and_recovers_when_it_is_gone(tmp_path, rehearsal, seeded_sandbox, new_org):
    write_operator_mapping(seeded_sandbox, tmp_path / "runs", [ENV], new_org=new_org)
    one = step_context(tmp_path, "01_create_organization", ENV, new_org, **rehearsal)
    organization.apply(one)
    proved = one.conclude(organization.verify(one)).evidence["oauth_token_id"]
    two = step_context(tmp_path, "02_create_workspaces", ENV, new_org, accept_empty_sensitive=True, **rehearsal)
    assert organization.recorded_vcs_token_id(two) == proved

    # Someone remakes the organization's VCS connection in the UI after step 1: the recorded token is gone.
    api = Api(seeded_sandbox)
    [client] = api.get(f"/api/v2/organizations/{new_org}/oauth-clients").json()["data"]
    assert api.delete(f"/api/v2/oauth-clients/{client['id']}").status_code == 204
    remade = api.post(f"/api/v2/organizations/{new_org}/oauth-clients", json=doc(
        "oauth-clients", **{k: client["attributes"][k] for k in ("service-provider", "http-url", "api-url")},
        **{"oauth-token-string": "sandbox-vcs-token"}))
    assert remade.status_code == 201, remade.text
    current = remade.json()["data"]["relationships"]["oauth-tokens"]["data"][0]["id"]
    assert current != proved

    mark = seeded_sandbox.log_mark()
    workspaces.apply(two)
    patches = [r for r in seeded_sandbox.request_log(since=mark) if r["method"] == "PATCH"]
    assert [r["status"] for r in patches][:2] == [422, 200]  # the recorded token refused, then the current one
    ws = api.get(f"/api/v2/organizations/{new_org}/workspaces/web-prod").json()["data"]
    assert ws["attributes"]["vcs-repo"]["oauth-token-id"] == current
