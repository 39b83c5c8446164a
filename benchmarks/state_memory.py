"""Benchmark (not a test): peak memory of step 3's API path for a large state.

Target (issue 10): a 50 MB state migrated by the API path peaks at most 4x the state size.

A real-shaped Terraform 0.11 state (format 3, indented as terraform writes it) of `--mb` megabytes
is generated: many `null_resource` instances, each with a long `triggers` attribute. It is stored as a
legacy environment's state through the legacy state PUT (`LegacyClient.put_state`, as the atlas
backend does), and an organization with an empty workspace is made for it. Then a child process (one
per measure) builds the step's context and runs `state_migration.apply` and `state_migration.verify`
exactly as notebook 03 does:

- `rss`: the peak RSS (`VmHWM`, reset through `/proc/self/clear_refs` just before the run) minus the
  RSS before it (after imports and the clients' creation): the memory the step added at its peak
  (`ru_maxrss` cannot be used here: Linux carries it over from the parent across fork and exec);
- `tracemalloc`: the peak of Python's own allocations during the run (what the code holds, without
  the allocator's slack), in a second child on a second empty workspace.

    .venv/bin/python benchmarks/state_memory.py [--mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import PROC_STATUS, ROOT, print_table, report_targets, target, wait_for_quiet, write_results

RATIO_TARGET = 4.0
LEGACY_ENV = "big-state-prod"
NEW_ORG = "acme-mem"


def make_state(megabytes: float, attribute_chars: int = 2000) -> bytes:
    """A format-3 state of about `megabytes` MB: `null_resource.big.N` instances with a long trigger each."""
    target_size = int(megabytes * 1024 * 1024)
    payload = "x" * attribute_chars
    per_instance = attribute_chars + 690  # the indented JSON around one instance, measured for this shape
    resources = {}
    for i in range(max(1, target_size // per_instance)):
        ident = str(1000000000000000000 + i)
        resources[f"null_resource.big.{i}"] = {
            "type": "null_resource", "depends_on": [],
            "primary": {"id": ident, "attributes": {"id": ident, "triggers.%": "2", "triggers.index": str(i),
                                                    "triggers.payload": payload},
                        "meta": {}, "tainted": False},
            "deposed": [], "provider": "provider.null"}
    doc = {"version": 3, "terraform_version": "0.11.11", "serial": 7, "lineage": str(uuid.uuid4()),
           "modules": [{"path": ["root"], "outputs": {}, "resources": resources, "depends_on": []}]}
    return (json.dumps(doc, indent=4) + "\n").encode()


CHILD = r'''
import json, os, resource, sys, time, tracemalloc
from runbook_lib.context import StepContext
from runbook_lib.steps import state_migration

''' + PROC_STATUS + r'''
mode, audit_root, workspace = sys.argv[1:4]
ctx = StepContext.create(step="03_migrate_state", legacy_org="acme-legacy", legacy_env="%(env)s", new_org="%(org)s",
                         workspace=workspace, mode="apply", audit_root=audit_root, interactive=False,
                         migration_path="api")
ctx.legacy, ctx.tfe  # the clients (requests, urllib3, TLS context) exist before the baseline
baseline = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM (the peak RSS) to the current RSS: the peak from here on is the step's
if mode == "tracemalloc":
    tracemalloc.start()
started = time.perf_counter()
applied = state_migration.apply(ctx)
result = state_migration.verify(ctx)
seconds = time.perf_counter() - started
peak_traced = tracemalloc.get_traced_memory()[1] if mode == "tracemalloc" else None
peak = status("VmHWM")
print("RESULT " + json.dumps({"passed": result.passed, "summary": result.summary, "seconds": round(seconds, 2),
                              "baseline_rss_bytes": baseline, "peak_rss_bytes": peak,
                              "added_rss_bytes": peak - baseline, "traced_peak_bytes": peak_traced}))
'''


def run_child(mode: str, audit_root: Path, workspace: str, env: dict[str, str]) -> dict:
    """Run step 3 (apply + verify) in a fresh interpreter; returns its measurements."""
    code = CHILD % {"env": LEGACY_ENV, "org": NEW_ORG}
    proc = subprocess.run([sys.executable, "-c", code, mode, str(audit_root), workspace], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"the {mode} child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0)
    args = parser.parse_args(argv)
    quiet = wait_for_quiet()

    from runbook_lib.legacy import LegacyClient
    from runbook_lib.sandbox import Sandbox
    from runbook_lib.settings import Settings
    from runbook_lib.state import TerraformState
    from runbook_lib.tfe import TfeClient

    started = time.monotonic()
    state = make_state(args.mb)
    parsed = TerraformState.from_bytes(state)
    facts = {"bytes": len(state), "mb": round(len(state) / 1024 / 1024, 1), "format": parsed.version,
             "instances": parsed.instance_count, "generate_s": round(time.monotonic() - started, 1)}
    del parsed
    print(f"state: {facts['mb']} MB, {facts['instances']} instances", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as scratch:
        # A child-process sandbox: the parent's memory and the server's are not the step's.
        with Sandbox(Path(scratch) / "sandbox", subprocess=True, rate_limit=30.0) as sandbox:
            env = {**os.environ, **sandbox.env}
            settings = Settings.from_env(env)
            LegacyClient(settings).put_state("acme-legacy", LEGACY_ENV, state)
            del state
            tfe = TfeClient(settings)
            tfe.create_organization(NEW_ORG, "mem@acme.example")
            runs = {}
            for mode in ("rss", "tracemalloc"):
                workspace = f"big-state-{mode}"
                tfe.create_workspace(NEW_ORG, workspace)
                runs[mode] = run_child(mode, Path(scratch) / f"runs-{mode}", workspace, env)
                print(f"{mode}: {runs[mode]}", flush=True)
    size = facts["bytes"]
    figures = {"state_mb": facts["mb"],
               "added_peak_rss_mb": round(runs["rss"]["added_rss_bytes"] / 2**20, 1),
               "rss_ratio": round(runs["rss"]["added_rss_bytes"] / size, 2),
               "traced_peak_mb": round(runs["tracemalloc"]["traced_peak_bytes"] / 2**20, 1),
               "traced_ratio": round(runs["tracemalloc"]["traced_peak_bytes"] / size, 2),
               "baseline_rss_mb": round(runs["rss"]["baseline_rss_bytes"] / 2**20, 1),
               "step_seconds": runs["rss"]["seconds"]}
    targets = {"peak memory / state size (RSS added by the step)": target(figures["rss_ratio"], RATIO_TARGET, unit="x"),
               "step 3 passed": target(int(not all(r["passed"] for r in runs.values())), 0)}
    path = write_results("state_memory", {"state": facts, "figures": figures, "targets": targets, "runs": runs,
                                          "load": quiet})
    print_table([(k, v) for k, v in figures.items()], ("figure", "value"))
    report_targets(targets, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
