"""HTTP helpers for the sandbox tier's tests (imported by name: tests/sandbox is on sys.path)."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from runbook_lib.sandbox import Sandbox

JSONAPI = "application/vnd.api+json"


class Api:
    """requests against one sandbox with one token; 429s are retried (Retry-After honoured), nothing else.

    Args:
        sandbox: the sandbox.
        token: the token (default: the operator's); "" sends none.
        legacy: send it as `X-Atlas-Token` (legacy API) instead of a bearer token.
    """

    def __init__(self, sandbox: Sandbox, token: str | None = None, *, legacy: bool = False,
                 retry_429: bool = True) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.verify = sandbox.ca_file or True
        if retry_429:
            # A refused (429) request never reached a handler, so retrying it is safe for every method.
            retry = Retry(total=20, connect=0, read=0, other=0, status=20, status_forcelist=[429], allowed_methods=None,
                          respect_retry_after_header=True, raise_on_status=False, backoff_factor=0)
            self.session.mount("http://", HTTPAdapter(max_retries=retry))
            self.session.mount("https://", HTTPAdapter(max_retries=retry))
        token = sandbox.operator_token if token is None else token
        if token:
            if legacy:
                self.session.headers["X-Atlas-Token"] = token
            else:
                self.session.headers["Authorization"] = f"Bearer {token}"
        if not legacy:
            self.session.headers["Content-Type"] = JSONAPI

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.sandbox.address + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        # Per request: requests lets REQUESTS_CA_BUNDLE from the environment override `session.verify`.
        kwargs.setdefault("verify", self.sandbox.ca_file or True)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


def doc(kind: str, **attributes: Any) -> dict[str, Any]:
    """A JSON:API request document."""
    return {"data": {"type": kind, "attributes": attributes}}


def create_workspace(api: Api, org: str, name: str, **attributes: Any) -> dict[str, Any]:
    """Create a workspace and return its `data`."""
    response = api.post(f"/api/v2/organizations/{org}/workspaces", json=doc("workspaces", name=name, **attributes))
    assert response.status_code == 201, response.text
    return response.json()["data"]


def step_context(tmp_path: Any, step: str, env: str, org: str, mode: str = "apply", **options: Any) -> Any:
    """A step's context for the seeded legacy organization, its audit trail under `tmp_path/runs`.

    `options` may hold a whole batch's parameters (the rehearsal's): as in a batch, the step takes its own.
    """
    from runbook_lib.catalog import step_parameters
    from runbook_lib.context import StepContext

    return StepContext.create(step=step, legacy_org="acme-legacy", legacy_env=env, new_org=org, mode=mode,
                              audit_root=str(tmp_path / "runs"), interactive=False, **step_parameters(step, options))
