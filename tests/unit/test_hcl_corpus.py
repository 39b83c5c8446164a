"""Every case of tests/hcl_corpus: find result, planned outcome, exact bytes after apply, idempotency.

Each case runs twice: with the full parse small files get, and with the scan large files get
(`_syntax.FULL_PARSE_BYTES` lowered to 0), which must give the same rows, refusals and bytes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runbook_lib import hcl
from runbook_lib.errors import HclError
from runbook_lib.hcl import _syntax

_SPEC = importlib.util.spec_from_file_location(
    "hcl_corpus", Path(__file__).resolve().parent.parent / "hcl_corpus" / "corpus.py")
corpus = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(corpus)

CASES = corpus.case_names()


@pytest.fixture(autouse=True, params=["full", "scan"])
def parse_mode(request, monkeypatch):
    """Run each test with every file parsed in full, then with every file scanned."""
    if request.param == "scan":
        monkeypatch.setattr(_syntax, "FULL_PARSE_BYTES", 0)
    return request.param


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    outcomes = {corpus.load_case(name)["outcome"] for name in CASES}
    assert outcomes == {"edit", "noop", "refuse"}


@pytest.mark.parametrize("name", CASES)
def test_find(name):
    spec = corpus.load_case(name)
    directory = corpus.CORPUS_DIR / name / "input"
    if "find" not in spec:  # an unparseable file: find refuses as the rewrite does
        with pytest.raises(HclError, match="cannot be parsed"):
            hcl.find_backends(directory)
        with pytest.raises(HclError, match="cannot be parsed"):
            hcl.find_all(directory)
        return
    assert corpus.records(hcl.find_backends(directory)) == spec["find"]
    assert corpus.records(hcl.find_remote_state_refs(directory)) == spec.get("remote_state", [])
    backends, refs = hcl.find_all(directory)  # what `backend show` prints: both from one reading
    assert corpus.records(backends) == spec["find"]
    assert corpus.records(refs) == spec.get("remote_state", [])


@pytest.mark.parametrize("name", CASES)
def test_rewrite(name, tmp_path):
    spec = corpus.load_case(name)
    work = corpus.copy_input(name, tmp_path / "work")
    before = corpus.snapshot(work)

    if spec["outcome"] == "refuse":
        with pytest.raises(HclError) as refused:
            corpus.make_plan(spec, work)
        message = str(refused.value)
        assert spec["message"] in message
        assert "\n" not in message and message.endswith(".")  # one sentence
        assert corpus.snapshot(work) == before
        return

    plan = corpus.make_plan(spec, work)
    assert spec["message"] in plan.message
    assert corpus.snapshot(work) == before, "planning must write nothing"
    if spec["outcome"] == "noop":
        assert plan.is_empty and plan.diff() == "" and plan.frame().empty
        assert list(hcl.apply_rewrite(plan)) == []
        assert corpus.snapshot(work) == before
        return

    assert not plan.is_empty
    assert list(plan.frame().columns) == hcl.PLAN_COLUMNS and len(plan.frame()) >= 1
    for rewrite in plan.files:
        assert f"b/{rewrite.rel}" in plan.diff()
    written = hcl.apply_rewrite(plan)
    after = corpus.snapshot(work)
    expected = corpus.expected_files(name)
    assert expected, "an edit case needs expected/ files"
    changed = {rel for rel, data in after.items() if before.get(rel) != data and ".bak" not in rel}
    assert changed == set(expected)
    for rel, data in expected.items():
        assert after[rel] == data, f"{rel} differs from expected/{rel}"
        if rel in before:
            assert after[rel + ".bak"] == before[rel], "the backup holds the original bytes"
    assert sorted(Path(p).relative_to(work).as_posix() for p in written) == sorted(expected)
    for rel, data in before.items():
        if rel not in expected:
            assert after[rel] == data

    again = corpus.make_plan(spec, work)
    assert again.is_empty, "a second run must change nothing"
    assert "already points at" in again.message
    assert list(hcl.apply_rewrite(again)) == []
    assert corpus.snapshot(work) == after
