"""The Ray executor computes bitwise the same frames as the in-process reference.

Simulated GPUs: `ray.init(num_gpus=4)` on this CPU machine schedules GPU actors; every
GPU actor sets num_cpus explicitly (a GPU-only actor would also take a whole CPU). Four
logical CPUs on two cores: Ray's CPUs are a scheduling budget, the default pools need four.
"""
from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from stt2v_ray.cli import main
from tests.renders import local_ray, results, two_video_manifest

pytestmark = pytest.mark.ray  # starts a Ray cluster: `make test-fast` leaves it out

FAST = [
    "t2v.steps=2", "i2v.steps=2", "enhance.steps=4", "enhance.strength=0.5",
    "enhance.chunk_frames=8", "enhance.overlap_frames=3",
    "t2v.chunk_frames=8", "t2v.cond_frames=4", "i2v.chunk_frames=8", "i2v.cond_frames=3", "i2v.anchor_frame=2",
    "encode.preset=ultrafast",
]


def sets(*items: str) -> list[str]:
    out = []
    for s in FAST + list(items):
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def cluster():
    with local_ray(4, 4):
        yield


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return two_video_manifest(tmp_path_factory.mktemp("m"), t2v_frames=29, i2v_frames=23)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + sets("executor=local")) == 0
    return {k: r["frames_sha256"] for k, r in results(out).items()}


CONFIGS = {
    # one shard, every pool of one actor, GPU actors on simulated GPUs
    "S1-pools1": ["ray.enhance_shards=1", "ray.base.num_gpus=1", "ray.base.num_cpus=0",
                  "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0"],
    # two shards, pools of two
    "S2-pools2": ["ray.enhance_shards=2", "ray.enhance.actors=2", "ray.base.actors=2",
                  "ray.interpolate.actors=2", "ray.write.actors=2",
                  "ray.interpolate.num_cpus=0.5", "ray.write.num_cpus=0.5",
                  "ray.base.num_gpus=1", "ray.base.num_cpus=0", "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0"],
    # three shards, two gangs (six enhancer actors on fractional GPUs), every other pool of two:
    # both videos at once, each on its own base actor, gang and CPU actors
    "S3-gangs2-pools2": ["ray.enhance_shards=3", "ray.enhance.actors=6", "ray.enhance.num_gpus=0.5",
                         "ray.enhance.num_cpus=0", "ray.base.actors=2", "ray.base.num_gpus=0.5", "ray.base.num_cpus=0",
                         "ray.interpolate.actors=2", "ray.write.actors=2",
                         "ray.interpolate.num_cpus=0.5", "ray.write.num_cpus=0.5"],
}
# In `make test` (CI time): S3-gangs2-pools2, the richest layout. Nightly (`make test-all`) also
# S1-pools1, which every actor fault case of tests/faults renders and compares with the local
# reference too, and S2-pools2.
NIGHTLY = ("S1-pools1", "S2-pools2")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in NIGHTLY else n for n in CONFIGS])
def test_ray_equals_local_bitwise(cluster, manifest, reference, tmp_path, name):
    out = tmp_path / "out"
    code = main(["render", str(manifest), "--output", str(out), "--quiet"] + sets("executor=ray", *CONFIGS[name]))
    rows = results(out)
    assert code == 0, {k: r["error"] for k, r in rows.items()}
    assert {k: r["frames_sha256"] for k, r in rows.items()} == reference
    assert [r["num_frames"] for r in rows.values()] == [29, 23]

    # Nothing left behind: every actor killed, every placement group removed, resources back.
    from ray.util import placement_group_table

    assert all(pg["state"] == "REMOVED" for pg in placement_group_table().values())
    deadline = time.time() + 60  # the raylet reports freed resources asynchronously

    def back():
        avail = ray.available_resources()
        return avail.get("GPU") == 4 and avail.get("CPU") == 4

    while time.time() < deadline and not back():
        time.sleep(0.2)
    avail = ray.available_resources()
    assert avail.get("GPU") == 4 and avail.get("CPU") == 4


def test_streaming_overlaps_in_timeline(cluster, tmp_path):
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": f"v{i}", "prompt": f"video {i}", "num_frames": 45, "seed": i} for i in range(3)
    ]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "m.yaml"), "--output", str(out), "--quiet"]
                + sets("executor=ray", "ray.max_videos_in_flight=2", "ray.max_chunks_in_flight=2")) == 0
    rows = pq.read_table(out / "timeline.parquet").to_pylist()

    def spans(video, stage):
        return [(r["start"], r["end"]) for r in rows if r["video_id"] == video and r["stage"] == stage
                and r["unit"] != "prepare"]

    # Base generation of a later video runs while an earlier one is being enhanced.
    overlapping = [
        (a, b) for a in ("v0", "v1") for b in ("v1", "v2") if a < b
        for (bs, be) in spans(b, "base") for (es, ee) in spans(a, "enhance") if bs < ee and es < be
    ]
    assert overlapping, "no base chunk of a later video overlapped the enhancement of an earlier one"
    # Interpolation of a video starts before its enhancement has ended.
    for v in ("v0", "v1", "v2"):
        assert min(s for s, _ in spans(v, "interpolate")) < max(e for _, e in spans(v, "enhance"))
    assert {r["worker"] for r in rows if r["stage"] == "base"} == {"base-0"}


def test_failed_video_under_ray_is_recorded(cluster, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": "bad", "prompt": "x", "image": "bad.png", "num_frames": 5},
        {"id": "good", "prompt": "y", "num_frames": 5},
    ]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "m.yaml"), "--output", str(out), "--quiet"] + sets("executor=ray")) == 1
    rows = results(out)
    assert rows["bad"]["status"] == "failed" and rows["bad"]["error"]
    assert rows["good"]["status"] == "ok"
    assert not (out / "videos" / "bad.mp4").exists()


def test_impossible_pools_fail_clearly(cluster, tmp_path, manifest, capsys):
    out = tmp_path / "o"
    code = main(["render", str(manifest), "--output", str(out), "--quiet"]
                + sets("executor=ray", "ray.base.num_gpus=8", "ray.base.num_cpus=0"))
    assert code == 2
    assert "need 8 GPU in total but the cluster has 4" in capsys.readouterr().err
    assert not out.exists()  # nothing rendered, nothing written
