"""The sandbox as a server: env file, loopback, persistence, request log, admin surface, rate limit, faults."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys

import pytest
import requests
from sandbox_helpers import Api, create_workspace, doc

from runbook_lib.sandbox import FaultConfig, Sandbox, read_env_file
from runbook_lib.sandbox.server import ADMIN_HEADER

TOKEN_RE = re.compile(r"^[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9]{67}$")


def test_env_file_is_private_and_complete(seeded_sandbox: Sandbox):
    path = seeded_sandbox.env_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    values = read_env_file(path)
    for name in ("ATLAS_ADDRESS", "ATLAS_TOKEN", "TFE_ADDRESS", "TFE_TOKEN", "SANDBOX_LEGACY_ORG",
                 "SANDBOX_GIT_ROOT", "TF_CLI_CONFIG_FILE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        assert values.get(name), name
    assert values["SANDBOX_LEGACY_ORG"] == "acme-legacy"
    assert values["TFE_ADDRESS"].startswith("https://localhost:")
    assert TOKEN_RE.match(values["ATLAS_TOKEN"]) and TOKEN_RE.match(values["TFE_TOKEN"])
    assert TOKEN_RE.match(values["SANDBOX_OUTSIDER_TOKEN"])
    assert values["SANDBOX_OUTSIDER_TOKEN"] != values["TFE_TOKEN"]
    rc = open(values["TF_CLI_CONFIG_FILE"]).read()
    assert f'credentials "{seeded_sandbox.hostname}"' in rc and "filesystem_mirror" in rc
    assert stat.S_IMODE(os.stat(values["TF_CLI_CONFIG_FILE"]).st_mode) == 0o600
    # `source`-able by a shell, round-tripping the values exactly
    out = subprocess.run(["bash", "-c", f"source {path} && echo \"$SANDBOX_GIT_ROOT|$TFE_ADDRESS\""],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"{values['SANDBOX_GIT_ROOT']}|{values['TFE_ADDRESS']}"


def test_listens_on_loopback_only(fresh_sandbox: Sandbox):
    server = fresh_sandbox._server
    assert server is not None and server.host == "127.0.0.1"
    addresses = [a for a in socket.gethostbyname_ex(socket.gethostname())[2] if not a.startswith("127.")]
    for address in addresses:
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((address, fresh_sandbox.port)) != 0


def test_discovery_and_ping_headers(seeded_sandbox: Sandbox):
    api = Api(seeded_sandbox)
    found = api.get("/.well-known/terraform.json")
    assert found.status_code == 200 and found.json()["tfe.v2"] == "/api/v2/"
    assert "versions.v1" not in found.json()
    ping = api.get("/api/v2/ping")
    assert ping.status_code == 204
    assert float(ping.headers["TFP-API-Version"]) >= 2.5
    assert ping.headers["TFP-AppName"] == "Terraform Enterprise"


def test_restart_keeps_everything_and_tokens(fresh_sandbox: Sandbox):
    api = Api(fresh_sandbox)
    assert api.post("/api/v2/organizations", json=doc("organizations", name="keep-me", email="a@b.example")).status_code == 201
    ws = create_workspace(api, "keep-me", "persisted")
    address, token = fresh_sandbox.address, fresh_sandbox.operator_token
    fresh_sandbox.restart()
    assert fresh_sandbox.address == address and fresh_sandbox.operator_token == token
    again = Api(fresh_sandbox).get(f"/api/v2/workspaces/{ws['id']}")
    assert again.status_code == 200 and again.json()["data"]["attributes"]["name"] == "persisted"


def test_a_keep_alive_tls_connection_does_not_outlive_a_restart(tmp_path):
    # A client's pooled HTTPS connection from before the restart must not be served by the stopped server (its
    # store closed: every answer a 500); the restart drops it and the client reconnects to the new one.
    with Sandbox(tmp_path / "tls", tls=True) as box:
        api = Api(box)
        assert api.get("/api/v2/organizations").status_code == 200  # opens the keep-alive connection
        box.restart()
        answers = []
        for _ in range(3):
            try:
                answers.append(api.get("/api/v2/organizations").status_code)
            except requests.ConnectionError:
                answers.append("reset")  # the dropped connection, as a restarted host shows it
        assert answers[-1] == 200 and 500 not in answers, answers


def test_request_log_has_token_names_never_values(fresh_sandbox: Sandbox):
    mark = fresh_sandbox.log_mark()
    Api(fresh_sandbox).get("/api/v2/organizations")
    Api(fresh_sandbox, legacy=True).get("/api/v1/terraform/state?username=acme-legacy")
    Api(fresh_sandbox, token="x" * 20).get("/api/v2/organizations")
    rows = fresh_sandbox.request_log(since=mark)
    assert [(r["method"], r["path"], r["status"], r["username"]) for r in rows] == [
        ("GET", "/api/v2/organizations", 200, "operator"),
        ("GET", "/api/v1/terraform/state", 200, "operator"),
        ("GET", "/api/v2/organizations", 401, None)]
    assert rows[0]["token_name"] == "operator-api-token"
    dump = repr(fresh_sandbox.request_log())
    assert fresh_sandbox.operator_token not in dump
    # archivist URLs are capabilities: logged redacted
    mark = fresh_sandbox.log_mark()
    assert requests.get(f"{fresh_sandbox.address}/_archivist/v1/object/secret-capability", timeout=10).status_code == 404
    assert [r["path"] for r in fresh_sandbox.request_log(since=mark)] == ["/_archivist/v1/object/[redacted]"]


def test_admin_surface_needs_the_secret_not_a_token(fresh_sandbox: Sandbox):
    operator = Api(fresh_sandbox)
    assert operator.get("/_sandbox/health").json()["ok"] is True
    for method, path in (("GET", "/_sandbox/requests"), ("PUT", "/_sandbox/faults"), ("POST", "/_sandbox/reset"),
                         ("PUT", "/_sandbox/rate-limit")):
        response = operator.request(method, path, json={})
        assert response.status_code == 401, (method, path)
    operator.get("/api/v2/organizations")
    secret = (fresh_sandbox.data_dir / "admin.secret").read_text().strip()
    assert stat.S_IMODE(os.stat(fresh_sandbox.data_dir / "admin.secret").st_mode) == 0o600
    rows = requests.get(f"{fresh_sandbox.address}/_sandbox/requests", headers={ADMIN_HEADER: secret}, timeout=10)
    assert rows.status_code == 200
    # the admin surface itself is not logged; the API request is
    assert [r["path"] for r in rows.json()["requests"]] == ["/api/v2/organizations"]


def test_rate_limit_answers_429_with_headers(fresh_sandbox: Sandbox):
    fresh_sandbox.set_rate_limit(5)
    api = Api(fresh_sandbox, retry_429=False)
    statuses = [api.get("/api/v2/organizations") for _ in range(12)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    first = limited[0]
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert 0 < float(first.headers["X-RateLimit-Reset"]) <= 1
    assert int(first.headers["Retry-After"]) >= 1
    assert first.json() == {"errors": [{"detail": "You have exceeded the API's rate limit.", "status": 429,
                                        "title": "Too many requests"}]}
    # per token: the outsider still has its whole budget
    assert Api(fresh_sandbox, fresh_sandbox.outsider_token, retry_429=False).get("/api/v2/organizations").status_code == 200


def _fault_run(sandbox: Sandbox, seed: int) -> list[object]:
    sandbox.set_faults(FaultConfig(error_rate=0.3, burst_rate=0.1, burst_length=2, drop_rate=0.1, seed=seed))
    api = Api(sandbox, retry_429=False)
    outcome: list[object] = []
    for _ in range(30):
        try:
            outcome.append(api.get("/api/v2/organizations").status_code)
        except requests.ConnectionError:
            outcome.append("dropped")
    sandbox.clear_faults()
    return outcome


def test_faults_are_seeded_and_repeatable(fresh_sandbox: Sandbox):
    first = _fault_run(fresh_sandbox, seed=42)
    second = _fault_run(fresh_sandbox, seed=42)
    assert first == second
    assert {500, 502, 503} & set(first) and 429 in first and "dropped" in first and 200 in first
    assert _fault_run(fresh_sandbox, seed=7) != first
    # off again: everything answers
    assert all(Api(fresh_sandbox).get("/api/v2/organizations").status_code == 200 for _ in range(5))
    faulted = [r for r in fresh_sandbox.request_log() if r["fault"]]
    assert {"5xx", "429", "drop"} <= {r["fault"] for r in faulted}
    assert all(r["changes"] == 0 for r in faulted)


def test_latency_fault(fresh_sandbox: Sandbox):
    fresh_sandbox.set_faults(latency_ms=150, seed=1)
    response = Api(fresh_sandbox).get("/api/v2/organizations")
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.15
    fresh_sandbox.clear_faults()


def test_faulted_write_changes_nothing(fresh_sandbox: Sandbox):
    fresh_sandbox.set_faults(error_rate=1.0, seed=3, methods=["POST"])
    response = Api(fresh_sandbox).post("/api/v2/organizations", json=doc("organizations", name="never", email="a@b.example"))
    assert response.status_code in (500, 502, 503)
    fresh_sandbox.clear_faults()
    assert Api(fresh_sandbox).get("/api/v2/organizations/never").status_code == 404


def test_reset_keeps_tokens_and_bootstrap(fresh_sandbox: Sandbox):
    api = Api(fresh_sandbox)
    api.post("/api/v2/organizations", json=doc("organizations", name="gone-soon", email="a@b.example"))
    fresh_sandbox.reset()
    assert api.get("/api/v2/organizations/gone-soon").status_code == 404
    outsider = Api(fresh_sandbox, fresh_sandbox.outsider_token)
    assert outsider.get("/api/v2/organizations/outsider-corp").status_code == 200


def test_unexpected_exception_is_a_500_json_error(fresh_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch):
    def boom(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("boom")

    monkeypatch.setattr(fresh_sandbox.store, "list_organizations", boom)
    response = Api(fresh_sandbox).get("/api/v2/organizations")
    assert response.status_code == 500
    assert response.json()["errors"][0]["status"] == "500"
    assert Api(fresh_sandbox).get("/api/v2/ping").status_code == 204  # the server survived


def test_subprocess_mode_and_cli(tmp_path):
    with Sandbox(tmp_path / "sub", subprocess=True, rate_limit=None) as sandbox:
        api = Api(sandbox)
        assert api.get("/api/v2/organizations").status_code == 200
        sandbox.set_faults(error_rate=1.0, seed=1)
        assert api.get("/api/v2/organizations").status_code in (500, 502, 503)
        sandbox.clear_faults()
        mark = sandbox.log_mark()
        api.post("/api/v2/organizations", json=doc("organizations", name="survives", email="a@b.example"))
        assert [r["status"] for r in sandbox.request_log(since=mark)] == [201]
        sandbox.restart()
        assert Api(sandbox).get("/api/v2/organizations/survives").status_code == 200
    help_text = subprocess.run([sys.executable, "-m", "runbook_lib.cli", "sandbox", "serve", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--seed" in help_text and "--tls" in help_text
