"""How the token is attached: only to the API host's own origin, read from its variable at the moment of sending."""

from __future__ import annotations

import requests

from runbook_lib.http.urls import origin
from runbook_lib.settings import Settings


class TokenAuth(requests.auth.AuthBase):
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
        return f"TokenAuth(header={self._header!r}, token_var=<{self._which}>)"


class NoAuth(requests.auth.AuthBase):
    """Explicitly no token (hosted upload URLs are signed; Terraform sends them no Authorization)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r
