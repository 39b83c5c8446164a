"""How hard the transport tries before an error reaches the caller: urllib3's `Retry`, told about TFE's
rate-limit headers, and `create_or_adopt`, which resolves a create whose outcome is unknown by reading back.

* GET, HEAD, OPTIONS, PUT and DELETE are retried on 429, 500, 502, 503, 504, on connection failures and on
  connections dropped after sending. PUT is included because every PUT the runbook sends is idempotent: a
  legacy state PUT of identical bytes, a hosted state/configuration upload to a signed URL.
* POST and PATCH are retried only where the server provably did not act: a connection that could not be
  opened (nothing was sent), and 429 (the rate limiter refuses before the request is handled). A 5xx or a
  dropped connection after a POST is *not* retried; the clients resolve it by reading back and adopting
  what exists (`create_or_adopt`).
* TLS and other non-transient errors are never retried.
* A refused connection is not retried on a host that has not answered this process yet: nothing listens at
  that address (a wrong port), and twenty seconds of retries would only hide it. Once a host has answered,
  a refused connection is passing trouble (the host restarting) and is retried as any connection failure.
* Nothing is retried, and no wait between retries reaches, past the request's deadline
  (`runbook_lib.http.deadline`).
* Waits: ``Retry-After`` when present (seconds, decimals accepted, or an HTTP date); otherwise on 429
  ``X-RateLimit-Reset`` seconds (TFE's header, a float) plus jitter; otherwise exponential backoff with
  jitter, capped.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from runbook_lib.errors import ServerError, TransportError
from runbook_lib.http.deadline import RequestDeadlineExceeded, current
from runbook_lib.http.urls import origin

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# 500 is retried too, for idempotent methods only: a read or a same-bytes PUT cannot do harm twice, and
# load balancers in front of TFE answer 500 for passing trouble as well.
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the transport tries before an error reaches the caller.

    Attributes:
        total: most retries of one request, all causes together.
        connect: retries after a connection could not be opened.
        read: retries after a connection dropped or timed out once the request was sent (idempotent only).
        status: retries after 429/502/503/504 answers.
        backoff_factor: first backoff step in seconds; doubles per consecutive failure.
        backoff_max: cap of one backoff wait, in seconds.
        backoff_jitter: up to this many random seconds added to every wait, so parallel batches spread out.
        retry_after_max: cap of a server-requested wait (Retry-After / X-RateLimit-Reset), in seconds.
    """

    total: int = 10
    connect: int = 4
    read: int = 4
    status: int = 8
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.5
    retry_after_max: int = 120

    def build(self) -> "RateLimitAwareRetry":
        """Return the urllib3 `Retry` that implements this policy.

        Returns:
            A `RateLimitAwareRetry` for an `HTTPAdapter`.
        """
        return RateLimitAwareRetry(
            total=self.total, connect=self.connect, read=self.read, status=self.status,
            # TLS failures and other odd errors are not transient: fail at once with the fix in the message.
            other=0,
            redirect=False,  # requests follows redirects itself
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_factor, backoff_max=self.backoff_max,
            backoff_jitter=self.backoff_jitter, retry_after_max=self.retry_after_max,
            respect_retry_after_header=True,
            # The final error answer reaches error_from_response, which keeps the API's error objects.
            raise_on_status=False,
        )


#: Origins (scheme, host, port) that have answered this process at least once (`note_answered`).
_ANSWERED: set[tuple[str, str, int | None]] = set()


def note_answered(url: str) -> None:
    """Remember that the host of `url` answered (any HTTP answer, error statuses included)."""
    _ANSWERED.add(origin(url))


def has_answered(scheme: str, host: str, port: int | None) -> bool:
    """Whether the origin has answered this process before."""
    scheme = scheme.lower()
    return (scheme, host.lower().strip("[]"), port or {"https": 443, "http": 80}.get(scheme)) in _ANSWERED


def refused(error: BaseException | None) -> bool:
    """Whether `error` (urllib3's, or a requests exception around it) is a refused connection."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConnectionRefusedError):
            return True
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        error = inner if isinstance(inner, BaseException) else (error.__cause__ or error.__context__)
    return False


class RateLimitAwareRetry(Retry):
    """urllib3 `Retry` that also waits out TFE's ``X-RateLimit-Reset``, retries any method on 429, fails fast on
    a refused connection to a host that never answered, and keeps within the request's deadline.

    Only these rules differ from urllib3; counting, backoff and exhaustion are urllib3's.
    """

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> "Retry":
        deadline = current()
        if deadline is not None and deadline.expired:
            raise MaxRetryError(_pool, url or "", RequestDeadlineExceeded("the request deadline passed")) from error
        if (isinstance(error, NewConnectionError) and refused(error) and _pool is not None
                and not has_answered(_pool.scheme, _pool.host, _pool.port)):
            raise MaxRetryError(_pool, url or "", error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        deadline = current()
        if deadline is None:
            return super().sleep(response)
        wait = self.get_retry_after(response) if response is not None and self.respect_retry_after_header else None
        if wait is None:
            wait = self.get_backoff_time()
        if wait >= deadline.remaining():
            # Waiting would end past the deadline: give up now rather than sleep into certain failure.
            deadline.abandoned = True
            raise MaxRetryError(None, "", RequestDeadlineExceeded("the request deadline would pass while waiting"))
        if wait > 0:
            time.sleep(wait)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        # A 429 comes from the rate limiter in front of the API: the request was refused before it was
        # handled, so even a POST can be sent again without risking a duplicate.
        if status_code == 429 and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        # RFC 9110 says integer seconds, but fractional values occur (and keep tests fast); accept both.
        if re.match(r"^\s*[0-9]+(\.[0-9]+)?\s*$", retry_after):
            return min(max(float(retry_after), 0.0), float(self.retry_after_max))
        return super().parse_retry_after(retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        retry_after = super().get_retry_after(response)
        if retry_after is not None:
            return retry_after
        reset = response.headers.get("X-RateLimit-Reset")
        if response.status == 429 and reset:
            try:
                seconds = float(reset)
            except ValueError:
                return None  # unreadable header: fall back to exponential backoff
            # Jitter so that parallel batch workers do not all come back in the same instant (as go-tfe).
            seconds = max(seconds, 0.0) + random.random() * self.backoff_jitter
            return min(seconds, float(self.retry_after_max))
        return None

    def sleep_for_retry(self, response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is None:
            return False
        if retry_after > 0:
            time.sleep(retry_after)
        return True


def create_or_adopt(create: Callable[[], T], read_back: Callable[[], T | None], *, attempts: int = 3) -> T:
    """Send a create (a POST, never retried by the transport) and resolve an ambiguous outcome by reading back.

    A 5xx answer or a connection lost after sending leaves it unknown whether the server created the
    object. Instead of sending the POST again blindly, read back: if the object exists it is adopted
    (its ``adopted`` attribute, where it has one, is set to True). If it does not, the server provably did
    not act, so the create is sent again, up to ``attempts`` times in all; then the last error is raised
    and nothing was created.

    Args:
        create: sends the POST and returns the created object.
        read_back: returns the object if it exists now, else None.
        attempts: how many times the create may be sent, each after a read-back proved it absent.

    Returns:
        What ``create`` returned, or the adopted object.

    Raises:
        ServerError, TransportError: every attempt was ambiguous and the object does not exist.
        ApiError: any other answer of ``create`` or ``read_back``.
    """
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return create()
        except (ServerError, TransportError) as ambiguous:
            existing = read_back()
            if existing is not None:
                if hasattr(existing, "adopted"):
                    existing.adopted = True
                return existing
            if attempt >= attempts:
                raise ambiguous
            time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # the loop returns or raises
