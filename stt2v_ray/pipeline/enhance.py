"""Enhancement of a whole video by overlapping chunks merged with randomized blending.

Dependency structure (why this can stream and shard): at step i, chunk k is denoised from
x^(i) restricted to its frames; x^(i+1) is the merge of all chunk outputs of step i, where
each overlap is cut at r = draw_cut(seed, i, boundary). So work item (k, i) needs only
(k-1, i-1), (k, i-1) and (k+1, i-1).

- `enhance_stream` (the in-process reference) walks that DAG in wavefront order: diagonal
  d = k + i, i ascending. Then (k+1, i-1) is always done before (k, i), only a band of
  about `steps` chunks is alive at once, and frames come out as soon as they are final:
  memory does not grow with the video's length.
- `SegmentEnhancer` runs the same work items step-synchronously on a contiguous segment of
  chunks and swaps only the border overlap frames with its neighbours each step (the Ray
  shards). Both call `denoise_chunk`/`gather` below, one chunk per model forward, so their
  frames are bitwise identical: blending only selects frames, it never does arithmetic.

Blend targets: "latents" merges each chunk's x_{t-1} (StreamingSVD); "x0" merges the x0 and
eps predictions and takes the sampler step on the merged video (Modelscope). With the
deterministic DDIM step and shared per-frame step noise the two agree up to rounding; they
differ for samplers whose step is not a per-frame function of (x0, eps).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from stt2v_ray.plan.blending import draw_cut, middle_cut, owned_range
from stt2v_ray.plan.chunks import EnhancePlan
from stt2v_ray.plan.seeds import frame_noise

# A chunk's output of one step: the video index of its first frame and its frames.
# Neighbour shards send only their overlap frames, so `frames` may cover part of a chunk.
Piece = tuple[int, torch.Tensor]
Clock = Callable[[str, str], object]  # (stage, unit) -> context manager recording a timeline span


@dataclass(frozen=True)
class EnhanceRecipe:
    """Everything about one video's enhancement that is not the model."""

    plan: EnhancePlan
    seed: int
    num_steps: int
    blend_target: str = "latents"  # or "x0"
    blending: str = "randomized"  # or "none"
    noise: str = "shared"  # or "independent"
    stochastic: bool = False  # the enhancer's sampler draws noise at each step (eta > 0)

    def cuts(self, step: int) -> list[int]:
        """One cut per chunk boundary, keyed by (seed, step, boundary): execution order never matters."""
        overlap = self.plan.overlap
        n = len(self.plan.chunks) - 1
        if self.blending == "none":
            return [middle_cut(overlap)] * n
        return [draw_cut(self.seed, step, b, overlap) for b in range(n)]

    def sdedit_noise(self, chunk: int, start: int, end: int, frame_shape: tuple[int, ...]) -> torch.Tensor:
        purpose = "enhance-sdedit" if self.noise == "shared" else f"enhance-sdedit-chunk{chunk}"
        return frame_noise(self.seed, purpose, range(start, end), frame_shape)

    def step_noise(self, step: int, start: int, end: int, frame_shape: tuple[int, ...]) -> torch.Tensor | None:
        if not self.stochastic:
            return None
        return frame_noise(self.seed, f"enhance-step{step}", range(start, end), frame_shape)


def gather(plan: EnhancePlan, cuts: list[int], pieces: dict[int, Piece], start: int, end: int) -> torch.Tensor:
    """Merged frames [start, end) of one step from the chunk outputs that own them."""
    parts = []
    for k, (first, frames) in sorted(pieces.items()):
        own_a, own_b = owned_range(plan, k, cuts)
        a, b = max(own_a, start), min(own_b, end)
        if a < b:
            if a < first or b > first + frames.shape[0]:
                raise RuntimeError(f"chunk {k} output covers [{first}, {first + frames.shape[0]}) but frames [{a}, {b}) are "
                                   "needed")
            parts.append((a, frames[a - first : b - first]))
    parts.sort(key=lambda p: p[0])
    covered = sum(p[1].shape[0] for p in parts)
    if covered != end - start or (parts and parts[0][0] != start):
        raise RuntimeError(f"frames [{start}, {end}) not fully owned by chunks {sorted(pieces)}")
    return torch.cat([p for _, p in parts]) if len(parts) > 1 else parts[0][1]


def chunk_context(enhancer, state, recipe: EnhanceRecipe, start: int, low: torch.Tensor):
    """Per-chunk conditioning computed once from the chunk's low-res frames (e.g. StreamingSVD's
    enhanced key frame); None for enhancers without `chunk_context`. Keyed by the chunk's start
    frame, so every executor computes the same one."""
    fn = getattr(enhancer, "chunk_context", None)
    return fn(state, start, low, recipe.seed) if fn is not None else None


def batches_contexts(enhancer) -> bool:
    """Whether the enhancer computes every chunk's context in one call from all chunks' first frames
    (StreamingSVD's key frames enhanced as one K-frame video): it then needs them before step 0."""
    return bool(getattr(enhancer, "batch_contexts", False))


def video_contexts(enhancer, state, recipe: EnhanceRecipe, first_frames: torch.Tensor) -> list:
    """Every chunk's context from the chunks' first base frames (K, 3, h, w), in one call."""
    return enhancer.chunk_contexts(state, [s for s, _ in recipe.plan.chunks], first_frames, recipe.seed)


def denoise_chunk(enhancer, state, recipe: EnhanceRecipe, x_t: torch.Tensor, step: int, start: int, context=None):
    """Work item (k, step) for a chunk starting at video frame `start`.

    Returns x_{t-1} of the chunk (blend target "latents") or the pair (x0, eps) ("x0").
    """
    if context is None:
        x0, eps = enhancer.predict(state, x_t, step)
    else:
        x0, eps = enhancer.predict(state, x_t, step, context)
    if recipe.blend_target == "x0":
        return x0, eps
    noise = recipe.step_noise(step, start, start + x_t.shape[0], tuple(x_t.shape[1:]))
    return enhancer.step(x0, eps, step, noise)


def next_latents(enhancer, recipe: EnhanceRecipe, plan: EnhancePlan, cuts, outputs, step: int, start: int, end: int):
    """x^(step+1) over frames [start, end) from the chunk outputs of `step`."""
    if recipe.blend_target == "x0":
        x0 = gather(plan, cuts, {k: (s, o[0]) for k, (s, o) in outputs.items()}, start, end)
        eps = gather(plan, cuts, {k: (s, o[1]) for k, (s, o) in outputs.items()}, start, end)
        noise = recipe.step_noise(step, start, end, tuple(x0.shape[1:]))
        return enhancer.step(x0, eps, step, noise)
    return gather(plan, cuts, outputs, start, end)


def initial_latents(enhancer, recipe: EnhanceRecipe, chunk: int, low: torch.Tensor, start: int) -> torch.Tensor:
    """x_T of a chunk from its low-res frames: latents keyed by video frame (sampling VAEs), shared SDEdit noise."""
    clean = enhancer.encode(low, start, recipe.seed)
    noise = recipe.sdedit_noise(chunk, start, start + clean.shape[0], tuple(clean.shape[1:]))
    return enhancer.noise_latents(clean, noise)


class _FrameSource:
    """Low-res base frames by video index, pulled lazily from a stream; old frames dropped."""

    def __init__(self, frames: Iterator[torch.Tensor]):
        self._it = iter(frames)
        self._buf: list[torch.Tensor] = []
        self._first = 0  # video index of self._buf[0]

    def get(self, start: int, end: int) -> torch.Tensor:
        while self._first + len(self._buf) < end:
            try:
                chunk = next(self._it)
            except StopIteration:
                raise RuntimeError(f"base stream ended at frame {self._first + len(self._buf)}, enhancer needs {end}") from None
            self._buf.extend(chunk.unbind(0))
        return torch.stack(self._buf[start - self._first : end - self._first])

    def drop_before(self, frame: int) -> None:
        n = max(0, min(frame - self._first, len(self._buf)))
        del self._buf[:n]
        self._first += n


def own_latents(enhancer, recipe: EnhanceRecipe, piece: Piece, step: int) -> torch.Tensor:
    """x^(step+1) of one chunk from its own output only (blending "none")."""
    start, out = piece
    if recipe.blend_target == "x0":
        x0, eps = out
        return enhancer.step(x0, eps, step, recipe.step_noise(step, start, start + x0.shape[0], tuple(x0.shape[1:])))
    return out


def enhance_stream(
    enhancer, state, recipe: EnhanceRecipe, base_frames: Iterator[torch.Tensor], clock: Clock | None = None
) -> Iterator[torch.Tensor]:
    """Yield the enhanced video in order, in pieces, as soon as each frame is final (wavefront order)."""
    plan, steps = recipe.plan, recipe.num_steps
    chunks = plan.chunks
    K = len(chunks)
    source = _FrameSource(base_frames)
    independent = recipe.blending == "none"
    outputs: dict[int, dict[int, Piece]] = {i: {} for i in range(steps)}  # step -> chunk -> piece
    contexts: dict[int, object] = {}  # chunk -> its conditioning, from step 0 to its last step
    emitted = 0
    span = clock or (lambda stage, unit: nullcontext())
    batched = batches_contexts(enhancer)
    if batched:  # every chunk's first frame first: the base stage runs (nearly) to its end here
        first_frames = torch.stack([source.get(s, s + 1)[0] for s, _ in chunks])
        with span("enhance", f"key frames of {K} chunks"):
            keyed = video_contexts(enhancer, state, recipe, first_frames)

    for d in range(K + steps - 1):
        for i in range(steps):
            k = d - i
            if not 0 <= k < K:
                continue
            s, e = chunks[k]
            if i == 0:  # pulled outside the span: this may run the base stage upstream
                low = source.get(s, e)
                source.drop_before(chunks[k + 1][0] if k + 1 < K else e)
            with span("enhance", f"chunk {k} step {i}"):
                if i == 0:
                    contexts[k] = keyed[k] if batched else chunk_context(enhancer, state, recipe, s, low)
                    x = initial_latents(enhancer, recipe, k, low, s)
                elif independent:
                    x = own_latents(enhancer, recipe, outputs[i - 1].pop(k), i - 1)
                else:
                    x = next_latents(enhancer, recipe, plan, recipe.cuts(i - 1), outputs[i - 1], i - 1, s, e)
                    # (k-1, i-1) has now served (k-2, i), (k-1, i) and (k, i).
                    outputs[i - 1].pop(k - 1, None)
                outputs[i][k] = (s, denoise_chunk(enhancer, state, recipe, x, i, s, contexts[k]))
            if i == steps - 1:
                contexts.pop(k)
                # Frames before chunk k+1 starts are covered by no later chunk: final now.
                ready_to = chunks[k + 1][0] if k + 1 < K else plan.padded_frames
                if ready_to > emitted:
                    with span("enhance", f"decode frames {emitted}-{ready_to - 1}"):
                        final = _final_latents(enhancer, recipe, plan, outputs[i], i, emitted, ready_to)
                        frames = enhancer.decode(final)
                    emitted = ready_to
                    yield frames
                outputs[i].pop(k - 1, None)


def _final_latents(enhancer, recipe, plan, outputs, step, start, end):
    if recipe.blending == "none":
        latents = {k: (p[0], own_latents(enhancer, recipe, p, step)) for k, p in outputs.items()}
        return gather(plan, recipe.cuts(step), latents, start, end)
    return next_latents(enhancer, recipe, plan, recipe.cuts(step), outputs, step, start, end)
