"""ray.start_timeout_s: a cluster that lacks the pools' resources is asked for them and waited for.

Ray's `AutoscalingCluster` starts and ends with `ray stop --force`, which would kill every Ray
process on the machine, so it is not used. A local multi-node cluster (ray.cluster_utils.Cluster)
stands in, and a thread plays the autoscaler: it reads the resource request the executor made
(`request_resources` writes it to the GCS key the v1 autoscaler reads) and adds a node with the
requested GPUs. Without the request no node is added and the start fails.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import ray

from stt2v_ray.cli import main
from tests.renders import results

pytestmark = pytest.mark.ray

FAST = ["t2v.steps=2", "enhance.enabled=false", "interpolate.factor=1", "t2v.chunk_frames=8", "t2v.cond_frames=4",
        "encode.preset=ultrafast", "executor=ray", "ray.base.num_gpus=1", "ray.base.num_cpus=0"]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False})
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    patch.undo()


def requested_gpus() -> float:
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(b"autoscaler_resource_request")
    return sum(b.get("GPU", 0) for b in json.loads(raw)) if raw else 0.0


def manifest(tmp_path):
    (tmp_path / "m.yaml").write_text(json.dumps({"settings": {"preset": "tiny"},
                                                 "prompts": [{"id": "v", "prompt": "x", "num_frames": 9, "seed": 1}]}))
    return tmp_path / "m.yaml"


def test_refuses_after_the_timeout_when_nothing_joins(cluster, tmp_path, capsys):
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen.append(requested_gpus())
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    code = main(["render", str(manifest(tmp_path)), "--output", str(tmp_path / "o"), "--quiet"]
                + [a for s in FAST + ["ray.start_timeout_s=2"] for a in ("--set", s)])
    done.set()
    t.join(5)
    assert code == 2
    err = capsys.readouterr().err
    assert "need 1 GPU in total but the cluster has 0 after waiting 2s" in err
    assert max(seen) == 1 and requested_gpus() == 0  # asked for while waiting, withdrawn on giving up


def test_waits_for_the_requested_node(cluster, tmp_path):
    out, codes = tmp_path / "o", []
    # The render in a thread; this (main) thread plays the autoscaler: Ray adds nodes only from the main thread.
    render = threading.Thread(target=lambda: codes.append(main(
        ["render", str(manifest(tmp_path)), "--output", str(out), "--quiet"]
        + [a for s in FAST + ["ray.start_timeout_s=120"] for a in ("--set", s)])), daemon=True)
    render.start()
    added, deadline = [], time.monotonic() + 120
    while render.is_alive() and not added and time.monotonic() < deadline:
        gpus = requested_gpus()
        if gpus and ray.cluster_resources().get("GPU", 0) < gpus:
            added.append(cluster.add_node(num_cpus=0, num_gpus=gpus))
        time.sleep(0.2)
    render.join(300)
    assert added, "the executor never asked for a GPU"
    assert codes == [0] and results(out)["v"]["num_frames"] == 9
