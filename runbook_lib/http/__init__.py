"""The one HTTP transport both API clients use: `ApiSession`, and the parts it is built from.

Each client owns one `ApiSession`: one `requests.Session` whose adapter carries a urllib3 `Retry`, a
client-side token bucket, the configured timeouts and TLS verification (never turned off; a private CA
comes from the ``ca_bundle`` setting). Each concern has a module of its own in this package:

* `retry`: which requests are retried and how long to wait (`RetryPolicy`), and `create_or_adopt`, which
  resolves a create (a POST, never retried blindly) by reading back;
* `rate`: the client-side rate limit (`TokenBucket`, one per host, per batch with `FileTokenBucket`);
* `redirects`: which redirects are followed (within the request's origin; the one documented hop to a
  plan's signed link) and which are one `RedirectError`;
* `error_map`: the one place that turns an answer or a transport failure into a `runbook_lib.errors.ApiError`
  subclass (`error_from_response`, `error_from_exception`); neither ever sees a header, so no exception can
  carry a token;
* `memo`: read reuse within a step (`ReadMemo`): a session given a memo answers a repeated *lookup* (the
  clients mark which reads are lookups; polls never are) from the answer it got at most `ReadMemo.max_age`
  seconds ago, and forgets every answer the moment it sends a write;
* `deadline`: a wall-clock bound on every request, retries, redirects and body included;
* `body`: the answer's body, streamed within a size cap, and JSON that is not one clear error;
* `adapter`: the requests adapter that ties the rate, the deadline and the answers to each send;
* `auth` (the token, only to the API host's origin) and `urls` (origins as urllib3 connects to them, URLs
  safe to quote, the checks a redirect's target passes).

Every name the rest of the runbook imports from ``runbook_lib.http`` is importable from here.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import requests

from runbook_lib.errors import ConfigError, RunbookError, TransportError
from runbook_lib.http.adapter import TransportAdapter
from runbook_lib.http.auth import NoAuth, TokenAuth
from runbook_lib.http.body import AnswerTooLargeError, MalformedAnswerError, cap_for, read_body
from runbook_lib.http.deadline import Deadline, current
from runbook_lib.http.error_map import error_from_exception, error_from_response
from runbook_lib.http.memo import ReadMemo
from runbook_lib.http.rate import (
    DEFAULT_RATE_LIMIT,
    RATE_BUDGET_DIR_VAR,
    RATE_LIMIT_FRACTION,
    RUNS_LIST_LIMIT_PER_MINUTE,
    FileTokenBucket,
    TokenBucket,
    shared_bucket,
)
from runbook_lib.http.redirects import MAX_REDIRECTS, REDIRECT_STATUSES, RedirectError, follow_redirects
from runbook_lib.http.retry import (
    IDEMPOTENT_METHODS,
    READ_METHODS,
    RETRY_STATUSES,
    RateLimitAwareRetry,
    RetryPolicy,
    create_or_adopt,
)
from runbook_lib.http.urls import origin, redact_url
from runbook_lib.settings import Settings

__all__ = [
    "ApiSession", "ReadOnlyError", "RedirectError", "RetryPolicy", "RateLimitAwareRetry", "TokenBucket",
    "FileTokenBucket", "shared_bucket", "ReadMemo", "create_or_adopt", "origin", "redact_url",
    "error_from_response", "error_from_exception", "DEFAULT_RATE_LIMIT", "RATE_LIMIT_FRACTION",
    "RUNS_LIST_LIMIT_PER_MINUTE", "RATE_BUDGET_DIR_VAR", "IDEMPOTENT_METHODS", "READ_METHODS", "RETRY_STATUSES",
    "REDIRECT_STATUSES", "MAX_REDIRECTS", "WRITE_METHODS_WITH_TYPE", "AnswerTooLargeError", "MalformedAnswerError",
]


class ReadOnlyError(RunbookError):
    """A write was attempted through a client opened read-only (plan mode); nothing was sent."""


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
        self._origin = origin(self.base_url)
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
        adapter = TransportAdapter(self.rate_limiter, shared_bucket(self.host, "runs-list") if which == "tfe" else None,
                                   max_retries=self.retry_policy.build())
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.auth = TokenAuth(settings, which, auth_header, auth_prefix, self.base_url)
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
            allow_redirects: follow a redirect within the request's origin (see `runbook_lib.http.redirects`);
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
            TransportError: connection, timeout or TLS failure after the retries, or the request did not
                finish within ``Settings.request_deadline`` seconds (`runbook_lib.http.deadline`).
            ConfigError: the token variable is unset.
            RedirectError: a redirect to another origin (or a write redirected with 301/302/303, or more
                than `MAX_REDIRECTS` hops); nothing was sent to its target.
            AnswerTooLargeError: the answer passed its size cap (`runbook_lib.http.body`).
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
        # requests never follows a redirect itself: `_follow_redirects` decides, hop by hop. The body is
        # streamed and read here, within its cap.
        kwargs: dict[str, Any] = dict(params=params, data=data, headers=sent_headers, timeout=self.timeout,
                                      verify=self.verify, allow_redirects=False, stream=True)
        if json is not None:
            kwargs["json"] = json
        if not auth:
            kwargs["auth"] = NoAuth()
        with self._count_lock:
            self.request_count += 1
        limit, limit_var = cap_for({**self._session.headers, **sent_headers}, self.settings.max_answer_bytes,
                                   self.settings.max_download_bytes)
        with Deadline(self.settings.request_deadline):
            response = self._send(method, url, kwargs, signed=signed)
            if allow_redirects and response.status_code in REDIRECT_STATUSES and response.headers.get("Location"):
                response = self._follow_redirects(method, response, kwargs, signed_redirect=signed_redirect)
                signed = True  # a redirect's target is a capability URL as far as error messages go
            final_url = response.url or url
            hidden = signed or not self._on_api_host(final_url)  # a signed link's path is never quoted
            try:
                read_body(response, limit=limit, variable=limit_var, method=method, signed=hidden)
            except requests.RequestException as exc:
                error = self._transport_error(exc, method, final_url, signed=hidden)
                if hidden:
                    raise error from None
                raise error from exc
        if self._on_api_host(final_url):
            response.address_var = self._address_var()  # type: ignore[attr-defined]
        if response.status_code in ok:
            if memo_key is not None:
                self.memo.put(memo_key, response)  # type: ignore[union-attr]
            self._note_headers(response)
            return response
        error = error_from_response(response, method=method, url=final_url, token_var=self.token_var,
                                    signed=signed or bool(response.history) or not self._on_api_host(final_url),
                                    address_var=self._address_var())
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
            error = self._transport_error(exc, method, failed_url, signed=signed)
            if signed:
                # requests' own message quotes the full URL, signature included: do not chain it.
                raise error from None
            raise error from exc

    def _transport_error(self, exc: requests.RequestException, method: str, url: str, *,
                         signed: bool) -> TransportError:
        """The `TransportError` for a failed send or body read: the deadline's when it passed, else the map's."""
        deadline = current()
        if deadline is not None and deadline.expired:
            safe = redact_url(url, signed=signed)
            where = f"{method} {urlsplit(safe).path or '/'} on {urlsplit(safe).netloc}"
            maybe = "" if method in IDEMPOTENT_METHODS else " (it may have been applied: read back before repeating)"
            return TransportError(
                f"{where} did not finish within {deadline.seconds:g}s (the request deadline, "
                f"TFE_RUNBOOK_REQUEST_DEADLINE): the host answered too slowly or not at all{maybe}; run the step "
                f"again later, or raise TFE_RUNBOOK_REQUEST_DEADLINE for a slow link.",
                method=method, url=safe, status=None)
        return error_from_exception(exc, method=method, url=url, signed=signed,
                                    address_var=self._address_var() if self._on_api_host(url) else "")

    def _follow_redirects(self, method: str, response: requests.Response, kwargs: Mapping[str, Any], *,
                          signed_redirect: bool) -> requests.Response:
        return follow_redirects(self, method, response, kwargs, signed_redirect=signed_redirect)

    def _address_var(self) -> str:
        return "ATLAS_ADDRESS" if self.which == "legacy" else "TFE_ADDRESS"

    def _note_headers(self, response: requests.Response) -> None:
        if self._on_api_host(response.url or self.base_url):
            self.last_headers = response.headers

    def _on_api_host(self, url: str) -> bool:
        return origin(url) == self._origin

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

