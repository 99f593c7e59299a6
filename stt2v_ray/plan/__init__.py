"""Pure math of the render: keyed noise, chunk plans, randomized blending, sampler steps.

Imports torch and the standard library only, so every executor (in-process or Ray) and
every shard computes the same plans, draws and sampler updates.
"""

from stt2v_ray.plan.blending import blend_video, draw_cut, merge_overlap, middle_cut, owned_range
from stt2v_ray.plan.chunks import (
    BaseChunk,
    BasePlan,
    EnhancePlan,
    base_frames_for_output,
    base_plan,
    enhance_plan,
    split_segments,
)
from stt2v_ray.plan.seeds import derive_seed, frame_noise, generator, randn

__all__ = [
    "BaseChunk",
    "BasePlan",
    "EnhancePlan",
    "base_frames_for_output",
    "base_plan",
    "blend_video",
    "derive_seed",
    "draw_cut",
    "enhance_plan",
    "frame_noise",
    "generator",
    "merge_overlap",
    "middle_cut",
    "owned_range",
    "randn",
    "split_segments",
]
