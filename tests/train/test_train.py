"""`stt2v-ray train` on the smoke configuration: the loss falls, resuming equals not stopping,
the stages hand weights on, the report is written, bad calls are refused."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from stt2v_ray.cli import main
from stt2v_ray.models import toy
from stt2v_ray.models.sharded import load_sharded
from stt2v_ray.train.config import TrainSettings, named_config
from stt2v_ray.train.data import make_batch
from stt2v_ray.train.loop import train_stage
from stt2v_ray.train.stages import setup_stage

HELD_OUT = 10_000  # a step index training never reaches: its clips and noise are a fixed held-out batch


def held_out_loss(stage: str, weights) -> float:
    setup = setup_stage(stage, 0, weights)
    if stage == "base":  # setup_stage("base") starts from scratch: load what training exported
        toy.load_into(setup.modules, weights, "t2v")
    elif stage == "enhancer":
        toy.load_into(setup.modules, weights, "enhancer")
    with torch.no_grad():
        return float(setup.loss(make_batch(stage, 0, HELD_OUT, 4), HELD_OUT))


def smoke(**stage_overrides) -> TrainSettings:
    raw = named_config("smoke")
    for stage, values in stage_overrides.items():
        raw[stage].update(values)
    return TrainSettings(**raw)


def test_base_stage_loss_falls_on_held_out_clips(tmp_path):
    settings = smoke(base={"steps": 8, "ema": 0.0})
    setup = setup_stage("base", 0, tmp_path / "weights")
    with torch.no_grad():
        before = float(setup.loss(make_batch("base", 0, HELD_OUT, 4), HELD_OUT))
    train_stage("base", settings, tmp_path, log=lambda line: None)
    after = held_out_loss("base", tmp_path / "weights")
    assert after < 0.9 * before, (before, after)


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    settings = smoke()
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_stage("base", settings, straight, log=lambda line: None)
    first = train_stage("base", settings, resumed, log=lambda line: None, max_minutes=0)  # stops after one step
    assert first == {"stage": "base", "done": False, "step": 1}
    assert train_stage("base", settings, resumed, log=lambda line: None)["done"]
    a, b = load_sharded(straight / "weights", "t2v"), load_sharded(resumed / "weights", "t2v")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(l)["loss"] for l in (d / "stages/base/loss.jsonl").read_text().splitlines()] for d in (straight, resumed)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_all_stages_through_the_cli_hand_weights_on_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--config", "smoke"]) == 0
    # each stage trained only its own part: the CAM stage froze the base UNet, the APM stage the CAM
    after_base = out / "stages"
    t2v = load_sharded(out / "weights", "t2v")
    assert any(k.startswith("model.cam.skip_injectors.") for k in t2v) and any(".processor.alpha" in k for k in t2v)
    alphas = [v for k, v in t2v.items() if k.endswith(".processor.alpha")]
    assert alphas and all(float(a) != 0.0 for a in alphas)  # the APM stage moved its gates off zero
    assert (out / "weights" / "enhancer.index.json").is_file()
    report = json.loads((out / "report" / "report.json").read_text())
    assert sorted(report["stages"]) == ["apm", "base", "cam", "enhancer"]
    assert all(report["stages"][s]["steps"] == 4 for s in report["stages"])
    for stage in ("base", "cam", "apm", "enhancer"):
        assert Image.open(out / "report" / f"loss_{stage}.png").size == (640, 360)
    assert after_base.is_dir()
    # a second call finds every stage done and only re-exports
    assert main(["train", "--out", str(out), "--config", "smoke"]) == 0


def test_cam_stage_needs_the_base_weights(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--config", "smoke", "--stage", "cam"]) == 2
    assert "stage cam starts from the previous stage's weights: run --stage base first" in capsys.readouterr().err


def test_a_run_folder_refuses_other_settings(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--out", out, "--config", "smoke", "--stage", "base"]) == 0
    assert main(["train", "--out", out, "--config", "smoke", "--stage", "base", "--set", "base.steps=5"]) == 2
    assert "trained with other settings (base)" in capsys.readouterr().err


def test_unknown_training_setting_is_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--config", "smoke", "--set", "base.stepz=5"]) == 2
    assert "stepz" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["base", "cam", "apm", "enhancer"])
def test_batches_are_keyed_by_step(stage):
    a, b = make_batch(stage, 0, 3, 2), make_batch(stage, 0, 3, 2)
    assert torch.equal(a.frames, b.frames) and a.prompts == b.prompts
    assert not torch.equal(a.frames, make_batch(stage, 0, 4, 2).frames)
    size = 64 if stage == "enhancer" else 32
    assert tuple(a.frames.shape) == (2, 16, 3, size, size)
    assert (a.anchors is not None) == (stage == "apm")
