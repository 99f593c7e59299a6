"""Randomized blending of overlapping enhancer chunks (StreamingT2V, Sec. on enhancement).

At each denoising step every chunk is denoised from the same x_t; the results are then
merged. In the overlap between chunk b and b + 1, a cut r is drawn per boundary per
step: chunk b keeps the first r overlap frames and chunk b + 1 supplies the rest. The
random seam position hides chunk borders. The merge is pure selection (no arithmetic),
so it is exact and order independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stt2v_ray.plan.chunks import EnhancePlan
from stt2v_ray.plan.seeds import generator


def draw_cut(seed: int, step: int, boundary: int, overlap: int) -> int:
    """Cut r for `boundary` at denoising `step`, uniform in {0, ..., overlap - 1}.

    The original code draws from {0, ..., O - 1}; the paper writes {0, ..., O}. We follow
    the code. The draw is keyed by (seed, "blend-cut", step, boundary), so every shard
    that touches the boundary draws the same r. `overlap == 0` gives 0.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if step < 0 or boundary < 0:
        raise ValueError(f"step and boundary must be >= 0, got step={step}, boundary={boundary}")
    if overlap == 0:
        return 0
    g = generator(seed, "blend-cut", step, boundary)
    return int(torch.randint(0, overlap, (1,), generator=g).item())


def middle_cut(overlap: int) -> int:
    """The fixed cut of the no-randomization ablation: the middle of the overlap."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    return overlap // 2


def merge_overlap(prev_tail: torch.Tensor, next_head: torch.Tensor, cut: int) -> torch.Tensor:
    """Merge one overlap (O, ...): frames [0, cut) from `prev_tail`, [cut, O) from `next_head`."""
    if prev_tail.shape != next_head.shape:
        raise ValueError(f"overlap shapes differ: prev {tuple(prev_tail.shape)} vs next {tuple(next_head.shape)}")
    if not 0 <= cut <= prev_tail.shape[0]:
        raise ValueError(f"cut must be in [0, {prev_tail.shape[0]}], got {cut}")
    return torch.cat([prev_tail[:cut], next_head[cut:]])


def owned_range(plan: EnhancePlan, k: int, cuts: Sequence[int]) -> tuple[int, int]:
    """Video frames [start, end) that the merged step takes from chunk k, given the cuts."""
    if not 0 <= k < plan.num_chunks:
        raise ValueError(f"chunk index must be in [0, {plan.num_chunks}), got {k}")
    _check_cuts(plan, cuts)
    start, end = plan.chunks[k]
    if k > 0:
        start += cuts[k - 1]
    if k < plan.num_chunks - 1:
        end = plan.chunks[k + 1][0] + cuts[k]
    return start, end


def blend_video(chunk_outputs: Sequence[torch.Tensor], plan: EnhancePlan, cuts: Sequence[int]) -> torch.Tensor:
    """Reference merge of one step over the whole video -> (padded_frames, ...).

    chunk_outputs[k] covers plan.chunks[k]; cuts[b] is the cut of boundary b.
    """
    if len(chunk_outputs) != plan.num_chunks:
        raise ValueError(f"expected {plan.num_chunks} chunk outputs, got {len(chunk_outputs)}")
    _check_cuts(plan, cuts)
    frame_shape = tuple(chunk_outputs[0].shape[1:])
    pieces = []
    for k, (out, (start, end)) in enumerate(zip(chunk_outputs, plan.chunks, strict=False)):
        if out.shape[0] != end - start or tuple(out.shape[1:]) != frame_shape:
            raise ValueError(
                f"chunk {k} output has shape {tuple(out.shape)}, expected ({end - start}, *{frame_shape})"
            )
        own_start, own_end = owned_range(plan, k, cuts)
        pieces.append(out[own_start - start : own_end - start])
    return torch.cat(pieces)


def _check_cuts(plan: EnhancePlan, cuts: Sequence[int]) -> None:
    if len(cuts) != len(plan.boundaries):
        raise ValueError(f"expected {len(plan.boundaries)} cuts (one per boundary), got {len(cuts)}")
    for b, cut in enumerate(cuts):
        if not 0 <= cut <= plan.overlap:
            raise ValueError(f"cut of boundary {b} must be in [0, {plan.overlap}], got {cut}")
