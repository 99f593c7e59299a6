"""`stt2v-ray train` on the smoke configuration: the loss falls, resuming equals not stopping,
the stages hand weights on, the report is written, bad calls are refused."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from stt2v_ray.cli import main
from stt2v_ray.models.blocks.sharded import load_sharded, save_sharded
from stt2v_ray.models.toy import toy
from stt2v_ray.train.config import StageSettings, TrainSettings, named_config
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


def flat_state(modules: dict) -> dict:
    """{prefix: module} -> one state dict keyed "prefix.key", as exports are."""
    return {f"{p}.{k}": v for p, m in modules.items() for k, v in m.state_dict().items()}


def smoke(**stage_overrides) -> TrainSettings:
    raw = named_config("smoke")
    for stage, values in stage_overrides.items():
        raw[stage].update(values)
    return TrainSettings(**raw)


@pytest.mark.train
def test_base_stage_loss_falls_on_held_out_clips(tmp_path):
    settings = smoke(base={"steps": 8, "ema": 0.0})
    setup = setup_stage("base", 0, tmp_path / "weights")
    with torch.no_grad():
        before = float(setup.loss(make_batch("base", 0, HELD_OUT, 4), HELD_OUT))
    train_stage("base", settings, tmp_path, log=lambda line: None)
    after = held_out_loss("base", tmp_path / "weights")
    assert after < 0.9 * before, (before, after)


@pytest.mark.train
def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    settings = smoke()
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_stage("base", settings, straight, log=lambda line: None)
    first = train_stage("base", settings, resumed, log=lambda line: None, max_minutes=0)  # stops after one step
    assert first == {"stage": "base", "done": False, "step": 1}
    assert train_stage("base", settings, resumed, log=lambda line: None)["done"]
    a, b = load_sharded(straight / "weights", "t2v"), load_sharded(resumed / "weights", "t2v")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [
        [json.loads(row)["loss"] for row in (d / "stages/base/loss.jsonl").read_text().splitlines()] for d in (straight, resumed)
    ]
    assert len(losses[0]) == 4 and losses[0] == losses[1]


@pytest.mark.train
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


@pytest.mark.train
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


def test_warm_start_loads_an_export_without_the_added_keys(tmp_path):
    """base.init: an export made before the text->time projection existed loads; the projection
    starts at zero; any other missing key is still an error."""
    tokenizer, text_encoder, model = toy.t2v_modules(seed=3)
    modules = {"text_encoder": text_encoder, "model": model}
    state = flat_state(modules)
    older = {k: v for k, v in state.items() if not k.endswith(toy.ADDED_KEYS)}
    assert len(older) < len(state)
    save_sharded(older, tmp_path / "old", "t2v")
    setup = setup_stage("base", 0, tmp_path / "weights", StageSettings(steps=1, init=str(tmp_path / "old")))
    loaded = flat_state(setup.modules)
    assert all(torch.equal(loaded[k], older[k].half().float()) for k in older)
    assert not loaded["model.unet.time_embedding.cond_proj.weight"].any()
    with pytest.raises(ValueError, match=r"model: missing keys \['cam.mid_injector.key_pos', 'cam.mid_injector.query_pos',"):
        toy.load_into(setup.modules, tmp_path / "old", "t2v")  # strict without allow_added
    save_sharded({k: v for k, v in older.items() if not k.endswith("conv_out.bias")}, tmp_path / "broken", "t2v")
    with pytest.raises(ValueError, match="conv_out.bias"):
        setup_stage("base", 0, tmp_path / "weights", StageSettings(steps=1, init=str(tmp_path / "broken")))


def test_warm_start_is_refused_for_apm(tmp_path):
    with pytest.raises(ValueError, match="apm.init: only base, cam and enhancer take a warm start"):
        setup_stage("apm", 0, tmp_path, StageSettings(steps=1, init="shipped"))
    raw = named_config("smoke")
    raw["apm"]["init"] = "shipped"
    with pytest.raises(ValueError, match="apm.init"):  # when the settings are read, before any stage runs
        TrainSettings(**raw)


def test_cam_warm_start_takes_only_the_exports_cam(tmp_path):
    """cam.init: the CAM comes from the init export, everything else from this run's base export."""
    def export(seed, folder):
        _, text_encoder, model = toy.t2v_modules(seed=seed)
        save_sharded(flat_state({"text_encoder": text_encoder, "model": model}), folder, "t2v")
        return load_sharded(folder, "t2v")

    run, other = export(1, tmp_path / "run"), export(2, tmp_path / "other")
    setup = setup_stage("cam", 0, tmp_path / "run", StageSettings(steps=1, init=str(tmp_path / "other")))
    loaded = flat_state(setup.modules)
    cam = [k for k in loaded if k.startswith("model.cam.")]
    assert cam and all(torch.equal(loaded[k], other[k].float()) for k in cam)
    assert not torch.equal(other[cam[0]], run[cam[0]])  # the two exports differ: the test can tell them apart
    assert all(torch.equal(loaded[k], run[k].float()) for k in loaded if not k.startswith("model.cam."))
    assert setup.trainable and set(setup.trainable) <= set(cam)  # the CAM alone trains
    # without init: a fresh CAM, whose encoder is a copy of this run's base
    fresh = setup_stage("cam", 0, tmp_path / "run").modules["model"]
    assert torch.equal(fresh.cam.conv_in.weight, fresh.unet.conv_in.weight)


def test_cam_windows_start_inside_longer_clips():
    from stt2v_ray.data.clips import make_clip
    from stt2v_ray.plan import seeds

    batch = make_batch("cam", 0, 5, 3, window=48)
    g = seeds.generator(0, "train-gap", "cam", 5)
    starts = [int(torch.randint(0, 49, (1,), generator=g)) for _ in range(3)]
    assert any(starts)
    for i, start in enumerate(starts):
        clip = make_clip(0, 5 * 3 + i, num_frames=start + 16)
        assert torch.equal(batch.frames[i], clip.frames[start:]) and batch.prompts[i] == clip.prompt
    assert torch.equal(make_batch("cam", 0, 5, 3).frames[0], make_clip(0, 15).frames)  # window 0: from frame 0


@pytest.mark.train
def test_a_warm_start_is_recorded_in_the_report(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--out", str(first), "--config", "smoke", "--stage", "base"]) == 0
    (first / "weights" / "report").mkdir()  # an export shipped with its report, as the package's are
    (first / "weights" / "report" / "report.json").write_text((first / "report" / "report.json").read_text())
    init = str(first / "weights")
    assert main(["train", "--out", str(second), "--config", "smoke", "--stage", "base", "--set", f"base.init={init}"]) == 0
    entry = json.loads((second / "report" / "report.json").read_text())["stages"]["base"]["init"]
    assert entry["from"] == init and entry["report"]["stages"]["base"]["steps"] == 4
    from stt2v_ray.train.report import weights_digest
    assert entry["weights_sha256"] == weights_digest(first / "weights", "t2v") and len(entry["weights_sha256"]) == 64
    assert f"base was warm-started from `{init}`" in (second / "report" / "README.md").read_text()
    # the init folder changes afterwards (as `shipped` does when new weights ship): the record
    # is what the stage started from, not what the folder holds when the report is rewritten
    index = first / "weights" / "t2v.index.json"
    index.write_text(json.dumps(json.loads(index.read_text())))
    assert weights_digest(first / "weights", "t2v") != entry["weights_sha256"]
    assert main(["train", "--out", str(second), "--config", "smoke", "--stage", "base", "--set", f"base.init={init}"]) == 0
    again = json.loads((second / "report" / "report.json").read_text())["stages"]["base"]["init"]
    assert again == entry


def test_a_warm_start_keeps_only_its_own_stages_lineage():
    """The embedded earlier report holds that stage's settings and entry alone (with its own warm
    start inside, so the chain goes back), not every stage's history: the size stays linear."""
    from stt2v_ray.train.report import stage_lineage

    grandparent = {"settings": {"seed": 0, "bf16": True, "base": {"steps": 9}, "cam": {"steps": 7}},
                   "stages": {"base": {"steps": 9}, "cam": {"steps": 7, "init": None}}}
    parent = {"settings": {"seed": 1, "bf16": True, "base": {"steps": 5}, "cam": {"steps": 3}, "apm": {"steps": 2}},
              "stages": {"base": {"steps": 5}, "apm": {"steps": 2},
                         "cam": {"steps": 3, "init": {"from": "x", "report": stage_lineage(grandparent, "cam")}}}}
    kept = stage_lineage(parent, "cam")
    assert kept["settings"] == {"seed": 1, "bf16": True, "cam": {"steps": 3}}
    assert list(kept["stages"]) == ["cam"] and kept["stages"]["cam"]["steps"] == 3
    assert kept["stages"]["cam"]["init"]["report"] == {"settings": {"seed": 0, "bf16": True, "cam": {"steps": 7}},
                                                        "stages": {"cam": {"steps": 7, "init": None}}}
    assert stage_lineage(parent, "enhancer") == {"settings": {"seed": 1, "bf16": True}, "stages": {}}
    # a parent written before the pruning embeds its whole parent: pruned on the way in, at every level
    legacy = {**parent, "stages": {**parent["stages"], "cam": {"steps": 3, "init": {"from": "x", "report": grandparent}}}}
    assert stage_lineage(legacy, "cam") == kept


def test_coverage_is_the_rendered_shape_and_weights_the_object():
    from stt2v_ray.data.clips import make_clip, object_path, shape_coverage
    from stt2v_ray.train.stages import loss_weights, object_weighted_mse

    batch = make_batch("base", 0, 3, 2)
    clip = make_clip(0, 3 * 2 + 1)
    truth = torch.stack([shape_coverage(clip.spec.prompt.shape, tuple(p), clip.spec.size, 32, 32)
                         for p in object_path(clip.spec).tolist()])
    torch.testing.assert_close(batch.coverage[1, :, 0], truth, rtol=0, atol=1e-6)
    assert loss_weights(batch, toy.BASE_FACTOR, 1.0) is None
    w = loss_weights(batch, toy.BASE_FACTOR, 10.0)
    assert w.shape == (2, 48, 16, 8, 8) and float(w.min()) == 1.0 and float(w.max()) == 10.0
    target = torch.zeros_like(w)
    on_object = (w > 5).float()  # an error only where the object is counts 10x in the weighted loss
    assert object_weighted_mse(on_object, target, w) > 5 * object_weighted_mse(on_object, target, None)
    ones = torch.ones_like(w)
    torch.testing.assert_close(object_weighted_mse(ones, target, w), object_weighted_mse(ones, target, None))


def test_timestep_power_favours_high_noise_and_power_one_is_uniform():
    from stt2v_ray.train.data import noise_draws

    uniform, _, _ = noise_draws(0, "cam", 7, (4000, 1), 1000, 0.1)
    high, noise_u, _ = noise_draws(0, "cam", 7, (4000, 1), 1000, 0.1, t_power=3.0)
    assert int(uniform.min()) >= 0 and int(high.max()) <= 999
    share = lambda t: float((t >= 850).double().mean())  # noqa: E731
    assert abs(share(uniform) - 0.15) < 0.03 and abs(share(high) - (1 - 0.85**3)) < 0.03
    again, noise_again, _ = noise_draws(0, "cam", 7, (4000, 1), 1000, 0.1, t_power=3.0)
    assert torch.equal(high, again) and torch.equal(noise_u, noise_again)


def test_focus_is_checked_when_the_settings_are_read_and_reaches_the_batches():
    raw = named_config("smoke")
    raw["cam"]["focus"] = {"grey": 3}
    with pytest.raises(ValueError, match="focus: unknown word 'grey'"):
        TrainSettings(**raw)
    from stt2v_ray.data.clips import make_clip

    batch = make_batch("cam", 0, 2, 4, window=8, focus={"gray": 5.0})
    assert batch.prompts == [make_clip(0, 8 + i, focus={"gray": 5.0}).prompt for i in range(4)]
    assert batch.prompts != make_batch("cam", 0, 2, 4, window=8).prompts


@pytest.mark.train
def test_rest_from_makes_a_whole_preset_of_one_trained_stage_and_an_earlier_export(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--out", str(first), "--config", "smoke"]) == 0
    (first / "weights" / "report").mkdir()
    (first / "weights" / "report" / "report.json").write_text((first / "report" / "report.json").read_text())
    (first / "weights" / "report" / "loss_cam.png").write_bytes((first / "report" / "loss_cam.png").read_bytes())
    source = str(first / "weights")
    assert main(["train", "--out", str(second), "--config", "smoke", "--stage", "enhancer",
                 "--set", f"enhancer.init={source}", "--rest-from", source]) == 0
    for file in (first / "weights").glob("t2v*"):  # the kept export, byte for byte
        assert (second / "weights" / file.name).read_bytes() == file.read_bytes()
    assert (second / "weights" / "enhancer.index.json").is_file()
    report = json.loads((second / "report" / "report.json").read_text())
    for stage in ("base", "cam", "apm"):
        kept = report["stages"][stage]["kept"]
        assert kept["from"] == source and kept["report"]["stages"][stage]["steps"] == 4
        assert list(kept["report"]["stages"]) == [stage] and report["settings"][stage] is None
    assert report["stages"]["enhancer"]["steps"] == 4 and report["settings"]["enhancer"]["init"] == source
    readme = (second / "report" / "README.md").read_text()
    assert f"| cam | kept from `{source}`" in readme and "| enhancer | 4 / 4 |" in readme
    assert (second / "report" / "loss_cam.png").read_bytes() == (first / "report" / "loss_cam.png").read_bytes()
    assert not (second / "report" / "loss_base.png").exists()  # the source had none to carry on
    # kept again from the second run: the table still shows the minutes of the run that trained it
    (second / "weights" / "report").mkdir()
    (second / "weights" / "report" / "report.json").write_text((second / "report" / "report.json").read_text())
    assert main(["train", "--out", str(tmp_path / "again"), "--config", "smoke", "--stage", "enhancer",
                 "--rest-from", str(second / "weights")]) == 0
    minutes = report["stages"]["cam"]["kept"]["report"]["stages"]["cam"]["minutes"]
    assert f"`stages.cam.kept.report`) | {minutes} |" in (tmp_path / "again" / "report" / "README.md").read_text()
    capsys.readouterr()
    # a CAM belongs to its base: keeping it while base trains here is refused, before any training
    assert main(["train", "--out", str(tmp_path / "third"), "--config", "smoke", "--stage", "base",
                 "--rest-from", source]) == 2
    assert "--rest-from keeps cam, apm but base trains here" in capsys.readouterr().err
    assert not (tmp_path / "third" / "stages" / "base").exists()
    (tmp_path / "empty").mkdir()
    assert main(["train", "--out", str(tmp_path / "fourth"), "--config", "smoke", "--stage", "enhancer",
                 "--rest-from", str(tmp_path / "empty")]) == 2
    assert "has no t2v export (t2v.index.json)" in capsys.readouterr().err
