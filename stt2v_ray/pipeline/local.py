"""The in-process executor: renders videos one after another with the reference pipeline."""
from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator

from stt2v_ray import logs
from stt2v_ray.config import RunSettings
from stt2v_ray.pipeline.components import Components, family_of
from stt2v_ray.pipeline.video import STAGES, StageClock, progress_totals, render_video
from stt2v_ray.records import request_digest, settings_digest, work_uri
from stt2v_ray.storage import join_uri

log = logs.logger("pipeline")


def video_uri(output_uri: str, video_id: str) -> str:
    return join_uri(output_uri, "videos", f"{video_id}.mp4")


def base_row(request, settings: RunSettings | None = None) -> dict:
    return {"id": request.id, "status": "failed", "video_uri": None, "num_frames": None, "fps": None,
            "width": None, "height": None, "seed": request.seed, "frames_sha256": None, "error": None, "error_detail": None,
            "request_digest": request_digest(request),
            "settings_digest": settings_digest(settings) if settings is not None else None,
            "attempts": 1, "real_output": not (settings is not None and settings.simulate.enabled)}


def stage_seconds(seconds: dict[str, float]) -> dict[str, float]:
    """The results table's per-stage seconds columns."""
    return {f"{s}_seconds": round(seconds.get(s, 0.0), 4) for s in STAGES}


class LocalExecutor:
    name = "local"

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.components = Components(settings)

    def run(self, requests: Iterable, output_uri: str, storage_options: dict | None, timeline, progress,
            stop=None) -> Iterator[tuple[dict, dict]]:
        """Videos one after another, in input order (`stop`: unused, the request iterator already obeys it)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(self.settings.cpu_threads)  # CPU results depend on it: same as every executor
        try:
            for request, extra in requests:
                yield self.render_one(request, output_uri, storage_options, timeline, progress), extra
        finally:
            torch.set_num_threads(threads)

    def render_one(self, request, output_uri, storage_options, timeline, progress) -> dict:
        """One video, with its id on every log record and its lines in <output>/logs/<id>.log."""
        buffer = logs.install(stderr_level=40)  # the terminal is for progress (errors aside)
        with logs.video(request.id):
            row = self._render_one(request, output_uri, storage_options, timeline, progress)
        try:
            logs.write_video_log(output_uri, request.id, buffer.take(request.id), storage_options)
        except Exception as exc:  # a log that cannot be written never fails the video
            log.warning("%s: could not write its log: %s", request.id, exc)
        return row

    def _render_one(self, request, output_uri, storage_options, timeline, progress) -> dict:
        import time

        log.info("local: %s started (%s, %d frames, seed %d)", request.id, family_of(request), request.num_frames,
                 request.seed)
        row = base_row(request, self.settings)
        totals = progress_totals(request, self.settings)
        vp = progress.video(request.id, f"{family_of(request)}, {request.num_frames} frames, seed {request.seed}", totals)
        clock = StageClock(request.id, "local", timeline, vp.unit)
        start = time.monotonic()
        try:
            uri = video_uri(output_uri, request.id)
            work = work_uri(output_uri, request, self.settings)
            row.update(render_video(request, self.settings, self.components, uri, clock, storage_options, work))
            row.update(status="ok", video_uri=uri)
            log.info("local: %s ok (%s)", request.id, uri)
            vp.finish("ok", uri)
        except Exception as exc:  # one failed video never stops the batch
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["error_detail"] = logs.error_detail(exc)
            log.warning("local: %s failed: %s", request.id, row["error"])
            log.debug("local: %s: %s", request.id, row["error_detail"])  # into logs/<id>.log only
            vp.finish("FAILED", row["error"])
            if progress and not progress.quiet:
                traceback.print_exc()
        row.update(stage_seconds(clock.seconds))
        row["total_seconds"] = round(time.monotonic() - start, 4)
        return row

    def start(self, storage_options: dict | None) -> None:
        """Nothing to start: models are built on first use."""

    def close(self) -> None:
        pass
