"""Training batches from procedural clips, each a pure function of (seed, stage, step).

Resuming at step k draws exactly the clips and noise an uninterrupted run draws at step k.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from stt2v_ray.data.clips import make_clip
from stt2v_ray.plan import seeds

CHUNK, COND = 16, 8  # the toy preset's chunk and conditioning frames
ANCHOR_GAP = (8, 48)  # the APM stage's chunk starts this many frames after the anchor (range)


@dataclass
class Batch:
    frames: Tensor  # (B, F, 3, H, W) target frames in [-1, 1]
    prompts: list[str]
    anchors: Tensor | None = None  # (B, 3, H, W): the video's first frame (APM)
    coverage: Tensor | None = None  # (B, F, 1, H, W): how much of each pixel the object covers, in [0, 1]


def clip_index(step: int, i: int, batch: int) -> int:
    return step * batch + i


def make_batch(stage: str, seed: int, step: int, batch: int, window: int = 0,
               focus: Mapping[str, float] | None = None) -> Batch:
    """16-frame clips at 32x32 (64x64 for the enhancer, objects and speeds scaled with it); the
    APM stage takes a chunk from later in a longer clip and that clip's first frame as anchor;
    with `window` > 0 the CAM stage's clips start 0..window frames into a longer clip; `focus`
    draws the words it weighs more often (`sample_spec`)."""
    frames, prompts, anchors, coverage = [], [], [], []
    g = seeds.generator(seed, "train-gap", stage, step)
    for i in range(batch):
        index = clip_index(step, i, batch)
        start = 0  # the clip's first frame used
        if stage == "enhancer":
            clip = make_clip(seed + 1, index, num_frames=CHUNK, height=64, width=64, speed=3.0, focus=focus)
        elif stage == "apm":
            start = int(torch.randint(ANCHOR_GAP[0], ANCHOR_GAP[1] + 1, (1,), generator=g))
            clip = make_clip(seed, index, num_frames=start + CHUNK, focus=focus)
            anchors.append(clip.frames[0])
        elif stage == "cam" and window:
            start = int(torch.randint(0, window + 1, (1,), generator=g))
            clip = make_clip(seed, index, num_frames=start + CHUNK, focus=focus)
        else:
            clip = make_clip(seed, index, num_frames=CHUNK, focus=focus)
        frames.append(clip.frames[start:])
        coverage.append(clip.coverage[start:])
        prompts.append(clip.prompt)
    return Batch(torch.stack(frames), prompts, torch.stack(anchors) if anchors else None, torch.stack(coverage))


def noise_draws(seed: int, stage: str, step: int, shape: tuple[int, ...], t_max: int, dropout: float,
                t_power: float = 1.0):
    """(timesteps (B,), noise of `shape`, unconditional mask (B,)) for one step.

    t_power 1: t uniform in [0, t_max); p > 1: t = t_max u^(1/p), density ~ t^(p-1), which
    favours high noise (p = 3: 39% of draws above 0.85 t_max instead of 15%)."""
    g = seeds.generator(seed, "train-noise", stage, step)
    b = shape[0]
    if t_power == 1.0:
        t = torch.randint(0, t_max, (b,), generator=g)
    else:
        t = (t_max * torch.rand(b, generator=g) ** (1.0 / t_power)).long().clamp(max=t_max - 1)
    noise = torch.randn(shape, generator=g)
    drop = torch.rand(b, generator=g) < dropout
    return t, noise, drop
