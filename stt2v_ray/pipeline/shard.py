"""One enhancer shard: a contiguous segment of a video's chunk plan, denoised step by step.

At step i the shard denoises each of its chunks (one model forward each), then needs only
its neighbours' border pieces of step i (their chunk outputs over the overlap frames at
the shared border) to build x^(i+1) for its own chunks. `step(i, left, right)` takes the
neighbours' border pieces of step i-1 and returns its own of step i, so a driver chains
one call per shard per step and nothing else crosses between shards.

The arithmetic is `denoise_chunk` / `next_latents` / `gather` of `enhance.py`, the same
calls the in-process wavefront makes, so any number of shards gives bitwise the same
frames. A shard holds its segment's latents (latent resolution) and low-res input frames.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import torch

from stt2v_ray.pipeline.enhance import (
    EnhanceRecipe,
    Piece,
    batches_contexts,
    chunk_context,
    denoise_chunk,
    gather,
    initial_latents,
    next_latents,
    own_latents,
    video_contexts,
)
from stt2v_ray.plan.blending import owned_range


def _slice_out(out, a: int, b: int):
    """Frames a:b of a chunk output (a tensor, or the (x0, eps) pair)."""
    return (out[0][a:b], out[1][a:b]) if isinstance(out, tuple) else out[a:b]


class SegmentEnhancer:
    def __init__(self, enhancer, state, recipe: EnhanceRecipe, first_chunk: int, end_chunk: int, clock=None):
        self.enhancer, self.state, self.recipe = enhancer, state, recipe
        self.plan = recipe.plan
        self.k0, self.k1 = first_chunk, end_chunk  # chunks [k0, k1)
        chunks = self.plan.chunks
        self.frame_start, self.frame_end = chunks[first_chunk][0], chunks[end_chunk - 1][1]
        self._low: dict[int, torch.Tensor] = {}  # video frame -> low-res frame (until step 0)
        self._out: dict[int, Piece] = {}  # chunk -> its output at the last step run
        self._ctx: dict[int, object] = {}  # chunk -> its conditioning (computed at step 0)
        self._step = -1
        self.clock = clock
        # Batched contexts need every chunk's first frame: each shard computes them all (same inputs, same calls).
        self._batched = batches_contexts(enhancer)
        key_starts = [s for s, _ in chunks] if self._batched else []
        self.extra_frames = [f for f in key_starts if not self.frame_start <= f < self.frame_end]

    # ------------------------------------------------------------------ input
    def feed(self, start: int, frames: torch.Tensor) -> None:
        """Base frames [start, start + n); frames outside this segment are ignored."""
        for f in range(max(start, self.frame_start), min(start + frames.shape[0], self.frame_end)):
            self._low[f] = frames[f - start]
        for f in self.extra_frames:
            if start <= f < start + frames.shape[0]:
                self._low[f] = frames[f - start]

    def missing_frames(self) -> int:
        return (self.frame_end - self.frame_start) + len(self.extra_frames) - len(self._low)

    # ------------------------------------------------------------------ steps
    def border_pieces(self) -> tuple[Piece | None, Piece | None]:
        """(head, tail): this segment's outputs over the overlaps shared with its neighbours."""
        overlap = self.plan.overlap
        chunks = self.plan.chunks
        head = tail = None
        if self.k0 > 0 and overlap:
            s, out = self._out[self.k0]
            head = (s, _slice_out(out, 0, overlap))
        if self.k1 < len(chunks) and overlap:
            s, out = self._out[self.k1 - 1]
            tail = (chunks[self.k1][0], _slice_out(out, chunks[self.k1][0] - s, chunks[self.k1 - 1][1] - s))
        return head, tail

    def _pieces(self, left: Piece | None, right: Piece | None) -> dict[int, Piece]:
        pieces = dict(self._out)
        if left is not None:
            pieces[self.k0 - 1] = left
        if right is not None:
            pieces[self.k1] = right
        return pieces

    def step(self, i: int, left: Piece | None = None, right: Piece | None = None):
        """Run step i on every chunk; `left`/`right`: the neighbours' border pieces of step i-1."""
        if i != self._step + 1:
            raise RuntimeError(f"segment [{self.k0}, {self.k1}): step {i} after step {self._step}")
        if i == 0 and self.missing_frames():
            raise RuntimeError(f"segment [{self.k0}, {self.k1}): {self.missing_frames()} input frames missing")
        r = self.recipe
        pieces = self._pieces(left, right)
        cuts = r.cuts(i - 1) if i > 0 else None
        inputs = {}
        if i == 0 and self._batched:
            with self._span("key frames"):
                keyed = video_contexts(self.enhancer, self.state, r, torch.stack([self._low[s] for s, _ in self.plan.chunks]))
            self._ctx = {k: keyed[k] for k in range(self.k0, self.k1)}
        for k in range(self.k0, self.k1):
            s, e = self.plan.chunks[k]
            if i == 0:
                low = torch.stack([self._low[f] for f in range(s, e)])
                inputs[k] = ("encode", low)
            elif r.blending == "none":
                inputs[k] = own_latents(self.enhancer, r, pieces[k], i - 1)
            else:
                inputs[k] = next_latents(self.enhancer, r, self.plan, cuts, pieces, i - 1, s, e)
        out = {}
        for k, x in inputs.items():
            s = self.plan.chunks[k][0]
            with self._span(f"chunk {k} step {i}"):
                if isinstance(x, tuple):
                    if not self._batched:
                        self._ctx[k] = chunk_context(self.enhancer, self.state, r, s, x[1])
                    x = initial_latents(self.enhancer, r, k, x[1], s)
                out[k] = (s, denoise_chunk(self.enhancer, self.state, r, x, i, s, self._ctx[k]))
        self._out, self._step = out, i
        if i == 0:
            self._low.clear()
        return self.border_pieces()

    # ------------------------------------------------------------------ output
    def owned_frames(self) -> tuple[int, int]:
        """Frames of the final video this segment emits (final-step cuts at its borders)."""
        cuts = self.recipe.cuts(self._step)
        return owned_range(self.plan, self.k0, cuts)[0], owned_range(self.plan, self.k1 - 1, cuts)[1]

    def finish(self, left: Piece | None = None, right: Piece | None = None, limit: int | None = None
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """Decode the owned final frames chunk by chunk: yields (start, frames); frames >= limit dropped."""
        r, last = self.recipe, self._step
        if last != r.num_steps - 1:
            raise RuntimeError(f"segment [{self.k0}, {self.k1}): finish after step {last} of {r.num_steps}")
        pieces = self._pieces(left, right)
        cuts = r.cuts(last)
        if r.blending == "none":
            pieces = {k: (p[0], own_latents(self.enhancer, r, p, last)) for k, p in pieces.items()}
        end_all = limit if limit is not None else self.plan.padded_frames
        for k in range(self.k0, self.k1):
            a, b = owned_range(self.plan, k, cuts)
            b = min(b, end_all)
            if a >= b:
                continue
            with self._span(f"decode frames {a}-{b - 1}"):
                if r.blending == "none":
                    latents = gather(self.plan, cuts, pieces, a, b)
                else:
                    latents = next_latents(self.enhancer, r, self.plan, cuts, pieces, last, a, b)
                frames = self.enhancer.decode(latents)
            yield a, frames
        self._out, self._ctx = {}, {}

    def _span(self, unit: str):
        return self.clock("enhance", unit) if self.clock else nullcontext()


def enhance_by_segments(enhancer, state, recipe: EnhanceRecipe, base_frames, shards: int,
                        limit: int | None = None) -> Iterator[torch.Tensor]:
    """All shards in this process, one after another: what the Ray gang does in parallel.

    The same call sequence as the Ray driver: feed, one `step` per shard per step with the
    neighbours' border pieces of the previous step, then `finish`.
    """
    from stt2v_ray.plan.chunks import split_segments

    segments = [SegmentEnhancer(enhancer, state, recipe, a, b)
                for a, b in split_segments(recipe.plan.num_chunks, shards)]
    start = 0
    for piece in base_frames:
        for seg in segments:
            seg.feed(start, piece)
        start += piece.shape[0]
    borders = [(None, None)] * len(segments)
    for i in range(recipe.num_steps):
        borders = [seg.step(i, *neighbour_borders(borders, j)) for j, seg in enumerate(segments)]
    for j, seg in enumerate(segments):
        for _, frames in seg.finish(*neighbour_borders(borders, j), limit=limit):
            yield frames


def neighbour_borders(borders: list, j: int) -> tuple[Piece | None, Piece | None]:
    """Shard j's inputs: the left neighbour's tail piece and the right neighbour's head piece."""
    left = borders[j - 1][1] if j > 0 else None
    right = borders[j + 1][0] if j + 1 < len(borders) else None
    return left, right
