"""Benchmark (not a test): the API client's sustained request rate under latency and a rate limit.

Target (issue 10): with 50 ms added latency and a 30 requests/s limit, one client sustains at least
25 requests/s and is never answered 429 twice in a row.

Setup: a sandbox in a child process (its own interpreter: the client's threads do not share a GIL
with the server), rate limit 30/s per token, `latency_ms=50` on every API request. One `TfeClient`
(one session, one `TokenBucket` that learns 30 from `X-RateLimit-Limit` and allows itself 90%, 27/s)
reads one workspace `--requests` times from `--threads` threads. With 50 ms per answer one thread
cannot exceed 20 requests/s, so the rate is only reachable with requests in flight in parallel, as
several steps or kernels sharing a token would have them.

Figures: the overall rate (first request to last answer, including the bucket's initial one-second
burst), the sustained rate (answers after the first two seconds, over the time they span), the
single-thread rate for context, and from the sandbox's request log the 429 answers this client got,
and whether two came one after the other for its token.

    .venv/bin/python benchmarks/client_rate.py [--requests 300] [--threads 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

from _common import print_table, report_targets, target, wait_for_quiet, write_results

LATENCY_MS = 50
LIMIT = 30.0
TARGET_RATE = 25.0


def drive(tfe, workspace_id: str, requests: int, threads: int) -> dict:
    """GET the workspace `requests` times from `threads` threads through one client.

    Returns:
        started (perf_counter), finish times of every answer, and the errors the client raised.
    """
    from runbook_lib.errors import ApiError

    left = [requests]
    lock = threading.Lock()
    finished: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                tfe.get_workspace_by_id(workspace_id)
            except ApiError as exc:  # a 429 that survived the retries would land here
                with lock:
                    errors.append(str(exc))
            with lock:
                finished.append(time.perf_counter())

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"started": started, "finished": sorted(finished), "errors": errors}


def rates(run: dict, warmup_s: float = 2.0) -> dict:
    """Overall and sustained (after `warmup_s`) requests per second of one `drive` result."""
    done = run["finished"]
    overall = len(done) / (done[-1] - run["started"])
    steady = [t for t in done if t - run["started"] >= warmup_s]
    sustained = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 2 else float("nan")
    return {"requests": len(done), "seconds": round(done[-1] - run["started"], 2),
            "overall_rps": round(overall, 1), "sustained_rps": round(sustained, 1), "client_errors": len(run["errors"])}


def consecutive_429(rows: list[dict]) -> int:
    """How many times a 429 answer directly followed another 429 in the token's log order."""
    pairs = 0
    for before, after in zip(rows, rows[1:]):
        if before["status"] == 429 and after["status"] == 429:
            pairs += 1
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    quiet = wait_for_quiet()

    from runbook_lib.sandbox import Sandbox
    from runbook_lib.settings import Settings
    from runbook_lib.tfe import TfeClient

    with tempfile.TemporaryDirectory(prefix="bench-rate-") as data:
        with Sandbox(data, rate_limit=LIMIT, subprocess=True) as sandbox:
            os.environ.update(sandbox.env)
            setup = TfeClient(Settings.from_env())
            setup.create_organization("bench", "bench@acme.example")
            ws = setup.create_workspace("bench", "rate")
            sandbox.set_faults(latency_ms=LATENCY_MS)
            results = {}
            for label, threads, count in (("single_thread", 1, min(args.requests, 100)),
                                          ("parallel", args.threads, args.requests)):
                time.sleep(1.5)  # both buckets (server's, and a fresh client's) start full, as a new step's would
                client = TfeClient(Settings.from_env())
                mark = sandbox.log_mark()
                run = drive(client, ws.id, count, threads)
                rows = [r for r in sandbox.request_log(since=mark) if r["path"].startswith("/api/v2/workspaces/")]
                statuses: dict[str, int] = {}
                for row in rows:
                    statuses[str(row["status"])] = statuses.get(str(row["status"]), 0) + 1
                results[label] = {**rates(run), "threads": threads, "answers_by_status": statuses,
                                  "answers_429": statuses.get("429", 0), "consecutive_429_pairs": consecutive_429(rows),
                                  "client_rate_limit_learned": round(client.session.rate_limiter.rate, 2)}
                client.session.close()
            sandbox.clear_faults()
    par = results["parallel"]
    targets = {
        f"sustained req/s ({args.threads} threads, one client)": target(par["sustained_rps"], TARGET_RATE, at_most=False),
        "429 answered twice in a row (count)": target(par["consecutive_429_pairs"], 0),
        "client errors after retries": target(par["client_errors"], 0),
    }
    out = {"settings": {"latency_ms": LATENCY_MS, "rate_limit": LIMIT, "requests": args.requests,
                        "threads": args.threads, "client_fraction": 0.9},
           "results": results, "targets": targets, "load": quiet}
    path = write_results("client_rate", out)
    print_table([(k, v["threads"], v["requests"], v["overall_rps"], v["sustained_rps"], v["answers_429"],
                  v["consecutive_429_pairs"]) for k, v in results.items()],
                ("run", "threads", "requests", "overall req/s", "sustained req/s", "429s", "429 pairs"))
    report_targets(targets, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
