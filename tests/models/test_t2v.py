"""T2VGenerator (text-to-video ChunkGenerator) at toy size: shapes, determinism, CAM/APM influence."""
from __future__ import annotations

import pytest
import torch

from stt2v_ray.config import BaseModelSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.modelscope.t2v import T2VGenerator, build_tiny_streaming_unet3d, build_tiny_t2v

SETTINGS = BaseModelSettings(chunk_frames=8, cond_frames=4, steps=2, height=32, width=32)


@pytest.fixture(scope="module")
def gen() -> T2VGenerator:
    return build_tiny_t2v(SETTINGS, seed=0)


@pytest.fixture(scope="module")
def state(gen):
    return gen.prepare(GenerationJob(id="v", prompt="a red fox in snow", negative_prompt="blurry", seed=7))


@pytest.fixture(scope="module")
def chunk0(gen, state):
    return gen.generate_chunk(state, 0, None, None)


@pytest.fixture(scope="module")
def chunk1(gen, state, chunk0):
    return gen.generate_chunk(state, 1, chunk0[-4:], chunk0[0])


def test_contract_attributes(gen):
    assert (gen.chunk_frames, gen.cond_frames, gen.height, gen.width) == (8, 4, 32, 32)
    assert gen.vae_scale_factor == 4
    assert gen.timesteps == [501, 1]  # leading spacing, steps_offset 1


def test_prepare_encodes_negative_then_prompt(gen, state):
    assert state.seed == 7
    assert state.text.shape == (2, 32, 32)
    alone = gen.prepare(GenerationJob(id="w", prompt="blurry", negative_prompt="a red fox in snow", seed=7))
    torch.testing.assert_close(alone.text, state.text.flip(0))


def test_chunk_shapes_and_range(chunk0, chunk1):
    for chunk in (chunk0, chunk1):
        assert chunk.shape == (8, 3, 32, 32)
        assert chunk.dtype == torch.float32 and chunk.device.type == "cpu"
        assert chunk.min() >= -1.0 and chunk.max() <= 1.0
        assert torch.isfinite(chunk).all()
        assert chunk.std() > 0


def test_determinism(gen, state, chunk0, chunk1):
    assert torch.equal(gen.generate_chunk(state, 0, None, None), chunk0)
    assert torch.equal(gen.generate_chunk(state, 1, chunk0[-4:], chunk0[0]), chunk1)
    # a second generator built with the same seed gives the same frames
    again = build_tiny_t2v(SETTINGS, seed=0)
    assert torch.equal(
        again.generate_chunk(again.prepare(GenerationJob("v", "a red fox in snow", "blurry", 7)), 0, None, None), chunk0
    )


def test_different_seed_or_chunk_differs(gen, state, chunk0):
    other = gen.prepare(GenerationJob(id="v", prompt="a red fox in snow", negative_prompt="blurry", seed=8))
    assert not torch.allclose(gen.generate_chunk(other, 0, None, None), chunk0)


def test_cond_frames_and_anchor_influence_chunk1(gen, state, chunk0, chunk1):
    other_cond = gen.generate_chunk(state, 1, chunk0[:4].flip(-1), chunk0[0])
    other_anchor = gen.generate_chunk(state, 1, chunk0[-4:], chunk0[0].flip(-1))
    assert (other_cond - chunk1).abs().max() > 1e-5
    assert (other_anchor - chunk1).abs().max() > 1e-5


def test_zero_init_streaming_model_ignores_cond(gen, state, chunk0):
    fresh = T2VGenerator(gen.tokenizer, gen.text_encoder, gen.vae, build_tiny_streaming_unet3d(seed=0), SETTINGS)
    a = fresh.generate_chunk(state, 1, chunk0[-4:], chunk0[0])
    b = fresh.generate_chunk(state, 1, chunk0[:4].flip(-1), chunk0[0].flip(-1))
    assert torch.equal(a, b)
    # a zero-init streaming model is the base model: chunk 1 differs from chunk 0 only by its noise key
    assert not torch.allclose(a, chunk0)


def test_eta_zero_needs_no_step_noise(state, chunk0):
    gen = build_tiny_t2v(SETTINGS.model_copy(update={"eta": 0.0}), seed=0)
    out = gen.generate_chunk(state, 0, None, None)
    assert out.shape == (8, 3, 32, 32) and not torch.allclose(out, chunk0)


def test_guidance_interval_skips_cfg_below_min_timestep(state, chunk0):
    def chunk(**update):
        return build_tiny_t2v(SETTINGS.model_copy(update=update), seed=0).generate_chunk(state, 0, None, None)

    # timesteps [501, 1]: a bound above both is no guidance at all; 0 (the default) guides every step
    unguided = chunk(guidance_scale=1.0)
    torch.testing.assert_close(chunk(guidance_min_timestep=502), unguided, rtol=0, atol=0)
    assert torch.equal(chunk(guidance_min_timestep=0), chunk0)
    partial = chunk(guidance_min_timestep=2)  # guided at t=501 only
    assert not torch.allclose(partial, chunk0) and not torch.allclose(partial, unguided)


def test_input_errors(gen, state, chunk0):
    with pytest.raises(ValueError, match="index must be >= 0, got -1"):
        gen.generate_chunk(state, -1, None, None)
    with pytest.raises(ValueError, match=r"chunk 0 takes no cond frames and no anchor \(pass None\)"):
        gen.generate_chunk(state, 0, chunk0[-4:], None)
    with pytest.raises(ValueError, match=r"chunk 2 needs cond frames of shape \(4, 3, 32, 32\), got \(3, 3, 32, 32\)"):
        gen.generate_chunk(state, 2, chunk0[-3:], chunk0[0])
    with pytest.raises(ValueError, match=r"chunk 1 needs an anchor frame of shape \(3, 32, 32\), got None"):
        gen.generate_chunk(state, 1, chunk0[-4:], None)


def test_size_must_fit_vae_factor():
    with pytest.raises(ValueError, match="height x width 30x32 must be divisible by the VAE factor 4"):
        build_tiny_t2v(SETTINGS.model_copy(update={"height": 30}))
