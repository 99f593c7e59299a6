"""Scale, measured on a simulated cluster: the real Ray executor with simulated models (issue 17).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/scale.py [--quick] [--json out.json] [--parts batch,single,memory]

One Ray cluster of simulated GPUs on this machine (`ray.init(num_gpus=32)`; GPU actors take
num_cpus=0). Every figure comes from this one run, as a ratio of simulated seconds (the
timeline's seconds x simulate.time_scale), next to the measured per-call overhead:
- batch: seeded mixed-length videos on the planner's layout; busy fraction per pool,
  makespan / lower bound, the planner's prediction; fifo and longest-first side by side.
  Longest-first here = the input sorted by predicted GPU seconds, longest first (a look-ahead
  of the whole batch): the `ray.admission` setting belongs to the scheduler branch; with it
  merged pass `--admission-set ray.admission=longest-first` to use it instead (hook below).
- single: one long video at S = 1, 2, 4, 8; enhancement speed-up over S = 1 and end-to-end
  latency against the original's single-GPU sequential time on the same cost model.
- overhead: Ray calls per video (counted in the driver, where every call is made), the
  measured round-trip of one trivial actor call, and the object store's peak (sampled).
- memory: real compute (tiny preset), peak RSS of each actor and of the driver, 120 vs 1200
  frames, S = 1 and 2 (psutil, sampled).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import ray  # noqa: E402

from stt2v_ray.config import RunSettings, deep_merge, parse_override  # noqa: E402
from stt2v_ray.inputs.requests import VideoRequest  # noqa: E402
from stt2v_ray.pipeline.simulate import cost_model, video_shape  # noqa: E402
from stt2v_ray.plan.capacity import Layout, best_layout, lower_bound, predict  # noqa: E402
from stt2v_ray.plan.costs import video_cost  # noqa: E402
from stt2v_ray.presets import get_preset  # noqa: E402
from stt2v_ray.progress import Progress  # noqa: E402
from stt2v_ray.results import Timeline  # noqa: E402
from stt2v_ray.runtime.executor import RayExecutor  # noqa: E402

SMALL_CPU = ["ray.interpolate.num_cpus=0.25", "ray.write.num_cpus=0.25", "retry.stage_timeout_s=1200"]


def settings_for(preset: str, sets: list[str]) -> RunSettings:
    mapping = deep_merge(get_preset(preset).defaults, {"preset": preset, "executor": "ray"})
    for s in sets:
        mapping = deep_merge(mapping, parse_override(s))
    return RunSettings.model_validate(mapping)


class Sampler:
    """Peak object-store use and peak RSS per process, sampled in a thread while a run goes."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0, store: bool = True):
        self.pids, self.interval, self.store = dict(pids, driver=os.getpid()), interval, store
        self.rss = dict.fromkeys(self.pids, 0)
        self.store_peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        from ray._private.internal_api import memory_summary

        address = ray.get_runtime_context().gcs_address  # this cluster's, never another one on the machine
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                try:
                    self.rss[name] = max(self.rss[name], psutil.Process(pid).memory_info().rss)
                except psutil.Error:
                    pass
            if self.store:
                try:
                    m = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(address=address, stats_only=True))
                    if m:
                        self.store_peak_mib = max(self.store_peak_mib, float(m.group(1)))
                except Exception:  # noqa: BLE001 - a sample lost is not a failed run
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class CallCounter:
    """Counts actor method calls made in this (driver) process: every executor call is made here."""

    def __init__(self):
        self.count = 0
        self._orig = ray.actor.ActorMethod._remote

    def __enter__(self):
        counter, orig = self, self._orig

        def counted(method, *args, **kwargs):
            counter.count += 1
            return orig(method, *args, **kwargs)

        ray.actor.ActorMethod._remote = counted
        return self

    def __exit__(self, *exc):
        ray.actor.ActorMethod._remote = self._orig


def per_call_ms(actor, n: int = 200) -> float:
    ray.get(actor.pid.remote())
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get(actor.pid.remote())
    return (time.perf_counter() - t0) / n * 1000


def run_batch(executor: RayExecutor, frames: list[int], out: str, scale: float) -> dict:
    """Render the videos (in this order) through a started executor -> timeline-derived figures."""
    reqs = [(VideoRequest(id=f"v{i:03d}", prompt=f"video {i}", num_frames=n, seed=i), {}) for i, n in enumerate(frames)]
    timeline, progress = Timeline(), Progress(quiet=True)
    with Sampler(executor.pids) as sampler, CallCounter() as calls:
        t0 = time.monotonic()
        rows = [row for row, _ in executor.run(iter(reqs), out, None, timeline, progress)]
        wall = time.monotonic() - t0
    spans = timeline.rows()
    bad = [r["id"] for r in rows if r["status"] != "ok" or r["num_frames"] != frames[int(r["id"][1:])]]
    start, end = min(s["start"] for s in spans), max(s["end"] for s in spans)
    busy, window = {}, {}
    for stage in ("base", "enhance", "interpolate", "encode"):
        mine = [s for s in spans if s["stage"] == stage and s["unit"] != "prepare"]
        busy[stage] = sum(s["seconds"] for s in mine)
        window[stage] = round((max(s["end"] for s in mine) - min(s["start"] for s in mine)) * scale, 1) if mine else 0.0
    return {"videos": len(frames), "failed_or_wrong_count": bad, "makespan_s": round((end - start) * scale, 1),
            "wall_s": round(wall, 2), "stage_work_s": {k: round(v * scale, 1) for k, v in busy.items()},
            "stage_window_s": window,
            "ray_calls": calls.count, "ray_calls_per_video": round(calls.count / len(frames), 1),
            "object_store_peak_mib": sampler.store_peak_mib,
            "rss_peak_mib": {k: round(v / 2**20, 1) for k, v in sampler.rss.items()}}


def with_busy(res: dict, lay: Layout) -> dict:
    m = res["makespan_s"]
    w = res["stage_work_s"]
    res["busy"] = {"base": round(w["base"] / (lay.base * m), 3), "enhance": round(w["enhance"] / (lay.gangs * lay.shards * m), 3),
                   "gpu": round((w["base"] + w["enhance"]) / (lay.gpus * m), 3),
                   "cpu_write": round(w["encode"] / (lay.cpu_actors * m), 3)}
    return res


def batch_part(args, rng: random.Random) -> dict:
    n, lo, hi, gpus = (6, 60, 160, 4) if args.quick else (args.videos, 120, 1200, args.gpus)
    frames = [rng.randint(lo, hi) for _ in range(n)]
    probe = settings_for("sim", [])
    costs = cost_model(probe)
    videos = [video_cost(f, video_shape(probe), costs) for f in frames]
    plan = best_layout(videos, gpus, costs)
    lay = plan.layout
    sets = lay.set_flags() + SMALL_CPU + [f"simulate.time_scale={args.scale:g}"]
    settings = settings_for("sim", sets)
    bound = lower_bound(videos, gpus)
    executor = RayExecutor(settings, place_timeout=600)
    out = {"gpus": gpus, "layout": lay.__dict__, "set": sets, "lower_bound_s": round(bound, 1), "time_scale": args.scale}
    executor.start(None)
    try:
        out["per_call_ms"] = round(per_call_ms(executor.bases[0]), 3)
        out["per_call_simulated_s"] = round(out["per_call_ms"] / 1000 * args.scale, 3)
        orders = {"fifo": list(range(n)), "longest-first": sorted(range(n), key=lambda i: -videos[i].gpu_s)}
        if args.admission_set:  # the scheduler's own admission policy: input order, the setting on a fresh executor
            orders["longest-first"] = list(range(n))
        for k, (name, order) in enumerate(orders.items()):
            if name == "longest-first" and args.admission_set:
                executor.close()
                executor = RayExecutor(settings_for("sim", sets + [args.admission_set]), place_timeout=600)
                executor.start(None)
                k = 0  # fresh actors load their models again
            res = run_batch(executor, [frames[i] for i in order], tempfile.mkdtemp(prefix=f"scale-{name}-"), args.scale)
            # Actors load their models once, in the first run.
            pred = predict([videos[i] for i in order], lay, costs if k == 0 else _no_load(costs))
            res = with_busy(res, lay)
            res["makespan_over_bound"] = round(res["makespan_s"] / bound, 3)
            res["predicted_makespan_s"] = round(pred.makespan_s, 1)
            res["prediction_error"] = round(res["makespan_s"] / pred.makespan_s - 1, 3)
            out[name] = res
    finally:
        executor.close()
    return out


def _no_load(costs):
    from dataclasses import replace

    return replace(costs, load_s=0.0)


def single_part(args) -> dict:
    frames = 240 if args.quick else 1200
    probe = settings_for("sim", [])
    costs = cost_model(probe)
    v = video_cost(frames, video_shape(probe), costs)
    out = {"frames": frames, "time_scale": args.single_scale, "sequential_s": round(v.sequential_s(), 1), "runs": {}}
    for s in (1, 2) if args.quick else (1, 2, 4, 8):
        lay = Layout(1, 1, s, cpu_actors=1)
        settings = settings_for("sim", lay.set_flags() + SMALL_CPU + [f"simulate.time_scale={args.single_scale:g}"])
        executor = RayExecutor(settings, place_timeout=600)
        executor.start(None)
        try:
            res = run_batch(executor, [frames], tempfile.mkdtemp(prefix=f"scale-S{s}-"), args.single_scale)
        finally:
            executor.close()
        out["runs"][s] = {"latency_s": res["makespan_s"], "enhance_work_s": res["stage_work_s"]["enhance"],
                          "enhance_window_s": res["stage_window_s"]["enhance"],
                          "ray_calls": res["ray_calls"], "object_store_peak_mib": res["object_store_peak_mib"],
                          "predicted_latency_s": round(predict([v], lay, costs).makespan_s - costs.load_s, 1)}
    one = out["runs"][1]
    for r in out["runs"].values():
        # The enhancement stage: its first to its last enhancer unit (on S=1 it overlaps the base stage).
        r["enhance_speedup"] = round(one["enhance_window_s"] / r["enhance_window_s"], 2)
        r["latency_speedup_vs_S1"] = round(one["latency_s"] / r["latency_s"], 2)
        r["vs_sequential"] = round(out["sequential_s"] / r["latency_s"], 2)
    return out


def memory_part(args) -> dict:
    """Real compute, tiny preset: peak RSS per actor and of the driver, 120 vs 1200 frames, S = 1 and 2."""
    lengths = (24, 72) if args.quick else tuple(int(x) for x in args.memory_frames.split(","))
    fast = ["t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "encode.preset=ultrafast", "ray.base.num_gpus=1",
            "ray.base.num_cpus=0", "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0"] + SMALL_CPU
    out = {}
    for s in (1, 2):
        settings = settings_for("tiny", fast + [f"ray.enhance.actors={s}", f"ray.enhance_shards={s}"])
        executor = RayExecutor(settings, place_timeout=600)
        executor.start(None)
        try:
            for n in lengths:
                res = run_batch(executor, [n], tempfile.mkdtemp(prefix=f"scale-mem-{s}-{n}-"), 1.0)
                out[f"S{s}-{n}"] = {"rss_peak_mib": res["rss_peak_mib"], "wall_s": res["wall_s"],
                                    "object_store_peak_mib": res["object_store_peak_mib"]}
        finally:
            executor.close()
        a, b = out[f"S{s}-{lengths[0]}"]["rss_peak_mib"], out[f"S{s}-{lengths[1]}"]["rss_peak_mib"]
        out[f"S{s}-growth"] = {k: round(b[k] / a[k] - 1, 3) for k in a if a[k]}
    return out


def table(result: dict) -> str:
    lines = [f"[SIMULATED] scale benchmark ({result['machine']})"]
    b = result.get("batch")
    if b:
        lay = b["layout"]
        lines.append(f"batch: {b['fifo']['videos']} videos on {b['gpus']} GPUs: {lay['base']} base, {lay['gangs']} gangs x "
                     f"{lay['shards']}, {lay['cpu_actors']} CPU actors/stage; time_scale {b['time_scale']:g}; one actor call "
                     f"{b['per_call_ms']:.2f} ms = {b['per_call_simulated_s']:.2f} simulated s")
        lines.append(f"  {'order':<14}{'makespan s':>11}{'bound s':>9}{'ratio':>7}{'predicted':>10}{'busy base':>10}"
                     f"{'busy enh':>9}{'busy gpu':>9}{'calls/vid':>10}{'store MiB':>10}")
        for name in ("fifo", "longest-first"):
            r = b[name]
            lines.append(f"  {name:<14}{r['makespan_s']:>11.0f}{b['lower_bound_s']:>9.0f}{r['makespan_over_bound']:>7.2f}"
                         f"{r['predicted_makespan_s']:>10.0f}{r['busy']['base']:>10.2f}{r['busy']['enhance']:>9.2f}"
                         f"{r['busy']['gpu']:>9.2f}{r['ray_calls_per_video']:>10.0f}{r['object_store_peak_mib']:>10.0f}")
    s = result.get("single")
    if s:
        lines.append(f"single: one {s['frames']}-frame video; the original's sequential time {s['sequential_s']:.0f} s")
        lines.append(f"  {'S':<4}{'enhance s':>10}{'speed-up':>9}{'latency s':>10}{'predicted':>10}{'vs S=1':>7}"
                     f"{'vs sequential':>14}{'calls':>7}")
        for k, r in s["runs"].items():
            lines.append(f"  {k!s:<4}{r['enhance_window_s']:>10.0f}{r['enhance_speedup']:>9.2f}{r['latency_s']:>10.0f}"
                         f"{r['predicted_latency_s']:>10.0f}{r['latency_speedup_vs_S1']:>7.2f}{r['vs_sequential']:>14.2f}"
                         f"{r['ray_calls']:>7}")
    m = result.get("memory")
    if m:
        lines.append("memory (real compute, tiny): peak RSS MiB growth from the short to the long video")
        for k, v in m.items():
            if k.endswith("growth"):
                lines.append(f"  {k}: " + ", ".join(f"{n} {g:+.1%}" for n, g in v.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small version (under a minute): 6 videos on 4 GPUs")
    p.add_argument("--videos", type=int, default=200)
    p.add_argument("--gpus", type=int, default=32)
    p.add_argument("--scale", type=float, default=500.0, help="time_scale of the batch")
    p.add_argument("--single-scale", type=float, default=500.0, help="time_scale of the single-video runs")
    p.add_argument("--parts", default="batch,single,memory")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--admission-set", default=None, metavar="KEY=VALUE",
                   help="e.g. ray.admission=longest-first (scheduler branch): run longest-first with it, not by input order")
    p.add_argument("--memory-frames", default="120,1200", help="the short and the long video of the memory part")
    p.add_argument("--json", default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, 200.0)
        args.single_scale = min(args.single_scale, 200.0)
    parts = set(args.parts.split(","))
    gpus = 4 if args.quick else max(4, args.gpus)
    if "single" in parts:
        gpus = max(gpus, 3 if args.quick else 9)  # one base actor + a gang of up to 8
    ray.init(address="local", num_cpus=8, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    load = os.getloadavg()
    result = {"machine": f"{os.cpu_count()} cores, load {load[0]:.1f} at start, shared", "simulated": True,
              "cost_model": cost_model(settings_for("sim", [])).to_dict()}
    def save() -> None:  # after every part: a later part that fails loses nothing
        result["load_now"] = round(os.getloadavg()[0], 1)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")

    try:
        if "batch" in parts:
            result["batch"] = batch_part(args, random.Random(args.seed))
            save()
        if "single" in parts:
            result["single"] = single_part(args)
            save()
        if "memory" in parts:
            result["memory"] = memory_part(args)
            save()
    finally:
        ray.shutdown()
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
