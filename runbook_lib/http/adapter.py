"""The requests adapter every session mounts: rate tokens, connections under the request's deadline, answers
that know they are API answers.

Before each send it takes a token from the host's bucket (and from the runs lists' own bucket for those
paths); after, it learns the host's ``X-RateLimit-Limit`` and remembers that the host answered (a refused
connection to it is then retried as passing trouble: `runbook_lib.http.retry`). Retries happen inside
urllib3, below this adapter, so they take no token: they are already spaced by Retry-After,
X-RateLimit-Reset or the backoff. Its pools make connections that register with the current request's
`runbook_lib.http.deadline.Deadline`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from runbook_lib.http.body import ApiResponse
from runbook_lib.http.deadline import POOL_CLASSES
from runbook_lib.http.rate import RUNS_LIST_PATH, TokenBucket
from runbook_lib.http.retry import note_answered


class TransportAdapter(HTTPAdapter):
    """The session's adapter (see the module docstring)."""

    def __init__(self, bucket: TokenBucket, runs_list: TokenBucket | None = None, **kwargs: Any) -> None:
        self.bucket = bucket
        self.runs_list = runs_list
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(POOL_CLASSES)
        return manager

    def send(self, request, **kwargs):  # type: ignore[override]
        if self.runs_list is not None and request.method == "GET" and RUNS_LIST_PATH.search(
                urlsplit(request.url or "").path):
            self.runs_list.acquire()  # the runs lists' own limit, on top of the general one
        self.bucket.acquire()
        response = super().send(request, **kwargs)
        note_answered(request.url or "")
        self.bucket.observe(response.headers)
        return response

    def build_response(self, req, resp):  # type: ignore[override]
        response = super().build_response(req, resp)
        response.__class__ = ApiResponse  # the same object; only json() differs
        return response
