"""The client-side rate limit: one token bucket per host, per process or (in a batch) per batch.

The rate follows the host's ``X-RateLimit-Limit`` times `RATE_LIMIT_FRACTION`; the runs lists have a budget
of their own (`RUNS_LIST_LIMIT_PER_MINUTE`, for the paths `RUNS_LIST_PATH` matches). The transport's adapter
(`runbook_lib.http.adapter`) takes the tokens: retries happen inside urllib3, below it, and take none.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Callable, Mapping

#: The share of the server's X-RateLimit-Limit the client allows itself. go-tfe uses 0.66; during a migration
#: window the runbook is the token's main user and a batch of hundreds of environments is bound by this rate,
#: so it keeps 10% headroom for the operator's own terraform runs (30/s -> 27/s) instead of a third.
RATE_LIMIT_FRACTION = 0.9
#: TFE's documented per-user limit, assumed until a response says otherwise (legacy hosts never say).
DEFAULT_RATE_LIMIT = 30.0
#: "List Runs in a Workspace" and "List Runs in an Organization" have "an adjusted rate limit of 30 requests
#: per minute" (terraform-docs-common, website/docs/cloud-docs/api-docs/run.mdx); no header announces it.
RUNS_LIST_LIMIT_PER_MINUTE = 30.0
RUNS_LIST_PATH = re.compile(r"/api/v2/(?:workspaces|organizations)/[^/]+/runs/?$")


class TokenBucket:
    """Thread-safe client-side rate limit shared by every request of one client.

    The rate follows the server's ``X-RateLimit-Limit`` (times `RATE_LIMIT_FRACTION`) as soon as a response
    carries it; the bucket holds one second's worth of requests, so short bursts go out at once.
    """

    def __init__(self, rate: float = DEFAULT_RATE_LIMIT * RATE_LIMIT_FRACTION, *,
                 clock=time.monotonic, sleep=time.sleep) -> None:
        """Args:
            rate: requests per second allowed until a server says otherwise.
            clock, sleep: injectable for tests.
        """
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.rate = float(rate)
        self._tokens = max(self.rate, 1.0)
        self._stamp = clock()

    @property
    def capacity(self) -> float:
        """Most requests that may go out at once: one second's worth, at least one."""
        return max(self.rate, 1.0)

    def acquire(self) -> float:
        """Take one token, waiting for it if the bucket is empty.

        Returns:
            The seconds waited.
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            # Reserve the token under the lock, sleep outside it: waiters queue up in order.
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adjust the rate to the ``X-RateLimit-Limit`` header of a response, if it has one.

        Args:
            headers: response headers.
        """
        value = headers.get("X-RateLimit-Limit")
        if not value:
            return
        try:
            limit = float(value)
        except ValueError:
            return  # a header we cannot read must not break the request that carried it
        if limit > 0:
            with self._lock:
                self.rate = limit * RATE_LIMIT_FRACTION
                self._tokens = min(self._tokens, self.capacity)


class FileTokenBucket(TokenBucket):
    """A `TokenBucket` whose tokens live in a small file, so several processes spend one budget.

    A batch runs its steps in several kernels (processes) at once against one host; each with a bucket
    of its own, `--jobs N` sent up to N times the host's limit and met 429s. With this bucket every
    kernel of the batch takes its tokens from `<batch>/.rate/<host>.bucket` under an exclusive `flock`
    (a few microseconds per request, far below the 30/s it meters). The stamp is `time.monotonic()`,
    which is one clock for every process of the machine. The rate a response teaches (`observe`) is
    written to the file too, so every kernel follows what any of them learned.
    """

    def __init__(self, path: str | os.PathLike[str], rate: float = DEFAULT_RATE_LIMIT * RATE_LIMIT_FRACTION, *,
                 sleep=time.sleep) -> None:
        super().__init__(rate, clock=time.monotonic, sleep=sleep)
        self.path = os.fspath(path)

    def _update(self, change: Callable[[dict[str, float]], float]) -> float:
        import fcntl
        import json

        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 4096, 0)
                try:
                    state = json.loads(raw) if raw else {}
                except ValueError:
                    state = {}  # a torn file (a process killed mid-write) starts a fresh bucket
                now = self._clock()
                rate = float(state.get("rate") or self.rate)
                tokens = float(state.get("tokens", max(rate, 1.0)))
                stamp = float(state.get("stamp", now))
                state = {"rate": rate, "tokens": min(max(rate, 1.0), tokens + max(now - stamp, 0.0) * rate),
                         "stamp": now}
                result = change(state)
                data = json.dumps(state).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)  # closing releases the flock
            self.rate = state["rate"]
        return result

    def acquire(self) -> float:
        def take(state: dict[str, float]) -> float:
            state["tokens"] -= 1.0
            return 0.0 if state["tokens"] >= 0 else -state["tokens"] / state["rate"]

        wait = self._update(take)
        if wait > 0:
            self._sleep(wait)
        return wait

    def observe(self, headers: Mapping[str, str]) -> None:
        value = headers.get("X-RateLimit-Limit")
        try:
            limit = float(value) if value else 0.0
        except ValueError:
            return  # a header we cannot read must not break the request that carried it
        if limit <= 0 or limit * RATE_LIMIT_FRACTION == self.rate:
            return

        def learn(state: dict[str, float]) -> float:
            state["rate"] = limit * RATE_LIMIT_FRACTION
            state["tokens"] = min(state["tokens"], max(state["rate"], 1.0))
            return 0.0

        self._update(learn)


#: Names a folder in which every process of one batch shares one rate budget per host (`FileTokenBucket`);
#: the batch sets it in its kernels' environment. Unset (JupyterLab, tests), each process has its own.
RATE_BUDGET_DIR_VAR = "TFE_RUNBOOK_RATE_BUDGET_DIR"

_SHARED_BUCKETS: dict[tuple[str, str, str], TokenBucket] = {}
_SHARED_LOCK = threading.Lock()


def shared_bucket(host: str, kind: str = "api") -> TokenBucket:
    """The one token bucket of every client that talks to `host` (``host[:port]``): per process, or per batch.

    The host enforces its limit per token, not per client object: a step's legacy and TFE clients on
    one host (the sandbox; a proxy in front of both), or the clients of consecutive steps run in one
    process, each with a full bucket of their own, together sent up to twice the allowed rate and were
    answered 429 (each costing the server's Retry-After, a whole second). Sharing errs on the safe side
    when two tokens talk to one host: they then stay within one token's allowance together. In a batch
    (`RATE_BUDGET_DIR_VAR` set) the bucket is a `FileTokenBucket` in that folder, shared by its kernels.

    Args:
        host: ``host[:port]``.
        kind: "api" (every request) or "runs-list" (the runs lists' own 30/min, `RUNS_LIST_LIMIT_PER_MINUTE`,
            taken in addition; it never follows `X-RateLimit-Limit`).
    """
    folder = os.environ.get(RATE_BUDGET_DIR_VAR, "")
    rate = (DEFAULT_RATE_LIMIT if kind == "api" else RUNS_LIST_LIMIT_PER_MINUTE / 60.0) * RATE_LIMIT_FRACTION
    with _SHARED_LOCK:
        bucket = _SHARED_BUCKETS.get((folder, host, kind))
        if bucket is None:
            if folder:
                name = (re.sub(r"[^A-Za-z0-9.-]", "_", host) or "host") + ("" if kind == "api" else f".{kind}")
                bucket = FileTokenBucket(os.path.join(folder, f"{name}.bucket"), rate)
            else:
                bucket = TokenBucket(rate)
            bucket = _SHARED_BUCKETS[(folder, host, kind)] = bucket
        return bucket
