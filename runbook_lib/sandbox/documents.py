"""Which module renders which JSON:API resource: each resource's handler module owns its document and
registers it here, so a compound document (`?include=`) names the type it needs instead of importing the
module that builds it. That keeps the handler modules free of import loops (a workspace includes its
current run, a run includes its workspace).

    @documents.renders("runs")
    def run_doc(req, row): ...

    documents.render(req, "runs", row)

`routes` imports every handler module, so every renderer is registered before the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from runbook_lib.sandbox.wire import Request

Renderer = Callable[["Request", dict[str, Any]], dict[str, Any]]
_RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    """Register the function that renders resources of JSON:API type `kind` (one per type)."""
    def register(func: Renderer) -> Renderer:
        if _RENDERERS.get(kind, func) is not func:
            raise ValueError(f"two renderers for {kind!r}: {_RENDERERS[kind].__module__} and {func.__module__}")
        _RENDERERS[kind] = func
        return func
    return register


def render(req: "Request", kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The JSON:API resource object of `row`, rendered by the module that owns type `kind`.

    Raises:
        KeyError: no module registered `kind` (its handler module was not imported).
    """
    try:
        renderer = _RENDERERS[kind]
    except KeyError:
        raise KeyError(f"no renderer for {kind!r}: import its handler module (routes imports them all)") from None
    return renderer(req, row)
