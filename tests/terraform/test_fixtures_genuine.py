"""The committed state and plan fixtures are what the real terraform binaries produce.

Every run regenerates the whole set in a temporary directory (0.11.11 and 1.x, offline) and compares it
with tests/fixtures structurally: the same files, resources, addresses, instance keys, actions, reasons
and counts. Ids, lineages, serials, timestamps and versions change on every run and are not compared;
relations between them (the upgraded state keeps the 0.11 lineage) are.

`pytest tests/terraform/test_fixtures_genuine.py --regenerate-fixtures` rewrites the committed files instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import fixture_factory
from runbook_lib.plans import parse_plan_json, parse_plan_text, read_plan
from runbook_lib.state import compare_states, read_state

pytestmark = pytest.mark.fixtures

PLAN_FILES = ([f"v011_{s}.txt" for s in fixture_factory.V011_PLAN_SCENARIOS]
              + [f"v011_{s}.ansi.txt" for s in fixture_factory.V011_PLAN_SCENARIOS]
              + [f"v1_{s}.json" for s in fixture_factory.V1_PLAN_SCENARIOS])


@pytest.fixture(scope="module")
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("terraform-work")
    if request.config.getoption("--regenerate-fixtures"):
        fixture_factory.regenerate_committed(fixtures_dir, work)
        return fixtures_dir
    out = tmp_path_factory.mktemp("generated-fixtures")
    fixture_factory.generate(out, work)
    return out


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for sub in ("states", "plans") for p in (root / sub).rglob("*") if p.is_file()}


def test_generator_writes_exactly_the_committed_files(generated: Path, fixtures_dir: Path):
    expected = ({f"states/{name}" for name in fixture_factory.STATE_FILES} | {f"plans/{name}" for name in PLAN_FILES})
    assert _listing(generated) == expected
    assert _listing(fixtures_dir) == expected


def test_generated_files_do_not_leak_the_work_directory(generated: Path):
    # The committed fixtures must not carry the generating machine's paths.
    for relative in _listing(generated):
        text = (generated / relative).read_text()
        assert "/tmp/" not in text and "pytest-of-" not in text, relative


@pytest.mark.parametrize("name", fixture_factory.STATE_FILES)
def test_state_matches_committed_structure(generated: Path, fixtures_dir: Path, name: str):
    fresh, committed = read_state(generated / "states" / name), read_state(fixtures_dir / "states" / name)
    assert fresh.version == committed.version
    pd.testing.assert_frame_equal(fresh.resources_frame(), committed.resources_frame())
    volatile = ["id"]
    pd.testing.assert_frame_equal(fresh.instances_frame().drop(columns=volatile),
                                  committed.instances_frame().drop(columns=volatile))
    assert sorted(fresh.outputs) == sorted(committed.outputs)


def test_upgraded_states_keep_the_011_lineage_and_resources(generated: Path, fixtures_dir: Path):
    for root in (generated, fixtures_dir):
        v3 = read_state(root / "states" / "v3.tfstate")
        for name in ("v4_upgraded_from_v3.tfstate", "v4_refreshed_from_v3.tfstate"):
            upgraded = read_state(root / "states" / name)
            assert upgraded.lineage == v3.lineage and upgraded.serial > v3.serial
            assert compare_states(v3, upgraded).empty, (root, name)


def _plan_view(path: Path) -> tuple:
    plan = read_plan(str(path))
    return (plan.source, plan.has_changes, plan.additions, plan.changes_count, plan.destructions,
            plan.output_changes, plan.changes)


@pytest.mark.parametrize("name", PLAN_FILES)
def test_plan_matches_committed_structure(generated: Path, fixtures_dir: Path, name: str):
    fresh, committed = _plan_view(generated / "plans" / name), _plan_view(fixtures_dir / "plans" / name)
    assert fresh[:-1] == committed[:-1]
    pd.testing.assert_frame_equal(fresh[-1], committed[-1])


@pytest.mark.parametrize("scenario", fixture_factory.V011_PLAN_SCENARIOS)
def test_011_colored_and_plain_text_are_the_same_plan(generated: Path, scenario: str):
    plain = parse_plan_text((generated / "plans" / f"v011_{scenario}.txt").read_text())
    colored_text = (generated / "plans" / f"v011_{scenario}.ansi.txt").read_text()
    assert "\x1b[" in colored_text
    colored = parse_plan_text(colored_text)
    pd.testing.assert_frame_equal(plain.changes, colored.changes)
    assert plain.summary == colored.summary


def test_json_plans_are_from_terraform_1x(generated: Path):
    for scenario in fixture_factory.V1_PLAN_SCENARIOS:
        plan = parse_plan_json((generated / "plans" / f"v1_{scenario}.json").read_bytes())
        assert plan.terraform_version and plan.terraform_version.startswith("1."), scenario
