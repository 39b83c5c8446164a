"""A real HTTP(S) server on 127.0.0.1 for the transport and client tests, with scripted answers.

Shared by test_http.py and test_clients_*.py (imported by module name; pytest puts this folder on the
path). Each request is recorded; it is answered by the next scripted `Reply`, or, when the script is
empty, by the ``app`` callable. A `Reply` can also drop the connection without answering, or answer late.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

TOKEN = "tok3n.atlasv1.SECRET-do-not-leak-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False     # close the connection without any answer
    delay: float = 0.0     # seconds to wait before answering (read timeouts)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/vnd.api+json")
        elif isinstance(body, str):
            body = body.encode()
        return body, headers


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or fail TLS on purpose break the pipe; that is the test, not a server fault.
        pass


class FakeServer:
    """Threaded HTTP server with a reply script; use as a context manager."""

    def __init__(self, app: Callable[[Received], Reply] | None = None, *, tls: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1") -> None:
        self.app = app
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Received(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                               {k: v for k, v in self.headers.items()}, body)
                with server.lock:
                    server.received.append(req)
                    reply = server.script.pop(0) if server.script else None
                if reply is None:
                    reply = server.app(req) if server.app else Reply(500, {"errors": [{"title": "no script"}]})
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data, headers = reply.encoded()
                self.send_response(reply.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

        self.httpd = _QuietServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def then(self, *replies: Reply) -> "FakeServer":
        with self.lock:
            self.script.extend(replies)
        return self

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        return sum(1 for r in self.received
                   if (method is None or r.method == method) and r.path.startswith(path_prefix))

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_fake_server_records_and_drops():
    import requests

    with FakeServer(lambda r: Reply(200, {"ok": True})) as srv:
        srv.then(Reply(drop=True))
        try:
            requests.get(srv.url + "/x", timeout=2)
            dropped = False
        except requests.ConnectionError:
            dropped = True
        assert dropped
        assert requests.get(srv.url + "/y?a=1", timeout=2).json() == {"ok": True}
        assert [r.path for r in srv.received] == ["/x", "/y"]
