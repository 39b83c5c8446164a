"""The redirect policy: which redirects the transport follows itself, and which are one `RedirectError`.

requests is never left to follow a redirect itself (it keeps custom headers such as ``X-Atlas-Token`` across
hosts, and a 307 resends the body). A redirect is followed only within the origin (scheme, host and port) of
the request that got it, at most `MAX_REDIRECTS` times; the token is attached afresh to each hop and only when
the hop is on the API host. A redirect to another origin is one `RedirectError` and nothing is sent there, with
one documented exception a caller asks for by name (``signed_redirect``): a GET whose answer is a redirect to a
short-lived signed link (a plan's JSON output, plans.mdx: "responds with a temporary redirect that should be
followed"), followed as a plain GET with no token and no body, only over https (or to the API host itself) and
never to an internal address unless the API host is internal too (`urls.signed_link_problem`). A 301/302/303
answer to a write is refused too: resending it as a GET would silently drop the write.

Origins are judged by the parser that connects (`urls.origin` on the URL as requests prepares it), and a
Location holding user info, a backslash, a space or a control character is refused outright: Python's and
urllib3's parsers read such URLs as different hosts.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from runbook_lib.errors import ApiError
from runbook_lib.http.auth import NoAuth
from runbook_lib.http.urls import location_problem, origin, prepared_url, redact_url, signed_link_problem

#: Answers that redirect, and how many hops one request may take within its origin.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


class RedirectError(ApiError):
    """A host answered a redirect the transport does not follow (another origin, a write turned into a GET,
    too many hops); nothing was sent to the redirect's target."""


class _Sender(Protocol):
    base_url: str

    def _send(self, method: str, url: str, kwargs: Mapping[str, Any], *, signed: bool) -> requests.Response: ...

    def _address_var(self) -> str: ...


def follow_redirects(session: _Sender, method: str, response: requests.Response, kwargs: Mapping[str, Any], *,
                     signed_redirect: bool) -> requests.Response:
    """Follow `response`'s redirect chain under the policy of the module docstring.

    Args:
        session: the `runbook_lib.http.ApiSession` that sent the request (its ``_send`` sends each hop).
        method: the request's method.
        response: the redirect answer.
        kwargs: what the request was sent with (requests' keyword arguments).
        signed_redirect: the one documented hop to a signed link on another origin is allowed.

    Returns:
        The first answer that is not a redirect.

    Raises:
        RedirectError: another origin (outside the one ``signed_redirect`` hop), a signed link over plain
            http or to an internal address, a Location with user info, a backslash, a space or a control
            character, a write redirected by 301/302/303, or too many hops; nothing was sent to the target.
    """
    hops = 0
    crossed = False
    while response.status_code in REDIRECT_STATUSES and response.headers.get("Location"):
        here = response.url or ""
        location = response.headers["Location"]
        code = response.status_code
        said = f"{method} {urlsplit(redact_url(here, signed=True)).path} on {_netloc(here)}"
        unsafe = location_problem(location)
        if unsafe:
            raise RedirectError(
                f"{said} answered {code} with a Location holding {unsafe}; the runbook does not follow it, so no "
                f"token or body was sent anywhere: set {session._address_var()} to the API's own address.",
                method=method, url=redact_url(here, signed=True), status=code)
        target = prepared_url(urljoin(here, location))
        to = urlunsplit((origin(target)[0], _netloc(target), "", "", ""))
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
                f"it, so no token or body was sent there: set {session._address_var()} to the API's own "
                f"address (scheme, host and port exactly as the host serves the API).",
                method=method, url=redact_url(here, signed=True), status=code)
        refused = None if same_origin else signed_link_problem(target, session.base_url)
        if refused:
            raise RedirectError(
                f"{said} answered {code} sending the download to {to}, {refused}; the runbook does not follow "
                f"it, so nothing was sent there: the host's object storage address is misconfigured, or "
                f"{session._address_var()} names the wrong host.",
                method=method, url=redact_url(here, signed=True), status=code)
        if code in (301, 302, 303) and method not in ("GET", "HEAD"):
            raise RedirectError(
                f"{said} answered {code} (the request would be resent as a GET, dropping it); nothing was "
                f"resent: set {session._address_var()} to the address the API answers on.",
                method=method, url=redact_url(here, signed=True), status=code)
        hop_kwargs = dict(kwargs)  # what the previous hop sent: once stripped for a signed link, stays so
        if not same_origin:
            # The documented hop to a signed link: a plain GET, no token, no body, no caller headers
            # beyond what it accepts.
            crossed = True
            hop_kwargs.update(auth=NoAuth(), data=None, json=None, params=None,
                              headers={k: v for k, v in dict(kwargs.get("headers") or {}).items()
                                       if k.lower() == "accept"})
        else:
            hop_kwargs["params"] = None  # the Location carries its own query
        response.close()
        response = session._send(method, target, hop_kwargs, signed=True)
        kwargs = hop_kwargs
    return response


def _netloc(url: str) -> str:
    """``host[:port]`` of `url` as urllib3 connects to it (the port only when the URL names one)."""
    redacted = redact_url(url)
    return urlsplit(redacted).netloc
