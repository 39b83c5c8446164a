"""Handlers of the new API for state versions and the hosted (archivist) upload and download URLs."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from runbook_lib.sandbox import errors
from runbook_lib.sandbox.store.base import parse_state
from runbook_lib.sandbox.store.workspaces import count_managed_resources
from runbook_lib.sandbox.tfe_api import _archivist, _rel, _user, _ws
from runbook_lib.sandbox.wire import Request, Response, check_bool, check_str, jsonapi_response, paginate, parse_resource, relationship_id


# --- state versions ---------------------------------------------------------------------------------------

def _state_facts(sv: dict[str, Any]) -> tuple[int, list[str]]:
    """(managed resources, output names) of a finalized version's state; (0, []) before."""
    if sv["status"] != "finalized" or not sv["state"]:
        return 0, []
    try:
        doc = parse_state(bytes(sv["state"]))["doc"]
    except errors.SandboxError:
        return 0, []
    outputs = doc.get("outputs") if isinstance(doc.get("outputs"), dict) else {}
    for module in doc.get("modules") or []:
        if isinstance(module, dict) and module.get("path") == ["root"] and isinstance(module.get("outputs"), dict):
            outputs = module["outputs"]
    return count_managed_resources(bytes(sv["state"])), sorted(outputs)


def _state_version_doc(req: Request, sv: dict[str, Any]) -> dict[str, Any]:
    # No `md5` and no `lineage` in an answer: they are create-only request attributes (state-versions.mdx
    # "State Version Attributes" and its sample responses; go-tfe `state_version.go` StateVersion struct).
    # The download URL appears once the version is finalized; the upload URLs only until their bytes
    # arrived ("Once you upload state content, this URL is hidden", state-versions.mdx).
    finalized = sv["status"] == "finalized"
    awaiting = sv["status"] == "pending"
    # Once processed: `billable-rum-count` (resources under management) and the `outputs` relationship
    # (state-versions.mdx "populated asynchronously"; go-tfe `state_version_integration_test.go` Read).
    managed, outputs = _state_facts(sv)
    return {"id": sv["id"], "type": "state-versions", "attributes": {
        "created-at": sv["created_at"], "serial": sv["serial"],
        "status": sv["status"], "size": len(sv["state"]) if sv["state"] is not None else 0,
        "state-version": sv["state_version"], "terraform-version": sv["terraform_version"],
        "resources-processed": finalized, "modules": None, "providers": None, "resources": [],
        "billable-rum-count": managed, "intermediate": False, "vcs-commit-sha": None, "vcs-commit-url": None,
        "hosted-state-download-url": _archivist(req, sv["download_token"]) if finalized else None,
        "hosted-json-state-download-url": (_archivist(req, sv["json_download_token"])
                                           if finalized and sv["json_state"] else None),
        "hosted-state-upload-url": (_archivist(req, sv["upload_token"])
                                    if awaiting and sv["state"] is None else None),
        "hosted-json-state-upload-url": (_archivist(req, sv["json_upload_token"])
                                         if awaiting and sv["json_state"] is None else None)},
        "relationships": {"workspace": _rel("workspaces", sv["workspace_id"]), "run": _rel("runs", sv["run_id"]),
                          "created-by": _rel("users", sv["created_by"]),
                          "outputs": {"data": [{"id": f"wsout-{sv['id'].removeprefix('sv-')}-{i}",
                                                "type": "state-version-outputs"} for i, _ in enumerate(outputs)]}},
        "links": {"self": f"/api/v2/state-versions/{sv['id']}"}}


def current_state_version(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/current-state-version`: 404 when the workspace has no state."""
    ws = _ws(req, ws_id=ws_id)
    sv = req.store.current_state_version(ws["id"])
    if sv is None:
        raise errors.NotFoundError()
    return jsonapi_response({"data": _state_version_doc(req, sv)})


def show_state_version(req: Request, sv_id: str) -> Response:
    """`GET /api/v2/state-versions/:id`."""
    return jsonapi_response({"data": _state_version_doc(req, req.store.get_state_version(sv_id, _user(req)))})


def list_workspace_state_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/state-versions` (paged, newest first)."""
    ws = _ws(req, ws_id=ws_id)
    rows, meta, links = paginate(req, req.store.list_state_versions(ws["id"]))
    return jsonapi_response({"data": [_state_version_doc(req, s) for s in rows], "links": links, "meta": meta})


def list_state_versions(req: Request) -> Response:
    """`GET /api/v2/state-versions?filter[workspace][name]=&filter[organization][name]=` (paged)."""
    org = req.query.get("filter[organization][name]")
    name = req.query.get("filter[workspace][name]")
    if not org or not name:
        raise errors.UnprocessableError("filter[organization][name] and filter[workspace][name] are required",
                                        pointer="/filter")
    ws = req.store.get_workspace_by_name(org, name, _user(req))
    rows, meta, links = paginate(req, req.store.list_state_versions(ws["id"]))
    return jsonapi_response({"data": [_state_version_doc(req, s) for s in rows], "links": links, "meta": meta})


def create_state_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/state-versions`: inline (`state`, base64) or for a hosted upload.

    201 with upload URLs; 409 when not locked by the uploader or for lineage/serial/md5 conflicts.
    """
    ws = _ws(req, ws_id=ws_id)
    attrs, rels = parse_resource(req, "state-versions")
    serial, md5 = attrs.get("serial"), attrs.get("md5")
    if serial is None:
        raise errors.UnprocessableError("Serial can't be blank", pointer="/data/attributes/serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise errors.UnprocessableError("Serial must be a non-negative integer", pointer="/data/attributes/serial")
    if not md5:
        raise errors.UnprocessableError("Md5 can't be blank", pointer="/data/attributes/md5")
    if not isinstance(md5, str) or len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5.lower()):
        raise errors.UnprocessableError("Md5 is invalid", pointer="/data/attributes/md5")
    check_str(attrs, "lineage")
    check_bool(attrs, "force")
    state = _b64(attrs, "state")
    json_state = _b64(attrs, "json-state")
    outputs = attrs.get("json-state-outputs")
    run_id = relationship_id(rels, "run", "runs")
    sv, created = req.store.create_state_version(
        ws, _user(req), serial=serial, md5=md5.lower(), lineage=attrs.get("lineage"), state=state,
        json_state=json_state, json_state_outputs=outputs if isinstance(outputs, str) else None,
        force=bool(attrs.get("force")), run_id=run_id)
    return jsonapi_response({"data": _state_version_doc(req, sv)}, 201 if created else 200)


def _b64(attrs: dict[str, Any], name: str) -> bytes | None:
    value = attrs.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.UnprocessableError(f"{name} must be a base64 string", pointer=f"/data/attributes/{name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.UnprocessableError(f"{name} is not valid base64", pointer=f"/data/attributes/{name}") from exc


# --- archivist (hosted upload/download URLs; the token in the URL is the authorisation) --------------------

def archivist_put(req: Request, token: str) -> Response:
    """`PUT /_archivist/v1/object/:token`: store uploaded state, JSON state or configuration tarball."""
    blob = req.store.blob(token)
    if blob is None or blob["direction"] != "upload":
        raise errors.NotFoundError()
    if blob["kind"] in ("state", "json-state"):
        req.store.upload_state(blob["owner_id"], blob["kind"], req.body)
    elif blob["kind"] == "cv":
        req.store.upload_configuration(blob["owner_id"], req.body)
    elif blob["kind"] == "legacy-cv":
        env_id, version = blob["owner_id"].rsplit(":", 1)
        req.store.upload_legacy_configuration(env_id, int(version), req.body)
    else:
        raise errors.NotFoundError()
    return Response(200)


def archivist_get(req: Request, token: str) -> Response:
    """`GET /_archivist/v1/object/:token`: download state, JSON state, plan JSON or plan log."""
    blob = req.store.blob(token)
    if blob is None or blob["direction"] != "download":
        raise errors.NotFoundError()
    data: bytes | None
    ctype = "application/octet-stream"
    if blob["kind"] in ("state", "json-state"):
        data = req.store.state_version_bytes(blob["owner_id"], json_state=blob["kind"] == "json-state")
    elif blob["kind"] == "plan-json":
        plan = req.store.plan_by_id(blob["owner_id"])
        data, ctype = (plan["json_output"] if plan else None), "application/json"
    elif blob["kind"] == "plan-log":
        plan = req.store.plan_by_id(blob["owner_id"])
        data, ctype = ((plan["log"] or "").encode() if plan else None), "text/plain"
    else:
        data = None
    if data is None:
        raise errors.NotFoundError()
    return Response(200, bytes(data), {"Content-Type": ctype})


