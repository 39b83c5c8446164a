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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from runbook_lib import audit, gates, hcl, mapping
from runbook_lib.batch import BatchRunner, STEPS, select_steps
from runbook_lib.cli import main as cli_main
from runbook_lib.context import StepContext
from runbook_lib.errors import (AuditError, AuthError, ConfigError, ConflictError, GateError, HclError, LedgerError,
                                MappingError, NotFoundError, RunbookError, StateError, StepError, TransportError,
                                ValidationError)
from runbook_lib.http import RedirectError, RetryPolicy
from runbook_lib.ledger import Ledger
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

    def prepare(self, env: str) -> None:
        """Steps 1 and 2 applied for `env` (a real precondition some cases need)."""
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

def c_unknown_environment(k):
    return lambda: workspaces.plan(k.ctx("02_create_workspaces", "no-such-env"))


def c_unknown_environment_in_cli(k):
    csv = k.tmp / "m.csv"
    mapping.write_csv(mapping.propose("acme-legacy", ["network-prod"], k.org), csv)

    def call():
        if cli_main(["run", "--mapping", str(csv), "--env", "no-such-env", "--out", str(k.tmp / "r")]) == 2:
            raise MappingError("not in the mapping: no-such-env; check the name or add a row")
    return call


def c_invalid_workspace_name(k):
    return lambda: k.ctx("02_create_workspaces", workspace="web.prod")


def c_long_workspace_name(k):
    return lambda: k.ctx("02_create_workspaces", workspace="w" * 91)


def c_colliding_names(k):
    text = f"legacy_org,legacy_env,new_org,workspace\nacme-legacy,web.prod,{k.org},web-prod\n" \
           f"acme-legacy,web-prod,{k.org},web-prod\n"
    return lambda: mapping.read_csv(text)


def c_mapping_missing_column(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org\nacme-legacy,web.prod,acme\n")


def c_mapping_empty_cell(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org,workspace\nacme-legacy,,acme,x\n")


def c_mapping_not_a_file(k):
    return lambda: mapping.read_csv(k.tmp / "missing.csv")


def c_wrong_token(k):
    return lambda: list(k.tfe(TFE_TOKEN=TOKEN_SHAPED).list_organizations())


def c_wrong_legacy_token(k):
    return lambda: k.legacy(ATLAS_TOKEN=TOKEN_SHAPED).get_environment("acme-legacy", "network-prod")


def c_missing_token_variable(k):
    return lambda: list(k.tfe(TFE_TOKEN=None).list_organizations())


def c_token_value_as_parameter(k):
    return lambda: k.ctx("01_create_organization", tfe_token_var=TOKEN_SHAPED)


def c_wrong_ca(k):
    import trustme
    other = k.tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    return lambda: k.tfe(REQUESTS_CA_BUNDLE=str(other), SSL_CERT_FILE=str(other)).ping()


def c_expired_ca(k):
    url, ca_file, stop = _expired_ca_server(k.tmp)
    k.cleanup = stop
    return lambda: k.tfe(TFE_ADDRESS=url, REQUESTS_CA_BUNDLE=ca_file, SSL_CERT_FILE=ca_file).ping()


def c_missing_ca_file(k):
    return lambda: k.tfe(REQUESTS_CA_BUNDLE=str(k.tmp / "nope.pem")).ping()


def c_unreachable_host(k):
    return lambda: k.tfe(TFE_ADDRESS="https://127.0.0.1:9").ping()


def c_malformed_address(k):
    return lambda: k.tfe(TFE_ADDRESS="tfe.example.com").ping()


def c_malformed_state(k):
    return lambda: TerraformState.from_bytes(b'{"version": 3, "serial": 1, "lineage": "x", "modules": 7}')


def c_truncated_state(k):
    data = k.legacy().get_state("acme-legacy", "network-prod").data
    return lambda: TerraformState.from_bytes(data[: len(data) // 2])


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


def c_lineage_conflict(k):
    tfe, ws = _workspace_with_state(k, "lineage-a", 5)
    other = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 6, "lineage": "lineage-b",
                        "outputs": {}, "resources": []}).encode()
    return lambda: tfe.push_state(ws.id, other)


def c_serial_regression(k):
    tfe, ws = _workspace_with_state(k, "lineage-a", 5)
    older = json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 4, "lineage": "lineage-a",
                        "outputs": {}, "resources": [{"mode": "managed", "type": "null_resource", "name": "x",
                                                      "provider": "provider[\"registry.terraform.io/hashicorp/null\"]",
                                                      "instances": []}]}).encode()
    return lambda: tfe.push_state(ws.id, older)


def c_workspace_holds_other_lineage(k):
    k.prepare("network-prod")
    tfe = k.tfe()
    ws = tfe.get_workspace(k.org, "network-prod")
    tfe.push_state(ws.id, json.dumps({"version": 4, "terraform_version": "1.15.5", "serial": 3,
                                      "lineage": "foreign", "outputs": {}, "resources": []}).encode())
    return lambda: state_migration.apply(k.ctx("03_migrate_state"))


def c_locked_legacy_environment(k):
    k.prepare("db-prod")
    return lambda: state_migration.apply(k.ctx("03_migrate_state", "db-prod"))


def c_run_in_progress(k):
    k.prepare("app-staging")
    return lambda: state_migration.apply(k.ctx("03_migrate_state", "app-staging"))


def c_workspace_differs(k):
    tfe = k.tfe()
    tfe.create_organization(k.org, "ops@acme.example")
    tfe.create_workspace(k.org, "network-prod", {"terraform-version": "1.2.3"})
    organization.apply(k.ctx("01_create_organization", **k.params))
    return lambda: workspaces.apply(k.ctx("02_create_workspaces"))


def c_taken_organization(k):
    k.org = "outsider-corp"
    return lambda: organization.apply(k.ctx("01_create_organization", **k.params))


def c_missing_step5_evidence(k):
    return lambda: decommission.apply(k.ctx("06_delete_legacy_environment", confirm="delete acme-legacy/network-prod"))


def c_wrong_confirmation(k):
    return lambda: gates.check("delete", "acme-legacy/network-prod", "delete acme-legacy/web.prod")


def c_missing_confirmation(k):
    return lambda: gates.guard("delete", "acme-legacy/network-prod", confirm="", interactive=False, run=print)


def c_bad_mode(k):
    return lambda: k.ctx("01_create_organization", mode="yolo")


def c_bad_migration_path(k):
    return lambda: state_migration.plan(k.ctx("03_migrate_state", migration_path="rsync"))


def c_cli_mover_with_terraform_1x(k):
    return lambda: state_migration.plan(k.ctx("03_migrate_state", migration_path="cli", cli_target="remote"))


def c_unknown_steps(k):
    return lambda: select_steps("7-9")


def c_misspelt_parameter(k):
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS, mode="apply", out=k.tmp / "r", batch_id="b",
                               parameters={"migraton_path": "cli"})


def c_backend_in_other_org(k):
    root = k.tmp / "cfg"
    root.mkdir()
    (root / "main.tf").write_text('terraform {\n  backend "atlas" {\n    name = "other-org/network-prod"\n  }\n}\n')
    return lambda: hcl.plan_rewrite(root, from_="acme-legacy/network-prod", to=f"{k.org}/network-prod")


def c_token_in_archive(k):
    batch = k.tmp / "runs" / "b"
    (batch / "x").mkdir(parents=True)
    (batch / "x" / "note.txt").write_text(f"oops {TOKEN_SHAPED}")
    audit.write_manifest(batch, parameters={}, outcomes={}, started_at="", finished_at="")
    return lambda: audit.archive(batch)


def c_corrupt_ledger(k):
    path = k.tmp / "ledger.sqlite"
    path.write_bytes(b"not a database" * 64)
    return lambda: Ledger(path)


def _recording_server(answer: Callable[[http.server.BaseHTTPRequestHandler], None]):
    """A local HTTP server calling `answer` per request; returns (url, received header dicts, stop)."""
    received: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            received.append(dict(self.headers.items()))
            answer(self)

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
    return f"http://127.0.0.1:{httpd.server_address[1]}", received, stop


def c_redirect_to_another_origin(k):
    def ok(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")
    other_url, stolen, stop_other = _recording_server(ok)

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"{other_url}/api/v1/environments/acme-legacy/network-prod")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    legacy_url, _, stop_legacy = _recording_server(redirect)

    def cleanup():
        stop_legacy()
        stop_other()
        assert stolen == [], "the legacy token followed the redirect"
    k.cleanup = cleanup
    return lambda: k.legacy(ATLAS_ADDRESS=legacy_url).get_environment("acme-legacy", "network-prod")


def c_token_with_newline(k):
    pasted = k.env["TFE_TOKEN"][:14] + "\n" + k.env["TFE_TOKEN"][14:]  # a line break inside the token
    return lambda: k.tfe(TFE_TOKEN=pasted).get_organization(k.org)


def c_token_shaped_variable_name(k):
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS, mode="plan", out=k.tmp / "r", batch_id="b",
                               parameters={"vcs_token_var": "ghp_" + "Zq8aB" * 8})


def c_parameter_the_batch_sets(k):
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS, mode="plan", out=k.tmp / "r", batch_id="b", parameters={"mode": "apply"})


def c_boolean_parameter_that_is_not(k):
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS, mode="plan", out=k.tmp / "r", batch_id="b",
                               parameters={"recover": "nope"})


def c_batch_name_as_path(k):
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS, mode="plan", out=k.tmp / "r", batch_id="../elsewhere")


def c_mapping_dot_dot(k):
    return lambda: mapping.read_csv("legacy_org,legacy_env,new_org,workspace\nacme-legacy,..,acme,up\n")


def c_mapping_second_header(k):
    header = "legacy_org,legacy_env,new_org,workspace\n"
    return lambda: mapping.read_csv(f"{header}acme-legacy,network-prod,acme,network-prod\n{header}")


def c_mapping_not_utf8(k):
    path = k.tmp / "latin1.csv"
    path.write_bytes("legacy_org,legacy_env,new_org,workspace\nacme-legacy,r\u00e9seau,acme,reseau\n".encode("latin-1"))
    return lambda: mapping.read_csv(path)


def c_lock_held_from_another_out(k):
    from filelock import FileLock

    from runbook_lib.batch import lock_path

    held = FileLock(str(lock_path("acme-legacy/network-prod")))
    held.acquire()
    k.cleanup = held.release
    rows = mapping.propose("acme-legacy", ["network-prod"], k.org)
    return lambda: BatchRunner(rows, STEPS[:1], mode="plan", out=k.tmp / "another-out", batch_id="b").run()


def c_verify_without_sidecar(k):
    import argparse

    from runbook_lib.cli.batch import _verify

    batch = k.tmp / "runs" / "b"
    batch.mkdir(parents=True)
    audit.write_manifest(batch, parameters={}, outcomes={}, started_at="", finished_at="")
    archived = audit.archive(batch)
    archived.path.with_name(archived.path.name + ".sha256").unlink()
    return lambda: _verify(argparse.Namespace(archive=str(archived.path), no_sidecar=False))


def c_malformed_archive(k):
    import tarfile

    path = k.tmp / "flat.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        (k.tmp / "manifest.json").write_text("[]")
        tar.add(k.tmp / "manifest.json", arcname="manifest.json")
    return lambda: audit.verify_archive(path, require_sidecar=False)


CASES = [
    ("unknown environment", c_unknown_environment, NotFoundError, r"404"),
    ("unknown environment on the CLI", c_unknown_environment_in_cli, MappingError, r"add a row"),
    ("invalid workspace name", c_invalid_workspace_name, ConfigError, r"only letters.*set the workspace parameter"),
    ("workspace name over 90", c_long_workspace_name, ConfigError, r"91 characters.*set the workspace parameter"),
    ("colliding workspace names", c_colliding_names, MappingError, r"give one of them another workspace name"),
    ("mapping CSV without a column", c_mapping_missing_column, MappingError, r"header must be"),
    ("mapping CSV with an empty cell", c_mapping_empty_cell, MappingError, r"line 2: empty legacy_env"),
    ("mapping CSV missing", c_mapping_not_a_file, MappingError, r"cannot read the mapping file"),
    ("wrong new-API token", c_wrong_token, AuthError, r"check that the token in \$TFE_TOKEN"),
    ("wrong legacy token", c_wrong_legacy_token, AuthError, r"check that the token in \$ATLAS_TOKEN"),
    ("token variable unset", c_missing_token_variable, ConfigError, r"set the environment variable TFE_TOKEN"),
    ("token value as parameter", c_token_value_as_parameter, ConfigError, r"NAME of an environment variable"),
    ("wrong CA", c_wrong_ca, TransportError, r"TLS verification failed.*set the CA bundle"),
    ("expired CA", c_expired_ca, TransportError, r"TLS verification failed.*expired.*renewed if it expired"),
    ("CA bundle missing", c_missing_ca_file, ConfigError, r"does not exist; point REQUESTS_CA_BUNDLE"),
    ("unreachable host", c_unreachable_host, TransportError, r"check the address and that the host is up"),
    ("malformed address", c_malformed_address, ConfigError, r"must be a base URL like https://"),
    ("malformed state", c_malformed_state, StateError, r"modules"),
    ("truncated state", c_truncated_state, StateError, r"(truncated|not valid JSON|incomplete)"),
    ("md5 mismatch on upload", c_md5_mismatch, ValidationError, r"(?i)md5"),
    ("lineage conflict", c_lineage_conflict, ConflictError, r"(?i)lineage"),
    ("serial regression", c_serial_regression, ConflictError, r"(?i)serial"),
    ("workspace holds another lineage", c_workspace_holds_other_lineage, StepError,
     r"another lineage.*map this environment to another workspace"),
    ("locked legacy environment", c_locked_legacy_environment, StepError, r"locked by operator.*ask them to unlock"),
    ("legacy run in progress", c_run_in_progress, StepError, r"run is in progress.*wait for it to finish"),
    ("existing workspace differs", c_workspace_differs, StepError, r"exists and differs.*fix it by hand"),
    ("organization name taken", c_taken_organization, StepError, r"globally unique: choose another new_org"),
    ("missing step-5 evidence", c_missing_step5_evidence, StepError, r"(?i)step 5|05_commit_and_verify"),
    ("wrong confirmation text", c_wrong_confirmation, GateError, r"must be exactly 'delete acme-legacy/network-prod'"),
    ("no confirmation in a batch", c_missing_confirmation, GateError, r"set the parameter confirm = "),
    ("bad mode", c_bad_mode, ConfigError, r"mode must be 'plan' or 'apply'"),
    ("bad migration path", c_bad_migration_path, ConfigError, r"migration_path must be 'api' or 'cli'"),
    ("Terraform 1.x as state mover", c_cli_mover_with_terraform_1x, ConfigError, r"use migration_path = 'api'"),
    ("unknown step numbers", c_unknown_steps, RunbookError, r"must name steps between 0 and 6"),
    ("misspelt notebook parameter", c_misspelt_parameter, RunbookError, r"check the spelling"),
    ("backend in another organization", c_backend_in_other_org, HclError, r"check --from"),
    ("token planted in the audit trail", c_token_in_archive, AuditError, r"remove them and re-run the archive"),
    ("corrupt ledger", c_corrupt_ledger, LedgerError, r"move it aside"),
    ("legacy host redirects to another origin", c_redirect_to_another_origin, RedirectError,
     r"another origin .*no token or body was sent there: set ATLAS_ADDRESS"),
    ("token with a pasted newline", c_token_with_newline, ConfigError, r"TFE_TOKEN contains a control character"),
    ("credential as a variable name", c_token_shaped_variable_name, RunbookError, r"pass that variable's NAME"),
    ("--param the batch sets itself", c_parameter_the_batch_sets, RunbookError, r"use --mode plan or --mode apply"),
    ("boolean --param that is not one", c_boolean_parameter_that_is_not, RunbookError, r"must be True or False"),
    ("--batch given a path", c_batch_name_as_path, RunbookError, r"--batch must be a name"),
    ("mapping names '..'", c_mapping_dot_dot, MappingError, r"a URL would normalise away"),
    ("mapping with a second header", c_mapping_second_header, MappingError, r"line 3 repeats the header"),
    ("mapping not UTF-8", c_mapping_not_utf8, MappingError, r"not UTF-8 text.*save it as UTF-8"),
    ("environment locked from another --out", c_lock_held_from_another_out, LedgerError, r"whatever its --out"),
    ("verify without the sidecar", c_verify_without_sidecar, AuditError, r"--no-sidecar"),
    ("archive without a batch folder", c_malformed_archive, AuditError, r"is not inside the batch's folder"),
]


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
    written = [f"{r['method']} {r['path']}" for r in seeded_sandbox.request_log(since=mark) if r["changes"]]
    assert written == [], f"{label}: the sandbox recorded writes {written}"


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
