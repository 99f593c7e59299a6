"""The streamingsvd preset: full-size counts on meta, toy-size end to end, memory options."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from diffusers import UNetSpatioTemporalConditionModel

from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.svd.streamingsvd import SVD_XT_UNET, toy_i2v


def test_svd_xt_unet_parameter_count_matches_the_published_model():
    # stabilityai/stable-video-diffusion-img2vid-xt unet/config.json built as diffusers'
    # UNetSpatioTemporalConditionModel: 1,524,623,082 parameters (the published "1.52 B").
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**SVD_XT_UNET)
    assert sum(p.numel() for p in unet.parameters()) == 1_524_623_082


def _chunk(**memory):
    run = RunSettings.model_validate({"preset": "streamingsvd-toy", "weights": {"mode": "random"}, "memory": memory,
                                      "i2v": {"chunk_frames": 8, "cond_frames": 3, "steps": 2, "height": 32, "width": 48}})
    gen = toy_i2v(run)
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    job = GenerationJob("a", "p", "", 3, image=image)
    state = gen.prepare(job)
    first = gen.generate_chunk(state, 0, None, None)
    return first, gen.generate_chunk(state, 1, first[-3:], first[2])


@pytest.mark.slow  # four toy renders (~35 s): `make test-fast` leaves it out
def test_sequential_cfg_and_ff_chunking_match_batched_and_bf16_runs():
    ref = _chunk()
    for options in ({"sequential_cfg": True}, {"ff_chunk_size": 2}):
        for a, b in zip(ref, _chunk(**options), strict=False):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)  # rounding, amplified over 2 sampler steps
    bf16 = _chunk(dtype="bfloat16")
    assert bf16[1].shape == (8, 3, 32, 48) and bf16[1].dtype == torch.float32 and torch.isfinite(bf16[1]).all()


def test_toy_preset_renders_end_to_end_and_says_weights_are_random(tmp_path):
    from stt2v_ray.cli import main

    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "streamingsvd-toy", "executor": "local"},
                                        "prompts": [{"id": "t", "prompt": "a red ball", "num_frames": 9, "seed": 1}]}))
    assert main(["render", str(manifest), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["weights"] == {"mode": "random", "real_output": False, "resolved": {}}
    assert (tmp_path / "out" / "videos" / "t.mp4").is_file()
