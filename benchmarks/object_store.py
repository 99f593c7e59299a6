"""The object store's peak during a tiny Ray render, for a short and a long video, S = 1 and 2.

    .venv/bin/python benchmarks/object_store.py [--frames 45 165] [--json out.json]

Every stream has backpressure (docs/how-it-works.md, Scheduling), so the number of live objects
should not grow with the video's length: the script prints, per shard count and length, the
store's peak bytes (which also count freed objects not yet deleted) and the driver's peak number
of live object refs (exact).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import ray
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stt2v_ray.cli import main  # noqa: E402
from stt2v_ray.runtime.objstore import ObjectStorePeak  # noqa: E402

FAST = ["t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "enhance.chunk_frames=8", "enhance.overlap_frames=3",
        "t2v.chunk_frames=8", "t2v.cond_frames=4", "encode.preset=ultrafast", "executor=ray",
        "ray.base.num_gpus=1", "ray.base.num_cpus=0", "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0",
        "ray.max_chunks_in_flight=2"]


def peak(folder: Path, frames: int, shards: int) -> tuple[int, int]:
    doc = {"settings": {"preset": "tiny"}, "prompts": [{"id": "v", "prompt": "a red circle", "num_frames": frames, "seed": 1}]}
    manifest = folder / f"m{frames}-{shards}.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    sets = FAST + [f"ray.enhance_shards={shards}", f"ray.enhance.actors={shards}"]
    with ObjectStorePeak() as p:
        code = main(["render", str(manifest), "--output", str(folder / manifest.stem), "--quiet"]
                    + [a for s in sets for a in ("--set", s)])
    if code != 0:
        raise SystemExit(f"render failed ({code})")
    return p.bytes, p.refs


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs=2, default=[45, 165])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json")
    args = ap.parse_args()
    ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for shards in args.shards:
                (short, short_refs), (long_, long_refs) = (peak(Path(tmp), n, shards) for n in args.frames)
                rows.append({"shards": shards, "frames": args.frames, "peak_bytes": [short, long_],
                             "peak_live_refs": [short_refs, long_refs], "ratio": round(long_ / max(short, 1), 3)})
                print(f"S={shards}: store peak {short / 2**20:.2f} MiB / {short_refs} live refs ({args.frames[0]} frames), "
                      f"{long_ / 2**20:.2f} MiB / {long_refs} live refs ({args.frames[1]} frames)")
    finally:
        ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
