"""JSON:API documents of the new TFE API, built and parsed in one place, and the pagination generator.

Resources are wrapped thinly: `Resource` keeps the attributes exactly as the API names them (dashed keys),
the relationship ids, and the raw object, so nothing the API sends is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from runbook_lib.paging import DEFAULT_MAX_PAGES, PageGuard

#: The JSON:API media type: every request body, and every POST, PATCH and DELETE, carries it.
MEDIA_TYPE = "application/vnd.api+json"

PAGE_SIZE = 100  # the API's maximum; 2,000 workspaces are listed in 20 requests


@dataclass
class Resource:
    """One JSON:API resource object.

    Attributes:
        id, type: as sent.
        attributes: the ``attributes`` object, keys unchanged (``terraform-version``).
        relationships: name -> related id, list of ids, or None (``{"organization": "acme"}``).
        links: the resource's ``links``.
        raw: the resource object exactly as received.
        adopted: set by the clients' create calls when the object already existed and was adopted.
        included: the document's ``included`` resources (asked for with ``?include=``), for a single resource.
    """

    id: str
    type: str
    attributes: dict[str, Any] = field(default_factory=dict)
    relationships: dict[str, Any] = field(default_factory=dict)
    links: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    adopted: bool = False
    included: list["Resource"] = field(default_factory=list, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.attributes[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Return attribute ``key`` (dashed name), or ``default``."""
        return self.attributes.get(key, default)

    def rel(self, name: str) -> Any:
        """Return the id (or ids) of relationship ``name``, or None."""
        return self.relationships.get(name)

    def related(self, name: str) -> "Resource | None":
        """The included resource that to-one relationship ``name`` points at, or None when it was not included."""
        target = self.rel(name)
        return next((r for r in self.included if r.id == target), None) if isinstance(target, str) else None


def relationship(type_: str, id_: str) -> dict[str, Any]:
    """Return a to-one relationship object ``{"data": {"type": ..., "id": ...}}``."""
    return {"data": {"type": type_, "id": id_}}


def document(type_: str, attributes: Mapping[str, Any] | None = None,
             relationships: Mapping[str, Any] | None = None, id_: str | None = None) -> dict[str, Any]:
    """Build a request document.

    Args:
        type_: resource type (``workspaces``).
        attributes: attributes with the API's dashed names; None values are left out so the server's
            defaults apply.
        relationships: name -> ``(type, id)`` tuple, a `Resource`, or an already-formed relationship object.
        id_: the resource id (PATCH).

    Returns:
        ``{"data": {"type": ..., "attributes": {...}, ...}}``.
    """
    data: dict[str, Any] = {"type": type_}
    if id_ is not None:
        data["id"] = id_
    data["attributes"] = {k: v for k, v in (attributes or {}).items() if v is not None}
    rels: dict[str, Any] = {}
    for name, value in (relationships or {}).items():
        if value is None:
            continue
        if isinstance(value, Resource):
            rels[name] = relationship(value.type, value.id)
        elif isinstance(value, tuple):
            rels[name] = relationship(*value)
        else:
            rels[name] = value
    if rels:
        data["relationships"] = rels
    return {"data": data}


def _relationship_ids(rels: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rel in (rels or {}).items():
        data = rel.get("data") if isinstance(rel, Mapping) else None
        if isinstance(data, list):
            out[name] = [d.get("id") for d in data if isinstance(d, Mapping)]
        elif isinstance(data, Mapping):
            out[name] = data.get("id")
        else:
            out[name] = None
    return out


def parse_resource(obj: Mapping[str, Any]) -> Resource:
    """Wrap one resource object (the value of ``data``, or one element of a ``data`` list).

    Args:
        obj: a JSON:API resource object.

    Returns:
        A `Resource`.

    Raises:
        ValueError: ``obj`` is not a resource object (no ``type``).
    """
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise ValueError("not a JSON:API resource object: it has no 'type'")
    return Resource(id=str(obj.get("id", "")), type=obj["type"], attributes=dict(obj.get("attributes") or {}),
                    relationships=_relationship_ids(obj.get("relationships") or {}),
                    links=dict(obj.get("links") or {}), raw=dict(obj))


def parse_document(doc: Mapping[str, Any]) -> Resource | list[Resource]:
    """Parse a response document's ``data``: one `Resource`, or a list for a collection.

    Raises:
        ValueError: the document has no ``data``.
    """
    if not isinstance(doc, Mapping) or "data" not in doc:
        raise ValueError("not a JSON:API document: it has no 'data'")
    data = doc["data"]
    if isinstance(data, list):
        return [parse_resource(item) for item in data]
    resource = parse_resource(data)
    resource.included = [parse_resource(item) for item in doc.get("included") or [] if isinstance(item, Mapping)]
    return resource


def next_page(doc: Mapping[str, Any]) -> int | None:
    """Return ``meta.pagination.next-page`` of a collection document, or None on the last page."""
    pagination = ((doc.get("meta") or {}).get("pagination") or {}) if isinstance(doc, Mapping) else {}
    value = pagination.get("next-page")
    return int(value) if value not in (None, "") else None


def _total_count(doc: Mapping[str, Any]) -> int | None:
    pagination = ((doc.get("meta") or {}).get("pagination") or {}) if isinstance(doc, Mapping) else {}
    value = pagination.get("total-count")
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None


def paginate(session: Any, path: str, params: Mapping[str, Any] | None = None, *,
             page_size: int = PAGE_SIZE, reuse: bool = False, fresh: bool = False) -> Iterator[Resource]:
    """Yield every resource of a paged collection, following ``meta.pagination.next-page``.

    A `runbook_lib.paging.PageGuard` stops a listing whose host keeps it paging (a page number that does not
    advance, an item seen twice, more than ``Settings.max_pages`` pages) with one sentence naming the host.

    Args:
        session: an `runbook_lib.http.ApiSession` (anything with ``request(method, path, params=...)``; its
            ``host`` and ``settings.max_pages`` when it has them).
        path: collection path (``/api/v2/organizations/acme/workspaces``).
        params: extra query parameters (filters, search).
        page_size: ``page[size]``; 100 (the maximum) by default.
        reuse: the pages are a lookup the session's read memo may answer (see `runbook_lib.http.ReadMemo`).
        fresh: with ``reuse``, read the pages now and keep the new answers.

    Returns:
        An iterator of `Resource`; one request per page, made as the caller consumes.

    Raises:
        ApiError: from the session, for any page.
        PaginationError: the host's pagination does not end (see `runbook_lib.paging`).
    """
    settings = getattr(session, "settings", None)
    guard = PageGuard(getattr(session, "host", ""), f"the listing {path}",
                      getattr(settings, "max_pages", DEFAULT_MAX_PAGES))
    number: int | None = 1
    while number is not None:
        guard.page()
        query = dict(params or {})
        query.update({"page[number]": number, "page[size]": page_size})
        doc = (session.request("GET", path, params=query, reuse=True, fresh=fresh) if reuse
               else session.request("GET", path, params=query)).json()
        items = [parse_resource(item) for item in doc.get("data") or []]
        included = [parse_resource(item) for item in doc.get("included") or [] if isinstance(item, Mapping)]
        for resource in items:
            resource.included = included  # the page's `?include=` resources, shared by its items
            if resource.id:
                guard.item((resource.type, resource.id))
        yield from items
        number = guard.next_page(number, next_page(doc), _total_count(doc))


def parse_errors(body: bytes | str | Any, content_type: str = "") -> Any:
    """Return an error answer's error objects, for both APIs.

    Args:
        body: the raw body (bytes/str) or already-decoded JSON.
        content_type: the response Content-Type (unused beyond a hint; bodies are sniffed).

    Returns:
        The JSON:API ``errors`` list, the legacy ``errors`` list or dict as sent, or, for a body that is not
        JSON, ``[{"detail": <first 200 characters>}]``; ``[]`` for an empty body.
    """
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        if not body.strip():
            return []
        try:
            decoded = json.loads(body)
        except ValueError:
            return [{"detail": body.strip()[:200]}]
    else:
        decoded = body
    if isinstance(decoded, Mapping) and "errors" in decoded:
        return decoded["errors"]
    if isinstance(decoded, Mapping) and "error" in decoded:
        return [{"detail": str(decoded["error"])}]
    return []


def error_summary(errors: Any) -> str:
    """Join error objects into one short phrase for a message.

    Args:
        errors: as returned by `parse_errors`.

    Returns:
        ``"title: detail; ..."`` for JSON:API objects, the strings of a legacy list, ``"name has already been
        taken"`` for a legacy dict; "" when there is nothing to say.
    """
    parts: list[str] = []
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            values = value if isinstance(value, list) else [value]
            parts.extend(f"{key} {v}" for v in values)
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping):
                title, detail = item.get("title"), item.get("detail")
                pointer = (item.get("source") or {}).get("pointer") if isinstance(item.get("source"), Mapping) else None
                text = ": ".join(str(x) for x in (title, detail) if x) or str(item.get("status", ""))
                parts.append(f"{text} ({pointer})" if pointer else text)
            elif item is not None:
                parts.append(str(item))
    text = "; ".join(p for p in parts if p)
    return text if len(text) <= 500 else text[:497] + "..."


def segment(value: str) -> str:
    """Quote one URL path segment (names may hold characters that are special in URLs)."""
    return quote(str(value), safe="")
