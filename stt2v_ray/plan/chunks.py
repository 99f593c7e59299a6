"""Chunk plans: which frames each chunk of the base stage and of the enhancer covers.

Frame indices are video indices, ranges are half-open [start, end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def base_frames_for_output(num_frames: int, factor: int) -> int:
    """Base frames B such that interpolating by `factor` ((B - 1) * factor + 1 frames) covers `num_frames`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return math.ceil((num_frames - 1) / factor) + 1


@dataclass(frozen=True)
class BaseChunk:
    """One chunk of the base stage: keep its frames [keep_from, keep_from + num_kept)."""

    index: int
    keep_from: int  # index into the chunk's own frames of the first kept frame
    video_start: int  # video index of the first kept frame
    num_kept: int


@dataclass(frozen=True)
class BasePlan:
    """Streaming plan of the base stage.

    Chunk 0 makes `chunk_frames` frames and keeps them all. Every later chunk is
    conditioned on the last `cond_frames` kept frames; its first `cond_frames` frames
    regenerate that span and are dropped, the other `chunk_frames - cond_frames` are new.
    """

    total_frames: int  # frames asked for
    chunk_frames: int
    cond_frames: int
    num_chunks: int

    @property
    def new_per_chunk(self) -> int:
        return self.chunk_frames - self.cond_frames

    @property
    def generated_frames(self) -> int:
        """Frames kept in total (>= total_frames: the last chunk may overshoot)."""
        return self.chunk_frames + (self.num_chunks - 1) * self.new_per_chunk

    def chunk(self, k: int) -> BaseChunk:
        if not 0 <= k < self.num_chunks:
            raise ValueError(f"chunk index must be in [0, {self.num_chunks}), got {k}")
        if k == 0:
            return BaseChunk(index=0, keep_from=0, video_start=0, num_kept=self.chunk_frames)
        start = self.chunk_frames + (k - 1) * self.new_per_chunk
        return BaseChunk(index=k, keep_from=self.cond_frames, video_start=start, num_kept=self.new_per_chunk)

    @property
    def chunks(self) -> tuple[BaseChunk, ...]:
        return tuple(self.chunk(k) for k in range(self.num_chunks))


def base_plan(total_frames: int, chunk_frames: int, cond_frames: int) -> BasePlan:
    """Fewest base chunks whose kept frames reach `total_frames`."""
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if not 0 <= cond_frames < chunk_frames:
        raise ValueError(f"cond_frames must be in [0, chunk_frames={chunk_frames}), got {cond_frames}")
    if total_frames <= chunk_frames:
        num_chunks = 1
    else:
        num_chunks = 1 + math.ceil((total_frames - chunk_frames) / (chunk_frames - cond_frames))
    return BasePlan(total_frames, chunk_frames, cond_frames, num_chunks)


@dataclass(frozen=True)
class EnhancePlan:
    """Tiling of the enhancer: chunks of `chunk_frames` frames overlapping by `overlap`.

    The original trims the video so that chunks tile it exactly, which can drop asked-for
    frames (its issue #6). We pad instead: the last chunk ends at `padded_frames` >=
    `num_frames`, the base stage generates the extra frames and the writer drops them.
    A video no longer than one chunk is enhanced as one shorter chunk [0, num_frames).
    """

    num_frames: int  # frames asked for
    chunk_frames: int
    overlap: int
    chunks: tuple[tuple[int, int], ...]  # (start, end) per chunk
    padded_frames: int  # frames the enhancer covers, end of the last chunk

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)

    @property
    def stride(self) -> int:
        return self.chunk_frames - self.overlap

    @property
    def boundaries(self) -> tuple[tuple[int, int], ...]:
        """Overlap span (start, end) between chunk b and b + 1, for b in [0, num_chunks - 1)."""
        return tuple((self.chunks[b + 1][0], self.chunks[b][1]) for b in range(self.num_chunks - 1))

    def chunks_of_frame(self, f: int) -> tuple[int, ...]:
        """Indices of the chunks that contain video frame f (one, or two in an overlap)."""
        if not 0 <= f < self.padded_frames:
            raise ValueError(f"frame must be in [0, {self.padded_frames}), got {f}")
        return tuple(k for k, (s, e) in enumerate(self.chunks) if s <= f < e)


def enhance_plan(num_frames: int, chunk_frames: int, overlap_frames: int) -> EnhancePlan:
    """Chunks starting at 0, C - O, 2 (C - O), ... until the last one reaches `num_frames`.

    `2 * overlap_frames <= chunk_frames` is required: then a frame lies in at most two
    chunks and the pairwise randomized blending of neighbours is well defined.
    `overlap_frames == 0` is plain concatenation.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if overlap_frames < 0 or 2 * overlap_frames > chunk_frames:
        raise ValueError(
            f"overlap_frames must be in [0, chunk_frames // 2 = {chunk_frames // 2}] so that a frame lies in "
            f"at most two chunks, got {overlap_frames} with chunk_frames={chunk_frames}"
        )
    if num_frames <= chunk_frames:
        return EnhancePlan(num_frames, chunk_frames, overlap_frames, ((0, num_frames),), num_frames)
    stride = chunk_frames - overlap_frames
    num_chunks = math.ceil((num_frames - chunk_frames) / stride) + 1
    chunks = tuple((k * stride, k * stride + chunk_frames) for k in range(num_chunks))
    return EnhancePlan(num_frames, chunk_frames, overlap_frames, chunks, chunks[-1][1])


def split_segments(num_chunks: int, shards: int) -> list[tuple[int, int]]:
    """Split chunks [0, num_chunks) into contiguous (start, end) segments, one per shard.

    Sizes differ by at most one, larger segments first, none empty: with more shards
    than chunks, there are `num_chunks` segments of one chunk (the extra shards idle).
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    n = min(shards, num_chunks)
    size, extra = divmod(num_chunks, n)
    segments, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        segments.append((start, end))
        start = end
    return segments
