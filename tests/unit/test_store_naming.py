"""The sandbox store's lookups follow the clients' naming: `get_` raises, `find_` returns None."""

from __future__ import annotations

import inspect

import pytest

from runbook_lib.sandbox.store import Store


def _lookups(prefix):
    return [(name, fn) for name, fn in inspect.getmembers(Store, inspect.isfunction)
            if name.startswith(prefix) and fn.__name__ == name]  # aliases kept for old callers are skipped


def test_get_never_answers_none():
    optional = [name for name, fn in _lookups("get_") if "None" in str(inspect.signature(fn).return_annotation)]
    assert optional == []


def test_find_may_answer_none():
    always = [name for name, fn in _lookups("find_") if "None" not in str(inspect.signature(fn).return_annotation)]
    assert always == []


def test_get_raises_and_find_answers_none(tmp_path):
    from runbook_lib.sandbox.errors import NotFoundError

    store = Store(tmp_path / "s.sqlite")
    assert store.find_user("nobody") is None and store.find_legacy_run("run-none") is None
    assert store.find_meta("absent", "fallback") == "fallback"
    with pytest.raises(NotFoundError):
        store.get_environment("nobody", "nothing", store.create_user("ann", "ann@example.com"))
