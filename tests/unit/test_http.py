"""The transport against a real local server: retries, waits, drops, TLS, error mapping, token hygiene."""

from __future__ import annotations

import secrets
import socket
import ssl
import time
import traceback
from pathlib import Path

import pytest
import trustme

from runbook_lib import errors
from runbook_lib.http import (
    ApiSession,
    RateLimitAwareRetry,
    ReadOnlyError,
    RetryPolicy,
    TokenBucket,
    create_or_adopt,
    redact_url,
)
from runbook_lib.settings import Settings
from test_clients_fake_server import TOKEN, FakeServer, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)
NOT_FOUND = {"errors": [{"status": "404", "title": "not found"}]}


def make_session(url: str, which: str = "tfe", *, policy: RetryPolicy = FAST, read_timeout: float = 3.0,
                 ca_bundle: str | None = None, read_only: bool = False, environ: dict | None = None) -> ApiSession:
    env = {"TFE_TOKEN": TOKEN, "ATLAS_TOKEN": TOKEN} if environ is None else environ
    settings = Settings(tfe_address=url, legacy_address=url, environ=env, connect_timeout=2,
                        read_timeout=read_timeout, ca_bundle=ca_bundle)
    header, prefix = ("Authorization", "Bearer ") if which == "tfe" else ("X-Atlas-Token", "")
    return ApiSession(settings, which, auth_header=header, auth_prefix=prefix, read_only=read_only, retry=policy)


def ok(_req=None):
    return Reply(200, {"data": {"id": "x", "type": "things"}})


# -- retries of reads -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("statuses", [[503], [502, 504], [503, 503, 503]])
def test_get_retried_through_5xx(statuses):
    with FakeServer(ok) as srv:
        srv.then(*[Reply(s, {"errors": [{"title": "busy"}]}) for s in statuses])
        resp = make_session(srv.url).request("GET", "/api/v2/things/x")
        assert resp.json()["data"]["id"] == "x"
        assert srv.count("GET") == len(statuses) + 1


def test_429_waits_retry_after():
    with FakeServer(ok) as srv:
        srv.then(Reply(429, {"errors": [{"title": "Too many requests"}]}, {"Retry-After": "0.3"}))
        start = time.monotonic()
        make_session(srv.url).request("GET", "/api/v2/things/x")
        assert time.monotonic() - start >= 0.3
        assert srv.count() == 2


def test_429_without_retry_after_waits_x_ratelimit_reset():
    with FakeServer(ok) as srv:
        srv.then(Reply(429, {"errors": [{"title": "Too many requests"}]},
                       {"X-RateLimit-Reset": "0.35", "X-RateLimit-Limit": "30"}))
        start = time.monotonic()
        make_session(srv.url).request("GET", "/api/v2/things/x")
        assert time.monotonic() - start >= 0.35
        assert srv.count() == 2


def test_x_ratelimit_reset_gets_jitter_and_cap():
    retry = RetryPolicy(backoff_jitter=0.5, retry_after_max=5).build()

    class Resp:
        status = 429
        headers = {"X-RateLimit-Reset": "1.5"}

    waits = {retry.get_retry_after(Resp()) for _ in range(20)}
    assert all(1.5 <= w <= 2.0 for w in waits) and len(waits) > 1
    Resp.headers = {"X-RateLimit-Reset": "999"}
    assert retry.get_retry_after(Resp()) == 5
    Resp.headers = {"Retry-After": "0.25", "X-RateLimit-Reset": "9"}
    assert retry.get_retry_after(Resp()) == 0.25
    assert isinstance(retry, RateLimitAwareRetry)


def test_429_burst_then_every_read_succeeds():
    burst = [Reply(429, {"errors": [{"title": "Too many requests"}]}, {"X-RateLimit-Reset": "0.02"})] * 6
    with FakeServer(ok) as srv:
        srv.then(*burst)
        session = make_session(srv.url)
        for _ in range(4):
            assert session.request("GET", "/api/v2/things/x").status_code == 200
        assert srv.count() == 6 + 4


def test_dropped_connection_on_get_is_retried():
    with FakeServer(ok) as srv:
        srv.then(Reply(drop=True), Reply(drop=True))
        assert make_session(srv.url).request("GET", "/api/v2/things/x").status_code == 200
        assert srv.count() == 3


def test_put_and_delete_are_retried():
    with FakeServer(ok) as srv:
        srv.then(Reply(503), Reply(drop=True))
        session = make_session(srv.url)
        session.request("PUT", "/blob", data=b"abc")
        assert srv.count("PUT") == 3
        srv.then(Reply(502))
        session.request("DELETE", "/api/v2/things/x")
        assert srv.count("DELETE") == 2


def test_read_timeout_on_get_retried_then_transport_error():
    policy = RetryPolicy(read=1, backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0)
    with FakeServer(lambda r: Reply(200, {}, delay=0.6)) as srv:
        with pytest.raises(errors.TransportError, match="got no answer"):
            make_session(srv.url, policy=policy, read_timeout=0.2).request("GET", "/api/v2/slow")
        assert srv.count() == 2


def test_reads_exhausting_retries_raise_server_error_with_api_errors():
    policy = RetryPolicy(status=2, backoff_factor=0.01, backoff_max=0.02, backoff_jitter=0)
    with FakeServer(lambda r: Reply(503, {"errors": [{"status": "503", "title": "maintenance"}]})) as srv:
        with pytest.raises(errors.ServerError) as info:
            make_session(srv.url, policy=policy).request("GET", "/api/v2/things/x")
        assert srv.count() == 3
        assert info.value.status == 503 and info.value.errors[0]["title"] == "maintenance"
        assert str(info.value).startswith("GET /api/v2/things/x answered 503 Service Unavailable: maintenance")


# -- writes that must not be retried ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_and_patch_5xx_not_retried(method, status):
    with FakeServer(ok) as srv:
        srv.then(Reply(status, {"errors": [{"title": "oops"}]}, {"Retry-After": "0"}))
        with pytest.raises(errors.ServerError):
            make_session(srv.url).request(method, "/api/v2/things", json={"a": 1})
        assert srv.count() == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_dropped_after_sending_not_retried(method):
    with FakeServer(ok) as srv:
        srv.then(Reply(drop=True))
        with pytest.raises(errors.TransportError, match="not retried because it may have been applied"):
            make_session(srv.url).request(method, "/api/v2/things", json={"a": 1})
        assert srv.count() == 1


def test_post_read_timeout_not_retried():
    with FakeServer(lambda r: Reply(201, {}, delay=0.5)) as srv:
        with pytest.raises(errors.TransportError, match="read back before repeating"):
            make_session(srv.url, read_timeout=0.15).request("POST", "/api/v2/things", json={})
        assert srv.count() == 1


def test_post_429_is_retried_because_the_rate_limiter_refused_it_unprocessed():
    with FakeServer(lambda r: Reply(201, {"data": {"id": "new", "type": "things"}})) as srv:
        srv.then(Reply(429, {"errors": [{"title": "Too many requests"}]}, {"X-RateLimit-Reset": "0.05"}))
        resp = make_session(srv.url).request("POST", "/api/v2/things", json={"a": 1})
        assert resp.status_code == 201 and srv.count("POST") == 2
        assert srv.received[0].body == srv.received[1].body


def test_post_connection_refused_is_transport_error():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = RetryPolicy(connect=1, backoff_factor=0.01, backoff_max=0.02, backoff_jitter=0)
    with pytest.raises(errors.TransportError, match=f"127.0.0.1:{port}") as info:
        make_session(f"http://127.0.0.1:{port}", policy=policy).request("POST", "/api/v2/things", json={})
    assert info.value.status is None and info.value.method == "POST"


def test_create_or_adopt_reads_back_instead_of_reposting():
    calls = []

    class Thing:
        adopted = False

    def post():
        calls.append("post")
        raise errors.ServerError("POST answered 503", status=503)

    found = create_or_adopt(post, lambda: Thing())
    assert found.adopted and calls == ["post"]
    with pytest.raises(errors.ServerError):
        create_or_adopt(post, lambda: None)
    with pytest.raises(errors.ValidationError):  # an unambiguous refusal is not read back
        create_or_adopt(lambda: (_ for _ in ()).throw(errors.ValidationError("no")), lambda: Thing())


# -- status mapping -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, cls", [
    (400, errors.ValidationError), (401, errors.AuthError), (403, errors.AuthError), (404, errors.NotFoundError),
    (409, errors.ConflictError), (412, errors.ConflictError), (422, errors.ValidationError),
    (429, errors.RateLimitedError), (500, errors.ServerError), (503, errors.ServerError),
])
def test_one_mapping_from_status_to_exception(status, cls):
    body = {"errors": [{"status": str(status), "title": "t", "detail": "d"}]}
    with FakeServer(lambda r: Reply(status, body)) as srv:
        with pytest.raises(cls) as info:
            make_session(srv.url, policy=RetryPolicy(total=0)).request("GET", "/api/v2/x", params={"q": "1"})
    e = info.value
    assert (e.method, e.status, e.errors) == ("GET", status, body["errors"])
    assert e.url == f"{srv.url}/api/v2/x"  # no query string
    assert str(e).startswith(f"GET /api/v2/x answered {status} ")
    assert ": t: d (" in str(e) and str(e).endswith(").")


def test_401_names_the_token_variable_and_host():
    with FakeServer(lambda r: Reply(401, {"errors": [{"status": "401", "title": "unauthorized"}]})) as srv:
        with pytest.raises(errors.AuthError) as info:
            make_session(srv.url).request("GET", "/api/v2/ping")
    assert "check that the token in $TFE_TOKEN is valid for 127.0.0.1:" in str(info.value)


def test_legacy_error_shapes_in_message():
    body = {"errors": {"name": ["has already been taken"]}}
    with FakeServer(lambda r: Reply(422, body, {"Content-Type": "application/json"})) as srv:
        with pytest.raises(errors.ValidationError, match="name has already been taken") as info:
            make_session(srv.url, "legacy").request("PUT", "/api/v1/environments/a/b/variables", json={})
    assert info.value.errors == body["errors"]


def test_non_json_error_body_kept_short():
    with FakeServer(lambda r: Reply(502, "<html>" + "x" * 1000 + "</html>", {"Content-Type": "text/html"})) as srv:
        with pytest.raises(errors.ServerError) as info:
            make_session(srv.url, policy=RetryPolicy(total=0)).request("GET", "/")
    assert len(str(info.value)) < 400


# -- tokens -----------------------------------------------------------------------------------------------------

def test_token_headers_per_api_and_only_to_the_api_host():
    with FakeServer(ok) as srv, FakeServer(ok, host="localhost") as other:
        tfe = make_session(srv.url, "tfe")
        tfe.request("GET", "/api/v2/x")
        assert srv.received[-1].headers["Authorization"] == f"Bearer {TOKEN}"
        tfe.request("PUT", srv.url + "/upload/abc", data=b"x", auth=False)
        assert "Authorization" not in srv.received[-1].headers
        tfe.request("GET", f"http://localhost:{other.port}/blob")  # another host never sees the token
        assert "Authorization" not in other.received[-1].headers
        make_session(srv.url, "legacy").request("GET", "/api/v1/x")
        assert srv.received[-1].headers["X-Atlas-Token"] == TOKEN
        assert "Authorization" not in srv.received[-1].headers


def test_token_read_from_environment_when_sending():
    env = {"TFE_TOKEN": "first-token"}
    with FakeServer(ok) as srv:
        session = make_session(srv.url, environ=env)
        session.request("GET", "/a")
        env["TFE_TOKEN"] = "rotated-token"
        session.request("GET", "/b")
        assert [r.headers["Authorization"] for r in srv.received] == ["Bearer first-token", "Bearer rotated-token"]
        del env["TFE_TOKEN"]
        with pytest.raises(errors.ConfigError, match="TFE_TOKEN"):
            session.request("GET", "/c")


def _everything_said(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)),
                      repr(getattr(exc, "errors", "")), str(getattr(exc, "url", ""))])


def _error_cases(srv: FakeServer, dead_port: int, tls_url: str):
    """Yield (expected class, callable) forcing every error type the transport raises."""
    def status(code, method="GET"):
        return lambda: (srv.then(Reply(code, {"errors": [{"status": str(code), "title": "x"}]})),
                        make_session(srv.url, policy=RetryPolicy(total=0)).request(method, "/api/v2/x?q=1"))
    yield errors.AuthError, status(401)
    yield errors.AuthError, status(403)
    yield errors.NotFoundError, status(404)
    yield errors.ConflictError, status(409, "POST")
    yield errors.ValidationError, status(422, "POST")
    yield errors.RateLimitedError, status(429)
    yield errors.ServerError, status(500, "POST")
    yield errors.TransportError, lambda: (srv.then(Reply(drop=True)),
                                          make_session(srv.url).request("POST", "/api/v2/x", json={}))
    yield errors.TransportError, lambda: make_session(
        f"http://127.0.0.1:{dead_port}", policy=RetryPolicy(connect=0)).request("GET", "/api/v2/x")
    yield errors.TransportError, lambda: make_session(tls_url).request("GET", "/api/v2/x")  # untrusted CA
    yield ReadOnlyError, lambda: make_session(srv.url, read_only=True).request("DELETE", "/api/v2/x")
    yield errors.ConfigError, lambda: make_session(srv.url, environ={}).request("GET", "/api/v2/x")


@pytest.mark.parametrize("which", ["tfe", "legacy"])
def test_no_error_ever_carries_the_token(which, tls_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    seen = set()
    with FakeServer(ok) as srv:
        for cls, force in _error_cases(srv, dead_port, tls_server.url):
            with pytest.raises(cls) as info:
                force()
            seen.add(type(info.value))
            assert TOKEN not in _everything_said(info.value), cls
    assert {errors.AuthError, errors.NotFoundError, errors.ConflictError, errors.ValidationError,
            errors.RateLimitedError, errors.ServerError, errors.TransportError} <= seen
    session = make_session("http://127.0.0.1:1", which)
    assert TOKEN not in repr(session) and TOKEN not in repr(session._session.auth)
    assert TOKEN not in repr(session.settings)


# -- TLS ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def tls_server(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    with FakeServer(ok, tls=ctx) as srv:
        yield srv


def test_tls_verified_with_the_ca_bundle_setting(tls_server, ca, tmp_path: Path):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    session = make_session(tls_server.url, ca_bundle=str(bundle))
    assert session.verify == str(bundle)
    assert session.request("GET", "/api/v2/x").status_code == 200


def test_tls_wrong_ca_names_the_fix_and_is_not_retried(tls_server, tmp_path: Path):
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    start = time.monotonic()
    with pytest.raises(errors.TransportError) as info:
        make_session(tls_server.url, ca_bundle=str(bundle), policy=RetryPolicy(backoff_factor=1)).request(
            "GET", "/api/v2/x")
    assert time.monotonic() - start < 1.0  # a retry would have backed off for at least a second
    message = str(info.value)
    assert message.startswith(f"TLS verification failed for 127.0.0.1:{tls_server.port}")
    assert "ca_bundle" in message and "REQUESTS_CA_BUNDLE" in message


def test_verification_is_never_turned_off():
    import runbook_lib
    src = Path(runbook_lib.__file__).parent
    files = [*sorted((src / "http").glob("*.py")), *sorted((src / "tfe").glob("*.py")), src / "legacy.py",
             src / "jsonapi.py"]
    for path in files:
        text = path.read_text()
        assert "verify=False" not in text and "CERT_NONE" not in text, path.name
    assert make_session("https://tfe.example.com").verify is True


# -- rate limit, read-only, URLs -----------------------------------------------------------------------------------

def test_token_bucket_follows_x_ratelimit_limit():
    now = [0.0]
    slept = []
    bucket = TokenBucket(10, clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    for _ in range(10):
        bucket.acquire()
    assert slept == []  # one second's worth goes out at once
    bucket.acquire()
    assert slept == [pytest.approx(0.1)]
    bucket.observe({"X-RateLimit-Limit": "30"})
    assert bucket.rate == pytest.approx(27.0)  # 0.9 of the server's limit (10% headroom)
    bucket.observe({"X-RateLimit-Limit": "junk"})
    assert bucket.rate == pytest.approx(27.0)


def test_session_rate_limit_learns_from_responses():
    with FakeServer(lambda r: Reply(200, {}, {"X-RateLimit-Limit": "10"})) as srv:
        session = make_session(srv.url)
        start = time.monotonic()
        for _ in range(12):
            session.request("GET", "/api/v2/x")
        elapsed = time.monotonic() - start
        assert session.rate_limiter.rate == pytest.approx(9.0)
        assert elapsed >= 0.25  # ~ (12 - 9) / 9 s once the server's limit is known


def test_read_only_refuses_writes_before_sending():
    with FakeServer(ok) as srv:
        session = make_session(srv.url, read_only=True)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with pytest.raises(ReadOnlyError, match="read-only"):
                session.request(method, "/api/v2/x", json={})
        assert srv.count() == 0
        session.request("GET", "/api/v2/x")
        assert srv.count() == 1


def test_redact_url():
    assert redact_url("https://user:pw@h.example:8443/api/v2/x?token=abc#f") == "https://h.example:8443/api/v2/x"
    assert redact_url("https://h.example/_archivist/v1/object/SIGNED.TOKEN?x=1", signed=True) == \
        "https://h.example/_archivist/..."


def test_signed_url_error_is_not_chained_and_hides_the_path():
    signature, query_sig = secrets.token_hex(8), secrets.token_hex(8)  # built at run time: not in source lines
    with FakeServer(ok) as srv:
        signed_url = f"{srv.url}/_archivist/{signature}?sig={query_sig}"
        srv.then(Reply(403, "denied"))
        with pytest.raises(errors.AuthError, match="signed link") as info:
            make_session(srv.url).request("PUT", signed_url, data=b"x", auth=False, signed=True)
        said = _everything_said(info.value)
        assert signature not in said and query_sig not in said
        srv.then(Reply(drop=True))
        with pytest.raises(errors.TransportError) as info:
            make_session(srv.url).request("POST", signed_url, data=b"x", signed=True)
        assert info.value.__cause__ is None
        said = _everything_said(info.value)
        assert signature not in said and query_sig not in said
