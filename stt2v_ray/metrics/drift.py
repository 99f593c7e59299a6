"""Appearance drift: how far each frame's colour distribution moves away from the anchor frame's.

Colour histograms ignore where things are, so an object that only moves does not drift;
one that changes colour, fades or dissolves into noise does. Per frame t: the total
variation distance (half the L1 distance, in [0, 1]) between its and the anchor frame's
per-channel 16-bin histograms, averaged over the 3 channels. Reported:
- drift_last: mean distance over the last quarter of the frames after the anchor;
- drift_slope: least-squares slope of the distance over frames after the anchor, per 100 frames.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from stt2v_ray.metrics.flow import check_frames

DRIFT_COLUMNS = ("drift_last", "drift_slope")
BINS = 16


def colour_histograms(frames: Tensor, bins: int = BINS) -> Tensor:
    """(F,3,H,W) in [-1, 1] -> (F, 3, bins) normalised per-channel histograms."""
    frames = check_frames(frames)
    idx = ((frames.clamp(-1, 1) + 1) / 2 * bins).long().clamp(max=bins - 1).flatten(2)  # (F, 3, HW)
    counts = torch.zeros(*idx.shape[:2], bins, dtype=torch.float64)
    counts.scatter_add_(2, idx, torch.ones_like(idx, dtype=torch.float64))
    return counts / idx.shape[-1]


def drift_curve(frames: Tensor, anchor: int = 0) -> Tensor:
    """(F,) histogram distance of every frame to frame `anchor` (0 at the anchor)."""
    frames = check_frames(frames)
    if not 0 <= anchor < frames.shape[0]:
        raise ValueError(f"anchor frame must be in [0, {frames.shape[0]}), got {anchor}")
    hist = colour_histograms(frames)
    return 0.5 * (hist - hist[anchor:anchor + 1]).abs().sum(dim=2).mean(dim=1)


def appearance_drift(frames: Tensor, anchor: int = 0) -> dict[str, float]:
    curve = drift_curve(frames, anchor)[anchor:]
    if curve.numel() < 2:
        return {"drift_last": 0.0 if curve.numel() else math.nan, "drift_slope": math.nan}
    last = curve[-max(1, curve.numel() // 4):]
    t = torch.arange(curve.numel(), dtype=torch.float64)
    slope = float(((t - t.mean()) * (curve - curve.mean())).sum() / ((t - t.mean()) ** 2).sum())
    return {"drift_last": float(last.mean()), "drift_slope": slope * 100}
