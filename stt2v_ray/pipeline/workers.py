"""Stage workers: small stateful classes, one per stage, that know nothing of Ray.

A Ray actor (stt2v_ray/runtime/actors.py) is a thin wrapper around one of these; tests
drive them directly in process. Each worker loads its models once and keeps per-video
state keyed by video id, so interpolation and writing actors can serve several videos.
Every unit of work is recorded (video, stage, worker, unit, start, end) and handed to the
driver with `drain(video_id)`.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import torch

from stt2v_ray.config import RunSettings
from stt2v_ray.pipeline.base import stream_base_chunks
from stt2v_ray.pipeline.checkpoint import ChunkStore
from stt2v_ray.pipeline.components import Components
from stt2v_ray.pipeline.enhance import enhance_stream
from stt2v_ray.pipeline.shard import SegmentEnhancer
from stt2v_ray.pipeline.simulate import SimEncodeCost
from stt2v_ray.pipeline.video import StageClock, enhance_recipe, frame_budget, make_job
from stt2v_ray.video.contact import ContactSheet
from stt2v_ray.video.encode import Mp4Writer
from stt2v_ray.video.frames import to_uint8
from stt2v_ray.video.interpolate import StreamingInterpolator


class Recorder:
    """Timeline rows of one worker, drained per video by the driver."""

    def __init__(self):
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self.on_record = None  # called with each row as it is recorded (the Ray actor's busy-seconds metric)

    def record(self, video_id, stage, worker, unit, start, end, seconds=None) -> None:
        seconds = max(0.0, end - start) if seconds is None else seconds
        row = (video_id, stage, worker, unit, start, start + seconds, seconds)
        with self._lock:
            self._rows.append(row)
        if self.on_record is not None:
            self.on_record(row)

    def count(self, video_id: str, stage: str, word: str) -> int:
        """Units of `stage` whose name has `word` recorded for the video and not yet drained."""
        with self._lock:
            return sum(r[0] == video_id and r[1] == stage and word in r[3] for r in self._rows)

    def drain(self, video_id: str) -> list[tuple]:
        with self._lock:
            mine = [r for r in self._rows if r[0] == video_id]
            self._rows = [r for r in self._rows if r[0] != video_id]
        return mine


class Worker:
    def __init__(self, settings: RunSettings, name: str, storage_options: dict | None = None):
        self.settings, self.name = settings, name
        self.storage_options = storage_options
        self.recorder = Recorder()

    def clock(self, video_id: str) -> StageClock:
        return StageClock(video_id, self.name, self.recorder)

    def drain(self, video_id: str) -> list[tuple]:
        return self.recorder.drain(video_id)

    def ready(self) -> str:
        return self.name

    def discard(self, video_id: str) -> None:
        """Forget a video's state after a failure (no-op for stateless workers)."""


class BaseWorker(Worker):
    """First chunk and streaming chunks of one video at a time."""

    def __init__(self, settings: RunSettings, name: str, storage_options: dict | None = None):
        super().__init__(settings, name, storage_options)
        self.components = Components(settings)

    def base_size(self, request) -> tuple[int, int]:
        family = "i2v" if request.image else "t2v"
        gen = self.components.generator(family)
        return gen.height, gen.width

    def chunks(self, request, work_uri: str | None = None) -> Iterator[torch.Tensor]:
        """The video's base pieces; with `work_uri`, checkpointed there and resumed from there."""
        family = "i2v" if request.image else "t2v"
        clock = self.clock(request.id)
        generator = self.components.generator(family)
        with clock("base", "prepare"):
            job = make_job(request, self.storage_options, self.settings.inputs)
        budget = frame_budget(request.num_frames, self.settings)
        anchor = getattr(self.settings, family).anchor_frame
        store = ChunkStore(work_uri, self.storage_options) if work_uri else None
        yield from stream_base_chunks(generator, job, budget.generated_frames, anchor, clock, store)


class _Inbox:
    """Frames fed by the driver, consumed by the enhancer's stream: bounded (backpressure)."""

    def __init__(self, maxsize: int):
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.closed = False

    def put(self, item) -> None:
        while not self.closed:
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """The consumer is gone (done or failed): wake any blocked feeder and drop the rest."""
        self.closed = True
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def __iter__(self):
        while True:
            try:
                item = self.q.get(timeout=0.5)
            except queue.Empty:
                if self.closed:  # discarded: the video was abandoned, end the stream
                    return
                continue
            if item is None:
                return
            yield item


class EnhanceWorker(Worker):
    """Enhances a whole video (wavefront, streaming) or one segment of it (a shard of a gang)."""

    def __init__(self, settings: RunSettings, name: str, storage_options: dict | None = None):
        super().__init__(settings, name, storage_options)
        self.components = Components(settings)
        self._inbox: dict[str, _Inbox] = {}
        self._segments: dict[str, SegmentEnhancer] = {}
        self._stream_args: dict[str, tuple] = {}  # video id -> (request, base size) until stream() starts
        self._step_done = threading.Condition()
        self._failed: set[str] = set()  # videos whose step failed or that were discarded: later steps stop

    def _setup(self, request, base_hw):
        enhancer = self.components.enhancer(*base_hw)
        clock = self.clock(request.id)
        with clock("enhance", "prepare"):
            job = make_job(request, self.storage_options, self.settings.inputs)
            state = enhancer.prepare(job)
        budget = frame_budget(request.num_frames, self.settings)
        return enhancer, state, enhance_recipe(budget.enhance, request.seed, enhancer, self.settings), budget, clock

    def output_size(self, base_hw) -> tuple[int, int]:
        e = self.components.enhancer(*base_hw)
        return e.height, e.width

    # -- whole video, streaming (one shard): feed() and stream() run concurrently
    def open_stream(self, request, base_hw, max_pieces: int = 4) -> None:
        self._failed.discard(request.id)
        self._inbox[request.id] = _Inbox(max_pieces)
        self._stream_args[request.id] = (request, base_hw)

    def feed(self, video_id: str, frames: torch.Tensor | None) -> None:
        """Blocks while the inbox is full: the driver waits on this call, so base generation stalls too."""
        inbox = self._inbox.get(video_id)
        if inbox is not None:  # None: the stream already ended (it failed); nothing to do
            inbox.put(frames)

    def stream(self, video_id: str) -> Iterator[torch.Tensor]:
        request, base_hw = self._stream_args.pop(video_id)
        enhancer, state, recipe, budget, clock = self._setup(request, base_hw)
        try:
            left = budget.base_frames
            for frames in enhance_stream(enhancer, state, recipe, iter(self._inbox[video_id]), clock):
                frames = frames[:left]
                left -= frames.shape[0]
                if frames.shape[0]:
                    yield frames
        finally:
            inbox = self._inbox.pop(video_id, None)
            if inbox is not None:
                inbox.close()

    # -- one segment of a gang
    def open_segment(self, request, base_hw, first_chunk: int, end_chunk: int) -> tuple[int, int, int, list[int]]:
        """-> (first frame, end frame, number of steps, other frames it needs: batched key frames) of this segment."""
        enhancer, state, recipe, budget, clock = self._setup(request, base_hw)
        seg = SegmentEnhancer(enhancer, state, recipe, first_chunk, end_chunk, clock)
        seg.limit = budget.base_frames
        self._failed.discard(request.id)
        self._segments[request.id] = seg
        return seg.frame_start, seg.frame_end, recipe.num_steps, seg.extra_frames

    def discard(self, video_id: str) -> None:
        """Forget a video's state after a failure."""
        self._segments.pop(video_id, None)
        self._stream_args.pop(video_id, None)
        inbox = self._inbox.pop(video_id, None)
        if inbox is not None:
            inbox.close()  # wakes a stream waiting for input and a feeder waiting for room
        with self._step_done:
            self._failed.add(video_id)
            self._step_done.notify_all()  # a step waiting for this shard's previous one gives up

    def feed_segment(self, video_id: str, start: int, frames: torch.Tensor) -> None:
        self._segments[video_id].feed(start, frames)

    def _wait_for_step(self, video_id: str, seg: SegmentEnhancer, done: int) -> None:
        # A threaded actor may start step i+1 (its inputs are ready) before step i has
        # finished; its inputs depend on this shard's step i-1, so at most one step waits.
        # It gives up when that step failed or the video was discarded, and after the stage timeout.
        timeout = self.settings.retry.stage_timeout_s
        with self._step_done:
            ok = self._step_done.wait_for(lambda: seg._step >= done or video_id in self._failed, timeout=timeout)
            if video_id in self._failed:
                raise RuntimeError(f"{video_id}: an earlier enhancer step of this shard failed or the video was abandoned")
            if not ok:
                raise TimeoutError(f"{video_id}: enhancer step {done} of this shard not done within {timeout:g}s")

    def step(self, video_id: str, i: int, left=None, right=None, *after):
        """Step i of this shard; `after`: results of calls it must follow (the driver passes step 0
        the refs of its feeds, so Ray runs it once they are done, however the actor's threads interleave)."""
        seg = self._segments[video_id]
        self._wait_for_step(video_id, seg, i - 1)
        try:
            borders = seg.step(i, left, right)
        except BaseException:
            with self._step_done:
                self._failed.add(video_id)
                self._step_done.notify_all()
            raise
        with self._step_done:
            self._step_done.notify_all()
        return borders

    def finish(self, video_id: str, left=None, right=None) -> Iterator[torch.Tensor]:
        seg = self._segments[video_id]
        self._wait_for_step(video_id, seg, seg.recipe.num_steps - 1)
        del self._segments[video_id]
        for _, frames in seg.finish(left, right, limit=seg.limit):
            yield frames


class InterpolateWorker(Worker):
    def __init__(self, settings: RunSettings, name: str, storage_options: dict | None = None):
        super().__init__(settings, name, storage_options)
        self._streams: dict[str, tuple[StreamingInterpolator, list[int]]] = {}
        self._components = Components(settings)

    def open(self, video_id: str) -> None:
        factor = self.settings.interpolate.factor
        self._streams[video_id] = (StreamingInterpolator(self._components.interpolator(), factor), [0])

    def push(self, video_id: str, frames: torch.Tensor) -> torch.Tensor | None:
        stream, count = self._streams[video_id]
        if self.settings.interpolate.factor == 1:
            return frames
        with self.clock(video_id)("interpolate", f"frames {count[0]}-{count[0] + frames.shape[0] - 1}"):
            out = [f for frame in frames for f in stream.push(frame)]
        count[0] += frames.shape[0]
        return torch.stack(out) if out else None

    def discard(self, video_id: str) -> None:
        self._streams.pop(video_id, None)

    def close(self, video_id: str) -> torch.Tensor | None:
        stream, _ = self._streams.pop(video_id)
        if self.settings.interpolate.factor == 1:
            return None
        tail = list(stream.flush())
        return torch.stack(tail) if tail else None


class WriteWorker(Worker):
    def __init__(self, settings: RunSettings, name: str, storage_options: dict | None = None):
        super().__init__(settings, name, storage_options)
        self._writers: dict[str, tuple[Mp4Writer, int]] = {}
        self._sim_encode = SimEncodeCost(settings) if settings.simulate.enabled else None

    def open(self, video_id: str, uri: str, width: int, height: int, fps: int, num_frames: int) -> None:
        enc = self.settings.encode
        writer = Mp4Writer(uri, width, height, fps, crf=enc.crf, preset=enc.preset, storage_options=self.storage_options,
                           contact_sheet=ContactSheet(num_frames), timeout=self.settings.retry.stage_timeout_s)
        writer.__enter__()
        self._writers[video_id] = (writer, num_frames)

    def write(self, video_id: str, frames: torch.Tensor | None) -> int:
        writer, n = self._writers[video_id]
        if frames is not None:
            frames = frames[: n - writer.frames_written]
            if frames.shape[0]:
                start = writer.frames_written
                with self.clock(video_id)("encode", f"frames {start}-{start + frames.shape[0] - 1}"):
                    writer.write(to_uint8(frames))
                    if self._sim_encode is not None:  # the simulated resolution's encoding time
                        self._sim_encode(frames.shape[0])
        return writer.frames_written

    def close(self, video_id: str) -> dict:
        writer, n = self._writers.pop(video_id)
        start, t0 = time.time(), time.monotonic()
        if writer.frames_written != n:
            writer.__exit__(RuntimeError, RuntimeError("incomplete"), None)
            raise RuntimeError(f"{video_id}: got {writer.frames_written} frames, expected {n}")
        writer.__exit__(None, None, None)
        self.recorder.record(video_id, "encode", self.name, "finalize", start, start, time.monotonic() - t0)
        return {"num_frames": writer.frames_written, "frames_sha256": writer.sha256}

    def discard(self, video_id: str) -> None:
        self.abort(video_id)

    def abort(self, video_id: str) -> None:
        item = self._writers.pop(video_id, None)
        if item is not None:
            item[0].__exit__(RuntimeError, RuntimeError("aborted"), None)
