"""Real Terraform accepts every rewritten corpus case, and uses the settings the rewrite intended.

Which terraform checks what (from each case's `terraform` field):
- "0.11" (Terraform 0.11.11): atlas blocks and atlas terraform_remote_state sources. Terraform 1.x removed
  the atlas backend, and 0.11.11 predates the `remote` backend (0.11.13), so each is checked only where it exists.
- "1.x": `remote` backends and `cloud` blocks.

Two checks per case:
1. `init -backend=false` then `validate`: the whole rewritten configuration is valid for that terraform.
   This alone does not check the backend block (both generations skip it with -backend=false).
2. A real `init` whose backend traffic goes to a stub HTTP server that answers 404 to everything: the
   stub must see a request for the intended organization/workspace. That happens only after Terraform has
   parsed the block, accepted it against the backend's schema and configured the backend with those values.
   0.11: `-backend-config=address=<stub>` overrides only the atlas address. 1.x: the CLI config's `host`
   blocks send service discovery for the rewritten hostname to the stub. Nothing leaves the machine.
   The stub is not a TFE, so init's exit status is not asserted here; the request log is.
"""

from __future__ import annotations

import http.server
import importlib.util
import threading
from pathlib import Path

import pytest

from runbook_lib import hcl
from runbook_lib import terraform as tf

_SPEC = importlib.util.spec_from_file_location(
    "hcl_corpus", Path(__file__).resolve().parent.parent / "hcl_corpus" / "corpus.py")
corpus = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(corpus)

CASES = [name for name in corpus.case_names() if corpus.load_case(name).get("terraform")]


class _Stub(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def _answer(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:  # keep pytest output clean
        return


@pytest.fixture(scope="module")
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Stub.paths
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tools(tmp_path_factory, stub):
    base = tmp_path_factory.mktemp("tf-tools")
    url, _ = stub
    cli_config = Path(tf.write_cli_config(base / "cli.tfrc", mirror_dir=tf.provider_mirror_1x(base / "mirror")))
    hosts = []
    for host in (hcl.DEFAULT_HOSTNAME, "tfe.example.com"):
        hosts += [f'host "{host}" {{', "  services = {", f'    "tfe.v2" = "{url}/api/v2/"',
                  f'    "tfe.v2.1" = "{url}/api/v2/"', "  }", "}"]
    with cli_config.open("a") as handle:
        handle.write("\n".join(hosts) + "\n")
    return {"plugins": tf.plugin_dir_011(base / "plugins"), "cli_config": str(cli_config),
            "tf011": tf.terraform_011(), "tf1": tf.terraform_1x()}


def _roots(spec, work: Path) -> list[Path]:
    roots = spec.get("terraform_root", spec["args"].get("root", "."))
    return [work / root for root in ([roots] if isinstance(roots, str) else roots)]


@pytest.mark.parametrize("name", CASES)
def test_terraform_accepts_rewritten_case(name, tmp_path, tools, stub):
    spec = corpus.load_case(name)
    work = corpus.copy_input(name, tmp_path / "work")
    plan = corpus.make_plan(spec, work)
    hcl.apply_rewrite(plan)
    url, paths = stub
    env = {"ATLAS_TOKEN": "stub-token-not-secret", "TF_TOKEN_app_terraform_io": "stub-token-not-secret",
           "TF_TOKEN_tfe_example_com": "stub-token-not-secret", "TF_CLI_CONFIG_FILE": tools["cli_config"]}
    for root in _roots(spec, work):
        if spec["terraform"] == "0.11":
            binary = tools["tf011"]
            tf.run(binary, ["init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={tools['plugins']}"],
                   cwd=root, env=env, timeout=120)
            tf.run(binary, ["validate", "-check-variables=false", "-no-color"], cwd=root, env=env, timeout=120)
        else:
            binary = tools["tf1"]
            tf.run(binary, ["init", "-backend=false", "-input=false", "-no-color"], cwd=root, env=env, timeout=120)
            tf.run(binary, ["validate", "-no-color"], cwd=root, env=env, timeout=120)

    if spec["operation"] == "remote_state":
        return  # the root's own backend is untouched; check 1 covers the edited data sources
    root = _roots(spec, work)[0]
    org, workspace = (spec["args"]["from"] if spec["operation"] == "add_legacy" else spec["args"]["to"]).split("/")
    del paths[:]
    if spec["terraform"] == "0.11":
        tf.run(tools["tf011"], ["init", "-input=false", "-no-color", f"-plugin-dir={tools['plugins']}",
                                f"-backend-config=address={url}"], cwd=root, env=env, timeout=120, check=False)
        wanted = f"/api/v1/terraform/state/{org}/{workspace}"
    else:
        tf.run(tools["tf1"], ["init", "-input=false", "-no-color"], cwd=root, env=env, timeout=120, check=False)
        wanted = f"/organizations/{org}"
    assert any(wanted in path for path in paths), f"terraform never asked the stub for {wanted}: {paths}"


def test_stub_check_catches_a_wrong_name(tmp_path, tools, stub):
    """Control: the request log does tell which name Terraform used (so the check above can fail)."""
    root = tmp_path / "wrong"
    root.mkdir()
    (root / "main.tf").write_text('terraform {\n  backend "atlas" {\n    name = "legacy/app"\n  }\n}\n')
    url, paths = stub
    del paths[:]
    tf.run(tools["tf011"], ["init", "-input=false", "-no-color", f"-backend-config=address={url}"], cwd=root,
           env={"ATLAS_TOKEN": "stub-token-not-secret"}, timeout=120, check=False)
    assert any("/legacy/app" in path for path in paths)
    assert not any("/acme/app-prod" in path for path in paths)
