"""`tfe-runbook sandbox serve`: run the rehearsal sandbox until stopped; writes DIR/sandbox.env."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="the rehearsal sandbox (legacy /api/v1 and new /api/v2)")
    actions = parser.add_subparsers(dest="sandbox_command", metavar="ACTION")
    serve = actions.add_parser("serve", help="serve both APIs until stopped; writes DIR/sandbox.env (mode 0600)")
    serve.add_argument("--data", required=True, metavar="DIR", help="data directory (SQLite, git repos, TLS, env file)")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    serve.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS with a local CA made by trustme")
    serve.add_argument("--seed", type=int, default=0, metavar="N",
                       help="seed N legacy environments with real Terraform 0.11 states (once per data directory)")
    serve.add_argument("--rate-limit", type=float, default=30.0, metavar="PER_SECOND",
                       help="requests per second per token (0: off; default 30)")
    serve.add_argument("--legacy-profile", default="documented", choices=("documented", "site-adapter"),
                       help="documented (default): the legacy API as the host documented it, plus its web UI; "
                            "site-adapter: also the undocumented endpoints a site's own adapter may offer")
    serve.set_defaults(func=_serve)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _serve(args: argparse.Namespace) -> int:
    from runbook_lib.sandbox.control import ENV_FILE, start_server

    server, values = start_server(_path(args.data), host=args.host, port=args.port, tls=args.tls, seed=args.seed,
                                   rate_limit=args.rate_limit or None, legacy_profile=args.legacy_profile)
    stopped = threading.Event()
    # SIGTERM (from Sandbox.stop or a CI runner) stops cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"sandbox serving {values['TFE_ADDRESS']} (data {args.data}); source {_path(args.data) / ENV_FILE}",
          file=sys.stderr, flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C is the ordinary way to stop a foreground server
    finally:
        server.stop()
    return 0


def _path(value: str):  # noqa: ANN202
    from pathlib import Path

    return Path(value).resolve()
