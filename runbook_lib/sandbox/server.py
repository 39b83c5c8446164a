"""The sandbox's HTTP(S) server: one process, both APIs, on loopback by default.

Per request, in this order: read the body; fault injection (latency, dropped connection, 5xx, 429
bursts) for `/api/` paths when switched on, except for the requests of the sandbox's own runs; route;
authenticate (legacy `X-Atlas-Token`, bearer, admin secret, or a capability URL); per-token rate limit
(429 with `X-RateLimit-Limit`, `X-RateLimit-Reset`, `Retry-After`); the handler inside one store
transaction (so a refused request writes nothing); the answer; one request-log row (method, path,
status, token name, user, rows written; never a token).

`ThreadingHTTPServer`, HTTP/1.1 keep-alive, TCP_NODELAY; TLS handshakes happen in the connection's
own thread, so a slow client cannot stall `accept()`.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from runbook_lib.sandbox import errors, routes
from runbook_lib.sandbox.params import check_query
from runbook_lib.sandbox.faults import FaultInjector, RateLimiter
from runbook_lib.sandbox.runner import Runner
from runbook_lib.sandbox.store import Store
from runbook_lib.sandbox.tfe_api import API_VERSION, APP_NAME, TFE_VERSION
from runbook_lib.sandbox.wire import Request

log = logging.getLogger("runbook_lib.sandbox")

ADMIN_HEADER = "X-Sandbox-Admin"
ADMIN_SECRET_FILE = "admin.secret"
DB_FILE = "sandbox.sqlite"
MAX_BODY = 64 * 1024 * 1024
DOCUMENTED = "documented"
#: The legacy side's profiles: what the legacy host documented (default), or that plus a site's adapter.
LEGACY_PROFILES = (DOCUMENTED, "site-adapter")


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def load_or_create_admin_secret(data_dir: Path) -> str:
    """The admin secret of a data directory, created (mode 0600) on first use."""
    path = data_dir / ADMIN_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    _write_private(path, value + "\n")
    return value


def tls_context(data_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """Server TLS context from a CA made with `trustme`, kept under `<data>/tls/` so restarts reuse it.

    Returns:
        (server context, path of the CA certificate PEM that clients must trust).
    """
    tls_dir = data_dir / "tls"
    ca_pem, cert_pem, key_pem = tls_dir / "ca.pem", tls_dir / "server-chain.pem", tls_dir / "server-key.pem"
    if not (ca_pem.exists() and cert_pem.exists() and key_pem.exists()):
        import trustme  # imported here: only --tls needs it

        ca = trustme.CA(organization_name="tfe-runbook sandbox")
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        tls_dir.mkdir(parents=True, exist_ok=True)
        ca_pem.write_bytes(ca.cert_pem.bytes())
        cert_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        _write_private(key_pem, cert.private_key_pem.bytes().decode())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_pem), str(key_pem))
    return ctx, ca_pem


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: "SandboxServer") -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw = request
        with self._open_lock:
            self._open.add(raw)
        try:
            if self.app.ssl_context is not None:
                request.settimeout(30)
                try:
                    request = self.app.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    # A client that does not trust the CA (or probes with plain HTTP) ends here.
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
                # Wrapping detaches the socket's descriptor from `raw`: a restart must shut the TLS socket down,
                # or this keep-alive connection would go on being served by a stopped server.
                with self._open_lock:
                    self._open.discard(raw)
                    self._open.add(request)
            super().finish_request(request, client_address)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            # A client that hangs up a keep-alive connection (go-tfe's HTTP client does when it is done)
            # is a normal end of the conversation, not a server fault: debug, never a traceback.
            log.debug("client %s hung up: %s", client_address, exc)
        finally:
            with self._open_lock:
                self._open.discard(raw)
                self._open.discard(request)

    def close_open_connections(self) -> None:
        """Shut keep-alive connections down, as a restarted server would (clients see a reset)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client: nothing to shut down


class SandboxServer:
    """The server object: store, faults, rate limit, admin secret, and the listening socket.

    Args:
        data_dir: where the SQLite store, admin secret and TLS material live.
        host: address to listen on (loopback by default).
        port: port (0: any free one).
        tls: serve HTTPS with a trustme CA.
        rate_limit: requests per second per token on /api/v2 (None: off).
        public_host: the host name clients use in URLs (certificate covers localhost and 127.0.0.1).
        legacy_profile: `documented` (the default: the legacy API as the host documented it, plus its UI) or
            `site-adapter` (also the undocumented endpoints of `legacy_adapter_api`).
    """

    def __init__(self, data_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0, tls: bool = False,
                 rate_limit: float | None = 30.0, public_host: str = "localhost",
                 legacy_profile: str = DOCUMENTED) -> None:
        if legacy_profile not in LEGACY_PROFILES:
            raise ValueError(f"legacy profile must be one of {', '.join(LEGACY_PROFILES)}, not {legacy_profile!r}")
        self.legacy_profile = legacy_profile
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.tls, self.public_host = host, port, tls, public_host
        self.store = Store(self.data_dir / DB_FILE)
        self.admin_secret = load_or_create_admin_secret(self.data_dir)
        self.faults = FaultInjector()
        self.limiter = RateLimiter(rate_limit)
        self.ssl_context: ssl.SSLContext | None = None
        self.ca_file: Path | None = None
        if tls:
            self.ssl_context, self.ca_file = tls_context(self.data_dir)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.runner: Runner | None = None  # the run worker pool, started with the server

    @property
    def hostname(self) -> str:
        """`host:port` as Terraform's cloud block and CLI credentials name it."""
        return f"{self.public_host}:{self.port}"

    def base_url(self, host: str | None = None) -> str:
        """Base URL clients use, like `https://localhost:8443`; `host` (a request's Host header) replaces
        `hostname`, so the links in an answer point where that client reached the server."""
        return f"{'https' if self.tls else 'http'}://{host or self.hostname}"

    def set_rate_limit(self, limit: float | None) -> None:
        """Change the per-token rate limit (None: off)."""
        self.limiter.limit = limit

    def start(self) -> None:
        """Bind and serve in a background thread."""
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        self.runner = Runner(self.store, self.data_dir, address=self.base_url(),
                             ca_file=str(self.ca_file) if self.ca_file else None)
        self.runner.start()

    def stop(self) -> None:
        """Stop serving, drop open connections, stop the run worker, close the store."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_open_connections()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.runner is not None:
            self.runner.stop()  # before the store closes: running terraform commands record their result
            self.runner = None
        self.store.close()

    def serve_forever(self) -> None:
        """Block until `stop()` is called from another thread (or the process is interrupted)."""
        assert self._thread is not None
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def check_admin(self, headers: Any) -> None:
        """Raise 401 unless the admin secret is presented."""
        given = headers.get(ADMIN_HEADER) or ""
        if not given or not hmac.compare_digest(given.encode(), self.admin_secret.encode()):
            raise errors.UnauthorizedError("the admin surface needs the X-Sandbox-Admin secret")


class _FramingError(errors.SandboxError):
    """A request the server cannot read (framing, size, transfer coding): status given per instance."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title


#: TFE answers 415 to a POST, PATCH or DELETE under /api/v2 whose Content-Type is not JSON:API, even
#: without a body (go-tfe commit d107af1c "middleware: set Content-Type for POST/PATCH/DELETE requests
#: without a body"; every sample request in the API docs sends it). The hosted upload URLs
#: (`/_archivist/`) and the legacy /api/v1 are not JSON:API and are not checked.
_JSONAPI_WRITES = frozenset({"POST", "PATCH", "DELETE"})


def _check_content_type(method: str, path: str, headers: Any) -> None:
    if method not in _JSONAPI_WRITES or not path.startswith("/api/v2/"):
        return
    media = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/vnd.api+json":
        raise errors.UnsupportedMediaTypeError(
            f"Content-Type must be application/vnd.api+json for {method} requests (got {media or 'none'})")


def _log_path(path: str) -> str:
    # Archivist URLs are capabilities: whoever has the path can read or write the object.
    if path.startswith("/_archivist/"):
        return "/_archivist/v1/object/[redacted]"
    return path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfe-runbook-sandbox"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer

    # BaseHTTPRequestHandler logs every request line to stderr; the request log replaces that.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        """The request body, framed as RFC 9112 section 6 says, refused without reading what is too large.

        Raises:
            _FramingError: a malformed or negative Content-Length, both framings at once, a chunk size
                that is not hex (400); a body over `MAX_BODY`, declared or chunked (413); a transfer
                coding other than chunked (501). The connection is closed after any of them: where the
                next request would start is unknown.
        """
        codings = [c.strip().lower() for c in (self.headers.get("Transfer-Encoding") or "").split(",") if c.strip()]
        lengths = self.headers.get_all("Content-Length") or []
        if codings and lengths:
            raise _FramingError(400, "bad request", "Transfer-Encoding and Content-Length together")
        if codings:
            if codings != ["chunked"]:
                raise _FramingError(501, "not implemented", f"transfer coding {','.join(codings)!r} is not supported; "
                                                            f"send the body with Content-Length or chunked")
            return self._read_chunked()
        values = {v.strip() for v in lengths}
        if len(values) > 1 or any(not v.isdigit() for v in values):
            # A negative length used to read until the client closed the connection.
            raise _FramingError(400, "bad request", "Content-Length must be one non-negative whole number")
        # No framing header on a request means an empty body (RFC 9112, 6.3).
        length = int(values.pop()) if values else 0
        if length > MAX_BODY:
            raise _FramingError(413, "payload too large", f"the body may be at most {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1025)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise _FramingError(400, "bad request", "malformed chunk size in the chunked body")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(100):  # trailer fields, bounded
                    if self.rfile.readline(8193) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _FramingError(413, "payload too large", f"the chunked body exceeds {MAX_BODY} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (garbage request line, unknown method, header limits) as API errors.

        The base class answers them with an HTML page; clients of both APIs expect their JSON error shape.
        """
        path = self.path if isinstance(getattr(self, "path", None), str) else ""
        flavour = routes.flavour_for_path(urlsplit(path).path) if path.startswith("/") else errors.JSONAPI
        title = {400: "bad request", 414: "request-uri too long", 431: "request header fields too large",
                 501: "not implemented"}.get(code, "error")
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            # Before a request line parses, http.server assumes HTTP/0.9 and would send the body without a
            # status line; every client of the sandbox speaks HTTP/1.x.
            self.request_version = "HTTP/1.1"
        status, headers, payload = _FramingError(code, title, message or "").wire(flavour)
        try:
            self._send(status, headers, payload, method=getattr(self, "command", None) or "")
        except OSError as exc:
            log.debug("client went away before its %s: %s", code, exc)

    def _handle(self) -> None:
        app = self.server.app
        started = time.perf_counter()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        method = self.command
        user: dict[str, Any] | None = None
        fault: str | None = None
        changes = 0
        flavour = routes.flavour_for_path(path)
        try:
            body = self._read_body()
        except _FramingError as exc:
            self.close_connection = True
            self._send(*exc.wire(flavour), method=method)
            return
        if not path.startswith("/_sandbox/") and not self._from_a_run():
            decision = app.faults.decide(method, path)
            if decision.latency_s:
                time.sleep(decision.latency_s)
            if decision.action == "drop":
                app.store.log_request(method=method, path=_log_path(path), status=0, token_name=None,
                                      username=None, changes=0, fault="drop",
                                      duration_ms=(time.perf_counter() - started) * 1000)
                self._drop()
                return
            if decision.action == "429" and path.startswith("/api/v1/"):
                # The legacy host documented no rate limit and Terraform 0.11's atlas backend does not retry
                # a 429 (go-retryablehttp's default policy retries 5xx and transport errors only): a 429 there
                # is a trouble no real client met, so bursts spare /api/v1.
                decision.action = None
            if decision.action:
                fault = decision.action
            elif decision.latency_s:
                fault = "latency"
        route, params, _known = routes.match(method, path, app.legacy_profile)
        token_name: str | None = None
        try:
            if route is not None:
                flavour = route.flavour
            if fault == "5xx":
                raise errors.InjectedServerError(decision.status)
            if fault == "429":
                # An injected burst looks like the real limit: same headers, one second to wait.
                raise errors.RateLimitedError(headers=app.limiter.headers(1.0, limit=app.limiter.limit or 30))
            if route is None:
                raise errors.NotFoundError()
            _check_content_type(method, path, self.headers)
            user = self._authenticate(route)
            if user is not None:
                token_name = user["token_name"]
            if user is not None and route.auth != "legacy":  # /api/v1 has no rate limit (see the faults above)
                wait = app.limiter.check(user["token_id"])
                if wait is not None:
                    raise errors.RateLimitedError(headers=app.limiter.headers(wait))
            base_url = app.base_url(self.headers.get("Host"))
            req = Request(method=method, path=path, query=query, headers=self.headers, body=body,
                          store=app.store, base_url=base_url, user=user, app=app, route_key=route.key)
            check_query(route.key, query)  # a parameter the route does not honour is a 400
            # Counted inside the transaction, which holds the store's lock: rows written meanwhile by other
            # threads (parallel requests, the run worker) are not charged to this request.
            with app.store.tx():
                before = app.store.total_changes()
                response = route.handler(req, **params, **route.extra)
                changes = app.store.total_changes() - before
            status, headers, payload = response.status, response.headers, response.body
        except errors.SandboxError as exc:
            status, headers, payload = exc.wire(flavour)
        except Exception:  # noqa: BLE001 - the per-request guard: answer 500 and log the traceback
            log.exception("sandbox: unexpected error in %s %s", method, _log_path(path))
            status, headers, payload = errors.SandboxError("unexpected sandbox error").wire(flavour)
        if not path.startswith("/_sandbox/"):
            # Logged before answering, so a client that has its answer can already find the row.
            # The admin surface is test machinery; logging it would make a log query show up in itself.
            app.store.log_request(method=method, path=_log_path(path), status=status, token_name=token_name,
                                  username=user["username"] if user else None, changes=changes, fault=fault,
                                  duration_ms=(time.perf_counter() - started) * 1000)
        try:
            self._send(status, headers, payload, method=method)
        except OSError as exc:
            log.debug("client went away before the answer to %s %s: %s", method, _log_path(path), exc)
            self.close_connection = True

    def _from_a_run(self) -> bool:
        """Whether a run of this sandbox sent the request (its terraform reading state with the per-run
        token). Injected faults stand for trouble on the way between a client and the host; a run's own
        state reads happen inside the host, so they are not faulted (a 429 burst there failed a run's
        plan, which no client retry could have helped)."""
        runner = self.server.app.runner
        if runner is None:
            return False
        presented = set(self._tokens()) - {""}
        # every token it presents is the runs' (a client adding it beside its own is still a client)
        return bool(presented) and all(runner.is_run_token(token) for token in presented)

    def _tokens(self) -> tuple[str, str]:
        """The legacy `X-Atlas-Token` and the bearer token the request presents ("" where it has none)."""
        auth = self.headers.get("Authorization") or ""
        return ((self.headers.get("X-Atlas-Token") or "").strip(),
                auth[7:].strip() if auth[:7].lower() == "bearer " else "")

    def _authenticate(self, route: routes.Route) -> dict[str, Any] | None:
        app = self.server.app
        if route.auth in ("none", "capability", "ui"):
            return None  # a UI page checks its own session (legacy_ui)
        if route.auth == "admin":
            app.check_admin(self.headers)
            return None
        legacy, bearer = self._tokens()
        token = legacy if route.auth == "legacy" else bearer
        user = app.store.authenticate(token) if token else None
        if user is None:
            raise errors.UnauthorizedError()
        return user

    def _send(self, status: int, headers: dict[str, str], payload: bytes, *, method: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        # What Terraform and go-tfe read from every answer (ping in particular).
        self.send_header("TFP-API-Version", API_VERSION)
        self.send_header("TFP-AppName", APP_NAME)
        self.send_header("X-TFE-Version", TFE_VERSION)
        if self.server.app.limiter.limit and "X-RateLimit-Limit" not in headers:
            self.send_header("X-RateLimit-Limit", f"{self.server.app.limiter.limit:g}")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and method != "HEAD":
            self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the peer may already be gone; the point is that it gets no answer
