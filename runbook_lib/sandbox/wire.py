"""Request and response objects the handlers see, plus the JSON:API and pagination helpers they share.

Handlers never touch sockets: the server builds a `Request`, a handler returns a `Response` (or raises a
`SandboxError`), and the server writes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode

from runbook_lib.sandbox import errors, params

if TYPE_CHECKING:  # pragma: no cover
    from runbook_lib.sandbox.store import Store

JSONAPI_TYPE = "application/vnd.api+json"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass
class Request:
    """One parsed HTTP request.

    Attributes:
        method, path: as received (path without the query string).
        query: query parameters (last value wins).
        headers: request headers (case-insensitive mapping).
        body: raw body bytes.
        store: the sandbox store.
        base_url: `scheme://host[:port]` as the client addressed the server (for absolute links).
        user: the authenticated user row (None on unauthenticated routes).
        app: the `SandboxServer` (only the admin handlers use it: faults, rate limit).
        route_key: the route's name in `params.TAKES` (`METHOD /api/v2/...`), whose body keys
            `parse_resource` holds the request to.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    store: "Store"
    base_url: str
    user: dict[str, Any] | None = None
    app: Any = None
    route_key: str | None = None

    def json(self) -> Any:
        """The body as JSON.

        Raises:
            BadRequestError: empty or not JSON.
        """
        if not self.body.strip():
            raise errors.BadRequestError("the request body is empty; a JSON document was expected")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.BadRequestError(f"the request body is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
        except ValueError as exc:
            # Python refuses to convert an integer of more than 4,300 digits (its int max_str_digits guard):
            # the body is not a document the API can take, so a 400, not an unexpected 500.
            raise errors.BadRequestError(f"the request body holds a number the sandbox cannot read: {exc}") from None
        except RecursionError:
            # Deeply nested arrays/objects exhaust the parser's stack: a 400, not an unexpected 500.
            raise errors.BadRequestError("the request body nests too deeply to be a JSON:API document") from None


@dataclass
class Response:
    """What a handler answers: status, headers, body bytes."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, content_type: str = "application/json") -> Response:
    """A JSON response."""
    return Response(status, json.dumps(obj).encode(), {"Content-Type": content_type})


def jsonapi_response(obj: Any, status: int = 200) -> Response:
    """A JSON:API response (`application/vnd.api+json`)."""
    return json_response(obj, status, JSONAPI_TYPE)


def parse_resource(req: Request, expected_type: str | tuple[str, ...] | None, *,
                   require_type: bool = True) -> tuple[dict, dict]:
    """Attributes and relationships of a JSON:API request document.

    Args:
        req: the request.
        expected_type: the `data.type` the endpoint takes, or the types (a different one answers 409, per JSON:API).
        require_type: False for endpoints whose clients send `"type": ""` (Terraform's lock body, go-tfe's
            team token options, which carry no JSON:API type); a type that is given must still match.

    Returns:
        (attributes, relationships), both dicts.

    Raises:
        BadRequestError: not JSON.
        UnprocessableError: no `data` object, attributes/relationships not objects, or a key the route does
            not honour (`params.check_body`).
        ConflictError: `data.type` differs from `expected_type`.
    """
    doc = req.json()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise errors.UnprocessableError("param is missing or the value is empty: data", pointer="/data")
    params.check_document(req.route_key, doc)
    kind = data.get("type")
    if expected_type is not None:
        if not kind and require_type:
            raise errors.UnprocessableError("param is missing or the value is empty: type", pointer="/data/type")
        expected = (expected_type,) if isinstance(expected_type, str) else expected_type
        if kind and kind not in expected:
            raise errors.ConflictError(f"the resource type {kind!r} does not match this endpoint "
                                       f"(expected {' or '.join(map(repr, expected))})")
    attrs = data.get("attributes") or {}
    rels = data.get("relationships") or {}
    if not isinstance(attrs, dict):
        raise errors.UnprocessableError("attributes must be an object", pointer="/data/attributes")
    if not isinstance(rels, dict):
        raise errors.UnprocessableError("relationships must be an object", pointer="/data/relationships")
    if kind and attrs.get("type") == kind:
        # pytfe (HashiCorp's Python SDK) repeats the document's type among the attributes: it asks for nothing
        attrs = {k: v for k, v in attrs.items() if k != "type"}
    params.check_body(req.route_key, attrs, rels)
    return attrs, rels


def includes(req: Request, allowed: tuple[str, ...] | dict[str, Any], served: str = "") -> list[str]:
    """The `?include=` names asked for (JSON:API 1.0 "Inclusion of Related Resources"), in their order; a 400
    naming each one the route does not serve, with `served` (what it includes, or why not) beside them."""
    asked = [i for i in (req.query.get("include") or "").split(",") if i]
    unknown = [i for i in asked if i not in allowed]
    if unknown:
        beside = f" ({served})" if served else ""
        raise errors.BadRequestError(f"Invalid include parameter: {', '.join(unknown)}{beside}")
    return asked


def relationship_id(rels: dict, name: str, expected_type: str | None = None) -> str | None:
    """The id of a to-one relationship in a request document, or None when absent.

    Raises:
        UnprocessableError: malformed relationship.
        ConflictError: wrong related type.
    """
    rel = rels.get(name)
    if rel is None:
        return None
    data = rel.get("data") if isinstance(rel, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise errors.UnprocessableError(f"relationship {name} needs data with an id",
                                        pointer=f"/data/relationships/{name}")
    if expected_type and data.get("type") and data["type"] != expected_type:
        raise errors.ConflictError(f"relationship {name} must be of type {expected_type!r}")
    return data["id"]


def check_bool(attrs: dict, name: str) -> None:
    """Raise 422 unless attribute `name` is absent or a boolean."""
    if name in attrs and not isinstance(attrs[name], bool):
        raise errors.UnprocessableError(f"{name} must be true or false", pointer=f"/data/attributes/{name}")


def check_str(attrs: dict, name: str, *, nullable: bool = True) -> None:
    """Raise 422 unless attribute `name` is absent, a string, or (when nullable) null."""
    if name in attrs and not (isinstance(attrs[name], str) or (nullable and attrs[name] is None)):
        raise errors.UnprocessableError(f"{name} must be a string", pointer=f"/data/attributes/{name}")


def _int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def paginate(req: Request, rows: list[Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Slice `rows` by `page[number]`/`page[size]` (default 20, at most 100) the way TFE does.

    Returns:
        (page rows, `meta` with `pagination`, `links` with self/first/prev/next/last).
    """
    size = min(max(_int_param(req.query.get("page[size]"), DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE)
    total = len(rows)
    pages = max(1, math.ceil(total / size))
    number = max(_int_param(req.query.get("page[number]"), 1), 1)
    start = (number - 1) * size
    chunk = rows[start:start + size]

    def link(n: int | None) -> str | None:
        if n is None:
            return None
        query = {k: v for k, v in req.query.items() if not k.startswith("page[")}
        query.update({"page[number]": n, "page[size]": size})
        return f"{req.base_url}{req.path}?{urlencode(query)}"

    prev_page = number - 1 if number > 1 else None
    next_page = number + 1 if number < pages else None
    meta = {"pagination": {"current-page": number, "page-size": size, "prev-page": prev_page,
                           "next-page": next_page, "total-pages": pages, "total-count": total}}
    links = {"self": link(number), "first": link(1), "prev": link(prev_page), "next": link(next_page),
             "last": link(pages)}
    return chunk, meta, links
