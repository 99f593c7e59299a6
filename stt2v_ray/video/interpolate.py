"""Frame interpolation by an integer factor: optical flow + backward warping, on CPU.

`FlowInterpolator` estimates dense bidirectional flow with coarse-to-fine Lucas-Kanade
(a Gaussian-windowed 2x2 solve per pixel, iterated with warping at every pyramid level),
builds the flows from time t to both ends (Super SloMo's linear approximation), warps both
frames there with `grid_sample` and blends them weighted by t, by forward-backward flow
consistency (a cheap occlusion cue) and by whether the warp samples inside its frame.
Pixels whose match leaves the image are left out of the flow solve. Deterministic: no
randomness anywhere.

A learned model (e.g. EMA-VFI) can replace it by implementing `Interpolator.midframes`.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class Interpolator(Protocol):
    def midframes(self, a: Tensor, b: Tensor, factor: int) -> Tensor:
        """(3,H,W) x2 -> (factor-1, 3,H,W): the frames at t = i/factor, i = 1 .. factor-1."""
        ...


def _check_factor(factor: int) -> None:
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"interpolation factor must be an integer >= 1, got {factor!r}")


def _gaussian_kernel(sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Separable blur of (N,C,H,W) with replicate borders."""
    c, r = x.shape[1], kernel.numel() // 2
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), ky, groups=c)


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences of (N,1,H,W), replicate borders."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
    return gx, gy


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: out(x) = image(x + flow(x)). image (N,C,H,W), flow (N,2,H,W) in pixels (dx, dy)."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    # Normalise to [-1, 1] with align_corners=True: pixel centres sit at integer coordinates.
    gx = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _inside(flow: Tensor) -> Tensor:
    """(N,H,W) float mask: 1 where x + flow(x) lies inside the image."""
    h, w = flow.shape[-2:]
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w) + flow[:, 0]
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1) + flow[:, 1]
    return ((xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)).float()


def _gray(frames: Tensor) -> Tensor:
    """(N,3,H,W) -> (N,1,H,W) luma."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=frames.dtype).view(1, 3, 1, 1)
    return (frames * weights).sum(dim=1, keepdim=True)


class FlowInterpolator:
    """Pyramidal Lucas-Kanade flow + bidirectional backward warping.

    min_size: the coarsest pyramid level is the last one with both sides >= min_size.
    iterations: warp-and-solve refinements per pyramid level.
    window_sigma: std of the Gaussian window over which the per-pixel LK system is summed.
    regularization: added to the structure tensor's diagonal so flat areas get ~zero flow.
    consistency_sigma: forward-backward flow error (pixels) at which a warp's weight falls to 1/e.
    max_step: largest flow update (pixels at the current level) one iteration may make.
    """

    def __init__(
        self,
        min_size: int = 8,
        max_levels: int = 6,
        iterations: int = 3,
        window_sigma: float = 2.0,
        regularization: float = 1e-4,
        consistency_sigma: float = 1.0,
        max_step: float = 1.0,
    ):
        if min_size < 4 or max_levels < 1 or iterations < 1:
            raise ValueError(
                f"need min_size >= 4, max_levels >= 1, iterations >= 1; "
                f"got {min_size}, {max_levels}, {iterations}"
            )
        self.min_size = min_size
        self.max_levels = max_levels
        self.iterations = iterations
        self.regularization = regularization
        self.consistency_sigma = consistency_sigma
        self.max_step = max_step
        self._window = _gaussian_kernel(window_sigma)
        self._presmooth = _gaussian_kernel(1.0)

    def _pyramid(self, x: Tensor) -> list[Tensor]:
        levels = [x]
        while len(levels) < self.max_levels:
            h, w = levels[-1].shape[-2:]
            nh, nw = (h + 1) // 2, (w + 1) // 2
            if min(nh, nw) < self.min_size:
                break
            levels.append(F.interpolate(levels[-1], size=(nh, nw), mode="bilinear", antialias=True))
        return levels[::-1]  # coarsest first

    def flow(self, src: Tensor, dst: Tensor) -> Tensor:
        """Dense flow (N,2,H,W) with src(x) ~ dst(x + flow(x)) for gray images (N,1,H,W)."""
        pyr_src = self._pyramid(_blur(src, self._presmooth))
        pyr_dst = self._pyramid(_blur(dst, self._presmooth))
        flow = torch.zeros(src.shape[0], 2, *pyr_src[0].shape[-2:])
        for level_src, level_dst in zip(pyr_src, pyr_dst, strict=False):
            h, w = level_src.shape[-2:]
            if flow.shape[-2:] != (h, w):
                scale = torch.tensor([w / flow.shape[-1], h / flow.shape[-2]]).view(1, 2, 1, 1)
                flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) * scale
            for _ in range(self.iterations):
                moved = warp(level_dst, flow)
                gx, gy = _gradients((level_src + moved) * 0.5)
                gt = moved - level_src
                # Pixels whose match falls outside dst carry no information: leave them out
                # of the window sums so they take the flow of their valid neighbours.
                m = _inside(flow).unsqueeze(1)
                terms = torch.cat([gx * gx, gx * gy, gy * gy, gx * gt, gy * gt], dim=1) * m
                sums = _blur(terms, self._window)
                sxx, sxy, syy, sxt, syt = sums.unbind(dim=1)
                sxx, syy = sxx + self.regularization, syy + self.regularization
                det = sxx * syy - sxy * sxy
                du = (-syy * sxt + sxy * syt) / det
                dv = (sxy * sxt - sxx * syt) / det
                # A step beyond a pixel or so is outside LK's linearisation (and diverges on
                # aliased texture); larger motion is found at coarser levels.
                step = torch.stack([du, dv], dim=1).clamp(-self.max_step, self.max_step)
                flow = flow + step
        return flow

    def midframes(self, a: Tensor, b: Tensor, factor: int) -> Tensor:
        _check_factor(factor)
        if a.ndim != 3 or a.shape[0] != 3 or a.shape != b.shape:
            raise ValueError(
                f"midframes expects two (3,H,W) frames of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if factor == 1:
            return a.new_zeros((0, *a.shape))
        a, b = a.float(), b.float()
        # 1. Bidirectional flow in one batch: f01 maps frame a onto b, f10 maps b onto a.
        gray = _gray(torch.stack([a, b]))
        flows = self.flow(gray, gray.flip(0))
        f01, f10 = flows[0:1], flows[1:2]
        # 2. Forward-backward consistency: small where both flows agree (not occluded).
        err01 = (f01 + warp(f10, f01)).norm(dim=1, keepdim=True)
        err10 = (f10 + warp(f01, f10)).norm(dim=1, keepdim=True)
        # 3. Flows from time t back to each end (linear motion), for all t in one batch.
        t = (torch.arange(1, factor, dtype=torch.float32) / factor).view(-1, 1, 1, 1)
        ft0 = -(1 - t) * t * f01 + t * t * f10
        ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
        n = t.shape[0]
        warped0 = warp(a.expand(n, -1, -1, -1), ft0)
        warped1 = warp(b.expand(n, -1, -1, -1), ft1)
        # 4. Blend weighted by closeness in time and by flow consistency at the sampled points.
        #    A warp that samples outside its frame (content entering the view) gets no weight.
        vis0 = torch.exp(-((warp(err01.expand(n, -1, -1, -1), ft0) / self.consistency_sigma) ** 2))
        vis1 = torch.exp(-((warp(err10.expand(n, -1, -1, -1), ft1) / self.consistency_sigma) ** 2))
        vis0 = vis0 * _inside(ft0).unsqueeze(1)
        vis1 = vis1 * _inside(ft1).unsqueeze(1)
        w0 = (1 - t) * vis0 + 1e-6
        w1 = t * vis1 + 1e-6
        out = (w0 * warped0 + w1 * warped1) / (w0 + w1)
        return out.clamp(-1, 1)


class StreamingInterpolator:
    """Interpolates a frame stream holding only the previous frame (memory independent of length).

    N pushed frames give (N-1)*factor + 1 output frames; original i sits at output i*factor.
    """

    def __init__(self, interpolator: Interpolator, factor: int):
        _check_factor(factor)
        self.interpolator = interpolator
        self.factor = factor
        self._prev: Tensor | None = None

    def push(self, frame: Tensor) -> list[Tensor]:
        """Add one (3,H,W) frame; return the output frames that are ready now, in order."""
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"push expects one (3,H,W) frame, got shape {tuple(frame.shape)}")
        out: list[Tensor] = []
        if self._prev is not None:
            if self._prev.shape != frame.shape:
                raise ValueError(f"frame shape changed from {tuple(self._prev.shape)} to {tuple(frame.shape)}")
            out.extend(self.interpolator.midframes(self._prev, frame, self.factor).unbind(0))
        out.append(frame)
        self._prev = frame
        return out

    def flush(self) -> list[Tensor]:
        """End the stream: return what is still pending (every frame is emitted on push, so
        nothing is) and reset, so the object can take a new stream."""
        self._prev = None
        return []


def interpolate_video(frames: Tensor, factor: int, interpolator: Interpolator | None = None) -> Tensor:
    """(F,3,H,W) -> ((F-1)*factor + 1, 3,H,W) in one call (the batch reference of the stream)."""
    _check_factor(factor)
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"interpolate_video expects (F,3,H,W) frames with F >= 1, got {tuple(frames.shape)}")
    interpolator = interpolator or FlowInterpolator()
    out = [frames[:1]]
    for i in range(1, frames.shape[0]):
        out.append(interpolator.midframes(frames[i - 1], frames[i], factor))
        out.append(frames[i : i + 1])
    return torch.cat(out)
