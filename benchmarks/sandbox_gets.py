"""Benchmark (not a test): simple GETs per second the sandbox serves on this machine.

The sandbox runs as a subprocess (its own interpreter, as `tfe-runbook sandbox serve` would), the
rate limit off; client threads with keep-alive sessions read one workspace (/api/v2) and one legacy
state (/api/v1) for a fixed time. Results go to a JSON file.

    .venv/bin/python benchmarks/sandbox_gets.py [--seconds 5] [--threads 4] [--tls] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runbook_lib.sandbox import Sandbox  # noqa: E402


def _worker(url: str, headers: dict[str, str], verify: str | bool, stop: threading.Event,
            counts: list[int], errors: list[int], index: int) -> None:
    session = requests.Session()
    while not stop.is_set():
        response = session.get(url, headers=headers, verify=verify, timeout=30)
        if 200 <= response.status_code < 300:
            counts[index] += 1
        else:
            errors[index] += 1


def measure(url: str, headers: dict[str, str], verify: str | bool, seconds: float, threads: int) -> dict:
    """GETs per second of `url` with `threads` keep-alive clients for `seconds`."""
    stop = threading.Event()
    counts, errors = [0] * threads, [0] * threads
    workers = [threading.Thread(target=_worker, args=(url, headers, verify, stop, counts, errors, i), daemon=True)
               for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {"requests": sum(counts), "errors": sum(errors), "seconds": round(elapsed, 2),
            "gets_per_second": round(sum(counts) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "sandbox_gets.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as data:
        with Sandbox(data, tls=args.tls, rate_limit=None, subprocess=True) as sandbox:
            verify: str | bool = sandbox.ca_file or True
            bearer = {"Authorization": f"Bearer {sandbox.operator_token}", "Content-Type": "application/vnd.api+json"}
            requests.post(f"{sandbox.address}/api/v2/organizations", headers=bearer, verify=verify, json={
                "data": {"type": "organizations", "attributes": {"name": "bench", "email": "b@bench.example"}}})
            ws = requests.post(f"{sandbox.address}/api/v2/organizations/bench/workspaces", headers=bearer,
                               verify=verify, json={"data": {"type": "workspaces", "attributes": {"name": "w"}}})
            ws_id = ws.json()["data"]["id"]
            state = json.dumps({"version": 3, "serial": 1, "lineage": "bench", "modules": []}).encode()
            atlas = {"X-Atlas-Token": sandbox.operator_token}
            requests.put(f"{sandbox.address}/api/v1/terraform/state/acme-legacy/bench", data=state, headers=atlas,
                         verify=verify)
            results = {
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
                "settings": {"seconds": args.seconds, "threads": args.threads, "tls": args.tls},
                "v2_workspace_show": measure(f"{sandbox.address}/api/v2/workspaces/{ws_id}", bearer, verify,
                                             args.seconds, args.threads),
                "v1_legacy_state_get": measure(f"{sandbox.address}/api/v1/terraform/state/acme-legacy/bench", atlas,
                                               verify, args.seconds, args.threads),
                "v2_ping": measure(f"{sandbox.address}/api/v2/ping", {}, verify, args.seconds, args.threads),
            }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
