"""ray.util.metrics of a render: exported by each node's metrics agent in Prometheus text
(`ray_` is prefixed to every name), shown by the Ray dashboard's Grafana panels when set up.

Driver (RunMetrics): videos done / failed / in flight, videos waiting for a pool.
Actors (ActorMetrics): frames per stage, enhancer inbox depth, busy seconds per pool.
Each process's series carry Ray's own WorkerId/NodeAddress labels, so sum over them.
"""
from __future__ import annotations

import threading

from ray.util.metrics import Counter, Gauge

# stage of a timeline span -> the pool that did it
POOL_OF = {"base": "base", "enhance": "enhance", "interpolate": "interpolate", "encode": "write"}

METRICS = {  # name: (kind, tags, description) - the README's list is written from this
    "stt2v_videos_done": ("counter", (), "Videos rendered and written."),
    "stt2v_videos_failed": ("counter", (), "Videos that failed (after their retries)."),
    "stt2v_videos_in_flight": ("gauge", (), "Videos admitted and not yet ended."),
    "stt2v_frames_total": ("counter", ("stage",), "Frames a stage has produced (base, enhance, interpolate, write); "
                                                  "frames per second: rate() of it."),
    "stt2v_queue_depth": ("gauge", ("queue",), "Work waiting: enhance_inbox (base pieces fed, not yet enhanced), "
                                               "base_wait / enhance_wait (videos waiting for a free base actor / "
                                               "enhancer gang)."),
    "stt2v_busy_seconds": ("counter", ("pool",), "Seconds of recorded stage work per pool (base, enhance, interpolate, "
                                                 "write); busy fraction: rate() over the pool's actors."),
}


def _make(name: str):
    kind, tags, description = METRICS[name]
    return (Counter if kind == "counter" else Gauge)(name, description=description, tag_keys=tags)


class _Level:
    """A gauge that several threads move up and down."""

    def __init__(self, gauge, tags: dict | None = None):
        self.gauge, self.tags, self.value = gauge, tags, 0
        self._lock = threading.Lock()

    def add(self, delta: int) -> None:
        with self._lock:
            self.value += delta
            self.gauge.set(self.value, tags=self.tags)


class RunMetrics:
    """The driver's metrics; make it after ray.init."""

    def __init__(self) -> None:
        self.done, self.failed = _make("stt2v_videos_done"), _make("stt2v_videos_failed")
        self.in_flight = _Level(_make("stt2v_videos_in_flight"))
        queue = _make("stt2v_queue_depth")
        self.queues = {q: _Level(queue, {"queue": q}) for q in ("base_wait", "enhance_wait")}

    def video_started(self) -> None:
        self.in_flight.add(1)

    def video_ended(self, ok: bool) -> None:
        (self.done if ok else self.failed).inc(1)
        self.in_flight.add(-1)

    def queue(self, name: str, delta: int) -> None:
        self.queues[name].add(delta)


class ActorMetrics:
    """One stage actor's metrics."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._frames, self._busy, self._queue = _make("stt2v_frames_total"), _make("stt2v_busy_seconds"), None
        if stage == "enhance":
            self._queue = _make("stt2v_queue_depth")

    def frames(self, n: int) -> None:
        if n > 0:
            self._frames.inc(n, tags={"stage": self.stage})

    def inbox(self, depth: int) -> None:
        if self._queue is not None:
            self._queue.set(depth, tags={"queue": "enhance_inbox"})

    def span(self, row: tuple) -> None:
        """A timeline row (video, stage, worker, unit, start, end, seconds) just recorded."""
        pool = POOL_OF.get(row[1])
        if pool is not None and row[6] > 0:
            self._busy.inc(row[6], tags={"pool": pool})
