"""The warm-kernel pool's start slots: kernels start a few at a time, and a waiting worker takes a kernel
given back instead of starting one. The kernels here are stand-ins that only count their starts (the real
ones are exercised by tests/notebooks/test_warm_kernels.py)."""

from __future__ import annotations

import threading
import time

import pytest

from runbook_lib import kernels


class _CountingKernel:
    lock = threading.Lock()
    starting = 0
    most = 0

    def __init__(self, *args, **kwargs):
        self.client_thread = None

    def start(self):
        cls = type(self)
        with cls.lock:
            cls.starting += 1
            cls.most = max(cls.most, cls.starting)
        time.sleep(0.2)
        with cls.lock:
            cls.starting -= 1

    def alive(self):
        return True

    def shutdown(self):
        pass


@pytest.fixture
def counting(monkeypatch):
    kernel = type("K", (_CountingKernel,), {"lock": threading.Lock(), "starting": 0, "most": 0})
    monkeypatch.setattr(kernels, "WarmKernel", kernel)
    return kernel


def test_kernels_start_at_most_a_few_at_a_time(counting):
    pool = kernels.KernelPool(starts_at_once=2)
    taken = []
    threads = [threading.Thread(target=lambda: taken.append(pool.take())) for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(taken) == 6 and len(set(map(id, taken))) == 6 and pool.started == 6
    assert counting.most == 2  # never more than two starts at once
    assert time.monotonic() - started >= 0.55  # three rounds of two


def test_a_waiting_worker_takes_a_kernel_given_back(counting):
    pool = kernels.KernelPool(starts_at_once=1)
    first = pool.take()
    slow = threading.Event()
    original = counting.start

    def held_start(self):  # the only start slot stays busy until the test lets it go
        slow.wait(5)
        original(self)

    counting.start = held_start
    second: list = []
    starter = threading.Thread(target=lambda: second.append(pool.take()))
    starter.start()  # holds the start slot
    time.sleep(0.1)
    waiter: list = []
    waiting = threading.Thread(target=lambda: waiter.append(pool.take()))
    waiting.start()  # no slot, no idle kernel: it waits
    time.sleep(0.1)
    assert not waiter
    pool.give_back(first, healthy=True)
    waiting.join(2)
    assert waiter == [first]  # given back while it waited: taken, not started
    slow.set()
    starter.join(5)
    assert second and second[0] is not first and pool.started == 2
