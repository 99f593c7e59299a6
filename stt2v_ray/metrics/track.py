"""Object tracker for toy videos: segment by distance from the background colour, centroid per frame.

Toy videos show one object on a plain background. Per frame:
1. background colour = the per-channel median of the frame's border pixels (or given);
2. distance of every pixel from it (RGB, [-1, 1] units); the object's colour = the median
   of the pixels at >= 75% of the largest distance (its interior, not its soft edge);
3. coverage alpha = distance / distance(object colour, background), clamped to [0, 1],
   ignoring pixels below `threshold` (noise); centroid = alpha-weighted mean position,
   so anti-aliased edges give sub-pixel accuracy; the hard mask is alpha >= 0.5.
A frame whose mask has fewer than `min_area` pixels has no object (NaN centre).
No connected components: stray pixels of a noisy model output pull the centroid a bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stt2v_ray.metrics.flow import check_frames


@dataclass(frozen=True)
class Track:
    centres: Tensor  # (F, 2) float64 (x, y); NaN where no object was found
    areas: Tensor  # (F,) pixels of the hard mask
    colours: Tensor  # (F, 3) object colour, 0-255 (NaN where not found)
    backgrounds: Tensor  # (F, 3) background colour, 0-255
    masks: Tensor  # (F, H, W) bool hard masks

    @property
    def found(self) -> Tensor:
        return ~torch.isnan(self.centres[:, 0])

    def steps(self) -> Tensor:
        """(F-1,) distance the centre moved between frame t and t+1 (NaN when either is missing)."""
        return (self.centres[1:] - self.centres[:-1]).norm(dim=1)


def border_pixels(frame: Tensor) -> Tensor:
    """(3,H,W) -> (3, n) pixels of the outermost rows and columns."""
    return torch.cat([frame[:, 0, :], frame[:, -1, :], frame[:, 1:-1, 0], frame[:, 1:-1, -1]], dim=1)


def track_object(frames: Tensor, background: tuple[float, float, float] | None = None,
                 threshold: float = 0.3, min_area: int = 3) -> Track:
    """Track the one object of a toy video (F,3,H,W) in [-1, 1]; `background` as 0-255 RGB if known."""
    frames = check_frames(frames)
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    centres = torch.full((n, 2), float("nan"), dtype=torch.float64)
    colours = torch.full((n, 3), float("nan"), dtype=torch.float64)
    areas = torch.zeros(n, dtype=torch.long)
    backgrounds = torch.zeros(n, 3, dtype=torch.float64)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    given = None if background is None else torch.tensor(background, dtype=torch.float32) / 127.5 - 1
    for i, frame in enumerate(frames):
        bg = given if given is not None else border_pixels(frame).median(dim=1).values
        backgrounds[i] = ((bg.double() + 1) * 127.5)
        dist = (frame - bg.view(3, 1, 1)).norm(dim=0)
        peak = float(dist.max())
        if peak < threshold:
            continue
        interior = dist >= 0.75 * peak
        fg = frame[:, interior].median(dim=1).values
        reference = float((fg - bg).norm())
        alpha = torch.where(dist >= threshold, (dist / reference).clamp(0, 1), torch.zeros_like(dist)).double()
        mask = alpha >= 0.5
        if int(mask.sum()) < min_area:
            continue
        total = alpha.sum()
        centres[i, 0] = (alpha * xs).sum() / total
        centres[i, 1] = (alpha * ys).sum() / total
        colours[i] = (fg.double() + 1) * 127.5
        areas[i] = int(mask.sum())
        masks[i] = mask
    return Track(centres, areas, colours, backgrounds, masks)


def classify_shape(mask: Tensor) -> str | None:
    """circle / square / triangle from the mask's moments (None for an empty mask).

    Fill of the bounding box (m00 / box area): square ~1, circle ~pi/4, triangle ~1/2;
    the triangle's centroid (m01 / m00) also sits 1/6 of its height below the box centre.
    Assumes axis-aligned shapes, as the toy generator draws them.
    """
    if not bool(mask.any()):
        return None
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    box_h, box_w = bottom - top + 1, right - left + 1
    area = float(mask.sum())
    fill = area / (box_h * box_w)
    ys = torch.nonzero(mask)[:, 0].double()
    offset = (float(ys.mean()) - (top + bottom) / 2) / box_h
    if fill >= 0.9:
        return "square"
    if fill < 0.65 or abs(offset) > 0.08:
        return "triangle"
    return "circle"


def nearest_name(rgb: Tensor, palette: dict[str, tuple[int, int, int]]) -> str | None:
    """Name of the palette colour nearest to `rgb` (0-255), None for NaN."""
    if bool(torch.isnan(rgb).any()):
        return None
    names = list(palette)
    table = torch.tensor([palette[k] for k in names], dtype=torch.float64)
    return names[int((table - rgb.double().view(1, 3)).norm(dim=1).argmin())]
