"""State versions: what a workspace holds, and storing a state the way Terraform's cloud backend does."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from runbook_lib.errors import ApiError, StateError, TransportError, ValidationError
from runbook_lib.http import create_or_adopt, redact_url
from runbook_lib.jsonapi import Resource, document
from runbook_lib.jsonapi import segment as _seg
from runbook_lib.state import read_header
from runbook_lib.tfe.base import FINALIZE_TIMEOUT
from runbook_lib.tfe.workspaces import WorkspacesApi

#: Text the CLI looks for to fall back to an inline state upload (hosts without hosted upload URLs).
_STATE_PARAM_MISSING = "param is missing or the value is empty: state"


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


@dataclass(frozen=True)
class HeldState:
    """What a workspace holds, known only from its state bytes (a state-version answer has no lineage or md5)."""

    state_version_id: str
    serial: int
    lineage: str | None
    md5: str
    data: bytes


class StateVersionsApi(WorkspacesApi):
    """State versions (``/workspaces/:id/state-versions``, ``/state-versions``) and their hosted bytes."""

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
