"""JSON:API documents built and parsed in one place; pagination follows meta.pagination.next-page."""

from __future__ import annotations

import json

import pytest

from runbook_lib.jsonapi import (
    Resource,
    document,
    error_summary,
    next_page,
    paginate,
    parse_document,
    parse_errors,
    parse_resource,
)

WORKSPACE = {
    "id": "ws-SihZTyXKfNXUWuUa",
    "type": "workspaces",
    "attributes": {
        "name": "web-prod", "locked": True, "auto-apply": False, "execution-mode": "remote",
        "terraform-version": "1.11.4", "working-directory": "",
        "vcs-repo": {"identifier": "acme/web", "branch": "master", "oauth-token-id": "ot-1"},
        "permissions": {"can-update": True, "can-force-unlock": True},
    },
    "relationships": {
        "organization": {"data": {"id": "acme", "type": "organizations"}},
        "current-state-version": {"data": None},
        "remote-state-consumers": {"data": [{"id": "ws-a", "type": "workspaces"}, {"id": "ws-b", "type": "workspaces"}]},
        "latest-run": {"links": {"related": "/api/v2/runs/run-1"}},
    },
    "links": {"self": "/api/v2/organizations/acme/workspaces/web-prod"},
}


def test_document_leaves_out_none_and_builds_relationships():
    run = Resource(id="run-1", type="runs")
    doc = document("state-versions", {"serial": 3, "md5": "abc", "lineage": None, "force": False},
                   {"run": run, "workspace": ("workspaces", "ws-1"), "skip": None,
                    "raw": {"data": {"type": "x", "id": "y"}}})
    assert doc == {"data": {
        "type": "state-versions",
        "attributes": {"serial": 3, "md5": "abc", "force": False},
        "relationships": {"run": {"data": {"type": "runs", "id": "run-1"}},
                          "workspace": {"data": {"type": "workspaces", "id": "ws-1"}},
                          "raw": {"data": {"type": "x", "id": "y"}}},
    }}
    assert document("workspaces", {"name": "a"}, id_="ws-1") == {
        "data": {"type": "workspaces", "id": "ws-1", "attributes": {"name": "a"}}}
    json.dumps(doc)  # serialisable as is


def test_parse_resource_keeps_dashed_attributes_and_relationship_ids():
    ws = parse_resource(WORKSPACE)
    assert (ws.id, ws.type) == ("ws-SihZTyXKfNXUWuUa", "workspaces")
    assert ws["terraform-version"] == "1.11.4" and ws.get("vcs-repo")["identifier"] == "acme/web"
    assert ws.get("missing", "d") == "d"
    assert ws.rel("organization") == "acme"
    assert ws.rel("current-state-version") is None
    assert ws.rel("remote-state-consumers") == ["ws-a", "ws-b"]
    assert ws.rel("latest-run") is None  # links only
    assert ws.raw == WORKSPACE and ws.adopted is False
    assert "raw=" not in repr(ws)  # the raw object stays out of reprs (it can be large)


def test_parse_document_single_and_list_and_refusals():
    assert parse_document({"data": WORKSPACE}).id == WORKSPACE["id"]
    assert [r.id for r in parse_document({"data": [WORKSPACE, WORKSPACE]})] == [WORKSPACE["id"]] * 2
    assert parse_document({"data": []}) == []
    with pytest.raises(ValueError, match="no 'data'"):
        parse_document({"errors": []})
    with pytest.raises(ValueError, match="no 'type'"):
        parse_resource({"id": "x"})


@pytest.mark.parametrize("body, expected", [
    (b'{"errors":[{"status":"404","title":"not found"}]}', [{"status": "404", "title": "not found"}]),
    ('{"errors":["requires auth"]}', ["requires auth"]),
    ({"errors": {"name": ["has already been taken"]}}, {"name": ["has already been taken"]}),
    (b"<html>Bad Gateway</html>", [{"detail": "<html>Bad Gateway</html>"}]),
    (b"", []),
    (b'{"data": {}}', []),
    (b'{"error": "boom"}', [{"detail": "boom"}]),
])
def test_parse_errors_both_apis(body, expected):
    assert parse_errors(body) == expected


def test_error_summary():
    assert error_summary([{"status": "422", "title": "invalid attribute", "detail": "Name has already been taken",
                           "source": {"pointer": "/data/attributes/name"}}]) == \
        "invalid attribute: Name has already been taken (/data/attributes/name)"
    assert error_summary(["Serial The serial provided in the state file is not greater"]).startswith("Serial")
    assert error_summary({"name": ["has already been taken", "is too long"]}) == \
        "name has already been taken; name is too long"
    assert error_summary([{"status": "500"}]) == "500"
    assert error_summary([]) == "" and error_summary(None) == ""
    assert len(error_summary(["x" * 2000])) == 500


def test_next_page():
    assert next_page({"meta": {"pagination": {"current-page": 1, "next-page": 2, "total-pages": 3}}}) == 2
    assert next_page({"meta": {"pagination": {"current-page": 3, "next-page": None}}}) is None
    assert next_page({"data": []}) is None


class PagedSession:
    """Stands in for ApiSession: serves ``total`` items at whatever page size is asked."""

    def __init__(self, total: int, repeat_last: bool = False) -> None:
        self.total = total
        self.calls: list[dict] = []
        self.repeat_last = repeat_last

    def request(self, method, path, params=None):
        self.calls.append(dict(params))
        number, size = params["page[number]"], params["page[size]"]
        pages = max(1, -(-self.total // size))
        items = [{"id": f"ws-{i}", "type": "workspaces", "attributes": {"name": f"w{i}"}}
                 for i in range((number - 1) * size, min(number * size, self.total))]
        following = number + 1 if number < pages else (number if self.repeat_last else None)
        doc = {"data": items, "meta": {"pagination": {"current-page": number, "next-page": following,
                                                      "total-pages": pages, "total-count": self.total}}}

        class R:
            def json(self_inner):
                return doc
        return R()


def test_paginate_2000_items_in_20_requests_of_100():
    session = PagedSession(2000)
    names = [r["name"] for r in paginate(session, "/api/v2/organizations/acme/workspaces", {"search[name]": "w"})]
    assert len(names) == 2000 and len(set(names)) == 2000
    assert len(session.calls) == 20
    assert all(c["page[size]"] == 100 and c["search[name]"] == "w" for c in session.calls)


def test_paginate_is_lazy_and_stops_on_a_repeated_page():
    session = PagedSession(250, repeat_last=True)
    iterator = paginate(session, "/x")
    assert session.calls == []
    next(iterator)
    assert len(session.calls) == 1
    assert len(list(iterator)) == 249 and len(session.calls) == 3


def test_included_resources_are_kept_and_found_through_their_relationship():
    doc = {"data": {"id": "ws-1", "type": "workspaces", "attributes": {},
                    "relationships": {"current-state-version": {"data": {"id": "sv-2", "type": "state-versions"}},
                                      "latest-run": {"data": None}}},
           "included": [{"id": "sv-1", "type": "state-versions", "attributes": {"serial": 1}},
                        {"id": "sv-2", "type": "state-versions", "attributes": {"serial": 2}}]}
    ws = parse_document(doc)
    assert [r.id for r in ws.included] == ["sv-1", "sv-2"]
    assert ws.related("current-state-version")["serial"] == 2
    assert ws.related("latest-run") is None and ws.related("no-such") is None
