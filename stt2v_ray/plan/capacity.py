"""Capacity planning: a list-scheduling model of the Ray executor (runtime/executor.py) on the
cost model, the pool layout for N GPUs, and the smallest N meeting a deadline. Pure.

The model follows what the executor does on this branch, per video:
1. admitted in input order (or longest first) while fewer than `in_flight` are in flight;
2. takes the free base actor that frees first, starts its base stream; then takes a gang;
3. S = 1: the gang streams the wavefront as base pieces arrive. The feed is bounded (about
   `buffer_chunks` enhancer chunks ahead), so the base actor is held until the wavefront has
   pulled all but the last few chunks: for a slow enhancer that is nearly its whole run.
   S > 1: the base runs at most `max_chunks_in_flight` chunks ahead of a gang; step 0 waits
   for every base frame; then the largest segment's chunk-steps and decode.
4. the gang is held until the video is written; the base is freed when its last chunk is fed.
Each actor pays `load_s` the first time it is used. CPU stages are not modelled as a limit:
their load is reported (`cpu_busy`) so a layout that would throttle the GPUs shows.
"""
from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, field, replace

from stt2v_ray.plan.costs import CostModel, VideoCost


@dataclass(frozen=True)
class Layout:
    base: int
    gangs: int
    shards: int
    cpu_actors: int = 2  # interpolation and writing actors each

    @property
    def gpus(self) -> int:
        return self.base + self.gangs * self.shards

    def set_flags(self) -> list[str]:
        """The `--set` flags of this layout (GPU actors need num_cpus=0 on small CPU heads; see docs/kuberay.md)."""
        return [f"ray.base.actors={self.base}", "ray.base.num_gpus=1", "ray.base.num_cpus=0",
                f"ray.enhance.actors={self.gangs * self.shards}", f"ray.enhance_shards={self.shards}",
                "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0",
                f"ray.interpolate.actors={self.cpu_actors}", f"ray.write.actors={self.cpu_actors}"]


@dataclass
class Prediction:
    layout: Layout
    makespan_s: float
    gpu_work_s: float
    ends: list[float] = field(default_factory=list)

    @property
    def reserved_gpu_hours(self) -> float:
        return self.layout.gpus * self.makespan_s / 3600

    @property
    def busy(self) -> float:
        return self.gpu_work_s / (self.layout.gpus * self.makespan_s) if self.makespan_s else 0.0


@functools.lru_cache(maxsize=4096)
def _wavefront_pull_times(v: VideoCost) -> list[float]:
    """Seconds into the S=1 wavefront when chunk k's base frames are pulled (its step 0)."""
    k_n, steps, c = v.enhance_chunks, v.enhance_steps, v.enhance_chunk_step_s
    per_decode = v.decode_s / k_n if k_n else 0.0
    t, out = 0.0, []
    for d in range(k_n + steps - 1):
        if d < k_n:
            out.append(t)
        work = sum(1 for i in range(steps) if 0 <= d - i < k_n)
        t += work * c + (per_decode if 0 <= d - (steps - 1) < k_n else 0.0)
    return out


def predict(videos: list[VideoCost], layout: Layout, costs: CostModel, in_flight: int = 0,
            order: str = "fifo", max_chunks_in_flight: int = 4, buffer_chunks: float = 4.0) -> Prediction:
    """Predicted makespan (simulated seconds) of `videos` on `layout`; see the module docstring."""
    if order == "longest-first":
        videos = sorted(videos, key=lambda v: -v.gpu_s)
    limit = in_flight or (layout.base + layout.gangs)
    bases = [(0.0, i, False) for i in range(layout.base)]  # (free at, id, loaded)
    gangs = [(0.0, i, False) for i in range(layout.gangs)]
    heapq.heapify(bases)
    heapq.heapify(gangs)
    running: list[float] = []  # end times of the videos in flight
    ends, work = [], 0.0
    for v in videos:
        t_admit = 0.0
        if len(running) >= limit:
            t_admit = heapq.heappop(running)
        tb, bi, bl = heapq.heappop(bases)
        tb = max(tb, t_admit)
        base_start = tb + (0.0 if bl else costs.load_s)
        chunk_s = (v.base_s - costs.video_fixed_s) / max(1, v.base_chunks)
        if v.enhance_chunks:
            tg, gi, gl = heapq.heappop(gangs)
            tg = max(tg, tb)
            enh_start = tg + (0.0 if gl else costs.load_s)
            if layout.shards == 1:
                pulls = _wavefront_pull_times(v)
                wave = pulls[-1] if pulls else 0.0
                # Base-limited: the wavefront's step 0 of chunk k never precedes the base frames of chunk k.
                lag = max(0.0, base_start + v.base_s - (enh_start + wave))
                end = enh_start + lag + v.enhance_s
                hold = max(0, int(len(pulls) - 1 - buffer_chunks))
                base_free = max(base_start + v.base_s, enh_start + lag + (pulls[hold] if pulls else 0.0))
            else:
                ahead = min(max_chunks_in_flight, v.base_chunks) * chunk_s
                base_free = max(base_start + v.base_s, enh_start + v.base_s - ahead)
                end = max(base_free, enh_start) + v.enhance_critical_s(layout.shards)
            end += v.encode_s / max(1, v.num_frames) * 16  # the last piece's encoding
            heapq.heappush(gangs, (end, gi, True))
        else:
            base_free = end = base_start + v.base_s + v.interpolate_s + v.encode_s
        heapq.heappush(bases, (base_free, bi, True))
        heapq.heappush(running, end)
        ends.append(end)
        work += v.gpu_s
    return Prediction(layout, max(ends) if ends else 0.0, work, ends)


def lower_bound(videos: list[VideoCost], gpus: int, max_shards: int = 8) -> float:
    """max(total GPU work / GPUs, the longest critical path): the last chunk's enhancement
    cannot start before the whole base exists, and a segment of K/S chunks takes its steps."""
    if not videos:
        return 0.0
    work = sum(v.gpu_s for v in videos) / gpus
    def critical(v: VideoCost) -> float:
        last = v.enhance_steps * v.enhance_chunk_step_s + (v.decode_s / v.enhance_chunks if v.enhance_chunks else 0.0)
        return max(v.base_s + last, v.enhance_critical_s(min(max_shards, max(1, gpus - 1))))
    return max(work, max(critical(v) for v in videos))


def layouts(gpus: int, shard_options=(1, 2, 4, 8)) -> list[Layout]:
    out = []
    for s in shard_options:
        for b in range(1, gpus, max(1, gpus // 64)):
            g = (gpus - b) // s
            if g >= 1:
                out.append(Layout(b, g, s))
    return out


def cpu_actors(videos: list[VideoCost], makespan_s: float, headroom: float = 2.0, minimum: int = 2) -> int:
    """CPU actors per CPU stage: the busier stage's work over the makespan, with headroom (one actor runs one call at a time)."""
    work = max(sum(v.interpolate_s for v in videos), sum(v.encode_s for v in videos))
    return max(minimum, math.ceil(headroom * work / makespan_s)) if makespan_s > 0 else minimum


def best_layout(videos: list[VideoCost], gpus: int, costs: CostModel, order: str = "fifo") -> Prediction:
    """The layout of at most `gpus` GPUs with the smallest predicted makespan (then the fewest GPUs)."""
    best = None
    for lay in layouts(gpus):
        p = predict(videos, lay, costs, order=order)
        if best is None or (p.makespan_s, lay.gpus) < (best.makespan_s - 1e-9, best.layout.gpus):
            best = p
    if best is None:
        raise ValueError(f"no layout fits {gpus} GPU(s): a base actor and one enhancer gang need at least 2")
    best.layout = replace(best.layout, cpu_actors=cpu_actors(videos, best.makespan_s))
    return best


def smallest_gpus(videos: list[VideoCost], deadline_s: float, costs: CostModel, max_gpus: int = 1024,
                  order: str = "fifo") -> Prediction | None:
    """The smallest N whose best layout meets the deadline (binary search; makespan falls with N in this model)."""
    lo, hi = 2, max_gpus
    if best_layout(videos, hi, costs, order).makespan_s > deadline_s:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if best_layout(videos, mid, costs, order).makespan_s <= deadline_s:
            hi = mid
        else:
            lo = mid + 1
    return best_layout(videos, lo, costs, order)
