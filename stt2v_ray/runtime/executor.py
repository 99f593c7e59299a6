"""The Ray executor: stage actor pools that stream chunks between them.

Per video (one driver thread each, at most `max_videos_in_flight` at once):
1. A base actor (held exclusively) streams its chunks as a Ray streaming generator,
   at most `max_chunks_in_flight` ahead of the consumer; it is released as soon as its
   last chunk is made, so the next video's base generation overlaps this enhancement.
2. An enhancer gang (S actors in one placement group, handed out whole):
   S = 1: the actor runs the wavefront on chunks as they are fed (bounded inbox);
   S > 1: each shard owns a segment; one `step` call per shard per step carries only the
   neighbours' border pieces; `finish` streams the segment's final frames.
3. Interpolation and writing actors (shared; per-video state) get the frames in order;
   the writer pipes them to ffmpeg and places the MP4 atomically.
The driver passes object refs between actors and never fetches frames itself.

Faults (runtime/faults.py): every wait is bounded by retry.stage_timeout_s; a video whose
actor, shard or node died is cancelled (ray.cancel of all its refs), its actors are checked
and go back to their pools, and it is rendered again from chunk 0 (the draws are keyed by
seed and index, so the frames are the same), up to retry.max_attempts times.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import ray
from ray.util.placement_group import remove_placement_group

from stt2v_ray import logs
from stt2v_ray.config import RunSettings
from stt2v_ray.errors import ExecutorStartError
from stt2v_ray.pipeline.local import base_row, stage_seconds, video_uri
from stt2v_ray.pipeline.shard import neighbour_borders
from stt2v_ray.pipeline.video import frame_budget, progress_totals
from stt2v_ray.plan.chunks import base_plan, split_segments
from stt2v_ray.records import work_uri
from stt2v_ray.runtime.cluster import announce_dashboard, default_num_cpus, local_init_kwargs
from stt2v_ray.runtime.faults import Attempt, StageTimeout, retryable
from stt2v_ray.runtime.metrics import RunMetrics
from stt2v_ray.runtime.pools import Pool, make_actor, make_gangs, ping
from stt2v_ray.video.encode import remove_stale_parts

log = logs.logger("runtime")


def needed_resources(settings: RunSettings) -> dict[str, float]:
    s = settings.ray
    pools = [(s.base, s.base.actors), (s.enhance, s.enhance.actors), (s.interpolate, s.interpolate.actors),
             (s.write, s.write.actors)]
    need: dict[str, float] = collections.defaultdict(float)
    for pool, n in pools:
        need["CPU"] += pool.num_cpus * n
        need["GPU"] += pool.num_gpus * n
        for k, v in pool.resources.items():
            need[k] += v * n
    return {k: v for k, v in need.items() if v > 0}


class RayExecutor:
    name = "ray"

    def __init__(self, settings: RunSettings, place_timeout: float = 120.0):
        self.settings = settings
        self.place_timeout = place_timeout
        self._owns_ray = False
        self._actors: list = []
        self._gangs: list = []
        self._started = False
        self.events: list[dict] = []  # retries and pool shrinks, in order (for run.json)
        self.pids: dict[str, int] = {}  # actor name -> pid at start (tests kill them by pid)
        self._events_lock = threading.Lock()
        self._actor_logs: dict[str, list[str]] = {}  # video id -> the actors' log lines, until its log is written

    def _event(self, event: dict) -> None:
        with self._events_lock:
            self.events.append(event)

    def pool_report(self) -> dict:
        """Each pool's size, healthy actors and dropped ones; the retries made (for run.json)."""
        pools = [p for p in (getattr(self, n, None) for n in ("base_pool", "gang_pool", "interp_pool", "write_pool")) if p]
        with self._events_lock:
            retries = sum(e["event"] == "retry" for e in self.events)
        return {"pools": {p.stage: p.report() for p in pools}, "retries": retries}

    # ------------------------------------------------------------------ lifecycle
    def start(self, storage_options) -> None:
        """Join or start Ray, check the pools fit, create every actor and gang."""
        try:
            self._start(storage_options)
        except Exception:
            self.close()
            raise

    def _start(self, storage_options) -> None:
        s = self.settings.ray
        if not ray.is_initialized():
            address = s.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=True)
            else:
                # The embedded default: a local cluster of its own (address="local": never attach to a
                # cluster someone else started here), sized for the pools.
                import torch

                need = needed_resources(self.settings)
                announce_dashboard(ray.init(**local_init_kwargs(
                    self.settings, default_num_cpus(need.get("CPU", 0)), torch.cuda.device_count())))
                self._owns_ray = True
        self._check_resources()
        so, tag = storage_options, uuid.uuid4().hex[:8]  # tag: this run's actor names (stt2v-<tag>-base-0)
        self.metrics = RunMetrics()
        self._logs = logs.install(stderr_level=40)  # the driver's lines per video; its terminal is for progress
        names = {"base": [f"base-{i}" for i in range(s.base.actors)],
                 "interpolate": [f"interpolate-{i}" for i in range(s.interpolate.actors)],
                 "write": [f"write-{i}" for i in range(s.write.actors)]}
        self.bases = [make_actor("base", self.settings, n, so, s.base, tag=tag) for n in names["base"]]
        self.interps = [make_actor("interpolate", self.settings, n, so, s.interpolate, tag=tag) for n in names["interpolate"]]
        self.writers = [make_actor("write", self.settings, n, so, s.write, tag=tag) for n in names["write"]]
        self._actors += self.bases + self.interps + self.writers
        all_names = names["base"] + names["interpolate"] + names["write"]
        if self.settings.enhance.enabled:
            self._gangs = make_gangs(self.settings, so, self.place_timeout, tag)
            self._actors += [a for g in self._gangs for a in g.actors]
            all_names += [f"{g.name}s{j}" for g in self._gangs for j in range(len(g.actors))]
        # All constructed (models load lazily, once); bounded like every other wait.
        self.pids = dict(zip(all_names, ray.get([a.pid.remote() for a in self._actors], timeout=self.place_timeout),
                             strict=True))
        t, ev = self.settings.retry.ping_timeout_s, self._event
        self.base_pool = Pool("base", self.bases, names["base"], t, ev)
        self.gang_pool = Pool("enhance", self._gangs, [g.name for g in self._gangs], t, ev)
        self.interp_pool = Pool("interpolate", self.interps, names["interpolate"], t, ev, exclusive=False)
        self.write_pool = Pool("write", self.writers, names["write"], t, ev, exclusive=False)
        self.base_pool.on_wait = lambda d: self.metrics.queue("base_wait", d)
        self.gang_pool.on_wait = lambda d: self.metrics.queue("enhance_wait", d)
        self._started = True

    def _check_resources(self) -> None:
        have = ray.cluster_resources()
        for key, amount in needed_resources(self.settings).items():
            if have.get(key, 0) + 1e-9 < amount:
                raise ExecutorStartError(
                    f"the ray pools need {amount:g} {key} in total but the cluster has {have.get(key, 0):g}. "
                    "Lower ray.*.actors / num_gpus / num_cpus, or add nodes (check `ray status`)."
                )

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        for actor in self._actors:  # wait until each is really gone, so its resources are free again
            try:
                ray.get(actor.pid.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
        for gang in self._gangs:
            remove_placement_group(gang.pg)
        self._actors, self._gangs = [], []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    # ------------------------------------------------------------------ run
    def run(self, requests, output_uri, storage_options, timeline, progress):
        if not self._started:
            self.start(storage_options)
        s = self.settings.ray
        self._output, self._out_options = output_uri, storage_options
        limit = s.max_videos_in_flight or (s.base.actors + max(1, len(self._gangs)))
        pending: set = set()
        counter = iter(range(1 << 62))
        requests = iter(requests)
        # Not a `with`: on an interrupt the driver closes the actors first, which ends the
        # in-flight threads; waiting for them here would wait for whole videos.
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="video")
        try:
            while True:
                # A slot first, then the next request: a driver told to stop admits nothing more.
                while len(pending) >= limit:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:  # as each video ends, so its record is committed at once
                        yield future.result()
                request = next(requests, None)
                if request is None:
                    break
                pending.add(pool.submit(self._video, next(counter), *request, output_uri, timeline, progress))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            pool.shutdown(wait=not pending, cancel_futures=True)

    def _video(self, index, request, extra, output_uri, timeline, progress):
        """_render_video with the video's metrics, its id on every log record and <output>/logs/<id>.log."""
        self.metrics.video_started()
        row = None
        try:
            with logs.video(request.id):
                row, extra = self._render_video(index, request, extra, output_uri, timeline, progress)
        finally:
            self.metrics.video_ended(row is not None and row["status"] == "ok")
            self._write_log(request.id, output_uri)
        return row, extra

    def _write_log(self, vid: str, output_uri: str) -> None:
        lines = self._logs.take(vid) + self._actor_logs.pop(vid, [])
        try:
            logs.write_video_log(output_uri, vid, lines, self._out_options)
        except Exception as exc:  # a log that cannot be written never fails the video
            print(f"WARNING: {vid}: could not write its log: {exc}", file=sys.stderr, flush=True)

    def _render_video(self, index, request, extra, output_uri, timeline, progress):
        """Render one video; an attempt lost to a dead actor, shard or node is made again from scratch."""
        log.info("ray: %s started (%s, %d frames, seed %d)", request.id, "i2v" if request.image else "t2v",
                 request.num_frames, request.seed)
        row = base_row(request, self.settings)
        vp = progress.video(request.id, f"{'i2v' if request.image else 't2v'}, {request.num_frames} frames, "
                                        f"seed {request.seed} (ray)", progress_totals(request, self.settings))
        start = time.monotonic()
        uri = video_uri(output_uri, request.id)
        seconds: dict[str, float] = collections.defaultdict(float)
        r = self.settings.retry
        for number in range(1, r.max_attempts + 1):
            attempt, row["attempts"], error, lost = Attempt(number, r.stage_timeout_s), number, None, []
            try:
                row.update(self._render(index, request, uri, attempt, vp))
            except Exception as exc:  # a failed video never stops the batch
                error, retry = f"{type(exc).__name__}: {_short(exc)}", retryable(exc)
                row["error_detail"] = logs.error_detail(exc)
                log.warning("ray: %s attempt %d failed: %s", request.id, number, error)
                log.debug("ray: %s attempt %d: %s", request.id, number, row["error_detail"])  # into logs/<id>.log only
            finally:
                lost = self._end_attempt(attempt, request.id, error is not None, timeline, seconds)
            if error is None:
                row.update(status="ok", video_uri=uri, error=None, error_detail=None)
                log.info("ray: %s ok (%s)", request.id, uri)
                vp.finish("ok", uri)
                break
            if lost:  # an actor of this attempt died or restarted: whatever it raised, the cause is the loss
                error, retry = f"{error} (lost: {', '.join(lost)})", True
            row["error"] = error
            if not retry or number == r.max_attempts:
                remove_stale_parts(uri)  # what a killed writer left beside the target
                vp.finish("FAILED", error)
                break
            self._event({"event": "retry", "video": request.id, "attempt": number + 1, "error": error,
                         "lost": lost, "time": time.time()})
            vp.parent._print(f"    {request.id}: attempt {number} failed ({error}); retrying ({number + 1}/{r.max_attempts})")
        row.update(stage_seconds(seconds))
        row["total_seconds"] = round(time.monotonic() - start, 4)
        return row, extra

    def _end_attempt(self, attempt: Attempt, vid: str, failed: bool, timeline, seconds) -> list[str]:
        """Cancel a failed attempt's work, then free its actors; collect timelines -> names of actors lost."""
        t = self.settings.retry.stage_timeout_s
        lost: list[str] = []
        actors = [(a, pid) for a, pid in attempt.actors if all(a is not b for b in attempt.early)]
        if failed:
            attempt.cancel()  # base generator, enhancer steps/streams, pending pushes and writes
            for actor, _ in actors:  # wakes the video's tasks that wait inside an actor (steps, streams)
                _quiet(lambda a=actor: ray.get(a.discard.remote(vid), timeout=t))
            if not attempt.settle():
                print(f"WARNING: {vid}: some cancelled work still ran after {t:g}s", file=sys.stderr, flush=True)
            for actor, pid in actors:  # the pids they had when handed out: a new pid is a restart
                _, now = ping(actor, self.settings.retry.ping_timeout_s)
                if now != pid:
                    lost.append(self._name(actor))
        attempt.release()  # only now: base and gang go back to their pools
        for actor, _ in {id(a): (a, p) for a, p in attempt.actors}.values():
            for rec in _quiet(lambda a=actor: ray.get(a.drain.remote(vid), timeout=t)) or []:
                timeline.record(*rec)
                seconds[rec[1]] += rec[6] if len(rec) > 6 else rec[5] - rec[4]
            lines = _quiet(lambda a=actor: ray.get(a.drain_logs.remote(vid), timeout=t)) or []
            self._actor_logs.setdefault(vid, []).extend(lines)
        return lost

    def _name(self, actor) -> str:
        for name, a in zip(self.pids, self._actors, strict=True):
            if a is actor:
                return name
        return "?"

    def _render(self, index, request, uri, attempt: Attempt, vp) -> dict:
        settings, s = self.settings, self.settings.ray
        vid = request.id
        budget = frame_budget(request.num_frames, settings)
        (interp, ipids), (writer, wpids) = self.interp_pool.pick(index), self.write_pool.pick(index)
        attempt.use([interp, writer], ipids + wpids)
        base, bpids = self.base_pool.acquire()
        attempt.hold("base", self.base_pool, base)
        attempt.use([base], bpids)

        def release_base():
            attempt.release("base", early=True)

        base_hw = attempt.get(base.base_size.remote(request))
        chunks = attempt.track(base.base_chunks.options(
            num_returns="streaming", _generator_backpressure_num_objects=s.max_chunks_in_flight
        ).remote(request, work_uri(self._output, request, settings)))
        chunks = attempt.iterate(chunks, f"{vid}: base chunks")
        out_hw, gang = base_hw, None
        if budget.enhance is not None:
            gang, gpids = self.gang_pool.acquire()
            attempt.hold("gang", self.gang_pool, gang)
            attempt.use(gang.actors, gpids)
            out_hw = attempt.get(gang.actors[0].output_size.remote(base_hw))
        fps = request.fps or settings.encode.default_fps
        attempt.get([interp.open_video.remote(vid),
                     writer.open_video.remote(vid, uri, out_hw[1], out_hw[0], fps, request.num_frames)])
        sink = _Sink(attempt, interp, writer, vid, s.max_chunks_in_flight, vp)
        chunks = _counted(chunks, vp, "base", "chunk")

        if gang is None:
            for ref in chunks:
                sink.put(ref)
            release_base()
        elif len(gang.actors) == 1:
            self._enhance_streaming(attempt, gang.actors[0], request, base_hw, chunks, sink, release_base)
        else:
            self._enhance_sharded(attempt, gang.actors, request, base_hw, budget, chunks, sink, release_base)
        return sink.close()

    def _enhance_streaming(self, attempt, actor, request, base_hw, chunks, sink, release_base) -> None:
        vid = request.id
        attempt.get(actor.open_stream.remote(request, base_hw, self.settings.ray.max_chunks_in_flight))
        out = attempt.track(actor.enhance_stream.options(num_returns="streaming").remote(vid))
        errors: list = []

        def feed():
            try:
                for ref in chunks:
                    attempt.get(actor.feed_chunk.remote(vid, ref))  # blocks while the inbox is full
            except Exception as exc:  # surfaces through the enhancer's stream too
                errors.append(exc)
            finally:
                # The end marker, also after an error, so the enhancer's stream ends instead of waiting.
                _quiet(lambda: ray.get(actor.feed_chunk.remote(vid, None), timeout=attempt.timeout))
                if not errors:  # after an error the base may still be busy: it is freed after the cancel
                    release_base()

        feeder = threading.Thread(target=feed, name=f"feed-{vid}", daemon=True)
        feeder.start()
        for ref in attempt.iterate(out, f"{vid}: enhancer stream"):
            sink.put(ref)
            sink.vp.reach("enhance", attempt.get(actor.enhance_count.remote(vid)))  # chunk x step units so far
        sink.vp.reach("enhance", attempt.get(actor.enhance_count.remote(vid)))
        feeder.join(timeout=attempt.timeout)
        if errors:
            raise errors[0]
        if feeder.is_alive():
            raise StageTimeout(f"{vid}: feeding the enhancer took over {attempt.timeout:g}s")

    def _enhance_sharded(self, attempt, actors, request, base_hw, budget, chunks, sink, release_base) -> None:
        vid = request.id
        segments = split_segments(budget.enhance.num_chunks, len(actors))
        actors = actors[: len(segments)]
        ranges = attempt.get([a.open_segment.remote(request, base_hw, k0, k1)
                              for a, (k0, k1) in zip(actors, segments, strict=True)])
        # Feed each base piece to the shards whose frames it covers (refs only; Ray moves the data).
        family = "i2v" if request.image else "t2v"
        fam = getattr(self.settings, family)
        plan = base_plan(budget.generated_frames, fam.chunk_frames, fam.cond_frames)
        start, fed = 0, []
        for k, ref in enumerate(chunks):
            n = min(plan.chunk(k).num_kept, budget.generated_frames - start)
            for a, (f0, f1, _, extra) in zip(actors, ranges, strict=True):
                if (start < f1 and start + n > f0) or any(start <= f < start + n for f in extra):
                    fed.append(attempt.track(a.feed_segment.remote(vid, start, ref)))
            start += n
        release_base()
        attempt.get(fed)
        # The whole step chain is submitted at once; a failing step fails its shard's later steps
        # (EnhanceWorker) and, through the borders, its neighbours': the finish streams raise.
        borders = [(None, None)] * len(actors)
        for i in range(ranges[0][2]):
            borders = [tuple(attempt.track(a.enhance_step.remote(vid, i, *neighbour_borders(borders, j))))
                       for j, a in enumerate(actors)]
            for (k0, k1), (ref, _) in zip(segments, borders, strict=True):  # progress: chunk x step units as steps end
                ref.future().add_done_callback(
                    lambda f, n=k1 - k0, i=i: f.cancelled() or f.exception() or sink.vp.unit("enhance", f"step {i}", n))
        outs = [attempt.track(a.enhanced_segment.options(num_returns="streaming").remote(vid, *neighbour_borders(borders, j)))
                for j, a in enumerate(actors)]
        for j, gen in enumerate(outs):  # segments in order: the first goes on to interpolation while later ones decode
            for ref in attempt.iterate(gen, f"{vid}: enhancer shard {j}"):
                sink.put(ref)


class _Sink:
    """Frames in order to the interpolation actor, then the writer; a bounded number in flight."""

    def __init__(self, attempt, interp, writer, vid, max_in_flight, vp):
        self.attempt, self.interp, self.writer, self.vid, self.vp = attempt, interp, writer, vid, vp
        self.max = max(1, max_in_flight)
        self.pending: collections.deque = collections.deque()

    def put(self, frames_ref) -> None:
        self.vp.unit("frames out", f"piece {len(self.pending)}")
        out = self.attempt.track(self.interp.push_frames.remote(self.vid, frames_ref))
        self.pending.append(self.attempt.track(self.writer.write_frames.remote(self.vid, out)))
        while len(self.pending) > self.max:
            self.attempt.get(self.pending.popleft())

    def close(self) -> dict:
        tail = self.attempt.track(self.interp.close_video.remote(self.vid))
        self.pending.append(self.writer.write_frames.remote(self.vid, tail))
        self.attempt.get(list(self.pending))
        return self.attempt.get(self.writer.close_video.remote(self.vid))


def _counted(refs, vp, stage: str, unit: str):
    """Pass refs through, counting them as progress units as they arrive."""
    for k, ref in enumerate(refs):
        vp.unit(stage, f"{unit} {k}")
        yield ref


def _short(exc: Exception) -> str:
    """A task error's original exception, not Ray's multi-line wrapper."""
    text = str(exc)
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return f"{type(cause).__name__}: {cause}"
        text = text.strip().splitlines()[-1] if text.strip() else text
    return text


def _quiet(fn):
    try:
        return fn()
    except Exception:
        return None
