"""What the two API clients (`legacy.LegacyClient`, `tfe.TfeClient`) share: one `ApiSession` each.

A client differs from the other only in how it speaks to its host (which address and token variable, how the
token is sent, the media types); it declares that as `SESSION`, and this base builds the session from it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from runbook_lib.http import ApiSession, RetryPolicy, TokenBucket
from runbook_lib.settings import Settings


class ApiClient:
    """Base of an API client.

    Attributes:
        session: the `ApiSession` (request_count, rate_limiter, read_only).
        SESSION: the client's wire conventions, `ApiSession`'s keyword arguments (`which`, `auth_header`,
            `auth_prefix`, `default_headers`, `write_content_type`).
    """

    SESSION: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: Settings, *, read_only: bool = False, retry: RetryPolicy | None = None,
                 rate_limiter: TokenBucket | None = None) -> None:
        """Args:
            settings: the host's address, the name of its token variable (``ATLAS_TOKEN`` / ``TFE_TOKEN``),
                CA bundle, timeouts.
            read_only: refuse every write before sending (plan mode).
            retry: transport retry policy.
            rate_limiter: token bucket to share with other clients of the same token (None: the one this
                process shares for the host; the legacy host announces no limit, so the default rate applies).

        Raises:
            ConfigError: the host's address is missing or malformed.
        """
        self.session = ApiSession(settings, **self.SESSION, read_only=read_only, retry=retry,
                                  rate_limiter=rate_limiter)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session!r})"
