"""Optical flow between consecutive frames, shared by MAWE and the seam statistics.

The flow is the project's own coarse-to-fine Lucas-Kanade (`stt2v_ray.video.interpolate.
FlowInterpolator.flow`), on CPU. The paper and its code use RAFT-large; RAFT weights are
not available here, so absolute numbers are not comparable with the paper's, only
between videos measured with this module.
"""
from __future__ import annotations

import torch
from torch import Tensor

from stt2v_ray.video.interpolate import FlowInterpolator

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def check_frames(frames: Tensor, what: str = "frames") -> Tensor:
    """(F,3,H,W) float in [-1, 1], the pipeline's convention; returned as float32."""
    if not isinstance(frames, Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"{what} must be a (F,3,H,W) tensor, got "
                         f"{tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__}")
    return frames.float()


def to_255(frames: Tensor) -> Tensor:
    """[-1, 1] -> [0, 255] float (the scale the original metrics work in)."""
    return (frames.float().clamp(-1, 1) + 1) * 127.5


def consecutive_flows(frames: Tensor, batch: int = 16, interpolator: FlowInterpolator | None = None) -> Tensor:
    """(F,3,H,W) -> (F-1, 2, H, W): flow[t] maps frame t onto t+1 (frame_t(x) ~ frame_t+1(x + flow)).

    Computed on luma, `batch` pairs at a time to bound memory on long videos.
    """
    frames = check_frames(frames)
    interpolator = interpolator or FlowInterpolator()
    gray = (frames * _LUMA).sum(dim=1, keepdim=True)
    pairs = frames.shape[0] - 1
    out = [interpolator.flow(gray[i:min(i + batch, pairs)], gray[i + 1:min(i + batch, pairs) + 1])
           for i in range(0, max(pairs, 0), batch)]
    if not out:
        return torch.zeros(0, 2, *frames.shape[-2:])
    return torch.cat(out)
