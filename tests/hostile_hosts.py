"""Hosts that misbehave on purpose, on real sockets: what the transport's bounds are tested against.

A `RawHost` accepts TCP connections on an address of its own (``127.0.0.2`` is loopback too, on Linux),
reads each request's head and body, records them, and answers through a handler that writes raw bytes, so
it can do what no well-behaved HTTP server does: trickle its answer a byte at a time, or stream an endless
chunked body. Shared by the unit tests and the bad-input tables (imported by module name: tests/ is on the
path through its conftest).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Seen:
    """One request a `RawHost` received."""

    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")


@dataclass
class RawHost:
    """A threaded TCP server answering every request with ``answer(sock, seen)``.

    Attributes:
        received: every request read (head and body).
        sent: bytes the handlers wrote, in all (what left this host).
    """

    answer: Callable[[socket.socket, Seen], None]
    host: str = "127.0.0.1"
    received: list[Seen] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def send(self, sock: socket.socket, data: bytes) -> None:
        sock.sendall(data)
        with self._lock:
            self.sent += len(data)

    def __enter__(self) -> "RawHost":
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(30)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                seen = Seen(head, body)
                with self._lock:
                    self.received.append(seen)
                self.answer(sock, seen)
            except OSError:
                return  # the client hung up: that is what most of these tests want


def answer(status: int = 200, body: object = b"", headers: dict[str, str] | None = None) -> Callable:
    """A handler that answers once, properly: the well-behaved answer, for the hosts that only record."""
    def handler(sock: socket.socket, seen: Seen) -> None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else bytes(body)  # type: ignore[arg-type]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n"
                     .encode() + data)
    return handler


def trickle(every: float = 1.0, *, in_head: bool = False, length: int = 100000) -> Callable:
    """A handler that sends its answer one byte every `every` seconds: the status line itself (``in_head``,
    then `length` bytes of body), or a proper head announcing `length` bytes of body that then trickle."""
    def handler(sock: socket.socket, seen: Seen) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {length}\r\n\r\n"
                .encode())
        if not in_head:
            sock.sendall(head)
        payload = (head if in_head else b"") + b" " * (length - 2) + b"{}"
        for byte in payload:
            sock.sendall(bytes([byte]))
            time.sleep(every)
    return handler


def chunked_json(host_ref: list["RawHost"], *, total: int | None = None, size: int = 64 * 1024) -> Callable:
    """A handler streaming a chunked answer that starts like JSON and goes on for `total` bytes (None: until the
    client hangs up), counting what it sent in ``host_ref[0].sent``. It never becomes valid JSON."""
    def handler(sock: socket.socket, seen: Seen) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.api+json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        host_ref[0].send(sock, b"2\r\n[\"\r\n")
        filler = f"{size:x}\r\n".encode() + b"a" * size + b"\r\n"
        left = total
        while left is None or left > 0:
            host_ref[0].send(sock, filler)
            if left is not None:
                left -= size
        host_ref[0].send(sock, b"0\r\n\r\n")
    return handler


def raw_host(make: Callable[[list["RawHost"]], Callable], host: str = "127.0.0.1") -> RawHost:
    """A `RawHost` whose handler is built with a reference to the host itself (to count what it sends)."""
    ref: list[RawHost] = []
    server = RawHost(make(ref), host=host)
    ref.append(server)
    return server
