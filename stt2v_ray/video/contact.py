"""Contact sheet: a grid of evenly spaced frames of a video, saved as `<video>.png` beside it.

Fed the frames as they are encoded, it keeps only the few it will show, so a long video
costs no more memory than a short one.
"""
from __future__ import annotations

import math
import posixpath

import numpy as np
from PIL import Image, ImageDraw

from stt2v_ray.storage import atomic_output

MAX_TILES, COLUMNS, MIN_TILE = 16, 8, 128  # tiles are upscaled (nearest) to at least MIN_TILE px


def sheet_uri(video_uri: str) -> str:
    root, _ = posixpath.splitext(video_uri)
    return root + ".png"


class ContactSheet:
    def __init__(self, num_frames: int, tiles: int = MAX_TILES, columns: int = COLUMNS):
        if num_frames < 1:
            raise ValueError(f"ContactSheet needs num_frames >= 1, got {num_frames}")
        count = min(tiles, num_frames)
        # evenly spaced, first and last frame included
        self.indices = sorted({round(i * (num_frames - 1) / max(1, count - 1)) for i in range(count)})
        self.columns = min(columns, len(self.indices))
        self.frames: dict[int, np.ndarray] = {}

    def add(self, frames: np.ndarray, start: int) -> None:
        """frames (n, H, W, 3) uint8 that are video frames start .. start + n - 1."""
        for index in self.indices:
            if start <= index < start + frames.shape[0]:
                self.frames[index] = frames[index - start].copy()

    def image(self) -> Image.Image:
        missing = [i for i in self.indices if i not in self.frames]
        if missing:
            raise ValueError(f"ContactSheet: frames {missing} never arrived")
        h, w = self.frames[self.indices[0]].shape[:2]
        scale = max(1, math.ceil(MIN_TILE / max(h, w)))
        th, tw, label = h * scale, w * scale, 14
        rows = math.ceil(len(self.indices) / self.columns)
        sheet = Image.new("RGB", (self.columns * tw, rows * (th + label)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, index in enumerate(self.indices):
            x, y = (k % self.columns) * tw, (k // self.columns) * (th + label)
            tile = Image.fromarray(self.frames[index]).resize((tw, th), Image.NEAREST)
            sheet.paste(tile, (x, y + label))
            draw.text((x + 2, y + 1), f"frame {index}", fill="black")
        return sheet

    def save(self, uri: str, storage_options: dict | None = None) -> None:
        with atomic_output(uri, storage_options) as local:
            self.image().save(local, format="PNG")
