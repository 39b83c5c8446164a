"""Every documented parameter of every `/api/v2` route the sandbox serves is done as TFE documents it, or refused
with a 4xx that names it.

The documented parameters are the API pages' own tables (`tests/conformance/documented_parameters.json`, made by
`tests/conformance/extract_documented_parameters.py` from hashicorp/terraform-docs-common): each route's query
parameters, request-body keys and related resources (`include`). The sandbox declares per route what it honours
and what it refuses, with the reason (`runbook_lib/sandbox/params.py`). This test holds the two together:

- statically: the served routes are the declared ones, each documented (or its source cited); every documented
  key is honoured or refused with a reason; every honoured key has a probe below;
- on the wire, for every documented key: a refused one answers 400 (query) or 422 (body) naming it and changes
  nothing; a key honoured for some values only takes those and refuses another value, naming the key; every
  documented `include` is served (an `included` member) or a 400 naming it; every other honoured key is sent by
  its probe, which asserts what the page says it does.

A sandbox that answered 200 to a parameter and did nothing with it fails here: either the static check (the key
is neither declared honoured nor refused) or its probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from parameter_probes import _DONE, PROBES
from parameter_world import DOCS, PAGE, World, _send, _served, documented, jdoc, make_world, unique

from runbook_lib.sandbox import params


# --- the declarations against the documentation ------------------------------------------------------------

def test_the_routes_served_are_the_routes_declared_and_each_is_documented_or_cited():
    served = _served()
    assert served == set(params.TAKES), (sorted(served - set(params.TAKES)), sorted(set(params.TAKES) - served))
    assert served == set(DOCS["routes"]) | set(DOCS["undocumented"])


def test_every_documented_key_is_honoured_or_refused_with_a_reason():
    silent = [(route, key) for route in DOCS["routes"] for kind, key in documented(route)
              if kind != "include" and not params.TAKES[route].honours(key) and key not in params.TAKES[route].refused]
    assert not silent, f"documented but neither honoured nor refused: {silent}"
    assert all(why for takes in params.TAKES.values() for why in takes.refused.values())


def test_every_honoured_key_is_documented_or_cited():
    uncited = []
    for route, takes in params.TAKES.items():
        keys = {key for kind, key in documented(route) if kind != "include"}
        for key in (*takes.query, *takes.body, *takes.only):
            # a key inside a documented object attribute (`setting-overwrites.agent-pool`) is documented with it
            if key not in keys and key.split(".")[0] not in keys and key not in takes.sources and key != "include":
                uncited.append((route, key))
    assert not uncited, f"honoured but neither documented nor cited: {uncited}"


def test_the_docs_name_every_parameter_the_sandbox_refuses_or_takes_at_one_value_only():
    text = (Path(__file__).resolve().parents[2] / "docs" / "sandbox-parameters.md").read_text()
    unnamed = sorted({key for takes in params.TAKES.values() for key in (*takes.refused, *takes.only)
                      if f"`{key}`" not in text})
    assert not unnamed, f"docs/sandbox-parameters.md does not name: {unnamed}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with make_world(tmp_path_factory.mktemp("documented-parameters")) as w:
        yield w


# --- refused keys, values not modelled, includes --------------------------------------------------------------

def _sample(key: str) -> Any:
    return {"relationships": {"data": None}}.get(key, "x")


REFUSED = sorted((route, kind, key) for route in DOCS["routes"] for kind, key in documented(route)
                 if kind != "include" and key in params.TAKES[route].refused)
ONLY = sorted((route, key) for route in DOCS["routes"] for kind, key in documented(route)
              if key in params.TAKES[route].only)
INCLUDES = sorted((route, key) for route in DOCS["routes"] for kind, key in documented(route) if kind == "include")


def _member(key: str, value: Any) -> dict[str, Any]:
    """The body members that send `key` (`vcs-repo.tags-regex` -> attrs {vcs-repo: {tags-regex: ...}})."""
    if key.startswith("relationships."):
        return {"rels": {key.removeprefix("relationships."): {"data": [] if value == "x" else value}}}
    if key.startswith("filter."):
        parts = key.split(".")
        return {"top": {parts[0]: {parts[1]: {parts[2]: value}}}}
    if "." in key:
        outer, inner = key.split(".", 1)
        return {"attrs": {outer: {inner: value}}}
    return {"attrs": {key: value}}


def _refusal_names(answer: Any, name: str) -> None:
    """The refusal's message names the parameter (a relationship by its name)."""
    detail = " ".join(e.get("detail", "") for e in answer.json().get("errors", []))
    assert name.removeprefix("relationships.") in detail, (name, detail)


@pytest.mark.parametrize("route, kind, key", REFUSED, ids=[f"{r}:{k}" for r, _, k in REFUSED])
def test_a_documented_parameter_the_sandbox_does_not_model_is_a_4xx_naming_it(world: World, route: str, kind: str,
                                                                               key: str):
    mark = world.sandbox.log_mark()
    if kind == "query":
        sent = key.replace("[i]", "[0]")
        answer = _send(world, route, query={sent: "x"})
        assert answer.status_code == 400, answer.text
        _refusal_names(answer, sent)
    else:
        answer = _send(world, route, **_member(key, "x"))
        assert answer.status_code == 422, answer.text
        _refusal_names(answer, key)
    assert "not modelled by the sandbox" in answer.text
    last = world.sandbox.request_log(since=mark)[-1]
    assert last["changes"] == 0


#: (route, key) -> (a value the sandbox takes, the attribute path its answer shows it at, a value it refuses)
ONLY_VALUES: dict[str, tuple[Any, Any]] = {
    "collaborator-auth-policy": ("password", "two_factor_mandatory"),
    "send-passing-statuses-for-untriggered-speculative-plans": (False, True),
    "aggregated-commit-status-enabled": (False, True),
    "speculative-plan-management-enabled": (False, True),
    "owners-team-saml-role-id": (None, "owners"),
    "assessments-enforced": (False, True),
    "auto-destroy-activity-duration": (None, "14d"),
    "organization-scoped": (True, False),
    "assessments-enabled": (False, True),
    "auto-apply-run-trigger": (False, True),
    "global-remote-state": (True, False),
    "vcs-repo.ingress-submodules": (False, True),
    "vcs-repo.tags-regex": (None, "v.*"),
    "allow-config-generation": (False, True),
}


@pytest.mark.parametrize("route, key", ONLY, ids=[f"{r}:{k}" for r, k in ONLY])
def test_a_setting_is_taken_at_the_value_the_sandbox_models_and_refused_at_another(world: World, route: str,
                                                                                   key: str):
    taken, refused = ONLY_VALUES[key]
    allowed, why = params.TAKES[route].only[key]
    assert taken in allowed and refused not in allowed and why
    extra = {"vcs-repo": {"identifier": "acme/app", "oauth-token-id": world.token_id}} if key.startswith("vcs-repo.") \
        else {}
    members = _member(key, taken)
    members["attrs"] = {**extra, **{k: ({**extra.get(k, {}), **v} if isinstance(v, dict) else v)
                                    for k, v in members.get("attrs", {}).items()}}
    ok = _send(world, route, **members)
    assert ok.status_code in (200, 201), ok.text
    answered = ok.json()["data"]["attributes"]
    outer = key.split(".")[0]
    if outer in answered and not key.startswith("vcs-repo."):
        assert answered[outer] == taken
    mark = world.sandbox.log_mark()
    members = _member(key, refused)
    members["attrs"] = {**extra, **{k: ({**extra.get(k, {}), **v} if isinstance(v, dict) else v)
                                    for k, v in members.get("attrs", {}).items()}}
    bad = _send(world, route, **members)
    assert bad.status_code == 422, bad.text
    _refusal_names(bad, key)
    assert "not modelled by the sandbox" in bad.text and world.sandbox.request_log(since=mark)[-1]["changes"] == 0


@pytest.mark.parametrize("route, value", INCLUDES, ids=[f"{r}:{v}" for r, v in INCLUDES])
def test_a_documented_include_is_served_or_a_400_naming_it(world: World, route: str, value: str):
    answer = _send(world, route, query={"include": value})
    if answer.status_code == 200:
        assert "included" in answer.json(), answer.text
        return
    assert answer.status_code == 400, answer.text
    assert value in answer.text


def test_an_undocumented_parameter_is_refused_naming_it(world: World):
    listed = world.api.get(f"/api/v2/organizations/{world.org}/workspaces", params={"search[nmae]": "probe"})
    assert listed.status_code == 400 and "search[nmae]" in listed.text
    mark = world.sandbox.log_mark()
    made = world.api.post(f"/api/v2/organizations/{world.org}/workspaces", json=jdoc("workspaces", {
        "name": unique("ws"), "auto-aply": True}))
    assert made.status_code == 422 and "auto-aply" in made.text
    assert world.sandbox.request_log(since=mark)[-1]["changes"] == 0


# --- pagination ------------------------------------------------------------------------------------------------

PAGED = sorted({route for route in DOCS["routes"] for kind, key in documented(route) if key in PAGE})


@pytest.mark.parametrize("route", PAGED)
def test_page_number_and_size_page_a_list(world: World, route: str):
    # api-docs index "Query Parameters": `page[number]`, `page[size]` (20 by default, at most 100)
    whole = _send(world, route)
    assert whole.status_code == 200, whole.text
    first = _send(world, route, query={"page[size]": "1", "page[number]": "1"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["data"]) <= 1
    assert body["meta"]["pagination"]["page-size"] == 1 and body["meta"]["pagination"]["current-page"] == 1
    if len(whole.json()["data"]) > 1:
        second = _send(world, route, query={"page[size]": "1", "page[number]": "2"}).json()["data"]
        assert second and second[0]["id"] != body["data"][0]["id"]


def test_the_variable_list_is_not_paged_and_answers_every_variable_on_any_page(world: World):
    # workspace-variables.mdx "List Variables" shows no pagination; the list's own `page[*]` change nothing
    ws = world.scratch_ws()
    for key in ("a", "b"):
        world.api.post(f"/api/v2/workspaces/{ws['id']}/vars", json=jdoc("vars", {"key": key, "value": "1",
                                                                               "category": "env"}))
    listed = world.api.get(f"/api/v2/workspaces/{ws['id']}/vars", params={"page[size]": "1", "page[number]": "2"})
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2


# --- every honoured documented key has its probe ----------------------------------------------------------------

HONOURED = sorted((route, key) for route in DOCS["routes"] for kind, key in documented(route)
                  if kind != "include" and key not in PAGE and params.TAKES[route].honours(key)
                  and key not in params.TAKES[route].only)


def test_every_honoured_documented_key_has_a_probe():
    missing = [case for case in HONOURED if case not in PROBES]
    assert not missing, f"honoured without a probe: {missing}"


@pytest.mark.parametrize("route, key", HONOURED, ids=[f"{r}:{k}" for r, k in HONOURED])
def test_an_honoured_parameter_does_what_the_page_says(world: World, route: str, key: str):
    fn = PROBES.get((route, key))
    if fn is None:
        pytest.fail(f"no probe for {route} {key}")
    done = (fn, route)
    if done not in _DONE:  # one probe holds several keys of a route: it runs once, each key reports its result
        try:
            fn(world, route)
            _DONE[done] = None
        except BaseException as exc:  # noqa: BLE001 - re-raised for every key the probe holds
            _DONE[done] = exc
    if _DONE[done] is not None:
        raise _DONE[done]
