"""The wavefront (in-process, streaming) and the sharded segments compute the same frames.

A cheap arithmetic stand-in for the enhancer model keeps this test about the scheduling:
its prediction mixes frames inside a chunk, so a wrong chunk input or a wrong merge shows.
"""
import pytest
import torch

from stt2v_ray.pipeline.enhance import EnhanceRecipe, enhance_stream
from stt2v_ray.pipeline.shard import enhance_by_segments
from stt2v_ray.plan.blending import blend_video
from stt2v_ray.plan.chunks import enhance_plan


class ArithmeticEnhancer:
    height = width = 8
    timesteps = [800, 600, 400, 200]

    def prepare(self, job):
        return None

    def encode(self, frames, start=0, seed=None):
        return frames[:, :2, ::2, ::2] * 0.5

    def noise_latents(self, clean, noise):
        return clean * 0.8 + noise * 0.6

    def predict(self, state, x, step):
        ctx = x.mean(dim=0, keepdim=True)  # depends on the whole chunk
        x0 = torch.tanh(x * 0.9 + ctx * 0.3 + step * 0.01)
        return x0, x - x0

    def step(self, x0, eps, step, noise):
        out = x0 * 0.7 + eps * 0.2
        return out if noise is None else out + noise * 0.05

    def decode(self, latents):
        return latents.repeat_interleave(2, -1).repeat_interleave(2, -2)[:, :1].expand(-1, 3, -1, -1) * 1.0


def base_pieces(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    # Uneven pieces, as the base stage yields them (16, then 8s).
    sizes, s = [], 0
    while s < n:
        sizes.append(min(16 if s == 0 else 8, n - s))
        s += sizes[-1]
    return video, list(torch.split(video, sizes))


def reference(enh, recipe, video):
    """Plain full-video loop: every chunk from the same x_t, then blend_video."""
    plan = recipe.plan
    x = enh.noise_latents(enh.encode(video), recipe.sdedit_noise(0, 0, plan.padded_frames, (2, 4, 4)))
    for i in range(recipe.num_steps):
        outs = []
        for s, e in plan.chunks:
            x0, eps = enh.predict(None, x[s:e], i)
            outs.append(enh.step(x0, eps, i, recipe.step_noise(i, s, e, (2, 4, 4))))
        x = blend_video(outs, plan, recipe.cuts(i))
    return enh.decode(x)


@pytest.mark.parametrize("frames,chunk,overlap", [(40, 8, 3), (37, 10, 4), (9, 8, 2), (6, 8, 2), (30, 6, 0)])
@pytest.mark.parametrize("stochastic", [False, True])
def test_wavefront_equals_full_video_reference(frames, chunk, overlap, stochastic):
    plan = enhance_plan(frames, chunk, overlap)
    recipe = EnhanceRecipe(plan=plan, seed=3, num_steps=4, stochastic=stochastic)
    enh = ArithmeticEnhancer()
    video, pieces = base_pieces(plan.padded_frames)
    got = torch.cat(list(enhance_stream(enh, None, recipe, iter(pieces))))
    assert torch.equal(got, reference(enh, recipe, video))


@pytest.mark.parametrize("target", ["latents", "x0"])
@pytest.mark.parametrize("blending", ["randomized", "none"])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_segments_equal_wavefront_bitwise(target, blending, shards):
    plan = enhance_plan(45, 8, 3)
    recipe = EnhanceRecipe(plan=plan, seed=11, num_steps=4, blend_target=target, blending=blending, stochastic=True)
    enh = ArithmeticEnhancer()
    _, pieces = base_pieces(plan.padded_frames, seed=1)
    wave = torch.cat(list(enhance_stream(enh, None, recipe, iter(pieces))))
    seg = torch.cat(list(enhance_by_segments(enh, None, recipe, iter(pieces), shards)))
    assert seg.shape == wave.shape == (plan.padded_frames, 3, 8, 8)
    assert torch.equal(seg, wave)


def test_segments_limit_drops_padding():
    plan = enhance_plan(20, 8, 3)  # padded to 23
    recipe = EnhanceRecipe(plan=plan, seed=0, num_steps=2)
    _, pieces = base_pieces(plan.padded_frames)
    out = torch.cat(list(enhance_by_segments(ArithmeticEnhancer(), None, recipe, iter(pieces), 2, limit=20)))
    assert out.shape[0] == 20


def test_cuts_change_with_seed_and_step():
    plan = enhance_plan(80, 8, 4)
    r = EnhanceRecipe(plan=plan, seed=1, num_steps=3)
    assert r.cuts(0) != r.cuts(1) or r.cuts(0) != EnhanceRecipe(plan=plan, seed=2, num_steps=3).cuts(0)
    assert all(0 <= c < 4 for c in r.cuts(0))
    assert EnhanceRecipe(plan=plan, seed=1, num_steps=3, blending="none").cuts(0) == [2] * (plan.num_chunks - 1)


class KeyFrameEnhancer(ArithmeticEnhancer):
    """Adds a per-chunk context (like StreamingSVD's enhanced key frame) that changes the prediction."""

    def __init__(self):
        self.contexts = []

    def chunk_context(self, state, start, low, seed):
        self.contexts.append(start)
        return low[0].mean() + start * 0.001 + seed * 0.0001

    def predict(self, state, x, step, context=None):
        assert context is not None, "chunk context not passed on"
        x0, eps = super().predict(state, x, step)
        return x0 + context, eps - context


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_chunk_context_is_computed_once_per_chunk_and_used_identically(shards):
    plan = enhance_plan(40, 8, 3)
    recipe = EnhanceRecipe(plan=plan, seed=5, num_steps=3)
    _, pieces = base_pieces(plan.padded_frames, seed=2)
    wave_enh, seg_enh = KeyFrameEnhancer(), KeyFrameEnhancer()
    wave = torch.cat(list(enhance_stream(wave_enh, None, recipe, iter(pieces))))
    seg = torch.cat(list(enhance_by_segments(seg_enh, None, recipe, iter(pieces), shards)))
    assert torch.equal(seg, wave)
    assert sorted(wave_enh.contexts) == sorted(seg_enh.contexts) == [s for s, _ in plan.chunks]
    plain = torch.cat(list(enhance_stream(ArithmeticEnhancer(), None, recipe, iter(pieces))))
    assert not torch.equal(plain, wave)  # the context really reaches the prediction


class BatchKeyFrameEnhancer(KeyFrameEnhancer):
    """Every chunk's context from all chunks' first frames at once (StreamingSVD's K-frame key-frame run)."""

    batch_contexts = True

    def chunk_contexts(self, state, starts, firsts, seed):
        self.contexts.append(tuple(starts))
        mixed = firsts.mean()  # each context depends on every chunk's first frame
        return [firsts[k].mean() * 0.5 + mixed * 0.5 + s * 0.001 + seed * 0.0001 for k, s in enumerate(starts)]


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_batched_contexts_see_every_chunks_first_frame_and_shards_agree(shards):
    plan = enhance_plan(40, 8, 3)
    recipe = EnhanceRecipe(plan=plan, seed=5, num_steps=3)
    _, pieces = base_pieces(plan.padded_frames, seed=2)
    wave_enh, seg_enh = BatchKeyFrameEnhancer(), BatchKeyFrameEnhancer()
    wave = torch.cat(list(enhance_stream(wave_enh, None, recipe, iter(pieces))))
    seg = torch.cat(list(enhance_by_segments(seg_enh, None, recipe, iter(pieces), shards)))
    assert torch.equal(seg, wave)
    starts = tuple(s for s, _ in plan.chunks)
    assert wave_enh.contexts == [starts] and seg_enh.contexts == [starts] * shards  # once per executor / shard
    per_chunk = torch.cat(list(enhance_stream(KeyFrameEnhancer(), None, recipe, iter(pieces))))
    assert not torch.equal(per_chunk, wave)
