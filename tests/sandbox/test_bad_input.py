"""Bad input, table-driven: each case gives one clear error naming the fix, and the sandbox saw no write.

Every case builds its input (an environment, a parameter, a file, a server state), marks the sandbox's
request log, makes the one call an operator's notebook or CLI would make, and checks the error type,
that its message names the fix, and that no request after the mark wrote a database row.
"""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pytest
from sandbox_fixtures import write_operator_mapping

from runbook_lib import audit, gates, hcl, mapping
from runbook_lib.batch import BatchRunner, STEPS, select_steps
from runbook_lib.cli import main as cli_main
from runbook_lib.context import StepContext
from runbook_lib.errors import (AuditError, AuthError, ConfigError, ConflictError, GateError, HclError, LedgerError,
                                MappingError, RunbookError, StateError, StepError, TransportError,
                                ValidationError)
from hostile_hosts import RawHost, answer, chunked_json, raw_host, trickle
from runbook_lib.http import AnswerTooLargeError, RedirectError, RetryPolicy
from runbook_lib.ledger import Ledger
from runbook_lib.paging import PaginationError
from runbook_lib.legacy import LegacyClient
from runbook_lib.rehearsal import batch_environ, batch_parameters
from runbook_lib.settings import Settings
from runbook_lib.state import TerraformState
from runbook_lib.steps import decommission, organization, state_migration, workspaces
from runbook_lib.tfe import TfeClient

FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.02, backoff_jitter=0.0)
TOKEN_SHAPED = "AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa09"


@dataclass
class Kit:
    sandbox: Any
    env: dict[str, str]
    tmp: Path
    org: str
    params: dict[str, str]

    def settings(self, **overrides: str | None) -> Settings:
        values = dict(self.env)
        for key, value in overrides.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        return Settings.from_env(values)

    def tfe(self, **overrides) -> TfeClient:
        return TfeClient(self.settings(**overrides), retry=FAST)

    def legacy(self, **overrides) -> LegacyClient:
        return LegacyClient(self.settings(**overrides), retry=FAST)

    def ctx(self, step: str, env: str = "network-prod", mode: str = "apply", **options) -> StepContext:
        return StepContext.create(step=step, legacy_org="acme-legacy", legacy_env=env, new_org=self.org, mode=mode,
                                  audit_root=str(self.tmp / "runs"), interactive=False, **options)

    def batch(self, parameters: dict[str, Any] | None = None, *, mode: str = "plan", steps: Any = STEPS,
              out: str = "r", batch_id: str = "b") -> BatchRunner:
        """A batch of the one environment network-prod, built with these `--param` values."""
        rows = mapping.propose("acme-legacy", ["network-prod"], self.org)
        return BatchRunner(rows, steps, mode=mode, out=self.tmp / out, batch_id=batch_id, parameters=parameters)

    def write_mapping(self, *envs: str) -> None:
        """The mapping of these environments where the steps read it, with what the survey and the operator
        wrote (`sandbox_fixtures.write_operator_mapping`)."""
        write_operator_mapping(self.sandbox, self.tmp / "runs", envs, new_org=self.org)

    def prepare(self, env: str) -> None:
        """Steps 1 and 2 applied for `env` (a real precondition some cases need)."""
        self.write_mapping(env)
        organization.apply(self.ctx("01_create_organization", env, **self.params))
        workspaces.apply(self.ctx("02_create_workspaces", env, accept_empty_sensitive=True))


def _expired_ca_server(tmp: Path) -> tuple[str, str, Callable[[], None]]:
    """An HTTPS server whose certificate chains to a CA that expired in 2021; returns (url, ca_file, stop)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name("expired test CA")).issuer_name(name("expired test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(old)
          .not_valid_after(old + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    leaf = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = tmp / "expired-ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class Ping(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"https://localhost:{server.server_port}", str(ca_file), server.shutdown


# --- the cases: each returns the call that must fail -------------------------------------------------------

CASES: list[tuple[str, Callable[[Kit], Callable[[], object]], type[Exception], str]] = []


def bad_input(label: str, error: type[Exception], fix: str) -> Callable:
    """Register the decorated case: it sets up one bad input and returns the call that must refuse it with
    `error`, whose message matches the regex `fix` (the fix the operator is told)."""
    def register(build: Callable[[Kit], Callable[[], object]]) -> Callable[[Kit], Callable[[], object]]:
        CASES.append((label, build, error, fix))
        return build
    return register


@bad_input("unknown environment", StepError,
           r"answered 404: acme-legacy/no-such-env does not exist or \$ATLAS_TOKEN cannot see it.*check the name")
def c_unknown_environment(k):
    return lambda: state_migration.apply(k.ctx("03_migrate_state", "no-such-env"))


@bad_input("unknown environment on the CLI", MappingError, r"add a row")
def c_unknown_environment_in_cli(k):
    csv = k.tmp / "m.csv"
    mapping.write_csv(mapping.propose("acme-legacy", ["network-prod"], k.org), csv)

    def call():
        if cli_main(["run", "--mapping", str(csv), "--env", "no-such-env", "--out", str(k.tmp / "r")]) == 2:
            raise MappingError("not in the mapping: no-such-env; check the name or add a row")
    return call


@bad_input("invalid workspace name", ConfigError, r"only letters.*set the workspace parameter")
def c_invalid_workspace_name(k):
    return lambda: k.ctx("02_create_workspaces", workspace="web.prod")


@bad_input("workspace name over 90", ConfigError, r"91 characters.*set the workspace parameter")
def c_long_workspace_name(k):
    return lambda: k.ctx("02_create_workspaces", workspace="w" * 91)


@bad_input("colliding workspace names", MappingError, r"give one of them another workspace name")
def c_colliding_names(k):
    text = f"legacy_org,legacy_env,new_org,workspace\nacme-legacy,web.prod,{k.org},web-prod\n" \
           f"acme-legacy,web-prod,{k.org},web-prod\n"
    return lambda: mapping.read_csv(text)


@bad_input("mapping CSV without a column", MappingError, r"header must be")
def c_mapping_missing_column(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org\nacme-legacy,web.prod,acme\n")


@bad_input("mapping CSV with an empty cell", MappingError, r"line 2: empty legacy_env")
def c_mapping_empty_cell(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org,workspace\nacme-legacy,,acme,x\n")


@bad_input("mapping CSV missing", MappingError, r"cannot read the mapping file")
def c_mapping_not_a_file(k):
    return lambda: mapping.read_csv(k.tmp / "missing.csv")


@bad_input("wrong new-API token", AuthError, r"check that the token in \$TFE_TOKEN")
def c_wrong_token(k):
    return lambda: list(k.tfe(TFE_TOKEN=TOKEN_SHAPED).list_organizations())


@bad_input("wrong legacy token", AuthError, r"check that the token in \$ATLAS_TOKEN")
def c_wrong_legacy_token(k):
    return lambda: k.legacy(ATLAS_TOKEN=TOKEN_SHAPED).get_state("acme-legacy", "network-prod")


@bad_input("token variable unset", ConfigError, r"set the environment variable TFE_TOKEN")
def c_missing_token_variable(k):
    return lambda: list(k.tfe(TFE_TOKEN=None).list_organizations())


@bad_input("token value as parameter", ConfigError, r"NAME of an environment variable")
def c_token_value_as_parameter(k):
    return lambda: k.ctx("01_create_organization", tfe_token_var=TOKEN_SHAPED)


@bad_input("wrong CA", TransportError, r"TLS verification failed.*set the CA bundle")
def c_wrong_ca(k):
    import trustme
    other = k.tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    return lambda: k.tfe(REQUESTS_CA_BUNDLE=str(other), SSL_CERT_FILE=str(other)).ping()


@bad_input("expired CA", TransportError, r"TLS verification failed.*expired.*renewed if it expired")
def c_expired_ca(k):
    url, ca_file, stop = _expired_ca_server(k.tmp)
    k.cleanup = stop
    return lambda: k.tfe(TFE_ADDRESS=url, REQUESTS_CA_BUNDLE=ca_file, SSL_CERT_FILE=ca_file).ping()


@bad_input("CA bundle missing", ConfigError, r"does not exist; point REQUESTS_CA_BUNDLE")
def c_missing_ca_file(k):
    return lambda: k.tfe(REQUESTS_CA_BUNDLE=str(k.tmp / "nope.pem")).ping()


@bad_input("unreachable host", TransportError, r"check the address and that the host is up")
def c_unreachable_host(k):
    return lambda: k.tfe(TFE_ADDRESS="https://127.0.0.1:9").ping()


@bad_input("malformed address", ConfigError, r"must be a base URL like https://")
def c_malformed_address(k):
    return lambda: k.tfe(TFE_ADDRESS="tfe.example.com").ping()


@bad_input("malformed state", StateError, r"modules")
def c_malformed_state(k):
    return lambda: TerraformState.from_bytes(b'{"version": 3, "serial": 1, "lineage": "x", "modules": 7}')


@bad_input("truncated state", StateError, r"(truncated|not valid JSON|incomplete)")
def c_truncated_state(k):
    data = k.legacy().get_state("acme-legacy", "network-prod").data
    return lambda: TerraformState.from_bytes(data[: len(data) // 2])


@bad_input("md5 mismatch on upload", ValidationError, r"(?i)md5")
def c_md5_mismatch(k):
    state = k.legacy().get_state("acme-legacy", "network-prod").data
    session = k.legacy().session

    def call():
        session.request("PUT", "/api/v1/terraform/state/acme-legacy/network-prod", data=state,
                        headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA==", "Content-Type": "application/json"})
    return call


def _workspace_with_state(k, lineage: str, serial: int):
    tfe = k.tfe()
    tfe.create_organization(k.org, "ops@acme.example")
    ws = tfe.create_workspace(k.org, "holder")
    tfe.lock_workspace(ws.id)
    tfe.push_state(ws.id, json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": serial,
                                      "lineage": lineage, "outputs": {}, "resources": []}).encode())
    return tfe, ws


@bad_input("lineage conflict", ConflictError, r"(?i)lineage")
def c_lineage_conflict(k):
    tfe, ws = _workspace_with_state(k, "lineage-a", 5)
    other = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 6, "lineage": "lineage-b",
                        "outputs": {}, "resources": []}).encode()
    return lambda: tfe.push_state(ws.id, other)


@bad_input("serial regression", ConflictError, r"(?i)serial")
def c_serial_regression(k):
    tfe, ws = _workspace_with_state(k, "lineage-a", 5)
    older = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 4, "lineage": "lineage-a",
                        "outputs": {}, "resources": [{"mode": "managed", "type": "null_resource", "name": "x",
                                                      "provider": "provider[\"registry.terraform.io/hashicorp/null\"]",
                                                      "instances": []}]}).encode()
    return lambda: tfe.push_state(ws.id, older)


@bad_input("workspace holds another lineage", StepError, r"another lineage.*map this environment to another workspace")
def c_workspace_holds_other_lineage(k):
    k.prepare("network-prod")
    tfe = k.tfe()
    ws = tfe.get_workspace(k.org, "network-prod")
    tfe.push_state(ws.id, json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 3,
                                      "lineage": "foreign", "outputs": {}, "resources": []}).encode())
    return lambda: state_migration.apply(k.ctx("03_migrate_state"))


@bad_input("mapping leaves a fact unknown", StepError,
           r"does not say working_directory for acme-legacy/network-prod.*write it into the mapping")
def c_mapping_fact_unknown(k):
    k.write_mapping("network-prod")
    path = k.tmp / "runs" / "mapping.csv"
    rows = [replace(row, working_directory=mapping.UNKNOWN) for row in mapping.read_csv(path)]
    mapping.write_csv(rows, path)
    organization.apply(k.ctx("01_create_organization", **k.params))
    return lambda: workspaces.apply(k.ctx("02_create_workspaces"))


@bad_input("mapping names another workspace", ConfigError, r"maps acme-legacy/network-prod to .*/net, not .*"
                                                           r"set the workspace parameter to match, or edit the mapping")
def c_mapping_other_workspace(k):
    k.write_mapping("network-prod")
    path = k.tmp / "runs" / "mapping.csv"
    mapping.write_csv([replace(row, workspace="net") for row in mapping.read_csv(path)], path)
    return lambda: k.ctx("02_create_workspaces")


@bad_input("existing workspace differs", StepError, r"exists and differs.*fix it by hand")
def c_workspace_differs(k):
    tfe = k.tfe()
    tfe.create_organization(k.org, "ops@acme.example")
    tfe.create_workspace(k.org, "network-prod", {"terraform-version": "1.2.3"})
    organization.apply(k.ctx("01_create_organization", **k.params))
    k.write_mapping("network-prod")
    return lambda: workspaces.apply(k.ctx("02_create_workspaces"))


@bad_input("organization name taken", StepError, r"globally unique: choose another new_org")
def c_taken_organization(k):
    k.org = "outsider-corp"
    return lambda: organization.apply(k.ctx("01_create_organization", **k.params))


@bad_input("missing step-5 evidence", StepError, r"(?i)step 5|05_commit_and_verify")
def c_missing_step5_evidence(k):
    return lambda: decommission.check_ready(k.ctx("06_delete_legacy_environment",
                                                  confirm="delete acme-legacy/network-prod"))


@bad_input("wrong confirmation text", GateError, r"must be exactly 'delete acme-legacy/network-prod'")
def c_wrong_confirmation(k):
    return lambda: gates.check("delete", "acme-legacy/network-prod", "delete acme-legacy/web.prod")


@bad_input("no confirmation in a batch", GateError, r"set the parameter confirm = ")
def c_missing_confirmation(k):
    return lambda: gates.guard("delete", "acme-legacy/network-prod", confirm="", interactive=False, run=print)


@bad_input("bad mode", ConfigError, r"mode must be 'plan' or 'apply'")
def c_bad_mode(k):
    return lambda: k.ctx("01_create_organization", mode="yolo")


@bad_input("bad migration path", ConfigError, r"migration_path must be 'api' or 'cli'")
def c_bad_migration_path(k):
    return lambda: state_migration.plan(k.ctx("03_migrate_state", migration_path="rsync"))


@bad_input("Terraform 1.x as state mover", ConfigError, r"use migration_path = 'api'")
def c_cli_mover_with_terraform_1x(k):
    return lambda: state_migration.plan(k.ctx("03_migrate_state", migration_path="cli", cli_target="remote"))


@bad_input("unknown step numbers", RunbookError, r"must name steps between 0 and 6")
def c_unknown_steps(k):
    return lambda: select_steps("7-9")


@bad_input("misspelt notebook parameter", RunbookError, r"check the spelling")
def c_misspelt_parameter(k):
    return lambda: k.batch({"migraton_path": "cli"}, mode="apply")


@bad_input("backend in another organization", HclError, r"check --from")
def c_backend_in_other_org(k):
    root = k.tmp / "cfg"
    root.mkdir()
    (root / "main.tf").write_text('terraform {\n  backend "atlas" {\n    name = "other-org/network-prod"\n  }\n}\n')
    return lambda: hcl.plan_rewrite(root, from_="acme-legacy/network-prod", to=f"{k.org}/network-prod")


@bad_input("token planted in the audit trail", AuditError, r"remove them and re-run the archive")
def c_token_in_archive(k):
    batch = k.tmp / "runs" / "b"
    (batch / "x").mkdir(parents=True)
    (batch / "x" / "note.txt").write_text(f"oops {TOKEN_SHAPED}")
    audit.write_manifest(batch, parameters={}, outcomes={}, started_at="", finished_at="")
    return lambda: audit.archive(batch)


@bad_input("corrupt ledger", LedgerError, r"move it aside")
def c_corrupt_ledger(k):
    path = k.tmp / "ledger.sqlite"
    path.write_bytes(b"not a database" * 64)
    return lambda: Ledger(path)


def _recording_server(answer: Callable[[http.server.BaseHTTPRequestHandler], None], host: str = "127.0.0.1"):
    """A local HTTP server calling `answer` per request; returns (url, received header dicts, stop)."""
    received: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            received.append(dict(self.headers.items()))
            answer(self)

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
    return f"http://{host}:{httpd.server_address[1]}", received, stop


@bad_input("legacy host redirects to another origin", RedirectError,
           r"another origin .*no token or body was sent there: set ATLAS_ADDRESS")
def c_redirect_to_another_origin(k):
    def ok(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")
    other_url, stolen, stop_other = _recording_server(ok)

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"{other_url}/api/v1/terraform/state/acme-legacy/network-prod")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    legacy_url, _, stop_legacy = _recording_server(redirect)

    def cleanup():
        stop_legacy()
        stop_other()
        assert stolen == [], "the legacy token followed the redirect"
    k.cleanup = cleanup
    return lambda: k.legacy(ATLAS_ADDRESS=legacy_url).get_state("acme-legacy", "network-prod")


def _hostile(k, host: RawHost) -> RawHost:
    """Start `host` for one case and stop it in the case's cleanup."""
    host.__enter__()
    k.cleanup = lambda: host.__exit__(None, None, None)
    return host


@bad_input("307 whose Location hides another host behind a backslash", RedirectError,
           r"backslash; the runbook does not follow it, so no token or body was sent anywhere: set TFE_ADDRESS")
def c_redirect_behind_a_backslash(k):
    # Python's urlsplit reads http://127.0.0.2:P2\@127.0.0.1:P1/... as 127.0.0.1:P1 (the API itself);
    # urllib3, which connects, reads 127.0.0.2:P2. Two real listeners: nothing may reach the second.
    other = RawHost(answer(201, {"data": {"id": "var-x", "type": "vars", "attributes": {}}}), host="127.0.0.2")
    other.__enter__()
    port: list[int] = []

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"http://127.0.0.2:{other.port}\\@127.0.0.1:{port[0]}/api/v2/vars")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    api_url, _, stop_api = _recording_server(redirect)
    port.append(int(api_url.rsplit(":", 1)[1]))

    def cleanup():
        stop_api()
        other.__exit__(None, None, None)
        assert other.received == [], "the POST and its sensitive value reached the second host"
    k.cleanup = cleanup
    return lambda: k.tfe(TFE_ADDRESS=api_url).create_variable("ws-x", "db_password", "hunter2-sensitive",
                                                               sensitive=True)


@bad_input("plan JSON link to another loopback host over plain http", RedirectError,
           r"sending the download to http://127.0.0.2:\d+, plain http to another host; .*nothing was sent there")
def c_signed_link_elsewhere(k):
    store = _hostile(k, RawHost(answer(200, {"resource_changes": []}, {"Content-Type": "application/json"}),
                                host="127.0.0.2"))

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"{store.url}/_archivist/v1/object/SIGNED")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    api_url, _, stop_api = _recording_server(redirect)
    stop_store = k.cleanup

    def cleanup():
        stop_api()
        stop_store()
        assert store.received == [], "the signed link was followed"
    k.cleanup = cleanup
    return lambda: k.tfe(TFE_ADDRESS=api_url).plan_json("plan-x")


@bad_input("host trickling its answer a byte a second", TransportError,
           r"did not finish within 2s \(the request deadline, TFE_RUNBOOK_REQUEST_DEADLINE\)")
def c_trickling_host(k):
    host = _hostile(k, RawHost(trickle(1.0, length=12)))
    return lambda: k.tfe(TFE_ADDRESS=host.url, TFE_RUNBOOK_REQUEST_DEADLINE="2").ping()


@bad_input("oversize chunked JSON answer", AnswerTooLargeError,
           r"GET /api/v2/organizations on 127\.0\.0\.1:\d+ answered 200 going on past it, over the cap of 1 MiB; "
           r"reading stopped there: if the answer is genuine, raise TFE_RUNBOOK_MAX_ANSWER_MB")
def c_oversize_answer(k):
    host = _hostile(k, raw_host(lambda ref: chunked_json(ref, total=8 * 1024 * 1024)))
    return lambda: list(k.tfe(TFE_ADDRESS=host.url, TFE_RUNBOOK_MAX_ANSWER_MB="1").list_organizations())


def _paging_host(k, *, same: bool, pages: int) -> str:
    """A TFE host whose workspace list says next-page = n + 1 for `pages` pages: the same item on each (`same`)
    or a new one; returns its address."""
    def app(handler):
        number = int((handler.path.split("page%5Bnumber%5D=", 1) + ["1"])[1].split("&", 1)[0])
        ident = "ws-same" if same else f"ws-{number}"
        body = json.dumps({"data": [{"id": ident, "type": "workspaces", "attributes": {"name": ident}}],
                           "meta": {"pagination": {"current-page": number,
                                                   "next-page": number + 1 if number < pages else None}}}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.api+json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    url, _, stop = _recording_server(app)
    k.cleanup = stop
    return url


@bad_input("TFE listing that repeats its items on every next page", PaginationError,
           r"127\.0\.0\.1:\d+ listed the same item of the listing .*workspaces on page 1 and again on page 2")
def c_tfe_pagination_repeats(k):
    url = _paging_host(k, same=True, pages=50)
    return lambda: list(k.tfe(TFE_ADDRESS=url).list_workspaces("acme"))


@bad_input("TFE listing past the page cap", PaginationError,
           r"127\.0\.0\.1:\d+ still announced more .* after 5 pages.*raise TFE_RUNBOOK_MAX_PAGES")
def c_tfe_pagination_cap(k):
    url = _paging_host(k, same=False, pages=8)
    return lambda: list(k.tfe(TFE_ADDRESS=url, TFE_RUNBOOK_MAX_PAGES="5").list_workspaces("acme"))


@bad_input("legacy states list serving the same page forever", PaginationError,
           r"127\.0\.0\.1:\d+ listed the same item of states of acme-legacy on page 1 and again on page 2")
def c_legacy_states_repeat(k):
    states = [{"updated_at": "2018-05-01T00:00:00Z", "environment": {"username": "acme-legacy", "name": f"e{i}"}}
              for i in range(20)]
    body = json.dumps({"states": states}).encode()
    served = [0]

    def app(handler):
        served[0] += 1
        page = body if served[0] <= 30 else b'{"states": []}'  # today's client would stop after 30 pages
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)
    url, _, stop = _recording_server(app)
    k.cleanup = stop
    return lambda: list(k.legacy(ATLAS_ADDRESS=url).list_states("acme-legacy"))


@bad_input("token with a line separator (U+2028)", ConfigError, r"TFE_TOKEN contains a character that is not ASCII")
def c_token_with_line_separator(k):
    pasted = k.env["TFE_TOKEN"][:14] + "\u2028" + k.env["TFE_TOKEN"][14:]
    return lambda: k.tfe(TFE_TOKEN=pasted).get_organization(k.org)


@bad_input("token with an emoji", ConfigError, r"ATLAS_TOKEN contains a character that is not ASCII")
def c_token_with_emoji(k):
    return lambda: k.legacy(ATLAS_TOKEN=k.env["ATLAS_TOKEN"] + "\U0001F511").read_state("acme-legacy",
                                                                                         "network-prod")


@bad_input("http:// against the https host", TransportError,
           r"closed the connection without an HTTP answer; if it serves HTTPS, the scheme may be wrong: "
           r"set TFE_ADDRESS to https://")
def c_http_against_https(k):
    return lambda: k.tfe(TFE_ADDRESS=k.env["TFE_ADDRESS"].replace("https://", "http://")).ping()


@bad_input("https:// against a plain http host", TransportError,
           r"does not speak TLS on that port, so the scheme may be wrong: set ATLAS_ADDRESS to http://")
def c_https_against_http(k):
    url, _, stop = _recording_server(lambda handler: None)
    k.cleanup = stop
    return lambda: k.legacy(ATLAS_ADDRESS=url.replace("http://", "https://")).read_state("acme-legacy",
                                                                                          "network-prod")


@bad_input("wrong port", TransportError, r"connection was refused, so nothing listens on that port; .*the port in "
                                         r"TFE_ADDRESS may be wrong")
def c_wrong_port(k):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return lambda: k.tfe(TFE_ADDRESS=f"https://127.0.0.1:{port}").ping()


_PASSWORD_URL = "https://oauth2:hunter2-gitlab-pass@gitlab.example.com/acme"


@bad_input("--param URL with a password", RunbookError,
           r"--param git_base_url carries a credential in its URL .*git credential helper")
def c_url_parameter_with_password(k):
    return lambda: k.batch({"git_base_url": _PASSWORD_URL})


@bad_input("step option URL with a token as user", ConfigError,
           r"option vcs_http_url of step 01_create_organization carries a credential in its URL")
def c_url_option_with_userinfo(k):
    return lambda: k.ctx("01_create_organization", vcs_http_url="https://x-token-auth@bitbucket.example.com")


@bad_input("address with a password", ConfigError, r"TFE_ADDRESS carries a credential in its URL")
def c_address_with_password(k):
    return lambda: k.tfe(TFE_ADDRESS=k.env["TFE_ADDRESS"].replace("https://", "https://ops:pw@")).ping()


@bad_input("token with a pasted newline", ConfigError, r"TFE_TOKEN contains a control character")
def c_token_with_newline(k):
    pasted = k.env["TFE_TOKEN"][:14] + "\n" + k.env["TFE_TOKEN"][14:]  # a line break inside the token
    return lambda: k.tfe(TFE_TOKEN=pasted).get_organization(k.org)


@bad_input("credential as a variable name", RunbookError, r"pass that variable's NAME")
def c_token_shaped_variable_name(k):
    return lambda: k.batch({"vcs_token_var": "ghp_" + "Zq8aB" * 8})


@bad_input("--param the batch sets itself", RunbookError, r"use --mode plan or --mode apply")
def c_parameter_the_batch_sets(k):
    return lambda: k.batch({"mode": "apply"})


@bad_input("boolean --param that is not one", RunbookError, r"must be True or False")
def c_boolean_parameter_that_is_not(k):
    return lambda: k.batch({"recover": "nope"})


@bad_input("--batch given a path", RunbookError, r"--batch must be a name")
def c_batch_name_as_path(k):
    return lambda: k.batch(batch_id="../elsewhere")


@bad_input("mapping names '..'", MappingError, r"a URL would normalise away")
def c_mapping_dot_dot(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org,workspace\nacme-legacy,..,acme,up\n")


@bad_input("mapping with a second header", MappingError, r"line 3 repeats the header")
def c_mapping_second_header(k):
    header = "legacy_org,legacy_env,new_org,workspace\n"
    return lambda: mapping.read_csv(f"{header}acme-legacy,network-prod,acme,network-prod\n{header}")


@bad_input("mapping not UTF-8", MappingError, r"not UTF-8 text.*save it as UTF-8")
def c_mapping_not_utf8(k):
    path = k.tmp / "latin1.csv"
    path.write_bytes("legacy_org,legacy_env,new_org,workspace\nacme-legacy,r\u00e9seau,acme,reseau\n".encode("latin-1"))
    return lambda: mapping.read_csv(path)


@bad_input("environment locked from another --out", LedgerError, r"whatever its --out")
def c_lock_held_from_another_out(k):
    from runbook_lib.batch import acquire_locks

    held = acquire_locks(["acme-legacy/network-prod"])
    k.cleanup = held.release
    return lambda: k.batch(steps=STEPS[:1], out="another-out").run()


@bad_input("verify without the sidecar", AuditError, r"--no-sidecar")
def c_verify_without_sidecar(k):
    import argparse

    from runbook_lib.cli.evidence import _verify

    batch = k.tmp / "runs" / "b"
    batch.mkdir(parents=True)
    audit.write_manifest(batch, parameters={}, outcomes={}, started_at="", finished_at="")
    archived = audit.archive(batch)
    archived.path.with_name(archived.path.name + ".sha256").unlink()
    return lambda: _verify(argparse.Namespace(archive=str(archived.path), no_sidecar=False))


@bad_input("archive without a batch folder", AuditError, r"is not inside the batch's folder")
def c_malformed_archive(k):
    import tarfile

    path = k.tmp / "flat.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        (k.tmp / "manifest.json").write_text("[]")
        tar.add(k.tmp / "manifest.json", arcname="manifest.json")
    return lambda: audit.verify_archive(path, require_sidecar=False)


@pytest.mark.parametrize("label, case, error, fix", CASES, ids=[c[0] for c in CASES])
def test_bad_input(label, case, error, fix, tmp_path, seeded_sandbox, monkeypatch):
    env = batch_environ(seeded_sandbox.env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kit = Kit(seeded_sandbox, env, tmp_path, f"bad-{uuid.uuid4().hex[:8]}", batch_parameters(seeded_sandbox.env))
    kit.cleanup = None
    call = case(kit)
    mark = seeded_sandbox.log_mark()
    try:
        with pytest.raises(error, match=fix) as info:
            call()
    finally:
        if kit.cleanup:
            kit.cleanup()
    message = str(info.value)
    assert len(message) < 600 and "\n" not in message.strip(), "one sentence, not a dump"
    assert TOKEN_SHAPED not in message and seeded_sandbox.operator_token not in message
    assert "hunter2" not in message, "a URL's password was repeated"
    written = [f"{r['method']} {r['path']}" for r in seeded_sandbox.request_log(since=mark) if r["changes"]]
    assert written == [], f"{label}: the sandbox recorded writes {written}"


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
