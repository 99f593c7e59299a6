"""Procedural training and test data: toy clips with prompts from a small grammar."""
from stt2v_ray.data.clips import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    SHAPES,
    SPEEDS,
    Clip,
    ClipSpec,
    ToyPrompt,
    clip_for_prompt,
    clip_from_spec,
    make_clip,
    object_path,
    parse_prompt,
    render_clip,
    render_coverage,
    sample_spec,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "DIRECTIONS", "SHAPES", "SPEEDS", "Clip", "ClipSpec", "ToyPrompt",
    "clip_for_prompt", "clip_from_spec", "make_clip", "object_path", "parse_prompt", "render_clip", "render_coverage",
    "sample_spec",
]
