from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

from runbook_lib import audit, summary
from runbook_lib.errors import AuditError

TOKEN = "AbCdEf123456.atlasv1.ZyXwVuTsRqPoNmLkJiHgFeDcBa0987654321"


@pytest.fixture()
def batch(tmp_path):
    root = tmp_path / "runs" / "b-1"
    env = root / audit.env_dirname("acme-legacy/web")
    (env / "state").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Step"), nbformat.v4.new_code_cell("1+1")])
    nbformat.write(nb, env / "00_preflight_inventory.ipynb")
    audit.notebook_to_html(env / "00_preflight_inventory.ipynb")
    state = env / "state" / "legacy-serial-3.tfstate"
    state.write_bytes(b'{"version": 3, "serial": 3, "lineage": "x", "modules": []}')
    os.chmod(state, 0o600)
    summary.write_summary_html(root, {"acme-legacy/web": {"00": "passed", "01": "failed"}}, ["00", "01"])
    audit.write_manifest(root, parameters={"mode": "apply", "tfe_token_var": "TFE_TOKEN"},
                         outcomes={"acme-legacy/web": {"00": "passed"}}, started_at="s", finished_at="f")
    return root


def test_layout_and_manifest(batch):
    assert env_dir_name() == "acme-legacy__web"
    manifest = json.loads((batch / "manifest.json").read_text())
    files = manifest["files"]
    assert "acme-legacy__web/00_preflight_inventory.ipynb" in files
    assert "acme-legacy__web/00_preflight_inventory.html" in files
    assert files["acme-legacy__web/state/legacy-serial-3.tfstate"]["state_backup"] is True
    assert files["summary.html"]["sha256"] == audit.sha256_file(batch / "summary.html")
    assert manifest["runbook"]["version"] and manifest["parameters"]["tfe_token_var"] == "TFE_TOKEN"
    assert "background:#ffcdd2" in (batch / "summary.html").read_text()


def env_dir_name():
    return audit.env_dirname("acme-legacy/web")


def test_archive_excludes_state_and_verifies(batch):
    result = audit.archive(batch)
    assert result.excluded_state_backups == 1
    with tarfile.open(result.path) as tar:
        names = tar.getnames()
    assert not any("/state/" in n for n in names)
    assert audit.verify_archive(result.path) == []


def test_archive_with_state_on_request(batch):
    result = audit.archive(batch, include_state=True)
    with tarfile.open(result.path) as tar:
        assert any("/state/" in n for n in tar.getnames())
    assert audit.verify_archive(result.path) == []


def test_archive_refuses_planted_token_and_writes_nothing(batch, monkeypatch):
    monkeypatch.setenv("ATLAS_TOKEN", TOKEN)
    html = batch / "acme-legacy__web" / "00_preflight_inventory.html"
    html.write_text(html.read_text() + f"<pre>{TOKEN}</pre>")
    with pytest.raises(AuditError, match="00_preflight_inventory.html") as info:
        audit.archive(batch)
    assert TOKEN not in str(info.value)
    assert not (batch.parent / "b-1.tar.gz").exists()


def test_manifest_refuses_token_in_parameters(batch, monkeypatch):
    monkeypatch.setenv("TFE_TOKEN", TOKEN)
    with pytest.raises(AuditError, match="NAME"):
        audit.write_manifest(batch, parameters={"token": TOKEN}, outcomes={}, started_at="", finished_at="")


def _rewrite_member(archive_path, member_suffix, mutate):
    with tarfile.open(archive_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    with tarfile.open(archive_path, "w:gz") as tar:
        for info, data in members:
            if info.name.endswith(member_suffix):
                data = mutate(data)
                info.size = len(data)
            import io
            tar.addfile(info, io.BytesIO(data))


def test_verify_catches_one_changed_byte(batch):
    result = audit.archive(batch)
    _rewrite_member(result.path, "00_preflight_inventory.ipynb", lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:])
    problems = audit.verify_archive(result.path)
    kinds = {(p.path, p.problem) for p in problems}
    assert ("acme-legacy__web/00_preflight_inventory.ipynb", "changed") in kinds
    assert any(p.problem == "archive checksum" for p in problems)


def test_verify_rejects_non_archive(tmp_path):
    bogus = tmp_path / "x.tar.gz"
    bogus.write_bytes(b"nope")
    with pytest.raises(AuditError, match="not a readable archive"):
        audit.verify_archive(bogus)


def test_the_kept_html_exporter_writes_what_a_new_one_writes(tmp_path):
    # One exporter per thread is kept (its templates compiled once); each copy must still be the
    # notebook's own, whatever was converted before it in that thread.
    import shutil
    import threading

    import nbformat
    from nbconvert import HTMLExporter

    notebooks = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))[:3]
    copies = [Path(shutil.copy(nb, tmp_path / nb.name)) for nb in notebooks]
    for path in copies + copies[::-1]:
        written = audit.notebook_to_html(path).read_text()
        assert written == HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))[0]
    assert audit._html_exporter() is audit._html_exporter()
    other = []
    thread = threading.Thread(target=lambda: other.append(audit._html_exporter()))
    thread.start()
    thread.join()
    assert other[0] is not audit._html_exporter()  # not shared between threads


def _executed(environment: str, lexer: str) -> Any:
    """A notebook as a batch leaves it: parameters, tagged cells, tables, streams, an error, markdown."""
    import nbformat.v4 as v4

    nb = v4.new_notebook(metadata={"language_info": {"name": "python", "pygments_lexer": lexer}})
    nb.cells = [
        v4.new_markdown_cell("# Step 3\nMigrate the state of `<env>` <b>once</b>."),
        v4.new_code_cell(f'legacy_env = "{environment}"\ntoken_env = "ATLAS_TOKEN"', execution_count=1,
                         metadata={"tags": ["injected-parameters"]}),
        v4.new_code_cell("from runbook_lib.steps import migrate_state\nctx = migrate_state.context(legacy_env)",
                         execution_count=2, outputs=[v4.new_output("stream", name="stdout", text=f"{environment}: ok\n")]),
        v4.new_code_cell("table(plan.rows)  # a <table> & \"quotes\"", execution_count=3, metadata={"tags": ["evidence"]},
                         outputs=[v4.new_output("display_data", data={
                             "text/html": f"<style>#T_1 td {{color:red}}</style><table id='T_1'><tr><td>{environment}</td>"
                                          f"<td><img src='data:image/png;base64,AA=='></td></tr></table>",
                             "text/plain": environment})]),
        # the same source in every copy: papermill's timings differ, a magic's language only in one
        v4.new_code_cell("%%bash\necho $TFE_TOKEN_ENV | wc -c  # <not a tag>", execution_count=4,
                         metadata={"papermill": {"start_time": f"2026-12-01T00:00:0{len(environment) % 10}Z",
                                                 "duration": len(environment) / 7},
                                   **({"magics_language": "bash"} if environment == "db-prod" else {})}),
        v4.new_code_cell("1 / 0", execution_count=4, outputs=[v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero",
            traceback=["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"])]),
        v4.new_code_cell("", execution_count=5),
    ]
    return nb


def test_the_remembered_filters_change_no_byte_of_any_copy(tmp_path):
    # The exporter remembers highlighted and cleaned cell sources; a copy must still be exactly what a
    # new nbconvert exporter writes, whatever was converted before it: other environments of the same
    # notebook (same sources, other outputs) and notebooks whose language highlights the same source otherwise.
    import threading

    import nbformat
    from nbconvert import HTMLExporter

    fresh = HTMLExporter()
    order = [("app-prod", "ipython3"), ("db-prod", "ipython3"), ("app-prod", "json"), ("web.prod", "ipython3"),
             ("app-prod", "ipython3"), ("db-prod", "json")]

    def convert(into: list) -> None:
        for i, (environment, lexer) in enumerate(order):
            path = tmp_path / f"{threading.get_ident()}-{i}.ipynb"
            nbformat.write(_executed(environment, lexer), path)
            into.append((audit.notebook_to_html(path).read_text(),
                         fresh.from_notebook_node(nbformat.read(path, as_version=4))[0]))

    pages: list = []
    convert(pages)
    for written, expected in pages:
        assert written == expected
    assert pages[0][0] != pages[2][0] and pages[0][0] != pages[1][0]  # the lexer and the outputs show
    assert "tabindex" in pages[0][0] and "No description has been provided" in pages[0][0]  # nbconvert's own pass ran
