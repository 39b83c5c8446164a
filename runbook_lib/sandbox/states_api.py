"""Handlers of the new API for state versions and the hosted (archivist) upload and download URLs."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.store.base import parse_state
from runbook_lib.sandbox.store.runs import APPLY_FINAL
from runbook_lib.sandbox.store.workspaces import count_managed_resources
from runbook_lib.sandbox.tfe_api import _archivist, _rel, _user, _ws, _ws_of
from runbook_lib.sandbox.wire import Request, Response, includes, check_bool, check_str, jsonapi_response, paginate, parse_resource, relationship_id


# --- state versions ---------------------------------------------------------------------------------------

def _state_outputs(sv: dict[str, Any]) -> list[dict[str, Any]]:
    """The root outputs of a version, by name: [{name, value, sensitive, type}] where `type` is the cty type a
    format-4 state records (None for a 0.11 state, which records only a simple type). They come from the
    `json-state-outputs` the version was created with ("If provided, the workspace outputs populate
    immediately", state-versions.mdx), else from its state once finalized."""
    given = _given_outputs(sv)
    if given is not None:
        return given
    if sv["status"] != "finalized" or not sv["state"]:
        return []
    try:
        doc = parse_state(bytes(sv["state"]))["doc"]
    except errors.SandboxError:
        return []
    outputs = doc.get("outputs") if isinstance(doc.get("outputs"), dict) else {}
    legacy = False
    for module in doc.get("modules") or []:
        if isinstance(module, dict) and module.get("path") == ["root"] and isinstance(module.get("outputs"), dict):
            outputs, legacy = module["outputs"], True
    found = []
    for name in sorted(outputs):
        out = outputs[name] if isinstance(outputs[name], dict) else {}
        found.append({"name": name, "value": out.get("value"), "sensitive": bool(out.get("sensitive")),
                      "type": None if legacy else out.get("type"), "legacy_type": out.get("type") if legacy else None})
    return found


def _given_outputs(sv: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The outputs of a version's `json-state-outputs` (base64 of `terraform show -json`'s `values.outputs`:
    name -> {value, type, sensitive}), or None when it was created without."""
    if not sv.get("json_state_outputs"):
        return None
    doc = json.loads(base64.b64decode(sv["json_state_outputs"]))
    return [{"name": name, "value": out.get("value"), "sensitive": bool(out.get("sensitive")), "type": out.get("type"),
             "legacy_type": None} for name, out in sorted(doc.items())]


def _state_facts(sv: dict[str, Any]) -> tuple[int, list[str]]:
    """(managed resources, output names) of a finalized version's state; (0, []) before."""
    names = [o["name"] for o in _state_outputs(sv)]
    if sv["status"] != "finalized" or not sv["state"]:
        return 0, names
    return count_managed_resources(bytes(sv["state"])), names


def output_id(sv_id: str, index: int) -> str:
    """The id of a state version's output: stable per version and position by name (`wsout-...`)."""
    return f"wsout-{sv_id.removeprefix('sv-')}-{index}"


def _simple_type(detailed: Any, value: Any) -> str:
    """The `type` attribute of an output (state-version-outputs.mdx samples: "string", "array", ...)."""
    kind = detailed[0] if isinstance(detailed, list) and detailed else detailed
    if kind in ("tuple", "list", "set") or isinstance(value, list):
        return "array"
    if kind in ("object", "map") or isinstance(value, dict):
        return "object"
    if kind == "number" or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return "number"
    if kind == "bool" or isinstance(value, bool):
        return "boolean"
    return "string"


def output_doc(sv: dict[str, Any], index: int, out: dict[str, Any], *, reveal: bool = True) -> dict[str, Any]:
    """A `state-version-outputs` resource (state-version-outputs.mdx). `detailed_type` is the cty type of a
    format-4 state, null for a 0.11 state (Terraform then reads the whole state instead:
    `internal/cloud/state.go` GetRootOutputValues). `reveal` False nulls a sensitive value ("Sensitive values
    are not revealed and will be returned as `null`", Show Current State Version Outputs)."""
    hidden = out["sensitive"] and not reveal
    return {"id": output_id(sv["id"], index), "type": "state-version-outputs", "attributes": {
        "name": out["name"], "sensitive": out["sensitive"],
        "type": out["legacy_type"] or _simple_type(out["type"], out["value"]),
        "value": None if hidden else out["value"], "detailed_type": out["type"]},
        "links": {"self": f"/api/v2/state-version-outputs/{output_id(sv['id'], index)}"}}


@documents.renders("state-versions")
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
                          "outputs": {"data": [{"id": output_id(sv["id"], i), "type": "state-version-outputs"}
                                              for i, _ in enumerate(outputs)]}},
        "links": {"self": f"/api/v2/state-versions/{sv['id']}"}}


#: `?include=` on the state-version GET routes (state-versions.mdx "Available Related Resources"; go-tfe
#: `state_version.go` StateVersionIncludeOpt). A multi-part path includes the run along it (JSON:API 1.0
#: "Inclusion of Related Resources").
STATE_VERSION_INCLUDES = ("created_by", "run", "run.created_by", "run.configuration_version", "outputs")


def _sv_includes(req: Request) -> list[str]:
    return includes(req, STATE_VERSION_INCLUDES, f"state versions include {', '.join(STATE_VERSION_INCLUDES)}")


def _sv_document(req: Request, data: Any, svs: list[dict[str, Any]]) -> dict[str, Any]:
    """A state-version document with the `included` resources `?include=` asks for (outputs with their values:
    these routes need the right to read state, which reveals them)."""
    includes = _sv_includes(req)
    doc: dict[str, Any] = {"data": data}
    if not includes:
        return doc
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def add(kind: str, row: dict[str, Any] | None) -> None:
        if row is not None:
            rendered = documents.render(req, kind, row)
            out[(kind, rendered["id"])] = rendered

    for sv in svs:
        if "created_by" in includes and sv["created_by"]:
            add("users", req.store.find_user_by_id(sv["created_by"]))
        run = req.store.run_by_id(sv["run_id"]) if sv["run_id"] else None
        if run is not None and {"run", "run.created_by", "run.configuration_version"} & set(includes):
            add("runs", run)
            if "run.created_by" in includes and run["created_by"]:
                add("users", req.store.find_user_by_id(run["created_by"]))
            if "run.configuration_version" in includes and run["configuration_version_id"]:
                add("configuration-versions", req.store.configuration_version_by_id(run["configuration_version_id"]))
        if "outputs" in includes:
            for i, o in enumerate(_state_outputs(sv)):
                rendered = output_doc(sv, i, o)
                out[("state-version-outputs", rendered["id"])] = rendered
    doc["included"] = list(out.values())
    return doc


def current_state_version(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/current-state-version`: 404 when the workspace has no state."""
    ws = _ws(req, ws_id=ws_id, need="read-state")
    sv = req.store.current_state_version(ws["id"])
    if sv is None:
        raise errors.NotFoundError()
    return jsonapi_response(_sv_document(req, _state_version_doc(req, sv), [sv]))


def show_state_version(req: Request, sv_id: str) -> Response:
    """`GET /api/v2/state-versions/:id`."""
    sv = req.store.get_state_version(sv_id, _user(req))
    _ws_of(req, sv["workspace_id"], "read-state")
    return jsonapi_response(_sv_document(req, _state_version_doc(req, sv), [sv]))


def list_state_version_outputs(req: Request, sv_id: str) -> Response:
    """`GET /api/v2/state-versions/:id/outputs` (paged; state-version-outputs.mdx "List State Version
    Outputs"): every root output, sensitive values included (the caller may read the state)."""
    sv = req.store.get_state_version(sv_id, _user(req))
    _ws_of(req, sv["workspace_id"], "read-outputs")
    outputs = list(enumerate(_state_outputs(sv)))
    rows, meta, links = paginate(req, outputs)
    return jsonapi_response({"data": [output_doc(sv, i, o) for i, o in rows], "links": links, "meta": meta})


def show_state_version_output(req: Request, output_id_: str) -> Response:
    """`GET /api/v2/state-version-outputs/:id` (state-version-outputs.mdx "Show a State Version Output"):
    the output with its value, sensitive or not."""
    sv_part, _, index = output_id_.removeprefix("wsout-").rpartition("-")
    if not sv_part or not index.isdigit():
        raise errors.NotFoundError()
    sv = req.store.get_state_version("sv-" + sv_part, _user(req))
    _ws_of(req, sv["workspace_id"], "read-outputs")
    outputs = _state_outputs(sv)
    if int(index) >= len(outputs):
        raise errors.NotFoundError()
    return jsonapi_response({"data": output_doc(sv, int(index), outputs[int(index)])})


def current_state_version_outputs(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/current-state-version-outputs` (state-version-outputs.mdx "Show Current
    State Version Outputs for a Workspace"): the current version's outputs, sensitive values null; 404
    without a current state version. Terraform 1.3 and later read `terraform_remote_state` of a remote/cloud
    workspace here (`internal/cloud/state.go` GetRootOutputValues)."""
    ws = _ws(req, ws_id=ws_id, need="read-outputs")
    sv = req.store.current_state_version(ws["id"])
    if sv is None:
        raise errors.NotFoundError()
    outputs = list(enumerate(_state_outputs(sv)))
    rows, meta, links = paginate(req, outputs)
    return jsonapi_response({"data": [output_doc(sv, i, o, reveal=False) for i, o in rows], "links": links,
                             "meta": meta})


def workspace_outputs(req: Request, ws: dict[str, Any]) -> list[dict[str, Any]]:
    """The workspace's current outputs as `include=outputs` adds them (workspaces.mdx "Available Related
    Resources": `outputs`), sensitive values null as on the current-outputs route."""
    sv = req.store.current_state_version(ws["id"])
    if sv is None:
        return []
    docs = [output_doc(sv, i, o, reveal=False) for i, o in enumerate(_state_outputs(sv))]
    # a workspace relates them as `workspace-outputs` (go-tfe `workspace.go` WorkspaceOutputs: id, name,
    # sensitive, output-type, value), the same ids as the state version's outputs
    return [{"id": d["id"], "type": "workspace-outputs", "attributes": {
        "name": d["attributes"]["name"], "sensitive": d["attributes"]["sensitive"],
        "output-type": d["attributes"]["type"], "value": d["attributes"]["value"]}} for d in docs]


#: State version statuses `filter[status]` takes (state-versions.mdx "List State Versions for a Workspace").
SV_STATUSES = ("pending", "finalized", "discarded")


def _sv_page(req: Request, ws: dict[str, Any]) -> Response:
    """A workspace's state versions, newest first, narrowed by `filter[status]`, paged, with `include`."""
    rows = req.store.list_state_versions(ws["id"])
    status = req.query.get("filter[status]")
    if status:
        if status not in SV_STATUSES:
            raise errors.BadRequestError(f"filter[status] {status!r} is not one of {', '.join(SV_STATUSES)}")
        rows = [r for r in rows if r["status"] == status]
    rows, meta, links = paginate(req, rows)
    doc = _sv_document(req, [_state_version_doc(req, s) for s in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def list_workspace_state_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/state-versions` (paged, newest first)."""
    return _sv_page(req, _ws(req, ws_id=ws_id, need="read-state"))


def list_state_versions(req: Request) -> Response:
    """`GET /api/v2/state-versions?filter[workspace][name]=&filter[organization][name]=` (paged; `filter[status]`)."""
    org = req.query.get("filter[organization][name]")
    name = req.query.get("filter[workspace][name]")
    if not org or not name:
        raise errors.UnprocessableError("filter[organization][name] and filter[workspace][name] are required",
                                        pointer="/filter")
    return _sv_page(req, _ws(req, org, name, need="read-state"))


def create_state_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/state-versions`: inline (`state`, base64) or for a hosted upload.

    201 with upload URLs; 409 when not locked by the uploader or for lineage/serial/md5 conflicts.
    """
    ws = _ws(req, ws_id=ws_id, need="write-state")
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
    if outputs is not None:
        try:
            decoded = json.loads(base64.b64decode(outputs, validate=True)) if isinstance(outputs, str) else None
        except (binascii.Error, ValueError):
            decoded = None
        if not isinstance(decoded, dict) or not all(isinstance(v, dict) for v in decoded.values()):
            raise errors.UnprocessableError("json-state-outputs must be base64 of a JSON object of outputs (name -> "
                                            "{value, type, sensitive}, as terraform show -json writes them)",
                                            pointer="/data/attributes/json-state-outputs")
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
        req.store.upload_configuration(blob["owner_id"], req.body, queue=True)
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
        data = _log_stream(req, plan, PLAN_LOG_DONE) if plan else None
        ctype = "text/plain"
    elif blob["kind"] == "apply-log":
        apply = req.store.apply_by_id(blob["owner_id"])
        data = _log_stream(req, apply, APPLY_FINAL) if apply else None
        ctype = "text/plain"
    else:
        data = None
    if data is None:
        raise errors.NotFoundError()
    return Response(200, bytes(data), {"Content-Type": ctype})


#: Plan statuses after which its log grows no more (plans.mdx "Plan States": final states).
PLAN_LOG_DONE = frozenset(("finished", "errored", "canceled", "unreachable"))
STX, ETX = b"\x02", b"\x03"


def _log_stream(req: Request, row: dict[str, Any], done: frozenset[str]) -> bytes:
    """A plan's or apply's log as the log endpoint serves it: STX, the text so far, and ETX once the phase has
    ended, sliced by `offset` and `limit` (bytes). go-tfe `logreader.go` reads `?limit=N&offset=M`, drops a
    leading STX and a trailing ETX, and stops at ETX (or, without markers, when the phase is done); Terraform's
    remote and cloud backends stream plan and apply logs through it (`Plans.Logs`, `Applies.Logs`)."""
    text = (row["log"] or "").encode() if row["status"] in done else b""
    body = STX + text + (ETX if row["status"] in done else b"")
    offset = _byte_param(req, "offset", 0)
    limit = _byte_param(req, "limit", None)
    return body[offset:] if limit is None else body[offset:offset + limit]


def _byte_param(req: Request, name: str, default: int | None) -> int | None:
    value = req.query.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise errors.BadRequestError(f"{name} must be a whole number of bytes")
    return int(value)


