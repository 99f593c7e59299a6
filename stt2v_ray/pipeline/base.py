"""Base stage: the first chunk, then streaming chunks, yielded as soon as each is made.

Only the conditioning frames (the last F_cond of the previous chunk) and the anchor frame
are carried from one chunk to the next, so memory does not grow with the video's length.
With a ChunkStore, each chunk is checkpointed as it is made and the chunks already saved
are read back instead of generated: every random draw of chunk k is keyed by (seed,
purpose, k), and chunk k sees only (cond, anchor), so continuing from chunk n gives
bitwise the frames of an uninterrupted run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch

from stt2v_ray.pipeline.checkpoint import ChunkStore
from stt2v_ray.plan.chunks import base_plan


def stream_base_chunks(
    generator, job, total_frames: int, anchor_frame: int, clock: Callable | None = None,
    store: ChunkStore | None = None,
) -> Iterator[torch.Tensor]:
    """Yield (n, 3, H, W) pieces of new frames until exactly `total_frames` have been yielded.

    Chunk 0 is kept whole; chunk k > 0 regenerates the F_cond conditioning frames first
    (they are dropped, as in the original) and adds F - F_cond new ones.
    """
    plan = base_plan(total_frames, generator.chunk_frames, generator.cond_frames)
    saved = min(store.finished(), plan.num_chunks) if store is not None else 0
    cond = anchor = state = None
    remaining = total_frames
    for k in range(plan.num_chunks):
        if k < saved:
            with clock("base", f"chunk {k} (saved)") if clock else nullcontext():
                tensors = store.load(k)
            new, cond = tensors["new"], tensors["cond"]
            anchor = tensors["anchor"] if k == 0 else anchor
        else:
            if state is None:  # only when something is left to generate
                state = generator.prepare(job)
            with clock("base", f"chunk {k}") if clock else nullcontext():
                frames = generator.generate_chunk(state, k, cond, anchor)
            if k == 0:
                anchor = frames[min(anchor_frame, frames.shape[0] - 1)].clone()
            keep = plan.chunk(k)
            new = frames[keep.keep_from :][:remaining].clone()
            cond = frames[-generator.cond_frames :].clone()
            if store is not None:
                store.save(k, new, cond, anchor if k == 0 else None)
        remaining -= new.shape[0]
        yield new
        if remaining <= 0:
            return
