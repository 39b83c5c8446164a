"""Client of the legacy Terraform Enterprise API (``/api/v1``, the Atlas era).

The legacy product documented only a few endpoints; the rest existed only behind its UI. This module is the
only place in the runbook that knows legacy paths, so a real deployment whose legacy host offers other
endpoints changes this one file. Every method says which kind it uses:

* **documented**: in the legacy API docs, spoken by Terraform 0.11's ``atlas`` backend (state) or by the
  documented variables / configuration / plan endpoints. A real legacy host has them.
* **sandbox-defined**: UI-only on the real product (list/read environments, read variables, VCS link and
  unlink, runs, lock/unlock, delete, the teams with access to an environment). The rehearsal sandbox
  serves them as written in ``docs/legacy-api-contract.md``; a real legacy host may not.

Bodies are plain JSON (not JSON:API); answers are returned as the dicts the API sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from runbook_lib.errors import ConflictError, StateError, TransportError
from runbook_lib.api_client import ApiClient
from runbook_lib.http import create_or_adopt, redact_url
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


class LegacyClient(ApiClient):
    """The legacy API: plain JSON, the token in ``X-Atlas-Token`` (`ApiClient` builds the session)."""

    SESSION = {"which": "legacy", "auth_header": "X-Atlas-Token", "default_headers": {"Accept": "application/json"}}

    def _json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.session.request(method, API + path, json=body, **kwargs)
        return response.json() if response.content else None

    # -- environments (sandbox-defined) ---------------------------------------------------------------------

    def list_environments(self, organization: str) -> Iterator[dict[str, Any]]:
        """Yield the organization's environments, 100 a request.  [sandbox-defined]

        Returns:
            An iterator of ENV dicts (username, name, slug, terraform_version, locked, vcs, current_run...).
        """
        page = 1
        while True:
            doc = self._json("GET", f"/environments/{quote(organization, safe='')}", params={"page": page})
            yield from doc.get("environments") or []
            total = int((doc.get("meta") or {}).get("total_pages") or page)
            if page >= total:
                return
            page += 1

    def get_environment(self, organization: str, environment: str, *, fresh: bool = False) -> dict[str, Any]:
        """GET one environment (a lookup the read memo may answer unless ``fresh``).  [sandbox-defined]

        Raises:
            NotFoundError: unknown (or foreign) environment.
        """
        return self._json("GET", f"/environments/{_slug(organization, environment)}", reuse=True,
                          fresh=fresh)["environment"]

    def find_environment(self, organization: str, environment: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """Return the environment, or None when it does not exist.  [sandbox-defined]"""
        response = self.session.request("GET", API + f"/environments/{_slug(organization, environment)}",
                                        ok=(404,), reuse=True, fresh=fresh)
        return None if response.status_code == 404 else response.json()["environment"]

    def delete_environment(self, organization: str, environment: str) -> bool:
        """DELETE an environment with its state, variables and runs.  [sandbox-defined]

        Returns:
            True if deleted now; False if it was already gone (a retried DELETE answers 404). The caller
            proves existence before and absence after.
        """
        response = self.session.request("DELETE", API + f"/environments/{_slug(organization, environment)}",
                                        ok=(404,))
        return response.status_code != 404

    # -- state (documented: Terraform 0.11's atlas backend) ---------------------------------------------------

    def _state_path(self, organization: str, environment: str) -> str:
        return API + f"/terraform/state/{_slug(organization, environment)}"

    def serves_state_of(self, organization: str, name: str) -> tuple[bool, str]:
        """Whether this host serves the state endpoint for ``organization/name`` (a new workspace, for the
        CLI path: Terraform 0.11's atlas backend writes there).  [documented endpoint]

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

    def get_state(self, organization: str, environment: str, *, atlas_run_id: str = "",
                  fresh: bool = False) -> LegacyState | None:
        """Download the environment's state, checked against the server's Content-MD5.  [documented]

        Args:
            organization, environment: the legacy slug's two parts.
            atlas_run_id: sent as the atlas backend does (empty outside a run).
            fresh: download now even when the read memo holds the state (see `runbook_lib.http.ReadMemo`).

        Returns:
            The state, or None when the environment has none: 204, an empty body, or a 404 for an
            environment that exists (Terraform 0.11's atlas backend reads all three as "no state":
            `backend/atlas/state_client.go` Get, so a host may answer any of them).

        Raises:
            NotFoundError: unknown environment (a 404 here and on the environment endpoint).
            TransportError: the body does not match its Content-MD5 (cut or corrupted transfer).
        """
        path = self._state_path(organization, environment)
        response = self.session.request("GET", path, params={"atlas_run_id": atlas_run_id},
                                        headers={"Accept": "*/*"}, reuse=True, fresh=fresh, ok=(404,))
        if response.status_code == 404:
            # "No state" and "no such environment" look alike here; the environment endpoint tells them apart.
            self.get_environment(organization, environment, fresh=fresh)
            return None
        data = response.content
        if response.status_code == 204 or not data:
            return None
        digest = hashlib.md5(data)
        sent = response.headers.get("Content-MD5")
        if sent and sent.strip() != base64.b64encode(digest.digest()).decode("ascii"):
            url = redact_url(self.session.url(path))
            raise TransportError(f"state download from {url} failed its md5 check ({len(data)} bytes, Content-MD5 "
                                 f"{sent.strip()}, body md5 {base64.b64encode(digest.digest()).decode('ascii')}): "
                                 f"the transfer was cut or corrupted; run the step again.",
                                 method="GET", url=url, status=response.status_code)
        ident = _identity(data)
        serial = ident.get("serial")
        return LegacyState(data=data, md5=digest.hexdigest(), serial=int(serial) if serial is not None else None,
                           lineage=ident.get("lineage"), version=ident.get("version"),
                           terraform_version=ident.get("terraform_version"))

    def put_state(self, organization: str, environment: str, state: bytes, *, atlas_run_id: str = "") -> bool:
        """Upload a state with its Content-MD5, as the atlas backend does.  [documented]

        The same endpoint serves new workspaces (``<new org>/<workspace>``). PUT of identical bytes is
        idempotent, so the transport retries it; if a retry meets the server's 409/412 because the first
        attempt did land, the state is read back and the call succeeds when the stored md5 is ours.

        Returns:
            True if stored now; False if the server already held exactly these bytes.

        Raises:
            ConflictError: 409 same serial with different content, 412 serial not greater, or the target is
                locked by another user; the server's state is unchanged.
            ValidationError: 400 (Content-MD5 does not match the body).
        """
        path = self._state_path(organization, environment)
        md5_b64 = base64.b64encode(hashlib.md5(state).digest()).decode("ascii")
        try:
            self.session.request("PUT", path, params={"atlas_run_id": atlas_run_id}, data=state,
                                 headers={"Content-MD5": md5_b64, "Content-Type": "application/json"})
        except ConflictError:
            stored = self.get_state(organization, environment)
            if stored is not None and stored.md5 == hashlib.md5(state).hexdigest():
                return False
            raise
        return True

    def list_states(self, organization: str) -> Iterator[dict[str, Any]]:
        """Yield the organization's state entries (``updated_at``, ``environment{username,name}``).  [documented]

        The documented list has no page count: a page shorter than 20 entries is the last.
        """
        from runbook_lib.paging import PageGuard  # a host that never sends a short page is stopped by the guard

        guard = PageGuard(self.session.host, f"states of {organization}", self.session.settings.max_pages)
        page = 1
        while True:
            guard.page()
            doc = self._json("GET", "/terraform/state", params={"username": organization, "page": page})
            states = guard.items(doc.get("states") or [])
            yield from states
            if len(states) < STATE_LIST_PAGE_SIZE:
                return
            page += 1

    # -- variables ----------------------------------------------------------------------------------------

    def get_variables(self, organization: str, environment: str) -> list[dict[str, Any]]:
        """List the environment's variables.  [sandbox-defined]

        Returns:
            Dicts with key, value (None when sensitive), category (``terraform``/``env``), hcl, sensitive.
        """
        return self._json("GET", f"/environments/{_slug(organization, environment)}/variables",
                          reuse=True)["variables"]

    def put_variables(self, organization: str, environment: str, variables: Mapping[str, str]) -> None:
        """Set environment variables; an empty value removes one.  [documented]

        PUT of the same map is idempotent, so the transport may retry it.
        """
        self._json("PUT", f"/environments/{_slug(organization, environment)}/variables",
                   {"variables": dict(variables)})

    # -- VCS link (sandbox-defined) ---------------------------------------------------------------------------

    def link_vcs(self, organization: str, environment: str, repo: str, *, branch: str = "master",
                 working_directory: str = "") -> dict[str, Any]:
        """Link the environment to a VCS repository.  [sandbox-defined]

        Returns:
            The environment after the change.
        """
        return self._json("PUT", f"/environments/{_slug(organization, environment)}/vcs",
                          {"vcs": {"repo": repo, "branch": branch, "working_directory": working_directory}}
                          )["environment"]

    def unlink_vcs(self, organization: str, environment: str) -> dict[str, Any]:
        """Unlink the environment's VCS integration (idempotent).  [sandbox-defined]

        Returns:
            The environment after the change (``vcs`` is None).
        """
        return self._json("DELETE", f"/environments/{_slug(organization, environment)}/vcs")["environment"]

    # -- runs -----------------------------------------------------------------------------------------------

    def list_runs(self, organization: str, environment: str) -> list[dict[str, Any]]:
        """List the environment's runs, newest first.  [sandbox-defined]

        Returns:
            RUN dicts (id, status, commit_sha, message, created_at, has_changes).
        """
        return self._json("GET", f"/environments/{_slug(organization, environment)}/runs")["runs"]

    def trigger_plan(self, organization: str, environment: str, *, destroy: bool = False) -> dict[str, Any]:
        """Queue a plan run.  [documented]

        A POST that is not retried and not adopted on an ambiguous outcome: check `list_runs` before
        queueing again.
        """
        return self._json("POST", f"/environments/{_slug(organization, environment)}/plan", {"destroy": destroy})

    def latest_configuration_version(self, organization: str, environment: str) -> dict[str, Any]:
        """GET the latest configuration version (version, metadata, tf_vars, variables).  [documented]"""
        return self._json("GET", f"/terraform/configurations/{_slug(organization, environment)}/versions/latest"
                          )["version"]

    def get_user(self, username: str) -> dict[str, Any]:
        """GET a user (username, email): the cheapest check that the token works.  [documented]"""
        return self._json("GET", f"/user/{quote(username, safe='')}")["user"]

    # -- lock (sandbox-defined) -------------------------------------------------------------------------------

    def lock(self, organization: str, environment: str, reason: str = "Locked by tfe-runbook") -> dict[str, Any]:
        """Lock the environment; an ambiguous outcome is resolved by reading back.  [sandbox-defined]

        Returns:
            The environment (locked).

        Raises:
            ConflictError: already locked.
        """
        path = f"/environments/{_slug(organization, environment)}/lock"

        def read_back() -> dict[str, Any] | None:
            env = self.get_environment(organization, environment)
            return env if env.get("locked") else None

        return create_or_adopt(lambda: self._unwrap(self._json("POST", path, {"reason": reason})), read_back)

    def unlock(self, organization: str, environment: str) -> dict[str, Any]:
        """Unlock the environment; an ambiguous outcome is resolved by reading back.  [sandbox-defined]

        Raises:
            ConflictError: locked by another user.
        """
        path = f"/environments/{_slug(organization, environment)}/unlock"

        def read_back() -> dict[str, Any] | None:
            env = self.get_environment(organization, environment)
            return None if env.get("locked") else env

        return create_or_adopt(lambda: self._unwrap(self._json("POST", path, {})), read_back)

    @staticmethod
    def _unwrap(doc: Any) -> Any:
        # The contract answers lock/unlock with ENV; accept {"environment": ENV} as well.
        return doc["environment"] if isinstance(doc, dict) and "environment" in doc else doc

    # -- teams (sandbox-defined) ------------------------------------------------------------------------------

    def get_teams(self, organization: str, environment: str) -> list[dict[str, Any]]:
        """The teams with access to the environment.  [sandbox-defined]

        The legacy product managed teams in its UI only; adapt this method to what your legacy host offers.

        Returns:
            [{"name": "ops", "access": "read"|"write"|"admin", "members": ["alice", ...]}], by name.
        """
        return self._json("GET", f"/environments/{_slug(organization, environment)}/teams", reuse=True)["teams"]
