"""A wall-clock deadline for every request: retries, redirects and the whole body included.

The socket timeouts (``connect_timeout``, ``read_timeout``) bound one wait each; a host that trickles a byte
a second never lets one expire, and kept a ping open for 39 s with a 3 s read timeout. So each request runs
under a `Deadline`: when it passes, one watchdog thread per process shuts down the socket of every
connection the request is using (the blocked read returns at once); and the retries respect it (no retry,
and no wait between retries, reaches past it). `ApiSession.request` opens it; the connection classes here
register their sockets with the deadline of the thread that uses them; `RetryPolicy`'s retry consults
`current()`.
"""

from __future__ import annotations

import heapq
import os
import socket
import threading
import time
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_LOCAL = threading.local()


class RequestDeadlineExceeded(OSError):
    """Raised inside the transport when a request's deadline has passed (the session turns it into a
    `runbook_lib.errors.TransportError` naming the deadline)."""


class Deadline:
    """The wall-clock bound of one request, and the watchdog that enforces it.

    Use as a context manager around everything one request does; it is the current deadline of its thread
    (`current`) while open.

    Attributes:
        seconds: the bound.
        fired: the watchdog cut the request's connections.
        abandoned: the retries gave up early, because their next wait would have ended past the bound.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self.abandoned = False
        self.closed = False
        self._scheduled = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._outer: Deadline | None = None

    def remaining(self) -> float:
        """Seconds left (negative once past)."""
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.fired or self.abandoned or self.remaining() <= 0

    def check(self) -> None:
        """Raise `RequestDeadlineExceeded` once the deadline has passed."""
        if self.expired:
            raise RequestDeadlineExceeded(f"the request deadline of {self.seconds:g}s passed")

    def watch(self, connection: Any) -> None:
        """Cut `connection` when the deadline fires (at once if it has fired already)."""
        with self._lock:
            if connection not in self._connections:
                self._connections.append(connection)
            first = not self._scheduled
            self._scheduled = True
        if first:
            _WATCHDOG.schedule(self)
        if self.fired:
            _cut(connection)

    def fire(self) -> None:
        """Cut every watched connection now (the watchdog calls this at the deadline)."""
        with self._lock:
            if self.closed:
                return
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)

    def __enter__(self) -> "Deadline":
        self._outer = getattr(_LOCAL, "deadline", None)
        _LOCAL.deadline = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _LOCAL.deadline = self._outer
        with self._lock:
            self.closed = True
            self._connections.clear()


class _Watchdog:
    """One thread per process that fires deadlines when they pass (not a timer thread per request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._thread: threading.Thread | None = None

    def schedule(self, deadline: Deadline) -> None:
        with self._cond:
            sooner = not self._heap or deadline.at < self._heap[0][0]
            heapq.heappush(self._heap, (deadline.at, id(deadline), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tfe-runbook-deadlines", daemon=True)
                self._thread.start()
            elif sooner:
                self._cond.notify()  # the watchdog sleeps until the earliest deadline: wake it only for a sooner one

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].closed:
                    heapq.heappop(self._heap)  # finished in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.fire()


_WATCHDOG = _Watchdog()


def _new_watchdog_after_fork() -> None:
    # A forked child (a batch's worker) has none of the parent's threads, and may have inherited the
    # watchdog's lock held: it starts with a watchdog of its own.
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


def current() -> Deadline | None:
    """The deadline of the request this thread is sending, or None outside one."""
    return getattr(_LOCAL, "deadline", None)


def _cut(connection: Any) -> None:
    """Shut a connection's socket down, so a read blocked on it returns now.

    ``socket.socket.shutdown`` itself, not a TLS socket's override, which would also drop its TLS object
    under the reading thread's feet; the reader then sees an end of stream and the connection is discarded.
    """
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watched:
    """Registers the connection with the current thread's deadline before it connects or sends."""

    def connect(self) -> None:
        deadline = current()
        if deadline is not None:
            deadline.check()
            deadline.watch(self)
        super().connect()  # type: ignore[misc]
        if deadline is not None and deadline.fired:
            _cut(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current()
        if deadline is not None:
            deadline.check()
            deadline.watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    """urllib3's HTTP connection under the request's deadline."""


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    """urllib3's HTTPS connection under the request's deadline."""


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


#: The pool classes an adapter's pool managers use (``PoolManager.pool_classes_by_scheme``).
POOL_CLASSES = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
