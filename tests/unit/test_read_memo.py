"""Reads reused within a step (`runbook_lib.http.ReadMemo`): what is reused, for how long, and what ends it.

Against the real local server of the transport tests: every request the session sends is counted by
the server, so "reused" means "the server saw one request", not a mock's call count.
"""

from __future__ import annotations

import pytest

from runbook_lib.context import StepContext
from runbook_lib.http import ReadMemo
from test_clients_fake_server import FakeServer, Reply
from test_http import make_session


def counting_app(req):
    if req.path.endswith("/missing"):
        return Reply(404, {"errors": [{"status": "404", "title": "not found"}]})
    return Reply(200, {"data": {"id": req.path.rsplit("/", 1)[-1], "type": "things"}})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def memo_session(url: str, clock: Clock | None = None, max_age: float = 60.0):
    session = make_session(url)
    session.memo = ReadMemo(max_age, clock=clock or Clock())
    return session


def gets(srv: FakeServer, path: str) -> int:
    return sum(1 for r in srv.received if r.method == "GET" and r.path == path)


def test_a_lookup_is_answered_once_then_from_the_memo():
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        first = session.request("GET", "/api/v2/things/a", reuse=True)
        again = session.request("GET", "/api/v2/things/a", reuse=True)
        assert again.json() == first.json()
        assert gets(srv, "/api/v2/things/a") == 1 and session.memo.hits == 1 and session.request_count == 1


def test_reads_not_marked_as_lookups_always_go_to_the_server():
    # Polls (runs, plans) are never marked: a memo must never make a wait loop see the past.
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        for _ in range(3):
            session.request("GET", "/api/v2/runs/run-1")
        assert gets(srv, "/api/v2/runs/run-1") == 3


def test_different_query_parameters_are_different_lookups():
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        session.request("GET", "/api/v2/things/a", params={"include": "x"}, reuse=True)
        session.request("GET", "/api/v2/things/a", reuse=True)
        session.request("GET", "/api/v2/things/a", params={"include": "x"}, reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2


def test_an_answer_older_than_max_age_is_read_again():
    clock = Clock()
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url, clock, max_age=60)
        session.request("GET", "/api/v2/things/a", reuse=True)
        clock.now += 59
        session.request("GET", "/api/v2/things/a", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 1
        clock.now += 2  # 61 s after the first answer
        session.request("GET", "/api/v2/things/a", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_any_write_forgets_every_answer(method):
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        session.request("GET", "/api/v2/things/a", reuse=True)
        session.request("GET", "/api/v2/things/b", reuse=True)
        session.request(method, "/api/v2/other/c", data="{}")
        session.request("GET", "/api/v2/things/a", reuse=True)
        session.request("GET", "/api/v2/things/b", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2 and gets(srv, "/api/v2/things/b") == 2


def test_a_write_that_fails_forgets_too():
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        session.request("GET", "/api/v2/things/a", reuse=True)
        srv.then(Reply(422, {"errors": [{"status": "422", "title": "invalid"}]}))
        with pytest.raises(Exception):
            session.request("POST", "/api/v2/things", data="{}")
        session.request("GET", "/api/v2/things/a", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2


def test_fresh_reads_now_and_replaces_the_kept_answer():
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        session.request("GET", "/api/v2/things/a", reuse=True)
        session.request("GET", "/api/v2/things/a", reuse=True, fresh=True)
        session.request("GET", "/api/v2/things/a", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2 and session.memo.hits == 1


def test_a_404_the_caller_accepts_is_reused_but_never_turned_into_a_success():
    with FakeServer(counting_app) as srv:
        session = memo_session(srv.url)
        assert session.request("GET", "/api/v2/things/missing", ok=(404,), reuse=True).status_code == 404
        assert session.request("GET", "/api/v2/things/missing", ok=(404,), reuse=True).status_code == 404
        assert gets(srv, "/api/v2/things/missing") == 1
        # A caller that does not accept 404 gets the error, as from the server, never the kept 404 as an answer.
        from runbook_lib.errors import NotFoundError

        with pytest.raises(NotFoundError):
            session.request("GET", "/api/v2/things/missing", reuse=True)


def test_a_session_without_a_memo_reads_every_time():
    with FakeServer(counting_app) as srv:
        session = make_session(srv.url)
        session.request("GET", "/api/v2/things/a", reuse=True)
        session.request("GET", "/api/v2/things/a", reuse=True)
        assert gets(srv, "/api/v2/things/a") == 2


def _ctx(tmp_path, interactive: bool) -> StepContext:
    return StepContext.create(step="02_create_workspaces", legacy_org="acme-legacy", legacy_env="web", new_org="acme",
                              audit_root=str(tmp_path), interactive=interactive,
                              legacy_address="http://127.0.0.1:9", tfe_address="http://127.0.0.1:9")


def test_only_a_batch_reuses_reads(tmp_path):
    # In JupyterLab the operator may change something by hand between two cells: every cell reads afresh.
    interactive, batch = _ctx(tmp_path / "i", True), _ctx(tmp_path / "b", False)
    assert interactive.tfe.session.memo is None and interactive.legacy.session.memo is None
    assert isinstance(batch.tfe.session.memo, ReadMemo) and isinstance(batch.legacy.session.memo, ReadMemo)
    assert batch.tfe.session.memo is not batch.legacy.session.memo


def test_forget_reads_clears_the_named_hosts(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, False)
    for client in (ctx.legacy, ctx.tfe):
        client.session.memo.put(("k",), object())
    ctx.forget_reads("tfe")
    assert len(ctx.tfe.session.memo) == 0 and len(ctx.legacy.session.memo) == 1
    ctx.forget_reads()
    assert len(ctx.legacy.session.memo) == 0
