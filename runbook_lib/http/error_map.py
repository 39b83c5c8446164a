"""The one place that turns an HTTP answer or a transport failure into the runbook's exception for it.

Neither function ever sees a request header, so no exception can carry a token; URLs are redacted
(`runbook_lib.http.urls.redact_url`) before they go into a message.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from runbook_lib.errors import (
    ApiError,
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
)
from runbook_lib.http.retry import IDEMPOTENT_METHODS, refused
from runbook_lib.http.urls import redact_url
from runbook_lib.jsonapi import error_summary, parse_errors

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 412: "Precondition Failed", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}



def error_from_response(response: requests.Response, *, method: str | None = None, url: str | None = None,
                        token_var: str = "", signed: bool = False, address_var: str = "") -> ApiError | None:
    """Map an HTTP answer to the runbook's exception for it: the one place that knows status codes.

    Args:
        response: the final answer (after the transport's retries).
        method, url: of the request; taken from ``response.request`` when omitted.
        token_var: name of the environment variable that holds the token, for the 401/403 hint.
        signed: the URL is a signed hosted link (see `redact_url`).
        address_var: the setting that names this host, for a plain-http request to an HTTPS port.

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
    elif status == 400 and _PLAIN_HTTP_TO_HTTPS in response.content[:4096]:
        # nginx's answer to plain http on its TLS port: the address's scheme is wrong.
        cls, hint = ValidationError, (f"plain http reached an HTTPS port, so the scheme is wrong: set "
                                      f"{address_var or 'the address'} to https://{host}")
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


#: What nginx (in front of TFE) answers, with a 400, to plain http on its TLS port.
_PLAIN_HTTP_TO_HTTPS = b"plain HTTP request was sent to HTTPS port"
#: What OpenSSL says when the other end answers a TLS handshake with something else (plain HTTP).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "packet length too long",
            "http request", "unknown protocol")


def error_from_exception(exc: requests.RequestException, *, method: str, url: str,
                         signed: bool = False, address_var: str = "") -> TransportError:
    """Map a requests exception (after the transport's retries) to a `TransportError` naming the fix.

    Args:
        exc: what requests raised.
        method, url: of the request.
        signed: the URL is a signed hosted link (see `redact_url`).
        address_var: the setting that names this host (``TFE_ADDRESS``), for a wrong port or scheme; "" for
            a host no setting names (a signed link).

    Returns:
        The `TransportError` to raise (``from exc`` unless the URL is signed; see `ApiSession.request`).
    """
    safe_url = redact_url(url, signed=signed)
    host = urlsplit(safe_url).netloc
    path = urlsplit(safe_url).path or "/"
    root = _root_cause(exc)
    maybe_applied = method not in IDEMPOTENT_METHODS
    scheme = urlsplit(safe_url).scheme
    setting = address_var or "the address"
    tls_said = " ".join(str(x) for x in (getattr(root, "reason", None), getattr(root, "verify_message", None), root))
    if (isinstance(exc, requests.exceptions.SSLError) or isinstance(root, ssl.SSLError)) \
            and any(words in tls_said for words in _NOT_TLS):
        message = (f"{method} {path}: {host} does not speak TLS on that port, so the scheme may be wrong: set "
                   f"{setting} to http://{host} if the host serves plain HTTP there, or to the port of its HTTPS "
                   f"listener.")
    elif isinstance(exc, requests.exceptions.SSLError) or isinstance(root, ssl.SSLError):
        # The verifier's own reason ("certificate has expired", "unable to get local issuer certificate")
        # tells an expired CA from a wrong one; it never holds a secret.
        reason = getattr(root, "verify_message", None) or getattr(root, "reason", None)
        message = (f"TLS verification failed for {host}{f' ({reason})' if reason else ''}: set the CA bundle (the "
                   f"ca_bundle setting, or REQUESTS_CA_BUNDLE) to the PEM file of your private CA, renewed if it "
                   f"expired; verification is never turned off.")
    elif refused(exc):
        message = (f"{method} {path} could not connect to {host}: the connection was refused, so nothing listens "
                   f"on that port; check the address and that the host is up (the port in {setting} may be "
                   f"wrong).")
    elif isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(root, ConnectTimeoutError) \
            and not isinstance(root, NewConnectionError):
        message = f"{method} {path} could not connect to {host} in time: check the address and the network."
    elif isinstance(exc, requests.exceptions.Timeout) or isinstance(root, (ReadTimeoutError, TimeoutError)):
        message = (f"{method} {path} got no answer from {host} in time: raise read_timeout or try again"
                   f"{' (not retried: it may have been applied; read back before repeating)' if maybe_applied else ''}.")
    elif scheme == "http" and isinstance(exc, requests.exceptions.ConnectionError) \
            and isinstance(root, (ConnectionResetError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
        message = (f"{method} {path}: {host} closed the connection without an HTTP answer; if it serves HTTPS, "
                   f"the scheme may be wrong: set {setting} to https://{host}"
                   f"{'; not retried because it may have been applied' if maybe_applied else ''}.")
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

