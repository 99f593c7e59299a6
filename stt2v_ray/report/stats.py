"""Numbers behind the summary and the charts: pools, busy time, GPU-hours, utilisation steps."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from stt2v_ray.report.load import RunData

# Worker-name prefix -> the ray.<pool> settings section (run.py names workers base-0, enhance-g0s1, write-0, ...).
POOLS = ("base", "enhance", "interpolate", "write")


def pool_of(worker: str) -> str:
    """'enhance-g0s1' -> 'enhance'; the local executor's single worker is its own pool."""
    return worker.split("-", 1)[0]


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of intervals (a worker running two spans at once is busy once)."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def busy_intervals(data: RunData) -> dict[str, list[tuple[float, float]]]:
    """Per worker, its merged busy intervals in seconds from the run's start."""
    t0 = data.t0
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in data.timeline:
        spans[r["worker"]].append((r["start"] - t0, r["end"] - t0))
    return {w: merged(s) for w, s in sorted(spans.items())}


@dataclass
class PoolStats:
    pool: str
    workers: int  # actors configured (Ray) or workers seen in the timeline, whichever is more
    gpus_per_worker: float
    busy_seconds: float
    busy_fraction: float  # busy seconds / (workers x the timeline's window)

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker


def pool_settings(data: RunData) -> dict[str, tuple[int, float]]:
    """(actors, num_gpus per actor) per pool from run.json; the local executor: one worker, 1 GPU on CUDA."""
    s = data.settings
    if s.get("executor") == "ray" and isinstance(s.get("ray"), dict):
        return {p: (int(s["ray"][p].get("actors", 1)), float(s["ray"][p].get("num_gpus", 0.0)))
                for p in POOLS if isinstance(s["ray"].get(p), dict)}
    if s.get("executor") == "local":
        return {"local": (1, 1.0 if str(s.get("device", "cpu")).startswith("cuda") else 0.0)}
    return {}


def pool_stats(data: RunData) -> list[PoolStats]:
    configured = pool_settings(data)
    wall = data.span_seconds
    seen: dict[str, set[str]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    for worker, intervals in busy_intervals(data).items():
        seen[pool_of(worker)].add(worker)
        busy[pool_of(worker)] += sum(e - s for s, e in intervals)
    out = []
    for pool in list(configured) + sorted(set(seen) - set(configured)):
        actors, gpus = configured.get(pool, (0, 0.0))
        workers = max(actors, len(seen[pool]))
        fraction = busy[pool] / (workers * wall) if workers and wall > 0 else 0.0
        out.append(PoolStats(pool, workers, gpus, busy[pool], fraction))
    return out


def gpu_hours(stats: list[PoolStats], wall_seconds: float) -> tuple[float, float]:
    """(reserved, busy) GPU-hours: GPUs held by the pools x wall time, and GPUs x busy seconds."""
    reserved = sum(p.gpus for p in stats) * wall_seconds / 3600
    busy = sum(p.gpus_per_worker * p.busy_seconds for p in stats) / 3600
    return reserved, busy


def utilisation(data: RunData, workers_per_pool: dict[str, int], bins: int = 150) -> tuple[list[float], dict[str, list[float]]]:
    """(bin starts, per pool the busy fraction in each bin): busy worker-seconds / (workers x bin width).

    Binned rather than drawn span by span, so thousands of short spans still read as one line per pool."""
    wall = max(data.span_seconds, 1e-9)
    width = wall / bins
    edges = [i * width for i in range(bins)]
    out: dict[str, list[float]] = {}
    for worker, intervals in busy_intervals(data).items():
        pool = pool_of(worker)
        acc = out.setdefault(pool, [0.0] * bins)
        for start, end in intervals:
            first, last = max(0, int(start // width)), min(bins - 1, int(end // width))
            for b in range(first, last + 1):
                acc[b] += max(0.0, min(end, edges[b] + width) - max(start, edges[b]))
    for pool, acc in out.items():
        size = max(1, workers_per_pool.get(pool, 1))
        out[pool] = [min(1.0, a / (size * width)) for a in acc]
    return edges, dict(sorted(out.items()))
