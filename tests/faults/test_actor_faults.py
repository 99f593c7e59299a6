"""Actor and node loss in the middle of a video: the video is rendered again on healthy actors.

Each fault is real: a stage actor's process is SIGKILLed by pid while it works on a video
(its process title says which method it runs), or the node holding the base actor is
removed from a local multi-node cluster (ray.cluster_utils.Cluster). Every case ends with
every video ok, nothing partial under videos/, and frames equal to a clean run's.
"""
from __future__ import annotations

import os

import pytest
import ray

from stt2v_ray.cli import main
from tests.faults.helpers_actor import Fault, busy, has_ffmpeg_child, install, node_of
from tests.renders import results, two_video_manifest

FAST = [
    "t2v.steps=2", "i2v.steps=2", "enhance.steps=4", "enhance.strength=0.5",
    "enhance.chunk_frames=8", "enhance.overlap_frames=3",
    "t2v.chunk_frames=8", "t2v.cond_frames=4", "i2v.chunk_frames=8", "i2v.cond_frames=3", "i2v.anchor_frame=2",
    "encode.preset=ultrafast",
]
GPU_POOLS = ["ray.base.num_gpus=1", "ray.base.num_cpus=0", "ray.enhance.num_cpus=0", "ray.enhance.num_gpus=0.5"]


def sets(*items: str) -> list[str]:
    return [a for s in FAST + list(items) for a in ("--set", s)]


@pytest.fixture(scope="module")
def cluster():
    """A head (4 CPUs, 4 simulated GPUs) and two worker nodes that can each host the pinned base actor."""
    from ray.cluster_utils import Cluster

    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    # Notice a node that stops answering within about a second (the default is tens of seconds).
    config = {"health_check_period_ms": 200, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 4, "include_dashboard": False,
                                                      "_system_config": config})
    workers = [c.add_node(num_cpus=1, resources={"stt2v_base": 1}) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()
    patch.undo()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return two_video_manifest(tmp_path_factory.mktemp("m"), t2v_frames=41, i2v_frames=33)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """One clean render (the in-process reference; Ray renders equal it bitwise), reused by every case."""
    out = tmp_path_factory.mktemp("clean")
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + sets("executor=local")) == 0
    return {k: r["frames_sha256"] for k, r in results(out).items()}


def render_with(fault: Fault, monkeypatch, manifest, out, *settings: str) -> tuple[dict, object]:
    install(monkeypatch, fault)
    try:
        code = main(["render", str(manifest), "--output", str(out), "--quiet"] + sets("executor=ray", *settings))
    finally:
        fault.stop()
    rows = results(out)
    assert code == 0, {k: r["error"] for k, r in rows.items()}
    return rows, fault.executor


def check(rows, executor, reference, out, fault: Fault) -> None:
    assert fault.struck, f"the fault never found {fault.target} busy"
    # No video lost, frames as a clean run's, and the struck video was really rendered again.
    assert {k: r["status"] for k, r in rows.items()} == {"t2v": "ok", "i2v": "ok"}
    assert {k: r["frames_sha256"] for k, r in rows.items()} == reference, (rows, executor.events)
    assert max(r["attempts"] for r in rows.values()) >= 2, rows
    retries = [e for e in executor.events if e["event"] == "retry"]
    assert retries and all(r["attempts"] <= 3 for r in rows.values())
    # Nothing partial under videos/: only the finished MP4s and their contact sheets.
    assert sorted(os.listdir(out / "videos")) == ["i2v.mp4", "i2v.png", "t2v.mp4", "t2v.png"]
    # The killed actor restarted: the pool kept it (no shrink).
    report = executor.pool_report()
    assert all(p["healthy"] == p["size"] for p in report["pools"].values()), report
    assert report["retries"] == len(retries)


def test_sigkill_base_actor_mid_video(cluster, manifest, reference, tmp_path, monkeypatch):
    fault = Fault("base-0", lambda pid: busy(pid, "base_chunks"))
    rows, ex = render_with(fault, monkeypatch, manifest, tmp_path / "out", *GPU_POOLS)
    check(rows, ex, reference, tmp_path / "out", fault)
    assert any("base-0" in e["lost"] for e in ex.events if e["event"] == "retry")


def test_sigkill_enhancer_shard_of_three_mid_video(cluster, manifest, reference, tmp_path, monkeypatch):
    # "enhance" matches the shard's work (enhance_step, enhanced_segment), never the pid() call
    # the executor makes at start-up: a kill there is absorbed by the restart before any video.
    fault = Fault("enhance-g0s1", lambda pid: busy(pid, "enhance"))
    rows, ex = render_with(fault, monkeypatch, manifest, tmp_path / "out", *GPU_POOLS,
                           "ray.enhance_shards=3", "ray.enhance.actors=3")
    check(rows, ex, reference, tmp_path / "out", fault)
    assert any("enhance-g0s1" in e["lost"] for e in ex.events if e["event"] == "retry")


def test_sigkill_interpolation_and_writer_mid_video(cluster, manifest, reference, tmp_path, monkeypatch):
    """Two kills in one batch: the interpolation actor while it interpolates, then the writer
    while it has a video open (its ffmpeg runs)."""
    fault = Fault("interpolate-0", lambda pid: busy(pid, "push_frames"))
    writer = Fault("write-0", has_ffmpeg_child)
    real_attach = fault.attach

    def attach(executor):
        real_attach(executor)
        writer.attach(executor)

    fault.attach = attach
    try:
        rows, ex = render_with(fault, monkeypatch, manifest, tmp_path / "out", *GPU_POOLS)
    finally:
        writer.stop()
    check(rows, ex, reference, tmp_path / "out", fault)
    assert writer.struck, "the writer was never seen with a video open"
    lost = {name for e in ex.events if e["event"] == "retry" for name in e["lost"]}
    assert {"interpolate-0", "write-0"} <= lost, ex.events


def test_node_with_the_base_actor_removed_mid_video(cluster, manifest, reference, tmp_path, monkeypatch):
    """The base actor needs `stt2v_base`, which only the worker nodes have; its node goes away
    mid-video, Ray restarts the actor on the other worker node, the video is rendered again."""
    c, workers = cluster
    live = [n for n in workers if n in c.worker_nodes]
    removed = {}

    def remove(pid):
        node = node_of(pid, live)
        removed["node"] = node
        c.remove_node(node, allow_graceful=False)  # its raylet and workers are killed

    fault = Fault("base-0", lambda pid: busy(pid, "base_chunks"), strike=remove)
    rows, ex = render_with(fault, monkeypatch, manifest, tmp_path / "out", *GPU_POOLS,
                           "ray.base.resources={stt2v_base: 1}", "ray.base.num_gpus=0")
    check(rows, ex, reference, tmp_path / "out", fault)
    assert removed["node"] not in c.worker_nodes
    assert any("base-0" in e["lost"] for e in ex.events if e["event"] == "retry")
