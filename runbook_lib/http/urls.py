"""URLs as the transport judges and quotes them: their origin, a form safe to keep in a message, and the checks
a redirect's target passes before anything is sent there.

Every judgement uses the parser that connects: requests prepares a URL (`prepared_url`) and urllib3's
``parse_url`` picks the host and port it connects to from that. Python's ``urlsplit`` reads some URLs
differently (``http://a:1\\@b:2/`` is host ``b`` to it and host ``a`` to urllib3), so a check made with it
could pass a URL that then connects elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

_DEFAULT_PORTS = {"https": 443, "http": 80}
#: What a redirect's Location may never hold: C0 controls, space, DEL, C1 controls and the backslash (which
#: browsers and some parsers read as "/", others as part of the user info).
_UNSAFE_IN_LOCATION = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def prepared_url(url: str) -> str:
    """The URL as requests will send it (IDNA host, quoted path), or `url` itself when requests refuses it."""
    request = requests.PreparedRequest()
    try:
        request.prepare_url(url, None)
    except (requests.exceptions.RequestException, LocationParseError, ValueError, UnicodeError):
        return url
    return request.url or url


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` urllib3 connects to for `url` (a prepared URL), lower-cased, with the scheme's
    default port filled in; ``("", "", None)`` for a URL it cannot parse."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "", "", None
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").lower().strip("[]")
    return scheme, host, parts.port or _DEFAULT_PORTS.get(scheme)


def location_problem(location: str) -> str | None:
    """Why a redirect's ``Location`` is refused outright, or None.

    Refused: control characters, spaces or a backslash anywhere in it, and user info (``user@host``) as
    either parser reads it (`origin`'s docstring says why both).

    Returns:
        A few words for the error sentence (never the Location itself), or None.
    """
    if _UNSAFE_IN_LOCATION.search(location):
        return "a control character, a space or a backslash"
    rest = location.split("://", 1)[1] if "://" in location else (location[2:] if location.startswith("//") else "")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    try:
        auth = parse_url(location).auth if rest else None
    except LocationParseError:
        return "a URL the transport cannot parse"
    if "@" in authority or auth:
        return "user info (a name or password before '@')"
    return None


def redact_url(url: str, *, signed: bool = False) -> str:
    """Return a URL safe to keep in an exception or a log line, naming the host a request to it connects to.

    Args:
        url: any URL.
        signed: the path itself may carry a signature (hosted upload/download links); keep only its
            first segment.

    Returns:
        ``scheme://host[:port]/path`` without user info, query or fragment.
    """
    try:
        parts = parse_url(url)
        scheme, host, port, path = parts.scheme or "", parts.host or "", parts.port, parts.path or ""
    except LocationParseError:
        split = urlsplit(url)
        try:
            port = split.port
        except ValueError:
            port = None
        scheme, host, path = split.scheme, split.hostname or "", split.path
    host = host.strip("[]")
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    if signed:
        first = path.strip("/").split("/", 1)[0]
        path = f"/{first}/..." if first else "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def _resolve(name: str) -> Iterable[str]:
    """The addresses the system resolver gives a host name (as urllib3 will resolve it to connect)."""
    return {str(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}


def _addresses(host: str,
               resolve: Callable[[str], Iterable[str]]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IP addresses `host` stands for: itself when it is one, else what the resolver answers."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found = []
    for text in resolve(host):
        try:
            found.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    return found


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, link-local, private and every other range that is not the public internet."""
    mapped = getattr(address, "ipv4_mapped", None)
    return not (mapped or address).is_global


def signed_link_problem(target: str, api_url: str, *,
                        resolve: Callable[[str], Iterable[str]] | None = None) -> str | None:
    """Why the signed link a plan's JSON output redirects to may not be followed, or None.

    The link is followed only over https, except to the API host itself (its own scheme, whatever the port),
    and never to a loopback, link-local or private address unless the API host is one of them too (a
    rehearsal sandbox, a TFE inside a private network): a host that could point the runbook at internal
    services gets nothing but a refusal. A host name is judged by what it resolves to now; urllib3 resolves
    it again to connect, so a name that answers otherwise a moment later (DNS rebinding) is not caught here.

    Args:
        target: the redirect's target (prepared).
        api_url: the API host's base URL.
        resolve: host name -> addresses (``socket.getaddrinfo`` by default; tests pass their own).

    Returns:
        A few words for the error sentence, or None.
    """
    scheme, host, _ = origin(target)
    api_scheme, api_host, _ = origin(api_url)
    if host == api_host:
        return None if scheme in ("https", api_scheme) else "a downgrade to plain http"
    if scheme != "https":
        return "plain http to another host"
    try:
        addresses = _addresses(host, resolve or _resolve)
        api_addresses = _addresses(api_host, resolve or _resolve)
    except OSError:
        return "a host name that does not resolve"
    if not addresses:
        return "a host name that does not resolve"
    if any(_internal(a) for a in addresses) and not any(_internal(a) for a in api_addresses):
        return "an internal address (loopback, link-local or private)"
    return None
