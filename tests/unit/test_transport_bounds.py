"""The transport's bounds against hosts that misbehave on real sockets: the parser that connects judges a
redirect, every request has a wall-clock deadline, answers have a size cap, listings stop, a signed link
goes only where it may, and a wrong port or scheme is named."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
import trustme

from hostile_hosts import RawHost, answer, chunked_json, raw_host, trickle
from runbook_lib import errors
from runbook_lib.http import AnswerTooLargeError, ApiSession, MalformedAnswerError, RedirectError, RetryPolicy
from runbook_lib.http.urls import location_problem, origin, prepared_url, signed_link_problem
from runbook_lib.legacy import LegacyClient
from runbook_lib.paging import PaginationError
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient
from test_clients_fake_server import TOKEN, FakeServer, Reply

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, retry_after_max=2)


def settings(url: str, **bounds) -> Settings:
    return Settings(tfe_address=url, legacy_address=url, environ={"TFE_TOKEN": TOKEN, "ATLAS_TOKEN": TOKEN},
                    connect_timeout=2, read_timeout=bounds.pop("read_timeout", 3), **bounds)


def session(url: str, which: str = "tfe", policy: RetryPolicy = FAST, **bounds) -> ApiSession:
    header, prefix = ("Authorization", "Bearer ") if which == "tfe" else ("X-Atlas-Token", "")
    return ApiSession(settings(url, **bounds), which, auth_header=header, auth_prefix=prefix, retry=policy,
                      default_headers={"Accept": "application/vnd.api+json"})


# -- redirects: the parser that connects -----------------------------------------------------------------------

def test_the_origin_is_the_one_urllib3_connects_to():
    tricky = "http://127.0.0.2:8001\\@127.0.0.1:8002/api/v2/x"
    assert origin(prepared_url(tricky)) == ("http", "127.0.0.2", 8001)  # urlsplit would say 127.0.0.1:8002
    assert origin("HTTPS://Example.COM/x") == ("https", "example.com", 443)


@pytest.mark.parametrize("location, words", [
    ("http://127.0.0.2:1\\@127.0.0.1:2/x", "backslash"),
    ("http://user:pw@127.0.0.1:2/x", "user info"),
    ("//evil@127.0.0.1/x", "user info"),
    ("/api/v2/x\tmore", "control character"),
    ("/api/v2/x\x00", "control character"),
    ("/api/v2/with space", "space"),
])
def test_a_location_with_userinfo_backslash_or_controls_is_refused(location, words):
    assert words in location_problem(location)


def test_plain_locations_pass():
    for location in ("/api/v2/moved", "https://h.example/x?y=1#f", "moved", "https://h.example/a@b"):
        assert location_problem(location) is None, location


def test_a_backslash_redirect_reaches_neither_host():
    other = RawHost(answer(200, {}), host="127.0.0.2")
    with other, FakeServer() as api:
        api.then(Reply(307, headers={"Location": f"http://127.0.0.2:{other.port}\\@127.0.0.1:{api.port}/api/v2/x"}))
        with pytest.raises(RedirectError, match="backslash.*no token or body was sent anywhere: set TFE_ADDRESS"):
            session(api.url).request("POST", "/api/v2/vars", json={"value": "s3cret"})
        assert other.received == [] and len(api.received) == 1


# -- the signed link's policy ------------------------------------------------------------------------------------

def _resolver(table: dict[str, list[str]]):
    return lambda name: table[name]


@pytest.mark.parametrize("target, api, problem", [
    ("https://archivist.example/x", "https://tfe.example", None),                  # HCP: another public host
    ("http://archivist.example/x", "https://tfe.example", "plain http"),
    ("https://tfe.example:8443/x", "https://tfe.example", None),                    # the API host itself
    ("http://127.0.0.1:5/x", "http://127.0.0.1:4", None),                            # the sandbox: its own host
    ("https://internal.example/x", "https://tfe.example", "internal address"),     # resolves to 10.0.0.5
    ("https://127.0.0.2/x", "https://tfe.example", "internal address"),
    ("https://169.254.169.254/latest", "https://tfe.example", "internal address"),  # cloud metadata
    ("https://[::1]/x", "https://tfe.example", "internal address"),
    ("https://[::ffff:10.0.0.1]/x", "https://tfe.example", "internal address"),
    ("https://10.0.0.9/x", "https://tfe.internal", None),                            # a TFE inside a private network
    ("http://127.0.0.2:9/x", "http://127.0.0.1:4", "plain http"),
])
def test_the_signed_link_goes_only_where_it_may(target, api, problem):
    names = {"archivist.example": ["140.82.112.3"], "tfe.example": ["140.82.112.4"],
             "internal.example": ["10.0.0.5"], "tfe.internal": ["10.0.0.8"]}
    found = signed_link_problem(target, api, resolve=_resolver(names))
    assert (found is None) if problem is None else (problem in found), found


def test_the_plan_json_link_to_another_loopback_host_over_http_is_not_followed():
    store = RawHost(answer(200, {"plan": 1}, {"Content-Type": "application/json"}), host="127.0.0.2")
    with store, FakeServer() as api:
        api.then(Reply(307, headers={"Location": f"{store.url}/v1/object/SIGNED"}))
        with pytest.raises(RedirectError, match="plain http to another host"):
            TfeClient(settings(api.url), retry=FAST).plan_json("plan-1")
        assert store.received == []


# -- the deadline ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_head", [False, True], ids=["trickled body", "trickled status line"])
def test_a_trickling_host_is_cut_at_the_deadline(in_head):
    with RawHost(trickle(0.2, in_head=in_head)) as host:
        started = time.monotonic()
        with pytest.raises(errors.TransportError, match=r"did not finish within 1.5s .*TFE_RUNBOOK_REQUEST_DEADLINE"):
            session(host.url, request_deadline=1.5, read_timeout=1).request("GET", "/api/v2/ping")
        took = time.monotonic() - started
    assert 1.4 < took < 2.5, took  # a 1 s read timeout alone never fires against a byte every 0.2 s
    assert len(host.received) == 1  # not retried past the deadline


def test_retries_do_not_wait_past_the_deadline():
    with FakeServer(lambda r: Reply(503, {}, {"Retry-After": "2"})) as srv:
        started = time.monotonic()
        with pytest.raises(errors.TransportError, match="did not finish within 1s"):
            session(srv.url, request_deadline=1, policy=RetryPolicy(retry_after_max=5)).request("GET", "/api/v2/x")
        assert time.monotonic() - started < 0.8  # gave up instead of sleeping 2 s into certain failure
        assert srv.count() == 1


def test_a_quick_answer_is_untouched_by_the_deadline():
    with FakeServer(lambda r: Reply(200, {"data": []})) as srv:
        s = session(srv.url, request_deadline=0.5)
        for _ in range(3):
            assert s.request("GET", "/api/v2/x").json() == {"data": []}
        time.sleep(0.7)  # the deadlines of the requests above have passed: nothing fires later
        assert s.request("GET", "/api/v2/x").json() == {"data": []}


# -- the size cap ------------------------------------------------------------------------------------------------

def test_an_endless_answer_is_cut_at_the_cap_and_memory_stays_bounded():
    with raw_host(chunked_json) as host:
        with pytest.raises(AnswerTooLargeError, match=r"GET /api/v2/organizations on 127.0.0.1:\d+ answered 200 "
                                                      r"going on past it, over the cap of 2 MiB; .*raise "
                                                      r"TFE_RUNBOOK_MAX_ANSWER_MB"):
            session(host.url, max_answer_bytes=2 * 1024 * 1024).request("GET", "/api/v2/organizations")
        time.sleep(0.2)
        assert host.sent < 8 * 1024 * 1024  # read up to the cap (and the socket's buffers), then hung up


def test_a_declared_length_over_the_cap_is_refused_before_reading():
    with FakeServer(lambda r: Reply(200, b"x" * 5000)) as srv:
        with pytest.raises(AnswerTooLargeError, match="answered 200 declaring 5000 bytes, over the cap of 4096 bytes"):
            session(srv.url, max_answer_bytes=4096).request("GET", "/api/v2/x")


def test_downloads_have_their_own_cap():
    with FakeServer(lambda r: Reply(200, b"x" * 5000)) as srv:
        s = session(srv.url, max_answer_bytes=4096, max_download_bytes=8192)
        assert len(s.request("GET", "/state", headers={"Accept": "*/*"}).content) == 5000
        with pytest.raises(AnswerTooLargeError, match="TFE_RUNBOOK_MAX_DOWNLOAD_MB"):
            session(srv.url, max_download_bytes=4096).request("GET", "/state", headers={"Accept": "*/*"})


def test_an_answer_that_is_not_json_is_one_sentence():
    with FakeServer(lambda r: Reply(200, "<html>portal login</html>", {"Content-Type": "text/html"})) as srv:
        with pytest.raises(MalformedAnswerError, match=r"GET /api/v2/organizations/acme on 127.0.0.1:\d+ answered "
                                                       r"200 with 25 bytes that are not JSON.*TFE_ADDRESS"):
            TfeClient(settings(srv.url), retry=FAST).get_organization("acme")


# -- pagination -------------------------------------------------------------------------------------------------

def _tfe_pages(same_items: bool, advance: bool = True):
    def app(req):
        number = int(req.query["page[number]"][0])
        ident = "ws-1" if same_items else f"ws-{number}"
        following = number + 1 if advance else number
        return Reply(200, {"data": [{"id": ident, "type": "workspaces", "attributes": {"name": ident}}],
                           "meta": {"pagination": {"current-page": number, "next-page": following}}})
    return app


@pytest.mark.parametrize("same_items, advance, words, pages", [
    (True, True, "listed the same item", 2),
    (False, False, "the page number did not advance", 1),
    (False, True, "after 7 pages", 7),
])
def test_a_tfe_listing_that_never_ends_is_stopped_naming_the_host(same_items, advance, words, pages):
    with FakeServer(_tfe_pages(same_items, advance)) as srv:
        tfe = TfeClient(settings(srv.url, max_pages=7), retry=FAST)
        with pytest.raises(PaginationError, match=f"127.0.0.1:{srv.port} .*{words}") as caught:
            list(tfe.list_workspaces("acme"))
        assert srv.count() == pages
        assert "\n" not in str(caught.value)


def test_a_last_page_pointing_at_itself_is_harmless_when_every_item_was_read():
    def app(req):
        return Reply(200, {"data": [{"id": "ws-1", "type": "workspaces", "attributes": {"name": "a"}}],
                           "meta": {"pagination": {"current-page": 1, "next-page": 1, "total-count": 1}}})
    with FakeServer(app) as srv:
        assert [w.id for w in TfeClient(settings(srv.url), retry=FAST).list_workspaces("acme")] == ["ws-1"]


@pytest.mark.parametrize("same", [True, False], ids=["the same page again", "new entries forever"])
def test_the_legacy_states_list_stops_too(same):
    def app(req):
        page = int(req.query["page"][0])
        states = [{"updated_at": "2018-01-01", "environment": {"username": "acme-legacy",
                                                                 "name": f"env-{0 if same else page}-{i}"}}
                  for i in range(20)]
        return Reply(200, {"states": states}, {"Content-Type": "application/json"})
    with FakeServer(app) as srv:
        legacy = LegacyClient(settings(srv.url, max_pages=5), retry=FAST)
        with pytest.raises(PaginationError, match=f"127.0.0.1:{srv.port} .*states of acme-legacy"):
            list(legacy.list_states("acme-legacy"))
        assert srv.count() == (2 if same else 5)


# -- a wrong port, a wrong scheme ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_wrong_port_fails_fast_naming_the_variable():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(errors.TransportError, match=r"refused.*the port in ATLAS_ADDRESS may be wrong"):
        session(f"http://127.0.0.1:{port}", "legacy", policy=RetryPolicy()).request("GET", "/api/v1/x")
    assert time.monotonic() - started < 1.0  # the default policy retried a refused connection for ~8 s


def test_a_refused_connection_to_a_host_that_answered_before_is_retried():
    with FakeServer(lambda r: Reply(200, {})) as srv:
        url, port = srv.url, srv.port
        s = session(url, policy=RetryPolicy(connect=3, backoff_factor=0.2, backoff_jitter=0))
        s.request("GET", "/api/v2/ping")
        s.close()  # the kept-alive connection would outlive the server
    started = time.monotonic()
    with pytest.raises(errors.TransportError, match=f"127.0.0.1:{port}.*refused"):
        s.request("GET", "/api/v2/ping")  # the host restarting: retried, 0.2 + 0.4 + 0.8 s of backoff
    assert time.monotonic() - started > 1.0


@pytest.fixture(scope="module")
def tls_context():
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_plain_http_against_an_https_host_says_the_scheme_may_be_wrong(tls_context):
    with FakeServer(lambda r: Reply(200, {}), tls=tls_context) as srv:
        with pytest.raises(errors.TransportError, match=r"closed the connection without an HTTP answer; if it serves "
                                                        r"HTTPS, the scheme may be wrong: set TFE_ADDRESS to https://"):
            session(f"http://127.0.0.1:{srv.port}").request("GET", "/api/v2/ping")


def test_https_against_a_plain_http_host_says_the_scheme_may_be_wrong():
    with FakeServer(lambda r: Reply(200, {})) as srv:
        with pytest.raises(errors.TransportError, match=r"does not speak TLS on that port, so the scheme may be wrong: "
                                                        r"set TFE_ADDRESS to http://"):
            session(f"https://127.0.0.1:{srv.port}").request("GET", "/api/v2/ping")


def test_nginx_answering_plain_http_on_its_tls_port_names_the_scheme():
    page = "<html><center><h1>400 Bad Request</h1></center><center>The plain HTTP request was sent to HTTPS port"
    with FakeServer(lambda r: Reply(400, page + "</center></html>", {"Content-Type": "text/html"})) as srv:
        with pytest.raises(errors.ValidationError, match=r"the scheme is wrong: set TFE_ADDRESS to https://127"):
            session(srv.url).request("GET", "/api/v2/ping")
