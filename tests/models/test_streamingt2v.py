"""The streamingt2v preset: full-size sizes on the meta device, toy-size wiring, end-to-end render on CPU."""
from __future__ import annotations

import pyarrow.parquet as pq
import torch
import yaml
from diffusers import UNet2DConditionModel, UNet3DConditionModel

from stt2v_ray.cli import main
from stt2v_ray.config import RunSettings, deep_merge
from stt2v_ray.models.blocks.apm import APM
from stt2v_ray.models.modelscope.streamingt2v import FULL, MODELSCOPE_UNET, build_streaming_model, build_t2v, parameter_counts
from stt2v_ray.presets import get_preset


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_modelscope_unet_parameter_count():
    """ModelScope T2V's UNet3D (damo-vilab/text-to-video-ms-1.7b unet/config.json) on the meta device.

    1,411,233,860 parameters, split exactly into
    - 865,910,724 spatial ones: the count of Stable Diffusion 2's UNet2DConditionModel (which
      ModelScope extends; computed below from SD 2's config), and
    - 545,323,136 temporal ones (temp_convs, temp_attentions, transformer_in): the technical
      report's "0.5 billion parameters dedicated to temporal capabilities" (arXiv 2308.06571);
    the model card's "about 1.7 billion" is UNet + text encoder (340,387,840) + VAE (83,653,863).
    """
    with torch.device("meta"):
        unet = UNet3DConditionModel(**MODELSCOPE_UNET)
        sd2 = UNet2DConditionModel(
            sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        )
    temporal = sum(p.numel() for n, p in unet.named_parameters() if "temp_" in n or n.startswith("transformer_in."))
    assert count(unet) == 1_411_233_860
    assert count(sd2) == 865_910_724 == count(unet) - temporal
    assert temporal == 545_323_136
    counts = parameter_counts()
    assert counts["base"] == {"unet (ModelScope)": 1_411_233_860, "text_encoder": 340_387_840, "vae": 83_653_863}
    # 16 spatial cross-attentions x (Conv1d 93->77 k3 + LayerNorm 1024 + alpha) = 16 x 23,609
    assert counts["streaming"]["apm mixers"] == 16 * (93 * 77 * 3 + 77 + 2 * 1024 + 1)
    assert counts["streaming"]["apm mlp"] == 1024 * 1280 + 1280 + 1280 * 16 * 1024 + 16 * 1024
    assert counts["streaming"]["image_encoder (ViT-H-14)"] == 632_076_800  # OpenCLIP ViT-H-14 image tower


def test_full_size_wiring_on_meta():
    with torch.device("meta"):
        model = build_streaming_model(FULL)
    # one CAM injector per official merger: 3 per down block + the mid block
    assert [inj.proj_in.in_features for inj in model.cam.skip_injectors] == [320] * 4 + [640] * 3 + [1280] * 5
    assert model.cam.mid_injector.heads == 20 and model.cam.skip_injectors[0].heads == 5  # head dim 64
    assert len(APM.processors(model.unet)) == 16
    assert model.cam.frame_encoder.conv_out.out_channels == 320 and model.cam.frame_encoder.num_downsamples == 3


def test_preset_defaults():
    preset = get_preset("streamingt2v")
    run = RunSettings.model_validate(deep_merge(preset.defaults, {"preset": "streamingt2v"}))
    assert (
        run.t2v.chunk_frames, run.t2v.cond_frames, run.t2v.steps, run.t2v.eta, run.t2v.guidance_scale
    ) == (16, 8, 50, 1.0, 7.5)
    assert (run.t2v.height, run.t2v.width, run.t2v.anchor_frame) == (256, 256, 0)
    assert (run.enhance.chunk_frames, run.enhance.overlap_frames, run.enhance.strength, run.enhance.scale) == (24, 8, 0.6, 3)
    assert run.enhance.blend_target == "x0" and run.interpolate.factor == 1 and run.encode.default_fps == 8
    assert [(s.component, s.hub_id, s.filename) for s in preset.sources] == [
        ("base", "damo-vilab/text-to-video-ms-1.7b", None),
        ("streaming", "PAIR/StreamingT2V", "streaming_t2v.ckpt"),
        ("enhancer", "ali-vilab/i2vgen-xl", None),
    ]
    assert set(preset.generators) == {"t2v"}


def test_toy_generator_same_classes_separate_first_chunk_unet():
    run = RunSettings(
        preset="streamingt2v-toy", weights={"mode": "random"},
        t2v={"chunk_frames": 8, "cond_frames": 4, "height": 64, "width": 64},
    )
    gen = build_t2v(run, size="toy")
    assert type(gen.first_chunk_unet) is UNet3DConditionModel and gen.first_chunk_unet is not gen.model.unet
    assert len(gen.model.cam.skip_injectors) == 6 and len(APM.processors(gen.model.unet)) == 6


def test_toy_preset_renders_end_to_end(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "streamingt2v-toy"},
                                        "prompts": [{"id": "cat", "prompt": "a cat", "num_frames": 12, "seed": 1}]}))
    out = tmp_path / "out"
    sets = ["executor=local", "encode.preset=ultrafast", "enhance.steps=2"]
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + [a for s in sets for a in ("--set", s)]) == 0
    row = pq.read_table(out / "results.parquet").to_pylist()[0]
    assert [row[k] for k in ("status", "num_frames", "fps", "width", "height")] == ["ok", 12, 8, 64, 64]
    import imageio_ffmpeg

    assert imageio_ffmpeg.count_frames_and_secs(str(out / "videos" / "cat.mp4"))[0] == 12


def test_pretrained_without_weights_exits_2_naming_components(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump({"settings": {"preset": "streamingt2v"}, "prompts": [{"prompt": "a cat", "num_frames": 24}]})
    )
    assert main(["render", str(manifest), "--output", str(tmp_path / "o"), "--set", "executor=local"]) == 2
    err = capsys.readouterr().err
    assert "PAIR/StreamingT2V (file streaming_t2v.ckpt)" in err and "weights.paths.streaming" in err
    assert "damo-vilab/text-to-video-ms-1.7b" in err and "ali-vilab/i2vgen-xl" in err
