"""Benchmark (not a test): how long `python -c "import runbook_lib"` takes in a fresh interpreter.

Target (issue 10): under 0.5 s, median of 10 fresh processes. For context it also times a bare
`python -c pass` (the interpreter's own start, which bounds the figure from below) and the import of
`runbook_lib.steps.state_migration` (what a step notebook's first cell pays: pandas, requests), and
records `-X importtime`'s heaviest modules for the package import.

    .venv/bin/python benchmarks/import_time.py [--runs 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import ROOT, median, print_table, report_targets, target, wait_for_quiet, write_results

TARGET_S = 0.5


def fresh_runs(code: str, runs: int) -> list[float]:
    """Wall seconds of `runs` fresh `python -c code` processes (cwd: the repo, as a notebook kernel's)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        times.append(time.perf_counter() - started)
    return times


def heaviest_imports(module: str, top: int = 8) -> list[dict[str, object]]:
    """The modules with the largest cumulative import time (microseconds) for `import module`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        rows.append({"module": parts[2].strip(), "self_us": int(parts[0]), "cumulative_us": int(parts[1])})
    return sorted(rows, key=lambda r: -r["cumulative_us"])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    quiet = wait_for_quiet()
    fresh_runs("import runbook_lib", 2)  # warm the page cache and __pycache__: a first-ever run is not typical
    bare = fresh_runs("pass", args.runs)
    package = fresh_runs("import runbook_lib", args.runs)
    step = fresh_runs("import runbook_lib.steps.state_migration", args.runs)
    figures = {
        "python_pass_s": round(median(bare), 3),
        "import_runbook_lib_s": round(median(package), 3),
        "import_runbook_lib_minus_interpreter_s": round(median(package) - median(bare), 3),
        "import_state_migration_step_s": round(median(step), 3),
    }
    targets = {"import runbook_lib (median of fresh processes)": target(figures["import_runbook_lib_s"], TARGET_S,
                                                                        unit=" s")}
    results = {"runs": args.runs, "figures": figures, "targets": targets, "load": quiet,
               "samples_s": {"pass": [round(t, 3) for t in bare], "runbook_lib": [round(t, 3) for t in package],
                             "state_migration": [round(t, 3) for t in step]},
               "heaviest_imports": {"runbook_lib": heaviest_imports("runbook_lib"),
                                    "runbook_lib.steps.state_migration": heaviest_imports(
                                        "runbook_lib.steps.state_migration")}}
    path = write_results("import_time", results)
    print_table([(k, v) for k, v in figures.items()], ("figure (median)", "seconds"))
    report_targets(targets, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
