"""The sandbox as a server under malformed requests: each one answered with a JSON error within a second,
and the server keeps serving. Raw sockets, because no HTTP client sends these on purpose."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from runbook_lib.sandbox import Sandbox
from runbook_lib.sandbox.server import MAX_BODY


def _exchange(sandbox: Sandbox, raw: bytes, *, then_close: bool = False) -> tuple[int, dict[str, str], bytes, float]:
    """Send raw bytes, read one answer; returns status, headers, body and the seconds it took."""
    parts = urlsplit(sandbox.address)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(raw)
        if then_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body, time.monotonic() - started


def _still_serving(sandbox: Sandbox) -> None:
    response = requests.get(sandbox.address + "/api/v2/ping", timeout=5)
    assert response.status_code in (200, 204)


def _post(path: str, headers: str, body: bytes = b"", token: str = "nope") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{headers}\r\n".encode() + body


CASES = [
    # label, raw request, expected status, words in the error
    ("nested JSON", lambda s: _post("/api/v2/organizations", "Content-Type: application/vnd.api+json\r\n"
                                    "Content-Length: 200000\r\n", b"[" * 100000 + b"]" * 100000,
                                    token=s.operator_token), 400, "nests too deeply"),
    ("negative Content-Length", lambda s: _post("/api/v2/organizations", "Content-Length: -5\r\n"), 400,
     "non-negative"),
    ("non-numeric Content-Length", lambda s: _post("/api/v2/organizations", "Content-Length: 1e3\r\n"), 400,
     "non-negative"),
    ("absurd Content-Length", lambda s: _post("/api/v2/organizations", "Content-Length: 99999999999999999999\r\n"),
     413, "at most"),
    ("two Content-Lengths", lambda s: _post("/api/v2/organizations", "Content-Length: 2\r\nContent-Length: 3\r\n",
                                            b"{}"), 400, "one non-negative"),
    ("oversized chunked body", lambda s: _post("/api/v2/organizations", "Transfer-Encoding: chunked\r\n",
                                               f"{MAX_BODY + 1:x}\r\n".encode() + b"x" * 100), 413, "exceeds"),
    ("malformed chunk size", lambda s: _post("/api/v2/organizations", "Transfer-Encoding: chunked\r\n",
                                             b"zz\r\nabc\r\n0\r\n\r\n"), 400, "chunk size"),
    ("unknown transfer coding", lambda s: _post("/api/v2/organizations", "Transfer-Encoding: gzip\r\n"), 501,
     "not supported"),
    ("both framings", lambda s: _post("/api/v2/organizations", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                                      b"0\r\n\r\n"), 400, "together"),
    ("unknown method", lambda s: b"BREW /api/v2/ping HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Unsupported method"),
    ("garbage request line", lambda s: b"\x16\x03\x01 garbage that is not http at all\r\n\r\n", 400,
     "Bad request"),
    ("one-word request line", lambda s: b"GARBAGE\r\n\r\n", 400, "Bad request"),
]


@pytest.mark.parametrize("label, build, status, words", CASES, ids=[c[0] for c in CASES])
def test_malformed_request_gets_a_json_error_fast_and_the_server_keeps_serving(fresh_sandbox, label, build, status,
                                                                               words):
    code, headers, body, seconds = _exchange(fresh_sandbox, build(fresh_sandbox))
    assert code == status
    assert seconds < 1.0
    assert headers["content-type"] in ("application/vnd.api+json", "application/json")
    errors = json.loads(body)["errors"]
    assert errors[0]["status"] == str(status) and words in errors[0]["detail"]
    _still_serving(fresh_sandbox)


def test_legacy_paths_get_the_legacy_error_shape(fresh_sandbox):
    code, _, body, _ = _exchange(fresh_sandbox, _post("/api/v1/environments/a/b/state", "Content-Length: -1\r\n"))
    assert code == 400 and json.loads(body) == {"errors": ["Content-Length must be one non-negative whole number"]}


def test_a_negative_length_no_longer_waits_for_the_client_to_hang_up(fresh_sandbox):
    # Before, the server read "until the end" of a negative length: only a client that closed got an answer.
    code, _, _, seconds = _exchange(fresh_sandbox, _post("/api/v2/organizations", "Content-Length: -1\r\n"))
    assert code == 400 and seconds < 1.0
