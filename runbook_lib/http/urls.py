"""URLs as the transport judges and quotes them: their origin, and a form safe to keep in a message."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, lower-cased, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)



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
