"""Simulated renders on the real Ray executor (simulated GPUs): exact frame counts, flagged as simulated
everywhere, stage durations on the cost model, and the planner's makespan within 10% of the run's."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from stt2v_ray.cli import main
from stt2v_ray.config import RunSettings, deep_merge
from stt2v_ray.pipeline.simulate import video_shape
from stt2v_ray.plan.capacity import Layout, predict
from stt2v_ray.plan.costs import from_profile, video_cost
from stt2v_ray.presets import get_preset
from tests.renders import local_ray, results

pytestmark = pytest.mark.ray

FRAMES = {"a": 150, "b": 97, "c": 120}
SCALE = 50.0
SETS = ["t2v.steps=20", "enhance.steps=10", "ray.base.actors=2", "ray.base.num_gpus=1", "ray.base.num_cpus=0",
        "ray.enhance.actors=4", "ray.enhance_shards=2", "ray.enhance.num_gpus=1", "ray.enhance.num_cpus=0",
        "ray.interpolate.num_cpus=0.5", "ray.write.num_cpus=0.5", f"simulate.time_scale={SCALE:g}"]


@pytest.fixture(scope="module")
def cluster():
    with local_ray(2, 6):
        yield


@pytest.fixture(scope="module")
def run(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    # A measured profile of no model loading: the run's timeline starts after the actors load.
    (folder / "profile.json").write_text(json.dumps({"build": {"seconds": 0.0}, "units": [], "preset": "sim"}))
    doc = {"settings": {"preset": "sim"},
           "prompts": [{"id": k, "prompt": f"video {k}", "num_frames": n, "seed": i} for i, (k, n) in enumerate(FRAMES.items())]}
    (folder / "m.yaml").write_text(yaml.safe_dump(doc))
    out = folder / "out"
    sets = [x for s in SETS + [f"simulate.profile={folder / 'profile.json'}"] for x in ("--set", s)]
    code = main(["render", str(folder / "m.yaml"), "--output", str(out), "--quiet"] + sets)
    assert code == 0, {k: r["error"] for k, r in results(out).items()}
    settings = RunSettings.model_validate(deep_merge(get_preset("sim").defaults, {"preset": "sim", "t2v": {"steps": 20},
                                                                                   "enhance": {"steps": 10}}))
    return out, settings, from_profile(folder / "profile.json")


def test_simulated_run_is_flagged_and_exact(run):
    out, _, costs = run
    rows = results(out)
    assert {k: r["num_frames"] for k, r in rows.items()} == FRAMES
    assert all(r["status"] == "ok" and r["real_output"] is False for r in rows.values())
    doc = json.loads((out / "run.json").read_text())
    assert doc["simulated"] is True and doc["simulation"]["time_scale"] == SCALE
    assert doc["simulation"]["cost_model"]["load_s"] == 0.0 == costs.load_s


def test_timeline_follows_the_cost_model(run):
    out, settings, costs = run
    rows = pq.read_table(out / "timeline.parquet").to_pylist()
    for vid, n in FRAMES.items():
        pred = video_cost(n, video_shape(settings), costs)
        mine = [r for r in rows if r["video_id"] == vid]
        got = {s: SCALE * sum(r["seconds"] for r in mine if r["stage"] == s) for s in ("base", "enhance")}
        assert got["enhance"] > got["base"]  # the cost model's order
        for stage, want in (("base", pred.base_s - costs.video_fixed_s), ("enhance", pred.enhance_s)):
            assert want / 2 < got[stage] < want * 2, (vid, stage, got[stage], want)


def test_planner_predicts_the_simulated_makespan(run):
    out, settings, costs = run
    rows = pq.read_table(out / "timeline.parquet").to_pylist()
    measured = SCALE * (max(r["end"] for r in rows) - min(r["start"] for r in rows))
    videos = [video_cost(n, video_shape(settings), costs) for n in FRAMES.values()]
    predicted = predict(videos, Layout(base=2, gangs=2, shards=2), costs).makespan_s
    assert abs(measured - predicted) <= 0.10 * predicted, (measured, predicted)
