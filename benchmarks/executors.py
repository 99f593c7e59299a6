"""Render one tiny batch with the local and the Ray executor; print wall times, their ratio and
each stage's busy fraction (seconds of work recorded in timeline.parquet / (wall x workers)).

    .venv/bin/python benchmarks/executors.py [--videos 4] [--frames 64] [--json out.json]

Both runs use the same settings and seed, so the script also checks that every video's
frames_sha256 is identical across executors. Ratios from one run are what to quote: this
machine is shared and absolute times move with its load.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stt2v_ray.cli import main  # noqa: E402

RAY_POOLS = [
    "ray.base.actors=2", "ray.base.num_cpus=0.5",
    "ray.enhance.actors=2", "ray.enhance_shards=2", "ray.enhance.num_cpus=0.5",
    "ray.interpolate.num_cpus=0.5", "ray.write.num_cpus=0.5",
]


def run(manifest: Path, out: Path, overrides: list[str]) -> float:
    args = ["render", str(manifest), "--output", str(out), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    start = time.perf_counter()
    code = main(args)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"render failed ({code}) with {overrides}")
    return wall


def busy(out: Path, wall: float) -> dict[str, float]:
    rows = pq.read_table(out / "timeline.parquet").to_pylist()
    seconds, workers = defaultdict(float), defaultdict(set)
    for r in rows:
        seconds[r["stage"]] += r["end"] - r["start"]
        workers[r["stage"]].add(r["worker"])
    return {s: round(seconds[s] / (wall * len(workers[s])), 3) for s in seconds}


def main_() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="stt2v-bench-"))
    prompts = [{"id": f"v{i}", "prompt": f"benchmark video {i}", "num_frames": args.frames, "seed": i}
               for i in range(args.videos)]
    manifest = tmp / "bench.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "tiny", "device": "cpu"}, "prompts": prompts}))

    results = {}
    for name, overrides in (("local", ["executor=local"]), ("ray", ["executor=ray", *RAY_POOLS])):
        out = tmp / name
        wall = run(manifest, out, overrides)
        shas = {r["id"]: r["frames_sha256"] for r in pq.read_table(out / "results.parquet").to_pylist()}
        results[name] = {"wall_s": round(wall, 2), "busy": busy(out, wall), "sha": shas}

    same = results["local"]["sha"] == results["ray"]["sha"]
    report = {
        "machine": f"{platform.node()} {platform.machine()} {__import__('os').cpu_count()} cpus",
        "videos": args.videos, "frames_per_video": args.frames, "ray_pools": RAY_POOLS,
        "local_wall_s": results["local"]["wall_s"], "ray_wall_s": results["ray"]["wall_s"],
        "speedup_ray_over_local": round(results["local"]["wall_s"] / results["ray"]["wall_s"], 2),
        "busy_local": results["local"]["busy"], "busy_ray": results["ray"]["busy"],
        "frames_identical": same,
    }
    print(f"{'executor':<8} {'wall s':>8}  busy fraction per stage")
    for name in ("local", "ray"):
        b = results[name]["busy"]
        print(f"{name:<8} {results[name]['wall_s']:>8.2f}  " + "  ".join(f"{k} {v:.2f}" for k, v in sorted(b.items())))
    print(f"speedup (local / ray): {report['speedup_ray_over_local']:.2f}x; frames identical: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main_())
