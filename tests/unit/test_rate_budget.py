"""One rate budget per host for every process of a batch (`runbook_lib.http.FileTokenBucket`)."""

from __future__ import annotations

import multiprocessing
import time

from runbook_lib import http
from runbook_lib.http import RATE_BUDGET_DIR_VAR, FileTokenBucket, TokenBucket, shared_bucket


def _spend(path: str, count: int, rate: float) -> None:
    bucket = FileTokenBucket(path, rate)
    for _ in range(count):
        bucket.acquire()


def test_two_processes_spend_one_budget(tmp_path):
    path = str(tmp_path / "host.bucket")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_spend, args=(path, 20, 20.0)) for _ in range(2)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    # 40 tokens at 20/s with a burst of 20: at least a second. Two buckets of their own would need none.
    assert time.monotonic() - started >= 0.95


def test_a_second_bucket_on_the_file_sees_the_tokens_taken(tmp_path):
    slept: list[float] = []
    first = FileTokenBucket(tmp_path / "h.bucket", 10.0, sleep=slept.append)
    second = FileTokenBucket(tmp_path / "h.bucket", 10.0, sleep=slept.append)
    for _ in range(10):
        assert first.acquire() == 0.0
    assert second.acquire() > 0.05  # the burst was spent by the other bucket
    assert slept and slept[-1] > 0.05


def test_a_learned_limit_reaches_every_bucket_on_the_file(tmp_path):
    first = FileTokenBucket(tmp_path / "h.bucket", 27.0, sleep=lambda s: None)
    second = FileTokenBucket(tmp_path / "h.bucket", 27.0, sleep=lambda s: None)
    first.observe({"X-RateLimit-Limit": "10"})
    second.acquire()
    assert second.rate == 10 * http.RATE_LIMIT_FRACTION
    first.observe({"X-RateLimit-Limit": "not a number"})  # ignored, as by the in-process bucket
    assert first.rate == 10 * http.RATE_LIMIT_FRACTION


def test_a_torn_file_starts_a_fresh_bucket(tmp_path):
    (tmp_path / "h.bucket").write_text('{"rate": 27, "tok')
    assert FileTokenBucket(tmp_path / "h.bucket", 27.0).acquire() == 0.0


def test_shared_bucket_is_per_batch_folder_when_the_batch_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv(RATE_BUDGET_DIR_VAR, raising=False)
    plain = shared_bucket("example.test:1")
    assert type(plain) is TokenBucket
    monkeypatch.setenv(RATE_BUDGET_DIR_VAR, str(tmp_path))
    batch = shared_bucket("example.test:1")
    assert isinstance(batch, FileTokenBucket) and batch is shared_bucket("example.test:1")
    batch.acquire()
    assert (tmp_path / "example.test_1.bucket").is_file()


def test_runs_lists_keep_their_own_30_per_minute(monkeypatch):
    from test_clients_fake_server import FakeServer, Reply
    from test_http import make_session

    monkeypatch.delenv(RATE_BUDGET_DIR_VAR, raising=False)
    now, slept = [0.0], []
    runs_list = TokenBucket(http.RUNS_LIST_LIMIT_PER_MINUTE / 60 * http.RATE_LIMIT_FRACTION, clock=lambda: now[0],
                            sleep=slept.append)
    with FakeServer(lambda req: Reply(200, {"data": []})) as srv:
        session = make_session(srv.url)
        session._session.get_adapter(srv.url).runs_list = runs_list
        for path in ("/api/v2/workspaces/ws-1/runs", "/api/v2/runs/run-1", "/api/v2/workspaces/ws-1",
                     "/api/v2/organizations/acme/runs", "/api/v2/workspaces/ws-1/runs"):
            session.request("GET", path)
    # Three list calls: the first from the burst of one, the next two each a token's wait (60/27 s apart).
    assert len(slept) == 2 and all(abs(s - 60 / 27 * (i + 1)) < 0.01 for i, s in enumerate(slept))
