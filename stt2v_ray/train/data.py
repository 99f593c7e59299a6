"""Training batches from procedural clips, each a pure function of (seed, stage, step).

Resuming at step k draws exactly the clips and noise an uninterrupted run draws at step k.
"""
from __future__ import annotations

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


def clip_index(step: int, i: int, batch: int) -> int:
    return step * batch + i


def make_batch(stage: str, seed: int, step: int, batch: int) -> Batch:
    """16-frame clips at 32x32 (64x64 for the enhancer, objects and speeds scaled with it); the
    APM stage takes a chunk from later in a longer clip and that clip's first frame as anchor."""
    frames, prompts, anchors = [], [], []
    g = seeds.generator(seed, "train-gap", stage, step)
    for i in range(batch):
        index = clip_index(step, i, batch)
        if stage == "enhancer":
            clip = make_clip(seed + 1, index, num_frames=CHUNK, height=64, width=64, speed=3.0)
            frames.append(clip.frames)
        elif stage == "apm":
            gap = int(torch.randint(ANCHOR_GAP[0], ANCHOR_GAP[1] + 1, (1,), generator=g))
            clip = make_clip(seed, index, num_frames=gap + CHUNK)
            frames.append(clip.frames[gap:])
            anchors.append(clip.frames[0])
        else:
            clip = make_clip(seed, index, num_frames=CHUNK)
            frames.append(clip.frames)
        prompts.append(clip.prompt)
    return Batch(torch.stack(frames), prompts, torch.stack(anchors) if anchors else None)


def noise_draws(seed: int, stage: str, step: int, shape: tuple[int, ...], t_max: int, dropout: float):
    """(timesteps (B,), noise of `shape`, unconditional mask (B,)) for one step."""
    g = seeds.generator(seed, "train-noise", stage, step)
    b = shape[0]
    t = torch.randint(0, t_max, (b,), generator=g)
    noise = torch.randn(shape, generator=g)
    drop = torch.rand(b, generator=g) < dropout
    return t, noise, drop
