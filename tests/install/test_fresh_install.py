"""A non-editable install in a fresh virtual environment, used as an operator would after `pip install .`.

The runbook is copied out of the checkout (its tracked files), installed with pip into a new venv (pip takes
wheels from this machine's cache and package registries), and then, with nothing of the checkout on the
path: `doctor` finds the notebooks inside the installed package, `notebooks DIR` copies them into a working
folder, and a plan batch of steps 0-6 runs against the seeded sandbox from that folder.

Slow (about a minute for pip, half a minute for the batch): its own tier, `pytest -m install`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from runbook_lib.mapping import propose, write_csv
from runbook_lib.rehearsal import batch_environ, operator_rows, sensitive_values

REPO = Path(__file__).resolve().parents[2]
ENVS = ["network-prod", "web.prod"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the runbook installed from a copy of the checkout's tracked files."""
    root = tmp_path_factory.mktemp("fresh-install")
    source = root / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():  # runbook_lib/notebooks -> ../notebooks
            target.symlink_to(os.readlink(REPO / name))
        elif (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(source)], env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a shell outside the checkout: no PYTHONPATH, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **(extra or {})}


def test_the_installed_runbook_finds_its_notebooks_and_copies_them(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import runbook_lib; print(runbook_lib.__file__)"],
                           env=_clean_env(), cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed))  # the installed package, not the checkout
    doctor = subprocess.run([str(installed / "bin" / "tfe-runbook"), "doctor", "--offline"], env=_clean_env(),
                            cwd=tmp_path, capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"7 in {installed}" in doctor.stdout and "site-packages/runbook_lib/notebooks" in doctor.stdout
    copied = subprocess.run([str(installed / "bin" / "tfe-runbook"), "notebooks", "work"], env=_clean_env(),
                            cwd=tmp_path, capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    assert sorted(p.name for p in (tmp_path / "work").glob("*.ipynb"))[0] == "00_preflight_inventory.ipynb"
    assert len(list((tmp_path / "work").glob("*.ipynb"))) == 7


def test_a_plan_batch_runs_from_the_installed_runbook(installed, tmp_path, seeded_sandbox):
    work = tmp_path / "work"
    work.mkdir()
    rows = operator_rows(seeded_sandbox, propose("acme-legacy", ENVS, f"fresh-{uuid.uuid4().hex[:8]}"))
    write_csv(rows, work / "mapping.csv")
    env = _clean_env({**batch_environ(seeded_sandbox.env), **sensitive_values(seeded_sandbox, rows),
                      "TFE_RUNBOOK_LOCK_DIR": str(tmp_path / "locks"),
                      "PATH": f"{installed / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})
    done = subprocess.run(["tfe-runbook", "run", "--mapping", "mapping.csv", "--mode", "plan", "--steps", "0-6",
                           "--progress", "plain"], env=env, cwd=work, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    batch = work / "runs" / "mapping-plan"
    manifest = json.loads((batch / "manifest.json").read_text())
    assert manifest["runbook"]["version"] and len(manifest["environments"]) == len(ENVS)
    for env_name in ENVS:
        folder = batch / f"acme-legacy__{env_name}"
        assert len(list(folder.glob("0?_*.ipynb"))) == 7 and len(list(folder.glob("0?_*.html"))) == 7
    kernels = subprocess.run([str(installed / "bin" / "jupyter"), "kernelspec", "list"], env=env,
                             capture_output=True, text=True, check=True).stdout
    assert str(installed) in kernels  # the kernels that ran the notebooks are the fresh venv's python
