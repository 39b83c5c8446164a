"""Client of the legacy Terraform Enterprise API (``/api/v1``, the Atlas era): what the host documented.

The legacy host documented few endpoints (hashicorp/terraform-website ``content/source/docs/enterprise-legacy/
api/*.html.md`` at 98a35d246, 2018) and Terraform 0.11's ``atlas`` backend speaks one more way to them
(``backend/atlas/state_client.go``). This client uses those and nothing else:

* the states list (``GET /terraform/state?username=<org>&page=N``): which environments have state;
* the state (``GET``/``PUT /terraform/state/<org>/<env>``), as the atlas backend reads and writes it;
* the latest configuration version (its number, ``metadata`` such as ``git_branch`` and ``remote_slug``, and
  the non-sensitive Terraform variables), and creating one;
* the variables PUT, queueing a plan, and reading a user (an organization is a user on the legacy product).

Everything else (reading an environment, its environment and sensitive variables, its teams, locks, runs,
unlinking VCS, deleting it) was done in the legacy UI. The runbook asks the operator for those facts (the
mapping file's columns) and actions (steps 4 and 6), and proves the results through these endpoints.

A 404 from the legacy host means "missing, or not visible to this token" (index.html.md: "404 Not Found codes
are returned for all resources that a user does not have access to, as well as for resources that don't
exist"). No method here turns a 404 into "gone": `read_state` reports it as `NOT_FOUND`, `get_state` raises,
`latest_configuration_version` answers None (atlas-go's own reading), and each caller treats that as unknown.

Bodies are plain JSON (not JSON:API); answers are returned as the dicts the API sent.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from runbook_lib.errors import ConflictError, NotFoundError, StateError, TransportError
from runbook_lib.api_client import ApiClient
from runbook_lib.http import redact_url
from runbook_lib.settings import Settings
from runbook_lib.state import read_header

API = "/api/v1"
#: Page size of the documented state list; a shorter page is the last.
STATE_LIST_PAGE_SIZE = 20


def _slug(organization: str, environment: str) -> str:
    """``<org>/<env>`` with each part quoted as a path segment (environment names may contain dots)."""
    return f"{quote(organization, safe='')}/{quote(environment, safe='')}"


@dataclass(frozen=True)
class LegacyState:
    """A state file as the legacy host served it.

    Attributes:
        data: the raw bytes, unchanged (what gets backed up and uploaded).
        md5: hex md5 of ``data`` (checked against the server's Content-MD5 when it sent one).
        serial, lineage, version, terraform_version: read from the JSON; None when absent.
    """

    data: bytes
    md5: str
    serial: int | None
    lineage: str | None
    version: int | None
    terraform_version: str | None

    def __repr__(self) -> str:  # the bytes may hold secrets in resource attributes; never print them
        return (f"LegacyState(md5={self.md5!r}, serial={self.serial!r}, lineage={self.lineage!r}, "
                f"version={self.version!r}, bytes={len(self.data)})")


def _identity(data: bytes) -> dict[str, Any]:
    """Light read of serial/lineage/version (the state's header only; the full parse is `runbook_lib.state`'s job)."""
    try:
        header = read_header(data)
    except StateError:
        return {}
    return {"serial": header.serial, "lineage": header.lineage, "version": header.version,
            "terraform_version": header.terraform_version}


#: What a state read found: the state, no state (204 or an empty body), or a 404 (missing or not visible).
STATE, NO_STATE, NOT_FOUND = "state", "no state", "not found"


@dataclass(frozen=True)
class StateRead:
    """One read of an environment's state, with what the host answered.

    Attributes:
        found: `STATE`, `NO_STATE` (204 or empty: the environment exists and has none) or `NOT_FOUND` (404:
            the environment is missing *or* not visible to this token; the legacy API does not say which).
        state: the state when `found` is `STATE`.
        url: what was read (credentials and query removed), for messages.
    """

    found: str
    state: LegacyState | None
    url: str


class LegacyClient(ApiClient):
    """The legacy API: plain JSON, the token in ``X-Atlas-Token`` (`ApiClient` builds the session)."""

    SESSION = {"which": "legacy", "auth_header": "X-Atlas-Token", "default_headers": {"Accept": "application/json"}}

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.token_var = settings.legacy_token_var  # named in messages (never the token itself)

    def _json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.session.request(method, API + path, json=body, **kwargs)
        return response.json() if response.content else None

    # -- state (documented: states.html.md, Terraform 0.11's atlas backend) ------------------------------------

    def _state_path(self, organization: str, environment: str) -> str:
        return API + f"/terraform/state/{_slug(organization, environment)}"

    def serves_state_of(self, organization: str, name: str) -> tuple[bool, str]:
        """Whether this host serves the state endpoint for ``organization/name`` (a new workspace, for the
        CLI path: Terraform 0.11's atlas backend writes there).

        Only a GET, answered without reading the state into the memo.

        Returns:
            (True, "") on 200 or 204; (False, why) on 404, naming the path asked.

        Raises:
            AuthError: the token is refused; ApiError: any other answer.
        """
        path = self._state_path(organization, name)
        response = self.session.request("GET", path, params={"atlas_run_id": ""}, headers={"Accept": "*/*"},
                                        ok=(404,), fresh=True)
        if response.status_code == 404:
            return False, f"GET {path} answered 404 on {self.session.base_url}"
        return True, ""

    def read_state(self, organization: str, environment: str, *, atlas_run_id: str = "",
                   fresh: bool = False) -> StateRead:
        """Read the environment's state and say what the host answered (a 404 is reported, never raised).

        Args:
            organization, environment: the legacy slug's two parts.
            atlas_run_id: sent as the atlas backend does (empty outside a run).
            fresh: download now even when the read memo holds the state (see `runbook_lib.http.ReadMemo`).

        Returns:
            A `StateRead`: the state (checked against the server's Content-MD5), `NO_STATE` for a 204 or an
            empty body, `NOT_FOUND` for a 404 (missing or not visible: never proof of either).

        Raises:
            TransportError: the body does not match its Content-MD5 (cut or corrupted transfer).
        """
        path = self._state_path(organization, environment)
        url = redact_url(self.session.url(path))
        response = self.session.request("GET", path, params={"atlas_run_id": atlas_run_id},
                                        headers={"Accept": "*/*"}, reuse=True, fresh=fresh, ok=(404,))
        if response.status_code == 404:
            return StateRead(NOT_FOUND, None, url)
        data = response.content
        if response.status_code == 204 or not data:
            return StateRead(NO_STATE, None, url)
        digest = hashlib.md5(data)
        sent = response.headers.get("Content-MD5")
        if sent and sent.strip() != base64.b64encode(digest.digest()).decode("ascii"):
            raise TransportError(f"state download from {url} failed its md5 check ({len(data)} bytes, Content-MD5 "
                                 f"{sent.strip()}, body md5 {base64.b64encode(digest.digest()).decode('ascii')}): "
                                 f"the transfer was cut or corrupted; run the step again.",
                                 method="GET", url=url, status=response.status_code)
        ident = _identity(data)
        serial = ident.get("serial")
        return StateRead(STATE, LegacyState(data=data, md5=digest.hexdigest(),
                                            serial=int(serial) if serial is not None else None,
                                            lineage=ident.get("lineage"), version=ident.get("version"),
                                            terraform_version=ident.get("terraform_version")), url)

    def get_state(self, organization: str, environment: str, *, atlas_run_id: str = "",
                  fresh: bool = False) -> LegacyState | None:
        """Download the environment's state (see `read_state`).

        Returns:
            The state, or None when the environment has none (204 or an empty body).

        Raises:
            NotFoundError: 404: the environment does not exist or this token cannot see it (the legacy API
                answers both alike, so the message says both).
            TransportError: the body does not match its Content-MD5.
        """
        read = self.read_state(organization, environment, atlas_run_id=atlas_run_id, fresh=fresh)
        if read.found == NOT_FOUND:
            raise NotFoundError(not_visible(f"{organization}/{environment}", read.url, self.token_var),
                                method="GET", url=read.url, status=404)
        return read.state

    def put_state(self, organization: str, environment: str, state: bytes, *, atlas_run_id: str = "") -> bool:
        """Upload a state with its Content-MD5, as the atlas backend does.

        The same endpoint serves new workspaces (``<new org>/<workspace>``). PUT of identical bytes is
        idempotent, so the transport retries it; if a retry meets the server's 409 because the first
        attempt did land, the state is read back and the call succeeds when the stored md5 is ours.

        Returns:
            True if stored now; False if the server already held exactly these bytes.

        Raises:
            ConflictError: 409, the same serial with different content (the only conflict the atlas backend
                knows, `state_client.go` Put), or the target is locked by another user; nothing changed.
            ValidationError: 400 (Content-MD5 does not match the body).
        """
        path = self._state_path(organization, environment)
        md5_b64 = base64.b64encode(hashlib.md5(state).digest()).decode("ascii")
        try:
            self.session.request("PUT", path, params={"atlas_run_id": atlas_run_id}, data=state,
                                 headers={"Content-MD5": md5_b64, "Content-Type": "application/json"})
        except ConflictError:
            stored = self.read_state(organization, environment, fresh=True).state
            if stored is not None and stored.md5 == hashlib.md5(state).hexdigest():
                return False
            raise
        return True

    def list_states(self, organization: str, *, fresh: bool = False) -> Iterator[dict[str, Any]]:
        """Yield the organization's state entries (``updated_at``, ``environment{username,name}``).  [documented]

        The documented list has no page count: a page shorter than 20 entries is the last. A lookup: a step
        may reuse a page it has just read (`fresh` reads it again).
        """
        from runbook_lib.paging import PageGuard  # a host that never sends a short page is stopped by the guard

        guard = PageGuard(self.session.host, f"states of {organization}", self.session.settings.max_pages)
        page = 1
        while True:
            guard.page()
            doc = self._json("GET", "/terraform/state", params={"username": organization, "page": page},
                             reuse=True, fresh=fresh)
            states = guard.items(doc.get("states") or [])
            yield from states
            if len(states) < STATE_LIST_PAGE_SIZE:
                return
            page += 1

    def environments_with_state(self, organization: str, *, fresh: bool = False) -> list[str]:
        """The names of the organization's environments that have a state (the states list), sorted."""
        return sorted({(entry.get("environment") or {}).get("name")
                       for entry in self.list_states(organization, fresh=fresh)
                       if (entry.get("environment") or {}).get("username") == organization} - {None, ""})

    # -- configurations (documented: configurations.html.md) -------------------------------------------------

    def latest_configuration_version(self, organization: str, environment: str, *,
                                     fresh: bool = False) -> dict[str, Any] | None:
        """The latest configuration version: ``version``, ``metadata``, ``tf_vars``, ``variables``.

        Returns:
            The version, or None on a 404: no configuration version, or the environment is missing or not
            visible (atlas-go's `TerraformConfigLatest` reads a 404 as "none"; so does this, and no caller
            takes it for proof of anything).
        """
        response = self.session.request(
            "GET", API + f"/terraform/configurations/{_slug(organization, environment)}/versions/latest",
            ok=(404,), reuse=True, fresh=fresh)
        if response.status_code == 404:
            return None
        return (response.json() or {}).get("version")

    def create_configuration_version(self, organization: str, environment: str, metadata: Mapping[str, str],
                                     variables: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create a configuration version (then PUT the archive to its ``upload_path``).

        Returns:
            ``{"version": N, "upload_path": URL, "token": ...}``.
        """
        body: dict[str, Any] = {"metadata": dict(metadata)}
        if variables is not None:
            body["variables"] = dict(variables)
        return self._json("POST", f"/terraform/configurations/{_slug(organization, environment)}/versions",
                          {"version": body})

    # -- variables, runs, users (documented: environments, runs, users.html.md) -----------------------------

    def put_variables(self, organization: str, environment: str, variables: Mapping[str, str]) -> None:
        """Set Terraform variables; an empty value removes one (the answer is an empty body).

        PUT of the same map is idempotent, so the transport may retry it.
        """
        self._json("PUT", f"/environments/{_slug(organization, environment)}/variables",
                   {"variables": dict(variables)})

    def trigger_plan(self, organization: str, environment: str, *, destroy: bool = False) -> dict[str, Any]:
        """Queue a plan run (the host answers 404 when the environment has no configuration version).

        A POST that is not retried: there is no documented way to list runs, so a doubtful outcome is not
        resolved by reading back.
        """
        return self._json("POST", f"/environments/{_slug(organization, environment)}/plan", {"destroy": destroy})

    def get_user(self, username: str, *, fresh: bool = False) -> dict[str, Any]:
        """GET a user or an organization (users.html.md: "Users are both users and organizations"); a lookup
        a step may reuse (`fresh` reads it again).

        Returns:
            The user object itself (``username``, ``avatar_url``, ``profile_html``, ...; not wrapped).

        Raises:
            NotFoundError: missing, or not visible to this token.
        """
        return self._json("GET", f"/user/{quote(username, safe='')}", reuse=True, fresh=fresh)


def configuration_variables(cv: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The non-sensitive Terraform variables of a legacy configuration version: `tf_vars` (with the HCL flag)
    where the host sends it, else the `variables` map (configurations.html.md; atlas-go `TFVar`)."""
    if not cv:
        return []
    listed = cv.get("tf_vars")
    if isinstance(listed, list) and listed:
        return [{"key": v["key"], "value": v.get("value") or "", "category": "terraform", "hcl": bool(v.get("hcl")),
                 "sensitive": False} for v in listed if isinstance(v, dict) and v.get("key")]
    return [{"key": k, "value": str(v), "category": "terraform", "hcl": False, "sensitive": False}
            for k, v in sorted((cv.get("variables") or {}).items())]


def ui_url(address: str, organization: str, environment: str, page: str = "settings") -> str:
    """Where an environment's page is in the legacy UI: `/terraform/<org>/environments/<env>/<page>` (the
    2018 legacy docs name these paths: runs/multifactor-authentication.html.md for `settings`,
    vcs/bitbucket.html.md for `changes/runs`); `page` is settings, integrations, variables or changes/runs."""
    return (f"{address.rstrip('/')}/terraform/{quote(organization, safe='')}/environments/"
            f"{quote(environment, safe='')}/{page}")


def not_visible(slug: str, url: str, token_var: str) -> str:
    """The sentence for a legacy 404: it never says "gone", because the host answers a missing environment and
    one this token cannot see alike."""
    return (f"{url} answered 404: {slug} does not exist or ${token_var} cannot see it (the legacy API answers both "
            f"the same way, so this proves neither); check the name, and that the token's user is a member of the "
            f"legacy organization")
