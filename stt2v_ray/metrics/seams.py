"""Seam smoothness: flow, frame-difference and object-motion statistics at chunk borders vs inside chunks.

A "transition" t is the step from output frame t to t+1. The base stage stitches chunks:
chunk k >= 1 starts at base frame s_k (`stt2v_ray.plan.chunks.base_plan`), and after
interpolation by f base frame i is output frame i*f, so the seam between base frames
s_k - 1 and s_k covers output transitions (s_k - 1) f .. s_k f - 1 (f transitions the
interpolator spreads any jump over). Every other transition is "inside".
Per group (seam / inside):
- flow_mean: mean over its transitions of the mean flow magnitude (pixels);
- flow_std: std of the flow magnitude pooled over all pixels of its transitions. This is
  our reading of the paper's "optical-flow std across seams" (8.72 independent chunks,
  6.01 shared noise, 3.32 randomized blending); its exact formula is not in the material
  available here;
- diff_mean: mean absolute frame difference (0-255);
- object jump (seam) / step (inside): mean distance the tracked object's centroid moves,
  plus the largest jump at a seam and the ratio jump / step.
For a clip that moves perfectly evenly the seam and inside values are equal.
"""
from __future__ import annotations

import math

from torch import Tensor

from stt2v_ray.metrics.flow import check_frames, consecutive_flows, to_255
from stt2v_ray.plan.chunks import base_plan

SEAM_COLUMNS = ("seam_flow_mean", "inside_flow_mean", "seam_flow_std", "inside_flow_std", "seam_diff_mean",
                "inside_diff_mean", "seam_jump_mean", "inside_step_mean", "seam_jump_max", "jump_ratio")


def seam_transitions(num_frames: int, factor: int, chunk_frames: int, cond_frames: int,
                     base_frames: int | None = None) -> list[int]:
    """Output transitions (t: frame t -> t+1) that cross a base chunk border, in order.

    base_frames: frames the base stage made (default: just enough for num_frames).
    """
    if num_frames < 1 or factor < 1:
        raise ValueError(f"need num_frames >= 1 and factor >= 1, got {num_frames} and {factor}")
    base_frames = base_frames or math.ceil((num_frames - 1) / factor) + 1
    plan = base_plan(base_frames, chunk_frames, cond_frames)
    out = []
    for chunk in plan.chunks[1:]:
        start = chunk.video_start
        out += [t for t in range((start - 1) * factor, start * factor) if t < num_frames - 1]
    return out


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def seam_stats(frames: Tensor, seams: list[int], flows: Tensor | None = None,
               centres: Tensor | None = None) -> dict[str, float]:
    """SEAM_COLUMNS for a video (F,3,H,W) in [-1, 1]; centres (F, 2) from an object track (optional)."""
    frames = check_frames(frames)
    n = frames.shape[0] - 1
    bad = [t for t in seams if not 0 <= t < n]
    if bad:
        raise ValueError(f"seam transitions must be in [0, {n}) for {n + 1} frames, got {bad}")
    seam_set = set(seams)
    groups = {"seam": sorted(seam_set), "inside": [t for t in range(n) if t not in seam_set]}
    flows = consecutive_flows(frames) if flows is None else flows
    magnitude = flows.double().norm(dim=1)  # (F-1, H, W)
    pixels = to_255(frames).double()
    diffs = (pixels[1:] - pixels[:-1]).abs().mean(dim=(1, 2, 3))
    steps = (centres[1:] - centres[:-1]).double().norm(dim=1) if centres is not None else None
    out: dict[str, float] = {}
    for name, ts in groups.items():
        out[f"{name}_flow_mean"] = _mean([float(magnitude[t].mean()) for t in ts])
        out[f"{name}_flow_std"] = float(magnitude[ts].std(unbiased=False)) if ts else math.nan
        out[f"{name}_diff_mean"] = _mean([float(diffs[t]) for t in ts])
    jumps = [float(steps[t]) for t in groups["seam"]] if steps is not None else []
    inside = [float(steps[t]) for t in groups["inside"]] if steps is not None else []
    out["seam_jump_mean"] = _mean(jumps)
    out["inside_step_mean"] = _mean(inside)
    valid = [j for j in jumps if not math.isnan(j)]
    out["seam_jump_max"] = max(valid) if valid else math.nan
    step = out["inside_step_mean"]
    out["jump_ratio"] = out["seam_jump_mean"] / step if step and not math.isnan(step) else math.nan
    return {k: out[k] for k in SEAM_COLUMNS}
