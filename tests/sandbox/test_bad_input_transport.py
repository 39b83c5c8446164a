"""Beside the bad-input table: the transport's bounds measured on real sockets, with the numbers they promise.

The table (`test_bad_input.py`) checks each bad input's sentence and that the sandbox saw no write; these
check how long, how much and how many: the deadline a trickling host meets, the memory an oversize answer
costs, the pages read before a listing stops, and how fast a wrong port or scheme is named. Each prints
its measurement (``pytest -s``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hostile_hosts import RawHost, chunked_json, raw_host, trickle
from runbook_lib.errors import TransportError
from runbook_lib.http import RetryPolicy
from runbook_lib.paging import PaginationError
from runbook_lib.rehearsal import batch_environ
from runbook_lib.settings import Settings
from runbook_lib.tfe import TfeClient

REPO = Path(__file__).resolve().parents[2]


def _settings(env: dict[str, str], **changes: str) -> Settings:
    return Settings.from_env({**env, **changes})


@pytest.fixture()
def env(seeded_sandbox) -> dict[str, str]:
    return batch_environ(seeded_sandbox.env)


def test_a_host_trickling_a_byte_a_second_is_cut_at_the_deadline(env):
    # The case: a read timeout never fires against a byte a second; the deadline does.
    with RawHost(trickle(1.0, length=120)) as host:
        tfe = TfeClient(_settings(env, TFE_ADDRESS=host.url, TFE_RUNBOOK_REQUEST_DEADLINE="3"))
        assert tfe.session.timeout[1] == 60.0  # the default read timeout, which a trickle never meets
        started = time.monotonic()
        with pytest.raises(TransportError, match="did not finish within 3s"):
            tfe.ping()
        took = time.monotonic() - started
    print(f"\ndeadline 3 s against a byte a second: cut after {took:.2f} s")
    assert 3.0 <= took < 3.8


_CLIENT = textwrap.dedent("""
    import json, os, sys, tracemalloc
    from runbook_lib.http import AnswerTooLargeError
    from runbook_lib.settings import Settings
    from runbook_lib.tfe import TfeClient

    tfe = TfeClient(Settings(tfe_address=sys.argv[1], environ={"TFE_TOKEN": "t" * 20}))
    with open("/proc/self/statm") as statm:
        rss_before = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    tracemalloc.start()
    try:
        list(tfe.list_organizations())
        said = "no error"
    except AnswerTooLargeError as e:
        said = str(e)
    traced_peak = tracemalloc.get_traced_memory()[1] // 1024
    tracemalloc.stop()
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the process this one was started from.
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"rss_before_kb": rss_before, "peak_rss_kb": peak, "traced_peak_kb": traced_peak,
                      "said": said}))
""")


def test_a_one_gigabyte_answer_costs_at_most_about_the_cap_in_memory():
    gigabyte = 1024 ** 3
    with raw_host(lambda ref: chunked_json(ref, total=gigabyte)) as host:
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", _CLIENT, host.url], capture_output=True, text=True, timeout=300,
                             cwd=REPO, check=True)
        took = time.monotonic() - started
        time.sleep(0.2)
        sent = host.sent
    found = json.loads(out.stdout)
    mib = {k: v / 1024 for k, v in found.items() if k.endswith("_kb")}
    print(f"\n1 GiB chunked answer, default cap 64 MiB: peak RSS {mib['peak_rss_kb']:.0f} MiB (RSS before the "
          f"request {mib['rss_before_kb']:.0f} MiB), Python allocations peaked at {mib['traced_peak_kb']:.0f} MiB; "
          f"the host sent {sent / 2 ** 20:.0f} MiB before the client hung up; {took:.1f} s")
    assert "going on past it, over the cap of 64 MiB" in found["said"]
    assert mib["traced_peak_kb"] < 64 + 16  # the bytes up to the cap once, plus a chunk and the buffers
    assert mib["peak_rss_kb"] - mib["rss_before_kb"] < 64 + 32
    assert sent < 128 * 2 ** 20


def _pages_host(*, same: bool, advance: bool = True) -> RawHost:
    """A TFE host whose workspace list never ends: next-page = n + 1 forever (or n), same or new items."""
    def handler(sock: socket.socket, seen) -> None:
        line = seen.request_line
        number = int(line.split("page%5Bnumber%5D=", 1)[1].split("&", 1)[0].split(" ", 1)[0])
        ident = "ws-same" if same else f"ws-{number}"
        body = json.dumps({"data": [{"id": ident, "type": "workspaces", "attributes": {"name": ident}}],
                           "meta": {"pagination": {"current-page": number,
                                                   "next-page": number + 1 if advance else number}}}).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.api+json\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return RawHost(handler)


@pytest.mark.parametrize("same, advance, cap, pages, words", [
    (True, True, None, 2, "listed the same item"),
    (False, False, None, 1, "did not advance"),
    (False, True, "50", 50, "after 50 pages"),
])
def test_pages_read_before_an_endless_listing_stops(env, same, advance, cap, pages, words):
    with _pages_host(same=same, advance=advance) as host:
        changes = {"TFE_ADDRESS": host.url, **({"TFE_RUNBOOK_MAX_PAGES": cap} if cap else {})}
        tfe = TfeClient(_settings(env, **changes))
        started = time.monotonic()
        with pytest.raises(PaginationError, match=f"127.0.0.1:{host.port} .*{words}"):
            list(tfe.list_workspaces("acme"))
        read = len(host.received)
    print(f"\nendless listing ({words}): stopped after {read} pages, {time.monotonic() - started:.2f} s")
    assert read == pages


def test_a_wrong_port_on_the_sandboxs_host_fails_at_once_with_the_default_retries(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tfe = TfeClient(_settings(env, TFE_ADDRESS=f"https://127.0.0.1:{port}"), retry=RetryPolicy())
    started = time.monotonic()
    with pytest.raises(TransportError, match="the port in TFE_ADDRESS may be wrong"):
        tfe.ping()
    took = time.monotonic() - started
    print(f"\nwrong port: named after {took:.3f} s")
    assert took < 1.0


def test_plain_http_against_the_https_sandbox_names_the_scheme(env):
    tfe = TfeClient(_settings(env, TFE_ADDRESS=env["TFE_ADDRESS"].replace("https://", "http://")))
    started = time.monotonic()
    with pytest.raises(TransportError, match="the scheme may be wrong: set TFE_ADDRESS to https://") as caught:
        tfe.ping()
    print(f"\nhttp:// against the https sandbox: named after {time.monotonic() - started:.2f} s: {caught.value}")
    assert "ConnectionResetError" not in str(caught.value)
