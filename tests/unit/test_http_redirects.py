"""The redirect policy of the one transport: the token never reaches another origin, on any method or code."""

from __future__ import annotations

import pytest

from runbook_lib.http import ApiSession, RedirectError, RetryPolicy
from runbook_lib.settings import Settings
from test_clients_fake_server import TOKEN, FakeServer, Received, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CODES = (301, 302, 303, 307, 308)


def session(url: str, which: str) -> ApiSession:
    settings = Settings(tfe_address=url, legacy_address=url, environ={"TFE_TOKEN": TOKEN, "ATLAS_TOKEN": TOKEN},
                        connect_timeout=2, read_timeout=3)
    header, prefix = ("Authorization", "Bearer ") if which == "tfe" else ("X-Atlas-Token", "")
    return ApiSession(settings, which, auth_header=header, auth_prefix=prefix, retry=FAST)


def _carries_token(req: Received) -> bool:
    return any(TOKEN in v for v in req.headers.values()) or TOKEN.encode() in req.body


@pytest.mark.parametrize("which", ["legacy", "tfe"])
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("method", METHODS)
def test_redirect_to_another_origin_is_one_error_and_sends_nothing_there(method, code, which):
    with FakeServer(lambda req: Reply(200)) as other, FakeServer() as api:
        api.then(Reply(code, headers={"Location": f"{other.url}/api/v1/steal?x=1"}))
        s = session(api.url, which)
        with pytest.raises(RedirectError, match="another origin") as caught:
            s.request(method, "/api/v2/thing", json={"state": "body"} if method in ("POST", "PUT", "PATCH") else None)
        assert other.received == []  # neither the token nor the body went there
        assert TOKEN not in str(caught.value) and "steal" not in str(caught.value)
        assert "TFE_ADDRESS" in str(caught.value) or "ATLAS_ADDRESS" in str(caught.value)


def test_same_origin_redirect_is_followed_with_the_token_reattached():
    with FakeServer() as api:
        api.then(Reply(307, headers={"Location": "/api/v2/moved"}), Reply(200, {"data": []}))
        response = session(api.url, "legacy").request("POST", "/api/v2/thing", json={"a": 1})
        assert response.status_code == 200
        second = api.received[1]
        assert second.path == "/api/v2/moved" and second.method == "POST" and second.json() == {"a": 1}
        assert second.headers.get("X-Atlas-Token") == TOKEN


@pytest.mark.parametrize("code", [301, 302, 303])
def test_a_write_is_never_turned_into_a_get(code):
    with FakeServer() as api:
        api.then(Reply(code, headers={"Location": "/api/v2/elsewhere"}))
        with pytest.raises(RedirectError, match="resent as a GET"):
            session(api.url, "tfe").request("POST", "/api/v2/thing", json={"a": 1})
        assert len(api.received) == 1


def test_redirect_loop_is_one_error():
    with FakeServer(lambda req: Reply(302, headers={"Location": "/api/v2/again"})) as api:
        with pytest.raises(RedirectError, match="more than 5 times"):
            session(api.url, "tfe").request("GET", "/api/v2/again")
        assert len(api.received) == 6


def test_documented_signed_link_hop_is_a_plain_get_without_token():
    with FakeServer(lambda req: Reply(200, {"plan": 1}, {"Content-Type": "application/json"})) as store, \
            FakeServer() as api:
        api.then(Reply(307, headers={"Location": f"{store.url}/v1/object/SIGNED"}))
        response = session(api.url, "tfe").request("GET", "/api/v2/plans/p/json-output", signed_redirect=True,
                                                   headers={"Accept": "application/json", "X-Other": "1"})
        assert response.json() == {"plan": 1}
        hop = store.received[0]
        assert not _carries_token(hop) and "Authorization" not in hop.headers and "X-Other" not in hop.headers
        # A second cross-origin hop is not part of the exception.
        api.then(Reply(307, headers={"Location": f"{store.url}/v1/object/SIGNED"}))
        store.then(Reply(302, headers={"Location": f"{api.url}/back"}))
        with pytest.raises(RedirectError):
            session(api.url, "tfe").request("GET", "/api/v2/plans/p/json-output", signed_redirect=True)


def test_not_following_returns_the_redirect_itself():
    with FakeServer() as api:
        api.then(Reply(307, headers={"Location": "http://203.0.113.9/x"}))
        assert session(api.url, "tfe").request("GET", "/a", allow_redirects=False).status_code == 307
