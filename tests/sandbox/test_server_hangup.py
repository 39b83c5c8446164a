"""A client that hangs up a keep-alive connection is a normal event for the sandbox server: no traceback."""

from __future__ import annotations

import logging
import socket
import struct
import time
from urllib.parse import urlsplit

import pytest
import requests

from runbook_lib.sandbox import Sandbox


def _reset_after_one_request(address: str) -> None:
    """Send one keep-alive request, read its answer, then close with a TCP reset (SO_LINGER 0), as an
    HTTP client pool does when it drops an idle connection abruptly."""
    parts = urlsplit(address)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(b"GET /_sandbox/health HTTP/1.1\r\nHost: sandbox\r\nConnection: keep-alive\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_reset_is_logged_at_debug_without_a_traceback(fresh_sandbox: Sandbox,
                                                                caplog: pytest.LogCaptureFixture,
                                                                capfd: pytest.CaptureFixture[str]):
    caplog.set_level(logging.DEBUG, logger="runbook_lib.sandbox")
    _reset_after_one_request(fresh_sandbox.address)
    deadline = time.monotonic() + 10
    while not any("hung up" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    hung_up = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert hung_up and all(r.levelno == logging.DEBUG for r in hung_up)
    assert "reset" in hung_up[0].getMessage().lower()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
    # the server still answers afterwards
    assert requests.get(f"{fresh_sandbox.address}/_sandbox/health", timeout=10).status_code == 200
