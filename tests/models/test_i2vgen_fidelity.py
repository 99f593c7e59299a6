"""Issue 21: the I2VGen-XL enhancer conditions, schedules and sizes as the original StreamingSVD.

Toy size, the real classes (diffusers' I2VGenXLUNet, AutoencoderKL, DDIMScheduler; transformers'
CLIP), the UNet/encoders spied on to see what reaches them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from stt2v_ray.config import RunSettings, deep_merge
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.text import encode_text
from stt2v_ray.models.svd.i2v import CLIP_MEAN, CLIP_STD
from stt2v_ray.models.svd.streamingsvd import toy_enhancer
from stt2v_ray.plan.seeds import generator
from stt2v_ray.presets import STREAMINGSVD, STREAMINGSVD_TOY

ORIGINAL_NEGATIVE = ("Distorted, blurry, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
                     "disconnected limbs, Ugly faces, incomplete arms")
# ali-vilab/i2vgen-xl scheduler/scheduler_config.json: the fields that decide the schedule
I2VGEN_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
                        rescale_betas_zero_snr=True, prediction_type="epsilon")


def run_settings(**enhance) -> RunSettings:
    return RunSettings(**deep_merge(STREAMINGSVD_TOY.defaults, {"preset": "streamingsvd-toy", "executor": "local",
                                                               "enhance": enhance}))


def image(h=40, w=60, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def job(img=None):
    return GenerationJob(id="k", prompt="a field at dusk", negative_prompt="ugly", seed=3, image=image() if img is None else img)


def spy(module) -> list:
    """Record every forward call of `module` as (args, kwargs)."""
    calls, forward = [], module.forward

    def wrapped(*args, **kwargs):
        calls.append((args, kwargs))
        return forward(*args, **kwargs)

    module.forward = wrapped
    return calls


def latents(enh, n, seed=1):
    return torch.randn(n, enh.latent_channels, enh.latent_height, enh.latent_width, generator=torch.Generator().manual_seed(seed))


def test_unconditional_half_gets_the_image_latents_and_a_zero_image_embedding():
    enh = toy_enhancer(run_settings(), 32, 48)
    state = enh.prepare(job())
    calls = spy(enh.unet)
    enh.predict(state, latents(enh, 8), 0)
    kw = calls[0][1]
    lat, emb = kw["image_latents"], kw["image_embeddings"]
    assert lat.shape[:3] == (2, enh.latent_channels, 8)
    assert torch.equal(lat[0], lat[1]) and lat[0].abs().sum() > 0  # both halves: the image's latents
    assert torch.equal(emb[0], torch.zeros_like(emb[0])) and emb[1].abs().sum() > 0


def test_text_state_is_the_penultimate_hidden_state_through_the_final_layer_norm():
    enh = toy_enhancer(run_settings(), 32, 48)
    state = enh.prepare(job())
    texts = [ORIGINAL_NEGATIVE, "High Quality, HQ, detailed."]
    ids = enh.tokenizer(texts, padding="max_length", max_length=enh.tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
    with torch.no_grad():
        out = enh.text_encoder(ids, output_hidden_states=True)
        expected = enh.text_encoder.final_layer_norm(out.hidden_states[-2])
    torch.testing.assert_close(state.embeddings, expected, rtol=0, atol=0)
    assert not torch.allclose(state.embeddings, out.last_hidden_state)
    last = toy_enhancer(run_settings(i2vgen={"clip_skip": 0}), 32, 48).prepare(job())  # the setting's other value
    torch.testing.assert_close(last.embeddings, out.last_hidden_state, rtol=0, atol=0)


def test_the_original_prompts_and_fps_38_reach_the_unet():
    assert STREAMINGSVD.defaults["enhance"]["prompt"] == "High Quality, HQ, detailed."
    assert STREAMINGSVD.defaults["enhance"]["negative_prompt"] == ORIGINAL_NEGATIVE
    assert RunSettings(preset="streamingsvd", **STREAMINGSVD.defaults).enhance.i2vgen.fps == 38
    enh = toy_enhancer(run_settings(), 32, 48)
    calls = spy(enh.unet)
    enh.predict(enh.prepare(job()), latents(enh, 8), 0)  # the job's own prompts are NOT the enhancer's
    kw = calls[0][1]
    expected = encode_text(enh.tokenizer, enh.text_encoder, [ORIGINAL_NEGATIVE, "High Quality, HQ, detailed."], clip_skip=1)
    torch.testing.assert_close(kw["encoder_hidden_states"], expected, rtol=0, atol=0)
    assert kw["fps"].tolist() == [38, 38]


def test_key_frames_run_as_one_k_frame_video_conditioned_on_the_input_image():
    assert RunSettings(preset="streamingsvd", **STREAMINGSVD.defaults).enhance.i2vgen.key_frames == "batch"
    enh = toy_enhancer(run_settings(), 32, 48)
    assert enh.batch_contexts
    state = enh.prepare(job())
    firsts = torch.stack([image(32, 48, seed=s) for s in (1, 2, 3)])
    calls = spy(enh.unet)
    keys = enh.chunk_contexts(state, [0, 6, 12], firsts, seed=3)
    assert len(calls) == len(enh.timesteps)  # one UNet call per step for all three key frames
    for args, kw in calls:
        assert args[0].shape[2] == 3  # (2, c, K=3, h, w)
        assert torch.equal(kw["image_latents"][1, :, 0], state.condition.latents)  # the input image's latents
    assert len(keys) == 3 and all(k.frame.shape == (3, enh.height, enh.width) for k in keys)
    # Coupled by temporal attention: key frame 0 depends on the other chunks' first frames.
    other = enh.chunk_contexts(state, [0, 6, 12], torch.stack([firsts[0], firsts[2], firsts[1]]), seed=3)
    assert not torch.equal(keys[0].frame, other[0].frame)
    calls.clear()
    enh.predict(state, latents(enh, 8), 0, keys[1])
    assert torch.equal(calls[0][1]["image_latents"][1, :, 0], keys[1].latents)  # chunk 1 conditioned on its key frame


def test_clip_input_is_the_centre_square_resized_bilinear():
    enh = toy_enhancer(run_settings(), 32, 48)
    img = image(enh.height, enh.width, seed=4)  # already at the enhancer's size: no fitting
    side, left = enh.height, (enh.width - enh.height) // 2
    size = enh.image_encoder.config.image_size
    centre = img[None, :, :, left : left + side]
    x = (F.interpolate(centre, size=(size, size), mode="bilinear", antialias=True, align_corners=False) + 1) / 2
    expected = (x.clamp(0, 1) - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    calls = spy(enh.image_encoder)
    enh.predict(enh.prepare(job(img)), latents(enh, 8), 0)
    torch.testing.assert_close(calls[0][1]["pixel_values"], expected, rtol=0, atol=1e-6)


def test_scheduler_comes_from_the_components_config_and_starts_at_925(tmp_path):
    from stt2v_ray.models.svd.i2vgen_enhancer import I2VGenXLEnhancer, build_models, load_scheduler

    DDIMScheduler(**I2VGEN_SCHEDULER).save_pretrained(tmp_path / "scheduler")
    run = run_settings(steps=30, strength=0.97)
    tok, text, vae, unet, image_encoder = build_models("toy")
    enh = I2VGenXLEnhancer(tok, text, vae, unet, image_encoder, run, 32, 48, scheduler=load_scheduler(tmp_path))
    assert len(enh.timesteps) == 29 and enh.timesteps[0] == 925 and enh.timesteps[-1] == 1
    ref = DDIMScheduler.from_config(I2VGEN_SCHEDULER)
    assert torch.equal(enh.alphas_cumprod, ref.alphas_cumprod)  # zero-SNR rescaled
    assert float(ref.alphas_cumprod[-1]) == 0.0
    # One DDIM update equals diffusers' step (eta 0), including the last onto final_alpha_cumprod.
    ref.set_timesteps(30)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 12, generator=g), torch.randn(2, 4, 8, 12, generator=g)
    for i in (0, 28):
        from stt2v_ray.plan.samplers import to_x0_eps

        x0, e = to_x0_eps(x, eps, enh.alpha_bar(i), "epsilon")
        torch.testing.assert_close(enh.step(x0, e, i, None), ref.step(eps, enh.timesteps[i], x).prev_sample, rtol=1e-5, atol=1e-5)
    # The preset's own build (random weights) uses the same config's schedule.
    assert toy_enhancer(run, 32, 48).timesteps[0] == 925


def test_latents_are_sampled_with_a_generator_keyed_by_seed_and_frame():
    enh = toy_enhancer(run_settings(), 32, 48)
    low = torch.stack([image(32, 48, seed=s) for s in range(4)])
    z = enh.encode(low, 5, 3)
    for i in range(4):
        x = F.interpolate(low[i : i + 1], size=(enh.height, enh.width), mode="bicubic", antialias=True).clamp(-1, 1)
        dist = enh.vae.encode(x).latent_dist
        with torch.no_grad():
            expected = dist.sample(generator(3, "enhance-latents", 5 + i)) * enh.scaling_factor
        torch.testing.assert_close(z[i : i + 1], expected, rtol=0, atol=0)
        assert not torch.allclose(z[i : i + 1], dist.mean * enh.scaling_factor)
    assert torch.equal(enh.encode(low[2:], 7, 3), z[2:])  # keyed by video frame: any grouping agrees


def test_streamingsvd_enhances_at_720x1280_resizing_the_base():
    from stt2v_ray.models.svd.i2vgen_enhancer import I2VGenXLEnhancer, build_models

    run = RunSettings(preset="streamingsvd", **STREAMINGSVD.defaults)
    assert run.enhance.output_size(576, 1024) == (720, 1280)
    with torch.device("meta"):
        models = build_models("full")
    enh = I2VGenXLEnhancer(*models, run, 576, 1024, device="meta")
    assert (enh.height, enh.width, enh.latent_height, enh.latent_width) == (720, 1280, 90, 160)
    toy = toy_enhancer(run_settings(), 32, 48)  # toy: 32x48 -> 48x72 (x1.5)
    calls = spy(toy.vae.encoder)
    frame = image(32, 48, seed=5)
    toy.encode(frame[None], 0, 3)
    resized = F.interpolate(frame[None], size=(48, 72), mode="bicubic", antialias=True).clamp(-1, 1)
    assert torch.equal(calls[0][0][0], resized)
    assert toy.decode(latents(toy, 2)).shape == (2, 3, 48, 72)


def test_shards_equal_the_wavefront_bitwise_with_batched_key_frames():
    from stt2v_ray.pipeline.enhance import EnhanceRecipe, enhance_stream
    from stt2v_ray.pipeline.shard import enhance_by_segments
    from stt2v_ray.plan.chunks import enhance_plan

    enh = toy_enhancer(run_settings(steps=2, strength=1.0, height=32, width=48), 32, 48)
    state = enh.prepare(job())
    plan = enhance_plan(14, 8, 2)  # chunks [0, 8), [6, 14)
    recipe = EnhanceRecipe(plan=plan, seed=3, num_steps=len(enh.timesteps))
    video = torch.stack([image(32, 48, seed=10 + f) for f in range(plan.padded_frames)])
    pieces = list(torch.split(video, 7))
    calls = spy(enh.unet)
    wave = torch.cat(list(enhance_stream(enh, state, recipe, iter(pieces))))
    assert sum(1 for a, _ in calls if a[0].shape[2] == plan.num_chunks) == recipe.num_steps  # key frames: one batch
    seg = torch.cat(list(enhance_by_segments(enh, state, recipe, iter(pieces), 2)))  # each shard: one chunk
    assert wave.shape == (plan.padded_frames, 3, 32, 48)
    assert torch.equal(seg, wave)
