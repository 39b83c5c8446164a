"""Reading an answer's body: streamed, within a size cap, and decoded as JSON only into one clear error.

The transport asks requests for a stream and reads the body itself (`read_body`), so an answer larger than
its cap is refused after at most the cap has been read (a 1.2 GB chunked answer once took 2.4 GB of memory):
API answers (JSON and JSON:API documents, error answers) have ``Settings.max_answer_bytes``, downloads (a
request that accepts any type: state files, plan logs) ``Settings.max_download_bytes``. Every answer is an
`ApiResponse`, whose ``json()`` turns a body that is not JSON into `MalformedAnswerError` instead of a bare
``JSONDecodeError``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from runbook_lib.errors import ApiError
from runbook_lib.http.urls import redact_url

#: Bytes read from the socket at a time.
CHUNK = 64 * 1024


class AnswerTooLargeError(ApiError):
    """An answer was larger than its cap; reading stopped at the cap and the connection was closed."""


class MalformedAnswerError(ApiError):
    """An answer that should be JSON is not (or is cut short)."""


class ApiResponse(requests.Response):
    """A `requests.Response` whose ``json()`` raises `MalformedAnswerError` (one sentence) on a body that is not
    JSON. `ApiSession` sets ``address_var`` on answers from the API host so the sentence names the setting."""

    address_var = ""

    def json(self, **kwargs: Any) -> Any:
        try:
            return super().json(**kwargs)
        except requests.exceptions.JSONDecodeError:
            method = getattr(self.request, "method", "") or ""
            safe = redact_url(self.url or "", signed=not self.address_var)  # a signed link's path stays hidden
            where = f"{method} {urlsplit(safe).path} on {urlsplit(safe).netloc}".strip()
            hint = (f"check that {self.address_var} names the API itself (not a proxy's or portal's page)"
                    if self.address_var else "run the step again; if it persists, the host is misbehaving")
            raise MalformedAnswerError(
                f"{where} answered {self.status_code} with {len(self.content)} bytes that are not JSON (or are cut "
                f"short): {hint}.", method=method, url=safe, status=self.status_code) from None


def cap_for(headers: Any, max_answer: int, max_download: int) -> tuple[int, str]:
    """The size cap of a request's answer, and the variable that sets it, from what the request accepts.

    Args:
        headers: the request's headers (its ``Accept``).
        max_answer, max_download: the settings.

    Returns:
        ``(bytes, variable)``: a request that accepts JSON gets the answer cap, one that accepts anything or
        text (state files, logs) the download cap.
    """
    accept = str(headers.get("Accept", "") if headers is not None else "").lower()
    if "json" in accept or not accept:
        return max_answer, "TFE_RUNBOOK_MAX_ANSWER_MB"
    return max_download, "TFE_RUNBOOK_MAX_DOWNLOAD_MB"


def read_body(response: requests.Response, *, limit: int, variable: str, method: str, signed: bool = False) -> None:
    """Read a streamed answer's body into ``response.content``, refusing one larger than `limit`.

    Args:
        response: an answer requested with ``stream=True``.
        limit: the most bytes (decoded) to hold.
        variable: the environment variable that sets `limit`, for the sentence.
        method: the request's method.
        signed: the URL is a signed link (its path is not quoted).

    Raises:
        AnswerTooLargeError: the declared length or the bytes read pass `limit`; the connection is closed.
        requests.RequestException: the transfer failed (the session maps it).
    """
    declared = response.headers.get("Content-Length", "")
    size = int(declared) if declared.strip().isdigit() else None
    if size is not None and size > limit:
        response.close()
        raise _too_large(response, method, limit, variable, signed, f"declaring {size} bytes")
    chunks: list[bytes] = []
    held = 0
    for chunk in response.iter_content(CHUNK):
        held += len(chunk)
        if held > limit:
            response.close()
            raise _too_large(response, method, limit, variable, signed, "going on past it")
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True


def _too_large(response: requests.Response, method: str, limit: int, variable: str, signed: bool,
               what: str) -> AnswerTooLargeError:
    safe = redact_url(response.url or "", signed=signed)
    cap = f"{limit / 2 ** 20:g} MiB" if limit >= 2 ** 20 else f"{limit} bytes"
    return AnswerTooLargeError(
        f"{method} {urlsplit(safe).path} on {urlsplit(safe).netloc} answered {response.status_code} {what}, over "
        f"the cap of {cap}; reading stopped there: if the answer is genuine, raise {variable}, else the host is "
        f"misbehaving.", method=method, url=safe, status=response.status_code)
