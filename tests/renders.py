"""Small render fixtures shared by the Ray executor tests and the fault matrix."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pyarrow.parquet as pq
import yaml


def two_video_manifest(folder: Path, t2v_frames: int, i2v_frames: int) -> Path:
    """A tiny-preset manifest of one text-to-video and one image-to-video video (seeds 4 and 9)."""
    from PIL import Image

    Image.new("RGB", (60, 40), (30, 160, 90)).save(folder / "img.png")
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": "t2v", "prompt": "a red circle moving right", "num_frames": t2v_frames, "seed": 4},
        {"id": "i2v", "prompt": "a field", "image": "img.png", "num_frames": i2v_frames, "seed": 9},
    ]}
    (folder / "m.yaml").write_text(yaml.safe_dump(doc))
    return folder / "m.yaml"


def results(out) -> dict:
    """results.parquet of a render, by video id."""
    return {r["id"]: r for r in pq.read_table(Path(out) / "results.parquet").to_pylist()}


@contextlib.contextmanager
def local_ray(num_cpus: int, num_gpus: int):
    """A fresh single-node Ray (simulated GPUs) that never joins another cluster on the machine."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
