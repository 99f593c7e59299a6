"""Thin Ray actors around the Ray-free stage workers (stt2v_ray.pipeline.workers).

One actor class per stage (BaseActor, EnhancerShard, Interpolator, Writer) with methods named
for what they do, so the dashboard's actor list, `ray timeline` and process titles
(`ray::BaseActor.base_chunks`) show the stage. `call`/`stream` stay as the generic plumbing.
Each actor also counts frames and busy seconds into ray.util.metrics, and keeps its log
records per video for the driver to collect (`drain_logs`).
"""
from __future__ import annotations

import os
import time

import ray

from stt2v_ray import logs
from stt2v_ray.config import RunSettings
from stt2v_ray.runtime.metrics import ActorMetrics

log = logs.logger("actor")


class _StageBody:
    """Holds one worker; `call` runs a method, `stream` runs a generator method (Ray streaming)."""

    stage = ""

    def __init__(self, worker_path: str, settings_json: str, name: str, storage_options: dict | None):
        import importlib

        import torch

        self.logs = logs.install()  # this process's per-video buffer, before the worker logs anything
        settings = RunSettings.model_validate_json(settings_json)
        # The same thread count as every other executor: CPU results depend on it.
        torch.set_num_threads(settings.cpu_threads)
        module, cls = worker_path.rsplit(".", 1)
        worker_cls = getattr(importlib.import_module(module), cls)
        self.worker = worker_cls(settings, name, storage_options)
        self.name = name
        self.metrics = ActorMetrics(self.stage)
        self.worker.recorder.on_record = self.metrics.span  # busy seconds per pool, as each unit ends

    def call(self, method: str, *args):
        return getattr(self.worker, method)(*args)

    def stream(self, method: str, *args):
        # ray.cancel() of a running actor task only sets a flag: stop at the next piece, so an
        # abandoned video's generator frees its actor instead of running on.
        context = ray.get_runtime_context()
        pieces = getattr(self.worker, method)(*args)
        try:
            for item in pieces:
                if context.is_canceled():
                    return
                yield item
        finally:
            pieces.close()  # the worker's own cleanup (finally blocks) runs now, not at garbage collection

    def _frames(self, vid: str, method: str, *args):
        """`stream` that counts and logs the frames of each piece."""
        t0, total = time.monotonic(), 0
        with logs.video(vid):
            log.info("%s %s: %s started", self.stage, self.name, method)
            try:
                for k, piece in enumerate(self.stream(method, *args)):
                    n = int(piece.shape[0]) if piece is not None else 0
                    total += n
                    self.metrics.frames(n)
                    if self.stage == "enhance":
                        self.metrics.inbox(sum(i.q.qsize() for i in list(self.worker._inbox.values())))
                    log.debug("%s %s: %s piece %d (%d frames)", self.stage, self.name, method, k, n)
                    yield piece
            except Exception:
                log.exception("%s %s: %s failed", self.stage, self.name, method)
                raise
            log.info("%s %s: %s done, %d frames in %.2fs", self.stage, self.name, method, total, time.monotonic() - t0)

    def _logged(self, vid: str, method: str, *args):
        with logs.video(vid):
            try:
                return self.call(method, *args)
            except Exception:
                log.exception("%s %s: %s failed", self.stage, self.name, method)
                raise

    def drain(self, video_id: str) -> list[tuple]:
        return self.worker.drain(video_id)

    def drain_logs(self, video_id: str) -> list[str]:
        """This actor's formatted log lines of one video (removed here)."""
        return self.logs.take(video_id)

    def discard(self, video_id: str) -> None:
        return self.worker.discard(video_id)

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class BaseActor(_StageBody):
    stage = "base"

    def base_size(self, request) -> tuple[int, int]:
        return self.call("base_size", request)

    def base_chunks(self, request, work_uri: str | None = None):
        yield from self._frames(request.id, "chunks", request, work_uri)


@ray.remote
class EnhancerShard(_StageBody):
    stage = "enhance"

    def output_size(self, base_hw):
        return self.call("output_size", base_hw)

    def open_stream(self, request, base_hw, max_pieces: int = 4) -> None:
        with logs.video(request.id):
            log.info("enhance %s: streaming enhancement opened", self.name)
            return self.call("open_stream", request, base_hw, max_pieces)

    def feed_chunk(self, video_id: str, frames) -> None:
        self.call("feed", video_id, frames)
        self._inbox_depth()

    def _inbox_depth(self) -> None:
        self.metrics.inbox(sum(i.q.qsize() for i in list(self.worker._inbox.values())))

    def enhance_stream(self, video_id: str):
        yield from self._frames(video_id, "stream", video_id)

    def open_segment(self, request, base_hw, first_chunk: int, end_chunk: int):
        with logs.video(request.id):
            log.info("enhance %s: segment of chunks %d-%d opened", self.name, first_chunk, end_chunk - 1)
            return self._logged(request.id, "open_segment", request, base_hw, first_chunk, end_chunk)

    def feed_segment(self, video_id: str, start: int, frames) -> None:
        return self.call("feed_segment", video_id, start, frames)

    @ray.method(num_returns=2)
    def enhance_step(self, video_id: str, i: int, left=None, right=None, *after):
        # `after`: the feed refs of step 0 (passed only so Ray runs the step after them)
        with logs.video(video_id):
            log.debug("enhance %s: step %d", self.name, i)
        return self._logged(video_id, "step", video_id, i, left, right, *after)

    def enhanced_segment(self, video_id: str, left=None, right=None):
        yield from self._frames(video_id, "finish", video_id, left, right)

    def enhance_count(self, video_id: str) -> int:
        """Enhancement units (chunk x step) this actor has done for the video so far (for progress)."""
        return self.worker.recorder.count(video_id, "enhance", "step")


@ray.remote
class Interpolator(_StageBody):
    stage = "interpolate"

    def open_video(self, video_id: str) -> None:
        return self._logged(video_id, "open", video_id)

    def push_frames(self, video_id: str, frames):
        out = self._logged(video_id, "push", video_id, frames)
        self.metrics.frames(0 if out is None else int(out.shape[0]))
        return out

    def close_video(self, video_id: str):
        out = self._logged(video_id, "close", video_id)
        self.metrics.frames(0 if out is None else int(out.shape[0]))
        return out


@ray.remote
class Writer(_StageBody):
    stage = "write"

    def open_video(self, video_id: str, uri: str, width: int, height: int, fps: int, num_frames: int) -> None:
        with logs.video(video_id):
            log.info("write %s: opened %s (%dx%d, %d fps, %d frames)", self.name, uri, width, height, fps, num_frames)
        return self._logged(video_id, "open", video_id, uri, width, height, fps, num_frames)

    def write_frames(self, video_id: str, frames) -> int:
        before = self.worker._writers[video_id][0].frames_written if video_id in self.worker._writers else 0
        written = self._logged(video_id, "write", video_id, frames)
        self.metrics.frames(written - before)
        with logs.video(video_id):
            log.debug("write %s: %d frames written", self.name, written)
        return written

    def close_video(self, video_id: str) -> dict:
        out = self._logged(video_id, "close", video_id)
        with logs.video(video_id):
            log.info("write %s: closed, %d frames, sha256 %s", self.name, out["num_frames"], out["frames_sha256"][:12])
        return out


ACTORS = {"base": BaseActor, "enhance": EnhancerShard, "interpolate": Interpolator, "write": Writer}
