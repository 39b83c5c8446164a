"""The one HTTP transport both API clients use.

Each client owns one `ApiSession`: one `requests.Session` whose adapter carries a urllib3 `Retry`, a
client-side token bucket, the configured timeouts and TLS verification (never turned off; a private CA
comes from the ``ca_bundle`` setting). Every error answer is turned into a `runbook_lib.errors.ApiError`
subclass by exactly one function, `error_from_response`; every transport failure by
`error_from_exception`. Neither ever sees a header, so no exception can carry a token.

Retry policy (see `RetryPolicy`):

* GET, HEAD, OPTIONS, PUT and DELETE are retried on 429, 502, 503, 504, on connection failures and on
  connections dropped after sending. PUT is included because every PUT the runbook sends is idempotent: a
  legacy state PUT of identical bytes, a hosted state/configuration upload to a signed URL.
* POST and PATCH are retried only where the server provably did not act: a connection that could not be
  opened (nothing was sent), and 429 (the rate limiter refuses before the request is handled). A 5xx or a
  dropped connection after a POST is *not* retried; the clients resolve it by reading back and adopting
  what exists (see `tfe.TfeClient.create_workspace`).
* TLS and other non-transient errors are never retried.
* Waits: ``Retry-After`` when present (seconds, decimals accepted, or an HTTP date); otherwise on 429
  ``X-RateLimit-Reset`` seconds (TFE's header, a float) plus jitter; otherwise exponential backoff with
  jitter, capped.

Redirects (see `ApiSession.request`): requests is never left to follow a redirect itself (it keeps custom
headers such as ``X-Atlas-Token`` across hosts, and a 307 resends the body). The session follows a redirect
only within the origin (scheme, host and port) of the request that got it, at most `MAX_REDIRECTS` times;
the token is attached afresh to each hop and only when the hop is on the API host. A redirect to another
origin is one `RedirectError` and nothing is sent there, with one documented exception a caller asks for by
name (``signed_redirect``): a GET whose answer is a redirect to a short-lived signed link (a plan's JSON
output, plans.mdx: "responds with a temporary redirect that should be followed"), followed as a plain GET
with no token and no body. A 301/302/303 answer to a write is refused too: resending it as a GET would
silently drop the write.

Read reuse (see `ReadMemo`): a runbook step looks at the same objects in its plan, its apply and its
verify. A session given a memo answers a repeated *lookup* (the clients mark which reads are lookups;
polls never are) from the answer it got at most `ReadMemo.max_age` seconds ago, and forgets every
answer the moment it sends a write, so whatever is read after a change is read from the server.
"""

from __future__ import annotations

import os
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from runbook_lib.errors import (
    ApiError,
    ConfigError,
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RunbookError,
    ServerError,
    TransportError,
    ValidationError,
)
from runbook_lib.jsonapi import error_summary, parse_errors
from runbook_lib.settings import Settings

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# 500 is retried too, for idempotent methods only: a read or a same-bytes PUT cannot do harm twice, and
# load balancers in front of TFE answer 500 for passing trouble as well.
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: The share of the server's X-RateLimit-Limit the client allows itself. go-tfe uses 0.66; during a migration
#: window the runbook is the token's main user and a batch of hundreds of environments is bound by this rate,
#: so it keeps 10% headroom for the operator's own terraform runs (30/s -> 27/s) instead of a third.
RATE_LIMIT_FRACTION = 0.9
#: TFE's documented per-user limit, assumed until a response says otherwise (legacy hosts never say).
DEFAULT_RATE_LIMIT = 30.0
#: "List Runs in a Workspace" and "List Runs in an Organization" have "an adjusted rate limit of 30 requests
#: per minute" (terraform-docs-common, website/docs/cloud-docs/api-docs/run.mdx); no header announces it.
RUNS_LIST_LIMIT_PER_MINUTE = 30.0
_RUNS_LIST_PATH = re.compile(r"/api/v2/(?:workspaces|organizations)/[^/]+/runs/?$")

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 412: "Precondition Failed", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


#: Answers that redirect, and how many hops one request may take within its origin.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


class ReadOnlyError(RunbookError):
    """A write was attempted through a client opened read-only (plan mode); nothing was sent."""


class RedirectError(ApiError):
    """A host answered a redirect the transport does not follow (another origin, a write turned into a GET,
    too many hops); nothing was sent to the redirect's target."""


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, lower-cased, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)


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


class RateLimitAwareRetry(Retry):
    """urllib3 `Retry` that also waits out TFE's ``X-RateLimit-Reset`` and retries any method on 429.

    Only the waiting and the 429 rule differ from urllib3; counting, backoff and exhaustion are urllib3's.
    """

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


class _LimitedAdapter(HTTPAdapter):
    """HTTPAdapter that takes a token from the bucket before each send and learns the limit after.

    Retries happen inside urllib3, below this adapter, so they take no token: they are already spaced by
    Retry-After, X-RateLimit-Reset or the backoff.
    """

    def __init__(self, bucket: TokenBucket, runs_list: TokenBucket | None = None, **kwargs: Any) -> None:
        self.bucket = bucket
        self.runs_list = runs_list
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # type: ignore[override]
        if self.runs_list is not None and request.method == "GET" and _RUNS_LIST_PATH.search(
                urlsplit(request.url or "").path):
            self.runs_list.acquire()  # the runs lists' own limit, on top of the general one
        self.bucket.acquire()
        response = super().send(request, **kwargs)
        self.bucket.observe(response.headers)
        return response


class _TokenAuth(requests.auth.AuthBase):
    """Adds the API token header, read from its environment variable at the moment of sending.

    The token is only sent to the configured API host: hosted upload/download URLs on another host
    (signed object-store links) never see it.
    """

    def __init__(self, settings: Settings, which: str, header: str, prefix: str, base_url: str) -> None:
        self._settings = settings
        self._which = which
        self._header = header
        self._prefix = prefix
        # The whole origin: the same host over plain http (a downgrade) or on another port gets no token.
        self._origin = origin(base_url)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(r.url or "") == self._origin:
            r.headers[self._header] = self._prefix + self._settings.token(self._which)
        else:
            r.headers.pop(self._header, None)
        return r

    def __repr__(self) -> str:
        return f"_TokenAuth(header={self._header!r}, token_var=<{self._which}>)"


class _NoAuth(requests.auth.AuthBase):
    """Explicitly no token (hosted upload URLs are signed; Terraform sends them no Authorization)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def redact_url(url: str, *, signed: bool = False) -> str:
    """Return a URL safe to keep in an exception or a log line.

    Args:
        url: any URL.
        signed: the path itself may carry a signature (hosted upload/download links); keep only its
            first segment.

    Returns:
        ``scheme://host[:port]/path`` without user info, query or fragment.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path
    if signed:
        first = path.strip("/").split("/", 1)[0]
        path = f"/{first}/..." if first else "/"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def error_from_response(response: requests.Response, *, method: str | None = None, url: str | None = None,
                        token_var: str = "", signed: bool = False) -> ApiError | None:
    """Map an HTTP answer to the runbook's exception for it: the one place that knows status codes.

    Args:
        response: the final answer (after the transport's retries).
        method, url: of the request; taken from ``response.request`` when omitted.
        token_var: name of the environment variable that holds the token, for the 401/403 hint.
        signed: the URL is a signed hosted link (see `redact_url`).

    Returns:
        None for 1xx-3xx; otherwise an `ApiError` subclass carrying method, redacted URL, status and the
        API's error objects.
    """
    status = response.status_code
    if status < 400:
        return None
    method = (method or getattr(response.request, "method", "") or "").upper()
    safe_url = redact_url(url or response.url or "", signed=signed)
    errors = parse_errors(response.content, response.headers.get("Content-Type", ""))
    path = urlsplit(safe_url).path or "/"
    host = urlsplit(safe_url).netloc
    summary = error_summary(errors)
    said = f"{method} {path} answered {status} {_REASONS.get(status, response.reason or '')}".rstrip()
    said += f": {summary}" if summary else ""
    token = f"the token in ${token_var}" if token_var else "the token"
    if status in (401, 403) and signed:
        cls, hint = AuthError, "the signed link was refused, perhaps expired; run the step again for a fresh one"
    elif status == 401:
        cls, hint = AuthError, f"check that {token} is valid for {host}"
    elif status == 403:
        cls, hint = AuthError, f"check that {token} has permission for this on {host}"
    elif status == 404:
        cls, hint = NotFoundError, f"it does not exist, or {token} cannot see it"
    elif status in (409, 412):
        cls, hint = ConflictError, "it exists, is locked, or conflicts with what the server has"
    elif status in (400, 422):
        cls, hint = ValidationError, "the server refused the request as invalid"
    elif status == 429:
        cls, hint = RateLimitedError, "still rate limited after the retries; wait a minute and run again"
    elif status >= 500:
        cls, hint = ServerError, "the server failed after the retries; run the step again later"
    else:
        cls, hint = ApiError, ""
    message = f"{said} ({hint})." if hint else f"{said}."
    return cls(message, method=method, url=safe_url, status=status, errors=errors)


def error_from_exception(exc: requests.RequestException, *, method: str, url: str,
                         signed: bool = False) -> TransportError:
    """Map a requests exception (after the transport's retries) to a `TransportError` naming the fix.

    Args:
        exc: what requests raised.
        method, url: of the request.
        signed: the URL is a signed hosted link (see `redact_url`).

    Returns:
        The `TransportError` to raise (``from exc`` unless the URL is signed; see `ApiSession.request`).
    """
    safe_url = redact_url(url, signed=signed)
    host = urlsplit(safe_url).netloc
    path = urlsplit(safe_url).path or "/"
    root = _root_cause(exc)
    maybe_applied = method not in IDEMPOTENT_METHODS
    if isinstance(exc, requests.exceptions.SSLError) or isinstance(root, ssl.SSLError):
        # The verifier's own reason ("certificate has expired", "unable to get local issuer certificate")
        # tells an expired CA from a wrong one; it never holds a secret.
        reason = getattr(root, "verify_message", None) or getattr(root, "reason", None)
        message = (f"TLS verification failed for {host}{f' ({reason})' if reason else ''}: set the CA bundle (the "
                   f"ca_bundle setting, or REQUESTS_CA_BUNDLE) to the PEM file of your private CA, renewed if it "
                   f"expired; verification is never turned off.")
    elif isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(root, ConnectTimeoutError) \
            and not isinstance(root, NewConnectionError):
        message = f"{method} {path} could not connect to {host} in time: check the address and the network."
    elif isinstance(exc, requests.exceptions.Timeout) or isinstance(root, (ReadTimeoutError, TimeoutError)):
        message = (f"{method} {path} got no answer from {host} in time: raise read_timeout or try again"
                   f"{' (not retried: it may have been applied; read back before repeating)' if maybe_applied else ''}.")
    elif isinstance(exc, requests.exceptions.ConnectionError):
        message = (f"{method} {path} lost the connection to {host} ({type(root).__name__}): check the address "
                   f"and that the host is up"
                   f"{'; not retried because it may have been applied' if maybe_applied else ''}.")
    else:
        message = f"{method} {path} to {host} failed in transport ({type(root).__name__})."
    return TransportError(message, method=method, url=safe_url, status=None)


def _root_cause(exc: BaseException) -> BaseException:
    """Return the innermost cause of a requests error (requests and urllib3 nest them several deep)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        if not isinstance(inner, BaseException):
            break
        current = inner
    return current


class ReadMemo:
    """Answers to lookups a step has just made, reused instead of asking the server again.

    Rules, which keep every refusal as strict as a fresh read would:

    * only reads a client marks as lookups (``reuse=True``: a workspace, a state version, an environment,
      variables) are kept; polls (runs, plans) always go to the server;
    * an answer is reused for at most `max_age` seconds;
    * any write through the session forgets every answer before it is sent (so a read after a change is
      fresh), and `clear` does the same after a change made outside the session (terraform, a git push);
    * a caller that must see the present passes ``fresh=True`` (and the answer it gets replaces the kept one).

    One memo belongs to one step run (one `runbook_lib.context.StepContext`) and one thread.

    Attributes:
        max_age: seconds an answer may be reused.
        hits: lookups answered from the memo (requests not sent).
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.hits = 0
        self._clock = clock
        self._answers: dict[tuple, tuple[float, requests.Response]] = {}

    @staticmethod
    def key(url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> tuple:
        return (url, tuple(sorted((str(k), str(v)) for k, v in (params or {}).items())),
                tuple(sorted((headers or {}).items())))

    def get(self, key: tuple) -> requests.Response | None:
        kept = self._answers.get(key)
        if kept is None or self._clock() - kept[0] > self.max_age:
            return None
        return kept[1]

    def put(self, key: tuple, response: requests.Response) -> None:
        self._answers[key] = (self._clock(), response)

    def clear(self) -> None:
        """Forget every answer (after a write, or a change made outside the session)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)


#: Methods that carry the API's content type even without a body (go-tfe commit d107af1c).
WRITE_METHODS_WITH_TYPE = frozenset({"POST", "PATCH", "DELETE"})


class ApiSession:
    """One client's connection to one API host.

    Attributes:
        base_url: ``scheme://host[:port]`` of the API host.
        read_only: when true, every non-read method raises `ReadOnlyError` before anything is sent.
        request_count: requests handed to the transport (retries inside urllib3 not counted; lookups
            answered by the memo not counted).
        memo: a `ReadMemo` reusing lookups, or None (every read goes to the server).
        last_headers: the headers of the last answer from the API host returned to a caller (None before
            the first), for what a host says about itself on every answer (API version, rate limit).
    """

    def __init__(self, settings: Settings, which: str, *, auth_header: str, auth_prefix: str = "",
                 default_headers: Mapping[str, str] | None = None, read_only: bool = False,
                 retry: RetryPolicy | None = None, rate_limiter: TokenBucket | None = None,
                 write_content_type: str | None = None) -> None:
        """Args:
            settings: addresses, token variable names, CA bundle, timeouts.
            which: ``"legacy"`` or ``"tfe"``.
            auth_header / auth_prefix: how the token is sent (``X-Atlas-Token``; ``Authorization: Bearer ``).
            default_headers: sent with every request (Accept, ...).
            read_only: refuse every write (plan mode).
            retry: retry policy; `RetryPolicy()` by default.
            rate_limiter: token bucket; by default the one this process shares for the host (`shared_bucket`).
            write_content_type: the Content-Type of every POST, PATCH and DELETE to the API host that names
                none itself, body or not (TFE answers 415 without ``application/vnd.api+json``: go-tfe commit
                d107af1c). Signed upload links (``auth=False``) keep their own.

        Raises:
            ConfigError: the address is missing or malformed.
        """
        self.settings = settings
        self.write_content_type = write_content_type
        self.which = which
        self.base_url = settings.address(which)
        self.host = urlsplit(self.base_url).netloc.lower()
        self.token_var = settings.legacy_token_var if which == "legacy" else settings.tfe_token_var
        self.read_only = read_only
        self.retry_policy = retry or RetryPolicy()
        self.rate_limiter = rate_limiter or shared_bucket(self.host)
        self.request_count = 0
        self.memo: ReadMemo | None = None
        self.last_headers: Mapping[str, str] | None = None
        self._count_lock = threading.Lock()
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        # TLS is always verified: the system store, or the private CA's bundle when one is configured.
        if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
            raise ConfigError(f"the CA bundle {settings.ca_bundle} does not exist; point REQUESTS_CA_BUNDLE (or the "
                              f"ca_bundle parameter) at the PEM file of the CA that signed {self.host}'s certificate.")
        self.verify: str | bool = settings.ca_bundle or True
        self._session = requests.Session()
        adapter = _LimitedAdapter(self.rate_limiter, shared_bucket(self.host, "runs-list") if which == "tfe" else None,
                                  max_retries=self.retry_policy.build())
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.auth = _TokenAuth(settings, which, auth_header, auth_prefix, self.base_url)
        self._session.headers.update({"User-Agent": "tfe-runbook"})
        self._session.headers.update(dict(default_headers or {}))

    def __repr__(self) -> str:
        return (f"ApiSession({self.which!r}, base_url={self.base_url!r}, token_var={self.token_var!r}, "
                f"read_only={self.read_only!r})")

    def url(self, path_or_url: str) -> str:
        """Return an absolute URL: absolute URLs as given, paths relative to the API host."""
        if re.match(r"^https?://", path_or_url):
            return path_or_url
        return self.base_url + ("" if path_or_url.startswith("/") else "/") + path_or_url

    def request(self, method: str, path_or_url: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, data: bytes | str | None = None, headers: Mapping[str, str] | None = None,
                auth: bool = True, signed: bool = False, allow_redirects: bool = True,
                signed_redirect: bool = False, ok: Iterable[int] = (), reuse: bool = False,
                fresh: bool = False) -> requests.Response:
        """Send one request through the retrying, rate-limited transport and check its answer.

        Args:
            method: HTTP method.
            path_or_url: a path on the API host (``/api/v2/...``) or an absolute URL (hosted links).
            params: query parameters.
            json / data: body (JSON-encoded / raw).
            headers: extra headers.
            auth: send the token (only ever to the API host); False for signed upload links.
            signed: the URL is a signed hosted link: never quoted whole in an error.
            allow_redirects: follow a redirect within the request's origin (see the module docstring);
                False returns the 3xx answer itself.
            signed_redirect: a GET whose documented answer is a redirect to a signed link on another
                origin (a plan's JSON output): that one hop is followed, with no token.
            ok: error statuses the caller handles itself (returned, not raised), like 404 for "absent".
            reuse: a lookup (GET) the session's memo may answer and keep (see `ReadMemo`).
            fresh: a lookup that must come from the server now; its answer replaces the kept one.

        Returns:
            The response (status < 400, or listed in ``ok``).

        Raises:
            ReadOnlyError: a write on a read-only client; nothing was sent.
            ApiError: its subclass for the answer's status (see `error_from_response`).
            TransportError: connection, timeout or TLS failure after the retries.
            ConfigError: the token variable is unset.
            RedirectError: a redirect to another origin (or a write redirected with 301/302/303, or more
                than `MAX_REDIRECTS` hops); nothing was sent to its target.
        """
        method = method.upper()
        url = self.url(path_or_url)
        if self.read_only and method not in READ_METHODS:
            raise ReadOnlyError(f"{method} {redact_url(url, signed=signed)} refused: the {self.which} client is "
                                f"read-only (plan mode); run in apply mode to change anything.")
        ok = set(ok)
        memo_key = None
        if self.memo is not None:
            if method not in READ_METHODS:
                self.memo.clear()  # before sending: even a write that fails may have changed something
            elif reuse and method == "GET":
                memo_key = ReadMemo.key(url, params, headers)
                kept = None if fresh else self.memo.get(memo_key)
                if kept is not None and (kept.status_code < 400 or kept.status_code in ok):
                    self.memo.hits += 1  # counted only when the kept answer is the one returned
                    self.last_headers = kept.headers
                    return kept
        sent_headers = dict(headers or {})
        if (self.write_content_type and auth and method in WRITE_METHODS_WITH_TYPE
                and not any(k.lower() == "content-type" for k in sent_headers)):
            sent_headers["Content-Type"] = self.write_content_type
        # requests never follows a redirect itself: `_follow_redirects` decides, hop by hop.
        kwargs: dict[str, Any] = dict(params=params, data=data, headers=sent_headers,
                                      timeout=self.timeout, verify=self.verify, allow_redirects=False)
        if json is not None:
            kwargs["json"] = json
        if not auth:
            kwargs["auth"] = _NoAuth()
        with self._count_lock:
            self.request_count += 1
        response = self._send(method, url, kwargs, signed=signed)
        if allow_redirects and response.status_code in REDIRECT_STATUSES and response.headers.get("Location"):
            response = self._follow_redirects(method, response, kwargs, signed_redirect=signed_redirect)
            signed = True  # a redirect's target is a capability URL as far as error messages go
        if response.status_code in ok:
            if memo_key is not None:
                self.memo.put(memo_key, response)  # type: ignore[union-attr]
            self._note_headers(response)
            return response
        final_url = response.url or url
        error = error_from_response(response, method=method, url=final_url, token_var=self.token_var,
                                    signed=signed or bool(response.history) or not self._on_api_host(final_url))
        if error is not None:
            raise error
        if memo_key is not None:
            self.memo.put(memo_key, response)  # type: ignore[union-attr]
        self._note_headers(response)
        return response

    def _send(self, method: str, url: str, kwargs: Mapping[str, Any], *, signed: bool) -> requests.Response:
        """One request through the transport; a requests exception becomes a `TransportError`."""
        try:
            return self._session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            failed_url = getattr(exc.request, "url", None) or url
            error = error_from_exception(exc, method=method, url=failed_url, signed=signed)
            if signed:
                # requests' own message quotes the full URL, signature included: do not chain it.
                raise error from None
            raise error from exc

    def _follow_redirects(self, method: str, response: requests.Response, kwargs: Mapping[str, Any], *,
                          signed_redirect: bool) -> requests.Response:
        """Follow `response`'s redirect chain under the policy of the module docstring.

        Raises:
            RedirectError: another origin (outside the one ``signed_redirect`` hop), a write redirected by
                301/302/303, or too many hops; nothing was sent to the target.
        """
        hops = 0
        crossed = False
        while response.status_code in REDIRECT_STATUSES and response.headers.get("Location"):
            here = response.url or ""
            target = urljoin(here, response.headers["Location"])
            code = response.status_code
            said = f"{method} {urlsplit(redact_url(here, signed=True)).path} on {urlsplit(here).netloc}"
            to = urlunsplit((urlsplit(target).scheme, urlsplit(target).netloc, "", "", ""))
            hops += 1
            if hops > MAX_REDIRECTS:
                raise RedirectError(f"{said} was redirected more than {MAX_REDIRECTS} times; the host is "
                                    f"misconfigured (a redirect loop): check its address.",
                                    method=method, url=redact_url(here, signed=True), status=code)
            same_origin = origin(target) == origin(here)
            downgrade = origin(here)[0] == "https" and origin(target)[0] != "https"
            signed_hop = (signed_redirect and not crossed and not downgrade and method == "GET"
                          and code in (302, 303, 307, 308))
            if not same_origin and not signed_hop:
                raise RedirectError(
                    f"{said} answered {code} redirecting to another origin ({to}); the runbook does not follow "
                    f"it, so no token or body was sent there: set {self._address_var()} to the API's own "
                    f"address (scheme, host and port exactly as the host serves the API).",
                    method=method, url=redact_url(here, signed=True), status=code)
            if code in (301, 302, 303) and method not in ("GET", "HEAD"):
                raise RedirectError(
                    f"{said} answered {code} (the request would be resent as a GET, dropping it); nothing was "
                    f"resent: set {self._address_var()} to the address the API answers on.",
                    method=method, url=redact_url(here, signed=True), status=code)
            hop_kwargs = dict(kwargs)  # what the previous hop sent: once stripped for a signed link, stays so
            if not same_origin:
                # The documented hop to a signed link: a plain GET, no token, no body, no caller headers
                # beyond what it accepts.
                crossed = True
                hop_kwargs.update(auth=_NoAuth(), data=None, json=None, params=None,
                                  headers={k: v for k, v in dict(kwargs.get("headers") or {}).items()
                                           if k.lower() == "accept"})
            else:
                hop_kwargs["params"] = None  # the Location carries its own query
            response.close()
            response = self._send(method, target, hop_kwargs, signed=True)
            kwargs = hop_kwargs
        return response

    def _address_var(self) -> str:
        return "ATLAS_ADDRESS" if self.which == "legacy" else "TFE_ADDRESS"

    def _note_headers(self, response: requests.Response) -> None:
        if self._on_api_host(response.url or self.base_url):
            self.last_headers = response.headers

    def _on_api_host(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() == self.host

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()



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
