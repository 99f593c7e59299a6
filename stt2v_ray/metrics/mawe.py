"""MAWE (mean warp error): how well each frame is predicted by warping its predecessor.

Two variants exist (see ../shared/reference/streamingt2v-facts.md):
- `mawe` implements the CODE's definition (StreamingModelscope `mawe.py`): for every
  consecutive pair, forward-splat frame t onto frame t+1's grid with the ROUNDED flow
  (several sources landing on one pixel: the last in raster order wins), mask the pixels
  nothing landed on, W_t = mean squared error over known pixels and channels on the
  0-255 scale, M_t = mean flow magnitude; MAWE = mean over t of W_t / (9.5 * M_t).
- `mawe_paper` is the paper's ratio W(V) / OFS(V): mean of W_t over mean squared flow
  magnitude.
Differences from the original, on purpose: flow is this project's Lucas-Kanade, not
RAFT (no RAFT weights here), and frames are not resized to 720x720, so values compare
between videos of one size measured here, not with the paper's table. Pairs with no
motion at all (M_t = 0, e.g. a still video) are left out of the code variant's mean,
where the original would divide by zero; a video with no motion anywhere gives NaN.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from stt2v_ray.metrics.flow import check_frames, consecutive_flows, to_255

CODE_COEFF = 9.5  # the original's `--coeff` default


def forward_splat(left: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """(3,H,W) frame, (2,H,W) flow -> (warped (3,H,W), known (H,W) bool): left pushed along round(flow)."""
    _, h, w = left.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    tx = torch.round(xs + flow[0]).long()
    ty = torch.round(ys + flow[1]).long()
    valid = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    source = (ys * w + xs)[valid]
    target = (ty * w + tx)[valid]
    # The original assigns with numpy fancy indexing, where the last duplicate wins:
    # keep the largest raster index per target (deterministic, same result).
    winner = torch.full((h * w,), -1, dtype=torch.long)
    winner.scatter_reduce_(0, target, source, reduce="amax")
    known = winner >= 0
    warped = torch.zeros(3, h * w, dtype=left.dtype)
    warped[:, known] = left.reshape(3, -1)[:, winner[known]]
    return warped.view(3, h, w), known.view(h, w)


def warp_errors(frames: Tensor, flows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per pair t: (W_t, mean |flow_t|, mean |flow_t|^2), each (F-1,) float64, on the 0-255 scale."""
    frames = check_frames(frames)
    flows = consecutive_flows(frames) if flows is None else flows
    if flows.shape != (frames.shape[0] - 1, 2, *frames.shape[-2:]):
        raise ValueError(f"flows must be (F-1, 2, H, W) = {(frames.shape[0] - 1, 2, *frames.shape[-2:])}, "
                         f"got {tuple(flows.shape)}")
    pixels = to_255(frames)
    errors, motion, motion_sq = [], [], []
    for t in range(frames.shape[0] - 1):
        warped, known = forward_splat(pixels[t], flows[t])
        n = int(known.sum()) * 3
        diff = (pixels[t + 1] - warped) * known
        # No known pixel: the original divides by all pixels, i.e. the error is 0.
        errors.append(float((diff.double() ** 2).sum()) / (n if n else diff.numel()))
        magnitude = flows[t].double().norm(dim=0)
        motion.append(float(magnitude.mean()))
        motion_sq.append(float((magnitude ** 2).mean()))
    as_t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return as_t(errors), as_t(motion), as_t(motion_sq)


def mawe(frames: Tensor, flows: Tensor | None = None, coeff: float = CODE_COEFF) -> float:
    """The code's MAWE: mean over moving pairs of W_t / (coeff * mean |flow_t|). NaN if nothing moves."""
    errors, motion, _ = warp_errors(frames, flows)
    moving = motion > 0
    if not bool(moving.any()):
        return math.nan
    return float((errors[moving] / (coeff * motion[moving])).mean())


def mawe_paper(frames: Tensor, flows: Tensor | None = None) -> float:
    """The paper's ratio W(V) / OFS(V): mean warp error over mean squared flow magnitude."""
    errors, _, motion_sq = warp_errors(frames, flows)
    ofs = float(motion_sq.mean()) if motion_sq.numel() else 0.0
    return float(errors.mean()) / ofs if ofs > 0 else math.nan
