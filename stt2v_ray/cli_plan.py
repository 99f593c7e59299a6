"""`stt2v-ray plan INPUT --gpus N [--deadline 6h] [--profile gpu_profile.json]`: the capacity planner.

Reads the input as `render` does, costs each video on the cost model (the one the simulation
sleeps on), and prints the predicted makespan, GPU-hours, the pool layout, the `--set` flags
and the KubeRay worker-group replicas of cluster/raycluster.yaml. The math is plan/capacity.py.
"""
from __future__ import annotations

import json
import math
import re
import sys

from stt2v_ray.pipeline.simulate import video_shape
from stt2v_ray.plan.capacity import Layout, Prediction, best_layout, lower_bound, predict, smallest_gpus
from stt2v_ray.plan.costs import CostModel, from_profile, video_cost

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'6h', '90m', '3600s', '3600' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"--deadline {text!r}: expected a number with an optional unit s, m, h or d (e.g. 6h)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def input_costs(label: str, overrides: list[str], options: dict, source=None):
    from stt2v_ray.run import load_and_validate

    source, settings = load_and_validate(label, overrides, options, source)
    costs = from_profile(settings.simulate.profile) if settings.simulate.profile else CostModel()
    videos = [video_cost(r.num_frames, video_shape(settings, "i2v" if r.image else "t2v"), costs)
              for r, _ in source.iter_requests()]
    return settings, costs, videos


def kuberay_replicas(layout: Layout) -> dict[str, int]:
    """Worker groups of cluster/raycluster.yaml: one GPU per base/enhance pod; a cpu pod offers stt2v_cpu=4."""
    return {"base": layout.base, "enhance": layout.gangs * layout.shards, "cpu": max(1, math.ceil(2 * layout.cpu_actors / 4))}


def report(p: Prediction, bound: float, costs: CostModel) -> dict:
    lay = p.layout
    return {"gpus": lay.gpus, "makespan_s": round(p.makespan_s, 1), "makespan_h": round(p.makespan_s / 3600, 3),
            "lower_bound_s": round(bound, 1), "gpu_hours_reserved": round(p.reserved_gpu_hours, 2),
            "gpu_hours_work": round(p.gpu_work_s / 3600, 2), "busy": round(p.busy, 3),
            "layout": {"base_actors": lay.base, "enhancer_gangs": lay.gangs, "shards": lay.shards,
                       "interpolate_actors": lay.cpu_actors, "write_actors": lay.cpu_actors},
            "set": lay.set_flags(), "kuberay_replicas": kuberay_replicas(lay),
            "kuberay_set": lay.set_flags() + ["ray.base.resources.stt2v_base=1", "ray.enhance.resources.stt2v_enhance=1",
                                              "ray.interpolate.resources.stt2v_cpu=1", "ray.write.resources.stt2v_cpu=1"],
            "cost_model": costs.source}


def run_plan(args, options: dict) -> int:
    overrides = list(args.overrides)
    if args.profile:
        overrides.append(f"simulate.profile={json.dumps(args.profile)}")
    try:
        deadline = parse_duration(args.deadline) if args.deadline else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings, costs, videos = input_costs(args.input, overrides, options)
    if not videos:
        print("error: the input has no videos", file=sys.stderr)
        return 2
    if args.gpus < 2:
        print("error: --gpus must be at least 2 (one base actor and one enhancer)", file=sys.stderr)
        return 2
    best = best_layout(videos, args.gpus, costs, order=args.order)
    out = {"videos": len(videos), "frames": sum(v.num_frames for v in videos), "order": args.order,
           "plan": report(best, lower_bound(videos, args.gpus), costs)}
    if deadline is not None:
        fit = smallest_gpus(videos, deadline, costs, order=args.order)
        out["deadline_s"] = deadline
        out["smallest"] = report(fit, lower_bound(videos, fit.layout.gpus), costs) if fit else None
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    _print(out, settings)
    return 0


def _print(out: dict, settings) -> None:
    def block(title: str, r: dict) -> None:
        lay = r["layout"]
        print(f"{title}: {r['gpus']} GPUs")
        print(f"  predicted makespan {r['makespan_h']:.2f} h ({r['makespan_s']:.0f} s; lower bound {r['lower_bound_s']:.0f} s), "
              f"GPU-hours {r['gpu_hours_reserved']:.1f} reserved / {r['gpu_hours_work']:.1f} of work (busy {r['busy']:.2f})")
        print(f"  pools: {lay['base_actors']} base actors, {lay['enhancer_gangs']} enhancer gangs x {lay['shards']} shards, "
              f"{lay['interpolate_actors']} interpolation + {lay['write_actors']} writer CPU actors")
        print("  --set " + " --set ".join(r["set"]))
        kr = r["kuberay_replicas"]
        print(f"  KubeRay (cluster/raycluster.yaml) replicas: base={kr['base']} enhance={kr['enhance']} cpu={kr['cpu']}; "
              "add --set " + " --set ".join(r["kuberay_set"][len(r["set"]):]))

    print(f"{out['videos']} videos, {out['frames']} frames, preset {settings.preset}, admission {out['order']}; "
          f"cost model: {out['plan']['cost_model']}")
    block("plan", out["plan"])
    if "deadline_s" in out:
        if out["smallest"] is None:
            print(f"deadline {out['deadline_s']:.0f} s: not met by any cluster up to 1024 GPUs (one video's critical path "
                  "is longer)")
        else:
            block(f"smallest cluster meeting the deadline of {out['deadline_s'] / 3600:.2f} h", out["smallest"])


__all__ = ["parse_duration", "input_costs", "run_plan", "predict", "kuberay_replicas"]
