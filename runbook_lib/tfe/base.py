"""What every part of the TFE client shares: the session's wire conventions, the JSON:API plumbing, the ping.

`TfeBase` is the base of each resource's part (`runbook_lib.tfe.organizations`, `.workspaces`, ...), which
`runbook_lib.tfe.TfeClient` puts together, one module per resource as go-tfe does.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from runbook_lib.api_client import ApiClient
from runbook_lib.errors import ApiError, ConflictError, ValidationError
from runbook_lib.http import create_or_adopt
from runbook_lib.jsonapi import MEDIA_TYPE, Resource, paginate, parse_document

API = "/api/v2"
JSONAPI = MEDIA_TYPE
#: How long a new state version may stay `pending` after its upload, and an unlock be refused because of
#: it, before the runbook gives up (real TFE finalizes asynchronously: state-versions.mdx, workspaces.mdx
#: "Unlock a workspace" says to retry for a short period).
FINALIZE_TIMEOUT = 120.0


class StateVersionPendingError(ApiError):
    """The workspace stays locked: its latest state version was still pending when the unlock bound ran out
    (not a lock held by someone else, so callers that handle ConflictError do not mistake it for one)."""


def _host_facts(headers: Mapping[str, str]) -> dict[str, Any]:
    """The API version, application, release and rate limit a host's answer announces (None if absent)."""
    limit = headers.get("X-RateLimit-Limit")
    try:
        rate = float(limit) if limit else None
    except ValueError:
        rate = None
    return {"api_version": headers.get("TFP-API-Version"), "app_name": headers.get("TFP-AppName"),
            "tfe_version": headers.get("X-TFE-Version"), "rate_limit": rate}


class TfeBase(ApiClient):
    """The new TFE API: JSON:API, the token as ``Authorization: Bearer`` (`ApiClient` builds the session)."""

    SESSION = {"which": "tfe", "auth_header": "Authorization", "auth_prefix": "Bearer ",
               "default_headers": {"Accept": JSONAPI}, "write_content_type": JSONAPI}

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
             fresh: bool = False) -> Resource:
        response = self.session.request("GET", API + path, params=params, reuse=reuse, fresh=fresh)
        return parse_document(response.json())  # type: ignore[return-value]

    def _find(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
              fresh: bool = False) -> Resource | None:
        response = self.session.request("GET", API + path, params=params, ok=(404,), reuse=reuse, fresh=fresh)
        return None if response.status_code == 404 else parse_document(response.json())  # type: ignore[return-value]

    def _send(self, method: str, path: str, doc: Mapping[str, Any] | None = None) -> Resource | None:
        response = self.session.request(method, API + path, data=json.dumps(doc) if doc is not None else None)
        if response.status_code == 204 or not response.content:
            return None
        return parse_document(response.json())  # type: ignore[return-value]

    def _list(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
              fresh: bool = False) -> Iterator[Resource]:
        return paginate(self.session, API + path, params, reuse=reuse, fresh=fresh)

    def _create_unique(self, post, read_back, *, adopt_existing: bool, what: str) -> Resource:
        """Create an object whose name is unique, adopting it on ambiguity; on "name taken" adopt or refuse."""
        try:
            return create_or_adopt(post, read_back)
        except (ValidationError, ConflictError) as taken:
            existing = read_back()
            if existing is None:
                raise
            if not adopt_existing:
                raise ConflictError(f"{what} already exists; adopt it (adopt_existing=True) or choose another "
                                    f"name.", method=taken.method, url=taken.url, status=taken.status,
                                    errors=taken.errors) from taken
            existing.adopted = True
            return existing


    def _put_blob(self, url: str, data: bytes) -> None:
        self.session.request("PUT", url, data=data, auth=False, signed=True,
                             headers={"Content-Type": "application/octet-stream"})


    # -- service ----------------------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check the host and read what it says about itself.

        Returns:
            ``{"api_version", "app_name", "tfe_version", "rate_limit"}`` from the ping headers (None if absent).

        Raises:
            ApiError: the host answered an error; TransportError: unreachable or TLS failure.
        """
        return _host_facts(self.session.request("GET", API + "/ping").headers)

    def about(self) -> dict[str, Any]:
        """What the host says about itself (as `ping`), without a request when the last answer said it.

        Terraform reads the API version and the rate limit from the ping; hosts that send both headers
        on every answer (the sandbox, otf) have said it already in the last answer. Otherwise: a ping.
        """
        headers = self.session.last_headers
        if headers is not None and headers.get("TFP-API-Version") and headers.get("X-RateLimit-Limit"):
            return _host_facts(headers)
        return self.ping()

