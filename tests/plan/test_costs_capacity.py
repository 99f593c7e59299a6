"""The cost model reproduces the published A100 figures it is derived from; profiles replace them; the planner's
layouts, bound and deadline search are consistent; `stt2v-ray plan` prints the layout and flags."""
from __future__ import annotations

import json

import pytest
import yaml

from stt2v_ray.cli import main
from stt2v_ray.cli_plan import parse_duration
from stt2v_ray.plan.capacity import Layout, best_layout, lower_bound, predict, smallest_gpus
from stt2v_ray.plan.costs import CostModel, VideoShape, from_profile, video_cost

PUBLISHED = VideoShape(enhance_chunk_frames=112, enhance_overlap=32)  # the README's runs above 80 frames


@pytest.mark.parametrize("frames, preview", [(24, 40), (80, 110), (240, 340), (1200, 1710)])
def test_defaults_reproduce_the_published_a100_preview(frames, preview):
    v = video_cost(frames, VideoShape(enhance=False), CostModel())
    assert v.base_s == pytest.approx(preview, rel=0.10)


def test_defaults_reproduce_the_published_a100_final():
    # At 1200 frames C=112, O=32 tile with little padding; short videos pad to whole chunks (more work than published).
    assert video_cost(1200, PUBLISHED, CostModel()).gpu_s == pytest.approx(10225, rel=0.05)


def test_profile_replaces_what_it_measured():
    profile = {"preset": "x", "family": "t2v", "device": {"name": "GPU-9"}, "build": {"seconds": 12.5},
               "settings": {"t2v": {"steps": 10, "chunk_frames": 8}, "enhance": {"chunk_frames": 24},
                            "interpolate": {"factor": 2}},
               "units": [{"stage": "base", "unit": "chunk 0", "seconds": 9.0},
                         {"stage": "base", "unit": "chunk 1", "seconds": 1.0},
                         {"stage": "base", "unit": "chunk 2", "seconds": 3.0},
                         {"stage": "enhance", "unit": "chunk 0 step 0", "seconds": 4.8},
                         {"stage": "enhance", "unit": "decode frames 0-9", "seconds": 2.0},
                         {"stage": "encode", "unit": "frames 0-19", "seconds": 0.4}]}
    c = from_profile(json.loads(json.dumps(profile)))
    assert c.base_chunk_step_s == pytest.approx(2.0 / 10 * 16 / 8)  # chunk 0 left out; scaled to 16 frames
    assert c.enhance_frame_step_s == pytest.approx(0.2)
    assert c.decode_frame_s == pytest.approx(0.2) and c.encode_frame_s == pytest.approx(0.02) and c.load_s == 12.5
    assert c.interpolate_frame_s == CostModel().interpolate_frame_s  # not measured: the default stays
    assert "GPU-9" in c.source and "interpolate_frame_s" in c.notes["defaults"]


def _videos(n=30, seed=3):
    import random

    rng = random.Random(seed)
    return [video_cost(rng.randint(120, 1200), VideoShape(), CostModel()) for _ in range(n)]


def test_planner_is_consistent():
    videos, costs = _videos(), CostModel()
    spans = [best_layout(videos, g, costs).makespan_s for g in (4, 8, 16)]
    assert spans[0] > spans[1] > spans[2]
    for g in (4, 8, 16):
        p = best_layout(videos, g, costs)
        assert p.layout.gpus <= g and p.makespan_s >= lower_bound(videos, g) and 0 < p.busy <= 1
    fit = smallest_gpus(videos, spans[1], costs)
    assert fit.makespan_s <= spans[1] and fit.layout.gpus <= 8
    assert best_layout(videos, fit.layout.gpus - 1, costs).makespan_s > spans[1]
    one = predict(videos[:1], Layout(1, 1, 1), costs)
    assert one.makespan_s >= videos[0].gpu_s - videos[0].base_s  # the enhancer's work alone


def test_parse_duration():
    assert parse_duration("6h") == 21600 and parse_duration("90m") == 5400 and parse_duration("30") == 30
    with pytest.raises(ValueError, match="--deadline '6 hours'"):
        parse_duration("6 hours")


def test_plan_cli(tmp_path, capsys):
    doc = {"settings": {"preset": "sim"}, "prompts": [{"id": f"v{i}", "prompt": "p", "num_frames": 120 * (i + 1)}
                                                      for i in range(6)]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    assert main(["plan", str(tmp_path / "m.yaml"), "--gpus", "8", "--deadline", "3h"]) == 0
    text = capsys.readouterr().out
    assert "predicted makespan" in text and "--set ray.base.actors=" in text and "KubeRay" in text
    assert "smallest cluster meeting the deadline of 3.00 h" in text
    assert main(["plan", str(tmp_path / "m.yaml"), "--gpus", "8", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    lay = plan["layout"]
    assert plan["gpus"] <= 8 and plan["kuberay_replicas"]["enhance"] == lay["enhancer_gangs"] * lay["shards"]
    assert main(["plan", str(tmp_path / "m.yaml"), "--gpus", "8", "--deadline", "soon"]) == 2
