"""Switchable fault injection and the per-token rate limit.

Faults are off by default. When on, each request draws from one seeded random generator in arrival
order, so a test that sends the same requests in the same order meets the same faults every time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any


# Field metadata that drives FaultConfig's JSON round trip: a rate is refused outside 0..1; a list is a
# JSON list on the admin endpoint and a tuple here.
_RATE = {"rate": True}
_LIST = {"list": True}


@dataclass
class FaultConfig:
    """What to inject, and how often.

    Attributes:
        error_rate: share of requests answered with a 5xx from `error_statuses` (0..1).
        error_statuses: the 5xx statuses to choose from.
        burst_rate: chance that a request starts a burst of 429 answers (0..1).
        burst_length: how many consecutive requests a burst answers 429 (the starting one included).
        latency_ms: added to every matching request; `latency_jitter_ms` adds up to that much more.
        latency_jitter_ms: random extra latency (from the same seeded generator).
        drop_rate: share of requests whose connection is closed without an answer (0..1).
        seed: seed of the generator; the same seed and request order give the same faults.
        path_prefix: only paths starting with this are faulted (the admin surface never is).
        methods: only these methods are faulted (None: all).
    """

    error_rate: float = field(default=0.0, metadata=_RATE)
    error_statuses: tuple[int, ...] = field(default=(500, 502, 503), metadata=_LIST)
    burst_rate: float = field(default=0.0, metadata=_RATE)
    burst_length: int = 3
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    drop_rate: float = field(default=0.0, metadata=_RATE)
    seed: int = 0
    path_prefix: str = "/api/"
    methods: tuple[str, ...] | None = field(default=None, metadata=_LIST)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FaultConfig":
        """Build from a dict (the admin endpoint's JSON), rejecting unknown keys.

        Raises:
            ValueError: unknown key or a rate outside 0..1.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        values = {key: tuple(value) if value is not None and _has(cls, key, "list") else value
                  for key, value in data.items()}
        config = cls(**values)
        for f in fields(cls):
            if f.metadata.get("rate") and not 0.0 <= float(getattr(config, f.name)) <= 1.0:
                raise ValueError(f"{f.name} must be between 0 and 1")
        return config

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-friendly dict."""
        return {key: list(value) if value is not None and _has(type(self), key, "list") else value
                for key, value in asdict(self).items()}


def _has(cls: type, name: str, mark: str) -> bool:
    """Whether the field `name` of the dataclass `cls` carries the metadata `mark`."""
    return any(f.name == name and f.metadata.get(mark) for f in fields(cls))


@dataclass
class FaultDecision:
    """What the server does to one request: sleep `latency_s`, then `action` (None, "5xx", "429", "drop")."""

    latency_s: float = 0.0
    action: str | None = None
    status: int = 0


class FaultInjector:
    """Decides, per request, which fault (if any) to inject."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: FaultConfig | None = None
        self._rng = random.Random(0)
        self._burst_left = 0

    @property
    def config(self) -> FaultConfig | None:
        """The active configuration, or None when faults are off."""
        return self._config

    def configure(self, config: FaultConfig | None) -> None:
        """Switch faults on with `config` (re-seeding the generator), or off with None."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed if config else 0)
            self._burst_left = 0

    def decide(self, method: str, path: str) -> FaultDecision:
        """The fault for one request (drawn in arrival order from the seeded generator)."""
        config = self._config
        if config is None or not path.startswith(config.path_prefix):
            return FaultDecision()
        if config.methods is not None and method not in config.methods:
            return FaultDecision()
        with self._lock:
            rng = self._rng
            latency = config.latency_ms + (rng.random() * config.latency_jitter_ms if config.latency_jitter_ms else 0)
            decision = FaultDecision(latency_s=latency / 1000.0)
            if self._burst_left > 0:
                self._burst_left -= 1
                decision.action, decision.status = "429", 429
                return decision
            roll = rng.random()
            if roll < config.drop_rate:
                decision.action = "drop"
            elif roll < config.drop_rate + config.error_rate:
                decision.action = "5xx"
                decision.status = rng.choice(config.error_statuses)
            elif roll < config.drop_rate + config.error_rate + config.burst_rate:
                decision.action, decision.status = "429", 429
                self._burst_left = max(config.burst_length - 1, 0)
            return decision


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token bucket per API token: `limit` requests a second, bursts up to `limit`.

    Attributes:
        limit: requests per second per token; None switches the limit off.
    """

    limit: float | None = 30.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, key: str) -> float | None:
        """Take one request from `key`'s budget.

        Returns:
            None when allowed; otherwise the seconds until the next request would be allowed.
        """
        limit = self.limit
        if not limit:
            return None
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=float(limit), stamp=now)
            bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.stamp) * limit)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / limit

    def headers(self, reset_s: float, *, limit: float | None = None) -> dict[str, str]:
        """The 429 headers: `X-RateLimit-Limit`, `X-RateLimit-Reset` (float seconds), `Retry-After` (int)."""
        return {"X-RateLimit-Limit": f"{limit or self.limit or 0:g}", "X-RateLimit-Reset": f"{reset_s:.3f}",
                "Retry-After": str(max(1, math.ceil(reset_s)))}


#: The file in the data directory that holds the `RunProfile` the run worker reads when it starts.
RUN_PROFILE_FILE = "run_profile.json"


@dataclass
class RunProfile:
    """How long a run takes and how many run at once: the two settings of a real TFE that bound an estate.

    A real TFE queues a run and plans it in a container; for a whole estate the wall time is bounded by
    how long that takes and by how many runs the host executes at once (TFE_CAPACITY_CONCURRENCY, default
    10 per node: https://developer.hashicorp.com/terraform/enterprise/deploy/reference/configuration).
    The defaults keep the sandbox fast for tests: no added time, capacity as the run worker's threads.

    Attributes:
        run_seconds: queue plus plan seconds added to every plan (the run shows `planning` meanwhile).
        run_jitter: the added time varies by up to this share either way (0.2: 16-24 s for 20 s).
        run_capacity: runs executed at once (plans and applies); later runs stay queued (0: the run
            worker's thread count).
        seed: seed of the jitter's generator.
    """

    run_seconds: float = 0.0
    run_jitter: float = 0.0
    run_capacity: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.run_seconds < 0 or not 0 <= self.run_jitter <= 1 or self.run_capacity < 0:
            raise ValueError("run_seconds and run_capacity must be >= 0 and run_jitter between 0 and 1")

    def draw_seconds(self, rng: random.Random) -> float:
        """One run's added seconds."""
        if not self.run_seconds:
            return 0.0
        return self.run_seconds * (1.0 + self.run_jitter * (2.0 * rng.random() - 1.0))

    def save(self, data_dir: Any) -> None:
        """Write the profile for the run worker of a sandbox on `data_dir` (read when it starts)."""
        import json
        from pathlib import Path

        Path(data_dir, RUN_PROFILE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, data_dir: Any) -> "RunProfile":
        """The profile saved in `data_dir`, or the fast default.

        Raises:
            ValueError: the file holds unknown keys or values out of range.
        """
        import json
        from pathlib import Path

        path = Path(data_dir, RUN_PROFILE_FILE)
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))
