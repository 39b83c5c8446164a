"""Benchmark (not a test): API requests per environment for notebooks 00-06 in apply mode.

Targets: at most 40 requests per environment for steps 0-6, run polling counted apart (shown in all and to
the TFE host alone: its rate limit is the estate's bound; the legacy host documents none), and at most 10
polls per awaited run.

A sandbox seeded with `--environments` environments (6: every special case: a period in a name, a
lock, a legacy run in progress, a remote-state reader, sensitive variables) runs the batch with
`--jobs 1` through papermill, as `tfe-runbook run` does; after each step the sandbox's request log is
read from the last mark, so every request belongs to one environment and step.

Classified apart from the "work" requests:

- polling in step 5: `GET /api/v2/runs/:id`, `GET /api/v2/workspaces/:id/runs` (finding and re-reading
  the run of the pushed commit; the verify's one lookup is included), repeated `GET /api/v2/plans/:id`,
  `GET /api/v1/environments/:org/:env/runs` (the legacy runs list);
- 429 answers (the rate limiter's refusals, retried by the transport);
- requests the sandbox's own run worker makes (its terraform reading another environment's state
  through `terraform_remote_state`): not the runbook's;
- the batch's account check (`GET /api/v2/account/details`, the legacy user of the token), once per batch
  before its first step, whose log it would otherwise join;
- transfers of hosted objects (`/_archivist/...`: the state upload and its download, the plan's JSON):
  signed links to the object store, not API calls under the API's rate limit. They are counted and
  shown in their own column ("hosted"), not hidden.

    .venv/bin/python benchmarks/api_calls.py [--environments 6]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (OPERATOR_PARAMETERS, confirm_lines, mapping_rows, print_table, rehearsal_sandbox, report_targets, target,
                     wait_for_quiet, write_results)

CALLS_TARGET = 40
POLLS_TARGET = 10
STEP_5 = "05_commit_and_verify"
_POLL = [re.compile(p) for p in (r"^/api/v2/runs/[^/]+$", r"^/api/v2/workspaces/[^/]+/runs$",
                                 r"^/api/v2/plans/[^/]+$", r"^/api/v1/environments/[^/]+/[^/]+/runs$")]
_RUN_POLL = _POLL[:2]


def client_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests a client sent: the APIs and hosted objects, not the sandbox's admin or webhook paths."""
    return [r for r in rows if r["path"].startswith(("/api/", "/.well-known/", "/_archivist/"))]


def classify(step: str, env: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of one step's requests for one environment."""
    from urllib.parse import quote

    own_state = f"/api/v1/terraform/state/{env.split('/')[0]}/{quote(env.split('/', 1)[1], safe='')}"
    counts = {"work": 0, "polls": 0, "run_polls": 0, "answers_429": 0, "run_worker": 0, "hosted": 0, "tfe_work": 0,
              "batch": 0}
    for row in rows:
        path = row["path"]
        if path == "/api/v2/account/details" or (path.startswith("/api/v1/user/")
                                                  and path != f"/api/v1/user/{env.split('/')[0]}"):
            counts["batch"] += 1  # the batch's one account check per host, before its first step
        elif row["status"] == 429:
            counts["answers_429"] += 1
        elif path.startswith("/_archivist/"):
            counts["hosted"] += 1
        elif (step == STEP_5 and path.startswith("/api/v1/terraform/state/") and path != own_state
              and row["method"] == "GET"):
            counts["run_worker"] += 1  # the runbook never reads another environment's state
        elif step == STEP_5 and row["method"] == "GET" and any(p.match(path) for p in _POLL):
            counts["polls"] += 1
            counts["run_polls"] += any(p.match(path) for p in _RUN_POLL)
        else:
            counts["work"] += 1
            # the new TFE's requests (its rate limit bounds an estate); the rest go to the legacy host
            counts["tfe_work"] += not path.startswith("/api/v1/")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=6)
    args = parser.parse_args(argv)
    quiet = wait_for_quiet()

    from runbook_lib.batch import STEPS, BatchRunner, StepOutcome
    from runbook_lib.rehearsal import OperatorAlongside
    from runbook_lib.rehearsal import batch_parameters

    scratch = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    per: dict[str, dict[str, dict[str, Any]]] = {}
    paths: dict[str, dict[str, list[str]]] = {}
    failures: list[str] = []
    try:
        with rehearsal_sandbox(scratch / "sandbox", args.environments, subprocess=True) as sandbox:
            rows = mapping_rows(sandbox, "acme-calls")
            mark = [sandbox.log_mark()]

            def on_step(outcome: StepOutcome) -> None:
                # jobs=1: everything logged since the last mark is this environment's step.
                logged = sandbox.request_log(since=mark[0])
                if logged:
                    mark[0] = logged[-1]["id"]
                sent = client_rows(logged)
                per.setdefault(outcome.environment, {})[outcome.step] = classify(outcome.step, outcome.environment,
                                                                                 sent)
                paths.setdefault(outcome.environment, {})[outcome.step] = [
                    f"{r['method']} {r['path']} {r['status']}" for r in sent]
                if outcome.status in ("failed", "blocked"):  # not "retrying": its retry is logged next
                    failures.append(f"{outcome.environment} {outcome.step}: {outcome.error}")

            with OperatorAlongside(sandbox, rows, scratch / "runs" / "calls"):  # the operator's part, in the UI
                BatchRunner(rows, STEPS, mode="apply", out=scratch / "runs", batch_id="calls", jobs=1,
                            parameters={**batch_parameters(sandbox.env), **OPERATOR_PARAMETERS},
                            confirm_lines=confirm_lines(rows), on_step=on_step).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    envs = {}
    for env, steps in per.items():
        total = {k: sum(s[k] for s in steps.values()) for k in ("work", "polls", "run_polls", "answers_429",
                                                                 "run_worker", "hosted", "tfe_work", "batch")}
        envs[env] = {"per_step": steps, "total": total,
                     "polls_per_awaited_run": steps.get(STEP_5, {}).get("run_polls", 0)}
    max_work = max(e["total"]["work"] for e in envs.values())
    mean_work = round(sum(e["total"]["work"] for e in envs.values()) / len(envs), 1)
    max_polls = max(e["polls_per_awaited_run"] for e in envs.values())
    max_tfe = max(e["total"]["tfe_work"] for e in envs.values())
    mean_tfe = round(sum(e["total"]["tfe_work"] for e in envs.values()) / len(envs), 1)
    targets = {"requests per environment, steps 0-6, polling apart (max)": target(max_work, CALLS_TARGET),
               "of them to the TFE host (max)": target(max_tfe, CALLS_TARGET),
               "polls per awaited run (max)": target(max_polls, POLLS_TARGET),
               "failed steps": target(len(failures), 0)}
    step_max = {step: max(e["per_step"].get(step, {}).get("work", 0) for e in envs.values()) for step in STEPS}
    results = {"settings": {"environments": args.environments, "jobs": 1, "mode": "apply"},
               "figures": {"max_requests_per_environment": max_work, "mean_requests_per_environment": mean_work,
                           "max_tfe_requests_per_environment": max_tfe,
                           "mean_tfe_requests_per_environment": mean_tfe,
                           "max_hosted_transfers_per_environment": max(e["total"]["hosted"] for e in envs.values()),
                           "max_polls_per_awaited_run": max_polls,
                           "max_requests_per_step": step_max},
               "targets": targets, "environments": envs, "failures": failures, "load": quiet,
               "requests_by_step": paths}
    path = write_results("api_calls", results)
    print_table([(env, e["total"]["work"], e["total"]["tfe_work"],
                  *(e["per_step"].get(s, {}).get("work", "-") for s in STEPS),
                  e["polls_per_awaited_run"], e["total"]["polls"], e["total"]["hosted"], e["total"]["answers_429"])
                 for env, e in envs.items()],
                ("environment", "total", "tfe", *(s[:2] for s in STEPS), "run polls", "all polls", "hosted", "429s"))
    print(f"\nmean requests per environment: {mean_work} ({mean_tfe} to the TFE host)")
    report_targets(targets, path)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
