import math

import pytest
import torch
from diffusers import DDIMScheduler

from stt2v_ray.config import EnhanceSettings
from stt2v_ray.models.blocks.enhancer import VideoEnhancer, build_tiny_enhancer
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.text import encode_text

# Model forwards run at 16x24 base (32x48 out, 8x12 latents), 4-frame chunks, to stay fast.
BASE_H, BASE_W, CHUNK = 16, 24, 4
LATENT = (4, 8, 12)
JOB = GenerationJob(id="v0", prompt="a red fox in snow", negative_prompt="blurry", seed=3)


def make(**overrides) -> VideoEnhancer:
    settings = EnhanceSettings(**{"steps": 10, "strength": 0.6, "guidance_scale": 7.5, "scale": 2, **overrides})
    return build_tiny_enhancer(settings, BASE_H, BASE_W, seed=0)


@pytest.fixture(scope="module")
def enhancer() -> VideoEnhancer:
    return make()


def base_frames(n: int = CHUNK, height: int = BASE_H, width: int = BASE_W) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, height, width, generator=g) * 2 - 1


def latents_like(enhancer: VideoEnhancer, seed: int, n: int = CHUNK) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (n, enhancer.latent_channels, enhancer.latent_height, enhancer.latent_width)
    return torch.randn(shape, generator=g)


def test_sizes_and_sdedit_timesteps():
    e = build_tiny_enhancer(EnhanceSettings(steps=10, strength=0.6, scale=2), 32, 48)
    assert (e.height, e.width) == (64, 96)
    assert (e.latent_channels, e.latent_height, e.latent_width) == (4, 16, 24)
    assert e.encode(base_frames(6, 32, 48)).shape == (6, 4, 16, 24)
    # DDIM "leading" spacing, 10 of 1000: 900, 800, ..., 0; strength 0.6 keeps the last 6.
    assert e.timesteps == [500, 400, 300, 200, 100, 0]
    scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="leading", steps_offset=0)
    scheduler.set_timesteps(10)
    init = min(int(10 * 0.6), 10)  # diffusers img2img `get_timesteps`
    assert e.timesteps == scheduler.timesteps[10 - init :].tolist()


def test_output_size_must_fit_vae_and_unet():
    settings = EnhanceSettings(steps=10, strength=0.6, scale=1)
    with pytest.raises(ValueError, match=r"enhancer output size 36x48 \(base 36x48 x scale 1\) must be divisible by 8"):
        build_tiny_enhancer(settings, 36, 48)


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = make(), make(), build_tiny_enhancer(EnhanceSettings(steps=10, strength=0.6), BASE_H, BASE_W, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.unet.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert not any(m.training for m in (a.unet, a.vae, a.text_encoder))


def test_prepare_embeds_negative_then_prompt(enhancer):
    e = enhancer
    state = e.prepare(JOB)
    assert state.prompt == JOB.prompt
    assert state.embeddings.shape == (2, e.tokenizer.model_max_length, 32)
    torch.testing.assert_close(state.embeddings, encode_text(e.tokenizer, e.text_encoder, ["blurry", JOB.prompt]), rtol=0, atol=0)

    override = make(prompt="High Quality, HQ, detailed.")
    assert override.prepare(JOB).prompt == "High Quality, HQ, detailed."


def test_encode_is_per_frame_and_deterministic(enhancer):
    e = enhancer
    frames = base_frames()
    z = e.encode(frames)
    assert z.shape == (CHUNK, *LATENT) and z.dtype == torch.float32 and z.device.type == "cpu"
    assert torch.equal(z[2:4], e.encode(frames[2:4]))
    assert torch.equal(z, e.encode(frames))


def test_encode_and_decode_check_shapes(enhancer):
    e = enhancer
    with pytest.raises(ValueError, match=r"encode expects base frames of shape \(n, 3, 16, 24\), got \(2, 3, 32, 48\)"):
        e.encode(torch.zeros(2, 3, 32, 48))
    with pytest.raises(ValueError, match=r"decode expects latents of shape \(n, 4, 8, 12\), got \(2, 4, 16, 24\)"):
        e.decode(torch.zeros(2, 4, 16, 24))


def test_decode_is_per_frame_clamped_cpu_float32(enhancer):
    e = enhancer
    z = latents_like(e, seed=2) * 50  # large latents so the clamp matters
    frames = e.decode(z)
    assert frames.shape == (CHUNK, 3, 32, 48) and frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert frames.min() >= -1 and frames.max() <= 1
    assert torch.equal(frames[1:3], e.decode(z[1:3]))


def test_noise_latents_is_forward_diffusion_at_first_step(enhancer):
    e = enhancer
    clean, noise = latents_like(e, seed=2), latents_like(e, seed=3)
    a = float(e.alphas_cumprod[500])
    torch.testing.assert_close(e.noise_latents(clean, noise), math.sqrt(a) * clean + math.sqrt(1 - a) * noise)
    with pytest.raises(ValueError, match=r"noise_latents: noise shape \(3, 4, 8, 12\) != latents shape \(4, 4, 8, 12\)"):
        e.noise_latents(clean, noise[:3])


def test_predict_is_deterministic_guided_v_prediction(enhancer):
    e = enhancer
    state = e.prepare(JOB)
    x_t = latents_like(e, seed=4)
    x0, eps = e.predict(state, x_t, 1)
    x0_again, eps_again = e.predict(state, x_t, 1)
    assert x0.shape == eps.shape == x_t.shape
    assert torch.equal(x0, x0_again) and torch.equal(eps, eps_again)

    # Reference: each CFG half on its own, guidance, then v -> (x0, eps) by hand.
    sample = x_t.permute(1, 0, 2, 3)[None]
    with torch.no_grad():
        uncond, cond = (e.unet(sample, 400, encoder_hidden_states=state.embeddings[i : i + 1]).sample for i in (0, 1))
    v = (uncond + 7.5 * (cond - uncond))[0].permute(1, 0, 2, 3)
    a = float(e.alphas_cumprod[400])
    torch.testing.assert_close(x0, math.sqrt(a) * x_t - math.sqrt(1 - a) * v, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps, math.sqrt(a) * v + math.sqrt(1 - a) * x_t, rtol=1e-4, atol=1e-4)

    with pytest.raises(ValueError, match=r"step index 6 out of range: the enhancer runs 6 steps \[500, 400, 300, 200, 100, 0\]"):
        e.predict(state, x_t, 6)


def test_step_matches_diffusers_ddim(enhancer):
    e = enhancer
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction",
    )
    scheduler.set_timesteps(10)
    x_t, v = latents_like(e, seed=5), latents_like(e, seed=6)
    for step, t in enumerate(e.timesteps):
        a = float(e.alphas_cumprod[t])
        x0, eps = math.sqrt(a) * x_t - math.sqrt(1 - a) * v, math.sqrt(a) * v + math.sqrt(1 - a) * x_t
        expected = scheduler.step(v, t, x_t, eta=0.0).prev_sample
        torch.testing.assert_close(e.step(x0, eps, step, None), expected)
    # The last step lands on alpha_bar = 1: x_{-1} is x0 itself.
    torch.testing.assert_close(e.step(x0, eps, len(e.timesteps) - 1, None), x0, rtol=0, atol=0)


def test_eta_needs_noise():
    e = make(eta=1.0)
    x0, eps = latents_like(e, seed=7), latents_like(e, seed=8)
    with pytest.raises(ValueError, match=r"step: eta=1.0 > 0 needs a noise tensor, got None"):
        e.step(x0, eps, 0, None)
    noise = latents_like(e, seed=9)
    a_t, a_prev = float(e.alphas_cumprod[500]), float(e.alphas_cumprod[400])
    sigma = math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps + sigma * noise
    torch.testing.assert_close(e.step(x0, eps, 0, noise), expected)


def test_full_sdedit_loop_over_one_chunk(enhancer):
    e = enhancer  # eta = 0: no step noise needed
    state = e.prepare(JOB)
    clean = e.encode(base_frames())
    x = e.noise_latents(clean, latents_like(e, seed=10))
    for step in range(len(e.timesteps)):
        x0, eps = e.predict(state, x, step)
        x = e.step(x0, eps, step, None)
    frames = e.decode(x)
    assert frames.shape == (CHUNK, 3, 32, 48)
    assert torch.isfinite(frames).all()
    assert frames.min() >= -1 and frames.max() <= 1
