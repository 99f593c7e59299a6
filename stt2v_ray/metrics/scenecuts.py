"""Scene cuts (SCuts): a reimplementation of PySceneDetect's AdaptiveDetector, default parameters.

The paper counts cuts with PySceneDetect's AdaptiveDetector at its defaults. This follows
scenedetect/detectors/adaptive_detector.py and content_detector.py (Breakthrough/
PySceneDetect, read at commit 006fe37b), without depending on OpenCV:
- content value of frame i (i >= 1): the mean, over hue, saturation and value, of the
  mean absolute difference to frame i-1, on OpenCV's 8-bit HSV (H in [0, 180), S and V in
  [0, 255]); default component weights (1, 1, 1, edges 0). Frame 0 scores 0.
- adaptive ratio of frame i: its content value over the mean of the `window_width`
  frames before and after it (capped at 255; 255 when that mean is ~0 and the value
  reaches `min_content_val`). Frames within `window_width` of either end get no ratio.
- frame i is a cut when ratio >= adaptive_threshold (3.0), content value >=
  min_content_val (15.0), and the frame being read (i + window_width) is at least
  min_scene_len (15) frames after the last cut (initially frame 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stt2v_ray.metrics.flow import check_frames

ADAPTIVE_THRESHOLD = 3.0
MIN_SCENE_LEN = 15
WINDOW_WIDTH = 2
MIN_CONTENT_VAL = 15.0


def hsv_u8(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) uint8 HSV as OpenCV's COLOR_RGB2HSV (H = degrees / 2)."""
    x = rgb.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    delta = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * delta / np.where(v > 0, v, 1), 0.0)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(v == r, 60.0 * (g - b) / safe,
                 np.where(v == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe))
    h = np.where(delta > 0, h, 0.0)
    h = np.where(h < 0, h + 360.0, h)
    out = np.stack([np.rint(h / 2), np.rint(s), np.rint(v)], axis=-1)
    out[..., 0] = np.where(out[..., 0] >= 180, out[..., 0] - 180, out[..., 0])
    return out.astype(np.uint8)


def frames_u8(frames: Tensor | np.ndarray) -> np.ndarray:
    """(F,3,H,W) float [-1, 1] tensor or (F,H,W,3) uint8 array -> (F,H,W,3) uint8."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (F,H,W,3), got {frames.dtype} {frames.shape}")
        return frames
    x = torch.floor((check_frames(frames).clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def content_values(frames: Tensor | np.ndarray) -> np.ndarray:
    """(F,) content value per frame (0 for frame 0), as ContentDetector's `content_val`."""
    hsv = hsv_u8(frames_u8(frames)).astype(np.int32)
    scores = np.zeros(hsv.shape[0])
    if hsv.shape[0] > 1:
        scores[1:] = np.abs(hsv[1:] - hsv[:-1]).mean(axis=(1, 2)).mean(axis=-1)
    return scores


@dataclass(frozen=True)
class SceneCuts:
    cuts: tuple[int, ...]  # frame index where each new scene starts
    content: tuple[float, ...]  # content value per frame

    @property
    def count(self) -> int:
        return len(self.cuts)


def detect_scene_cuts(frames: Tensor | np.ndarray, adaptive_threshold: float = ADAPTIVE_THRESHOLD,
                      min_scene_len: int = MIN_SCENE_LEN, window_width: int = WINDOW_WIDTH,
                      min_content_val: float = MIN_CONTENT_VAL) -> SceneCuts:
    """AdaptiveDetector over a whole video (defaults as PySceneDetect's)."""
    if window_width < 1:
        raise ValueError(f"window_width must be at least 1, got {window_width}")
    scores = content_values(frames)
    cuts, last_cut = [], 0
    for current in range(2 * window_width, len(scores)):
        target = current - window_width
        neighbours = np.concatenate([scores[current - 2 * window_width:target], scores[target + 1:current + 1]])
        average = float(neighbours.sum()) / (2.0 * window_width)
        score = float(scores[target])
        if abs(average) >= 1e-5:
            ratio = min(score / average, 255.0)
        else:
            ratio = 255.0 if score >= min_content_val else 0.0
        if ratio >= adaptive_threshold and score >= min_content_val and current - last_cut >= min_scene_len:
            last_cut = target
            cuts.append(target)
    return SceneCuts(tuple(cuts), tuple(float(s) for s in scores))


def scene_cuts(frames: Tensor | np.ndarray) -> int:
    """SCuts: number of cuts AdaptiveDetector finds with its default parameters."""
    return detect_scene_cuts(frames).count
