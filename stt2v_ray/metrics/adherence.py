"""Prompt adherence for prompts of the toy grammar ("a red circle moving right on a black background").

From the object track (`track.py`), per video:
- colour_match: fraction of ALL frames whose object was found and whose colour's nearest
  palette colour is the prompt's (a frame without an object counts as a miss);
- shape_match: likewise for the mask's shape class;
- background_match: fraction of frames whose border colour is nearest the prompt's background;
- direction: the dominant axis and sign of the object's first moves (the displacement over
  the first `window` frames after it is first seen, at least `min_travel` pixels, else None);
  direction_match is 1.0 when it is the prompt's, else 0.0. Bouncing turns an object around
  later, so only the start says where it was told to go.
"""
from __future__ import annotations

from torch import Tensor

from stt2v_ray.data.clips import BACKGROUNDS, COLOURS, DIRECTIONS, ToyPrompt
from stt2v_ray.metrics.track import Track, classify_shape, nearest_name, track_object

ADHERENCE_COLUMNS = ("object_found", "colour_match", "shape_match", "background_match", "direction",
                     "direction_match")


def motion_direction(track: Track, window: int = 8, min_travel: float = 1.0) -> str | None:
    """right/left/up/down of the first moves, or None (object never seen, or it barely moved)."""
    found = track.found.nonzero().flatten()
    if found.numel() < 2:
        return None
    first = int(found[0])
    later = [int(i) for i in found if first < int(i) <= first + window]
    if not later:
        return None
    dx, dy = (track.centres[later[-1]] - track.centres[first]).tolist()
    if max(abs(dx), abs(dy)) < min_travel:
        return None
    sign = lambda v: 1 if v > 0 else -1  # noqa: E731
    vector = (sign(dx), 0) if abs(dx) >= abs(dy) else (0, sign(dy))
    return next(name for name, d in DIRECTIONS.items() if d == vector)


def prompt_adherence(frames: Tensor, prompt: ToyPrompt, track: Track | None = None,
                     window: int = 8) -> dict[str, float | str | None]:
    """The ADHERENCE_COLUMNS of one video (F,3,H,W) in [-1, 1] against a parsed toy prompt."""
    track = track_object(frames) if track is None else track
    n = track.centres.shape[0]
    colour = shape = 0
    for i in range(n):
        if not bool(track.found[i]):
            continue
        colour += nearest_name(track.colours[i], COLOURS) == prompt.colour
        shape += classify_shape(track.masks[i]) == prompt.shape
    background = sum(nearest_name(track.backgrounds[i], BACKGROUNDS) == prompt.background for i in range(n))
    direction = motion_direction(track, window)
    return {
        "object_found": float(track.found.double().mean()) if n else 0.0,
        "colour_match": colour / n if n else 0.0,
        "shape_match": shape / n if n else 0.0,
        "background_match": background / n if n else 0.0,
        "direction": direction,
        "direction_match": float(direction == prompt.direction),
    }
