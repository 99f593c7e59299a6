"""StreamingSVD's enhancer key frames: each chunk conditioned on its own first frame, enhanced first."""
import torch

from stt2v_ray.config import RunSettings, deep_merge
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.svd.streamingsvd import toy_enhancer
from stt2v_ray.presets import STREAMINGSVD_TOY


def enhancer_and_state(key_frames="batch"):
    run = RunSettings(**deep_merge(STREAMINGSVD_TOY.defaults, {"preset": "streamingsvd-toy", "executor": "local",
                                                               "enhance": {"i2vgen": {"key_frames": key_frames}}}))
    enh = toy_enhancer(run, 32, 48)
    g = torch.Generator().manual_seed(0)
    job = GenerationJob(id="k", prompt="a field", negative_prompt="", seed=3,
                        image=torch.rand(3, 40, 60, generator=g) * 2 - 1)
    return enh, enh.prepare(job), g


def test_chunk_key_frame_is_an_enhanced_frame_per_chunk_and_reaches_predict():
    enh, state, g = enhancer_and_state("each")
    assert not enh.batch_contexts  # the pipeline calls chunk_context per chunk
    low = torch.rand(8, 3, 32, 48, generator=g) * 2 - 1
    key0 = enh.chunk_context(state, 0, low, seed=3)
    assert key0.frame.shape == (3, enh.height, enh.width) and torch.isfinite(key0.frame).all()
    assert key0.frame.abs().max() <= 1.0
    assert key0.latents.shape == (enh.latent_channels, enh.latent_height, enh.latent_width)
    again = enh.chunk_context(state, 0, low, seed=3)
    assert torch.equal(key0.frame, again.frame) and torch.equal(key0.latents, again.latents)  # deterministic
    assert not torch.equal(key0.frame, enh.chunk_context(state, 6, low, seed=3).frame)  # keyed by the chunk's start frame

    noise = torch.randn(8, enh.latent_channels, enh.latent_height, enh.latent_width, generator=g)
    x = enh.noise_latents(enh.encode(low, 0, 3), noise)
    with_key = enh.predict(state, x, 0, key0)
    without = enh.predict(state, x, 0)
    assert not torch.equal(with_key[0], without[0])


def test_batched_key_frames_equal_the_per_chunk_ones_for_one_chunk():
    # One chunk: the K-frame batch is a 1-frame run, the same calls as key_frames=each.
    enh, state, g = enhancer_and_state("batch")
    low = torch.rand(8, 3, 32, 48, generator=g) * 2 - 1
    (batched,) = enh.chunk_contexts(state, [0], low[:1], seed=3)
    assert torch.equal(batched.frame, enh.chunk_context(state, 0, low, seed=3).frame)
