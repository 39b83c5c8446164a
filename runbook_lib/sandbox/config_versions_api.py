"""Handlers of the new API for configuration versions and their ingress attributes (the commit a VCS
configuration version holds). configuration-versions.mdx; go-tfe `configuration_version.go`."""

from __future__ import annotations

import json
from typing import Any

from runbook_lib.sandbox import documents, errors
from runbook_lib.sandbox.tfe_api import _archivist, _rel, _user, _ws
from runbook_lib.sandbox.wire import Request, Response, includes, check_bool, jsonapi_response, paginate, parse_resource


# --- configuration versions -------------------------------------------------------------------------------

@documents.renders("configuration-versions")
def cv_doc(req: Request, cv: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
    # `upload-url` is answered only by the create request (configuration-versions.mdx "Create a
    # Configuration Version": the URL is in the creation response; go-tfe's
    # TestConfigurationVersionsCreate reads it back empty).
    return {"id": cv["id"], "type": "configuration-versions", "attributes": {
        "auto-queue-runs": bool(cv["auto_queue_runs"]), "error": None, "error-message": None,
        "source": cv["source"], "speculative": bool(cv["speculative"]), "status": cv["status"],
        "status-timestamps": {}, "provisional": bool(cv["provisional"]),
        "upload-url": _archivist(req, cv["upload_token"]) if created and cv["status"] == "pending" else None},
        "relationships": {"run": _rel("runs", run["id"] if (run := req.store.first_run_of_configuration(cv["id"]))
                                      else None),
                          "ingress-attributes": {
            "data": {"id": "ia-" + cv["id"].removeprefix("cv-"), "type": "ingress-attributes"} if cv["ingress"] else None,
            "links": {"related": f"/api/v2/configuration-versions/{cv['id']}/ingress-attributes"}}},
        "links": {"self": f"/api/v2/configuration-versions/{cv['id']}",
                  "download": f"/api/v2/configuration-versions/{cv['id']}/download"}}


def create_configuration_version(req: Request, ws_id: str) -> Response:
    """`POST /api/v2/workspaces/:id/configuration-versions`: 201 with an `upload-url`."""
    ws = _ws(req, ws_id=ws_id, need="queue-run")
    attrs: dict[str, Any] = {}
    if req.body.strip():
        attrs, _ = parse_resource(req, "configuration-versions")
    for name in ("auto-queue-runs", "speculative", "provisional"):
        check_bool(attrs, name)
    cv = req.store.create_configuration_version(ws["id"], auto_queue_runs=attrs.get("auto-queue-runs", True),
                                                speculative=attrs.get("speculative", False),
                                                provisional=attrs.get("provisional", False))
    return jsonapi_response({"data": cv_doc(req, cv, created=True)}, 201)


#: `?include=` on configuration versions (configuration-versions.mdx "Available Related Resources": the
#: commit, and "the run created by the configuration", the first run that used it).
CV_INCLUDES = ("ingress_attributes", "run")


def _cv_document(req: Request, data: Any, cvs: list[dict[str, Any]]) -> dict[str, Any]:
    asked = includes(req, CV_INCLUDES, f"configuration versions include {', '.join(CV_INCLUDES)}")
    doc: dict[str, Any] = {"data": data}
    if asked:
        included = []
        for cv in cvs:
            if "ingress_attributes" in asked and cv["ingress"]:
                included.append(documents.render(req, "ingress-attributes", cv))
            run = req.store.first_run_of_configuration(cv["id"]) if "run" in asked else None
            if run is not None:
                included.append(documents.render(req, "runs", run))
        doc["included"] = included
    return doc


def list_configuration_versions(req: Request, ws_id: str) -> Response:
    """`GET /api/v2/workspaces/:id/configuration-versions` (paged; `include=ingress_attributes,run`)."""
    ws = _ws(req, ws_id=ws_id)
    rows, meta, links = paginate(req, req.store.list_configuration_versions(ws["id"]))
    doc = _cv_document(req, [cv_doc(req, c) for c in rows], rows)
    doc.update(links=links, meta=meta)
    return jsonapi_response(doc)


def show_configuration_version(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id` (`include=ingress_attributes,run`)."""
    cv = req.store.get_configuration_version(cv_id, _user(req))
    return jsonapi_response(_cv_document(req, cv_doc(req, cv), [cv]))


def download_configuration_version(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id/download`: the uploaded tarball (configuration-versions.mdx
    "Download Configuration Files"); 404 until something was uploaded."""
    cv = req.store.get_configuration_version(cv_id, _user(req))
    tarball = req.store.configuration_tarball(cv["id"])
    if tarball is None:
        raise errors.NotFoundError()
    return Response(200, bytes(tarball), {"Content-Type": "application/octet-stream"})



# --- ingress attributes ----------------------------------------------------------------------------------

def ingress_attributes(req: Request, cv_id: str) -> Response:
    """`GET /api/v2/configuration-versions/:id/ingress-attributes`: the commit of a VCS configuration version."""
    cv = req.store.get_configuration_version(cv_id, _user(req))
    if not cv["ingress"]:
        raise errors.NotFoundError()
    return jsonapi_response({"data": ingress_doc(req, cv)})


@documents.renders("ingress-attributes")
def ingress_doc(req: Request, cv: dict[str, Any]) -> dict[str, Any]:
    """The `ingress-attributes` resource of a configuration version that has them."""
    attrs = json.loads(cv["ingress"])
    return {"id": ingress_id(cv["id"]), "type": "ingress-attributes", "attributes": attrs,
            "relationships": {"created-by": {"data": None}},
            "links": {"self": f"/api/v2/configuration-versions/{cv['id']}/ingress-attributes"}}


def ingress_id(cv_id: str) -> str:
    """A stable id for a configuration version's ingress attributes (`cv-X` -> `ia-X`)."""
    return "ia-" + cv_id.removeprefix("cv-")
