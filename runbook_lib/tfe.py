"""Client of the new Terraform Enterprise API (``/api/v2``), the calls a migration needs.

Thin by design: each method is one documented endpoint (or a create plus its read-back), and answers are
`runbook_lib.jsonapi.Resource` objects that keep the API's attributes as sent. Retries, rate limiting,
timeouts, TLS and error mapping are the transport's (`runbook_lib.http`).

Creates are POSTs and are never retried blindly: an ambiguous outcome (5xx, connection lost) is resolved by
reading back and adopting what exists (``resource.adopted`` is then True).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from runbook_lib.errors import ApiError, ConflictError, StateError, TransportError, ValidationError
from runbook_lib.api_client import ApiClient
from runbook_lib.http import create_or_adopt, redact_url
from runbook_lib.jsonapi import MEDIA_TYPE, Resource, document, paginate, parse_document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.state import read_header
from runbook_lib.tfe_teams import TeamsApi

API = "/api/v2"
JSONAPI = MEDIA_TYPE
FINAL_RUN_STATUSES = frozenset({"planned_and_finished", "applied", "errored", "discarded", "canceled",
                                "force_canceled", "policy_soft_failed"})
#: Text the CLI looks for to fall back to an inline state upload (hosts without hosted upload URLs).
_STATE_PARAM_MISSING = "param is missing or the value is empty: state"


def _host_facts(headers: Mapping[str, str]) -> dict[str, Any]:
    """The API version, application, release and rate limit a host's answer announces (None if absent)."""
    limit = headers.get("X-RateLimit-Limit")
    try:
        rate = float(limit) if limit else None
    except ValueError:
        rate = None
    return {"api_version": headers.get("TFP-API-Version"), "app_name": headers.get("TFP-AppName"),
            "tfe_version": headers.get("X-TFE-Version"), "rate_limit": rate}


def _state_identity(state: bytes) -> tuple[int, str | None]:
    """Return (serial, lineage) of a state file from its header (no full parse of a big state).

    Raises:
        StateError: not a JSON state with a serial.
    """
    try:
        header = read_header(state)
    except StateError as e:
        raise StateError("the state to upload is not a Terraform state file (JSON with a serial); "
                         "take it from the legacy backup, not another file.") from e
    return header.serial, header.lineage


#: Every workspace read asks for its current state version in the same answer (one request, not two).
#: The dashed spelling is the one go-tfe sends (`workspace.go` WSCurrentStateVer) and real TFE accepts.
_WITH_STATE = {"include": "current-state-version"}
#: How long a new state version may stay `pending` after its upload, and an unlock be refused because of
#: it, before the runbook gives up (real TFE finalizes asynchronously: state-versions.mdx, workspaces.mdx
#: "Unlock a workspace" says to retry for a short period).
FINALIZE_TIMEOUT = 120.0
#: What TFE's unlock refusal says while the latest state version is pending (go-tfe `workspace.go`).
_STILL_PENDING = "latest state version is still pending"


class StateVersionPendingError(ApiError):
    """The workspace stays locked: its latest state version was still pending when the unlock bound ran out
    (not a lock held by someone else, so callers that handle ConflictError do not mistake it for one)."""


@dataclass(frozen=True)
class HeldState:
    """What a workspace holds, known only from its state bytes (a state-version answer has no lineage or md5)."""

    state_version_id: str
    serial: int
    lineage: str | None
    md5: str
    data: bytes


class TfeClient(TeamsApi, ApiClient):
    """The new TFE API: JSON:API, the token as ``Authorization: Bearer`` (`ApiClient` builds the session)."""

    SESSION = {"which": "tfe", "auth_header": "Authorization", "auth_prefix": "Bearer ",
               "default_headers": {"Accept": JSONAPI}, "write_content_type": JSONAPI}

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
             fresh: bool = False) -> Resource:
        response = self.session.request("GET", API + path, params=params, reuse=reuse, fresh=fresh)
        return parse_document(response.json())  # type: ignore[return-value]

    def _find(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
              fresh: bool = False) -> Resource | None:
        response = self.session.request("GET", API + path, params=params, ok=(404,), reuse=reuse, fresh=fresh)
        return None if response.status_code == 404 else parse_document(response.json())  # type: ignore[return-value]

    def _send(self, method: str, path: str, doc: Mapping[str, Any] | None = None) -> Resource | None:
        response = self.session.request(method, API + path, data=json.dumps(doc) if doc is not None else None)
        if response.status_code == 204 or not response.content:
            return None
        return parse_document(response.json())  # type: ignore[return-value]

    def _list(self, path: str, params: Mapping[str, Any] | None = None, *, reuse: bool = False,
              fresh: bool = False) -> Iterator[Resource]:
        return paginate(self.session, API + path, params, reuse=reuse, fresh=fresh)

    def _create_unique(self, post, read_back, *, adopt_existing: bool, what: str) -> Resource:
        """Create an object whose name is unique, adopting it on ambiguity; on "name taken" adopt or refuse."""
        try:
            return create_or_adopt(post, read_back)
        except (ValidationError, ConflictError) as taken:
            existing = read_back()
            if existing is None:
                raise
            if not adopt_existing:
                raise ConflictError(f"{what} already exists; adopt it (adopt_existing=True) or choose another "
                                    f"name.", method=taken.method, url=taken.url, status=taken.status,
                                    errors=taken.errors) from taken
            existing.adopted = True
            return existing

    # -- service ----------------------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check the host and read what it says about itself.

        Returns:
            ``{"api_version", "app_name", "tfe_version", "rate_limit"}`` from the ping headers (None if absent).

        Raises:
            ApiError: the host answered an error; TransportError: unreachable or TLS failure.
        """
        return _host_facts(self.session.request("GET", API + "/ping").headers)

    def about(self) -> dict[str, Any]:
        """What the host says about itself (as `ping`), without a request when the last answer said it.

        Terraform reads the API version and the rate limit from the ping; hosts that send both headers
        on every answer (the sandbox, otf) have said it already in the last answer. Otherwise: a ping.
        """
        headers = self.session.last_headers
        if headers is not None and headers.get("TFP-API-Version") and headers.get("X-RateLimit-Limit"):
            return _host_facts(headers)
        return self.ping()

    def entitlements(self, organization: str) -> Resource:
        """GET the organization's entitlement set (``operations``, ``state-storage``...).

        Raises:
            NotFoundError: no such organization (or not visible to the token).
        """
        return self._get(f"/organizations/{_seg(organization)}/entitlement-set", reuse=True)

    # -- organizations ------------------------------------------------------------------------------------------

    def list_organizations(self) -> Iterator[Resource]:
        """Yield the organizations the token can see (paged)."""
        return self._list("/organizations")

    def get_organization(self, name: str, *, fresh: bool = False) -> Resource:
        """GET one organization.

        Raises:
            NotFoundError: it does not exist or the token cannot see it.
        """
        return self._get(f"/organizations/{_seg(name)}", reuse=True, fresh=fresh)

    def find_organization(self, name: str, *, fresh: bool = False) -> Resource | None:
        """Return the organization, or None when it does not exist (or is not visible)."""
        return self._find(f"/organizations/{_seg(name)}", reuse=True, fresh=fresh)

    def create_organization(self, name: str, email: str, *, adopt_existing: bool = True) -> Resource:
        """Create an organization, or adopt it if it already exists and the token can see it.

        Args:
            name: organization name.
            email: owner notification email.
            adopt_existing: when the name is taken by an organization the token can see, return it
                (``adopted=True``); when False, raise ConflictError instead.

        Returns:
            The organization.

        Raises:
            ConflictError: exists and ``adopt_existing`` is False.
            ValidationError: refused (bad name, or taken by an organization the token cannot see).
            ServerError, TransportError: ambiguous outcome and the organization does not exist.
        """
        doc = document("organizations", {"name": name, "email": email})
        return self._create_unique(lambda: self._send("POST", "/organizations", doc),
                                   lambda: self.find_organization(name), adopt_existing=adopt_existing,
                                   what=f"organization {name!r}")

    # -- OAuth --------------------------------------------------------------------------------------------------

    def list_oauth_clients(self, organization: str, *, fresh: bool = False) -> Iterator[Resource]:
        """Yield the organization's OAuth clients (VCS connections); ``fresh``: not from the read memo."""
        return self._list(f"/organizations/{_seg(organization)}/oauth-clients", reuse=True, fresh=fresh)

    def create_oauth_client(self, organization: str, *, service_provider: str, http_url: str, api_url: str,
                            oauth_token_string: str, name: str | None = None) -> Resource:
        """Create a VCS connection; on an ambiguous outcome adopt a client with the same provider, URL and name.

        Args:
            organization: organization name.
            service_provider: ``github``, ``gitlab_hosted``, ...
            http_url / api_url: VCS web and API base URLs.
            oauth_token_string: the VCS personal access token (a secret: sent in the body only, never logged).
            name: display name.

        Returns:
            The OAuth client (relationship ``oauth-tokens`` lists its tokens).

        Raises:
            ValidationError: refused; ServerError/TransportError: ambiguous and nothing was created.
        """
        doc = document("oauth-clients", {"service-provider": service_provider, "http-url": http_url,
                                         "api-url": api_url, "oauth-token-string": oauth_token_string,
                                         "name": name})

        def read_back() -> Resource | None:
            for client in self.list_oauth_clients(organization, fresh=True):
                if (client.get("service-provider") == service_provider and client.get("http-url") == http_url
                        and (name is None or client.get("name") == name)):
                    return client
            return None

        return create_or_adopt(lambda: self._send("POST", f"/organizations/{_seg(organization)}/oauth-clients",
                                                  doc), read_back)

    def list_oauth_tokens(self, oauth_client_id: str) -> Iterator[Resource]:
        """Yield the OAuth tokens of an OAuth client (their ids go into a workspace's ``vcs-repo``)."""
        return self._list(f"/oauth-clients/{_seg(oauth_client_id)}/oauth-tokens", reuse=True)

    # -- workspaces ---------------------------------------------------------------------------------------------

    def list_workspaces(self, organization: str, *, search: str | None = None) -> Iterator[Resource]:
        """Yield the organization's workspaces, 100 a request.

        Args:
            organization: organization name.
            search: ``search[name]`` substring filter.
        """
        params = {"search[name]": search} if search else None
        return self._list(f"/organizations/{_seg(organization)}/workspaces", params)

    def get_workspace(self, organization: str, name: str, *, fresh: bool = False) -> Resource:
        """GET a workspace by organization and name.

        Raises:
            NotFoundError: no such workspace.
        """
        return self._get(f"/organizations/{_seg(organization)}/workspaces/{_seg(name)}", _WITH_STATE, reuse=True,
                         fresh=fresh)

    def find_workspace(self, organization: str, name: str, *, fresh: bool = False) -> Resource | None:
        """Return the workspace, or None when there is none of that name."""
        return self._find(f"/organizations/{_seg(organization)}/workspaces/{_seg(name)}", _WITH_STATE, reuse=True,
                          fresh=fresh)

    def get_workspace_by_id(self, workspace_id: str, *, fresh: bool = False) -> Resource:
        """GET a workspace by id (``ws-...``).

        Raises:
            NotFoundError: no such workspace.
        """
        return self._get(f"/workspaces/{_seg(workspace_id)}", _WITH_STATE, reuse=True, fresh=fresh)

    def create_workspace(self, organization: str, name: str, attributes: Mapping[str, Any] | None = None, *,
                         adopt_existing: bool = False) -> Resource:
        """Create a workspace; resolve an ambiguous outcome by reading back.

        Args:
            organization: organization name.
            name: workspace name.
            attributes: further attributes with the API's names (``execution-mode``, ``auto-apply``,
                ``terraform-version``, ``working-directory``, ``vcs-repo`` {identifier, oauth-token-id,
                branch}, ``source-name``...); None values are left out.
            adopt_existing: when the name is already taken, return the existing workspace
                (``adopted=True``) instead of raising ConflictError. The caller compares it.

        Returns:
            The workspace (``adopted`` True when it was not created by this call).

        Raises:
            ConflictError: the name is taken and ``adopt_existing`` is False.
            ValidationError: refused (invalid name or attribute).
            ServerError, TransportError: ambiguous outcome and no such workspace exists.
        """
        doc = document("workspaces", {"name": name, **dict(attributes or {})})
        return self._create_unique(
            lambda: self._send("POST", f"/organizations/{_seg(organization)}/workspaces", doc),
            lambda: self.find_workspace(organization, name), adopt_existing=adopt_existing,
            what=f"workspace {organization}/{name}")

    def update_workspace(self, workspace_id: str, attributes: Mapping[str, Any]) -> Resource:
        """PATCH a workspace's attributes (idempotent by meaning, so safe to run again).

        Raises:
            ValidationError: refused; NotFoundError: no such workspace.
        """
        return self._send("PATCH", f"/workspaces/{_seg(workspace_id)}",
                          document("workspaces", attributes, id_=workspace_id))  # type: ignore[return-value]

    def delete_workspace(self, workspace_id: str) -> bool:
        """Safe-delete a workspace: the host refuses (409) while it still manages resources (workspaces.mdx
        "Safe Delete a workspace"); use `force_delete_workspace` only for one you mean to lose with its state.

        Returns:
            True if deleted now, False if it was already gone (a retried request answers 404).

        Raises:
            ConflictError: the workspace still manages resources; nothing was deleted.
        """
        response = self.session.request("POST", API + f"/workspaces/{_seg(workspace_id)}/actions/safe-delete",
                                        ok=(404,))
        return response.status_code != 404

    def force_delete_workspace(self, workspace_id: str) -> bool:
        """DELETE a workspace whatever it manages (workspaces.mdx "Force Delete a workspace").

        Returns:
            True if deleted now, False if it was already gone.
        """
        response = self.session.request("DELETE", API + f"/workspaces/{_seg(workspace_id)}", ok=(404,))
        return response.status_code != 404

    def lock_workspace(self, workspace_id: str, reason: str = "Locked by tfe-runbook") -> Resource:
        """Lock a workspace so no run can apply.

        An ambiguous outcome is resolved by reading the workspace back: if it is locked now it is returned
        with ``adopted=True`` (check ``locked-by`` if it matters who holds it).

        Raises:
            ConflictError: already locked (409).
        """
        path = f"/workspaces/{_seg(workspace_id)}/actions/lock"

        def read_back() -> Resource | None:
            ws = self.get_workspace_by_id(workspace_id)
            return ws if ws.get("locked") else None

        return create_or_adopt(lambda: self._send("POST", path, {"reason": reason}),
                               read_back)

    def unlock_workspace(self, workspace_id: str, *, pending_timeout: float = FINALIZE_TIMEOUT,
                         progress: Callable[[str], None] | None = print) -> Resource:
        """Unlock a workspace this token locked (an ambiguous outcome is resolved by reading back).

        While the workspace's latest state version is still pending the host refuses (409, or 503 on
        HCP; workspaces.mdx "Unlock a workspace": retry for a short period): retried every few seconds
        for up to ``pending_timeout`` seconds, with a progress line each time.

        Raises:
            ConflictError: locked by someone else, or not locked.
            StateVersionPendingError: still pending after the bound (its text says what to do).
        """
        deadline = time.monotonic() + pending_timeout
        delay = 0.5
        while True:
            try:
                return self._unlock(workspace_id, "unlock")
            except ApiError as exc:
                if _STILL_PENDING not in str(exc) + json.dumps(getattr(exc, "errors", None) or []):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StateVersionPendingError(
                        f"workspace {workspace_id} cannot be unlocked: its latest state version is still pending "
                        f"after {pending_timeout:.0f}s (the upload never completed or the host is slow to finalize "
                        f"it); check the workspace's state versions, then run the step again.", method=exc.method,
                        url=exc.url, status=exc.status, errors=exc.errors) from exc
                if progress:
                    progress(f"workspace {workspace_id}: latest state version still pending, unlock retried in "
                             f"{min(delay, left):.1f}s")
                time.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)

    def force_unlock_workspace(self, workspace_id: str) -> Resource:
        """Unlock a workspace whoever holds the lock (needs admin permission).

        Raises:
            ConflictError: not locked; AuthError: not allowed.
        """
        return self._unlock(workspace_id, "force-unlock")

    def _unlock(self, workspace_id: str, action: str) -> Resource:
        def read_back() -> Resource | None:
            ws = self.get_workspace_by_id(workspace_id)
            return None if ws.get("locked") else ws

        return create_or_adopt(lambda: self._send("POST", f"/workspaces/{_seg(workspace_id)}/actions/{action}"),
                               read_back)

    # -- state versions -----------------------------------------------------------------------------------------

    def state_version_of(self, workspace: Resource) -> Resource | None:
        """The current state version of a workspace just read, without another request where possible.

        Workspaces are read with ``include=current-state-version``: the relationship says whether there
        is one (null: none) and the included resource is it, as of the same answer. A workspace read
        some other way (a create's or PATCH's answer) falls back to `current_state_version`.
        """
        if "current-state-version" in workspace.relationships:
            if workspace.rel("current-state-version") is None:
                return None
            included = workspace.related("current-state-version")
            if included is not None:
                return included
        return self.current_state_version(workspace.id)

    def current_state_version(self, workspace_id: str, *, fresh: bool = False) -> Resource | None:
        """Return the workspace's current state version, or None when it has none (404)."""
        return self._find(f"/workspaces/{_seg(workspace_id)}/current-state-version", reuse=True, fresh=fresh)

    def list_state_versions(self, organization: str, workspace: str) -> Iterator[Resource]:
        """Yield a workspace's state versions, newest first.

        Args:
            organization, workspace: names (the API filters by name).
        """
        return self._list("/state-versions", {"filter[organization][name]": organization,
                                              "filter[workspace][name]": workspace})

    def get_state_version(self, state_version_id: str) -> Resource:
        """GET a state version by id (``sv-...``)."""
        return self._get(f"/state-versions/{_seg(state_version_id)}")

    def create_state_version(self, workspace_id: str, *, serial: int, md5: str, lineage: str | None = None,
                             state: bytes | None = None, json_state: bytes | None = None,
                             json_state_outputs: bytes | None = None, force: bool = False,
                             run_id: str | None = None) -> Resource:
        """POST a state version (the workspace must be locked by this token).

        Without ``state`` the server answers hosted upload URLs (see `upload_state`). An ambiguous outcome is
        resolved by reading back a state version with the same serial and md5.

        Args:
            workspace_id: ``ws-...``.
            serial, md5 (hex of the raw state bytes), lineage: the state's identity.
            state: raw state bytes to send inline (base64-encoded here).
            json_state / json_state_outputs: raw JSON (base64-encoded here).
            force: overwrite even if serial/lineage would be refused.
            run_id: relate the state version to a run.

        Returns:
            The state version.

        Raises:
            ConflictError: lineage or md5 conflict (nothing stored); ValidationError: refused.
        """
        def b64(value: bytes | None) -> str | None:
            return base64.b64encode(value).decode("ascii") if value is not None else None

        attributes = {"serial": int(serial), "md5": md5, "lineage": lineage, "state": b64(state),
                      "json-state": b64(json_state), "json-state-outputs": b64(json_state_outputs),
                      "force": force or None}
        doc = document("state-versions", attributes, {"run": ("runs", run_id) if run_id else None})

        def read_back() -> Resource | None:
            # A state-version answer carries no md5: ours is the one whose downloaded bytes have our md5,
            # or, sent without the state, the newest version of our serial still awaiting its upload (only
            # the lock holder, this token, can create one).
            ws = self.get_workspace_by_id(workspace_id)
            organization = ws.rel("organization")
            if not organization:
                return None
            for sv in self.list_state_versions(organization, ws["name"]):
                if sv.get("serial") == int(serial):
                    if sv.get("hosted-state-download-url"):
                        if hashlib.md5(self.download_state(sv)).hexdigest() == md5:  # noqa: S324 - identity
                            return sv
                    elif state is None and sv.get("status") == "pending" and sv.get("hosted-state-upload-url"):
                        return sv
                if (sv.get("serial") or 0) < int(serial):
                    return None  # newest first: older serials cannot be ours
            return None

        return create_or_adopt(lambda: self._send("POST", f"/workspaces/{_seg(workspace_id)}/state-versions", doc),
                               read_back)

    def upload_state(self, state_version: Resource, state: bytes, json_state: bytes | None = None) -> None:
        """PUT the raw state (and JSON state, when given) to the state version's hosted upload URLs.

        Sent without the API token, as Terraform does (the URLs are signed). PUT of the same bytes is
        idempotent, so the transport retries it.

        Raises:
            ApiError: the state version has no upload URL, or the upload failed.
        """
        url = state_version.get("hosted-state-upload-url")
        if not url:
            raise ApiError(f"state version {state_version.id} has no hosted-state-upload-url: send the state "
                           f"inline instead (push_state(..., inline=True)).")
        self._put_blob(url, state)
        json_url = state_version.get("hosted-json-state-upload-url")
        if json_state is not None and json_url:
            self._put_blob(json_url, json_state)

    def _put_blob(self, url: str, data: bytes) -> None:
        self.session.request("PUT", url, data=data, auth=False, signed=True,
                             headers={"Content-Type": "application/octet-stream"})

    def push_state(self, workspace_id: str, state: bytes, *, json_state: bytes | None = None,
                   force: bool = False, inline: bool = False, read_back: bool = True) -> Resource:
        """Store ``state`` as the workspace's new state version, the way Terraform's cloud backend does.

        POST the state version (serial, lineage, md5), PUT the bytes to the hosted upload URL, read the state
        version back (unless ``read_back`` is False). When the host wants the state inline (its answer says
        ``param is missing or the value is empty: state``) or ``inline`` is set, the state goes in the POST.
        The workspace must be locked by this token.

        Args:
            workspace_id: ``ws-...``.
            state: raw state bytes, exactly as downloaded from the legacy host.
            json_state: optional ``terraform show -json`` of the state.
            force: see `create_state_version`.
            inline: send the state in the POST body.
            read_back: GET the state version after the upload (its status then says "finalized"); False for a
                caller that proves the upload otherwise (step 3's verify downloads it and compares the bytes).

        Returns:
            The state version as read back after the upload (as created when ``read_back`` is False).

        Raises:
            StateError: ``state`` is not a state file.
            ConflictError: lineage/md5/serial conflict; nothing changed.
        """
        serial, lineage = _state_identity(state)
        md5 = hashlib.md5(state).hexdigest()
        common = dict(serial=serial, md5=md5, lineage=lineage, force=force)
        if inline:
            return self.create_state_version(workspace_id, state=state, json_state=json_state, **common)
        try:
            sv = self.create_state_version(workspace_id, **common)
        except ValidationError as e:
            if _STATE_PARAM_MISSING not in json.dumps(e.errors):
                raise
            return self.create_state_version(workspace_id, state=state, json_state=json_state, **common)
        if sv.get("hosted-state-upload-url"):
            self.upload_state(sv, state, json_state)
            return self.wait_finalized(sv) if read_back else sv
        return sv

    def wait_finalized(self, state_version: Resource, *, timeout: float = FINALIZE_TIMEOUT,
                       progress: Callable[[str], None] | None = print) -> Resource:
        """Re-read a state version until it is ``finalized`` (real TFE finalizes an upload asynchronously).

        Polls with a growing interval (0.25 s up to 5 s), printing a line at most every 10 s.

        Returns:
            The finalized state version.

        Raises:
            ApiError: still not finalized after ``timeout`` seconds, or ``discarded``; the text names it.
        """
        deadline = time.monotonic() + timeout
        delay, last_note = 0.25, time.monotonic()
        sv = state_version
        while True:
            if sv.get("status") == "finalized" and sv.get("hosted-state-download-url"):
                return sv
            if sv.get("status") == "discarded":
                raise ApiError(f"state version {sv.id} was discarded by the host (a newer one superseded it before "
                               f"its upload); run the step again.")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(f"state version {sv.id} is still {sv.get('status')!r} after {timeout:.0f}s: the host "
                               f"has not finalized the upload; check its state versions, then run the step again.")
            if progress and time.monotonic() - last_note >= 10:
                progress(f"state version {sv.id}: still {sv.get('status')!r}, waiting for the host to finalize it")
                last_note = time.monotonic()
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
            sv = self.get_state_version(sv.id)

    def held_state(self, workspace: Resource) -> HeldState | None:
        """What a workspace holds now: its current state version's bytes, serial, lineage and md5.

        Identity comes from the downloaded bytes alone (a state-version answer has no lineage or md5:
        state-versions.mdx, go-tfe `StateVersion`). None when the workspace has no state.

        Raises:
            StateError: the stored bytes are not a state file.
        """
        sv = self.state_version_of(workspace)
        if sv is None:
            return None
        data = self.download_state(sv)
        try:
            header = read_header(data)
        except StateError as e:
            raise StateError(f"the state workspace {workspace.id} holds (state version {sv.id}) is not a Terraform "
                             f"state file; inspect it in the workspace's state versions.") from e
        serial, lineage = header.serial, header.lineage
        return HeldState(sv.id, serial, lineage, hashlib.md5(data).hexdigest(), data)  # noqa: S324 - identity

    def download_state(self, state_version: Resource, *, expected_md5: str | None = None) -> bytes:
        """GET a state version's raw bytes from its hosted download URL.

        The token is sent only when the URL is on the API host itself. The answer has no md5 to check
        against; a caller that knows what the bytes must be passes ``expected_md5``.

        Returns:
            The state bytes.

        Raises:
            ApiError: no download URL; TransportError: the bytes do not match ``expected_md5``.
        """
        url = state_version.get("hosted-state-download-url")
        if not url:
            raise ApiError(f"state version {state_version.id} has no hosted-state-download-url yet "
                           f"(status {state_version.get('status')!r}); wait until it is finalized.")
        data = self.session.request("GET", url, signed=True, headers={"Accept": "*/*"}).content
        expected = expected_md5
        actual = hashlib.md5(data).hexdigest()  # noqa: S324 - transfer check
        if expected and expected != actual:
            raise TransportError(f"state download of {state_version.id} from {redact_url(self.session.url(url), signed=True)} "
                                 f"failed its md5 check ({len(data)} bytes, md5 {actual}, expected {expected}): the "
                                 f"transfer was cut or corrupted; run the step again.",
                                 method="GET", url=redact_url(self.session.url(url), signed=True), status=200)
        return data

    # -- variables ----------------------------------------------------------------------------------------------

    def list_variables(self, workspace_id: str) -> Iterator[Resource]:
        """Yield the workspace's variables (sensitive values come back as None)."""
        return self._list(f"/workspaces/{_seg(workspace_id)}/vars", reuse=True)

    def create_variable(self, workspace_id: str, key: str, value: str | None, *, category: str = "terraform",
                        hcl: bool = False, sensitive: bool = False, description: str | None = None) -> Resource:
        """Create a workspace variable; on an ambiguous outcome adopt one with the same key and category.

        Args:
            workspace_id: ``ws-...``.
            key, value: the variable (a sensitive value is write-only on the server).
            category: ``terraform`` or ``env``.
            hcl, sensitive, description: as the API.

        Raises:
            ValidationError: refused (e.g. key already exists in that category).
        """
        doc = document("vars", {"key": key, "value": value, "category": category, "hcl": hcl,
                                "sensitive": sensitive, "description": description})

        def read_back() -> Resource | None:
            return next((v for v in self.list_variables(workspace_id)
                         if v.get("key") == key and v.get("category") == category), None)

        return create_or_adopt(lambda: self._send("POST", f"/workspaces/{_seg(workspace_id)}/vars", doc),
                               read_back)

    def update_variable(self, workspace_id: str, variable_id: str, attributes: Mapping[str, Any]) -> Resource:
        """PATCH a variable's attributes (``value``, ``sensitive``, ``hcl``...)."""
        return self._send("PATCH", f"/workspaces/{_seg(workspace_id)}/vars/{_seg(variable_id)}",
                          document("vars", attributes, id_=variable_id))  # type: ignore[return-value]

    def delete_variable(self, workspace_id: str, variable_id: str) -> bool:
        """DELETE a variable.

        Returns:
            True if deleted now, False if it was already gone.
        """
        response = self.session.request("DELETE", API + f"/workspaces/{_seg(workspace_id)}/vars/{_seg(variable_id)}",
                                        ok=(404,))
        return response.status_code != 404

    # -- runs and plans -----------------------------------------------------------------------------------------

    def list_runs(self, workspace_id: str, *, statuses: list[str] | None = None) -> Iterator[Resource]:
        """Yield the workspace's runs, newest first.

        Args:
            statuses: ``filter[status]`` values (``["planning", "planned"]``).
        """
        params = {"filter[status]": ",".join(statuses)} if statuses else None
        return self._list(f"/workspaces/{_seg(workspace_id)}/runs", params)

    def current_run(self, workspace_id: str) -> tuple[Resource | None, str | None]:
        """The workspace's current run and the commit it plans, in one fresh workspace read.

        Reads ``include=current_run.configuration_version.ingress_attributes`` (go-tfe `workspace.go`
        WSCurrentrunConfigVerIngress): not the runs list, which has a budget of its own (30 reads a
        minute). A run queued behind another one is not yet current (run-states.mdx `pending`).

        Returns:
            ``(run, commit_sha)``: ``(None, None)`` without a current run; the sha is None for a run of
            an uploaded configuration.
        """
        ws = self._get(f"/workspaces/{_seg(workspace_id)}",
                       {"include": "current_run.configuration_version.ingress_attributes"}, fresh=True)
        run_id = ws.rel("current-run")
        if not run_id:
            return None, None
        included = {(r.type, r.id): r for r in ws.included}
        run = included.get(("runs", run_id)) or self.get_run(run_id)  # a host may leave an include out
        cv_id = run.rel("configuration-version")
        if not cv_id:
            return run, None
        cv = included.get(("configuration-versions", cv_id))
        ingress_id = cv.rel("ingress-attributes") if cv is not None else None
        ingress = included.get(("ingress-attributes", ingress_id)) if ingress_id else None
        if ingress is None and (cv is None or ingress_id):
            ingress = self.ingress_attributes(cv_id)
        return run, (ingress.get("commit-sha") if ingress is not None else None)

    def get_run(self, run_id: str) -> Resource:
        """GET a run (status, has-changes, relationships plan/apply/configuration-version)."""
        return self._get(f"/runs/{_seg(run_id)}")

    def create_run(self, workspace_id: str, *, message: str | None = None, plan_only: bool | None = None,
                   is_destroy: bool | None = None, auto_apply: bool | None = None,
                   configuration_version_id: str | None = None) -> Resource:
        """Queue a run.

        Runs have no unique key, so an ambiguous outcome (5xx, lost connection) is not adopted: the error is
        raised and the caller checks `list_runs` before queueing again.

        Raises:
            ConflictError: the workspace is locked; ValidationError: refused.
        """
        doc = document("runs", {"message": message, "plan-only": plan_only, "is-destroy": is_destroy,
                                "auto-apply": auto_apply},
                       {"workspace": ("workspaces", workspace_id),
                        "configuration-version": (("configuration-versions", configuration_version_id)
                                                  if configuration_version_id else None)})
        return self._send("POST", "/runs", doc)  # type: ignore[return-value]

    def discard_run(self, run_id: str, comment: str = "") -> None:
        """Discard a run that waits for confirmation (``planned``) or is queued, so it can never apply.

        Raises:
            ConflictError: the run cannot be discarded any more (applied, or already final).
        """
        self._send("POST", f"/runs/{_seg(run_id)}/actions/discard", {"comment": comment} if comment else None)

    def plan_log(self, plan: Resource) -> str:
        """The plan's log (plain text, as terraform printed it) from its signed ``log-read-url``.

        Raises:
            ApiError: the plan has no log URL yet, or the download failed.
        """
        url = plan.get("log-read-url")
        if not url:
            raise ApiError(f"plan {plan.id} has no log-read-url yet (status {plan.get('status')!r}).")
        response = self.session.request("GET", url, signed=True, headers={"Accept": "text/plain"})
        return response.content.decode("utf-8", errors="replace")

    def ingress_attributes(self, configuration_version_id: str) -> Resource | None:
        """The VCS facts of a configuration version (``commit-sha``, ``branch``, ``identifier``,
        ``commit-message``), or None when it came from an upload rather than a VCS push."""
        return self._find(f"/configuration-versions/{_seg(configuration_version_id)}/ingress-attributes", reuse=True)

    def get_plan(self, plan_id: str) -> Resource:
        """GET a plan (has-changes, resource-additions/changes/destructions, status, log-read-url)."""
        return self._get(f"/plans/{_seg(plan_id)}")

    def plan_json(self, plan_id: str | None = None, *, run_id: str | None = None) -> dict[str, Any] | None:
        """Return a plan's JSON output (``terraform show -json``), following the 307 to its download URL.

        Args:
            plan_id: ``plan-...``; or
            run_id: ``run-...`` (uses ``/runs/:id/plan/json-output``).

        Returns:
            The decoded plan JSON, or None while the plan is not finished (204).

        Raises:
            NotFoundError: no such plan; ApiError: the download failed.
        """
        path = f"/plans/{_seg(plan_id)}/json-output" if plan_id else f"/runs/{_seg(run_id or '')}/plan/json-output"
        # plans.mdx: the answer is a temporary redirect to a signed link (another host on HCP Terraform).
        response = self.session.request("GET", API + path, headers={"Accept": "application/json"},
                                        signed_redirect=True)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def cancel_run(self, run_id: str, comment: str = "") -> None:
        """Cancel a run that is still queued, planning or applying (run.mdx "Cancel a Run": a working run is
        canceled; only a paused one can be discarded).

        Raises:
            ConflictError: the run is paused or final (discard a paused one instead).
        """
        self._send("POST", f"/runs/{_seg(run_id)}/actions/cancel", {"comment": comment} if comment else None)

    # -- configuration versions ---------------------------------------------------------------------------------

    def create_configuration_version(self, workspace_id: str, *, auto_queue_runs: bool = True,
                                     speculative: bool = False) -> Resource:
        """Create a configuration version (answer carries ``upload-url``). Not adopted on ambiguity."""
        doc = document("configuration-versions", {"auto-queue-runs": auto_queue_runs, "speculative": speculative})
        return self._send("POST", f"/workspaces/{_seg(workspace_id)}/configuration-versions", doc)  # type: ignore[return-value]

    def get_configuration_version(self, configuration_version_id: str) -> Resource:
        """GET a configuration version (status pending/uploaded/errored)."""
        return self._get(f"/configuration-versions/{_seg(configuration_version_id)}")

    def upload_configuration(self, configuration_version: Resource, tar_gz: bytes) -> None:
        """PUT a .tar.gz of the configuration to the version's ``upload-url`` (signed; no token sent).

        Raises:
            ApiError: no upload URL, or the upload failed.
        """
        url = configuration_version.get("upload-url")
        if not url:
            raise ApiError(f"configuration version {configuration_version.id} has no upload-url "
                           f"(status {configuration_version.get('status')!r}).")
        self._put_blob(url, tar_gz)
