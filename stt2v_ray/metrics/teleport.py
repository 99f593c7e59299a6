"""Teleports: a toy object that jumps further in one frame than its motion explains, anywhere.

The seam statistics only look at chunk borders; a model can also jump inside a chunk. Here
every transition counts. From the tracked centres (metrics/track.py):
1. steps between consecutive frames where the object was found; across frames where it was
   not, the displacement divided by the frames spanned (vanishing and reappearing elsewhere
   is a teleport too, not a gap);
2. the video's median step, floored at `min_step` pixels so a still object's sub-pixel
   jitter is not a teleport of ratio 50;
3. teleport_ratio = largest step / median step; a step above `limit` x the median is a
   teleport (issue 20's goal: at most 2x, everywhere).
"""
from __future__ import annotations

import math

import torch

from stt2v_ray.metrics.track import Track

TELEPORT_COLUMNS = ("step_median", "step_max", "teleport_ratio", "teleports")


def object_steps(track: Track) -> torch.Tensor:
    """(n,) per-frame displacement between consecutive found frames (gaps spread over their frames)."""
    found = torch.nonzero(track.found).flatten()
    if found.numel() < 2:
        return torch.zeros(0, dtype=torch.float64)
    centres = track.centres[found]
    frames_spanned = (found[1:] - found[:-1]).double()
    return (centres[1:] - centres[:-1]).norm(dim=1) / frames_spanned


def teleport_stats(track: Track, limit: float = 2.0, min_step: float = 0.5) -> dict:
    """step_median, step_max (px per frame), teleport_ratio and the number of teleports (steps > limit x median)."""
    steps = object_steps(track)
    if steps.numel() == 0:
        return {"step_median": math.nan, "step_max": math.nan, "teleport_ratio": math.nan, "teleports": math.nan}
    median, largest = float(steps.median()), float(steps.max())
    floor = max(median, min_step)
    return {"step_median": median, "step_max": largest, "teleport_ratio": largest / floor,
            "teleports": float((steps > limit * floor).sum())}
