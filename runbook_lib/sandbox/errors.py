"""Errors of the rehearsal sandbox: each class knows its HTTP status and its wire body.

The store and the handlers raise these; the server turns them into a response in exactly one place
(`server._Handler._send_error`). One error can surface on either API, so each class renders two wire
flavours: the legacy `/api/v1` body (plain JSON, `{"errors": [...]}` or `{"errors": {...}}`) and the
JSON:API body of `/api/v2` (`{"errors": [{"status": "404", "title": "not found"}]}`).
"""

from __future__ import annotations

import json
from typing import Any

LEGACY = "legacy"
JSONAPI = "jsonapi"


class SandboxError(Exception):
    """Base: an answer other than success, with its status and both wire bodies.

    Attributes:
        status: HTTP status code.
        title: JSON:API error title.
        detail: one sentence for humans (JSON:API `detail`; legacy message).
        pointer: JSON:API `source.pointer` (for 422), or None.
        headers: extra response headers (rate-limit headers for 429).
    """

    status = 500
    title = "internal server error"
    # The legacy API answers some statuses with one fixed message whatever went wrong (None: the detail).
    legacy_message: str | None = None

    def __init__(self, detail: str = "", *, pointer: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.pointer = pointer
        self.headers = dict(headers or {})

    def jsonapi_body(self) -> dict[str, Any]:
        """The JSON:API error document real TFE sends for this error."""
        error: dict[str, Any] = {"status": str(self.status), "title": self.title}
        if self.detail:
            error["detail"] = self.detail
        if self.pointer:
            error["source"] = {"pointer": self.pointer}
        return {"errors": [error]}

    def legacy_body(self) -> Any:
        """The plain-JSON body the legacy (Atlas) API sends for this error."""
        return {"errors": [self.legacy_message or self.detail or self.title]}

    def wire(self, flavour: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body bytes for one API flavour (`LEGACY` or `JSONAPI`)."""
        if flavour == JSONAPI:
            body, ctype = self.jsonapi_body(), "application/vnd.api+json"
        else:
            body, ctype = self.legacy_body(), "application/json"
        headers = {"Content-Type": ctype, **self.headers}
        return self.status, headers, json.dumps(body).encode()


# --- generic ---------------------------------------------------------------------------------------

class BadRequestError(SandboxError):
    """400: the body is not valid JSON / not a JSON:API document."""

    status, title = 400, "bad request"


class UnsupportedMediaTypeError(SandboxError):
    """415: a mutating /api/v2 request without the JSON:API content type."""

    status, title = 415, "unsupported media type"


class UnauthorizedError(SandboxError):
    """401: no token, or a token the sandbox does not know."""

    status, title, legacy_message = 401, "unauthorized", "requires auth"


class ForbiddenError(SandboxError):
    """403: the token is valid but its user may only read (legacy read-only membership)."""

    status, title, legacy_message = 403, "forbidden", "invalid auth"


class NotFoundError(SandboxError):
    """404: missing, or belonging to an organization the token cannot see (indistinguishable on purpose)."""

    status, title, legacy_message = 404, "not found", "not found"

    def jsonapi_body(self) -> dict[str, Any]:
        # Real TFE answers a bare not-found without saying which object, so foreign objects leak nothing.
        return {"errors": [{"status": "404", "title": "not found"}]}


class ConflictError(SandboxError):
    """409: locked, already exists in a way that conflicts, or a state conflicts with the current one."""

    status, title = 409, "conflict"


class UnprocessableError(SandboxError):
    """422: an attribute is missing or invalid; `pointer` names it."""

    status, title = 422, "invalid attribute"

    def legacy_body(self) -> Any:
        # The legacy API answered validation errors keyed by attribute: {"errors":{"name":["..."]}}.
        attribute = (self.pointer or "/base").rsplit("/", 1)[-1]
        return {"errors": {attribute: [self.detail]}}


class RateLimitedError(SandboxError):
    """429: the token exceeded its request budget; carries X-RateLimit-* and Retry-After headers."""

    status, title, legacy_message = 429, "Too many requests", "You have exceeded the API's rate limit."

    def jsonapi_body(self) -> dict[str, Any]:
        # The exact shape the TFE docs show (status as a number here, unlike other errors).
        return {"errors": [{"detail": self.legacy_message, "status": 429, "title": self.title}]}


class InjectedServerError(SandboxError):
    """5xx chosen by fault injection (the status is set per instance)."""

    title = "internal server error"

    def __init__(self, status: int) -> None:
        super().__init__("injected fault")
        self.status = status
        self.title = {500: "internal server error", 502: "bad gateway", 503: "service unavailable",
                      504: "gateway timeout"}.get(status, "server error")


# --- legacy state endpoint: the exact bodies the atlas backend meets ------------------------------

class LegacyMd5ConflictError(ConflictError):
    """409 from the legacy state endpoint: same serial, different content."""

    def __init__(self) -> None:
        super().__init__("Md5 The MD5 hash of the state provided does not match what is currently known "
                         "for the same serial number")

    def legacy_body(self) -> Any:
        return {"errors": [self.detail], "success": False}


class LegacyContentMd5Error(BadRequestError):
    """400 from the legacy state endpoint: the Content-MD5 header does not match the body."""

    def __init__(self) -> None:
        super().__init__("Content-MD5 does not match the request body")
