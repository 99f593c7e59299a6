"""One video, end to end, in this process: the reference every executor is checked against.

The stages are chained generators, so frames flow through as they are made:
base chunks -> enhancement (wavefront) -> interpolation -> ffmpeg pipe. Only a bounded
window of frames is alive at any time after the base chunks.

Frame budget for `num_frames` output frames with interpolation factor f:
B = ceil((num_frames - 1) / f) + 1 base frames; the enhancer tiles B frames with padding
(the base stage makes the few padded frames too); after enhancement the stream is cut to
B frames, interpolated to (B - 1) f + 1 >= num_frames, and cut to exactly num_frames.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from stt2v_ray import logs
from stt2v_ray.config import InputSettings, RunSettings
from stt2v_ray.inputs.images import ImagePolicy, image_storage_options
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.pipeline.base import stream_base_chunks
from stt2v_ray.pipeline.checkpoint import ChunkStore
from stt2v_ray.pipeline.enhance import EnhanceRecipe, enhance_stream
from stt2v_ray.plan.chunks import (
    EnhancePlan,
    base_frames_for_output,
    base_plan,
    enhance_plan,
)
from stt2v_ray.storage import redact_text, redact_uri
from stt2v_ray.video.contact import ContactSheet
from stt2v_ray.video.encode import Mp4Writer
from stt2v_ray.video.frames import load_image, to_uint8
from stt2v_ray.video.interpolate import StreamingInterpolator

_log = logs.logger("stage")

STAGES = ("base", "enhance", "interpolate", "encode")


@dataclass
class FrameBudget:
    output_frames: int
    base_frames: int  # B: frames that reach interpolation
    generated_frames: int  # frames the base stage makes (B plus the enhancer's padding)
    enhance: EnhancePlan | None


def frame_budget(num_frames: int, settings: RunSettings) -> FrameBudget:
    b = base_frames_for_output(num_frames, settings.interpolate.factor)
    plan = None
    if settings.enhance.enabled:
        plan = enhance_plan(b, settings.enhance.chunk_frames, settings.enhance.overlap_frames)
    return FrameBudget(num_frames, b, plan.padded_frames if plan else b, plan)


def take(pieces: Iterator[torch.Tensor], n: int) -> Iterator[torch.Tensor]:
    """The first n frames of a stream of (k, ...) pieces."""
    left = n
    for piece in pieces:
        if left <= 0:
            return
        piece = piece[:left]
        left -= piece.shape[0]
        yield piece


def interpolate_stream(pieces, interpolator, factor: int, clock) -> Iterator[torch.Tensor]:
    if factor == 1:
        yield from pieces
        return
    stream = StreamingInterpolator(interpolator, factor)
    n = 0
    for piece in pieces:
        with clock("interpolate", f"frames {n}-{n + piece.shape[0] - 1}"):
            out = [f for frame in piece for f in stream.push(frame)]
        n += piece.shape[0]
        if out:
            yield torch.stack(out)
    tail = stream.flush()
    if tail:
        yield torch.stack(list(tail))


@dataclass
class StageClock:
    """Records every unit of work in the timeline, sums seconds per stage, reports progress."""

    video_id: str
    worker: str
    timeline: object | None = None
    on_unit: Callable[[str, str], None] | None = None
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def __call__(self, stage: str, unit: str):
        return _Span(self, stage, unit)


class _Span:
    def __init__(self, clock: StageClock, stage: str, unit: str):
        self.clock, self.stage, self.unit = clock, stage, unit

    def __enter__(self):
        # Wall clock for where the span lies, monotonic clock for how long it took (a wall
        # clock that steps back mid-span must not make it negative).
        self.start, self._t0 = time.time(), time.monotonic()
        return self

    def __exit__(self, exc_type, *exc):
        seconds = time.monotonic() - self._t0
        c = self.clock
        c.seconds[self.stage] += seconds
        if c.timeline is not None:
            c.timeline.record(c.video_id, self.stage, c.worker, self.unit, self.start, self.start + seconds, seconds)
        if exc_type is None and c.on_unit is not None:
            c.on_unit(self.stage, self.unit)
        _log.debug("%s %s: %s %s in %.3fs", self.stage, c.worker, self.unit, "failed" if exc_type else "done", seconds,
                   extra={"video_id": c.video_id})  # every unit of every stage, in logs/<id>.log
        return False


def make_job(request, storage_options: dict | None = None, inputs: InputSettings | None = None) -> GenerationJob:
    """The request as the models see it; its image is opened only if the image policy allows it (checked again
    here, after validation: the allowed prefixes include the input's folder, see inputs.images.with_input_roots)."""
    image = open_image(request.image, storage_options, inputs or InputSettings()) if request.image else None
    return GenerationJob(
        id=request.id, prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed, image=image
    )


class ImageRefused(ValueError):
    """An image the policy refuses or the caps reject: deterministic, so never worth a retry."""


def open_image(uri: str, storage_options: dict | None, inputs: InputSettings) -> torch.Tensor:
    """The image as (3,H,W), if the policy allows it and it is within the caps; errors name it with secrets redacted."""
    problem = ImagePolicy(allowed=tuple(inputs.allow_image_uris)).refusal(uri)
    if problem:
        raise ImageRefused(f"image refused: {problem}")
    try:
        return load_image(uri, image_storage_options(uri, storage_options), inputs.max_image_bytes, inputs.max_image_pixels)
    except ValueError as error:  # over a cap, or not an image
        raise ImageRefused(redact_text(str(error))) from None
    except OSError as error:  # the backend's message may quote a signed URL; keep the type (FileNotFoundError...)
        message = f"image {redact_uri(uri)}: {redact_text(str(error))}"
        try:
            redacted = type(error)(message)
        except Exception:  # noqa: BLE001 - an OSError subclass whose constructor wants other arguments
            redacted = OSError(message)
        raise redacted from None


def render_video(request, settings: RunSettings, components, video_uri: str, clock: StageClock,
                 storage_options: dict | None = None, work_uri: str | None = None) -> dict:
    """Render one request to `video_uri`; return the result row's measured fields.

    With `work_uri`, base chunks are checkpointed there and the ones already saved are reused."""
    # 1. Inputs and models.
    family = "i2v" if request.image else "t2v"
    generator = components.generator(family)
    budget = frame_budget(request.num_frames, settings)
    with clock("base", "prepare"):
        job = make_job(request, storage_options, settings.inputs)

    # 2. Base chunks, streamed.
    anchor = getattr(settings, family).anchor_frame
    store = ChunkStore(work_uri, storage_options) if work_uri else None
    frames = stream_base_chunks(generator, job, budget.generated_frames, anchor, clock, store)
    width, height = generator.width, generator.height

    # 3. Enhancement by overlapping chunks with randomized blending.
    if budget.enhance is not None:
        enhancer = components.enhancer(generator.height, generator.width)
        with clock("enhance", "prepare"):
            state = enhancer.prepare(job)
        recipe = enhance_recipe(budget.enhance, job.seed, enhancer, settings)
        frames = enhance_stream(enhancer, state, recipe, frames, clock)
        width, height = enhancer.width, enhancer.height

    # 4. Interpolation, then exactly num_frames.
    frames = take(frames, budget.base_frames)
    frames = interpolate_stream(frames, components.interpolator(), settings.interpolate.factor, clock)
    frames = take(frames, request.num_frames)

    # 5. Encoding: frames piped to ffmpeg as they come; the file appears only complete.
    fps = request.fps or settings.encode.default_fps
    writer = Mp4Writer(video_uri, width, height, fps, crf=settings.encode.crf, preset=settings.encode.preset,
                       storage_options=storage_options, contact_sheet=ContactSheet(request.num_frames))
    with writer:
        for piece in frames:
            with clock("encode", f"frames {writer.frames_written}-{writer.frames_written + piece.shape[0] - 1}"):
                writer.write(to_uint8(piece))
    if writer.frames_written != request.num_frames:
        raise RuntimeError(f"wrote {writer.frames_written} frames, expected {request.num_frames}")
    return {"num_frames": writer.frames_written, "fps": fps, "width": width, "height": height,
            "frames_sha256": writer.sha256}


def enhance_recipe(plan: EnhancePlan, seed: int, enhancer, settings: RunSettings) -> EnhanceRecipe:
    s = settings.enhance
    return EnhanceRecipe(plan=plan, seed=seed, num_steps=len(enhancer.timesteps), blend_target=s.blend_target,
                         blending=s.blending, noise=s.noise, stochastic=s.eta > 0)


def progress_totals(request, settings: RunSettings) -> dict[str, int]:
    """Units each stage will record for one video (for progress lines)."""
    family = "i2v" if request.image else "t2v"
    fam = getattr(settings, family)
    budget = frame_budget(request.num_frames, settings)
    totals = {"base": base_plan(budget.generated_frames, fam.chunk_frames, fam.cond_frames).num_chunks}
    if budget.enhance is not None:
        steps = max(1, int(settings.enhance.steps * settings.enhance.strength))
        totals["enhance"] = len(budget.enhance.chunks) * steps
    return totals
