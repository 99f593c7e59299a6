"""The Ray scheduler on real renders: admission order, shards that start behind the base stage,
enhance_shards=auto, and pools that fit a 2-CPU head by default."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from stt2v_ray.cli import main
from stt2v_ray.config import RunSettings
from stt2v_ray.runtime.pools import needed_resources
from tests.renders import local_ray, results

pytestmark = pytest.mark.ray

FAST = [
    "t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "enhance.chunk_frames=8", "enhance.overlap_frames=3",
    "t2v.chunk_frames=8", "t2v.cond_frames=4", "encode.preset=ultrafast", "executor=ray",
]
GPU = ["ray.base.num_gpus=1", "ray.base.num_cpus=0", "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0"]


@pytest.fixture(scope="module")
def cluster():
    with local_ray(4, 4):
        yield


def render(tmp_path, frames: list[int], *settings: str, name="m") -> tuple[dict, list[dict]]:
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": f"v{i}", "prompt": f"video {i}", "num_frames": n, "seed": i} for i, n in enumerate(frames)]}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / name
    args = ["render", str(tmp_path / f"{name}.yaml"), "--output", str(out), "--quiet"]
    code = main(args + [a for s in FAST + list(settings) for a in ("--set", s)])
    rows = results(out)
    assert code == 0, {k: r["error"] for k, r in rows.items()}
    return rows, pq.read_table(out / "timeline.parquet").to_pylist()


def test_default_pools_fit_a_two_cpu_head():
    need = needed_resources(RunSettings())
    assert need.get("CPU", 0) <= 2, need


def test_longest_first_starts_videos_by_length_within_the_window(cluster, tmp_path):
    # One video at a time, window 2: of the two requests read ahead, the longer starts first.
    _, timeline = render(tmp_path, [5, 17, 9, 13], "enhance.enabled=false", "interpolate.factor=1",
                         "ray.admission=longest-first", "ray.admission_window=2", "ray.max_videos_in_flight=1")
    first = {}
    for r in timeline:
        if r["stage"] == "base":
            first[r["video_id"]] = min(first.get(r["video_id"], r["start"]), r["start"])
    assert sorted(first, key=first.get) == ["v1", "v2", "v3", "v0"]


def test_shards_start_before_the_base_stage_ends(cluster, tmp_path):
    """S = 2: shard 0 denoises its segment while the base stage still makes the frames of segment 1."""
    rows, timeline = render(tmp_path, [85], *GPU, "ray.enhance_shards=2", "ray.enhance.actors=2")
    assert rows["v0"]["num_frames"] == 85
    base_end = max(r["end"] for r in timeline if r["stage"] == "base")
    shard0 = [r["start"] for r in timeline if r["worker"] == "enhance-g0s0" and r["unit"].endswith("step 0")]
    assert shard0 and min(shard0) < base_end


# Nightly (make test-all): ~75 s; the auto policy itself is unit-tested in test_admission.py.
@pytest.mark.slow
def test_auto_shards_equal_fixed_shards(cluster, tmp_path):
    """auto: a lone video takes every free enhancer actor (segments of >= auto_min_chunks chunks);
    its frames equal a one-shard render bitwise."""
    ref, _ = render(tmp_path, [45], *GPU, name="one")
    rows, timeline = render(tmp_path, [45], *GPU, "ray.enhance_shards=auto", "ray.enhance.actors=3",
                            "ray.auto_min_chunks=2", name="auto")
    assert rows["v0"]["frames_sha256"] == ref["v0"]["frames_sha256"]
    # 45 frames -> 23 base frames -> 4 enhancer chunks -> 2 shards of 2 chunks (the third actor stays free).
    workers = {r["worker"] for r in timeline if r["stage"] == "enhance" and "step" in r["unit"]}
    assert len(workers) == 2, workers


def test_attempt_forgets_finished_refs_also_when_tracked_twice(cluster):
    """get() tracks refs that were tracked already; ray.wait refuses duplicates, and a prune that
    failed that way used to keep every finished piece of a sharded video pinned until it ended."""
    import ray

    from stt2v_ray.runtime.faults import Attempt

    @ray.remote(num_cpus=0)
    def slow():
        import time

        time.sleep(30)

    attempt = Attempt(1, timeout=60)
    running = attempt.track(slow.remote())  # still running: must stay tracked, to cancel it
    for _ in range(100):
        ref = attempt.track(ray.put(b"x" * 200_000))  # a piece in the object store
        attempt.get(ref)  # tracked a second time
    assert running in attempt.refs and len(attempt.refs) < 16, len(attempt.refs)
    attempt.cancel()
